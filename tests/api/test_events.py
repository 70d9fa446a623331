"""POST /events: validated batches stored in the event log, each event exactly once.

The schema itself (every field rule, the log file format) is tested in tests/test_events.py; what the gate
refuses (forged, replayed, stale, cross-query events; caps; a full disk) in tests/api/test_event_trust.py.
"""

from __future__ import annotations

CLICK = {"type": "click", "query_id": "q-1", "product_id": "p1", "position": 2, "session_id": "s-1",
         "user_id": "u-1", "query": "lamp", "price": 29.99}


def served(client, q: str = "lamp", size: int = 2) -> tuple[str, list[dict]]:
    """A /search's query_id and hits (each with its event token)."""
    body = client.get("/search", query_string={"q": q, "size": size}).get_json()
    return body["query_id"], body["hits"]


def event_for(qid: str, hit: dict, **kw) -> dict:
    """CLICK about ``hit`` of search ``qid``, with the hit's token."""
    return {**CLICK, "query_id": qid, "product_id": hit["id"], "position": hit["rank"], "token": hit["token"], **kw}


# --- POST /events --------------------------------------------------------------------------------------------

def test_post_events_persists_each_event_exactly_once(client, app):
    qid, hits = served(client)
    single = client.post("/events", json=event_for(qid, hits[1]))
    batch = client.post("/events", json=[event_for(qid, h, type="impression") for h in hits])
    assert (single.status_code, batch.status_code) == (202, 202)
    assert single.get_json()["accepted"] == 1 and batch.get_json()["accepted"] == 2
    stored = list(app.extensions["shopsearch"].events.read())
    assert [(e.type, e.position, e.query_id) for e in stored] == [
        ("click", 2, qid), ("impression", 1, qid), ("impression", 2, qid)]
    ids = single.get_json()["event_ids"] + batch.get_json()["event_ids"]
    assert [e.event_id for e in stored] == ids


def test_post_events_is_all_or_nothing_and_names_the_field(client, app):
    qid, hits = served(client)
    resp = client.post("/events", json=[event_for(qid, hits[0]), event_for(qid, hits[0], type="hover")])
    assert resp.status_code == 400
    assert resp.get_json()["error"]["parameter"] == "[1].type"
    assert list(app.extensions["shopsearch"].events.read()) == []


def test_post_events_refuses_server_side_fields_and_says_why(client, app):
    for field, value in (("simulated", True), ("schema_version", 1)):
        resp = client.post("/events", json=[CLICK, {**CLICK, field: value}])
        assert resp.status_code == 400 and resp.get_json()["error"]["parameter"] == f"[1].{field}"
    resp = client.post("/events", json=[{**CLICK, "position": 0}])
    assert resp.get_json()["error"]["message"] == "[0].position must be an integer between 1 and 10000 (1-based); got 0"
    # past the UBI index's 32-bit integer the store would drop it later: refused here (found by tests/api/test_fuzz.py)
    resp = client.post("/events", json=[{**CLICK, "position": 715468497504}])
    assert resp.status_code == 400 and resp.get_json()["error"]["parameter"] == "[0].position"
    assert list(app.extensions["shopsearch"].events.read()) == []


def test_post_events_rejects_non_json_and_too_many(client, app, tmp_path, searcher, catalog_engine):
    resp = client.post("/events", data="type=click", content_type="application/x-www-form-urlencoded")
    assert resp.status_code == 415 and resp.get_json()["error"]["parameter"] == "body"
    resp = client.post("/events", data="{not json", content_type="application/json")
    assert resp.status_code == 400 and resp.get_json()["error"]["code"] == "invalid_json"
    resp = client.post("/events", data="null", content_type="application/json")  # JSON, but no event
    assert resp.status_code == 400 and resp.get_json()["error"]["code"] == "invalid_event"
    from shopsearch.api.app import create_app

    small = create_app({"searcher": searcher, "engine_instance": catalog_engine, "index": "catalog",
                        "max_events": 2, "events_dir": str(tmp_path / "small")}).test_client()
    resp = small.post("/events", json=[CLICK] * 3)
    assert resp.status_code == 413 and "at most 2" in resp.get_json()["error"]["message"]


def test_post_events_counts_in_metrics(client):
    qid, hits = served(client)
    assert client.post("/events", json=[event_for(qid, hits[0]), {**CLICK, "type": "purchase", "query_id": None,
                                                                 "position": None}]).status_code == 202
    text = client.get("/metrics").get_data(as_text=True)
    assert 'shopsearch_events_total{type="click"} 1.0' in text
    assert 'shopsearch_events_total{type="purchase"} 1.0' in text
