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

import errno
import fcntl
import json
import logging
import os
import threading
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Iterable, Iterator, Literal, NamedTuple, get_args

from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, PlainValidator, ValidationError, WithJsonSchema,
                      model_validator)
from pydantic_core import PydanticCustomError

from shopsearch.atomic_write import write_atomically
from shopsearch.timestamps import format_timestamp, not_ahead, parse_timestamp, read_iso, utcnow

log = logging.getLogger(__name__)

EventType = Literal["impression", "click", "add_to_cart", "purchase"]
EVENT_TYPES: tuple[str, ...] = get_args(EventType)
SEARCH_EVENTS = ("impression", "click")  # these must name the list they were shown in (query_id) and the position
SCHEMA_VERSION = 1
MAX_ID = 100  # characters of an id (query, product, user, session): UBI 1.0's limit, so every event logs as UBI
MAX_QUERY = 1024  # characters of the query text an event carries
MAX_POSITION = 10_000  # a result-list position: far past any page depth, inside the UBI index's 32-bit integer
MAX_TOKEN = 64  # characters of a hit token (api/hit_tokens.py: "<time>.<signature>")
MAX_QUANTITY = 100  # units in one purchase or add-to-cart event: bounds what one event adds to revenue


class EventError(ValueError):
    """An invalid event; ``parameter`` is the JSON path of the bad field (``"[2].position"``, or ``"body"``)."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter


def _client_time(value: Any) -> datetime:
    """A client's timestamp: ISO 8601 with a timezone, or epoch seconds (not a bool), at most a day ahead."""
    if isinstance(value, str):
        try:
            ts = read_iso(value)
        except ValueError:
            ts = None
        if ts is not None and ts.tzinfo is not None:
            try:
                return not_ahead(ts.astimezone(timezone.utc))
            except OverflowError:  # 9999-12-31T23:59:59-01:00
                raise ValueError(f"{value} is out of range in UTC") from None
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            ts = datetime.fromtimestamp(value, tz=timezone.utc)
        except (ValueError, OverflowError, OSError):
            pass
        else:
            return not_ahead(ts)
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
    "position": f"an integer between 1 and {MAX_POSITION} (1-based)",
    "price": "a finite number >= 0",
    "quantity": f"an integer between 1 and {MAX_QUANTITY}",
    "query": f"a string of at most {MAX_QUERY} characters",
    # a client's; a stored one: _STORED_RULES
    "timestamp": "ISO 8601 with a timezone or epoch seconds, at most a day ahead",
    "simulated": "true or false",
    "schema_version": str(SCHEMA_VERSION),
    "token": f"the hit's token from the /search response (a string of at most {MAX_TOKEN} characters)",
} | {name: f"a non-empty string of at most {MAX_ID} characters"
     for name in ("query_id", "product_id", "user_id", "session_id", "event_id")}
_STORED_RULES = _RULES | {"timestamp": "ISO 8601 in UTC (suffix Z or +00:00)"}


class _EventFields(BaseModel):
    """The fields a client and the stored record share, and the rule tying query_id/position to the type."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    type: EventType = Field(description="What the shopper did")
    query_id: Id | None = Field(None, description="The query_id of the /search response that showed the product; "
                                                  "required for impression and click")
    query: Annotated[str, Field(max_length=MAX_QUERY)] | None = Field(None, description="The query text")
    product_id: Id = Field(description="The product")
    position: Annotated[int, Field(ge=1, le=MAX_POSITION)] | None = Field(
        None, description="1-based position in the result list; required for impression and click")
    user_id: Id | None = Field(None, description="The signed-in shopper, if any")
    session_id: Id = Field(description="The browsing session")
    timestamp: Any = None  # declared here for its place in the line; each model narrows it
    price: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = Field(None, description="Unit price shown "
                                                                                            "(per unit: see quantity)")
    quantity: Annotated[int, Field(ge=1, le=MAX_QUANTITY)] | None = Field(
        None, description="Units bought or carted (absent: 1); revenue is price x quantity")

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
                                                                "impression and click; with a query_id, the "
                                                                "token of that hit"})

    timestamp: ClientTime | None = Field(None, description="ISO 8601 with a timezone, or epoch seconds; server "
                                                           "time when absent")
    token: Annotated[str, Field(max_length=MAX_TOKEN)] | None = Field(
        None, description="The hit's token from the /search response that showed the product; required with a "
                          "query_id (it proves that search served this product)")
    event_id: Id | None = Field(None, description="The client's id for this event (a UUID): a retry with the same "
                                                  "id is answered duplicate and not counted twice; the server "
                                                  "makes one when absent")


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
        unset = {name for name in ("event_id", "quantity") if getattr(self, name) is None}  # lines as they were
        d = self.model_dump(exclude=unset or None)
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
    """Validate one client event (:class:`EventIn`) into the stored :class:`Event`: its ``event_id`` is the
    client's, else a new one; the ``token`` is checked by the API (api/event_gate.py) and not stored.

    Required: ``type``, ``product_id``, ``session_id``; ``query_id`` and ``position`` (>= 1) also for impression and
    click. Optional: ``user_id``, ``timestamp`` (``now``, default server time, when absent), ``query``, ``price``,
    ``token`` (required by the API with a ``query_id``), ``event_id``.

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
    return Event(**given.model_dump(exclude={"timestamp", "token", "event_id"}),
                 event_id=given.event_id or uuid.uuid4().hex,
                 timestamp=format_timestamp(given.timestamp or now or utcnow()))


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
    """Write events as JSONL (replacing the file whole), streaming; returns how many were written.

    >>> write_events("/tmp/ev.jsonl", [])  # doctest: +SKIP
    0
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0

    def write(tmp: Path) -> None:
        nonlocal count
        with tmp.open("w", encoding="utf-8") as f:
            for e in events:
                f.write(e.to_json() + "\n")
                count += 1

    write_atomically(path, write)
    return count


class NewEvents(NamedTuple):
    """What :meth:`EventLog.read_new` found: the valid new events, oldest first, and how many lines were invalid."""

    events: list[Event]
    skipped: int


def append_lines(path: Path, data: bytes) -> None:
    """Append ``data`` (whole JSON lines) to ``path`` with one ``write`` + ``fsync`` under an exclusive ``flock``
    (other worker processes append to the same file); the folder is created. A last line a crash tore is ended
    first, so the batch starts on a line of its own.

    Raises:
        OSError: the write failed or was short (``errno.ENOSPC``: a full disk); the file is as it was.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)  # shoppers' ids and behaviour: the server's own
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            data = b"\n" + data
        try:
            written = os.write(fd, data)
            if written != len(data):  # a short write on a regular file means the disk is full
                raise OSError(errno.ENOSPC, f"short write to {path.name}: {written} of {len(data)} bytes")
            os.fsync(fd)
        except OSError:
            os.ftruncate(fd, size)  # nothing half-written stays (we hold the flock: no one appended since)
            raise
    finally:
        os.close(fd)  # releases the lock


class EventLog:
    """The API's append-only event log: JSONL files ``events-YYYY-MM-DD.jsonl`` under ``directory``, one per UTC day.

    A batch is written with a single ``write`` on an ``O_APPEND`` descriptor and one fsync, under an exclusive
    ``flock`` of the file, so concurrent threads and gunicorn workers never interleave lines. The reranker tails
    the same files (:meth:`read_new`).

    Torn lines: a crash or a full disk can leave a last line without its newline. Readers skip such a line and
    count it (:attr:`torn`, :meth:`read_new`'s ``skipped``); the next append first ends it with a newline, so the
    torn bytes stay one invalid line and never glue onto a new event. A failed append (a full disk) truncates the
    file back to where it was: nothing of the batch stays.

    >>> log = EventLog("/tmp/ss-events-doc")  # doctest: +SKIP
    >>> log.append(parse_events({"type": "purchase", "product_id": "p1", "session_id": "s"}, 10))  # doctest: +SKIP
    1
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self._lock = threading.Lock()
        self._offsets: dict[Path, int] = {}  # bytes of each file already seen by read_new
        self.torn = 0  # invalid lines :meth:`read` skipped

    def path_for(self, day: str) -> Path:
        """The file holding events received on ``day`` (YYYY-MM-DD)."""
        return self.directory / f"events-{day}.jsonl"

    def files(self) -> list[Path]:
        """The day files, oldest first (none when the directory does not exist)."""
        return sorted(self.directory.glob("events-*.jsonl"))

    def append(self, events: list[Event]) -> int:
        """Write the batch with one ``write`` + ``fsync``; returns how many events were stored.

        Raises:
            OSError: the write failed or was short (``errno.ENOSPC``: a full disk); the file is as it was.
        """
        if not events:
            return 0
        data = "".join(e.to_json() + "\n" for e in events).encode()
        day = datetime.now(timezone.utc).strftime("%Y-%m-%d")
        with self._lock:
            append_lines(self.path_for(day), data)
        return len(events)

    def read(self) -> Iterator[Event]:
        """Every stored event, oldest file first, in write order; torn or invalid lines are skipped and counted in
        :attr:`torn` (logged once per file)."""
        for path in self.files():
            skipped = 0
            with path.open("rb") as f:
                for line in f:
                    if not line.strip():
                        continue
                    try:
                        yield event_from_dict(json.loads(line))
                    except ValueError:  # json, UTF-8 and EventError errors are all ValueErrors
                        skipped += 1
            if skipped:
                self.torn += skipped
                log.warning("event log %s: skipped %d torn or invalid lines", path, skipped)

    def read_new(self, limit: int | None = None) -> NewEvents:
        """Events appended since the last call, oldest first (complete lines only: a line being written is read
        next time); at most ``limit`` of them, the rest left for the next call, so a backlog is read in bounded
        chunks.

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
                for line in f:
                    if not line.endswith(b"\n"):
                        break
                    start += len(line)
                    if not line.strip():
                        continue
                    try:
                        events.append(event_from_dict(json.loads(line)))
                    except ValueError:  # json.JSONDecodeError and EventError are ValueErrors
                        skipped += 1
                    if limit is not None and len(events) >= limit:
                        break
            self._offsets[path] = start
            if limit is not None and len(events) >= limit:
                break
        return NewEvents(events, skipped)
