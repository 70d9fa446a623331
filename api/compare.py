"""Compare two runs on the same judgments: means A -> B, per-query deltas, wins/losses/ties, paired significance.

Pure: rankings and qrels in, a :class:`CompareReport` out (the CLI does the searching, :mod:`.report` the
rendering). Per-query scores come from :func:`shopsearch.evaluation.evaluate`, so a judged query missing from
a run (or with no results) scores 0 there, exactly as in ``shopsearch eval``.

Significance (ranx style, ``random_seed=42``) on the per-query differences d = B - A of each metric:
- ``ttest``: paired Student t-test, t = mean(d) / (sd(d) / sqrt(n)), two-sided, n - 1 degrees of freedom;
- ``randomization``: paired sign-flip (Fisher) randomisation test, p = (#{|mean(d * s)| >= |mean(d)|} + 1) /
  (permutations + 1) over random signs s, seeded; exact (all 2^n sign vectors, no +1) when 2^n <= permutations.
Both p-values are reported; ``stat_test`` picks the one that marks a delta significant (p < ``alpha``).
With each delta comes its confidence interval at 1 - ``alpha`` (the paired t-test's, :func:`mean_ci`; 95% at the
default 0.05): it always agrees with the t-test's mark, and with the randomisation test's except near the edge (a
few large differences). With a few dozen queries it shows how large a gap the query set can resolve at all, which a
p-value alone does not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import product
from typing import Iterable, Mapping, Sequence

import numpy as np

from shopsearch.evaluation import METRICS, evaluate, json_safe, judged_rankings

STAT_TESTS = ("randomization", "ttest")
TIE_EPS = 1e-9  # per-query differences smaller than this are ties (float noise from the metric code)


@dataclass(frozen=True)
class MetricComparison:
    """One metric, A vs B, over the same queries."""

    name: str
    mean_a: float
    mean_b: float
    wins: int  # queries where B > A
    losses: int  # queries where B < A
    ties: int
    p_ttest: float
    p_randomization: float
    significant: bool  # p of the chosen test < alpha
    ci_low: float = math.nan  # confidence interval of the delta, at 1 - alpha
    ci_high: float = math.nan

    @property
    def delta(self) -> float:
        """mean B - mean A."""
        return self.mean_b - self.mean_a

    @property
    def relative(self) -> float | None:
        """delta / mean A (None when A's mean is 0)."""
        return self.delta / self.mean_a if self.mean_a else None


@dataclass(frozen=True)
class QueryScores:
    """One query's scores under A and B, and its text when known."""

    qid: str
    text: str
    a: dict[str, float]
    b: dict[str, float]

    def delta(self, metric: str) -> float:
        """B - A on ``metric``."""
        return self.b[metric] - self.a[metric]


@dataclass(frozen=True)
class CompareReport:
    """Everything a comparison found (render it with :mod:`shopsearch.api.report`)."""

    name_a: str
    name_b: str
    metrics: dict[str, MetricComparison]  # in the order asked for
    per_query: tuple[QueryScores, ...]  # in evaluation order
    missing_a: tuple[str, ...]  # judged qids with no results in A (scored 0)
    missing_b: tuple[str, ...]
    unjudged: tuple[str, ...]  # qids asked for without judgements (left out)
    stat_test: str
    alpha: float
    random_seed: int
    permutations: int
    judged_only: bool = False  # scored on judged products only (trec_eval -J)

    @property
    def queries(self) -> int:
        """How many queries were compared."""
        return len(self.per_query)

    @property
    def confidence(self) -> float:
        """The level of every interval: 1 - alpha."""
        return 1.0 - self.alpha

    def biggest(self, metric: str, n: int = 10) -> tuple[list[QueryScores], list[QueryScores]]:
        """The ``n`` largest wins (B - A > 0, largest first) and losses (most negative first); ties by qid."""
        wins = sorted((q for q in self.per_query if q.delta(metric) > TIE_EPS),
                      key=lambda q: (-q.delta(metric), q.qid))
        losses = sorted((q for q in self.per_query if q.delta(metric) < -TIE_EPS),
                        key=lambda q: (q.delta(metric), q.qid))
        return wins[:n], losses[:n]

    def to_dict(self) -> dict:
        """A JSON-able dict (the CLI's ``--json``); a NaN (one query's interval) becomes null."""
        return json_safe({
            "a": self.name_a, "b": self.name_b, "queries": self.queries, "stat_test": self.stat_test,
            "alpha": self.alpha, "confidence": self.confidence, "random_seed": self.random_seed,
            "permutations": self.permutations,
            "judged_only": self.judged_only,
            "metrics": {m.name: {"a": m.mean_a, "b": m.mean_b, "delta": m.delta, "wins": m.wins,
                                 "losses": m.losses, "ties": m.ties, "p_ttest": m.p_ttest,
                                 "p_randomization": m.p_randomization, "significant": m.significant,
                                 "ci": [m.ci_low, m.ci_high]}
                        for m in self.metrics.values()},
            "missing_a": list(self.missing_a), "missing_b": list(self.missing_b), "unjudged": list(self.unjudged),
            "per_query": {q.qid: {"text": q.text, "a": q.a, "b": q.b} for q in self.per_query},
        })


def compare_metric(name: str, mean_a: float, mean_b: float, diffs: Sequence[float], *,
                   stat_test: str = "randomization", alpha: float = 0.05, permutations: int = 10_000,
                   random_seed: int = 42) -> MetricComparison:
    """One metric's comparison from its means and per-query differences (B - A): wins / losses / ties, both
    paired tests, the CI at 1 - ``alpha``, and significance under ``stat_test`` at ``alpha``."""
    p_t, p_r = paired_ttest(diffs), randomization_test(diffs, permutations, random_seed)
    low, high = mean_ci(diffs, 1.0 - alpha)
    return MetricComparison(
        name=name, mean_a=mean_a, mean_b=mean_b, wins=sum(d > TIE_EPS for d in diffs),
        losses=sum(d < -TIE_EPS for d in diffs), ties=sum(abs(d) <= TIE_EPS for d in diffs), p_ttest=p_t,
        p_randomization=p_r, significant=(p_r if stat_test == "randomization" else p_t) < alpha,
        ci_low=low, ci_high=high)


def paired_ttest(diffs: Sequence[float]) -> float:
    """Two-sided p-value of a paired t-test on differences (1.0 when all are 0; 0.0 when all equal a non-zero).

    >>> round(paired_ttest([1.0, 2.0, 3.0]), 4)
    0.0742
    """
    from scipy.stats import t as student_t

    d = np.asarray(diffs, dtype=float)
    n = len(d)
    if n < 2:
        return 1.0
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    if sd <= TIE_EPS:
        return 1.0 if abs(mean) <= TIE_EPS else 0.0
    t = mean / (sd / math.sqrt(n))
    return float(2.0 * student_t.sf(abs(t), n - 1))


def mean_ci(diffs: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """Confidence interval of the mean difference: mean ± t(n - 1) * sd / sqrt(n) (the paired t-test's interval).

    (nan, nan) for fewer than 2 differences.

    >>> [round(x, 3) for x in mean_ci([1.0, 2.0, 3.0])]
    [-0.484, 4.484]
    """
    from scipy.stats import t as student_t

    d = np.asarray(diffs, dtype=float)
    if len(d) < 2:
        return math.nan, math.nan
    half = float(student_t.ppf(0.5 + confidence / 2, len(d) - 1)) * float(d.std(ddof=1)) / math.sqrt(len(d))
    return float(d.mean()) - half, float(d.mean()) + half


def randomization_test(diffs: Sequence[float], permutations: int = 10_000, random_seed: int = 42) -> float:
    """Two-sided paired sign-flip randomisation test on differences.

    Exact (every sign vector) when ``2**n <= permutations``; otherwise ``permutations`` seeded random sign
    vectors with the (count + 1) / (permutations + 1) estimate.

    Raises:
        ValueError: ``permutations`` < 1.

    >>> randomization_test([1.0, 2.0])  # 4 sign vectors, 2 as extreme as observed
    0.5
    """
    if not isinstance(permutations, int) or permutations < 1:
        raise ValueError(f"permutations must be an integer >= 1, got {permutations!r}")
    d = np.asarray(diffs, dtype=float)
    n = len(d)
    observed = abs(float(d.mean())) if n else 0.0
    if n == 0 or observed <= TIE_EPS:
        return 1.0
    if 2 ** n <= permutations:
        signs = np.array(list(product((1.0, -1.0), repeat=n)))
        means = np.abs(signs @ d) / n
        return float(np.mean(means >= observed - 1e-12))
    rng = np.random.default_rng(random_seed)
    signs = rng.choice((-1.0, 1.0), size=(permutations, n))
    means = np.abs(signs @ d) / n
    return float((np.sum(means >= observed - 1e-12) + 1) / (permutations + 1))


def parse_metrics(spec: str | Sequence[str]) -> tuple[str, ...]:
    """``"ndcg@10,mrr@10"`` (or a list) -> metric names, checked against shopsearch.evaluation.METRICS.

    Raises:
        ValueError: empty, or a name not in shopsearch.evaluation.METRICS (the message lists them).

    >>> parse_metrics("NDCG@10, mrr@10")
    ('ndcg@10', 'mrr@10')
    """
    names = [s.strip().lower() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    if not names:
        raise ValueError(f"metrics must name at least one of {', '.join(METRICS)}; got {spec!r}")
    for name in names:
        if name not in METRICS:
            raise ValueError(f"metrics has {name!r}; allowed: {', '.join(METRICS)}")
    return tuple(dict.fromkeys(names))


def compare(qrels: Iterable, run_a: Mapping[str, Sequence[str]], run_b: Mapping[str, Sequence[str]], *,
            names: tuple[str, str] = ("A", "B"), metrics: Sequence[str] = tuple(METRICS),
            qids: Sequence[str] | None = None, queries: Mapping[str, str] | None = None,
            stat_test: str = "randomization", alpha: float = 0.05, permutations: int = 10_000,
            random_seed: int = 42, judged_only: bool = False) -> CompareReport:
    """Compare run B against baseline run A.

    Args:
        qrels: :class:`shopsearch.judgments.Qrel` records (``shopsearch.judgments.read_qrels`` gives them).
        run_a, run_b: qid -> doc ids, best first.
        names: labels of A and B (e.g. profile names).
        metrics: names from ``shopsearch.evaluation.METRICS``.
        qids: queries to compare (default: every judged query); unjudged ones are listed, not scored.
        queries: qid -> query text, for the report.
        stat_test: "randomization" or "ttest": which p-value marks significance.
        alpha: significance level in (0, 1).
        permutations: random sign vectors of the randomisation test.
        random_seed: its seed.
        judged_only: score both runs on judged products only (``shopsearch.evaluation.evaluate``).

    Returns:
        A CompareReport.

    Raises:
        ValueError: a bad metric, ``stat_test``, ``alpha`` or ``permutations``; no judged query.

    >>> from shopsearch.judgments import Qrel
    >>> r = compare([Qrel("q", "a", 1)], {"q": ["b", "a"]}, {"q": ["a"]}, metrics=["mrr@10"])
    >>> r.metrics["mrr@10"].mean_a, r.metrics["mrr@10"].mean_b, r.metrics["mrr@10"].wins
    (0.5, 1.0, 1)
    """
    metrics = parse_metrics(metrics)
    if stat_test not in STAT_TESTS:
        raise ValueError(f"stat_test must be one of {', '.join(STAT_TESTS)}; got {stat_test!r}")
    if not isinstance(alpha, (int, float)) or not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1); got {alpha!r}")
    if not isinstance(permutations, int) or permutations < 1:
        raise ValueError(f"permutations must be an integer >= 1, got {permutations!r}")
    qrels = list(qrels)
    ea, eb = (evaluate(qrels, run, qids, judged_only=judged_only) for run in (run_a, run_b))
    texts = dict(queries or {})
    per_query = tuple(QueryScores(q, texts.get(q, ""), {m: ea.per_query[q][m] for m in metrics},
                                  {m: eb.per_query[q][m] for m in metrics}) for q in ea.per_query)
    out = {m: compare_metric(m, ea.metrics[m], eb.metrics[m], [q.delta(m) for q in per_query], stat_test=stat_test,
                             alpha=alpha, permutations=permutations, random_seed=random_seed) for m in metrics}
    # with judged_only, a ranking of unjudged products only is scored as no result at all
    scored = [judged_rankings(qrels, run) if judged_only else run for run in (run_a, run_b)]
    missing = [tuple(q.qid for q in per_query if not run.get(q.qid)) for run in scored]
    return CompareReport(name_a=names[0], name_b=names[1], metrics=out, per_query=per_query,
                         missing_a=missing[0], missing_b=missing[1], unjudged=ea.unjudged, stat_test=stat_test,
                         alpha=float(alpha), random_seed=random_seed, permutations=permutations,
                         judged_only=judged_only)
