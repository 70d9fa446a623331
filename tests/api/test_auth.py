"""API keys and roles: 401 without or with a bad key, 403 for a search key on admin endpoints, local mode without
keys, the storefront's embedded key, the OpenAPI security schemes and `shopsearch keys` / `serve` checks."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from shopsearch.api.app import create_app
from shopsearch.api.auth import PUBLIC, required_role
from shopsearch.api.keys import InvalidKey, KeyStore, parse_expires
from shopsearch.plugin.engine import EngineUnavailable

from .conftest import ALIAS

SEARCH_URLS = [("GET", "/search?q=lamp"), ("GET", "/suggest?q=la"), ("GET", "/products/p1"),
               ("GET", "/products/p1/similar"), ("POST", "/events")]
ADMIN_URLS = [("GET", "/console/api/profiles"), ("GET", "/console/api/judgments"), ("POST", "/console/api/judge"),
              ("POST", "/console/api/grades"), ("GET", "/console/api/grades"), ("GET", "/console/api/grades.csv"),
              ("GET", "/metrics")]
PUBLIC_URLS = ["/healthz", "/readyz", "/openapi.json", "/", "/console", "/static/common.js"]
EVENT = {"type": "purchase", "product_id": "p1", "session_id": "s-1"}


def _call(client, method: str, url: str, key: str | None = None, header: str = "bearer"):
    headers = {} if key is None else ({"Authorization": f"Bearer {key}"} if header == "bearer" else {"X-API-Key": key})
    if method == "POST":
        body = ([EVENT] if url == "/events" else {"query": "lamp", "product_id": "p1", "grade": 2}
                if url == "/console/api/grades" else {"query": "lamp", "rankings": [["p1"]]})
        return client.post(url, json=body, headers=headers)
    return client.get(url, headers=headers)


@pytest.fixture
def keys(app):
    """The app's key store (``<home>/keys.json``); creating a key turns the checks on."""
    return KeyStore(app.extensions["shopsearch"].config.keys_file)


def test_every_route_needs_a_key_once_keys_exist(app, client, keys):
    keys.create("admin")
    for rule in app.url_map.iter_rules():  # every route, not only the listed ones: a new one is closed by default
        if required_role(app, rule.endpoint, app.extensions["shopsearch"].config) == PUBLIC:
            continue
        url = rule.rule.replace("<product_id>", "p1").replace("<path:filename>", "x")
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            resp = _call(client, method, url)
            assert resp.status_code == 401, (method, url, resp.status_code)
            assert resp.get_json()["error"]["code"] == "missing_api_key"
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/no-such-route").status_code == 401  # scanners learn nothing
    for url in PUBLIC_URLS:
        with client.get(url) as resp:  # a static file's response holds the file open until closed
            assert resp.status_code in (200, 503), url  # readyz may say 503; never 401


def test_search_key_reaches_search_endpoints_only(client, keys):
    search = keys.create("search").secret
    for i, (method, url) in enumerate(SEARCH_URLS):
        resp = _call(client, method, url, search, header="bearer" if i % 2 else "x-api-key")
        assert resp.status_code in (200, 202, 501), (url, resp.get_data(as_text=True))
    for method, url in ADMIN_URLS:
        resp = _call(client, method, url, search)
        assert resp.status_code == 403, url
        assert resp.get_json()["error"]["code"] == "forbidden"


def test_admin_key_reaches_everything(client, keys):
    admin = keys.create("admin").secret
    for method, url in SEARCH_URLS + ADMIN_URLS:
        assert _call(client, method, url, admin).status_code in (200, 202, 501), url


def test_a_shoppers_history_reaches_an_admin_key_and_not_the_public_one(app, client, keys):
    """/recommendations reads a user id's history for an admin key (a shop's backend) without a client_token."""
    from shopsearch.events import Event

    admin, search = keys.create("admin").secret, keys.create("search").secret
    svc = app.extensions["shopsearch"]
    svc.events.append([Event(type="purchase", product_id="p2", user_id="alice", session_id="s-a",
                             timestamp="2024-01-01T00:00:00Z")])
    svc.get_pipeline().history.refresh()

    def sources(key):
        body = _call(client, "GET", "/recommendations?client_id=alice", key).get_json()
        return {rl["source"] for rl in body["lists"]}

    assert "recently_viewed" in sources(admin) and "recently_viewed" not in sources(search)

def test_a_console_grade_names_the_admin_key_that_gave_it(client, keys):
    alice = keys.create("admin", name="alice").secret
    resp = _call(client, "POST", "/console/api/grades", alice)
    assert resp.get_json()["graded_by"] == "alice"
    assert ",alice," in _call(client, "GET", "/console/api/grades.csv", alice).get_data(as_text=True)


def test_revoked_expired_and_forged_keys_are_401(client, keys):
    revoked = keys.create("search")
    keys.revoke(revoked.key.id)
    expired = keys.create("search", expires=dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=1))
    good = keys.create("search").secret
    forged = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    cases = {revoked.secret: "revoked_api_key", forged: "invalid_api_key", "ss_00000000_" + "x" * 43:
             "invalid_api_key", "not a key": "invalid_api_key"}
    for secret, code in cases.items():
        resp = _call(client, "GET", "/search?q=lamp", secret)
        assert resp.status_code == 401 and resp.get_json()["error"]["code"] == code, secret
    with pytest.raises(InvalidKey) as exc:
        keys.verify(expired.secret, now=dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=2))
    assert exc.value.reason == "expired"
    assert _call(client, "GET", "/search?q=lamp", good).status_code == 200


def test_keys_file_holds_no_secret(keys):
    created = keys.create("admin", name="ops")
    text = keys.path.read_text()
    assert created.secret.split("_", 2)[2] not in text
    assert (keys.path.stat().st_mode & 0o777) == 0o600
    assert json.loads(text)["keys"][0]["name"] == "ops"


def test_local_mode_answers_loopback_clients_only(client):
    assert client.get("/search?q=lamp").status_code == 200
    assert client.get("/metrics").status_code == 200
    remote = client.get("/search?q=lamp", environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert remote.status_code == 403 and remote.get_json()["error"]["code"] == "keys_not_configured"


def test_metrics_public_setting(tmp_path, searcher, catalog_engine):
    app = create_app({"searcher": searcher, "engine_instance": catalog_engine, "index": ALIAS, "home": str(tmp_path),
                      "metrics_public": True})
    KeyStore(tmp_path / "keys.json").create("admin")
    c = app.test_client()
    assert c.get("/metrics").status_code == 200
    assert c.get("/search?q=lamp").status_code == 401
    spec = c.get("/openapi.json").get_json()
    assert spec["paths"]["/metrics"]["get"]["security"] == []


class _Down:
    def get(self, *args, **kwargs):
        raise EngineUnavailable("ConnectionTimeout at http://10.9.8.7:9200/catalog-v1/_doc/p1 (/srv/secret/path)")


def test_error_details_reach_admins_only(tmp_path, catalog_engine):
    app = create_app({"searcher": _Down(), "engine_instance": catalog_engine, "index": ALIAS, "home": str(tmp_path)})
    store = KeyStore(tmp_path / "keys.json")
    search, admin = store.create("search").secret, store.create("admin").secret
    c = app.test_client()
    shopper = c.get("/products/p1", headers={"X-API-Key": search})
    assert shopper.status_code == 503 and shopper.headers["Retry-After"]
    text = shopper.get_data(as_text=True)
    assert "10.9.8.7" not in text and "/srv" not in text and "Timeout" not in text
    assert "10.9.8.7" in c.get("/products/p1", headers={"X-API-Key": admin}).get_data(as_text=True)


def test_local_mode_hides_details_from_shopper_endpoints(tmp_path, catalog_engine):
    # no keys: loopback clients may call everything, but behind a same-host proxy every shopper is "loopback"
    app = create_app({"searcher": _Down(), "engine_instance": catalog_engine, "index": ALIAS, "home": str(tmp_path)})
    resp = app.test_client().get("/products/p1")
    assert resp.status_code == 503 and "10.9.8.7" not in resp.get_data(as_text=True)


def test_storefront_page_embeds_the_configured_search_key(tmp_path, searcher, catalog_engine):
    store = KeyStore(tmp_path / "keys.json")
    search, admin = store.create("search").secret, store.create("admin").secret
    base = {"searcher": searcher, "engine_instance": catalog_engine, "index": ALIAS, "home": str(tmp_path)}
    page = create_app({**base, "storefront_key": search}).test_client().get("/").get_data(as_text=True)
    assert f'<meta name="shopsearch-key" content="{search}">' in page
    assert "shopsearch-key" not in create_app(base).test_client().get("/").get_data(as_text=True)
    with pytest.raises(ValueError, match="never an admin key"):
        create_app({**base, "storefront_key": admin})


def test_openapi_declares_security(client):
    spec = client.get("/openapi.json").get_json()
    assert set(spec["components"]["securitySchemes"]) == {"bearerKey", "headerKey"}
    search = spec["paths"]["/search"]["get"]
    assert search["security"] == [{"bearerKey": ["search"]}, {"headerKey": ["search"]}]
    assert {"401", "403", "429"} <= set(search["responses"])
    assert spec["paths"]["/metrics"]["get"]["security"] == [{"bearerKey": ["admin"]}, {"headerKey": ["admin"]}]
    assert spec["paths"]["/healthz"]["get"]["security"] == []


def test_keys_command(tmp_path, monkeypatch, capsys):
    from shopsearch.api.cli import main

    monkeypatch.setenv("SHOPSEARCH_HOME", str(tmp_path))
    monkeypatch.delenv("SHOPSEARCH_CONFIG", raising=False)
    monkeypatch.delenv("SHOPSEARCH_KEYS_FILE", raising=False)
    assert main(["keys", "create", "--role", "search", "--name", "web", "--expires", "30d"]) == 0
    secret = capsys.readouterr().out.splitlines()[0]
    key = KeyStore(tmp_path / "keys.json").verify(secret)
    assert (key.role, key.name) == ("search", "web")
    assert main(["keys", "list"]) == 0
    listed = capsys.readouterr().out
    assert key.id in listed and "active" in listed and secret not in listed
    assert main(["keys", "revoke", key.id]) == 0
    assert main(["keys", "list"]) == 0 and "revoked" in capsys.readouterr().out
    assert main(["keys", "revoke", "nope"]) == 2
    assert "no key with id 'nope'" in capsys.readouterr().err
    assert main(["keys", "create", "--role", "search", "--expires", "yesterday"]) == 2
    assert "--expires must be" in capsys.readouterr().err
    monkeypatch.setenv("SHOPSEARCH_EVENT_SIGNING_KEY", "k" * 32)
    assert main(["keys", "client-token", "u1"]) == 0
    assert capsys.readouterr().out.strip() == "Xf_JKq60FiO8apaZPyJTYg"  # the docstring's, under the same key


def test_parse_expires():
    now = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
    assert parse_expires("12h", now) == now + dt.timedelta(hours=12)
    assert parse_expires("2025-02-01", now) == dt.datetime(2025, 2, 1, tzinfo=dt.timezone.utc)
    with pytest.raises(ValueError, match="in the future"):
        parse_expires("2024-12-31", now)


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "::"])
def test_serve_refuses_a_public_address_without_keys(host, tmp_path, monkeypatch, capsys):
    from shopsearch.api.cli import main

    monkeypatch.setenv("SHOPSEARCH_HOME", str(tmp_path))
    monkeypatch.delenv("SHOPSEARCH_CONFIG", raising=False)
    monkeypatch.delenv("SHOPSEARCH_KEYS_FILE", raising=False)
    assert main(["serve", "--host", host]) == 2
    err = capsys.readouterr().err
    assert "not a loopback address and no API keys" in err and "shopsearch keys create --role admin" in err


def test_serve_warns_once_in_local_mode(tmp_path, capsys):
    from shopsearch.api.cmd_serve import check_exposure
    from shopsearch.settings import load_settings

    check_exposure("127.0.0.1", load_settings({"home": str(tmp_path)}, environ={}))
    assert capsys.readouterr().err.count("warning: no API keys configured") == 1
    KeyStore(tmp_path / "keys.json").create("admin")
    check_exposure("0.0.0.0", load_settings({"home": str(tmp_path)}, environ={}))  # keys exist: allowed, silent
    assert capsys.readouterr().err == ""
