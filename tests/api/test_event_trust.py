"""Events you can trust (issue 15): POST /events refuses forged, replayed, stale and cross-query events with a
clear 4xx and they leave the conversion features unchanged; caps answer 429; a flood of random ids keeps memory
bounded; a full disk answers 503 with nothing half-accepted; the signing key is shared by every worker on a home."""

from __future__ import annotations

import errno
import os
import random
import time
import tracemalloc
import uuid

import pytest

from shopsearch.api.app import create_app
from shopsearch.plugin.search_types import ScoredHit
from shopsearch.reranker.features import list_features

from .conftest import ALIAS
from .test_limits import redis_url  # noqa: F401 - the fixture: the suite's Redis

CONVERSION_FEATURES = ("ctr", "cvr", "impressions_log", "user_brand_affinity", "user_category_affinity",
                       "user_history_log")


def make_app(tmp_path, searcher, catalog_engine, **config):
    return create_app({"TESTING": True, "searcher": searcher, "engine_instance": catalog_engine, "index": ALIAS,
                       "engine": "embedded", "home": str(tmp_path), "rate_limits": False,
                       "search_deadline_ms": 30_000, **config})  # a loaded test machine must not degrade searches


@pytest.fixture
def trust_app(tmp_path, searcher, catalog_engine):
    app = make_app(tmp_path, searcher, catalog_engine)
    yield app
    app.extensions["shopsearch"].ubi_drainer.stop()
    app.extensions["shopsearch"].stop_history()


def served(client, q="lamp", size=4):
    body = client.get("/search", query_string={"q": q, "size": size, "explain": "true"}).get_json()
    return body["query_id"], body["hits"]


def click(qid, hit, **kw):
    return {"type": "click", "query_id": qid, "product_id": hit["id"], "position": hit["rank"], "session_id": "s-1",
            "user_id": "u-1", "token": hit["token"], "event_id": uuid.uuid4().hex, **kw}


def features(app, hits):
    """The conversion features of ``hits`` for shopper u-1, as the conversion stage computes them, after the
    history has read everything logged so far."""
    history = app.extensions["shopsearch"].get_pipeline().history
    history.refresh()
    scored = [ScoredHit(id=h["id"], rank=h["rank"], score=h["score"], source=h, stages=h.get("stages", {}))
              for h in hits]
    rows = list_features("lamp", scored, history.context("u-1", "s-1", [h["id"] for h in hits]))
    return [{name: row[name] for name in CONVERSION_FEATURES} for row in rows]


def refused(client, body, status, code, parameter):
    resp = client.post("/events", json=body)
    error = resp.get_json()["error"]
    assert (resp.status_code, error["code"], error["parameter"]) == (status, code, parameter), error
    return error["message"]


def test_forged_replayed_stale_and_cross_query_events_are_refused_and_leave_the_features_unchanged(trust_app):
    client, svc = trust_app.test_client(), trust_app.extensions["shopsearch"]
    qid, hits = served(client)
    other_qid, other_hits = served(client, q="drill", size=2)
    not_served = next(p for p in ("p4", "p5", "p6", "p8") if p not in {h["id"] for h in hits})
    genuine = click(qid, hits[0])
    assert client.post("/events", json=genuine).status_code == 202
    before = features(trust_app, hits)
    logged = len(list(svc.events.read()))

    forged = "9" * 10 + "." + "A" * 22
    msg = refused(client, click(qid, hits[1], token=forged), 400, "invalid_token", "token")
    assert "did not serve that product" in msg
    # the token's time altered: the signature covers it
    t, mac = hits[1]["token"].split(".")
    refused(client, click(qid, hits[1], token=f"{int(t) - 1}.{mac}"), 400, "invalid_token", "token")
    refused(client, click(qid, hits[1], token=None), 400, "missing_token", "token")
    refused(client, click(qid, hits[1], token="not-a-token"), 400, "invalid_token", "token")
    # cross-query: another search's token, or a product this search never served (with a served hit's token)
    refused(client, click(qid, other_hits[0]), 400, "invalid_token", "token")
    refused(client, click(qid, {**hits[1], "id": not_served}), 400, "invalid_token", "token")
    refused(client, click(other_qid, hits[1]), 400, "invalid_token", "token")
    # the same in the UBI format, in a list: the path names the field as sent
    ubi = {"action_name": "purchase", "query_id": qid, "session_id": "s-1", "timestamp": "2024-05-01T10:00:00Z",
           "event_attributes": {"object": {"object_id": not_served}, "token": hits[0]["token"]}}
    refused(client, [genuine | {"event_id": "x1"}, ubi], 400, "invalid_token", "[1].event_attributes.token")
    # stale: the same genuine token two days later
    svc.event_gate.clock = lambda: time.time() + 2 * 86400
    msg = refused(client, click(qid, hits[1]), 400, "stale_query", "query_id")
    assert "at most 24 h old" in msg
    svc.event_gate.clock = time.time
    # replayed: the genuine event again, same event_id: answered, not counted
    again = client.post("/events", json=genuine)
    assert again.status_code == 200 and again.get_json() == {
        "accepted": 0, "event_ids": [genuine["event_id"]], "duplicate": True, "duplicates": [genuine["event_id"]]}
    # no query: the product must exist
    refused(client, {"type": "purchase", "product_id": "no-such-product", "session_id": "s-1"}, 400,
            "unknown_product", "product_id")

    assert len(list(svc.events.read())) == logged
    assert features(trust_app, hits) == before
    # ...while a genuine new event does move them (the assertion above is not vacuous)
    assert client.post("/events", json=click(qid, hits[1], type="purchase")).status_code == 202
    assert features(trust_app, hits) != before


def test_a_batch_with_a_repeated_event_stores_only_the_new_events(trust_app):
    client, svc = trust_app.test_client(), trust_app.extensions["shopsearch"]
    qid, hits = served(client)
    first, second = click(qid, hits[0]), click(qid, hits[1])
    assert client.post("/events", json=[first]).status_code == 202
    resp = client.post("/events", json=[first, second, second])
    assert resp.status_code == 202 and resp.get_json()["accepted"] == 1
    assert resp.get_json()["duplicates"] == [first["event_id"], second["event_id"]]
    assert [e.event_id for e in svc.events.read()] == [first["event_id"], second["event_id"]]
    # UBI events carry the retry key in event_attributes.event_id
    ubi = {"action_name": "add_to_cart", "query_id": qid, "session_id": "s-1", "timestamp": "2024-05-01T10:00:00Z",
           "event_attributes": {"object": {"object_id": hits[0]["id"]}, "token": hits[0]["token"],
                                "event_id": "ubi-retry-1"}}
    assert client.post("/events", json=ubi).status_code == 202
    assert client.post("/events", json=ubi).get_json()["duplicate"] is True
    assert [e.event_id for e in svc.events.read()][-1] == "ubi-retry-1" and len(list(svc.events.read())) == 3


def test_known_products_are_looked_up_once(trust_app, monkeypatch):
    client, gate = trust_app.test_client(), trust_app.extensions["shopsearch"].event_gate
    lookups = []
    real = gate.find_product
    monkeypatch.setattr(gate, "find_product", lambda pid: lookups.append(pid) or real(pid))
    for _ in range(3):
        assert client.post("/events", json={"type": "purchase", "product_id": "p3", "session_id": "s"}).status_code \
            == 202
        assert client.post("/events", json={"type": "purchase", "product_id": "zz", "session_id": "s"}).status_code \
            == 400
    assert lookups == ["p3", "zz"]


def test_a_price_far_above_the_catalogs_is_refused_and_a_known_product_is_looked_up_again_later(trust_app):
    """Experiment reports sum event prices: a forged 1e12 purchase would be any revenue an attacker likes."""
    client, gate = trust_app.test_client(), trust_app.extensions["shopsearch"].event_gate
    buy = {"type": "purchase", "product_id": "p1", "session_id": "s-price"}  # the catalog's p1: 29.99
    message = refused(client, {**buy, "price": 1e12}, 400, "implausible_price", "price")
    assert "more than 2 times the catalog's price of 'p1' (29.99); price is per unit" in message
    assert client.post("/events", json={**buy, "price": 29.99, "quantity": 3}).status_code == 202  # three units
    assert client.post("/events", json={**buy, "price": 35.99}).status_code == 202  # with tax, or an option
    assert client.post("/events", json={**buy, "product_id": "p8", "price": 1e6}).status_code == 202  # no price
    real = gate.find_product  # a free product's purchase is checked too (the floor: a fee, rounding)
    gate.find_product = lambda pid: {"id": pid, "price": 0.0} if pid == "p6" else real(pid)
    refused(client, {**buy, "product_id": "p6", "price": 1e12}, 400, "implausible_price", "price")
    assert client.post("/events", json={**buy, "product_id": "p6", "price": 0.99}).status_code == 202
    gate.find_product = real
    ubi = {"action_name": "purchase", "session_id": "s-price", "timestamp": "2024-01-01T00:00:00Z",
           "event_attributes": {"object": {"object_id": "p1"}, "price": 100.0}}
    refused(client, ubi, 400, "implausible_price", "event_attributes.price")
    # a known product is looked up again after a while: one deleted since stops taking events
    real, now = gate.find_product, time.time()
    gate.find_product, gate.clock = (lambda pid: None if pid == "p3" else real(pid)), (lambda: now + 601)
    refused(client, {**buy, "product_id": "p3"}, 400, "unknown_product", "product_id")

def test_session_and_product_caps_answer_429(tmp_path, searcher, catalog_engine):
    app = make_app(tmp_path, searcher, catalog_engine, event_session_cap=5, event_product_cap=2)
    try:
        client, svc = app.test_client(), app.extensions["shopsearch"]
        buy = {"type": "purchase", "product_id": "p1", "session_id": "s-cap"}
        assert client.post("/events", json=[buy, buy]).status_code == 202
        resp = client.post("/events", json=buy)
        assert resp.status_code == 429 and int(resp.headers["Retry-After"]) > 0
        assert resp.get_json()["error"]["code"] == "product_cap"
        assert resp.get_json()["error"]["parameter"] == "product_id"
        others = [{**buy, "product_id": p} for p in ("p2", "p3", "p4")]
        assert client.post("/events", json=others).status_code == 202
        resp = client.post("/events", json=[{**buy, "product_id": "p5"}])
        assert (resp.status_code, resp.get_json()["error"]["code"]) == (429, "session_cap")
        assert len(list(svc.events.read())) == 5
        assert client.post("/events", json={**buy, "session_id": "s-other"}).status_code == 202  # per session
        svc.event_gate.clock = lambda: time.time() + 3601  # the next window
        assert client.post("/events", json=buy).status_code == 202
    finally:
        app.extensions["shopsearch"].ubi_drainer.stop()


def test_events_without_a_session_are_capped_per_address_not_for_everyone(tmp_path, searcher, catalog_engine):
    """Two requests of anonymous UBI events must not block every other caller's for the cap's window."""
    app = make_app(tmp_path, searcher, catalog_engine, event_session_cap=5)
    try:
        client = app.test_client()
        view = {"action_name": "page_view", "timestamp": "2024-01-01T00:00:00Z"}

        def post(body, addr):
            return client.post("/events", json=body, environ_base={"REMOTE_ADDR": addr})

        assert post([view] * 5, "127.0.0.5").status_code == 202
        resp = post(view, "127.0.0.5")
        assert (resp.status_code, resp.get_json()["error"]["code"]) == (429, "session_cap")
        assert "from this address" in resp.get_json()["error"]["message"]
        assert post(view, "127.0.0.6").status_code == 202  # another caller's are their own
        assert post({**view, "session_id": "a:127.0.0.5"}, "127.0.0.7").status_code == 202  # no id names the address
    finally:
        app.extensions["shopsearch"].ubi_drainer.stop()

def test_a_shopper_refining_a_query_sees_its_products_in_every_list_and_can_still_click(tmp_path, searcher,
                                                                                          catalog_engine):
    """Impressions have a cap of their own: twenty refinements showed the top product twenty times, and the product
    cap then refused the shopper's click on it."""
    app = make_app(tmp_path, searcher, catalog_engine, event_product_cap=2, event_impression_cap=5)
    try:
        client = app.test_client()

        def shown(body, hit, kind="impression"):
            return {"type": kind, "query_id": body["query_id"], "product_id": hit["id"], "position": hit["rank"],
                    "session_id": "s-refine", "token": hit["token"]}

        for sort in ("relevance", "price_asc", "price_desc", "rating", "relevance"):
            body = client.get(f"/search?q=lamp&sort={sort}&session_id=s-refine").get_json()
            assert client.post("/events", json=[shown(body, h) for h in body["hits"]]).status_code == 202
        top = body["hits"][0]
        assert client.post("/events", json=shown(body, top, "click")).status_code == 202
        sixth = client.post("/events", json=shown(body, top))  # still bounded: a sixth impression of it
        assert sixth.status_code == 429 and "impressions of product" in sixth.get_json()["error"]["message"]
    finally:
        app.extensions["shopsearch"].ubi_drainer.stop()


def test_ten_thousand_events_for_random_products_keep_memory_bounded(tmp_path, searcher, catalog_engine):
    bounds = {"event_known_products": 500, "event_recent_ids": 500, "history_max_products": 500,
              "history_max_users": 200, "event_session_cap": 1_000_000, "event_product_cap": 1_000_000}
    app = make_app(tmp_path, searcher, catalog_engine, **bounds)
    client, svc = app.test_client(), app.extensions["shopsearch"]
    rng = random.Random(0)
    qid, hits = served(client)
    history = svc.get_pipeline().history

    def flood(n):
        """n events for random product ids: 9 in 10 for ids no catalog holds (refused, one request each, so each
        costs a lookup), 1 in 10 clicks on served hits from random sessions and users (accepted, in batches)."""
        for i in range(0, n, 50):
            for _ in range(45):
                body = {"type": "purchase", "product_id": f"rand-{rng.getrandbits(64):x}",
                        "session_id": f"s{rng.getrandbits(32)}", "event_id": uuid.uuid4().hex}
                assert client.post("/events", json=body).status_code == 400
            batch = [click(qid, rng.choice(hits), session_id=f"s{rng.getrandbits(32)}",
                           user_id=f"u{rng.getrandbits(32)}") for _ in range(5)]
            assert client.post("/events", json=batch).status_code == 202
        history.refresh()

    try:
        flood(1000)  # warm: caches and LRUs fill to their bounds
        tracemalloc.start()
        start, _ = tracemalloc.get_traced_memory()
        flood(9000)
        end, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        gate = svc.event_gate
        assert len(gate.known_products) <= 500 and len(gate.recent_ids) <= 500
        assert len(gate.counters) <= 2 * 500
        products, users = history.history.sizes()
        assert products <= 500 and users <= 200
        assert end - start < 2_000_000, f"memory grew {end - start} bytes over 9,000 events"
    finally:
        svc.ubi_drainer.stop()
        svc.stop_history()


def _fail_writes_to(monkeypatch, marker: str) -> None:
    """os.write to files whose path contains ``marker`` writes half its bytes, then fails as a full disk does."""
    real = os.write

    def write(fd, data):
        if marker in os.readlink(f"/proc/self/fd/{fd}"):
            real(fd, bytes(data[: len(data) // 2]))
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data)

    monkeypatch.setattr(os, "write", write)


@pytest.mark.parametrize("marker", ["events-", "spool"])
def test_a_full_disk_answers_503_and_nothing_is_half_accepted(trust_app, monkeypatch, marker):
    client, svc = trust_app.test_client(), trust_app.extensions["shopsearch"]
    monkeypatch.setattr(svc.ubi_drainer, "start", lambda: None)  # the spool stays as the request left it
    buy = {"type": "purchase", "product_id": "p1", "session_id": "s-1"}
    assert client.post("/events", json=buy).status_code == 202
    spooled, logged = svc.ubi_spool.size(), [e.event_id for e in svc.events.read()]
    _fail_writes_to(monkeypatch, marker)
    resp = client.post("/events", json=[buy | {"event_id": "retry-me"}, buy])
    monkeypatch.undo()
    monkeypatch.setattr(svc.ubi_drainer, "start", lambda: None)
    assert resp.status_code == 503 and int(resp.headers["Retry-After"]) > 0
    assert resp.get_json()["error"]["code"] == "storage_full"
    assert svc.ubi_spool.size() == spooled and [e.event_id for e in svc.events.read()] == logged
    # the retry is not mistaken for a duplicate: nothing was accepted
    resp = client.post("/events", json=[buy | {"event_id": "retry-me"}, buy])
    assert resp.status_code == 202 and resp.get_json()["accepted"] == 2
    assert [e.event_id for e in svc.events.read()][:-1] == logged + ["retry-me"]


def test_every_worker_on_a_home_shares_the_generated_key_and_a_configured_key_wins(tmp_path, searcher,
                                                                                  catalog_engine):
    first = make_app(tmp_path, searcher, catalog_engine)
    second = make_app(tmp_path, searcher, catalog_engine)  # another worker: same home
    elsewhere = make_app(tmp_path / "other", searcher, catalog_engine, event_signing_key="k" * 40)
    try:
        assert (tmp_path / "event-signing.key").stat().st_mode & 0o777 == 0o600
        qid, hits = served(first.test_client())
        assert second.test_client().post("/events", json=click(qid, hits[0])).status_code == 202
        resp = elsewhere.test_client().post("/events", json=click(qid, hits[0]))
        assert resp.status_code == 400 and resp.get_json()["error"]["code"] == "invalid_token"
        with pytest.raises(ValueError, match="event_signing_key must have at least 32 characters"):
            make_app(tmp_path, searcher, catalog_engine, event_signing_key="short")
    finally:
        for app in (first, second, elsewhere):
            app.extensions["shopsearch"].ubi_drainer.stop()


def test_a_retry_that_reaches_another_worker_is_a_duplicate_with_redis(tmp_path, searcher, catalog_engine,
                                                                       redis_url):  # noqa: F811
    first = make_app(tmp_path, searcher, catalog_engine, redis_url=redis_url)
    second = make_app(tmp_path, searcher, catalog_engine, redis_url=redis_url)  # another worker, same Redis
    try:
        qid, hits = served(first.test_client())
        event = click(qid, hits[0])
        assert first.test_client().post("/events", json=event).status_code == 202
        retry = second.test_client().post("/events", json=event)
        assert retry.status_code == 200 and retry.get_json()["duplicate"] is True
        assert len(list(second.extensions["shopsearch"].events.read())) == 1  # one home: one event log
    finally:
        for app in (first, second):
            app.extensions["shopsearch"].ubi_drainer.stop()
            app.extensions["shopsearch"].stop_history()


def test_copies_of_one_event_at_two_workers_at_once_are_stored_once_with_redis(tmp_path, searcher, catalog_engine,
                                                                              redis_url):  # noqa: F811
    first = make_app(tmp_path, searcher, catalog_engine, redis_url=redis_url)
    second = make_app(tmp_path, searcher, catalog_engine, redis_url=redis_url)
    svc = first.extensions["shopsearch"]
    try:
        qid, hits = served(first.test_client())
        event, meanwhile = click(qid, hits[0]), []
        append = svc.events.append

        def slow_append(events):  # the second copy arrives while the first worker is storing its own
            meanwhile.append(second.test_client().post("/events", json=event))
            return append(events)

        svc.events.append = slow_append
        assert first.test_client().post("/events", json=event).status_code == 202
        busy = meanwhile[0]
        assert busy.status_code == 409 and int(busy.headers["Retry-After"]) >= 1
        assert busy.get_json()["error"]["code"] == "event_in_flight"
        assert busy.get_json()["error"]["parameter"] == "event_id"
        retry = second.test_client().post("/events", json=event)
        assert retry.status_code == 200 and retry.get_json()["duplicate"] is True
        assert [e.event_id for e in svc.events.read()] == [event["event_id"]]
    finally:
        for app in (first, second):
            app.extensions["shopsearch"].ubi_drainer.stop()
            app.extensions["shopsearch"].stop_history()


def test_a_batch_that_failed_to_store_leaves_its_ids_free_for_the_retry_with_redis(tmp_path, searcher,
                                                                                    catalog_engine, monkeypatch,
                                                                                    redis_url):  # noqa: F811
    first = make_app(tmp_path, searcher, catalog_engine, redis_url=redis_url)
    second = make_app(tmp_path, searcher, catalog_engine, redis_url=redis_url)
    try:
        qid, hits = served(first.test_client())
        event = click(qid, hits[0])
        _fail_writes_to(monkeypatch, "events-")
        assert first.test_client().post("/events", json=event).status_code == 503
        monkeypatch.undo()
        assert second.test_client().post("/events", json=event).status_code == 202
        assert [e.event_id for e in second.extensions["shopsearch"].events.read()] == [event["event_id"]]
    finally:
        for app in (first, second):
            app.extensions["shopsearch"].ubi_drainer.stop()
            app.extensions["shopsearch"].stop_history()


def redis_gate(url):
    from shopsearch.api.event_gate import EventGate, GateLimits, RedisRecentIds
    from shopsearch.api.hit_tokens import HitSigner

    return EventGate(HitSigner(b"k" * 32), lambda pid: True, GateLimits(), recent_ids=RedisRecentIds(url, 3600))


def purchase(event_id):
    from shopsearch.ubi import parse_event_batch

    return parse_event_batch([{"type": "purchase", "product_id": "p1", "session_id": "s-1", "event_id": event_id}], 5)


def test_a_request_whose_claim_expired_does_not_free_the_id_another_stored(redis_url, monkeypatch):  # noqa: F811
    from shopsearch.api import event_gate

    monkeypatch.setattr(event_gate, "CLAIM_TTL_S", 0.2)
    slow, other, eid = redis_gate(redis_url), redis_gate(redis_url), uuid.uuid4().hex
    with pytest.raises(OSError):
        with slow.admit(purchase(eid)):  # a store stalled past its claim...
            time.sleep(0.4)
            with other.admit(purchase(eid)) as admitted:  # ...while the retry reached another worker and was stored
                assert len(admitted.fresh) == 1
            raise OSError(28, "no space left")  # ...then the stalled store failed: its claim is long gone
    with other.admit(purchase(eid)) as admitted:
        assert admitted.fresh == [] and admitted.duplicates == [eid]


def test_a_claim_whose_reply_was_lost_is_given_back(redis_url, monkeypatch):  # noqa: F811
    import redis

    from shopsearch.plugin.engine import EngineUnavailable

    flaky, other, eid = redis_gate(redis_url), redis_gate(redis_url), uuid.uuid4().hex
    script = flaky.recent_ids._claim

    def lost_reply(**kw):
        script(**kw)  # Redis ran it...
        raise redis.TimeoutError("read timed out")  # ...the answer never came

    monkeypatch.setattr(flaky.recent_ids, "_claim", lost_reply)
    with pytest.raises(EngineUnavailable):  # 503: the client retries
        with flaky.admit(purchase(eid)):
            pass
    with other.admit(purchase(eid)) as admitted:  # and its retry is stored, not refused as in flight
        assert len(admitted.fresh) == 1


def test_two_clients_choosing_the_same_event_id_each_keep_their_event(trust_app):
    client, svc = trust_app.test_client(), trust_app.extensions["shopsearch"]
    qid, hits = served(client)
    mine = click(qid, hits[0], event_id="cart-1")
    theirs = click(qid, hits[1], event_id="cart-1", session_id="s-2", user_id="u-2")
    assert client.post("/events", json=mine).status_code == 202
    resp = client.post("/events", json=theirs)
    assert resp.status_code == 202 and resp.get_json()["duplicate"] is False
    assert client.post("/events", json=theirs).get_json()["duplicate"] is True  # its own retry still counts once
    assert [(e.session_id, e.product_id) for e in svc.events.read()] == [("s-1", hits[0]["id"]),
                                                                        ("s-2", hits[1]["id"])]
    svc.ubi_drainer.drain_once()  # and the UBI store keeps both: neither replaces the other
    stored = [e for e in svc.ubi_drainer._store.iter_events() if e.event_id == "cart-1"]
    assert sorted(e.session_id for e in stored) == ["s-1", "s-2"]


def test_an_unreachable_event_id_store_answers_503_and_stores_nothing(tmp_path, searcher, catalog_engine):
    app = make_app(tmp_path, searcher, catalog_engine, redis_url="redis://127.0.0.1:1/0")  # nothing listens
    try:
        client = app.test_client()
        qid, hits = served(client)
        resp = client.post("/events", json=click(qid, hits[0]))
        assert resp.status_code == 503 and "Retry-After" in resp.headers
        assert list(app.extensions["shopsearch"].events.read()) == []
    finally:
        app.extensions["shopsearch"].ubi_drainer.stop()
        app.extensions["shopsearch"].stop_history()


def test_events_stored_before_the_id_store_failed_are_acknowledged(tmp_path, searcher, catalog_engine, monkeypatch):
    # A 503 after the events were stored would make the client send them again: stored twice.
    from shopsearch.plugin.engine import EngineUnavailable

    app = make_app(tmp_path, searcher, catalog_engine)
    svc = app.extensions["shopsearch"]
    try:
        client = app.test_client()
        qid, hits = served(client)

        def down(ids):
            raise EngineUnavailable("the event-id store (Redis) is unavailable while recording event ids")

        monkeypatch.setattr(svc.event_gate.recent_ids, "add", down)
        event = click(qid, hits[0])
        assert client.post("/events", json=event).status_code == 202
        assert len(list(svc.events.read())) == 1
    finally:
        svc.ubi_drainer.stop()
        svc.stop_history()
