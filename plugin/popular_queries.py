"""What shoppers search: an aggregate of the logged queries (UBI ``ubi_queries`` records, either engine's store),
and the popular ones as autocomplete suggestions.

- :func:`aggregate_queries` folds query records into one :class:`QueryStats` per normalised query
  (:func:`shopsearch.text.normalise_query`): searches, distinct clients, searches that found nothing (the logged
  ``query_attributes.total``, else an empty hit list), simulated searches; the searches without a client id (no
  ``client_id`` or ``session_id`` was sent) count as one client together. Only first pages count (page 2 of a
  search is the same search); records of another index are left out (records without ``index`` are kept).
- :class:`PopularQueries` is one immutable snapshot for lookups: the queries at least ``min_clients`` shoppers
  searched (a query one shopper typed, perhaps with a name or an order number in it, is never shown to
  another) whose latest search found products (a query that finds nothing today is never suggested), the most
  popular ``max_queries`` of them. :meth:`PopularQueries.lookup` matches a prefix, with typos forgiven
  (:func:`prefix_distance`, rapidfuzz); :meth:`PopularQueries.near` gives the popular queries a few edits from a
  whole query (a zero-hit search's "did you mean").
- :class:`PopularQueryCache` refreshes the snapshot off the request path: :meth:`~PopularQueryCache.get` returns
  the current one at once and, when it is older than ``refresh_s``, starts one background refresh.

Simulated traffic (``query_attributes.simulated``) counts like any other (the demo's logs are simulated); the
merchandiser's report says how much of it there is.

    >>> q = [UbiQuery(query_id=f"q{i}", client_id=f"c{i}", user_query="Wireless Mouse", query_response_id="r",
    ...               query_response_hit_ids=["p1"], timestamp="2024-01-01T00:00:00Z") for i in range(2)]
    >>> PopularQueries(aggregate_queries(q)).lookup("wirless m", 5)
    ['wireless mouse']
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
from datetime import datetime, timezone
from typing import Callable, Iterable, NamedTuple, Sequence

from rapidfuzz.distance import Levenshtein

from shopsearch.settings import default
from shopsearch.text import normalise_query
from shopsearch.timestamps import format_timestamp, utc_time
from shopsearch.ubi import UbiQuery

log = logging.getLogger(__name__)


class QueryStats(NamedTuple):
    """One normalised query's figures in the logs."""

    query: str
    searches: int
    clients: int  # distinct client ids (searches without one count as one client together)
    zero_results: int  # searches that found nothing
    simulated: int  # searches flagged simulated (`shopsearch simulate-traffic`)
    last_seen: str  # the latest search's timestamp (ISO 8601)
    last_found: bool  # whether the latest search found products


_ANONYMOUS = ("anonymous",)  # the one client every search without a client id counts as


def found_nothing(record: UbiQuery) -> bool:
    """Whether the search found no products: its logged ``total`` is 0 (else: it served no hits). A search a
    merchandising rule redirected to a page of its own found what the merchandiser meant, not nothing."""
    if record.query_attributes.get("redirect"):
        return False
    total = record.query_attributes.get("total")
    if isinstance(total, int) and not isinstance(total, bool):
        return total == 0
    return not record.query_response_hit_ids


def first_page(record: UbiQuery) -> bool:
    """Whether the record is a first page (later pages repeat a search already counted; a page that is no number
    counts as one)."""
    return record.page is None or record.page <= 1


def aggregate_queries(records: Iterable[UbiQuery], *, index: str | None = None,
                      since: datetime | None = None) -> list[QueryStats]:
    """One :class:`QueryStats` per normalised query, most distinct clients first, then most searches, then A-Z.

    Args:
        records: UBI query records (any order).
        index: keep only records logged for this index (records without ``query_attributes.index`` are kept).
        since: keep only records at or after this time (aware datetime).
    Returns:
        The aggregate; blank queries, later pages and explained searches (a relevance console's) left out.
    Example:
        >>> r = UbiQuery(query_id="q1", user_query=" Lamp ", query_response_id="r", query_response_hit_ids=[],
        ...              timestamp="2024-01-01T00:00:00Z", query_attributes={"total": 0})
        >>> aggregate_queries([r])[0][:5]
        ('lamp', 1, 1, 1, 0)
    """
    acc: dict[str, list] = {}  # query -> [searches, clients, zero, simulated, last time, last found]
    for r in records:
        key = normalise_query(r.user_query)
        if not key or not first_page(r) or r.explained:  # a console's searches are no shopper's
            continue
        if index is not None and r.query_attributes.get("index", index) != index:
            continue
        when = utc_time(r.timestamp)
        if since is not None and when < since:
            continue
        a = acc.setdefault(key, [0, set(), 0, 0, None, True])
        a[0] += 1
        # Searches without a client id cannot be told apart: one shopper repeating a query would otherwise count
        # as many, and show it to everyone.
        a[1].add(r.client_id or _ANONYMOUS)
        nothing = found_nothing(r)
        a[2] += nothing
        a[3] += r.simulated
        if a[4] is None or when >= a[4]:
            a[4], a[5] = when, not nothing
    stats = [QueryStats(q, a[0], len(a[1]), a[2], a[3], format_timestamp(a[4]), a[5])
             for q, a in acc.items()]
    return sorted(stats, key=lambda s: (-s.clients, -s.searches, s.query))


def typo_budget(chars: int) -> int:
    """Edits forgiven in a typed prefix of ``chars`` characters: none under 4, one under 8, else two."""
    return 0 if chars < 4 else 1 if chars < 8 else 2


def prefix_distance(prefix: str, text: str, most: int) -> int | None:
    """The fewest edits (Levenshtein) that turn ``prefix`` into some prefix of ``text``; None when over ``most``.

    >>> prefix_distance("wirless", "wireless mouse", 1), prefix_distance("mouse", "wireless mouse", 2)
    (1, None)
    """
    best = None
    n = len(prefix)
    for length in range(max(n - most, 1), min(n + most, len(text)) + 1):
        d = Levenshtein.distance(prefix, text[:length], score_cutoff=most if best is None else best)
        if d <= most and (best is None or d < best):
            best = d
    return best


class PopularQueries:
    """The suggestible popular queries of one aggregate (see the module docstring).

    Args:
        stats: :func:`aggregate_queries`' output (most popular first).
        min_clients: distinct clients a query needs to be suggested (>= 1).
        max_queries: the most queries kept (the most popular); bounds memory and a typo scan.
    """

    def __init__(self, stats: Sequence[QueryStats] = (), *, min_clients: int = default("suggest_queries_min_clients"),
                 max_queries: int = default("suggest_queries_max")) -> None:
        if min_clients < 1:
            raise ValueError(f"min_clients={min_clients!r} must be >= 1")
        if max_queries < 1:
            raise ValueError(f"max_queries={max_queries!r} must be >= 1")
        kept = [s for s in stats if s.clients >= min_clients and s.last_found][:max_queries]
        self.ranked = [s.query for s in kept]  # most popular first
        self.rank = {q: i for i, q in enumerate(self.ranked)}
        self.sorted = sorted(self.ranked)

    def __len__(self) -> int:
        return len(self.ranked)

    def lookup(self, prefix: str, size: int) -> list[str]:
        """Up to ``size`` popular queries for a typed prefix: those starting with it (most popular first), then
        those within :func:`typo_budget` edits of it (closest, then most popular).

        >>> PopularQueries([QueryStats("red lamp", 3, 3, 0, 0, "", True)]).lookup("RED", 3)
        ['red lamp']
        """
        p = normalise_query(prefix)
        if not p or size < 1:
            return []
        lo = bisect.bisect_left(self.sorted, p)
        hi = bisect.bisect_left(self.sorted, p + "\U0010ffff")
        exact = sorted(self.sorted[lo:hi], key=self.rank.__getitem__)[:size]
        most = typo_budget(len(p))
        if len(exact) >= size or not most:
            return exact
        taken = set(exact)
        near = []
        for q in self.ranked:
            if q not in taken:
                d = prefix_distance(p, q, most)
                if d is not None:
                    near.append((d, self.rank[q], q))
        return exact + [q for _, _, q in sorted(near)[: size - len(exact)]]


    def near(self, query: str, size: int = 2) -> list[str]:
        """Up to ``size`` popular queries within :func:`typo_budget` edits of the whole ``query`` (not itself),
        closest then most popular: "did you mean" for a search that found nothing.

        >>> PopularQueries([QueryStats("velvet sofa", 3, 3, 0, 0, "", True)]).near("velvit sofa")
        ['velvet sofa']
        """
        q = normalise_query(query)
        most = typo_budget(len(q))
        if not most or size < 1:
            return []
        near = []
        for text in self.ranked:
            d = Levenshtein.distance(q, text, score_cutoff=most)
            if 0 < d <= most:
                near.append((d, self.rank[text], text))
        return [text for _, _, text in sorted(near)[:size]]


class PopularQueryCache:
    """The current :class:`PopularQueries`, refreshed in the background from the query log.

    Args:
        load: the query records (e.g. ``store.iter_queries``); called only by a refresh, never by ``get``.
        index: the served index (records of others are left out).
        refresh_s: how old a snapshot may get before ``get`` starts a refresh (> 0).
        window_days: only searches of the last this many days count (> 0).
        min_clients, max_queries: as :class:`PopularQueries`.
        clock: seconds (tests).

    >>> cache = PopularQueryCache(store.iter_queries, index="products", refresh_s=300)  # doctest: +SKIP
    >>> cache.get().lookup("lam", 5)  # doctest: +SKIP
    """

    def __init__(self, load: Callable[[], Iterable[UbiQuery]], *, index: str | None = None,
                 refresh_s: float = default("suggest_queries_refresh_s"),
                 window_days: float = default("suggest_queries_window_days"),
                 min_clients: int = default("suggest_queries_min_clients"),
                 max_queries: int = default("suggest_queries_max"),
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not refresh_s > 0:
            raise ValueError(f"refresh_s={refresh_s!r} must be > 0")
        if not window_days > 0:
            raise ValueError(f"window_days={window_days!r} must be > 0")
        self.load, self.index, self.refresh_s, self.window_days = load, index, refresh_s, window_days
        self.options = {"min_clients": min_clients, "max_queries": max_queries}
        self.clock = clock
        self.current = PopularQueries(**self.options)
        self.loaded_at: float | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def get(self) -> PopularQueries:
        """The current snapshot (empty before the first refresh); starts a background refresh when it is stale."""
        stale = self.loaded_at is None or self.clock() - self.loaded_at >= self.refresh_s
        if stale:
            with self._lock:
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(target=self._refresh_quietly, name="popular-queries",
                                                    daemon=True)
                    self._thread.start()
        return self.current

    def refresh(self) -> PopularQueries:
        """Rebuild the snapshot from the log now (what the background refresh runs); returns it.

        Raises:
            whatever ``load`` raises (EngineUnavailable, OSError, ValueError): the old snapshot stays.
        """
        since = datetime.fromtimestamp(time.time() - self.window_days * 86400, timezone.utc)
        fresh = PopularQueries(aggregate_queries(self.load(), index=self.index, since=since), **self.options)
        self.current, self.loaded_at = fresh, self.clock()
        return fresh

    def _refresh_quietly(self) -> None:
        try:
            self.refresh()
        except Exception as exc:  # noqa: BLE001 - a failed refresh keeps the old snapshot; retried after refresh_s
            self.loaded_at = self.clock()
            log.warning("popular queries not refreshed: %s", exc)

    def stop(self, timeout: float = 10.0) -> None:
        """Wait for a running refresh to end (tests and a worker's exit)."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
