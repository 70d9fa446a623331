"""Storefront behaviour events: validation (pure) and an append-only JSONL log with one fsync per batch.

The line format is the one ``shopsearch.reranker.events.read_events`` reads (the reranker trains on these logs).

An event ties a product to the search that showed it (``query_id`` from the /search response). The log is one
file per UTC day (``events-YYYY-MM-DD.jsonl``); a batch is written with a single ``write`` on an ``O_APPEND``
descriptor, so concurrent threads and gunicorn workers never interleave lines.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

EVENT_TYPES = ("impression", "click", "add_to_cart", "purchase")
# Events that only make sense for a result of a search: they must name the search and the position.
SEARCH_EVENTS = ("impression", "click")
EVENT_FIELDS = ("type", "query_id", "product_id", "position", "user_id", "session_id", "timestamp", "query",
                "price")
MAX_ID = 128


@dataclass(frozen=True)
class Event:
    """One validated event; ``event_id`` is assigned by the server so each stored line is identifiable."""

    event_id: str
    type: str
    product_id: str
    session_id: str
    timestamp: str  # ISO 8601, UTC
    query_id: str | None = None
    position: int | None = None
    user_id: str | None = None
    query: str | None = None
    price: float | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, separators=(",", ":"))


class EventError(ValueError):
    """An invalid event; ``parameter`` is the JSON path of the bad field (``"[2].position"``)."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter


def _text(ev: dict, name: str, where: str, required: bool) -> str | None:
    value = ev.get(name)
    if value is None:
        if required:
            raise EventError(f"{where}{name}", f"{where}{name} is required")
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_ID:
        raise EventError(f"{where}{name}", f"{where}{name} must be a non-empty string of at most {MAX_ID} "
                                           f"characters; got {value!r}")
    return value


def _timestamp(value: Any, where: str, now: datetime) -> str:
    if value is None:
        return _utc(now)
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise EventError(f"{where}timestamp", f"{where}timestamp must be ISO 8601 or epoch seconds; got {value!r}")
    try:
        if isinstance(value, str):
            ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
            if ts.tzinfo is None:
                raise ValueError("no timezone")
        else:
            ts = datetime.fromtimestamp(float(value), tz=timezone.utc)
    except (ValueError, OverflowError, OSError):
        raise EventError(f"{where}timestamp", f"{where}timestamp must be ISO 8601 with a timezone or epoch "
                                              f"seconds; got {value!r}") from None
    return _utc(ts)


def _utc(ts: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SS[.ffffff]Z``, the format shopsearch.reranker.events reads."""
    return ts.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def parse_event(ev: Any, where: str = "", now: datetime | None = None) -> Event:
    """Validate one event object.

    Required: ``type`` (impression|click|add_to_cart|purchase), ``product_id``, ``session_id``; ``query_id``
    and ``position`` (>= 1) also for impression and click. Optional: ``user_id``, ``timestamp`` (server time
    when absent), ``query``, ``price`` (>= 0).

    Raises:
        EventError: naming the field (prefixed with ``where``, e.g. ``"[1]."``) and the allowed values.

    >>> parse_event({"type": "purchase", "product_id": "p1", "session_id": "s"}).type
    'purchase'
    """
    now = now or datetime.now(timezone.utc)
    if not isinstance(ev, dict):
        raise EventError(where.rstrip(".") or "body", f"{where.rstrip('.') or 'body'} must be a JSON object")
    unknown = [k for k in ev if k not in EVENT_FIELDS]
    if unknown:
        raise EventError(f"{where}{unknown[0]}", f"unknown field {unknown[0]!r}; allowed: {', '.join(EVENT_FIELDS)}")
    kind = ev.get("type")
    if kind not in EVENT_TYPES:
        raise EventError(f"{where}type", f"{where}type must be one of {', '.join(EVENT_TYPES)}; got {kind!r}")
    search_event = kind in SEARCH_EVENTS
    position = ev.get("position")
    if position is None and search_event:
        raise EventError(f"{where}position", f"{where}position is required for {kind} events")
    if position is not None and (isinstance(position, bool) or not isinstance(position, int) or position < 1):
        raise EventError(f"{where}position", f"{where}position must be an integer >= 1; got {position!r}")
    price = ev.get("price")
    if price is not None and (isinstance(price, bool) or not isinstance(price, (int, float)) or not
                              0 <= price < float("inf")):
        raise EventError(f"{where}price", f"{where}price must be a number >= 0; got {price!r}")
    query = ev.get("query")
    if query is not None and (not isinstance(query, str) or len(query) > 1024):
        raise EventError(f"{where}query", f"{where}query must be a string of at most 1024 characters")
    return Event(
        event_id=uuid.uuid4().hex,
        type=kind,
        product_id=_text(ev, "product_id", where, True),
        session_id=_text(ev, "session_id", where, True),
        timestamp=_timestamp(ev.get("timestamp"), where, now),
        query_id=_text(ev, "query_id", where, search_event),
        position=position,
        user_id=_text(ev, "user_id", where, False),
        query=query,
        price=float(price) if price is not None else None,
    )


def parse_events(payload: Any, max_events: int, now: datetime | None = None) -> list[Event]:
    """Validate a POST /events body: one event object or a non-empty list of at most ``max_events``.

    Raises:
        EventError: the body's shape, the count, or the first invalid event (all-or-nothing).
    """
    if isinstance(payload, dict):
        return [parse_event(payload, now=now)]
    if not isinstance(payload, list) or not payload:
        raise EventError("body", "body must be an event object or a non-empty list of events")
    if len(payload) > max_events:
        raise EventError("body", f"at most {max_events} events per request; got {len(payload)}")
    return [parse_event(ev, f"[{i}].", now) for i, ev in enumerate(payload)]


class EventLog:
    """Append-only JSONL event files under ``directory``, one per UTC day.

    >>> log = EventLog("/tmp/ss-events-doc")  # doctest: +SKIP
    >>> log.append(parse_events({"type": "purchase", "product_id": "p1", "session_id": "s"}, 10))  # doctest: +SKIP
    1
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self._lock = threading.Lock()

    def path_for(self, day: str) -> Path:
        """The file holding events received on ``day`` (YYYY-MM-DD)."""
        return self.directory / f"events-{day}.jsonl"

    def append(self, events: list[Event]) -> int:
        """Write the batch with one ``write`` + ``fsync``; returns how many events were stored."""
        if not events:
            return 0
        data = "".join(e.to_json() + "\n" for e in events).encode()
        day = datetime.now(timezone.utc).strftime("%Y-%m-%d")
        with self._lock:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path_for(day), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                written = os.write(fd, data)
                if written != len(data):  # a short write on a regular file means the disk is full
                    raise OSError(f"short write to event log: {written} of {len(data)} bytes")
                os.fsync(fd)
            finally:
                os.close(fd)
        return len(events)

    def read(self) -> Iterator[Event]:
        """Every stored event, oldest file first, in write order."""
        for path in sorted(self.directory.glob("events-*.jsonl")):
            with path.open(encoding="utf-8") as f:
                for line in f:
                    if line.strip():
                        yield Event(**json.loads(line))
