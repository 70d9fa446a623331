"""UBI logging through the API: every /search writes a query record (with the served features), POST /events
takes UBI events beside shopsearch's format, and a full spool sheds load instead of growing."""

from __future__ import annotations

import pytest

from shopsearch.api.app import create_app
from shopsearch.plugin.ubi_store import open_ubi_store

from .conftest import ALIAS
from tests.ubi_schemas import ubi_errors

CLICK = {"type": "click", "product_id": "p1", "position": 1, "session_id": "s-1"}
PURCHASE = {"type": "purchase", "product_id": "p1", "session_id": "s-1"}  # no query: needs no token


def stored(app):
    """Stop the app's drainer (it drains a last time, after any pass in flight); the store's queries and events."""
    svc = app.extensions["shopsearch"]
    svc.ubi_drainer.stop()
    store = open_ubi_store(svc.config)
    return list(store.iter_queries()), list(store.iter_events())


def test_every_search_writes_its_query_record_with_the_explained_features(client, app):
    body = client.get("/search?q=lamp&size=3&explain=true&brand=Lumo,Brightway&session_id=s-1&user_id=u-1").get_json()
    plain = client.get("/search?q=desk&client_id=browser-7&simulated=true").get_json()
    queries, _ = stored(app)
    assert [q.query_id for q in queries] == [body["query_id"], plain["query_id"]]
    record = queries[0]
    assert ubi_errors("query", record) == []
    assert record.user_query == "lamp" and record.client_id == "s-1"  # client_id defaults to the session
    assert record.query_response_hit_ids == [h["id"] for h in body["hits"]]
    attrs = record.query_attributes
    assert (attrs["profile"], attrs["page"], attrs["size"], attrs["total"]) == ("default", 1, 3, body["total"])
    assert attrs["filters"] == {"brand": ["Lumo", "Brightway"]}
    assert (attrs["session_id"], attrs["user_id"]) == ("s-1", "u-1")
    assert attrs["features"] == {h["id"]: h["stages"] for h in body["hits"]}  # exactly explain's numbers
    assert queries[1].client_id == "browser-7" and "session_id" not in queries[1].query_attributes
    # how each list was shown, so click models can leave out the console's explained searches
    assert (attrs["sort"], attrs["explain"]) == ("relevance", True)
    assert "explain" not in queries[1].query_attributes and "redirect" not in queries[1].query_attributes
    assert (attrs["simulated"], queries[1].query_attributes["simulated"]) == (False, True)
    assert len(queries[1].query_attributes["features"]) == min(10, len(plain["hits"]))


def test_feature_depth_bounds_the_logged_features(tmp_path, searcher, catalog_engine):
    app = create_app({"TESTING": True, "searcher": searcher, "engine_instance": catalog_engine, "index": ALIAS,
                      "engine": "embedded", "home": str(tmp_path), "ubi_feature_depth": 2})
    try:
        body = app.test_client().get("/search?q=lamp&size=5").get_json()
        (record,), _ = stored(app)
        assert list(record.query_attributes["features"]) == [h["id"] for h in body["hits"][:2]]
    finally:
        app.extensions["shopsearch"].ubi_drainer.stop()


def test_client_id_is_a_validated_parameter(client):
    resp = client.get("/search", query_string={"q": "lamp", "client_id": "c" * 101})
    assert resp.status_code == 400 and resp.get_json()["error"]["parameter"] == "client_id"


def test_blank_ids_from_a_template_are_absent_and_a_head_probe_is_not_logged(client, app):
    plain = client.get("/search?q=lamp&user_id=&session_id=&client_id=")
    assert plain.status_code == 200
    assert client.head("/search?q=desk").status_code == 200  # a monitor's probe: no shopper saw a list
    recs = client.get("/recommendations?client_id=&product_id=")
    assert recs.status_code == 200, recs.get_json()
    queries, _ = stored(app)
    assert [q.query_id for q in queries] == [plain.get_json()["query_id"]] and queries[0].client_id is None


def test_post_events_takes_ubi_events_and_the_shopsearch_alias(client, app):
    body = client.get("/search?q=lamp").get_json()
    qid, token = body["query_id"], next(h["token"] for h in body["hits"] if h["id"] == "p1")
    ubi_click = {"action_name": "click", "query_id": qid, "client_id": "browser-7", "session_id": "s-1",
                 "timestamp": "2024-05-01T10:00:00+02:00",
                 "event_attributes": {"object": {"object_id": "p1", "object_id_field": "id"},
                                      "position": {"ordinal": {"index": 1}}, "token": token}}
    hover = {"action_name": "hover", "client_id": "browser-7", "timestamp": "2024-05-01T08:00:01Z"}
    resp = client.post("/events", json=[{**CLICK, "query_id": qid, "token": token}, ubi_click, hover])
    assert resp.status_code == 202, resp.get_json()
    ids = resp.get_json()["event_ids"]
    _, events = stored(app)
    assert sorted(e.event_id for e in events) == sorted(ids)
    assert all(ubi_errors("event", e) == [] for e in events)
    by_id = {e.event_id: e for e in events}
    assert by_id[ids[1]].timestamp == "2024-05-01T08:00:00Z" and by_id[ids[1]].client_id == "browser-7"
    assert by_id[ids[0]].action_name == "click" and by_id[ids[0]].query_id == qid
    assert "token" not in (by_id[ids[1]].event_attributes.model_extra or {})  # checked, never stored
    # The event log (the reranker's conversion context) keeps the actions it knows, UBI or not.
    logged = list(app.extensions["shopsearch"].events.read())
    assert [(e.event_id, e.type, e.session_id) for e in logged] == [(ids[0], "click", "s-1"),
                                                                    (ids[1], "click", "s-1")]


def test_an_invalid_ubi_event_names_its_field(client, app):
    resp = client.post("/events", json=[{"action_name": "click", "timestamp": "2024-05-01T10:00:00Z",
                                         "session_id": "s", "query_id": "q",
                                         "event_attributes": {"object": {"object_id": "p1"}}}])
    assert resp.status_code == 400
    assert resp.get_json()["error"]["parameter"] == "[0].event_attributes.position.ordinal.index"


@pytest.mark.parametrize("attributes, field", [
    ({"price": "cheap"}, "price"), ({"price": -1}, "price"), ({"simulated": "maybe"}, "simulated"),
    ({"object": {"object_id": "p1", "internal_id": {"a": 1}}}, "object.internal_id"),
    ({"position": {"ordinal": {"index": 1}, "xy": {"x": "left"}}}, "position.xy.x"),
    ({"position": {"xy": {"x": 1}}}, "position.xy.y"), ({"price": True}, "price"),
    ({"position": {"ordinal": {"index": 1}, "xy": {"x": 1, "y": 2}}}, "position"),  # UBI 1.0: one of the two
])
def test_an_extra_the_ubi_mapping_types_is_checked_before_it_is_acknowledged(client, attributes, field):
    # OpenSearch would refuse such a record after the 202, and the spool would drop it: refuse it up front.
    event = {"action_name": "view", "timestamp": "2024-05-01T10:00:00Z", "session_id": "s",
             "event_attributes": {"object": {"object_id": "p1"}, **attributes}}
    resp = client.post("/events", json=[event])
    assert resp.status_code == 400
    assert resp.get_json()["error"]["parameter"] == f"[0].event_attributes.{field}"


def test_a_screen_position_is_stored_for_an_action_outside_the_list(client, app):
    # UBI 1.0's position is an ordinal in the result list or, for an action elsewhere on the page, screen x/y.
    seen = {"action_name": "view", "session_id": "s-1", "timestamp": "2024-05-01T10:00:00Z",
            "event_attributes": {"object": {"object_id": "p1"}, "position": {"xy": {"x": 120, "y": 48.5}}}}
    resp = client.post("/events", json=seen)
    assert resp.status_code == 202, resp.get_json()
    _, (event,) = stored(app)
    assert event.event_attributes.position.xy.x == 120 and event.position is None
    assert ubi_errors("event", event) == []


@pytest.mark.parametrize("event, parameter", [
    ({"action_name": "view", "timestamp": "2024-05-01T10:00:00Z", "session_id": "s",
      "event_attributes": {"object": {"object_id": "p1"}, "note": "x\ud800"}}, "[0]"),  # JSON allows it, UTF-8 not
    ({"action_name": "view", "timestamp": "0001-01-01T00:00:00+01:00", "session_id": "s"}, "[0].timestamp"),
    ({**PURCHASE, "timestamp": "9999-12-31T23:59:59-01:00"}, "[0].timestamp"),  # out of range once in UTC
])
def test_text_or_times_that_cannot_be_stored_are_a_400(client, event, parameter):
    resp = client.post("/events", json=[event])
    assert resp.status_code == 400 and resp.get_json()["error"]["parameter"] == parameter


@pytest.fixture
def tiny_spool_app(tmp_path, searcher, catalog_engine, monkeypatch):
    """An app with a 1500-byte spool that only this test drains (no drainer thread)."""
    app = create_app({"TESTING": True, "searcher": searcher, "engine_instance": catalog_engine, "index": ALIAS,
                      "engine": "embedded", "home": str(tmp_path), "ubi_spool_max_bytes": 1500})
    monkeypatch.setattr(app.extensions["shopsearch"].ubi_drainer, "start", lambda: None)
    return app


def test_a_full_spool_answers_503_writes_nothing_and_searches_still_answer(tiny_spool_app):
    client, svc = tiny_spool_app.test_client(), tiny_spool_app.extensions["shopsearch"]
    assert client.post("/events", json=PURCHASE).status_code == 202
    svc.ubi_drainer.drain_once()
    first = client.post("/events", json=[PURCHASE] * 3)
    assert first.status_code == 202
    size, logged = svc.ubi_spool.size(), len(list(svc.events.read()))
    full = client.post("/events", json=[PURCHASE] * 4)
    assert full.status_code == 503 and int(full.headers["Retry-After"]) > 0
    assert full.get_json()["error"]["code"] == "spool_full"
    assert svc.ubi_spool.size() == size and len(list(svc.events.read())) == logged  # nothing half-written
    assert client.get("/search?q=lamp").status_code == 200  # its query record is dropped, and counted
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'shopsearch_ubi_records_dropped_total{kind="query"} 1.0' in metrics
    assert 'shopsearch_ubi_records_dropped_total{kind="event"} 4.0' in metrics
    svc.ubi_drainer.drain_once()
    assert client.post("/events", json=PURCHASE).status_code == 202  # room again


def test_a_failing_spool_disk_drops_the_query_record_not_the_search(tiny_spool_app, monkeypatch):
    import errno

    client, svc = tiny_spool_app.test_client(), tiny_spool_app.extensions["shopsearch"]

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(svc.ubi_spool, "append", no_space)
    page = client.get("/search?q=lamp")
    assert page.status_code == 200 and page.get_json()["hits"]
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'shopsearch_ubi_records_dropped_total{kind="query"} 1.0' in metrics


def test_the_readme_ubi_event_is_accepted(client, app):
    import json
    import re

    from .test_readme import README

    section = README.read_text().split("### Behaviour logging (UBI)")[1]
    (example,) = re.findall(r"```json\n(.*?)```", section.split("\n### ")[0], flags=re.S)
    body = client.get("/search?q=lamp").get_json()
    token = next(h["token"] for h in body["hits"] if h["id"] == "p1")
    example = example.replace("<query_id from /search>", body["query_id"]).replace("<token of p1 from /search>", token)
    resp = client.post("/events", json=json.loads(example))
    assert resp.status_code == 202, resp.get_json()
    _, (event,) = stored(app)
    assert ubi_errors("event", event) == [] and event.query_id == body["query_id"]
