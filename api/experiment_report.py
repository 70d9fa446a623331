"""An online experiment's outcome, from the UBI logs: per arm rates and revenue with confidence intervals and
significance, or an interleaving experiment's preference. Pure: UbiQuery / UbiEvent iterables in, an
:class:`ExperimentReport` out (``shopsearch experiment report`` reads the logs; :mod:`.report` renders it).

What is counted (per search: one UbiQuery whose query_attributes name the experiment):
- CTR, add-to-cart rate, purchase rate: the share of searches with at least one such action;
- revenue per search: the purchases' ``price`` x ``quantity`` summed per search, averaged over all searches (zeros
  included).
An event belongs to the search whose ``query_id`` it carries; an add_to_cart or purchase without one (checkout
pages rarely know it) goes to the same client's latest earlier search in the experiment that showed the product
(last touch). Events that carry another search's query_id are ignored.

Intervals and tests, baseline arm vs each other arm, at ``alpha``; every interval is at confidence 1 − alpha.
Arms are assigned per client, and one client's searches are alike (a keen shopper clicks often), so the client is
the independent unit: every figure above is a ratio of per-client sums (Σ searches with a click / Σ searches), its
variance by the delta method over clients (:func:`clustered_ratio`). Counting each search as a trial instead makes a
null difference "significant" about half the time with 30 searches a client (bench/RESULTS.md, session 15).
- rates: Wilson interval per arm at the effective sample size (searches over the design effect);
- revenue per search: the ratio ± t (clients − 1 df) standard errors;
- differences: interval and two-sided p from Welch's t on the two ratios' variances (Satterthwaite's df, over
  clients); p is nan ("n/a", never significant) when there is no test: an arm with fewer than 2 clients, or no
  variation at all within either arm (a t statistic over a zero standard error says nothing);
- interleaving: per search, the team with more credited clicks wins (shopsearch.reranker.interleaving); wins /
  losses / ties; p from the two-sided exact binomial (sign) test of wins against losses (ties left out); the
  candidate's share of decided searches with its Wilson interval, and the searches the sign test would need at that
  share for :data:`POWER` power (:func:`searches_needed`: a plan for how long to run, not a test). Here the search
  is the unit (the coin flips are drawn per result list, so a client repeating a query sees the same list: a
  caveat when few clients repeat many searches). Searches an interleaved client made sorted by other than
  relevance were served by the baseline alone (``query_attributes.not_interleaved``): they are counted in
  ``not_interleaved`` and left out.
A search with neither client_id nor session_id counts as a client of its own.

Searches served degraded (``query_attributes.degraded``: a stage cut short by its budget, the deadline or a
failure) are counted per arm and by reason: they did not show the arm's profile as designed, and when many did the
report compares the fallbacks rather than the profiles.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Sequence

from shopsearch.evaluation import json_safe
from shopsearch.reranker.experiments import INTERLEAVED
from shopsearch.reranker.interleaving import credit, preference
from shopsearch.timestamps import utc_time
from shopsearch.ubi import UbiEvent, UbiQuery

RATES = {"ctr": "click", "add_to_cart_rate": "add_to_cart", "purchase_rate": "purchase"}
REVENUE = "revenue_per_search"
POWER = 0.8  # the power a "searches needed" estimate plans for
CLUSTERED_TEST = "Welch t, clients as units"
METRIC_NAMES = {"ctr": "CTR", "add_to_cart_rate": "add-to-cart rate", "purchase_rate": "purchase rate",
                REVENUE: "revenue / search"}


@dataclass(frozen=True)
class Estimate:
    """A per-arm figure and its confidence interval at the report's level (nan bounds when there is too little
    data)."""

    value: float
    low: float
    high: float


@dataclass(frozen=True)
class ArmStats:
    """One arm's searches and outcomes."""

    arm: str
    searches: int
    clients: int
    metrics: dict[str, Estimate]  # RATES and REVENUE, in that order
    unpriced_purchases: int  # purchases without a price (counted as revenue 0)
    degraded: int = 0  # searches served degraded


@dataclass(frozen=True)
class ArmDelta:
    """One metric, baseline arm vs another arm: the difference (arm - baseline), its CI at the report's level, p
    (nan: no test possible) and significance."""

    arm: str
    metric: str
    baseline: float
    value: float
    ci_low: float
    ci_high: float
    p: float
    test: str  # CLUSTERED_TEST
    significant: bool

    @property
    def delta(self) -> float:
        """arm - baseline."""
        return self.value - self.baseline


@dataclass(frozen=True)
class Preference:
    """An interleaving experiment's outcome: which profile shoppers' clicks prefer."""

    baseline: str
    candidate: str
    searches: int
    wins: int  # searches where the candidate's picks got more clicks
    losses: int  # ... the baseline's
    ties: int  # equal (including no clicks)
    clicks: dict[str, int]  # credited clicks per profile
    share: Estimate  # the candidate's share of decided searches (wins / (wins + losses))
    p: float  # two-sided exact binomial test of wins vs losses
    significant: bool
    searches_needed: int | None = None  # at the observed share and decided rate (searches_needed); None: no lean


@dataclass(frozen=True)
class ExperimentReport:
    """Everything ``experiment report`` found for one experiment (render with :mod:`shopsearch.api.report`)."""

    name: str
    mode: str  # "ab" or "interleave"
    searches: int
    simulated_searches: int  # searches whose query_attributes.simulated is true
    first: str | None  # the first and last search's timestamps
    last: str | None
    alpha: float
    arms: tuple[ArmStats, ...]  # ab: baseline first; interleave: empty
    deltas: tuple[ArmDelta, ...]  # ab: each other arm vs the baseline, per metric
    preference: Preference | None  # interleave only
    degraded_searches: int = 0  # searches served degraded (interleave: either profile's list)
    degraded_reasons: dict[str, int] = field(default_factory=dict)  # reason code -> searches, most frequent first
    not_interleaved: int = 0  # interleave: searches served by the baseline alone (a sort other than relevance)

    @property
    def confidence(self) -> float:
        """The level of every interval: 1 - alpha."""
        return 1.0 - self.alpha

    @property
    def simulated(self) -> bool:
        """Whether any search in it was simulated traffic (the report then says SIMULATED)."""
        return self.simulated_searches > 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (the CLI's ``--json``); nan bounds become null."""
        return json_safe(asdict(self) | {"simulated": self.simulated})


def wilson(successes: float, trials: float, confidence: float = 0.95) -> Estimate:
    """A proportion with its Wilson score interval (nan for no trials); an effective (fractional) count is fine.

    >>> e = wilson(5, 10); (e.value, round(e.low, 3), round(e.high, 3))
    (0.5, 0.237, 0.763)
    """
    if trials <= 0:
        return Estimate(math.nan, math.nan, math.nan)
    z = _z(confidence)
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return Estimate(p, max(0.0, centre - half), min(1.0, centre + half))


def clustered_ratio(per_client: Sequence[tuple[float, float]]) -> tuple[float, float, int]:
    """Σy / Σn over clients, with the delta method's variance: ``(ratio, variance, clients)``.

    ``per_client``: one ``(y, n)`` per client: its searches with the action (or its revenue) and its searches.
    Clients are the independent units, so many searches of one client count as one draw. The variance is
    ``k / (k - 1) * Σ(y - ratio * n)² / (Σn)²`` (nan with fewer than 2 clients); with one search a client it is
    the binomial ``p (1 - p) / (n - 1)``.

    >>> r, v, k = clustered_ratio([(1, 1), (0, 1), (1, 1), (0, 1)]); (r, round(v, 4), k)
    (0.5, 0.0833, 4)
    >>> once, many = [(1, 1), (0, 1), (1, 1), (0, 1)], [(10, 10), (0, 10), (10, 10), (0, 10)]
    >>> [round(x, 12) for x in clustered_ratio(many)[:2]] == [round(x, 12) for x in clustered_ratio(once)[:2]]
    True
    """
    k = len(per_client)
    total = sum(n for _, n in per_client)
    if not k or not total:
        return math.nan, math.nan, k
    ratio = sum(y for y, _ in per_client) / total
    if k < 2:
        return ratio, math.nan, k
    return ratio, k / (k - 1) * sum((y - ratio * n) ** 2 for y, n in per_client) / total ** 2, k


def clustered_welch(a: Sequence[tuple[float, float]], b: Sequence[tuple[float, float]],
                    confidence: float = 0.95) -> tuple[float, float, float, float]:
    """Ratio of ``b`` minus ratio of ``a`` (per-client ``(y, n)`` as :func:`clustered_ratio` takes), with Welch's
    interval and two-sided p on the delta-method variances, Satterthwaite's df over clients:
    ``(delta, ci_low, ci_high, p)``; ``(delta, nan, nan, nan)`` when there is no test: a variance is undefined
    (fewer than 2 clients), or both are 0 (no variation within either arm: t would be infinite, p 0)."""
    from scipy.stats import t as student_t

    ra, va, ka = clustered_ratio(a)
    rb, vb, kb = clustered_ratio(b)
    delta = rb - ra
    se = math.sqrt(va + vb)
    if math.isnan(se) or se == 0:
        return delta, math.nan, math.nan, math.nan
    df = (va + vb) ** 2 / ((va ** 2 / (ka - 1) if va else 0.0) + (vb ** 2 / (kb - 1) if vb else 0.0))
    half = float(student_t.ppf(0.5 + confidence / 2, df)) * se
    return delta, delta - half, delta + half, float(2 * student_t.sf(abs(delta) / se, df))


def experiment_report(name: str, queries: Iterable[UbiQuery], events: Iterable[UbiEvent], *,
                      arms: Sequence[str] | None = None, alpha: float = 0.05) -> ExperimentReport:
    """Analyse experiment ``name`` from the logs.

    Args:
        name: the experiment (query_attributes.experiment).
        queries, events: the UBI logs (any order).
        arms: the arms in order, baseline first (the experiments file's order); default: the arms found in the
            logs, sorted by name (interleave: the teams found).
        alpha: significance level in (0, 1); intervals are at confidence 1 - alpha.

    Returns:
        The ExperimentReport (mode "interleave" when the searches were interleaved).

    Raises:
        ValueError: ``alpha`` outside (0, 1), no search of ``name`` in the logs, or ``arms`` not matching them.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1); got {alpha!r}")
    searches = [q for q in queries if (q.query_attributes or {}).get("experiment") == name]
    if not searches:
        raise ValueError(f"experiment {name!r}: no search in the logs was assigned to it")
    searches.sort(key=lambda q: utc_time(q.timestamp))
    outcome = _outcomes(searches, events)
    interleaved = any(q.query_attributes.get("arm") == INTERLEAVED for q in searches)
    # searches of interleaved clients served by the baseline alone (not by relevance): out of the preference
    shown = [q for q in searches if not q.query_attributes.get("not_interleaved")] if interleaved else searches
    reasons = Counter(str(r) for q in searches for r in set(_degraded(q)))
    common = dict(name=name, mode="interleave" if interleaved else "ab", searches=len(searches),
                  simulated_searches=sum(q.simulated for q in searches),
                  first=searches[0].timestamp, last=searches[-1].timestamp, alpha=float(alpha),
                  degraded_searches=sum(bool(_degraded(q)) for q in searches),
                  degraded_reasons=dict(reasons.most_common()), not_interleaved=len(searches) - len(shown))
    if interleaved:
        return ExperimentReport(**common, arms=(), deltas=(), preference=_preference(shown, outcome, arms, alpha))
    found = sorted({str(q.query_attributes.get("arm")) for q in searches})
    order = list(arms) if arms else found
    if len(set(order)) != len(order):
        raise ValueError(f"arms: {list(order)} names an arm twice")
    if not set(found) <= set(order):
        raise ValueError(f"arms: the logs have arms {found}; the arms given are {list(order)}")
    by_arm = {arm: [q for q in searches if q.query_attributes.get("arm") == arm] for arm in order}
    values = _metric_values(outcome)
    per_client = {arm: {m: _per_client(by_arm[arm], value) for m, value in values.items()} for arm in order}
    stats = {arm: _arm_stats(arm, by_arm[arm], per_client[arm], outcome, 1.0 - alpha) for arm in order}
    base = order[0]
    deltas = tuple(d for arm in order[1:]
                   for d in _deltas(stats[base], stats[arm], per_client[base], per_client[arm], alpha))
    return ExperimentReport(**common, arms=tuple(stats.values()), deltas=deltas, preference=None)


class _Outcome:
    """What happened after one search: actions taken, revenue, clicked products."""

    def __init__(self) -> None:
        self.actions: set[str] = set()
        self.revenue = 0.0
        self.unpriced = 0
        self.clicked: list[str] = []


def _outcomes(searches: list[UbiQuery], events: Iterable[UbiEvent]) -> dict[str, _Outcome]:
    """Each search's outcome (by query_id), events joined by query_id or, for carts and purchases without one,
    by last touch."""
    out = {q.query_id: _Outcome() for q in searches}
    # A search is found by its client_id and by its session_id: a checkout's event in shopsearch's own format
    # names only the session, though the search passed the storefront's client_id.
    by_key: dict[str, list[int]] = defaultdict(list)
    for i, q in enumerate(searches):  # oldest first
        for key in {q.client_id, q.query_attributes.get("session_id")} - {None, ""}:
            by_key[key].append(i)
    for ev in events:
        attrs = ev.event_attributes
        pid = attrs.object.object_id if attrs is not None and attrs.object is not None else None
        qid = ev.query_id if ev.query_id in out else None
        if ev.query_id is None and ev.action_name in ("add_to_cart", "purchase") and pid is not None:
            seen = sorted({i for key in {ev.client_id, ev.session_id} - {None, ""} for i in by_key.get(key, ())})
            qid = _last_touch([searches[i] for i in seen], pid, ev.timestamp)
        if qid is None:
            continue
        o = out[qid]
        o.actions.add(ev.action_name)
        if ev.action_name == "click" and pid is not None:
            o.clicked.append(pid)
        if ev.action_name == "purchase":
            price = attrs.price if attrs is not None else None
            if price is not None:
                o.revenue += price * (attrs.quantity or 1)
            else:
                o.unpriced += 1
    return out


def _client(q: UbiQuery) -> str:
    """The unit a search's client is counted as: its client_id, else its session, else the search itself."""
    return q.client_id or q.query_attributes.get("session_id") or f"search:{q.query_id}"


def _last_touch(searches: list[UbiQuery], pid: str, timestamp: str) -> str | None:
    """The latest search at or before ``timestamp`` that showed ``pid`` (searches oldest first)."""
    at = utc_time(timestamp)
    for q in reversed(searches):
        if utc_time(q.timestamp) <= at and pid in q.query_response_hit_ids:
            return q.query_id
    return None


def _per_client(searches: list[UbiQuery], value: Any) -> list[tuple[float, float]]:
    """``(Σ value(search), searches)`` per client (a search without a client is a client of its own)."""
    totals: dict[str, list[float]] = {}
    for q in searches:
        key = _client(q)
        t = totals.setdefault(key, [0.0, 0.0])
        t[0] += value(q)
        t[1] += 1
    return [(y, n) for y, n in totals.values()]


def _metric_values(outcome: dict[str, _Outcome]) -> dict[str, Any]:
    """Each metric's per-search value: 1/0 for the rates, the revenue for revenue per search."""
    values = {m: (lambda q, a=action: float(a in outcome[q.query_id].actions)) for m, action in RATES.items()}
    values[REVENUE] = lambda q: outcome[q.query_id].revenue
    return values


def _arm_stats(arm: str, searches: list[UbiQuery], per_client: dict[str, list[tuple[float, float]]],
               outcome: dict[str, _Outcome], confidence: float) -> ArmStats:
    """One arm's figures from its per-client sums (``per_client``: metric -> :func:`_per_client`), intervals at
    ``confidence``."""
    from scipy.stats import t as student_t

    n = len(searches)
    metrics = {}
    for metric, sums in per_client.items():
        ratio, var, k = clustered_ratio(sums)
        if metric == REVENUE:
            half = float(student_t.ppf(0.5 + confidence / 2, k - 1)) * math.sqrt(var) if k >= 2 else math.nan
            metrics[metric] = Estimate(ratio, ratio - half, ratio + half)
            continue
        if k < 2:  # one client: its searches are not independent trials, and no spread between clients exists
            metrics[metric] = Estimate(ratio, math.nan, math.nan)
            continue
        binomial = ratio * (1 - ratio) / n if n else math.nan
        design_effect = var / binomial if binomial > 0 and not math.isnan(var) else 1.0
        effective = n / max(1.0, design_effect)  # never narrower than independent searches would give
        interval = wilson(ratio * effective, effective, confidence)
        metrics[metric] = Estimate(ratio, interval.low, interval.high)  # the ratio itself, not ratio * e / e
    return ArmStats(arm, n, len({_client(q) for q in searches}), metrics,
                    sum(outcome[q.query_id].unpriced for q in searches),
                    degraded=sum(bool(_degraded(q)) for q in searches))


def _degraded(q: UbiQuery) -> list:
    """The reasons a search was served degraded ([] when it was not, or was logged before they were recorded)."""
    reasons = (q.query_attributes or {}).get("degraded") or []
    return list(reasons) if isinstance(reasons, (list, tuple)) else [reasons]


def _deltas(base: ArmStats, arm: ArmStats, base_sums: dict[str, list[tuple[float, float]]],
            arm_sums: dict[str, list[tuple[float, float]]], alpha: float) -> list[ArmDelta]:
    """Each metric, ``arm`` vs ``base``, clients as the units (:func:`clustered_welch` of their per-client sums),
    intervals at 1 - ``alpha``; a nan p (no test) is never significant."""
    out = []
    for metric in base.metrics:
        _, low, high, p = clustered_welch(base_sums[metric], arm_sums[metric], 1.0 - alpha)
        out.append(ArmDelta(arm.arm, metric, base.metrics[metric].value, arm.metrics[metric].value, low, high, p,
                            CLUSTERED_TEST, not math.isnan(p) and p < alpha))
    return out


def _preference(searches: list[UbiQuery], outcome: dict[str, _Outcome], arms: Sequence[str] | None,
                alpha: float) -> Preference:
    """Wins / losses / ties of the candidate over the baseline, one per interleaved search."""
    from scipy.stats import binomtest

    found = sorted({t for q in searches for t in q.query_attributes.get("teams") or ()})
    teams = list(arms) if arms else found
    if len(teams) != 2 or not set(found) <= set(teams):
        raise ValueError(f"arms: an interleaving experiment compares 2 profiles; the logs have teams {found}"
                         + (f", the arms given are {list(arms)}" if arms else ""))
    base, cand = teams
    wins = losses = 0
    clicks = dict.fromkeys(teams, 0)
    for q in searches:
        shown = q.query_attributes.get("teams") or []
        ids = q.query_response_hit_ids[:len(shown)]
        clicked = outcome[q.query_id].clicked
        for team, count in credit(ids, shown, clicked).items():
            clicks[team] = clicks.get(team, 0) + count
        winner = preference(ids, shown, clicked)
        wins += winner == cand
        losses += winner == base
    decided = wins + losses
    p = float(binomtest(wins, decided, 0.5).pvalue) if decided else 1.0
    return Preference(base, cand, len(searches), wins, losses, len(searches) - decided, clicks,
                      wilson(wins, decided, 1.0 - alpha), p, p < alpha,
                      searches_needed(wins, losses, len(searches), alpha))


def searches_needed(wins: int, losses: int, searches: int, alpha: float, power: float = POWER) -> int | None:
    """Searches in all (ties included) for the sign test of an interleaving experiment to reach ``alpha`` with
    ``power``, if the candidate's share of decided searches and the share of searches decided stay as observed
    (normal approximation to the binomial). The observed share is itself uncertain: a plan, not a verdict.

    Returns:
        None when no search was decided or wins equal losses (no lean to plan for).

    >>> searches_needed(60, 40, 200, 0.05)
    388
    """
    decided = wins + losses
    if not decided or wins == losses:
        return None
    share = wins / decided
    n = ((_z(1 - alpha) * 0.5 + _z(2 * power - 1) * math.sqrt(share * (1 - share))) / abs(share - 0.5)) ** 2
    return math.ceil(n * searches / decided)


def _z(confidence: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(0.5 + confidence / 2))


