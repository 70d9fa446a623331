"""shopsearch/ubi.py: UBI 1.0 records, validated against the specification's JSON Schemas, and the conversions."""

from __future__ import annotations

import pytest

from shopsearch.events import EventError, event_from_dict
from shopsearch.ubi import (UbiQuery, from_ubi_event, is_ubi_event, parse_event_batch, parse_ubi_event,
                            to_ubi_event)
from tests.ubi_schemas import ubi_errors, ubi_validator

T = "2024-01-01T00:00:05Z"
CLICK = {"type": "click", "query_id": "6f1c2b9e-1d2a-4c55-9a3e-0d7c8e1b2a3f", "product_id": "p9", "position": 2,
         "session_id": "s1", "user_id": "u1", "timestamp": T, "query": "red lamp", "price": 9.5}
PURCHASE = {"type": "purchase", "product_id": "p9", "session_id": "s1", "timestamp": T, "price": 19.0}


def test_the_published_oneofs_reject_the_values_the_specification_recommends():
    # Why tests/ubi_schemas.py reads action_name/query_id as anyOf: each value below matches both branches.
    strict = ubi_validator("event", corrected=False)
    assert not strict.is_valid({"action_name": "click", "timestamp": T})
    assert not strict.is_valid({"action_name": "custom", "timestamp": T, "query_id": CLICK["query_id"]})
    assert strict.is_valid({"action_name": "custom", "timestamp": T, "query_id": "q-1"})
    corrected = ubi_validator("event")
    assert corrected.is_valid({"action_name": "click", "timestamp": T, "query_id": CLICK["query_id"]})
    assert not corrected.is_valid({"action_name": "x" * 101, "timestamp": T})
    assert not corrected.is_valid({"action_name": "click", "timestamp": "yesterday"})  # formats are checked


@pytest.mark.parametrize("raw", [CLICK, PURCHASE, {**CLICK, "type": "impression", "user_id": None, "query": None},
                                 {**PURCHASE, "type": "add_to_cart", "position": 4, "query_id": "q-7"}])
def test_converted_events_validate_and_convert_back(raw):
    event = event_from_dict(raw)
    ubi = to_ubi_event(event)
    assert ubi_errors("event", ubi) == []
    assert from_ubi_event(ubi) == event
    assert ubi.client_id == event.session_id and ubi.position == event.position


def test_an_action_outside_a_result_list_has_ordinal_zero():
    ubi = to_ubi_event(event_from_dict(PURCHASE))
    assert ubi.event_attributes.position.ordinal.index == 0 and ubi.position is None


def test_a_query_record_validates():
    record = UbiQuery(query_id=CLICK["query_id"], client_id="c1", user_query="red lamp", query_response_id="r1",
                      query_response_hit_ids=["p1", "p2"], timestamp=T,
                      query_attributes={"profile": "default", "features": {"p1": {"bm25": 1.5}}})
    assert ubi_errors("query", record) == []
    assert ubi_errors("query", {"query_id": "q", "client_id": "c" * 101, "user_query": "x"})  # the schema bites


def test_parse_ubi_event_keeps_the_clients_fields_and_sets_the_id():
    raw = {"action_name": "click", "query_id": "q1", "client_id": "c1", "timestamp": "2024-01-01T01:00:05+01:00",
           "message_type": "CLICK", "event_attributes": {"object": {"object_id": 42, "object_id_field": "sku"},
                                                         "position": {"ordinal": {"index": 3}}, "color": "red"}}
    assert is_ubi_event(raw) and not is_ubi_event(CLICK)
    ubi, event, token, client_event_id, *_ = parse_ubi_event(raw, "e1")
    assert ubi_errors("event", ubi) == [] and (token, client_event_id) == (None, False)
    assert (ubi.timestamp, ubi.event_id, ubi.client_id, ubi.message_type) == (T, "e1", "c1", "CLICK")
    assert ubi.event_attributes.model_extra["color"] == "red"
    assert (event.type, event.product_id, event.position, event.session_id) == ("click", "42", 3, "c1")


def test_parse_ubi_event_keeps_the_clients_event_id_and_returns_the_token_unstored():
    raw = {"action_name": "click", "query_id": "q1", "session_id": "s1", "timestamp": T,
           "event_attributes": {"object": {"object_id": "p1"}, "position": {"ordinal": {"index": 1}},
                                "event_id": "retry-1", "token": "1700000000.sig"}}
    parsed = parse_ubi_event(raw, "server-id", where="[4].")
    assert (parsed.ubi.event_id, parsed.event.event_id, parsed.client_event_id) == ("retry-1", "retry-1", True)
    assert parsed.token == "1700000000.sig" and "token" not in parsed.ubi.event_attributes.model_extra
    assert (parsed.product_id, parsed.session_key, parsed.path("token")) == ("p1", "s1", "[4].event_attributes.token")
    with pytest.raises(EventError) as info:
        parse_ubi_event({**raw, "event_attributes": {**raw["event_attributes"], "token": 5}}, "e", where="[1].")
    assert info.value.parameter == "[1].event_attributes.token"


def test_parse_ubi_event_accepts_any_action_but_checks_the_known_ones():
    view = parse_ubi_event({"action_name": "hover", "timestamp": T}, "e2")
    assert view.event is None and ubi_errors("event", view.ubi) == []
    cases = {"[3].event_attributes.position.ordinal.index": {"action_name": "click", "timestamp": T,
                                                             "query_id": "q", "session_id": "s",
                                                             "event_attributes": {"object": {"object_id": "p"}}},
             "[3].session_id": {"action_name": "purchase", "timestamp": T,
                                "event_attributes": {"object": {"object_id": "p"}}},
             "[3].event_attributes.object.object_id": {"action_name": "purchase", "timestamp": T, "client_id": "c"},
             "[3].timestamp": {"action_name": "view", "timestamp": "2024-01-01T00:00:00"},
             "[3].client_id": {"action_name": "view", "timestamp": T, "client_id": "c" * 101},
             "[3].colour": {"action_name": "view", "timestamp": T, "colour": "red"}}
    for parameter, raw in cases.items():
        with pytest.raises(EventError) as err:
            parse_ubi_event(raw, "e", "[3].")
        assert err.value.parameter == parameter, (raw, str(err.value))
    with pytest.raises(EventError, match=r"^\[3\]\.timestamp: 9999-01-01T00:00:00Z is more than a day ahead"):
        parse_ubi_event({"action_name": "view", "timestamp": "9999-01-01T00:00:00Z"}, "e", "[3].")


def test_parse_event_batch_mixes_both_formats_all_or_nothing():
    ubi = {"action_name": "add_to_cart", "timestamp": T, "session_id": "s1",
           "event_attributes": {"object": {"object_id": "p3"}}}
    batch = parse_event_batch([CLICK, ubi], max_events=5)
    assert [p.ubi.action_name for p in batch] == ["click", "add_to_cart"]
    assert all(p.ubi.event_id and p.event.event_id == p.ubi.event_id for p in batch)
    assert all(ubi_errors("event", p.ubi) == [] for p in batch)
    with pytest.raises(EventError) as err:
        parse_event_batch([CLICK, {**ubi, "timestamp": "soon"}], max_events=5)
    assert err.value.parameter == "[1].timestamp"
    with pytest.raises(EventError) as err:
        parse_event_batch({**CLICK, "session_id": "s" * 120}, max_events=5)  # a shopsearch id past UBI's 100
    assert err.value.parameter == "session_id"
    with pytest.raises(EventError):
        parse_event_batch([], max_events=5)


@pytest.mark.parametrize("units", ["cheap", 0, 2.5, 20_000])
def test_a_stored_event_with_a_quantity_it_cannot_read_keeps_the_record_without_it(units):
    """Another writer's records: the value is dropped, not the purchase (as a bad price is)."""
    from shopsearch.ubi import stored_event

    e = stored_event({"action_name": "purchase", "client_id": "c", "timestamp": "2024-01-01T00:00:00Z",
                      "event_attributes": {"object": {"object_id": "p"}, "position": {"ordinal": {"index": 0}},
                                           "price": 5, "quantity": units}})
    assert (e.event_attributes.quantity, e.event_attributes.price) == (None, 5.0)
