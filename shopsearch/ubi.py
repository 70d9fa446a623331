"""User Behavior Insights 1.0 records: what a served query and a shopper's action look like in the logs.

shopsearch writes its query and event logs in the UBI 1.0 schemas (https://o19s.github.io/ubi/schema/1.0.0/) so
OpenSearch Dashboards, the Search Relevance Workbench, Quepid and the like read them as they are:

- :class:`UbiQuery`, one per served /search (the ``ubi_queries`` index): the ids served, in order, and in
  ``query_attributes`` what shaped them (profile, experiment arm, filters, page) and, for the top results, each
  result's stage features exactly as the pipeline computed them (feature logging);
- :class:`UbiEvent`, one per shopper action (the ``ubi_events`` index): ``action_name``, the ``query_id`` of the
  list it happened in, ``event_attributes.object.object_id`` (the product) and
  ``event_attributes.position.ordinal.index`` (its 1-based position in that list).

The typed :class:`shopsearch.events.Event` is the same action as the reranker's training code reads it;
:func:`to_ubi_event` and :func:`from_ubi_event` are the one conversion between the two, and :func:`parse_ubi_event`
validates a UBI event a client sends to ``POST /events``.

UBI 1.0 requires ``event_attributes.position`` whenever ``event_attributes`` is present; an action outside a result
list (a purchase at checkout: no position) is written with ``position.ordinal.index`` 0, read back as no position.

    >>> from shopsearch.events import event_from_dict
    >>> ev = event_from_dict({"type": "click", "query_id": "q1", "product_id": "p9", "position": 2,
    ...                       "session_id": "s1", "timestamp": "2024-01-01T00:00:05Z"})
    >>> ubi = to_ubi_event(ev)
    >>> ubi.action_name, ubi.event_attributes.object.object_id, ubi.event_attributes.position.ordinal.index
    ('click', 'p9', 2)
    >>> from_ubi_event(ubi) == ev
    True
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime
from typing import Annotated, Any, NamedTuple

from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, ValidationInfo,
                      model_validator)

from .events import (EVENT_TYPES, MAX_ID, MAX_POSITION, MAX_QUANTITY, MAX_TOKEN, Event, EventError, batch_items,
                     parse_event)
from .timestamps import format_timestamp, not_ahead, read_iso, utc_time

UBI_VERSION = "1.0.0"
APPLICATION = "shopsearch"
OBJECT_ID_FIELD = "id"  # the product id field of the catalog index
UbiId = Annotated[str, Field(min_length=1, max_length=MAX_ID)]

# query_attributes keys shopsearch writes (UBI leaves the object open; these names are ours).
QUERY_ATTRIBUTES = {
    "index": "the index (or alias) searched",
    "profile": "the ranking profile that served the list",
    "experiment": "the experiment the client was assigned in (absent when none)",
    "arm": "the experiment arm (its profile, or 'interleaved')",
    "filters": "the filters applied (brand, category, price_min, ...)",
    "page": "1-based page", "size": "page size", "total": "matching products",
    "session_id": "the browsing session", "user_id": "the signed-in shopper, if any",
    "features": "per served product id (top K), each stage's feature values as the pipeline computed them",
    "simulated": "true for traffic from `shopsearch simulate-traffic`",
}


class _Open(BaseModel):
    """UBI objects allow additional properties; shopsearch's own go there too."""

    model_config = ConfigDict(extra="allow", frozen=True)


def _int_as_str(value: Any) -> Any:
    """UBI allows an integer object_id; shopsearch's product ids are strings."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


CLIENT = "client"  # validation context key: the record comes from a client now (strict), not from a store


def _strict_for_clients(kind: type, what: str) -> Any:
    """A before-validator refusing a client's value that is not of ``kind`` (a bool is no number), where pydantic
    would coerce it; a stored record (written by an older version, or by another UBI client) is read leniently."""

    def check(value: Any, info: ValidationInfo) -> Any:
        if (info.context or {}).get(CLIENT) and value is not None and (
                isinstance(value, bool) != (kind is bool) or not isinstance(value, kind)):
            raise ValueError(f"Input should be {what}")
        return value

    return BeforeValidator(check)


# The extras the ``ubi_events`` mapping types (plugin/config/ubi-events.json) are typed here too: a value of another
# type would be acknowledged, then refused by OpenSearch and dropped by the spool's drain.
ObjectId = Annotated[str, BeforeValidator(_int_as_str), Field(min_length=1, max_length=256)]
Number = Annotated[float, _strict_for_clients((int, float), "a valid number"), Field(allow_inf_nan=False)]
# the bound before the validator, so the JSON Schema says "minimum" (after it, pydantic writes a bare "ge")
Price = Annotated[float, Field(ge=0, allow_inf_nan=False), _strict_for_clients((int, float), "a valid number")]
Flag = Annotated[bool, _strict_for_clients(bool, "true or false")]


class UbiObject(_Open):
    """``event_attributes.object``: the product acted on."""

    object_id: ObjectId
    object_id_field: Annotated[str, Field(max_length=MAX_ID)] = OBJECT_ID_FIELD
    internal_id: ObjectId | None = None


class UbiOrdinal(_Open):
    """``event_attributes.position.ordinal``: the object's place in the list."""

    index: Annotated[int, Field(ge=0, le=MAX_POSITION,
                                description="1-based position in the result list; 0: not in a list")]


class UbiXY(_Open):
    """``event_attributes.position.xy``: where on the screen."""

    x: Number
    y: Number


class UbiPosition(_Open):
    """``event_attributes.position``: the object's place in the result list, or (an action outside one) where on
    the screen; UBI 1.0 records one of the two."""

    ordinal: UbiOrdinal | None = None
    xy: UbiXY | None = None

    @model_validator(mode="after")
    def _one_of(self) -> "UbiPosition":
        if (self.ordinal is None) == (self.xy is None):
            raise ValueError("UBI 1.0 records a position as either ordinal or xy, exactly one of them")
        return self


class UbiEventAttributes(_Open):
    """``event_attributes``: the object and its position, plus shopsearch's own (price, quantity, simulated,
    event_id)."""

    object: UbiObject | None = None
    position: UbiPosition | None = None
    price: Price | None = None
    quantity: Annotated[int, Field(ge=1, le=MAX_QUANTITY), _strict_for_clients(int, "a valid integer")] | None = Field(
        None, description="Units bought or carted (absent: 1); revenue is price x quantity")
    simulated: Flag | None = None
    event_id: Annotated[UbiId, BeforeValidator(_int_as_str)] | None = Field(
        None, description="The API's id for this event, or the client's (its retry key)")


def _iso_text(value: str) -> str:
    """A record's timestamp, kept as written once it reads as ISO 8601: a record whose time cannot be read cannot be
    ordered or windowed, so the stores skip it as unreadable (and count it) rather than fail a report on it."""
    try:
        read_iso(value)
    except ValueError:
        raise ValueError(f"timestamp must be ISO 8601 (e.g. 2024-01-01T00:00:00Z); got {value!r}") from None
    return value


UbiTime = Annotated[str, AfterValidator(_iso_text), Field(description="ISO 8601 date-time")]


class UbiEvent(BaseModel):
    """One shopper action in the UBI 1.0 event schema (required: ``action_name``, ``timestamp``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    application: Annotated[str, Field(max_length=MAX_ID)] = APPLICATION
    action_name: UbiId
    query_id: UbiId | None = None
    session_id: UbiId | None = None
    client_id: UbiId | None = None
    user_id: UbiId | None = None
    timestamp: UbiTime
    message_type: Annotated[str, Field(max_length=MAX_ID)] | None = None
    message: Annotated[str, Field(max_length=1024)] | None = None
    event_attributes: UbiEventAttributes | None = None

    @property
    def event_id(self) -> str | None:
        """The id the API gave this event (``event_attributes.event_id``), None when it has none."""
        return self.event_attributes.event_id if self.event_attributes is not None else None

    @property
    def stored_id(self) -> str | None:
        """The id the event is stored and recognised as a retry under: its ``event_id`` scoped to its client and
        session. A client chooses its own event ids (retry keys), so two clients may choose the same one; scoped,
        neither's event replaces or silences the other's. None when the event has no ``event_id``."""
        if self.event_id is None:
            return None
        scope = "\x1f".join((self.client_id or "", self.session_id or "", self.event_id))
        return hashlib.blake2b(scope.encode(), digest_size=16).hexdigest()

    @property
    def position(self) -> int | None:
        """The 1-based position of the object in the result list, None when the action happened outside one."""
        attrs = self.event_attributes
        ordinal = attrs.position.ordinal if attrs is not None and attrs.position is not None else None
        index = ordinal.index if ordinal is not None else 0
        return index or None


class UbiQuery(BaseModel):
    """One served /search in the ``ubi_queries`` schema: the query as typed and the ids it returned, in order."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    application: Annotated[str, Field(max_length=MAX_ID)] = APPLICATION
    query_id: UbiId
    client_id: UbiId | None = None
    user_query: str
    query_response_id: UbiId
    query_response_hit_ids: list[str]
    timestamp: UbiTime
    query_attributes: dict[str, Any] = Field(default_factory=dict)
    object_id_field: Annotated[str, Field(max_length=MAX_ID)] = OBJECT_ID_FIELD

    @property
    def simulated(self) -> bool:
        """Whether simulated shoppers made this search: ``query_attributes.simulated`` true, or ``"true"`` as
        UBI clients that store attributes as strings write it (``bool("false")`` would count those too)."""
        return _flag(self.query_attributes.get("simulated"))

    @property
    def page(self) -> int | None:
        """The result page the list is (1 when not logged); None when it is no number. UBI clients that store
        attributes as strings write "2"."""
        try:
            return int(self.query_attributes.get("page", 1))
        except (TypeError, ValueError):
            return None

    @property
    def in_relevance_order(self) -> bool:
        """Whether the list was served in relevance order (``sort`` not logged: it was)."""
        return self.query_attributes.get("sort", "relevance") == "relevance"

    @property
    def explained(self) -> bool:
        """Whether the search asked for ``explain``: a relevance console's (a search engineer's), no shopper's."""
        return _flag(self.query_attributes.get("explain"))

    @property
    def seen_by_shopper(self) -> bool:
        """Whether a shopper saw the logged hits: not an explained search, not a merchandising ``redirect`` (the
        storefront navigated away from the hits)."""
        return not self.explained and not self.query_attributes.get("redirect")


def _flag(value: Any) -> bool:
    """A logged true: ``True``, or ``"true"`` as UBI clients that store attributes as strings write it."""
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def stored_event(data: dict[str, Any]) -> UbiEvent:
    """A UBI event as a store holds it, written by an older version or another UBI client: typed values coerced
    where they can be ("12.5" for a price), one that cannot be read dropped from the record, not the record (a
    price "cheap", ``position.xy`` beside the ordinal, a position out of range: then read as no position).

    Raises:
        ValidationError: the record lacks what every event needs (an action, a timestamp, a readable object id).

    >>> stored_event({"action_name": "purchase", "timestamp": "2024-01-01T00:00:00Z",
    ...               "event_attributes": {"price": "cheap", "simulated": "false"}}).event_attributes.simulated
    False
    """
    for _ in range(3):  # dropping xy can leave an empty position, dropped the next time round
        try:
            return UbiEvent.model_validate(data)
        except ValidationError as exc:
            data = _without(data, {_droppable(err["loc"], data, exc) for err in exc.errors()})
    return UbiEvent.model_validate(data)


def _droppable(loc: tuple[Any, ...], data: dict[str, Any], exc: ValidationError) -> tuple[str, ...]:
    """The event_attributes field to drop for an error at ``loc``; re-raises ``exc`` when there is none."""
    path = tuple(str(part) for part in loc)
    if path[:1] == ("event_attributes",):
        rest = path[1:]
        if rest[:1] in (("price",), ("quantity",), ("simulated",), ("event_id",)) or \
                rest[:2] == ("object", "internal_id"):
            return rest[:2] if rest[:1] == ("object",) else rest[:1]
        if rest[:2] == ("position", "xy"):
            return rest[:2]
        if rest == ("position",):  # both ordinal and xy (keep the ordinal), or neither
            position = (data.get("event_attributes") or {}).get("position") or {}
            return ("position", "xy") if "ordinal" in position else ("position",)
        if rest[:1] == ("position",):
            return ("position",)
    raise exc


def _without(data: dict[str, Any], fields: set[tuple[str, ...]]) -> dict[str, Any]:
    """A copy of the record without those event_attributes fields."""
    out = {**data, "event_attributes": dict(data.get("event_attributes") or {})}
    for *parents, name in fields:
        node = out["event_attributes"]
        for parent in parents:
            if not isinstance(node.get(parent), dict):
                break
            node[parent] = dict(node[parent])
            node = node[parent]
        else:
            node.pop(name, None)
    return out


def to_ubi_event(event: Event) -> UbiEvent:
    """The stored :class:`~shopsearch.events.Event` as a UBI event (client_id: the session, as /search defaults it)."""
    extras: dict[str, Any] = {"simulated": event.simulated}
    if event.price is not None:
        extras["price"] = event.price
    if event.quantity is not None:
        extras["quantity"] = event.quantity
    if event.event_id is not None:
        extras["event_id"] = event.event_id
    position = UbiPosition(ordinal=UbiOrdinal(index=event.position or 0))
    return UbiEvent(action_name=event.type, query_id=event.query_id, session_id=event.session_id,
                    client_id=event.session_id, user_id=event.user_id,
                    timestamp=event.timestamp, message=event.query,
                    event_attributes=UbiEventAttributes(object=UbiObject(object_id=event.product_id),
                                                        position=position, **extras))


def from_ubi_event(ubi: UbiEvent) -> Event:
    """A UBI event as the typed :class:`~shopsearch.events.Event` training reads.

    Raises:
        ValueError: the UBI event lacks what an Event needs (a product, a session or client, a known action).
    """
    attrs = ubi.event_attributes or UbiEventAttributes()
    if attrs.object is None:
        raise ValueError("event_attributes.object.object_id is required")
    return Event(type=ubi.action_name, query_id=ubi.query_id, query=ubi.message, product_id=attrs.object.object_id,
                 position=ubi.position, user_id=ubi.user_id, session_id=ubi.session_id or ubi.client_id or "",
                 timestamp=format_timestamp(utc_time(ubi.timestamp)), price=attrs.price, quantity=attrs.quantity,
                 simulated=bool(attrs.simulated), event_id=attrs.event_id)


class ParsedUbiEvent(NamedTuple):
    """A client's UBI event as stored (``event_id`` set, timestamp in UTC) and, for the actions shopsearch's
    training reads (impression, click, add_to_cart, purchase), the same action as an :class:`Event`; plus what the
    API checks before storing it (api/event_gate.py): the hit ``token`` the client sent (never stored), whether
    the client chose the ``event_id`` (a retry key), and where the item sits in the body."""

    ubi: UbiEvent
    event: Event | None
    token: str | None = None
    client_event_id: bool = False
    where: str = ""  # JSON path prefix of the item ("[2]." in a list)
    is_ubi: bool = True  # sent in the UBI format (else shopsearch's own)

    @property
    def product_id(self) -> str | None:
        """The product acted on, if any."""
        attrs = self.ubi.event_attributes
        return attrs.object.object_id if attrs is not None and attrs.object is not None else None

    @property
    def session_key(self) -> str | None:
        """Whose events these are, for the per-session caps: the session, else the client."""
        return self.ubi.session_id or self.ubi.client_id

    def path(self, field: str) -> str:
        """The JSON path of shopsearch field ``field`` (``product_id``, ``token``...) in the body as sent."""
        return self.where + (_UBI_PATHS.get(field, field) if self.is_ubi else field)


# Where each Event field comes from in a UBI event, for error messages.
_UBI_PATHS = {"type": "action_name", "query": "message", "product_id": "event_attributes.object.object_id",
              "position": "event_attributes.position.ordinal.index", "session_id": "session_id",
              "price": "event_attributes.price", "quantity": "event_attributes.quantity",
              "simulated": "event_attributes.simulated",
              "token": "event_attributes.token", "event_id": "event_attributes.event_id"}


def is_ubi_event(payload: Any) -> bool:
    """Whether a decoded POST /events item is a UBI event (it names an ``action_name``) rather than shopsearch's
    own event format (``type``)."""
    return isinstance(payload, dict) and "action_name" in payload


def parse_ubi_event(payload: Any, event_id: str, where: str = "") -> ParsedUbiEvent:
    """Validate a client's UBI 1.0 event (see :func:`is_ubi_event`) and give it an id: the client's
    ``event_attributes.event_id`` when it sent one (its retry key), else ``event_id``.

    Any ``action_name`` is accepted; the four shopsearch knows must also satisfy :class:`Event`'s rules (a product,
    a session or client, and for impression and click the query_id and a position >= 1). The hit token
    (``event_attributes.token``) is returned beside the event, not stored.

    Args:
        payload: the decoded JSON object.
        event_id: the server's id for it when the client sent none, stored as ``event_attributes.event_id``.
        where: JSON path prefix of this event in the request body (``"[1]."``).
    Raises:
        EventError: naming the UBI field (prefixed with ``where``) and what is wrong.

    >>> parse_ubi_event({"action_name": "view", "timestamp": "2024-01-01T01:00:00+01:00"}, "e1").ubi.timestamp
    '2024-01-01T00:00:00Z'
    """
    try:
        given = UbiEvent.model_validate(payload, context={CLIENT: True})
        ts = read_iso(given.timestamp)
        if ts.tzinfo is None:  # a client's local time is ambiguous
            raise ValueError(f"timestamp must carry a timezone; got {given.timestamp!r}")
        timestamp = format_timestamp(not_ahead(ts))
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        path = where + ".".join(str(part) for part in err["loc"]) if err["loc"] else where.rstrip(".") or "body"
        raise EventError(path, f"{path}: {err['msg']}") from None
    except ValueError as exc:
        raise EventError(f"{where}timestamp", f"{where}timestamp: {exc}") from None
    attrs = given.event_attributes or UbiEventAttributes()
    token, client_id = (attrs.model_extra or {}).get("token"), attrs.event_id
    _check_string(token, MAX_TOKEN, f"{where}event_attributes.token", "the hit's token from the /search response")
    _check_string(client_id, MAX_ID, f"{where}event_attributes.event_id", "the client's id for this event")
    # UBI 1.0 requires a position beside any event_attributes: 0 says "not in a list". The token is checked, never
    # stored.
    attrs = UbiEventAttributes.model_validate({
        **attrs.model_dump(exclude={"token"}), "event_id": client_id or event_id,
        "position": attrs.position or UbiPosition(ordinal=UbiOrdinal(index=0))})
    ubi = given.model_copy(update={"timestamp": timestamp, "event_attributes": attrs})
    found = {"token": token, "client_event_id": client_id is not None, "where": where}
    if ubi.action_name not in EVENT_TYPES:
        return ParsedUbiEvent(ubi, None, **found)
    try:
        return ParsedUbiEvent(ubi, from_ubi_event(ubi), **found)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        name = str(err["loc"][0]) if err["loc"] else (err.get("ctx") or {}).get("field", "")
        path = where + _UBI_PATHS.get(name, name)
        if name == "session_id":
            raise EventError(path, f"{path} (or client_id) is required for {ubi.action_name} events") from None
        raise EventError(path, f"{path}: {err['msg']}") from None
    except ValueError as exc:
        path = f"{where}event_attributes.object.object_id"
        raise EventError(path, f"{where}{exc}") from None


def parse_event_batch(payload: Any, max_events: int, now: datetime | None = None) -> list[ParsedUbiEvent]:
    """Validate a POST /events body: one event or a non-empty list of at most ``max_events``, each either a UBI
    event (:func:`is_ubi_event`) or shopsearch's own format (:func:`shopsearch.events.parse_event`, its documented
    alias), converted once into the UBI event stored and the :class:`Event` training reads.

    Raises:
        EventError: the body's shape, the count, or the first invalid event (all or nothing).

    >>> [p.ubi.action_name for p in parse_event_batch([{"type": "purchase", "product_id": "p1", "session_id": "s"},
    ...     {"action_name": "view", "timestamp": "2024-01-01T00:00:00Z"}], max_events=5)]
    ['purchase', 'view']
    """
    return [_parse_any(item, where, now) for item, where in batch_items(payload, max_events)]


def _check_string(value: Any, max_chars: int, path: str, what: str) -> None:
    """A client's optional string in ``event_attributes`` (None passes)."""
    if value is not None and (not isinstance(value, str) or not value.strip() or len(value) > max_chars):
        raise EventError(path, f"{path} must be {what}: a non-empty string of at most {max_chars} characters")


def _parse_any(item: Any, where: str, now: datetime | None) -> ParsedUbiEvent:
    """One body item in either format, with the client's event_id or a new one."""
    if is_ubi_event(item):
        parsed = parse_ubi_event(item, uuid.uuid4().hex, where)
    else:
        event = parse_event(item, where, now)
        try:
            parsed = ParsedUbiEvent(to_ubi_event(event), event, token=item.get("token"),
                                    client_event_id=item.get("event_id") is not None, where=where, is_ubi=False)
        except ValidationError as exc:  # an id longer than UBI's 100 characters
            err = exc.errors(include_url=False)[0]
            path = where + ".".join(str(part) for part in err["loc"])
            raise EventError(path, f"{path}: {err['msg']} (UBI limit)") from None
    try:
        parsed.ubi.model_dump_json()  # what the spool will write: JSON that Python accepts may hold no UTF-8
    except ValueError:
        path = where.rstrip(".") or "body"
        raise EventError(path, f"{path} holds text that is not valid Unicode (a lone surrogate)") from None
    return parsed
