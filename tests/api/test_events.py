"""Behaviour events: validation, POST /events, and the append-only log (each event stored exactly once)."""

from __future__ import annotations

import threading
from datetime import datetime, timezone

import pytest

from shopsearch.api.events import EventError, EventLog, parse_event, parse_events

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
CLICK = {"type": "click", "query_id": "q-1", "product_id": "p1", "position": 2, "session_id": "s-1",
         "user_id": "u-1", "query": "lamp", "price": 29.99}


def test_parse_event_fills_server_time_and_keeps_fields():
    ev = parse_event(CLICK, now=NOW)
    assert (ev.type, ev.product_id, ev.position, ev.query_id, ev.price) == ("click", "p1", 2, "q-1", 29.99)
    assert ev.timestamp == "2026-03-01T12:00:00Z" and len(ev.event_id) == 32


def test_parse_event_normalises_client_timestamps_to_utc():
    assert parse_event({**CLICK, "timestamp": "2026-03-01T13:00:00+01:00"}).timestamp == "2026-03-01T12:00:00Z"
    assert parse_event({**CLICK, "timestamp": "2026-03-01T12:00:00Z"}).timestamp == "2026-03-01T12:00:00Z"
    assert parse_event({**CLICK, "timestamp": 0}).timestamp == "1970-01-01T00:00:00Z"


@pytest.mark.parametrize("change, parameter", [
    ({"type": "view"}, "type"),
    ({"product_id": ""}, "product_id"),
    ({"product_id": 5}, "product_id"),
    ({"session_id": None}, "session_id"),
    ({"query_id": None}, "query_id"),  # required for clicks
    ({"position": 0}, "position"),
    ({"position": True}, "position"),
    ({"position": None}, "position"),
    ({"price": -1}, "price"),
    ({"timestamp": "yesterday"}, "timestamp"),
    ({"timestamp": "2026-03-01T12:00:00"}, "timestamp"),  # no timezone
    ({"colour": "red"}, "colour"),
])
def test_parse_event_rejects_naming_the_field(change, parameter):
    bad = {k: v for k, v in {**CLICK, **change}.items() if v is not None}
    with pytest.raises(EventError) as info:
        parse_event(bad)
    assert info.value.parameter == parameter


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
    for body in ([], "click", 3):
        with pytest.raises(EventError):
            parse_events(body, max_events=5)


def test_event_log_appends_in_order_and_reads_back(tmp_path):
    log = EventLog(tmp_path)
    first = parse_events([CLICK, {**CLICK, "position": 3}], 10)
    second = parse_events({"type": "purchase", "product_id": "p9", "session_id": "s"}, 10)
    assert log.append(first) == 2 and log.append(second) == 1 and log.append([]) == 0
    assert list(log.read()) == first + second
    assert len(list(tmp_path.glob("events-*.jsonl"))) == 1


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


# --- POST /events --------------------------------------------------------------------------------------------

def test_post_events_persists_each_event_exactly_once(client, app):
    qid = client.get("/search?q=lamp&size=2").get_json()["query_id"]
    single = client.post("/events", json={**CLICK, "query_id": qid})
    batch = client.post("/events", json=[{**CLICK, "type": "impression", "query_id": qid, "position": p}
                                         for p in (1, 2)])
    assert (single.status_code, batch.status_code) == (202, 202)
    assert single.get_json()["accepted"] == 1 and batch.get_json()["accepted"] == 2
    stored = list(app.extensions["shopsearch"].events.read())
    assert [(e.type, e.position, e.query_id) for e in stored] == [
        ("click", 2, qid), ("impression", 1, qid), ("impression", 2, qid)]
    ids = single.get_json()["event_ids"] + batch.get_json()["event_ids"]
    assert [e.event_id for e in stored] == ids


def test_post_events_is_all_or_nothing_and_names_the_field(client, app):
    resp = client.post("/events", json=[CLICK, {**CLICK, "type": "hover"}])
    assert resp.status_code == 400
    assert resp.get_json()["error"]["parameter"] == "[1].type"
    assert list(app.extensions["shopsearch"].events.read()) == []


def test_post_events_rejects_non_json_and_too_many(client, app, tmp_path, searcher, catalog_engine):
    resp = client.post("/events", data="type=click", content_type="application/x-www-form-urlencoded")
    assert resp.status_code == 415 and resp.get_json()["error"]["parameter"] == "body"
    resp = client.post("/events", data="{not json", content_type="application/json")
    assert resp.status_code == 400 and resp.get_json()["error"]["code"] == "invalid_json"
    from shopsearch.api.app import create_app

    small = create_app({"searcher": searcher, "engine_instance": catalog_engine, "index": "catalog",
                        "max_events": 2, "events_dir": str(tmp_path / "small")}).test_client()
    resp = small.post("/events", json=[CLICK] * 3)
    assert resp.status_code == 413 and "at most 2" in resp.get_json()["error"]["message"]


def test_post_events_counts_in_metrics(client):
    client.post("/events", json=[CLICK, {**CLICK, "type": "purchase"}])
    text = client.get("/metrics").get_data(as_text=True)
    assert 'shopsearch_events_total{type="click"} 1.0' in text
    assert 'shopsearch_events_total{type="purchase"} 1.0' in text


def test_log_is_readable_by_the_reranker(tmp_path):
    from shopsearch.reranker.events import read_events

    log = EventLog(tmp_path)
    stored = parse_events([CLICK, {"type": "purchase", "product_id": "p1", "session_id": "s-1"}], 10)
    log.append(stored)
    (path,) = tmp_path.glob("events-*.jsonl")
    back = list(read_events(path))
    assert [(e.type, e.product_id, e.position, e.event_id, e.timestamp) for e in back] == [
        (e.type, e.product_id, e.position, e.event_id, e.timestamp) for e in stored]
