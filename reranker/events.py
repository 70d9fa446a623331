"""Behaviour events (impression, click, add_to_cart, purchase): the record, its validation and streaming JSONL I/O.

One JSON object per line, the same shape the API's ``POST /events`` log writes, so simulated and real logs are
read by the same code. Real logs may omit ``query_id``/``position`` on add_to_cart and purchase (the purchase
is then attributed to the latest list in the session that showed the product) and carry a server ``event_id``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator

EVENT_TYPES = ("impression", "click", "add_to_cart", "purchase")
SEARCH_EVENTS = ("impression", "click")  # these must name the list (query_id) and the position shown
SCHEMA_VERSION = 1
_FIELDS = ("type", "query_id", "query", "product_id", "position", "user_id", "session_id", "timestamp", "price",
           "simulated", "schema_version", "event_id")


@dataclass(frozen=True)
class Event:
    """One validated behaviour event.

    ``position`` is 1-based; ``timestamp`` is ISO 8601 in UTC (normalised to ``...Z`` by :func:`event_from_dict`);
    ``simulated`` is True for simulator output. Construction validates every field.

    >>> Event("click", "q1", "red lamp", "p9", 2, "u1", "s1", "2024-01-01T00:00:05Z").position
    2
    """

    type: str
    query_id: str | None
    query: str | None
    product_id: str
    position: int | None
    user_id: str | None
    session_id: str
    timestamp: str
    price: float | None = None
    simulated: bool = False
    schema_version: int = SCHEMA_VERSION
    event_id: str | None = None

    def __post_init__(self) -> None:
        _validate(self)

    def to_dict(self) -> dict[str, Any]:
        """The event as a JSON-able dict; ``event_id`` is left out when unset."""
        d = asdict(self)
        if d["event_id"] is None:
            del d["event_id"]
        return d

    def to_json(self) -> str:
        """One compact JSON line (no newline)."""
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))

    @property
    def time(self) -> datetime:
        """The timestamp as an aware UTC datetime."""
        return parse_timestamp(self.timestamp)


def parse_timestamp(value: str) -> datetime:
    """Parse an ISO 8601 timestamp that carries a UTC offset of zero.

    Raises:
        ValueError: not a string, not ISO 8601, no timezone, or a non-UTC offset.

    >>> parse_timestamp("2024-01-01T00:00:00Z").year
    2024
    """
    if not isinstance(value, str):
        raise ValueError(f"timestamp must be an ISO 8601 UTC string; got {value!r}")
    try:
        ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"timestamp must be ISO 8601 (e.g. 2024-01-01T00:00:00Z); got {value!r}") from None
    if ts.tzinfo is None or ts.utcoffset().total_seconds() != 0:
        raise ValueError(f"timestamp must be in UTC (suffix Z or +00:00); got {value!r}")
    return ts


def format_timestamp(ts: datetime) -> str:
    """An aware datetime as ``YYYY-MM-DDTHH:MM:SS[.ffffff]Z`` in UTC."""
    return ts.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _text(name: str, value: Any, required: bool) -> None:
    if value is None and not required:
        return
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string; got {value!r}")


def _validate(e: Event) -> None:
    if e.type not in EVENT_TYPES:
        raise ValueError(f"type must be one of {', '.join(EVENT_TYPES)}; got {e.type!r}")
    search_event = e.type in SEARCH_EVENTS
    _text("query_id", e.query_id, search_event)
    _text("product_id", e.product_id, True)
    _text("session_id", e.session_id, True)
    _text("user_id", e.user_id, False)
    if e.query is not None and not isinstance(e.query, str):
        raise ValueError(f"query must be a string; got {e.query!r}")
    if e.position is None and search_event:
        raise ValueError(f"position is required for {e.type} events")
    if e.position is not None and (isinstance(e.position, bool) or not isinstance(e.position, int) or e.position < 1):
        raise ValueError(f"position must be an integer >= 1 (1-based); got {e.position!r}")
    parse_timestamp(e.timestamp)
    if e.price is not None and (isinstance(e.price, bool) or not isinstance(e.price, (int, float))
                                or not math.isfinite(e.price) or e.price < 0):
        raise ValueError(f"price must be a finite number >= 0 or absent; got {e.price!r}")
    if not isinstance(e.simulated, bool):
        raise ValueError(f"simulated must be true or false; got {e.simulated!r}")
    if isinstance(e.schema_version, bool) or e.schema_version != SCHEMA_VERSION:
        raise ValueError(f"schema_version must be {SCHEMA_VERSION}; got {e.schema_version!r}")


def event_from_dict(d: Any) -> Event:
    """Validate a decoded JSON object into an :class:`Event` (timestamp normalised to UTC ``Z``).

    Absent ``simulated`` means False, absent ``schema_version`` means the current one.

    Raises:
        ValueError: not an object, an unknown field, or an invalid field (the message names it).

    >>> event_from_dict({"type": "purchase", "product_id": "p1", "session_id": "s1",
    ...                  "timestamp": "2024-01-01T00:00:00+00:00"}).timestamp
    '2024-01-01T00:00:00Z'
    """
    if not isinstance(d, dict):
        raise ValueError(f"event must be a JSON object; got {type(d).__name__}")
    unknown = sorted(set(d) - set(_FIELDS))
    if unknown:
        raise ValueError(f"unknown event field {unknown[0]!r}; allowed: {', '.join(_FIELDS)}")
    for name in ("type", "product_id", "session_id", "timestamp"):
        if name not in d:
            raise ValueError(f"{name} is required")
    ts = d["timestamp"]
    ts = format_timestamp(parse_timestamp(ts)) if isinstance(ts, str) else ts
    price = d.get("price")
    return Event(type=d["type"], query_id=d.get("query_id"), query=d.get("query"), product_id=d["product_id"],
                 position=d.get("position"), user_id=d.get("user_id"), session_id=d["session_id"], timestamp=ts,
                 price=float(price) if isinstance(price, int) and not isinstance(price, bool) else price,
                 simulated=d.get("simulated", False), schema_version=d.get("schema_version", SCHEMA_VERSION),
                 event_id=d.get("event_id"))


def read_events(path: str | Path) -> Iterator[Event]:
    """Stream the events of a JSONL file (blank lines skipped), one at a time.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: a line is not JSON or not a valid event; the message gives ``path:line`` and the field.

    >>> sum(1 for _ in read_events("events.jsonl"))  # doctest: +SKIP
    12034
    """
    path = Path(path)
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield event_from_dict(json.loads(line))
            except ValueError as exc:  # json.JSONDecodeError is a ValueError too
                raise ValueError(f"{path}:{n}: {exc}") from None


def write_events(path: str | Path, events: Iterable[Event]) -> int:
    """Write events as JSONL (replacing the file), streaming; returns how many were written.

    >>> write_events("/tmp/ev.jsonl", [])  # doctest: +SKIP
    0
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w", encoding="utf-8") as f:
        for e in events:
            f.write(e.to_json() + "\n")
            count += 1
    return count
