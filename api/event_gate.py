"""What POST /events checks before an event may touch the history: trust, idempotency and caps.

1. **Trust** (:meth:`EventGate.check`): an event naming a ``query_id`` must carry that hit's signed token
   (api/hit_tokens.py): signed by our key for this query and this product, and at most ``event_max_age_s`` old.
   An event without a query that names a product must name one the catalog holds: checked with the engine's
   document lookup, remembered in a bounded LRU (``event_known_products``; unknown ids for a minute), so a flood
   of ids costs at most one lookup per id and never grows memory. These lookups happen only here, never inside a
   /search.
2. **Idempotency** (:meth:`EventGate.admit`): a client's ``event_id`` seen before (the last ``event_recent_ids``
   ids, per worker) marks the event a duplicate: answered, not stored again.
3. **Caps** (:meth:`EventGate.admit`): at most ``event_session_cap`` events per session and
   ``event_product_cap`` per (session, product) in each ``event_cap_window_s``, so one client can add only so much
   to the history; the counters are a bounded LRU too.

Rejections are :class:`Rejected` (the API answers them as JSON 4xx naming the field). State is per worker
process (documented in docs/security.md): the signed tokens need none, the recent ids and caps are in memory.

    >>> gate = EventGate(HitSigner(b"k" * 32), lambda pid: pid == "p1", GateLimits())  # doctest: +SKIP
    >>> with gate.admit(parse_event_batch(body, 500)) as admitted:  # doctest: +SKIP
    ...     store(admitted.fresh)
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from contextlib import contextmanager
from typing import Callable, Iterator, NamedTuple, Sequence

from shopsearch.settings import Settings
from shopsearch.ubi import ParsedUbiEvent

from .hit_tokens import HitSigner, TokenError

UNKNOWN_TTL_S = 60.0  # an unknown product id is looked up again after this long (it may have been indexed since)
ProductExists = Callable[[str], bool]


class Rejected(ValueError):
    """An event the gate refuses: ``status`` (400, 429), ``code``, the JSON path ``parameter`` and a message."""

    def __init__(self, status: int, code: str, parameter: str, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.parameter, self.retry_after = status, code, parameter, retry_after


class GateLimits(NamedTuple):
    """The gate's bounds (settings of the same names, section [security])."""

    event_max_age_s: float = 86400.0
    event_session_cap: int = 1000
    event_product_cap: int = 20
    event_cap_window_s: float = 3600.0
    event_recent_ids: int = 100_000
    event_known_products: int = 50_000

    @classmethod
    def from_settings(cls, settings: Settings) -> "GateLimits":
        """The settings' values."""
        return cls(*(getattr(settings, name) for name in cls._fields))


class Admitted(NamedTuple):
    """A batch past the gate: the events to store, and the client event ids already stored (duplicates)."""

    fresh: list[ParsedUbiEvent]
    duplicates: list[str]


class Lru:
    """A dict of at most ``max_size`` entries; the least recently set or read goes first."""

    def __init__(self, max_size: int) -> None:
        if max_size < 1:
            raise ValueError(f"max_size must be >= 1; got {max_size!r}")
        self.max_size = max_size
        self._items: OrderedDict[str, object] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: str) -> bool:
        return key in self._items

    def get(self, key: str, default: object = None) -> object:
        """The value (marked recently used), or ``default``."""
        if key not in self._items:
            return default
        self._items.move_to_end(key)
        return self._items[key]

    def set(self, key: str, value: object) -> None:
        """Store ``value``, dropping the least recently used entry when full."""
        self._items[key] = value
        self._items.move_to_end(key)
        if len(self._items) > self.max_size:
            self._items.popitem(last=False)


class EventGate:
    """Trust checks, duplicate detection and per-session/per-product caps for POST /events (module docstring).

    Args:
        signer: checks hit tokens.
        product_exists: product id -> whether the catalog holds it (an engine lookup; errors propagate).
        limits: the bounds.
        clock: epoch seconds (tests move it).
    """

    def __init__(self, signer: HitSigner, product_exists: ProductExists, limits: GateLimits,
                 clock: Callable[[], float] = time.time) -> None:
        self.signer, self.product_exists, self.limits, self.clock = signer, product_exists, limits, clock
        self._lock = threading.Lock()
        self.recent_ids = Lru(limits.event_recent_ids)
        self.known_products = Lru(limits.event_known_products)  # id -> True, or the time it was found missing
        # Window counters: "s\0<session>" and "p\0<session>\0<product>" -> (window start, count).
        self.counters = Lru(2 * limits.event_known_products)

    def check(self, batch: Sequence[ParsedUbiEvent]) -> None:
        """Refuse the batch (all or nothing) if any event fails the trust checks.

        Raises:
            Rejected: 400 ``missing_token`` / ``invalid_token`` / ``stale_query`` naming the token (or the query_id),
                400 ``missing_product`` (a query_id with no product), 400 ``unknown_product`` naming the product.
            EngineUnavailable: the product lookup failed (503).
        """
        now = self.clock()
        for item in batch:
            pid = item.product_id
            if item.ubi.query_id is not None:
                if pid is None:
                    raise Rejected(400, "missing_product", item.path("product_id"),
                                   f"{item.path('product_id')} is required with a query_id (the hit acted on)")
                try:
                    self.signer.verify(item.ubi.query_id, pid, item.token, now, self.limits.event_max_age_s)
                except TokenError as exc:
                    code = {"missing": "missing_token", "stale": "stale_query"}.get(exc.reason, "invalid_token")
                    field = "query_id" if exc.reason == "stale" else "token"
                    raise Rejected(400, code, item.path(field), f"{item.path(field)}: {exc}") from None
            elif pid is not None and not self._exists(pid):
                raise Rejected(400, "unknown_product", item.path("product_id"),
                               f"{item.path('product_id')}: no product {pid!r} in the catalog")

    def _exists(self, pid: str) -> bool:
        """Whether the catalog holds ``pid``: remembered answers first, else one lookup."""
        with self._lock:
            known = self.known_products.get(pid)
        if known is True:
            return True
        if isinstance(known, float) and self.clock() - known < UNKNOWN_TTL_S:
            return False
        exists = bool(self.product_exists(pid))
        with self._lock:
            self.known_products.set(pid, True if exists else self.clock())
        return exists

    @contextmanager
    def admit(self, batch: Sequence[ParsedUbiEvent]) -> Iterator[Admitted]:
        """Split off duplicates and enforce the caps; the ids and counts are recorded only when the ``with`` body
        (storing the fresh events) succeeds. Batches are admitted one at a time per process.

        Raises:
            Rejected: 429 ``session_cap`` / ``product_cap`` naming the session or product (nothing recorded).
        """
        with self._lock:
            fresh: list[ParsedUbiEvent] = []
            duplicates: list[str] = []
            seen: set[str] = set()
            for item in batch:
                eid = item.ubi.event_id
                if item.client_event_id and eid is not None and (eid in self.recent_ids or eid in seen):
                    duplicates.append(eid)
                    continue
                if item.client_event_id and eid is not None:
                    seen.add(eid)
                fresh.append(item)
            counts = self._counts(fresh)
            yield Admitted(fresh, duplicates)
            for eid in seen:
                self.recent_ids.set(eid, True)
            for key, (start, count) in counts.items():
                self.counters.set(key, (start, count))

    def _counts(self, fresh: Sequence[ParsedUbiEvent]) -> dict[str, tuple[float, int]]:
        """The window counters after ``fresh``; raises Rejected when one passes its cap."""
        now, lim = self.clock(), self.limits
        counts: dict[str, tuple[float, int]] = {}
        for item in fresh:
            session = item.session_key or "-"
            keys = [(f"s\0{session}", lim.event_session_cap, "session_cap", item.path("session_id"),
                     f"session {session!r}")]
            if item.product_id is not None:
                keys.append((f"p\0{session}\0{item.product_id}", lim.event_product_cap, "product_cap",
                             item.path("product_id"), f"product {item.product_id!r} from session {session!r}"))
            for key, cap, code, path, what in keys:
                start, count = counts.get(key) or self.counters.get(key) or (now, 0)
                if now - start >= lim.event_cap_window_s:
                    start, count = now, 0
                if count + 1 > cap:
                    retry = max(1, int(start + lim.event_cap_window_s - now))
                    raise Rejected(429, code, path, f"{path}: at most {cap} events for {what} per "
                                                    f"{lim.event_cap_window_s:g} s; retry in {retry} s", retry)
                counts[key] = (start, count + 1)
        return counts
