"""POST /events: validated batches stored in the event log, each event exactly once.

The schema itself (every field rule, the log file format) is tested in tests/test_events.py.
"""

from __future__ import annotations

CLICK = {"type": "click", "query_id": "q-1", "product_id": "p1", "position": 2, "session_id": "s-1",
         "user_id": "u-1", "query": "lamp", "price": 29.99}


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


def test_post_events_refuses_server_side_fields_and_says_why(client, app):
    for field, value in (("event_id", "mine"), ("simulated", True), ("schema_version", 1)):
        resp = client.post("/events", json=[CLICK, {**CLICK, field: value}])
        assert resp.status_code == 400 and resp.get_json()["error"]["parameter"] == f"[1].{field}"
    resp = client.post("/events", json=[{**CLICK, "position": 0}])
    assert resp.get_json()["error"]["message"] == "[0].position must be an integer >= 1 (1-based); got 0"
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
