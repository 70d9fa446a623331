"""Conversion-feature context at serving time: product CTR/CVR and shopper affinity from the API's event log.

The API appends events to ``<events_dir>/events-YYYY-MM-DD.jsonl`` (:class:`shopsearch.events.EventLog`). This
module tails those files into an :class:`~shopsearch.reranker.event_history.EventHistory`, bounded:

- new lines are read at most every ``refresh_s`` seconds, from where the last read stopped (files only grow);
- at most ``max_events`` new events are applied per refresh (the newest; a backlog is skipped, and logged);
- brand/category of interacted products come from ``lookup(product_id)`` (e.g. the engine), cached (LRU,
  ``max_products``), so affinity costs one lookup per distinct product ever interacted with;
- affinity is keyed by ``user_id``, or by the session for anonymous shoppers (``session:<session_id>``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Iterable

from shopsearch.events import Event, EventLog
from shopsearch.indexer.records import Product

from .event_history import AFFINITY_WEIGHTS, EventHistory
from .features import FeatureContext

log = logging.getLogger(__name__)

ProductLookup = Callable[[str], "Product | None"]


def affinity_key(user_id: str | None, session_id: str | None) -> str | None:
    """Whose affinity a search uses: the user, else the (anonymous) session, else nobody.

    >>> affinity_key(None, "s1")
    'session:s1'
    """
    if user_id:
        return user_id
    return f"session:{session_id}" if session_id else None


class _CachedProducts:
    """A read-only ``.get(pid)`` over ``lookup`` with an LRU cache (misses cached too)."""

    def __init__(self, lookup: ProductLookup, max_size: int) -> None:
        self.lookup, self.max_size = lookup, max_size
        self.active = True  # False while accounting an event that carries no affinity (no lookup needed)
        self._cache: OrderedDict[str, Product | None] = OrderedDict()

    def get(self, pid: str, default: Product | None = None) -> Product | None:
        if not self.active:
            return default
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
    """Tails the API's event log into running product stats and user/session affinities.

    Args:
        directory: the API's events directory.
        lookup: product id -> Product (or None), for the brand/category of interacted products.
        refresh_s: read new events at most this often (>= 0; 0 reads on every call).
        max_events: the most new events applied per refresh (>= 1).
        max_products: product lookups cached.
    Raises:
        ValueError: a bound out of range.

    >>> h = EventLogHistory("/var/shopsearch/events", lambda pid: None)  # doctest: +SKIP
    >>> h.context("u1", None, ["p1", "p2"]).stats["p1"].impressions  # doctest: +SKIP
    14
    """

    def __init__(self, directory: str | Path, lookup: ProductLookup, *, refresh_s: float = 10.0,
                 max_events: int = 100_000, max_products: int = 50_000) -> None:
        if refresh_s < 0:
            raise ValueError(f"refresh_s must be >= 0; got {refresh_s!r}")
        if max_events < 1 or max_products < 1:
            raise ValueError(f"max_events and max_products must be >= 1; got {max_events!r}, {max_products!r}")
        self.directory = Path(directory)
        self.refresh_s, self.max_events = refresh_s, max_events
        self._products = _CachedProducts(lookup, max_products)
        self.history = EventHistory(self._products)
        self._log = EventLog(self.directory)
        self._last_refresh = float("-inf")
        self._lock = threading.Lock()

    def refresh(self, force: bool = False) -> int:
        """Apply new events (at most every ``refresh_s`` unless ``force``); returns how many were applied."""
        now = time.monotonic()
        if not force and now - self._last_refresh < self.refresh_s:
            return 0
        self._last_refresh = now
        if not self.directory.is_dir():
            return 0
        events, skipped = self._log.read_new()
        if skipped:
            log.warning("event log: skipped %d invalid lines", skipped)
        if len(events) > self.max_events:
            log.warning("event log: %d new events, applying the newest %d", len(events), self.max_events)
            events = events[-self.max_events:]
        for e in events:
            # EventHistory asks for the product of every event; only affinity events need it (saves lookups).
            self._products.active = e.type in AFFINITY_WEIGHTS
            key = affinity_key(e.user_id, e.session_id)
            # EventHistory keys affinity by user_id: anonymous sessions get a session key of their own.
            self.history.add(e if key == e.user_id else _with_user(e, key))
        return len(events)

    def context(self, user_id: str | None, session_id: str | None, product_ids: Iterable[str]) -> FeatureContext:
        """The FeatureContext for one search: stats of ``product_ids`` and the shopper's affinity, as of now."""
        with self._lock:
            self.refresh()
            return self.history.context(affinity_key(user_id, session_id), list(product_ids))


def _with_user(e: Event, key: str | None) -> Event:
    """``e`` attributed to ``key`` (an anonymous session's affinity key)."""
    return e.model_copy(update={"user_id": key})
