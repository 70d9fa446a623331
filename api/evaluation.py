"""Offline relevance evaluation: read queries and TREC qrels, score rankings with ir-measures. No engine I/O here.

Metrics (declared once in :data:`METRICS`, computed by ir-measures):
- ``ndcg@10``: nDCG@10 with the graded judgements as linear gains (grade 3 counts 3x grade 1);
- ``recall@100``: share of the query's relevant products in the top 100;
- ``mrr@10``: reciprocal rank of the first relevant product in the top 10 (RR@10, averaged: MRR@10).
"Relevant" means grade >= 1 (:data:`RELEVANT_GRADE`): on crowdflower, grade 0 is "irrelevant" and 1..3 are
"somewhat" to "highly" relevant. Unjudged products count as not relevant. A judged query with no results, or
missing from the rankings, scores 0 on every metric instead of vanishing from the mean.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, NamedTuple, Sequence

import ir_measures
from ir_measures import Qrel, ScoredDoc, nDCG, R, RR

from shopsearch.plugin.judgments import iter_trec_qrels

RELEVANT_GRADE = 1
METRICS = {
    "ndcg@10": nDCG @ 10,
    "recall@100": R(rel=RELEVANT_GRADE) @ 100,
    "mrr@10": RR(rel=RELEVANT_GRADE) @ 10,
}


class Query(NamedTuple):
    """One evaluation query."""

    qid: str
    text: str


@dataclass(frozen=True)
class EvalReport:
    """Mean metrics over the evaluated queries, with every query's own scores kept."""

    metrics: dict[str, float]  # name in METRICS -> mean
    per_query: dict[str, dict[str, float]]  # qid -> name -> score
    queries: int  # judged queries evaluated (the mean's denominator)
    unjudged: tuple[str, ...] = field(default=())  # qids asked for that have no judgements (left out)


def read_queries(path: str | Path) -> list[Query]:
    """Read a ``qid<TAB>query text`` file (blank lines skipped).

    Raises:
        FileNotFoundError: no such file.
        ValueError: ``path:line: ...`` for a line without a tab, an empty qid or text, or a repeated qid.

    >>> read_queries("queries-dev.tsv")[0]  # doctest: +SKIP
    Query(qid='cfq001', text='16 gb memory card')
    """
    path = Path(path)
    out: list[Query] = []
    seen: set[str] = set()
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            qid, sep, text = line.partition("\t")
            qid, text = qid.strip(), text.strip()
            if not sep:
                raise ValueError(f"{path}:{n}: expected 'qid<TAB>query text', found no tab in {line[:80]!r}")
            if not qid or not text:
                raise ValueError(f"{path}:{n}: empty {'qid' if not qid else 'query text'} in {line[:80]!r}")
            if qid in seen:
                raise ValueError(f"{path}:{n}: qid {qid!r} appears twice")
            seen.add(qid)
            out.append(Query(qid, text))
    return out


def read_qrels(path: str | Path) -> list[Qrel]:
    """Read TREC qrels: ``qid iteration doc_id grade`` per line, whitespace-separated (blank lines skipped).

    Parsed by :func:`shopsearch.plugin.judgments.iter_trec_qrels` (a grade written ``2.0`` reads as 2).

    Raises:
        FileNotFoundError: no such file.
        ValueError: ``path:line: ...`` for a wrong field count, a non-integer grade or a repeated (qid, doc_id).

    >>> read_qrels("qrels-dev.txt")[0]  # doctest: +SKIP
    Qrel(query_id='cfq001', doc_id='cf00153', relevance=3, iteration='0')
    """
    path = Path(path)
    out: list[Qrel] = []
    seen: set[tuple[str, str]] = set()
    for t in iter_trec_qrels(path):  # field count and grade checked there
        if (t.query_id, t.doc_id) in seen:
            raise ValueError(f"{path}:{t.line}: judgement for ({t.query_id}, {t.doc_id}) appears twice")
        seen.add((t.query_id, t.doc_id))
        out.append(Qrel(t.query_id, t.doc_id, t.grade, t.iteration))
    return out


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
             qids: Sequence[str] | None = None) -> EvalReport:
    """Score rankings against judgements.

    Args:
        qrels: the judgements.
        rankings: qid -> doc ids, best first (at least 100 deep for recall@100 to mean what it says).
        qids: the queries to evaluate (default: every judged query). Those without judgements are left out and
            listed in ``EvalReport.unjudged``.

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
    run = to_run({q: docs for q, docs in rankings.items() if q in keep})
    if run:
        for m in ir_measures.iter_calc(list(METRICS.values()), [q for q in qrels if q.query_id in keep], run):
            if m.query_id in per_query:
                per_query[m.query_id][by_measure[m.measure]] = float(m.value)
    means = {name: sum(s[name] for s in per_query.values()) / len(per_query) for name in METRICS}
    return EvalReport(metrics=means, per_query=per_query, queries=len(evaluated), unjudged=unjudged)
