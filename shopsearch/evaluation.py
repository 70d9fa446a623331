"""Ranking metrics: declared once, computed by ir-measures (trec_eval); pure functions, no engine I/O.

Metrics of a search run (:data:`METRICS`, scored by :func:`evaluate`):
- ``ndcg@10``: nDCG@10 with the graded judgements as linear gains (grade 3 counts 3x grade 1);
- ``recall@100``: share of the query's relevant products in the top 100;
- ``mrr@10``: reciprocal rank of the first relevant product in the top 10 (RR@10, averaged: MRR@10);
- ``judged@10``: share of the products shown in the top 10 that were judged, of any grade (a shorter list is
  measured on what it shows). Not a quality metric: it says how far the others can be trusted.
"Relevant" means grade >= 1 (:data:`RELEVANT_GRADE`): on crowdflower, grade 0 is "irrelevant" and 1..3 are
"somewhat" to "highly" relevant. A negative grade (TREC's -2 for junk) counts as 0: judged, not relevant, no
gain (ir-measures' trec_eval backend crashes the process on a query whose only grades are negative). Unjudged
products count as not relevant, as trec_eval counts them, so a ranking that shows products the judges never saw
scores lower whether or not they are relevant: read an nDCG@10 delta beside the two rankings' judged@10. A judged query with no results, or missing from the rankings, scores 0 on every
metric instead of vanishing from the mean.

Judged pools (a query's judged products ranked by a model's scores, as training and the benches measure them) are
scored by thin wrappers over the same ir-measures nDCG: :func:`ndcg_at_k`, :func:`per_pool_ndcg`,
:func:`mean_ndcg` and, for conversion lists, :func:`mean_list_ndcg`. A pool or query without a relevant item
scores 0.0 (trec_eval's convention); only :func:`mean_list_ndcg` leaves such lists out of its mean, and says so.
Gains are ir-measures relevance levels, so they must be integers (grades, 0/1 purchases); scale and round a
real-valued gain explicitly before scoring it. :func:`auc`, :func:`rmse` and :func:`rmse_vs_mean` complete the
set for conversion models and calibrated scores. :func:`held_out_scores` gives hit-rate@k and nDCG@k of ranked
lists against one held-out item each (recommendations, leave-last-out). :func:`json_safe` writes a metric that
nothing could score (NaN) as JSON's null.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Hashable, Iterable, Mapping, NamedTuple, Sequence, TypeVar

import ir_measures
import numpy as np
from ir_measures import Judged, ScoredDoc, nDCG, R, RR
from scipy.stats import rankdata

from shopsearch.judgments import Qrel

K = TypeVar("K", bound=Hashable)
RELEVANT_GRADE = 1
METRICS = {
    "ndcg@10": nDCG @ 10,
    "recall@100": R(rel=RELEVANT_GRADE) @ 100,
    "mrr@10": RR(rel=RELEVANT_GRADE) @ 10,
    "judged@10": Judged @ 10,
}


@dataclass(frozen=True)
class EvalReport:
    """Mean metrics over the evaluated queries, with every query's own scores kept."""

    metrics: dict[str, float]  # name in METRICS -> mean
    per_query: dict[str, dict[str, float]]  # qid -> name -> score
    queries: int  # judged queries evaluated (the mean's denominator)
    unjudged: tuple[str, ...] = field(default=())  # qids asked for that have no judgements (left out)


def gain(grade: int) -> int:
    """A judged grade's gain: the grade, or 0 for a negative one (judged, not relevant; see the module notes).

    >>> gain(3), gain(-2)
    (3, 0)
    """
    return max(0, int(grade))


def to_run(rankings: Mapping[str, Sequence[str]]) -> list[ScoredDoc]:
    """Rankings (qid -> doc ids, best first) as a run whose scores encode the given order.

    Scores are ``len - position`` rather than the engine's scores because trec_eval re-sorts by score and breaks
    ties by doc id, which would evaluate a different order than the one shown to shoppers. A repeated doc id keeps
    its first position.

    >>> to_run({"q": ["b", "a"]})
    [ScoredDoc(query_id='q', doc_id='b', score=2.0), ScoredDoc(query_id='q', doc_id='a', score=1.0)]
    """
    run = []
    for qid, docs in rankings.items():
        unique = list(dict.fromkeys(docs))
        run += [ScoredDoc(qid, d, float(len(unique) - i)) for i, d in enumerate(unique)]
    return run


def evaluate(qrels: Iterable[Qrel], rankings: Mapping[str, Sequence[str]],
             qids: Sequence[str] | None = None, *, judged_only: bool = False) -> EvalReport:
    """Score rankings against judgements.

    Args:
        qrels: the judgements.
        rankings: qid -> doc ids, best first (at least 100 deep for recall@100 to mean what it says).
        qids: the queries to evaluate (default: every judged query). Those without judgements are left out and
            listed in ``EvalReport.unjudged``.
        judged_only: score each ranking with its query's unjudged products taken out, the judged ones moving up
            (trec_eval's ``-J``; "condensed lists"): what the ranking does with the products the judges saw. A
            bound, not the truth: it credits nothing for keeping an irrelevant unjudged product out of the top.
            ``judged@10`` is still taken from the rankings as given.

    Returns:
        EvalReport with the means over the judged queries; a judged query with no ranking scores 0.

    Raises:
        ValueError: no query to evaluate.

    >>> r = evaluate([Qrel("q", "a", 2)], {"q": ["b", "a"]})
    >>> r.metrics["mrr@10"], r.queries
    (0.5, 1)
    """
    qrels = list(qrels)
    judged = dict.fromkeys(q.query_id for q in qrels)
    wanted = list(dict.fromkeys(qids)) if qids is not None else list(judged)
    evaluated = [q for q in wanted if q in judged]
    unjudged = tuple(q for q in wanted if q not in judged)
    if not evaluated:
        raise ValueError(f"qids: none of the {len(wanted)} queries has judgements in the qrels")
    by_measure = {measure: name for name, measure in METRICS.items()}
    per_query = {q: {name: 0.0 for name in METRICS} for q in evaluated}
    keep = set(evaluated)
    shown = {q: docs for q, docs in rankings.items() if q in keep}
    kept_qrels = [q._replace(relevance=gain(q.relevance)) for q in qrels if q.query_id in keep]
    parts = [(tuple(METRICS), shown)]
    if judged_only:  # judged@10 still reads the rankings as shown: on judged products only it would always be 1
        parts = [(tuple(n for n in METRICS if n != "judged@10"), judged_rankings(kept_qrels, shown)),
                 (("judged@10",), shown)]
    for names, ranks in parts:
        run = to_run(ranks)
        if run:
            for m in ir_measures.iter_calc([METRICS[n] for n in names], kept_qrels, run):
                if m.query_id in per_query:
                    per_query[m.query_id][by_measure[m.measure]] = float(m.value)
    means = {name: sum(s[name] for s in per_query.values()) / len(per_query) for name in METRICS}
    return EvalReport(metrics=means, per_query=per_query, queries=len(evaluated), unjudged=unjudged)


def judged_rankings(qrels: Iterable[Qrel], rankings: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """Each ranking with the products not judged for its query taken out, in the order given (trec_eval's ``-J``).

    >>> judged_rankings([Qrel("q", "a", 0)], {"q": ["b", "a"], "r": ["a"]})
    {'q': ['a'], 'r': []}
    """
    pools = judged_pools(qrels)
    return {q: [d for d in docs if d in pools.get(q, ())] for q, docs in rankings.items()}


def judged_pools(qrels: Iterable[Qrel]) -> dict[str, set[str]]:
    """qid -> the products judged for it, of any grade (0 included).

    >>> judged_pools([Qrel("q", "a", 0), Qrel("q", "b", 3)]) == {"q": {"a", "b"}}
    True
    """
    pools: dict[str, set[str]] = {}
    for q in qrels:
        pools.setdefault(q.query_id, set()).add(q.doc_id)
    return pools


def per_pool_ndcg(pools: Mapping[K, tuple[Sequence[float], Sequence[int]]], k: int = 10) -> dict[K, float]:
    """nDCG@k of each judged pool ranked by its scores, all in one ir-measures call.

    Each pool is ranked by descending score, ties broken by position in the pool (a stable sort; NaN scores
    last); that order is what ir-measures scores (see :func:`to_run`). Gains are the grades, linear.

    Args:
        pools: key -> (one score per item, the items' integer grades, same order).
        k: the cutoff, >= 1.
    Returns:
        key -> nDCG@k in [0, 1], in the order of ``pools``; 0.0 for a pool without a positive grade (or empty).
    Raises:
        ValueError: k < 1, a pool whose scores and grades differ in length, or a grade that is not an integer.
    Example:
        >>> per_pool_ndcg({"a": ([0.1, 0.9], [0, 2]), "b": ([0.2, 0.1], [0, 0])})
        {'a': 1.0, 'b': 0.0}
    """
    if k < 1:
        raise ValueError(f"k={k!r} must be >= 1")
    keys = list(pools)
    qrels: list[Qrel] = []
    rankings: dict[str, list[str]] = {}
    for i, key in enumerate(keys):
        scores, grades = pools[key]
        if len(scores) != len(grades):
            raise ValueError(f"pool {key!r}: scores has {len(scores)} items but grades has {len(grades)}; "
                             "they must match")
        qid = str(i)  # the pool's position: keys need not be strings, nor unique once made strings
        qrels += [Qrel(qid, str(d), g) for d, g in enumerate(_integer_grades(key, grades))]
        rankings[qid] = [str(d) for d in np.argsort(-np.asarray(scores, dtype=float), kind="stable")]
    out = dict.fromkeys(keys, 0.0)
    run = to_run(rankings)
    if run:
        for m in ir_measures.iter_calc([nDCG @ k], qrels, run):
            out[keys[int(m.query_id)]] = float(m.value)
    return out


def ndcg_at_k(scores: Sequence[float], grades: Sequence[int], k: int = 10) -> float:
    """nDCG@k of ranking one judged pool by ``scores`` (see :func:`per_pool_ndcg`); 0.0 without a positive grade.

    Example:
        >>> ndcg_at_k([0.9, 0.1], [0, 2]) < ndcg_at_k([0.1, 0.9], [0, 2]) == 1.0
        True
    """
    return per_pool_ndcg({0: (scores, grades)}, k)[0]


def mean_ndcg(pools: Mapping[Hashable, tuple[Sequence[float], Sequence[int]]], k: int = 10) -> float:
    """Mean nDCG@k over judged pools ``{key: (scores, grades)}``; a pool without a relevant item counts 0.0.

    Returns 0.0 for no pools.

    >>> mean_ndcg({"a": ([0.1, 0.9], [0, 2]), "b": ([0.2, 0.1], [0, 0])})
    0.5
    """
    values = list(per_pool_ndcg(pools, k).values())
    return float(np.mean(values)) if values else 0.0


def mean_list_ndcg(list_ids: Sequence, gains: Sequence[int], scores: Sequence[float],
                   k: int = 10) -> tuple[float, int]:
    """Mean nDCG@k over the lists that have a positive gain, and how many such lists there were.

    Rows are grouped into lists by ``list_ids``; each list is ranked by its scores (ties by row order). Lists
    without a positive gain (no purchase) cannot be ranked better or worse, so they are left out of the mean
    (unlike :func:`mean_ndcg`, which counts them 0). Gains must be integers (e.g. 0/1 purchases).

    Returns:
        (mean, number of lists with a positive gain); the mean is NaN when there is none.
    Raises:
        ValueError: a gain that is not an integer, or k < 1.

    >>> mean_list_ndcg(["a", "a", "b", "b"], [1, 0, 0, 0], [0.9, 0.1, 0.5, 0.4])
    (1.0, 1)
    """
    g = np.asarray(gains)
    s = np.asarray(scores, dtype=float)
    rows: dict = {}
    for i, lid in enumerate(list_ids):
        rows.setdefault(lid, []).append(i)
    kept = {lid: (s[idx], g[idx]) for lid, idx in rows.items() if (g[idx] > 0).any()}
    values = list(per_pool_ndcg(kept, k).values())
    return (float(np.mean(values)) if values else math.nan), len(values)


class HeldOut(NamedTuple):
    """Scores of one ranked list against the one item held out for it (leave-last-out recommendation tests)."""

    hit: float  # 1.0 when the item is in the top k
    ndcg: float  # nDCG@k with that one item relevant: 1 / log2(rank + 1) in the top k, else 0


def held_out_scores(rankings: Mapping[K, Sequence[str]], held_out: Mapping[K, str],
                    k: int = 10) -> dict[K, HeldOut]:
    """hit-rate@k and nDCG@k of each ranking (best first) against its one held-out item (grade 1); the nDCG is
    :func:`per_pool_ndcg`'s. A key missing from ``rankings``, or an empty list, scores 0.

    Raises:
        ValueError: k < 1.

    >>> held_out_scores({"u1": ["a", "b"], "u2": ["c"]}, {"u1": "b", "u2": "z"}, k=10)["u1"]
    HeldOut(hit=1.0, ndcg=0.6309297535714575)
    """
    if k < 1:
        raise ValueError(f"k={k!r} must be >= 1")
    pools = {}
    for key, item in held_out.items():
        ranked = list(dict.fromkeys(rankings.get(key, ())))[:k]
        # Only the top k are pooled: an item outside them leaves the pool without a relevant one (0.0), and as
        # it is the one relevant item, the ideal DCG is 1 either way.
        pools[key] = ([float(len(ranked) - r) for r in range(len(ranked))], [int(pid == item) for pid in ranked])
    ndcg = per_pool_ndcg(pools, k)
    return {key: HeldOut(float(any(pools[key][1])), ndcg[key]) for key in held_out}


def auc(labels: Sequence[float], scores: Sequence[float]) -> float:
    """ROC AUC by the rank-sum (Mann-Whitney) formula; ties count one half. NaN without both classes.

    >>> auc([0, 1, 0, 1], [0.1, 0.9, 0.2, 0.8])
    1.0
    """
    y = np.asarray(labels, dtype=float) > 0
    s = np.asarray(scores, dtype=float)
    pos, neg = int(y.sum()), int((~y).sum())
    if pos == 0 or neg == 0:
        return math.nan
    ranks = rankdata(s)
    return float((ranks[y].sum() - pos * (pos + 1) / 2) / (pos * neg))


def rmse(predicted: Sequence[float], actual: Sequence[float]) -> float:
    """Root mean squared error, ignoring pairs whose actual value is NaN (NaN when none is left).

    >>> rmse([1.0, 2.0, 5.0], [1.0, 4.0, float("nan")])
    1.4142135623730951
    """
    p, a = np.asarray(predicted, dtype=float), np.asarray(actual, dtype=float)
    keep = ~np.isnan(a)
    return math.sqrt(float(np.mean((p[keep] - a[keep]) ** 2))) if keep.any() else math.nan


def rmse_vs_mean(predicted: Sequence[float], actual: Sequence[float],
                 mean: float | Sequence[float]) -> dict[str, float]:
    """RMSE of ``predicted`` and of always predicting ``mean`` (the baseline a calibrated score must beat).

    ``mean`` is one value, or one per pair when pairs pooled from several models each have their own baseline.

    Example:
        >>> r = rmse_vs_mean([1.0, 3.0], [1.0, 3.0], mean=2.0)
        >>> r["rmse_calibrated"], r["rmse_mean"]
        (0.0, 1.0)
    """
    actual = np.asarray(actual, dtype=float)
    return {"rmse_calibrated": rmse(predicted, actual), "rmse_mean": rmse(np.broadcast_to(mean, actual.shape), actual)}


def json_safe(value: Any) -> Any:
    """``value`` (dicts, lists, numbers) with every NaN (a metric nothing could score) and infinity (a sum that
    overflowed) as None: JSON has neither.

    >>> json_safe({"auc": float("nan"), "folds": [0.5, float("nan")], "revenue": float("inf")})
    {'auc': None, 'folds': [0.5, None], 'revenue': None}
    """
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def _integer_grades(pool: object, grades: Sequence[int]) -> list[int]:
    """The grades' gains (:func:`gain`) as Python ints (ir-measures' relevance levels); a ValueError naming the pool
    otherwise."""
    values = np.asarray(grades, dtype=float)
    bad = values[~np.isfinite(values) | (values != np.rint(values))]
    if bad.size:
        raise ValueError(f"pool {pool!r}: grades must be integers (ir-measures relevance levels), got "
                         f"{float(bad[0])!r}; scale and round real-valued gains explicitly")
    return [gain(v) for v in values]
