"""What POST /events checks before an event may touch the history: trust, idempotency and caps.

1. **Trust** (:meth:`EventGate.check`): an event naming a ``query_id`` must carry that hit's signed token
   (api/hit_tokens.py): signed by our key for this query and this product, and at most ``event_max_age_s`` old.
   An event without a query that names a product must name one the catalog holds: checked with the engine's
   document lookup, remembered in a bounded LRU (``event_known_products``; unknown ids for a minute, known ones
   for ten, so a deleted product stops taking events), so a flood of ids costs at most one lookup per id and never
   grows memory. A purchase's ``price`` more than :data:`PRICE_SLACK` times the catalog's price is refused (revenue
   is summed from purchase prices in experiment reports). These lookups happen only here, never inside a /search.
2. **Idempotency** (:meth:`EventGate.admit`): a client's ``event_id`` seen before marks the event a duplicate:
   answered, not stored again. The id is scoped to the event's client and session
   (:attr:`~shopsearch.ubi.UbiEvent.stored_id`), so one client's ids never make another's events duplicates.
   The ids are kept in Redis when ``redis_url`` is set (:class:`RedisRecentIds`, for ``event_max_age_s``), so a
   retry that reaches another worker or host is recognised too: a batch's ids are claimed at once (one Lua script)
   before its events are stored, so of two copies arriving at two workers at once one is stored and the other
   answered 409 (retry after a second). Otherwise the last ``event_recent_ids`` ids of this worker
   (:class:`MemoryRecentIds`).
3. **Caps** (:meth:`EventGate.admit`): at most ``event_session_cap`` events per session and
   ``event_product_cap`` per (session, product) in each ``event_cap_window_s``, so one client can add only so much
   to the history; impressions, which refining shoppers send for the same top products list after list, count
   toward ``event_impression_cap`` per (session, product) instead; the counters are a bounded LRU too.

Rejections are :class:`Rejected` (the API answers them as JSON 4xx naming the field). The signed tokens need no
state; the caps are per worker process (documented in docs/security.md).

    >>> gate = EventGate(HitSigner(b"k" * 32), lambda pid: pid == "p1", GateLimits())  # doctest: +SKIP
    >>> with gate.admit(parse_event_batch(body, 500)) as admitted:  # doctest: +SKIP
    ...     store(admitted.fresh)
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from contextlib import contextmanager, suppress
from typing import Any, Callable, Iterable, Iterator, Mapping, NamedTuple, Sequence

from shopsearch.plugin.engine import EngineUnavailable
from shopsearch.settings import Settings, default
from shopsearch.ubi import ParsedUbiEvent

from .hit_tokens import HitSigner, TokenError

log = logging.getLogger(__name__)

UNKNOWN_TTL_S = 60.0  # an unknown product id is looked up again after this long (it may have been indexed since)
KNOWN_TTL_S = 600.0  # a known one too (it may have been deleted, or repriced, since)
# An event's unit price may exceed the catalog's (taxes, options), but not by this factor: a forged price would
# otherwise be any revenue an attacker likes in an experiment report.
PRICE_SLACK = 2.0
PRICE_FLOOR = 1.0  # ... and a free product's (price 0) purchase may carry up to this (a fee, rounding)
CLAIM_TTL_S = 30  # a claimed event id whose worker died before storing it is free again after this long
# product id -> its stored fields (``price`` read from them), or None when the catalog does not hold it; a plain
# True/False (tests) says it exists with no known price.
FindProduct = Callable[[str], "Mapping[str, Any] | bool | None"]


class _Known(NamedTuple):
    """A product the catalog held when looked up: its price then (None: none stored), and when."""

    price: float | None
    at: float


class Rejected(ValueError):
    """An event the gate refuses: ``status`` (400, 429), ``code``, the JSON path ``parameter`` and a message."""

    def __init__(self, status: int, code: str, parameter: str, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.parameter, self.retry_after = status, code, parameter, retry_after


class GateLimits(NamedTuple):
    """The gate's bounds (settings of the same names, section [security])."""

    event_max_age_s: float = default("event_max_age_s")
    event_session_cap: int = default("event_session_cap")
    event_product_cap: int = default("event_product_cap")
    event_impression_cap: int = default("event_impression_cap")
    event_cap_window_s: float = default("event_cap_window_s")
    event_recent_ids: int = default("event_recent_ids")
    event_known_products: int = default("event_known_products")

    @classmethod
    def from_settings(cls, settings: Settings) -> "GateLimits":
        """The settings' values."""
        return cls(*(getattr(settings, name) for name in cls._fields))


class Admitted(NamedTuple):
    """A batch past the gate: the events to store, and the client event ids already stored (duplicates)."""

    fresh: list[ParsedUbiEvent]
    duplicates: list[str]


class Claimed(NamedTuple):
    """What :meth:`MemoryRecentIds.claim` / :meth:`RedisRecentIds.claim` found for the keys asked: those already
    stored (duplicates) and those another worker is storing right now (busy: then nothing was claimed); else the
    rest are now claimed under ``token``."""

    stored: set[str]
    busy: set[str]
    token: str = ""


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


class MemoryRecentIds:
    """The last ``max_size`` client event ids of this process (the gate claims them under its lock, so no other
    request of this process is storing one at the same time)."""

    def __init__(self, max_size: int) -> None:
        self.ids = Lru(max_size)

    def __len__(self) -> int:
        return len(self.ids)

    def claim(self, keys: Sequence[str]) -> Claimed:
        """Which of ``keys`` are already stored; the others are claimed (nothing to record until :meth:`add`)."""
        return Claimed({k for k in keys if k in self.ids}, set())

    def release(self, keys: Iterable[str], token: str) -> None:
        """Give back claimed keys whose events were not stored (nothing to undo in memory)."""

    def add(self, keys: Iterable[str]) -> None:
        """Record claimed keys as stored."""
        for k in keys:
            self.ids.set(k, True)


class RedisRecentIds:
    """Client event ids in Redis, shared by every worker and host on that Redis: ``p:<token>`` while the request
    holding that token stores the event (at most ``CLAIM_TTL_S``), then ``1`` (stored) for ``ttl_s`` seconds.

    Raises (from every method): :class:`~shopsearch.plugin.engine.EngineUnavailable` when Redis is unreachable,
    so POST /events answers 503 and the client retries (nothing is stored without the check).
    """

    PREFIX = "shopsearch:event-id:"
    STORED = b"1"
    # A batch's keys, all or none: 0 claimed, 1 stored, 2 being stored by another request (then none is claimed).
    CLAIM = """
        local out, busy = {}, false
        for i, k in ipairs(KEYS) do
            local v = redis.call('GET', k)
            if not v then redis.call('SET', k, 'p:' .. ARGV[1], 'PX', ARGV[2]); out[i] = 0
            elseif string.sub(v, 1, 1) == 'p' then out[i] = 2; busy = true
            else out[i] = 1 end
        end
        if busy then
            for i, k in ipairs(KEYS) do if out[i] == 0 then redis.call('DEL', k) end end
        end
        return out"""
    # Only this request's claims: a claim that expired and was taken by another request is not ours to drop.
    RELEASE = """
        for _, k in ipairs(KEYS) do
            if redis.call('GET', k) == 'p:' .. ARGV[1] then redis.call('DEL', k) end
        end
        return 0"""

    def __init__(self, url: str, ttl_s: float) -> None:
        import redis

        self.redis = redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        self.ttl_s = max(1, int(ttl_s))
        self._claim, self._release = self.redis.register_script(self.CLAIM), self.redis.register_script(self.RELEASE)

    def __len__(self) -> int:
        return 0  # bounded by Redis' expiry, not by this process

    def _call(self, what: str, fn: Callable[[], object]) -> object:
        import redis

        try:
            return fn()
        except redis.RedisError as exc:
            raise EngineUnavailable(f"the event-id store (Redis) is unavailable while {what}: "
                                    f"{type(exc).__name__}") from None

    def claim(self, keys: Sequence[str]) -> Claimed:
        """Claim ``keys`` (distinct) for one request, atomically: those already stored are duplicates; if any is
        being stored by another request, none is claimed (busy)."""
        if not keys:
            return Claimed(set(), set())
        token, names = uuid.uuid4().hex, [self.PREFIX + k for k in keys]
        try:
            codes = self._call("claiming event ids",
                               lambda: self._claim(keys=names, args=[token, int(CLAIM_TTL_S * 1000)]))
        except EngineUnavailable:
            # The script may have run before the reply was lost: free what it claimed, if Redis answers.
            with suppress(EngineUnavailable):
                self.release(keys, token)
            raise
        found = dict(zip(keys, codes))  # type: ignore[call-overload]
        return Claimed({k for k, c in found.items() if c == 1}, {k for k, c in found.items() if c == 2}, token)

    def release(self, keys: Iterable[str], token: str) -> None:
        """Free this request's claims (``token``) whose events were not stored, so the client's retry is stored."""
        names = [self.PREFIX + k for k in keys]
        if names:
            self._call("releasing event ids", lambda: self._release(keys=names, args=[token]))

    def add(self, keys: Iterable[str]) -> None:
        """Mark claimed keys stored, for ``ttl_s``."""
        pipe = self.redis.pipeline(transaction=False)
        for k in keys:
            pipe.set(self.PREFIX + k, self.STORED, ex=self.ttl_s)
        self._call("recording event ids", pipe.execute)


def recent_ids_store(settings: Settings) -> MemoryRecentIds | RedisRecentIds:
    """Redis when the ``redis_url`` setting is set (shared across workers), else this process's memory."""
    if settings.redis_url is not None:
        return RedisRecentIds(settings.redis_url.get_secret_value(), settings.event_max_age_s)
    return MemoryRecentIds(settings.event_recent_ids)


class EventGate:
    """Trust checks, duplicate detection and per-session/per-product caps for POST /events (module docstring).

    Args:
        signer: checks hit tokens.
        find_product: product id -> its stored fields, or None (an engine lookup; errors propagate).
        limits: the bounds.
        clock: epoch seconds (tests move it).
        recent_ids: where client event ids are remembered (default: this process's memory, ``event_recent_ids``
            of them; :func:`recent_ids_store` picks Redis when configured).
    """

    def __init__(self, signer: HitSigner, find_product: FindProduct, limits: GateLimits,
                 clock: Callable[[], float] = time.time,
                 recent_ids: MemoryRecentIds | RedisRecentIds | None = None) -> None:
        self.signer, self.find_product, self.limits, self.clock = signer, find_product, limits, clock
        self._lock = threading.Lock()
        self.recent_ids = recent_ids if recent_ids is not None else MemoryRecentIds(limits.event_recent_ids)
        self.known_products = Lru(limits.event_known_products)  # id -> _Known, or the time it was found missing
        # Window counters: "s\0<scope>", "p\0<scope>\0<product>" and "i\0<scope>\0<product>" -> (window start,
        # count); the scope is "s:<session>", or "a:<address>" for events that name no session.
        self.counters = Lru(2 * limits.event_known_products)

    def check(self, batch: Sequence[ParsedUbiEvent]) -> None:
        """Refuse the batch (all or nothing) if any event fails the trust checks.

        Raises:
            Rejected: 400 ``missing_token`` / ``invalid_token`` / ``stale_query`` naming the token (or the query_id),
                400 ``missing_product`` (a query_id with no product), 400 ``unknown_product`` naming the product.
            EngineUnavailable: the product lookup failed (503). EngineRejected: the engine refused the lookup (500,
                api/errors.py: nothing the client sent is at fault, so it retries).
        """
        now = self.clock()
        for item in batch:
            pid, known = item.product_id, None
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
            elif pid is not None and (known := self._lookup(pid)) is None:
                raise Rejected(400, "unknown_product", item.path("product_id"),
                               f"{item.path('product_id')}: no product {pid!r} in the catalog")
            price = item.event.price if item.event is not None and item.event.type == "purchase" else None
            if pid is not None and price is not None:  # a purchase's price is revenue; other events' are not read
                known = known or self._lookup(pid)  # looked up above unless the event named its search
                if known is not None and known.price is not None and \
                        price > max(PRICE_SLACK * known.price, PRICE_FLOOR):
                    raise Rejected(400, "implausible_price", item.path("price"),
                                   f"{item.path('price')}: {price:g} is more than {PRICE_SLACK:g} times the "
                                   f"catalog's price of {pid!r} ({known.price:g}); price is per unit (several "
                                   f"units: send quantity)")

    def _lookup(self, pid: str) -> _Known | None:
        """The catalog's ``pid`` (None: it holds none): remembered answers first, else one lookup."""
        now = self.clock()
        with self._lock:
            known = self.known_products.get(pid)
        if isinstance(known, _Known) and now - known.at < KNOWN_TTL_S:
            return known
        if isinstance(known, float) and now - known < UNKNOWN_TTL_S:
            return None
        found = self.find_product(pid)
        price = found.get("price") if isinstance(found, Mapping) else None
        price = float(price) if isinstance(price, (int, float)) and not isinstance(price, bool) else None
        known = _Known(price if price is not None and price >= 0 else None, now) if found else None
        with self._lock:
            self.known_products.set(pid, known if known is not None else now)
        return known

    @contextmanager
    def admit(self, batch: Sequence[ParsedUbiEvent], origin: str = "") -> Iterator[Admitted]:
        """Split off duplicates and enforce the caps; the ids are claimed first and recorded as stored, and the
        counts kept, only when the ``with`` body (storing the fresh events) succeeds; if it fails, the claims are
        given back. Batches are admitted one at a time per process. Events that name no session or client count
        against the session cap of their ``origin`` (the client's address), so one caller cannot spend everyone's.

        Raises:
            Rejected: 429 ``session_cap`` / ``product_cap`` naming the session or product; 409 ``event_in_flight``
                naming the event id another request is storing right now (retry: it is then a duplicate, or stored
                if that request failed). Nothing is recorded either way.
            EngineUnavailable: the shared event-id store (Redis) is unreachable when the ids are claimed (503;
                nothing recorded). Unreachable only when they are recorded, after the events were stored, it is
                logged instead: the client has its 202 and does not send them again.
        """
        with self._lock:
            keys = [item.ubi.stored_id if item.client_event_id else None for item in batch]
            keyed = {key: item for key, item in zip(keys, batch) if key is not None}
            claim = self.recent_ids.claim(list(keyed))
            if claim.busy:
                item = keyed[next(k for k in keyed if k in claim.busy)]
                path = item.path("event_id")
                raise Rejected(409, "event_in_flight", path,
                               f"{path}: {item.ubi.event_id!r} is being stored by another request; nothing was "
                               f"stored; retry in 1 s", retry_after=1)
            claimed = [k for k in keyed if k not in claim.stored]
            started = time.monotonic()
            try:
                fresh: list[ParsedUbiEvent] = []
                duplicates: list[str] = []
                seen: set[str] = set()
                for item, key in zip(batch, keys):
                    if key is not None and (key in claim.stored or key in seen):
                        duplicates.append(item.ubi.event_id or "")
                        continue
                    if key is not None:
                        seen.add(key)
                    fresh.append(item)
                counts = self._counts(fresh, origin)
                yield Admitted(fresh, duplicates)
            except BaseException:
                self._release(claimed, claim.token)
                raise
            if claimed and time.monotonic() - started > CLAIM_TTL_S:
                log.warning("storing %d events took longer than their %d s claim: a retry meanwhile may have been "
                            "stored too", len(claimed), CLAIM_TTL_S)
            try:
                self.recent_ids.add(claimed)
            except EngineUnavailable as exc:
                # The events are stored: a 503 now would make the client send them again, stored twice.
                log.warning("%s; %d event ids stored but not recorded, a retry of them is stored again",
                            exc, len(claimed))
            for key, (start, count) in counts.items():
                self.counters.set(key, (start, count))

    def _release(self, claimed: Sequence[str], token: str) -> None:
        """Give back the claims of a batch that was not stored (Redis' expiry frees them if this fails too)."""
        try:
            self.recent_ids.release(claimed, token)
        except EngineUnavailable as exc:
            log.warning("%s; %d event ids stay claimed for up to %d s", exc, len(claimed), CLAIM_TTL_S)

    def _counts(self, fresh: Sequence[ParsedUbiEvent], origin: str) -> dict[str, tuple[float, int]]:
        """The window counters after ``fresh``; raises Rejected when one passes its cap."""
        now, lim = self.clock(), self.limits
        counts: dict[str, tuple[float, int]] = {}
        for item in fresh:
            # Events naming no session are counted by address (one caller cannot spend everyone's anonymous cap);
            # the "s:"/"a:" scopes keep a chosen session id from sharing an address's count.
            session = f"s:{item.session_key}" if item.session_key else f"a:{origin}"
            who = f"session {item.session_key!r}" if item.session_key else "events without a session from this address"
            keys = [(f"s\0{session}", lim.event_session_cap, "session_cap", item.path("session_id"), who)]
            if item.product_id is not None and item.ubi.action_name == "impression":
                # A shopper who refines a query sees its top products in every list: impressions counted with the
                # product's clicks and purchases would soon push the shopper's click out. They have a cap of their
                # own (each needs a served list's token, so they come no faster than searches).
                keys.append((f"i\0{session}\0{item.product_id}", lim.event_impression_cap, "product_cap",
                             item.path("product_id"), f"impressions of product {item.product_id!r} from {who}"))
            elif item.product_id is not None:
                keys.append((f"p\0{session}\0{item.product_id}", lim.event_product_cap, "product_cap",
                             item.path("product_id"), f"product {item.product_id!r} from {who}"))
            for key, cap, code, path, what in keys:
                start, count = counts.get(key) or self.counters.get(key) or (now, 0)
                if now - start >= lim.event_cap_window_s:
                    start, count = now, 0
                if count + 1 > cap:
                    retry = max(1, int(start + lim.event_cap_window_s - now))
                    events = "events" if cap > 1 else "event"
                    raise Rejected(429, code, path, f"{path}: at most {cap} {events} for {what} per "
                                                    f"{lim.event_cap_window_s:g} s; retry in {retry} s", retry)
                counts[key] = (start, count + 1)
        return counts
