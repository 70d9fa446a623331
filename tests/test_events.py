"""The one event schema (shopsearch.events): client validation, the stored record, JSONL files and the API's log."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timezone

import pytest

from shopsearch.events import (EVENT_TYPES, SEARCH_EVENTS, Event, EventError, EventIn, EventLog, event_from_dict,
                               parse_event, parse_events, read_events, write_events)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
CLICK = {"type": "click", "query_id": "q-1", "product_id": "p1", "position": 2, "session_id": "s-1",
         "user_id": "u-1", "query": "lamp", "price": 29.99}


def _stored(**kw) -> dict:
    base = {"type": "click", "query_id": "q1", "query": "red lamp", "product_id": "p1", "position": 2,
            "user_id": "u1", "session_id": "s1", "timestamp": "2024-01-01T00:00:05+00:00"}
    return {**base, **kw}


# --- a client's event (POST /events) -------------------------------------------------------------------------

def test_parse_event_fills_server_time_and_keeps_fields():
    ev = parse_event(CLICK, now=NOW)
    assert (ev.type, ev.product_id, ev.position, ev.query_id, ev.price) == ("click", "p1", 2, "q-1", 29.99)
    assert ev.timestamp == "2026-03-01T12:00:00Z" and len(ev.event_id) == 32
    assert ev.simulated is False and ev.schema_version == 1


def test_parse_event_normalises_client_timestamps_to_utc():
    assert parse_event({**CLICK, "timestamp": "2026-03-01T13:00:00+01:00"}).timestamp == "2026-03-01T12:00:00Z"
    assert parse_event({**CLICK, "timestamp": "2026-03-01T12:00:00Z"}).timestamp == "2026-03-01T12:00:00Z"
    assert parse_event({**CLICK, "timestamp": 0}).timestamp == "1970-01-01T00:00:00Z"


@pytest.mark.parametrize("change, parameter", [
    ({"type": "view"}, "type"),
    ({"product_id": ""}, "product_id"),
    ({"product_id": "   "}, "product_id"),
    ({"product_id": 5}, "product_id"),
    ({"product_id": "p" * 129}, "product_id"),
    ({"session_id": None}, "session_id"),
    ({"query_id": None}, "query_id"),  # required for clicks
    ({"position": 0}, "position"),
    ({"position": True}, "position"),
    ({"position": "2"}, "position"),
    ({"position": None}, "position"),
    ({"price": -1}, "price"),
    ({"price": "9.99"}, "price"),
    ({"query": "q" * 1025}, "query"),
    ({"timestamp": "yesterday"}, "timestamp"),
    ({"timestamp": "2026-03-01T12:00:00"}, "timestamp"),  # no timezone
    ({"timestamp": True}, "timestamp"),
    ({"timestamp": "9999-12-31T00:00:00Z"}, "timestamp"),  # from the future: would pair with every later purchase
    ({"timestamp": 253402214400}, "timestamp"),
    ({"colour": "red"}, "colour"),
    ({"simulated": True}, "simulated"),  # set by the simulator, never by a client
    ({"event_id": ""}, "event_id"),  # the client's retry key: a non-empty id
    ({"event_id": 7}, "event_id"),
    ({"token": "t" * 65}, "token"),
])
def test_parse_event_rejects_naming_the_field(change, parameter):
    bad = {k: v for k, v in {**CLICK, **change}.items() if v is not None}
    with pytest.raises(EventError) as info:
        parse_event(bad)
    assert info.value.parameter == parameter
    assert str(info.value).startswith(parameter) or str(info.value).startswith(f"unknown field {parameter!r}")


def test_error_messages_say_what_is_allowed_and_echo_the_value():
    with pytest.raises(EventError,
                       match=r"^\[3\]\.position must be an integer between 1 and 10000 \(1-based\); got 0$"):
        parse_event({**CLICK, "position": 0}, where="[3].")
    with pytest.raises(EventError, match="type must be one of impression, click, add_to_cart, purchase; got 'view'"):
        parse_event({**CLICK, "type": "view"})
    with pytest.raises(EventError, match=r"^position is required for impression events$"):
        parse_event({"type": "impression", "query_id": "q", "product_id": "p", "session_id": "s"})
    with pytest.raises(EventError, match="unknown field 'colour'; allowed: type, query_id, query, product_id"):
        parse_event({**CLICK, "colour": "red"})
    with pytest.raises(EventError, match=r"got 'qqq.*\.\.\. \(2000 characters\)$"):  # long input is cut
        parse_event({**CLICK, "query": "q" * 2000})


def test_a_client_event_id_is_kept_and_the_token_is_not_stored():
    ev = parse_event({**CLICK, "event_id": "retry-key-1", "token": "1700000000.abc"})
    assert ev.event_id == "retry-key-1" and "token" not in ev.to_json()


def test_purchase_needs_no_query_or_position():
    ev = parse_event({"type": "purchase", "product_id": "p1", "session_id": "s"})
    assert ev.query_id is None and ev.position is None


def test_parse_events_batch_paths_and_limit():
    assert len(parse_events([CLICK, CLICK], max_events=2)) == 2
    with pytest.raises(EventError, match="at most 2"):
        parse_events([CLICK] * 3, max_events=2)
    with pytest.raises(EventError) as info:
        parse_events([CLICK, {**CLICK, "position": -3}], max_events=5)
    assert info.value.parameter == "[1].position"
    with pytest.raises(EventError) as info:
        parse_events([CLICK, "click"], max_events=5)
    assert info.value.parameter == "[1]"
    for body in ([], "click", 3):
        with pytest.raises(EventError):
            parse_events(body, max_events=5)


def test_one_list_of_types_and_a_request_schema_for_openapi():
    assert EVENT_TYPES == ("impression", "click", "add_to_cart", "purchase") and set(SEARCH_EVENTS) < set(EVENT_TYPES)
    schema = EventIn.model_json_schema()
    assert schema["additionalProperties"] is False and schema["required"] == ["type", "product_id", "session_id"]
    assert schema["properties"]["type"]["enum"] == list(EVENT_TYPES)
    assert not {"simulated", "schema_version"} & set(schema["properties"])  # the server's to set
    assert {"event_id", "token"} <= set(schema["properties"])  # the client's retry key and its hit's token


# --- the stored record ---------------------------------------------------------------------------------------

def test_event_roundtrip_normalises_timestamp(tmp_path):
    e = event_from_dict(_stored(price=9))
    assert e.timestamp == "2024-01-01T00:00:05Z" and e.price == 9.0 and e.simulated is False
    assert write_events(tmp_path / "e.jsonl", [e, e]) == 2
    assert list(read_events(tmp_path / "e.jsonl")) == [e, e]


def test_stored_line_shape_is_stable():
    """Simulated logs are hashed into model cards: the line format (field order, no event_id when unset) holds."""
    e = Event(type="impression", query_id="q1", query="lamp", product_id="p1", position=1, user_id="u",
              session_id="s", timestamp="2024-01-01T00:00:00Z", price=9.5, simulated=True)
    assert e.to_json() == ('{"type":"impression","query_id":"q1","query":"lamp","product_id":"p1","position":1,'
                           '"user_id":"u","session_id":"s","timestamp":"2024-01-01T00:00:00Z","price":9.5,'
                           '"simulated":true,"schema_version":1}')


@pytest.mark.parametrize("field,value", [
    ("type", "view"), ("position", 0), ("position", True), ("price", -1.0),
    ("timestamp", "2024-01-01T00:00:00"), ("timestamp", "2024-01-01T01:00:00+01:00"), ("timestamp", 0),
    ("simulated", "yes"), ("schema_version", 2), ("schema_version", True), ("query_id", ""), ("bogus", 1)])
def test_event_validation_names_the_field(field, value):
    with pytest.raises(EventError, match=field) as info:
        event_from_dict(_stored(**{field: value}))
    assert info.value.parameter == field


def test_purchase_may_omit_query_and_position_but_click_may_not():
    assert event_from_dict({"type": "purchase", "product_id": "p", "session_id": "s",
                            "timestamp": "2024-01-01T00:00:00Z", "event_id": "abc"}).query_id is None
    with pytest.raises(ValueError, match="position"):
        Event(type="click", query_id="q", query="x", product_id="p", user_id="u", session_id="s",
              timestamp="2024-01-01T00:00:00Z")


def test_read_events_reports_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(_stored()) + "\n\n" + json.dumps(_stored(position=-3)) + "\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:3: position"):
        list(read_events(path))


# --- the API's append-only log -------------------------------------------------------------------------------

def test_event_log_appends_in_order_and_reads_back(tmp_path):
    log = EventLog(tmp_path)
    first = parse_events([CLICK, {**CLICK, "position": 3}], 10)
    second = parse_events({"type": "purchase", "product_id": "p9", "session_id": "s"}, 10)
    assert log.append(first) == 2 and log.append(second) == 1 and log.append([]) == 0
    assert list(log.read()) == first + second
    (path,) = log.files()
    assert list(read_events(path)) == first + second  # one file format for the log and for training


def test_event_log_concurrent_batches_never_interleave(tmp_path):
    log = EventLog(tmp_path)
    batches = [parse_events([{**CLICK, "session_id": f"s{t}", "position": i + 1} for i in range(20)], 100)
               for t in range(8)]
    threads = [threading.Thread(target=log.append, args=(b,)) for b in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stored = list(log.read())
    assert len(stored) == 160 and len({e.event_id for e in stored}) == 160
    # each batch's 20 events are contiguous and in order
    for i in range(0, 160, 20):
        chunk = stored[i:i + 20]
        assert len({e.session_id for e in chunk}) == 1 and [e.position for e in chunk] == list(range(1, 21))


def test_read_new_tails_complete_lines_and_skips_bad_ones(tmp_path):
    writer, reader = EventLog(tmp_path), EventLog(tmp_path)
    assert reader.read_new() == ([], 0)  # nothing yet (the directory is created by the first append)
    writer.append(parse_events([CLICK, CLICK], 10))
    (path,) = writer.files()
    with path.open("a") as f:
        f.write("not json\n" + json.dumps(_stored(position=0)) + "\n" + '{"type": "cli')  # the last is partial
    new = reader.read_new()
    assert len(new.events) == 2 and new.skipped == 2
    with path.open("a") as f:
        f.write('ck"}\n')  # the partial line completed: read now (and invalid)
    writer.append(parse_events(CLICK, 10))
    new = reader.read_new()
    assert (len(new.events), new.skipped) == (1, 1)
    assert reader.read_new() == ([], 0)


def test_read_new_reads_a_backlog_in_chunks_in_order(tmp_path):
    """A restart's backlog is read a chunk at a time, oldest first, across the day files, none twice or lost."""
    writer = EventLog(tmp_path)
    for day in ("2024-01-01", "2024-01-02"):
        writer.append(parse_events([{**CLICK, "position": p, "timestamp": f"{day}T00:00:00Z"} for p in range(1, 6)],
                                   10))
    reader, seen = EventLog(tmp_path), []
    while chunk := reader.read_new(limit=3).events:
        assert len(chunk) <= 3
        seen += [(e.timestamp[:10], e.position) for e in chunk]
    assert seen == [(d, p) for d in ("2024-01-01", "2024-01-02") for p in range(1, 6)]

def test_a_torn_last_line_is_skipped_counted_and_repaired_by_the_next_append(tmp_path):
    log = EventLog(tmp_path)
    first = parse_events([CLICK], 10)
    log.append(first)
    (path,) = log.files()
    with path.open("ab") as f:
        f.write(b'{"type": "click", "query_id": "q-1", "prod')  # a crash mid-write: no newline
    assert list(log.read()) == first and log.torn == 1
    second = parse_events({**CLICK, "position": 5}, 10)
    log.append(second)  # ends the torn line first, so the new event is a line of its own
    lines = path.read_bytes().split(b"\n")
    assert lines[1] == b'{"type": "click", "query_id": "q-1", "prod' and lines[-1] == b""
    assert list(log.read()) == first + second and log.torn == 2
    assert EventLog(tmp_path).read_new() == (first + second, 1)


def test_a_failed_append_leaves_the_log_as_it_was(tmp_path, monkeypatch):
    import errno
    import os

    log = EventLog(tmp_path)
    log.append(parse_events([CLICK], 10))
    (path,) = log.files()
    before = path.read_bytes()
    real = os.write

    def half_then_full(fd, data):
        real(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(OSError) as info:
        log.append(parse_events([CLICK, CLICK], 10))
    monkeypatch.undo()
    assert info.value.errno == errno.ENOSPC and path.read_bytes() == before


def test_logs_of_shoppers_are_readable_by_the_servers_user_only(tmp_path):
    """Event logs and UBI records hold user ids and what they bought."""
    from shopsearch.events import append_lines

    append_lines(tmp_path / "log" / "events.jsonl", b"{}\n")
    assert (tmp_path / "log" / "events.jsonl").stat().st_mode & 0o777 == 0o600


def test_quantity_is_stored_only_when_sent_so_old_lines_stay_byte_identical():
    from shopsearch.ubi import from_ubi_event, to_ubi_event

    one = Event(type="purchase", product_id="p1", session_id="s1", timestamp="2024-01-01T00:00:00Z", price=9.5)
    three = one.model_copy(update={"quantity": 3})
    assert "quantity" not in one.to_json() and '"quantity":3' in three.to_json()
    assert from_ubi_event(to_ubi_event(three)).quantity == 3 and from_ubi_event(to_ubi_event(one)).quantity is None
    with pytest.raises(EventError, match="quantity must be an integer between 1 and 100"):
        parse_events({"type": "purchase", "product_id": "p1", "session_id": "s1", "quantity": 0}, 10)
