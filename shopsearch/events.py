"""Behaviour events (impression, click, add_to_cart, purchase): the one schema, its validation and its JSONL files.

Two models share one set of field rules:

- :class:`EventIn` is what a storefront sends to ``POST /events`` (no server-side fields; the timestamp may be
  ISO 8601 with a timezone or epoch seconds, and defaults to server time);
- :class:`Event` is the stored record: the API log, the simulator and the reranker's training all read and write
  it, one JSON object per line (``simulated`` and ``schema_version`` are set by the simulator/server, ``event_id``
  by the API).

Invalid input raises :class:`EventError` naming the field by its JSON path (``[2].position``) and the bad value.
:class:`EventLog` keeps the API's append-only log, one file per UTC day; :func:`read_events` and
:func:`write_events` stream a single JSONL file.

Example:
    >>> parse_event({"type": "purchase", "product_id": "p1", "session_id": "s1",
    ...              "timestamp": "2024-01-01T01:00:00+01:00"}).timestamp
    '2024-01-01T00:00:00Z'
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Iterable, Iterator, Literal, NamedTuple, get_args

from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, PlainValidator, ValidationError, WithJsonSchema,
                      model_validator)
from pydantic_core import PydanticCustomError

EventType = Literal["impression", "click", "add_to_cart", "purchase"]
EVENT_TYPES: tuple[str, ...] = get_args(EventType)
SEARCH_EVENTS = ("impression", "click")  # these must name the list they were shown in (query_id) and the position
SCHEMA_VERSION = 1
MAX_ID = 100  # characters of an id (query, product, user, session): UBI 1.0's limit, so every event logs as UBI
MAX_QUERY = 1024  # characters of the query text an event carries


class EventError(ValueError):
    """An invalid event; ``parameter`` is the JSON path of the bad field (``"[2].position"``, or ``"body"``)."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter


def parse_timestamp(value: str) -> datetime:
    """Parse an ISO 8601 timestamp that carries a UTC offset of zero.

    Raises:
        ValueError: not a string, not ISO 8601, no timezone, or a non-UTC offset.

    >>> parse_timestamp("2024-01-01T00:00:00Z").year
    2024
    """
    if not isinstance(value, str):
        raise ValueError(f"timestamp must be an ISO 8601 UTC string; got {value!r}")
    ts = _iso(value)
    if ts is None:
        raise ValueError(f"timestamp must be ISO 8601 (e.g. 2024-01-01T00:00:00Z); got {value!r}")
    if ts.tzinfo is None or ts.utcoffset().total_seconds() != 0:
        raise ValueError(f"timestamp must be in UTC (suffix Z or +00:00); got {value!r}")
    return ts


def format_timestamp(ts: datetime) -> str:
    """An aware datetime as ``YYYY-MM-DDTHH:MM:SS[.ffffff]Z`` in UTC, the stored form.

    >>> format_timestamp(datetime(2024, 1, 1, 1, tzinfo=timezone.utc))
    '2024-01-01T01:00:00Z'
    """
    return ts.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _iso(value: str) -> datetime | None:
    """``value`` as a datetime, None when it is not ISO 8601 (``Z`` accepted on Python 3.10 too)."""
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _client_time(value: Any) -> datetime:
    """A client's timestamp: ISO 8601 with a timezone, or epoch seconds (not a bool)."""
    if isinstance(value, str):
        ts = _iso(value)
        if ts is not None and ts.tzinfo is not None:
            return ts.astimezone(timezone.utc)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value, tz=timezone.utc)
        except (ValueError, OverflowError, OSError):
            pass
    raise ValueError("not ISO 8601 with a timezone nor epoch seconds")


def _stored_time(value: str) -> str:
    """A stored timestamp, normalised to ``...Z``."""
    return format_timestamp(parse_timestamp(value))


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("blank")
    return value


Id = Annotated[str, Field(min_length=1, max_length=MAX_ID), AfterValidator(_not_blank)]
ClientTime = Annotated[datetime, PlainValidator(_client_time),
                      WithJsonSchema({"anyOf": [{"type": "string", "format": "date-time"}, {"type": "number"}]})]
StoredTime = Annotated[str, AfterValidator(_stored_time), Field(description="ISO 8601 in UTC (suffix Z)")]

# What each field allows, for error messages ("<path> must be <rule>; got <value>").
_RULES = {
    "type": f"one of {', '.join(EVENT_TYPES)}",
    "position": "an integer >= 1 (1-based)",
    "price": "a finite number >= 0",
    "query": f"a string of at most {MAX_QUERY} characters",
    "timestamp": "ISO 8601 with a timezone or epoch seconds",  # a client's; a stored one: _STORED_RULES
    "simulated": "true or false",
    "schema_version": str(SCHEMA_VERSION),
    "event_id": "a string",
} | {name: f"a non-empty string of at most {MAX_ID} characters"
     for name in ("query_id", "product_id", "user_id", "session_id")}
_STORED_RULES = _RULES | {"timestamp": "ISO 8601 in UTC (suffix Z or +00:00)"}


class _EventFields(BaseModel):
    """The fields a client and the stored record share, and the rule tying query_id/position to the type."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    type: EventType = Field(description="What the shopper did")
    query_id: Id | None = Field(None, description="The query_id of the /search response that showed the product; "
                                                  "required for impression and click")
    query: Annotated[str, Field(max_length=MAX_QUERY)] | None = Field(None, description="The query text")
    product_id: Id = Field(description="The product")
    position: Annotated[int, Field(ge=1)] | None = Field(None, description="1-based position in the result list; "
                                                                           "required for impression and click")
    user_id: Id | None = Field(None, description="The signed-in shopper, if any")
    session_id: Id = Field(description="The browsing session")
    timestamp: Any = None  # declared here for its place in the line; each model narrows it
    price: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = Field(None, description="Unit price shown")

    @model_validator(mode="after")
    def _search_fields(self) -> _EventFields:
        """Impressions and clicks belong to a result list: they need its query_id and their position."""
        if self.type in SEARCH_EVENTS:
            for name in ("query_id", "position"):
                if getattr(self, name) is None:
                    raise PydanticCustomError("required_for_type", "{field} is required for {kind} events",
                                              {"field": name, "kind": self.type})
        return self


class EventIn(_EventFields):
    """An event as a storefront sends it to ``POST /events``; see :func:`parse_event`."""

    model_config = ConfigDict(json_schema_extra={"description": "query_id and position are also required for "
                                                                "impression and click"})

    timestamp: ClientTime | None = Field(None, description="ISO 8601 with a timezone, or epoch seconds; server "
                                                           "time when absent")


class Event(_EventFields):
    """One stored behaviour event; construction validates every field.

    ``position`` is 1-based; ``timestamp`` is ISO 8601 in UTC, normalised to ``...Z``; ``simulated`` is True for
    simulator output; ``event_id`` is assigned by the API.

    >>> Event(type="click", query_id="q1", query="red lamp", product_id="p9", position=2, user_id="u1",
    ...       session_id="s1", timestamp="2024-01-01T00:00:05+00:00").timestamp
    '2024-01-01T00:00:05Z'
    """

    timestamp: StoredTime
    simulated: bool = False
    schema_version: Annotated[int, Field(ge=SCHEMA_VERSION, le=SCHEMA_VERSION)] = SCHEMA_VERSION
    event_id: str | None = None

    def to_json(self) -> str:
        """One compact JSON line (no newline), fields in declaration order; ``event_id`` left out when unset.

        Written with :func:`json.dumps` so a line's bytes stay what they have been (simulated logs are hashed into
        model cards).
        """
        d = self.model_dump(exclude={"event_id"} if self.event_id is None else None)
        return json.dumps(d, ensure_ascii=False, separators=(",", ":"))

    @property
    def time(self) -> datetime:
        """The timestamp as an aware UTC datetime."""
        return parse_timestamp(self.timestamp)


def _error(exc: ValidationError, where: str, model: type[BaseModel], rules: dict[str, str]) -> EventError:
    """The first error of ``exc`` (validating ``model``) as an EventError naming the field's JSON path."""
    err = exc.errors(include_url=False)[0]
    if err["type"] == "required_for_type":
        name = err["ctx"]["field"]
        return EventError(f"{where}{name}", f"{where}{err['msg']}")
    name = str(err["loc"][0]) if err["loc"] else ""  # a field of the event; none when the event is not an object
    path = f"{where}{name}" if name else (where.rstrip(".") or "body")
    if err["type"] == "missing":
        return EventError(path, f"{path} is required")
    if err["type"] == "extra_forbidden":
        return EventError(path, f"unknown field {name!r}; allowed: {', '.join(model.model_fields)}")
    if name not in rules:
        return EventError(path, f"{path} must be an event object; got {_shown(err['input'])}")
    return EventError(path, f"{path} must be {rules[name]}; got {_shown(err['input'])}")


def _shown(value: Any) -> str:
    """``value`` for an error message; a long string is cut (the message echoes client input)."""
    if isinstance(value, str) and len(value) > 60:
        return f"{value[:40]!r}... ({len(value)} characters)"
    return repr(value)


def event_from_dict(d: Any) -> Event:
    """Validate a decoded JSON object (a stored line) into an :class:`Event`.

    Absent ``simulated`` means False, absent ``schema_version`` the current one.

    Raises:
        EventError: not an object, an unknown field, or an invalid field (the message names it and its value).

    >>> event_from_dict({"type": "purchase", "product_id": "p1", "session_id": "s1",
    ...                  "timestamp": "2024-01-01T00:00:00+00:00"}).timestamp
    '2024-01-01T00:00:00Z'
    """
    if not isinstance(d, dict):
        raise EventError("event", f"event must be a JSON object; got {type(d).__name__}")
    try:
        return Event.model_validate(d)
    except ValidationError as exc:
        raise _error(exc, "", Event, _STORED_RULES) from None


def parse_event(ev: Any, where: str = "", now: datetime | None = None) -> Event:
    """Validate one client event (:class:`EventIn`) into the stored :class:`Event`, with a new ``event_id``.

    Required: ``type``, ``product_id``, ``session_id``; ``query_id`` and ``position`` (>= 1) also for impression and
    click. Optional: ``user_id``, ``timestamp`` (``now``, default server time, when absent), ``query``, ``price``.

    Args:
        ev: the decoded JSON object.
        where: JSON path prefix of this event in the request body (``"[1]."``).
        now: the server time to use when the event has no timestamp.
    Raises:
        EventError: naming the field (prefixed with ``where``), its value and what is allowed.

    >>> parse_event({"type": "purchase", "product_id": "p1", "session_id": "s"}).type
    'purchase'
    """
    if not isinstance(ev, dict):
        path = where.rstrip(".") or "body"
        raise EventError(path, f"{path} must be a JSON object")
    try:
        given = EventIn.model_validate(ev)
    except ValidationError as exc:
        raise _error(exc, where, EventIn, _RULES) from None
    return Event(**given.model_dump(exclude={"timestamp"}), event_id=uuid.uuid4().hex,
                 timestamp=format_timestamp(given.timestamp or now or datetime.now(timezone.utc)))


def parse_events(payload: Any, max_events: int, now: datetime | None = None) -> list[Event]:
    """Validate a POST /events body: one event object or a non-empty list of at most ``max_events``.

    Raises:
        EventError: the body's shape, the count, or the first invalid event (all-or-nothing).

    >>> len(parse_events([{"type": "purchase", "product_id": "p1", "session_id": "s"}] * 2, max_events=5))
    2
    """
    return [parse_event(ev, where, now) for ev, where in batch_items(payload, max_events)]


def batch_items(payload: Any, max_events: int) -> list[tuple[Any, str]]:
    """The items of a POST /events body (one event object, or a non-empty list of at most ``max_events``), each
    with its JSON path prefix (``""`` for a lone object, ``"[i]."`` in a list).

    Raises:
        EventError: the body's shape or the count.

    >>> batch_items([{}, {}], max_events=5)
    [({}, '[0].'), ({}, '[1].')]
    """
    if isinstance(payload, dict):
        return [(payload, "")]
    if not isinstance(payload, list) or not payload:
        raise EventError("body", "body must be an event object or a non-empty list of events")
    if len(payload) > max_events:
        raise EventError("body", f"at most {max_events} events per request; got {len(payload)}")
    return [(ev, f"[{i}].") for i, ev in enumerate(payload)]


# ---------------------------------------------------------------------------------------------- JSONL files

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
            except ValueError as exc:  # json.JSONDecodeError and EventError are ValueErrors
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


class NewEvents(NamedTuple):
    """What :meth:`EventLog.read_new` found: the valid new events, oldest first, and how many lines were invalid."""

    events: list[Event]
    skipped: int


class EventLog:
    """The API's append-only event log: JSONL files ``events-YYYY-MM-DD.jsonl`` under ``directory``, one per UTC day.

    A batch is written with a single ``write`` on an ``O_APPEND`` descriptor and one fsync, so concurrent threads
    and gunicorn workers never interleave lines. The reranker tails the same files (:meth:`read_new`).

    >>> log = EventLog("/tmp/ss-events-doc")  # doctest: +SKIP
    >>> log.append(parse_events({"type": "purchase", "product_id": "p1", "session_id": "s"}, 10))  # doctest: +SKIP
    1
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self._lock = threading.Lock()
        self._offsets: dict[Path, int] = {}  # bytes of each file already seen by read_new

    def path_for(self, day: str) -> Path:
        """The file holding events received on ``day`` (YYYY-MM-DD)."""
        return self.directory / f"events-{day}.jsonl"

    def files(self) -> list[Path]:
        """The day files, oldest first (none when the directory does not exist)."""
        return sorted(self.directory.glob("events-*.jsonl"))

    def append(self, events: list[Event]) -> int:
        """Write the batch with one ``write`` + ``fsync``; returns how many events were stored.

        Raises:
            OSError: the write failed or was short (a full disk).
        """
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
        """Every stored event, oldest file first, in write order.

        Raises:
            ValueError: an invalid line (``path:line`` and the field).
        """
        for path in self.files():
            yield from read_events(path)

    def read_new(self) -> NewEvents:
        """Events appended since the last call (complete lines only: a line being written is read next time).

        Invalid lines are skipped and counted, so one bad line never stops the reader. Files only grow.
        """
        events: list[Event] = []
        skipped = 0
        for path in self.files():
            start = self._offsets.get(path, 0)
            if path.stat().st_size <= start:
                continue
            with path.open("rb") as f:
                f.seek(start)
                data = f.read()
            end = data.rfind(b"\n") + 1
            self._offsets[path] = start + end
            for line in data[:end].splitlines():
                if not line.strip():
                    continue
                try:
                    events.append(event_from_dict(json.loads(line)))
                except ValueError:  # json.JSONDecodeError and EventError are ValueErrors
                    skipped += 1
        return NewEvents(events, skipped)
