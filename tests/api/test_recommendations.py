"""GET /recommendations on both engines: cold start -> popular; a shopper's events -> for_you and recently_viewed;
co-purchases -> bought_together; 4xx for bad parameters; every answer fits /openapi.json."""

from __future__ import annotations

import uuid

import pytest

from shopsearch.api.app import create_app
from shopsearch.api.hit_tokens import client_token, signing_key
from shopsearch.events import Event

from .conftest import ALIAS, build_catalog
from .test_openapi import check

T0 = "2024-01-01T00:00:00Z"


def _event(kind: str, pid: str, user: str | None, session: str, minute: int = 0) -> Event:
    return Event(type=kind, product_id=pid, user_id=user, session_id=session,
                 timestamp=f"2024-01-01T00:{minute:02d}:00Z",
                 **({"query_id": "q1", "position": 1} if kind == "click" else {}))


@pytest.fixture(params=["embedded", pytest.param("opensearch", marks=pytest.mark.opensearch)])
def recs(request, tmp_path, searcher, catalog_engine, tiny_encoder):
    """(app client, app, spec): the test catalog on that engine; the test writes events, then refreshes."""
    from shopsearch.plugin.engines import open_engine
    from shopsearch.plugin.hybrid import HybridSearcher
    from shopsearch.plugin.profiles import ProfileStore

    engine, own, index, concrete = catalog_engine, None, ALIAS, None
    if request.param == "opensearch":
        own = engine = open_engine("opensearch", url=request.getfixturevalue("opensearch_url"))
        tag = uuid.uuid4().hex[:8]
        index, concrete = f"api-recs-{tag}", f"api-recs-{tag}-v1"
        build_catalog(engine, tiny_encoder, index=concrete, alias=index)
    app = create_app({"TESTING": True, "engine_instance": engine, "index": index, "engine": request.param,
                      "searcher": searcher if own is None else HybridSearcher(engine, index, tiny_encoder,
                                                                              ProfileStore()),
                      "events_dir": str(tmp_path / "events"), "home": str(tmp_path), "rate_limits": False})
    client = app.test_client()
    try:
        yield client, app, client.get("/openapi.json").get_json()
    finally:
        app.extensions["shopsearch"].ubi_drainer.stop()
        app.extensions["shopsearch"].stop_history()
        if own is not None:
            own.delete_index(concrete)
            own.close()


def _store(app, events: list[Event]) -> None:
    """Append to the app's event log and apply it now (the background refresh would, within refresh_s)."""
    svc = app.extensions["shopsearch"]
    svc.events.append(events)
    svc.get_pipeline().history.refresh()


def _get(client, spec, **params):
    resp = client.get("/recommendations", query_string=params)
    check(spec, "/recommendations", "get", resp)
    return resp


def _token(app, client_id: str) -> str:
    """What the shop's backend renders for a signed-in shopper (api/hit_tokens.py)."""
    return client_token(signing_key(app.extensions["shopsearch"].config), client_id)


def _lists(resp) -> dict[str, list[str]]:
    body = resp.get_json()
    return {rl["source"]: [h["id"] for h in rl["hits"]] for rl in body["lists"]}


def test_the_first_call_after_a_start_reads_the_log_it_finds(recs):
    """The log holds events when the API starts: its first answer is not an empty memory's."""
    client, app, spec = recs
    app.extensions["shopsearch"].events.append([_event("click", "p4", "u1", "s1"), _event("purchase", "p5", "u2", "s2")])
    assert _lists(_get(client, spec, client_id="newcomer")) == {"popular": ["p5", "p4"]}


def test_cold_start_gets_popular_products(recs):
    client, app, spec = recs
    assert _lists(_get(client, spec, client_id="nobody")) == {}  # no events at all: nothing to recommend
    _store(app, [_event("click", "p4", "u1", "s1"), _event("click", "p4", "u2", "s2"),
                 _event("purchase", "p5", "u3", "s3"), _event("click", "p6", "u3", "s3")])
    lists = _lists(_get(client, spec, client_id="newcomer"))
    assert lists == {"popular": ["p5", "p4", "p6"]}  # a purchase weighs 3 clicks
    assert _lists(_get(client, spec))["popular"][0] == "p5"  # no client_id: popular too


def test_a_shoppers_events_give_for_you_and_recently_viewed(recs):
    client, app, spec = recs
    _store(app, [_event("click", "p1", "u1", "s1", 1), _event("purchase", "p2", "u1", "s1", 2),
                 _event("click", "p4", "u9", "s9", 3)])
    body = _get(client, spec, client_id="u1", client_token=_token(app, "u1"), size=5).get_json()
    lists = _lists(_get(client, spec, client_id="u1", client_token=_token(app, "u1"), size=5))
    assert [rl["source"] for rl in body["lists"]] == ["for_you", "recently_viewed"]
    assert lists["recently_viewed"] == ["p2", "p1"]  # newest first
    assert lists["for_you"] and not {"p1", "p2"} & set(lists["for_you"])  # what they just saw is left out
    assert len(lists["for_you"]) <= 5
    # an anonymous shopper is their session: client_id = the session_id their events carry
    _store(app, [_event("click", "p3", None, "anon-1", 4)])
    assert _lists(_get(client, spec, client_id="anon-1"))["recently_viewed"] == ["p3"]


def test_a_users_history_is_read_only_with_their_client_token_or_an_admin_key(recs):
    """The search key is public and user ids can be guessed: without the proof, client_id is a session id only."""
    client, app, spec = recs
    _store(app, [_event("purchase", "p3", "alice@example.com", "s-alice", 1),
                 _event("click", "p5", None, "anon-7f3a", 2)])
    mine = _lists(_get(client, spec, client_id="alice@example.com", client_token=_token(app, "alice@example.com")))
    assert mine["recently_viewed"] == ["p3"]
    for token in (None, _token(app, "bob@example.com")):  # none, or another shopper's
        lists = _lists(_get(client, spec, client_id="alice@example.com", client_token=token))
        assert "recently_viewed" not in lists and "for_you" not in lists and "p3" in lists["popular"]
    bad = _get(client, spec, client_id="alice@example.com", client_token="not-a-token")
    assert bad.status_code == 400 and bad.get_json()["error"]["parameter"] == "client_token"
    # an anonymous session's id is the browser's own secret: it needs no token
    assert _lists(_get(client, spec, client_id="anon-7f3a"))["recently_viewed"] == ["p5"]

def test_co_purchases_give_bought_together(recs):
    client, app, spec = recs
    _store(app, [_event("purchase", "p4", "a", "sa", 1), _event("purchase", "p5", "a", "sa2", 2),
                 _event("purchase", "p4", "b", "sb", 3), _event("purchase", "p5", "b", "sb2", 4),
                 _event("purchase", "p4", "c", "sc", 5), _event("purchase", "p6", "c", "sc2", 6)])
    lists = _lists(_get(client, spec, client_id="shopper", context="product", product_id="p4"))
    assert lists == {"bought_together": ["p5", "p6"]}  # p5 with p4 twice, p6 once
    lists = _lists(_get(client, spec, client_id="shopper", context="product", product_id="p1"))
    assert list(lists) == ["popular"] and "p1" not in lists["popular"]  # no co-purchases: the fallback
    # the cart: bought together with what the shopper put in it
    _store(app, [_event("add_to_cart", "p5", "d", "sd", 7)])
    lists = _lists(_get(client, spec, client_id="d", client_token=_token(app, "d"), context="cart"))
    assert lists["bought_together"] == ["p4"]


@pytest.mark.parametrize("params, status, parameter", [
    ({"context": "checkout"}, 400, "context"),
    ({"size": "0"}, 400, "size"),
    ({"size": "1000"}, 400, "size"),
    ({"client_id": "x" * 101}, 400, "client_id"),
    ({"colour": "red"}, 400, "colour"),
    ({"context": "product"}, 422, "product_id"),
    ({"context": "product", "product_id": "no-such"}, 404, "product_id"),
])
def test_bad_parameters_are_named(recs, params, status, parameter):
    client, _, spec = recs
    resp = _get(client, spec, **params)
    assert resp.status_code == status and resp.get_json()["error"]["parameter"] == parameter
