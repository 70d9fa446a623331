"""Conversion-feature context at serving time: product CTR/CVR and shopper affinity from the API's event log.

The API appends events to ``<events_dir>/events-YYYY-MM-DD.jsonl`` (:class:`shopsearch.events.EventLog`). This
module tails those files into an :class:`~shopsearch.reranker.event_history.EventHistory`, bounded:

- a background thread reads new lines every ``refresh_s`` seconds, from where the last read stopped (files only
  grow); a search (:meth:`EventLogHistory.context`) only reads the history in memory, never a file or the engine;
- every new event is applied, a first read's whole backlog (a restart) too, so a restart rebuilds the memory the
  running server had; read and applied in chunks of at most ``max_events`` (each: its product lookups, then one
  hold of the lock), so a backlog neither sits in memory whole nor holds up searches;
- brand/category of interacted products come from ``lookup(product_id)`` (e.g. the engine), cached (LRU,
  ``max_products``), looked up by that thread before the history's lock is taken, so a slow engine never holds
  up a search;
- the history keeps at most ``max_products`` products' counts and ``max_users`` shoppers' affinities (least
  recently active dropped first), so memory stays bounded whatever ids the events name;
- affinity is keyed by ``user_id``, or by the session for anonymous shoppers (``session:<session_id>``);
- the same pass feeds the recommendations' memory (reranker/recommendations.py: recent products per shopper,
  co-purchases, the popular list), bounded by ``rec_limits``, so GET /recommendations never reads a file either.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Iterable

from shopsearch.events import Event, EventLog
from shopsearch.indexer.records import Product
from shopsearch.settings import default

from .event_history import AFFINITY_WEIGHTS, EventHistory, affinity_key, by_affinity
from .features import FeatureContext
from .recommendations import RecInputs, RecLimits, RecommendationMemory, top_popular

log = logging.getLogger(__name__)

ProductLookup = Callable[[str], "Product | None"]



class _CachedProducts:
    """A read-only ``.get(pid)`` over ``lookup`` with an LRU cache (misses cached too)."""

    def __init__(self, lookup: ProductLookup, max_size: int) -> None:
        self.lookup, self.max_size = lookup, max_size
        self._cache: OrderedDict[str, Product | None] = OrderedDict()

    def get(self, pid: str, default: Product | None = None) -> Product | None:
        if pid in self._cache:
            self._cache.move_to_end(pid)
            return self._cache[pid]
        try:
            product = self.lookup(pid)
        except Exception as exc:  # noqa: BLE001 - an engine hiccup must not break the search; retry next time
            log.warning("product lookup for affinity failed (%s): %s", pid, exc)
            return default
        self._cache[pid] = product
        if len(self._cache) > self.max_size:
            self._cache.popitem(last=False)
        return product if product is not None else default


class EventLogHistory:
    """Tails the API's event log into running product stats and user/session affinities (module docstring).

    Args:
        directory: the API's events directory.
        lookup: product id -> Product (or None), for the brand/category of interacted products.
        refresh_s: how often the background thread reads new events (>= 0; 0: no thread, call :meth:`refresh`).
        max_events: the most events applied per chunk: one hold of the lock (>= 1; a refresh applies them all).
        max_products: products whose counts are kept, and product lookups cached (>= 1).
        max_users: shoppers whose affinity is kept (>= 1).
        rec_limits: the recommendations' memory bounds (default: ``max_users`` shoppers, ``max_products``
            co-purchase products).
    Raises:
        ValueError: a bound out of range.

    >>> h = EventLogHistory("/var/shopsearch/events", lambda pid: None)  # doctest: +SKIP
    >>> h.refresh(); h.context("u1", None, ["p1", "p2"]).stats["p1"].impressions  # doctest: +SKIP
    14
    """

    def __init__(self, directory: str | Path, lookup: ProductLookup, *, refresh_s: float = 10.0,
                 max_events: int = 100_000, max_products: int = default("history_max_products"),
                 max_users: int = default("history_max_users"),
                 rec_limits: RecLimits | None = None) -> None:
        if refresh_s < 0:
            raise ValueError(f"refresh_s must be >= 0; got {refresh_s!r}")
        if min(max_events, max_products, max_users) < 1:
            raise ValueError(f"max_events, max_products and max_users must be >= 1; got {max_events!r}, "
                             f"{max_products!r}, {max_users!r}")
        self.directory = Path(directory)
        self.refresh_s, self.max_events = refresh_s, max_events
        self._products = _CachedProducts(lookup, max_products)
        self.history = EventHistory({}, max_products=max_products, max_users=max_users)
        self.recommendations = RecommendationMemory(
            rec_limits or RecLimits(max_clients=max_users, max_pair_products=max_products))
        self._log = EventLog(self.directory)
        self._lock = threading.Lock()  # guards the history: held by a search's read and by applying a batch
        self._refresh_lock = threading.Lock()  # one refresh at a time
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._loaded = threading.Event()  # set when a first pass has read the log
        self._stop = threading.Event()

    def refresh(self) -> int:
        """Read and apply the events appended since the last refresh; returns how many were applied.

        All of them, read and applied in chunks of ``max_events``: skipping part of a backlog would leave a
        restarted server without the co-purchases and recent products the running one had. Product lookups (for
        affinity) happen before the history's lock is taken; only applying a chunk holds it.
        """
        with self._refresh_lock:
            if not self.directory.is_dir():
                return 0
            applied = skipped = 0
            while True:  # a chunk read, then applied: a restart's backlog never sits in memory whole
                events, bad = self._log.read_new(self.max_events)
                skipped += bad
                self._apply(events)
                applied += len(events)
                if len(events) < self.max_events:
                    break
            if skipped:
                log.warning("event log: skipped %d torn or invalid lines", skipped)
            if applied > self.max_events:
                log.info("event log: applied %d new events in chunks of %d", applied, self.max_events)
            if applied:
                with self._lock:
                    self.recommendations.set_popular(top_popular(self.history.click_purchase_counts(),
                                                                 self.recommendations.limits.popular_size))
            self._loaded.set()
            return applied

    def _apply(self, events: list[Event]) -> None:
        """Apply one chunk, in order, to the history and the recommendations' memory."""
        # Only affinity events need their product; look each distinct one up now, outside the lock.
        products = {pid: product for pid in {e.product_id for e in events if e.type in AFFINITY_WEIGHTS}
                    if (product := self._products.get(pid)) is not None}
        with self._lock:
            self.history.products = products
            for e in events:
                keyed = by_affinity(e)
                self.history.add(keyed)
                self.recommendations.add(e, keyed.user_id)
            self.history.products = {}

    def start(self) -> None:
        """Start the background refresh thread (once; none when ``refresh_s`` is 0). Its first pass runs at once."""
        if self.refresh_s == 0 or self._thread is not None:
            return
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="event-history-refresh", daemon=True)
                self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the background thread (tests, a worker's exit)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            try:
                self.refresh()
            except Exception as exc:  # noqa: BLE001 - a bad read must not end the thread; the next pass retries
                log.warning("event history refresh failed (%s: %s)", type(exc).__name__, exc)
            if self._stop.wait(self.refresh_s):
                return

    def context(self, user_id: str | None, session_id: str | None, product_ids: Iterable[str]) -> FeatureContext:
        """The FeatureContext for one search: stats of ``product_ids`` and the shopper's affinity, from memory
        (no file read, no lookup; the first call starts the background refresh)."""
        self.start()
        with self._lock:
            return self.history.context(affinity_key(user_id, session_id), list(product_ids))


    def recommendation_inputs(self, client_id: str | None, seeds: list[str], context: str) -> RecInputs:
        """What GET /recommendations needs for shopper ``client_id`` (a user id, or an anonymous session's id), from
        memory (no lookup); see :meth:`RecommendationMemory.inputs`. The first call reads the log once itself before
        it starts the background refresh: lists from an empty memory would answer a shopper with history, or the
        popular fallback, with nothing."""
        if not self._loaded.is_set():
            try:
                self.refresh()
            except Exception as exc:  # noqa: BLE001 - as the thread's pass: the memory answers, the thread retries
                log.warning("event history first read failed (%s: %s)", type(exc).__name__, exc)
        self.start()
        with self._lock:
            key = self.recommendations.client(client_id)
            return self.recommendations.inputs(key, seeds, self.history.affinity(key), context=context)

