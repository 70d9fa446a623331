"""``shopsearch report queries``: what shoppers search, for a merchandiser: the top queries, the queries that
find nothing, and the queries whose results shoppers rarely click.

Figures come from the UBI logs (either engine's store): searches per normalised query from
:func:`shopsearch.plugin.popular_queries.aggregate_queries`; click-through from the first-page result lists and
their clicks joined by ``query_id`` (:func:`shopsearch.reranker.click_models.serp_sessions`): a query's CTR is
the share of its result lists with at least one click, reported only with at least ``min_impressions`` lists.
Rendered by :mod:`.report` (markdown and HTML, the compare report's style).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Iterable, NamedTuple

from shopsearch.plugin.popular_queries import QueryStats, aggregate_queries, first_page
from shopsearch.reranker.click_models import serp_sessions
from shopsearch.timestamps import utc_time
from shopsearch.ubi import UbiEvent, UbiQuery


class QueryCtr(NamedTuple):
    """One query's click-through: first-page result lists shown, lists with at least one click."""

    query: str
    impressions: int
    clicked: int

    @property
    def ctr(self) -> float:
        return self.clicked / self.impressions if self.impressions else 0.0


@dataclass(frozen=True)
class QueriesReport:
    """The report's figures. ``simulated``: searches flagged as simulated traffic, of ``searches``."""

    searches: int
    distinct_queries: int
    simulated: int
    first: str | None
    last: str | None
    index: str | None
    since: str | None
    min_impressions: int
    overall_ctr: float | None
    top: tuple[QueryStats, ...]
    zero_results: tuple[QueryStats, ...]
    low_ctr: tuple[QueryCtr, ...]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["top"] = [s._asdict() for s in self.top]
        d["zero_results"] = [s._asdict() for s in self.zero_results]
        d["low_ctr"] = [{"query": c.query, "impressions": c.impressions, "clicked": c.clicked, "ctr": c.ctr}
                        for c in self.low_ctr]
        return d


def queries_report(queries: Iterable[UbiQuery], events: Iterable[UbiEvent], *, index: str | None = None,
                   since: datetime | None = None, top: int = 20, min_impressions: int = 10) -> QueriesReport:
    """The merchandiser's report over the logs.

    Args:
        queries, events: the UBI records.
        index: only searches of this index (records without one are kept).
        since: only searches at or after this time (aware datetime).
        top: rows per list (>= 1).
        min_impressions: result lists a query needs before its CTR is reported (>= 1).
    Returns:
        The report: top queries (most distinct clients, then searches), zero-result queries (most searches that
        found nothing first), low-CTR queries (lowest CTR first, then most lists).
    Raises:
        ValueError: ``top`` or ``min_impressions`` under 1.
    """
    if top < 1:
        raise ValueError(f"top={top!r} must be >= 1")
    if min_impressions < 1:
        raise ValueError(f"min_impressions={min_impressions!r} must be >= 1")
    kept = [q for q in queries if (index is None or q.query_attributes.get("index", index) == index)
            and (since is None or utc_time(q.timestamp) >= since)]
    stats = aggregate_queries(kept, index=index, since=since)
    # a relevance console's explained searches are no shopper's (as aggregate_queries and the CTR leave them out)
    counted = [q for q in kept if first_page(q) and q.user_query.strip() and not q.explained]
    lists: dict[str, list[int]] = {}
    for s in serp_sessions(kept, events):
        row = lists.setdefault(s.query, [0, 0])
        row[0] += 1
        row[1] += any(s.clicked)
    shown = sum(r[0] for r in lists.values())
    ctrs = [QueryCtr(q, n, c) for q, (n, c) in lists.items() if n >= min_impressions]
    times = [q.timestamp for q in sorted(counted, key=lambda q: utc_time(q.timestamp))]
    zero = sorted((s for s in stats if s.zero_results), key=lambda s: (-s.zero_results, -s.searches, s.query))
    return QueriesReport(
        searches=len(counted), distinct_queries=len(stats), simulated=sum(s.simulated for s in stats),
        first=times[0] if times else None, last=times[-1] if times else None, index=index,
        since=since.isoformat() if since else None, min_impressions=min_impressions,
        overall_ctr=sum(r[1] for r in lists.values()) / shown if shown else None,
        top=tuple(stats[:top]), zero_results=tuple(zero[:top]),
        low_ctr=tuple(sorted(ctrs, key=lambda c: (c.ctr, -c.impressions, c.query))[:top]))
