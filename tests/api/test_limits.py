"""Rate limits: per key and per client IP, separate search and events budgets, 429 with Retry-After and the
rate-limit headers; across two gunicorn workers through a real Redis (``shopsearch redis start``; ./run test starts
it)."""

from __future__ import annotations

import os
import signal
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from shopsearch.api.app import create_app
from shopsearch.api.keys import KeyStore

from .conftest import ALIAS
from .test_served import serve, served_index  # noqa: F401 - the tiny catalog on the real node

PURCHASE = {"type": "purchase", "product_id": "p1", "session_id": "s-1"}


@pytest.fixture
def make_app(tmp_path, searcher, catalog_engine):
    """An app over the test catalog with these settings (its home, and keys file, under tmp_path)."""
    apps = []

    def make(**settings):
        app = create_app({"searcher": searcher, "engine_instance": catalog_engine, "index": ALIAS,
                          "home": str(tmp_path), **settings})
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["shopsearch"].ubi_drainer.stop()


def test_search_budget_per_ip_answers_429_with_headers(make_app):
    c = make_app(rate_limit_search_ip="3/minute").test_client()
    ok = [c.get("/search?q=lamp") for _ in range(3)]
    assert [r.status_code for r in ok] == [200, 200, 200]
    assert ok[0].headers["X-RateLimit-Limit"] == "3" and ok[2].headers["X-RateLimit-Remaining"] == "0"
    for url in ("/suggest?q=la", "/products/p1", "/products/p1/similar", "/search?q=drill"):  # one shared budget
        resp = c.get(url)
        assert resp.status_code == 429, url
        body = resp.get_json()["error"]
        assert body["code"] == "rate_limited" and "search rate limit per client IP (3/minute)" in body["message"]
        assert 1 <= int(resp.headers["Retry-After"]) <= 60
        assert resp.headers["X-RateLimit-Remaining"] == "0" and int(resp.headers["X-RateLimit-Reset"]) > 0
    assert c.post("/events", json=PURCHASE).status_code == 202  # events have their own budget
    assert c.get("/healthz").status_code == 200  # unbudgeted


def test_events_budget_is_separate(make_app):
    c = make_app(rate_limit_events_ip="2/minute").test_client()
    assert [c.post("/events", json=PURCHASE).status_code for _ in range(3)] == [202, 202, 429]
    assert c.get("/search?q=lamp").status_code == 200


def test_per_key_budget_leaves_other_keys_alone(make_app, tmp_path):
    app = make_app(rate_limit_search_key="2/minute", rate_limit_search_ip="1000/minute")
    store = KeyStore(tmp_path / "keys.json")
    a, b = store.create("search").secret, store.create("search").secret
    c = app.test_client()
    assert [c.get("/search?q=lamp", headers={"X-API-Key": a}).status_code for _ in range(3)] == [200, 200, 429]
    assert c.get("/search?q=lamp", headers={"X-API-Key": b}).status_code == 200


def test_the_headers_describe_the_limit_nearest_to_running_out(make_app, tmp_path):
    """A search key's budget (100/second) and its IP's (5/minute): the headers pace the client by the IP's."""
    app = make_app(rate_limit_search_key="100/second", rate_limit_search_ip="5/minute")
    key = {"X-API-Key": KeyStore(tmp_path / "keys.json").create("search").secret}
    c = app.test_client()
    seen = [c.get("/search?q=lamp", headers=key) for _ in range(6)]
    assert [r.status_code for r in seen] == [200] * 5 + [429]
    assert [(r.headers["X-RateLimit-Limit"], r.headers["X-RateLimit-Remaining"]) for r in seen[:5]] == [
        ("5", str(n)) for n in (4, 3, 2, 1, 0)]


def test_per_ip_budget_applies_per_client(make_app):
    c = make_app(rate_limit_search_ip="1/minute").test_client()
    assert c.get("/search?q=lamp").status_code == 200
    assert c.get("/search?q=lamp").status_code == 429
    assert c.get("/search?q=lamp", environ_base={"REMOTE_ADDR": "127.0.0.2"}).status_code == 200


def test_limits_can_be_turned_off(make_app):
    c = make_app(rate_limits=False, rate_limit_search_ip="1/minute").test_client()
    assert [c.get("/search?q=lamp").status_code for _ in range(3)] == [200] * 3


def test_a_bad_limit_is_named(make_app):
    with pytest.raises(ValueError, match=r"rate_limit_events_key='lots': not a rate limit"):
        make_app(rate_limit_events_key="lots")


# --- served: two gunicorn workers, one Redis ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def redis_url() -> str:
    """The local Redis the suite runs against (``shopsearch redis start``); fails (never skips) when it is down."""
    import redis

    url = os.environ.get("SHOPSEARCH_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis is not reachable at {url} ({exc}); run `shopsearch redis start`")
    return url


@pytest.mark.opensearch
def test_search_limit_holds_across_two_workers_through_redis(redis_url, opensearch_url, served_index,  # noqa: F811
                                                             tiny_bi_encoder_dir, tmp_path):
    limit, sent = 20, 60  # 3x the limit from one key
    store = KeyStore(tmp_path / "keys.json")
    busy, other = store.create("search").secret, store.create("search").secret
    env = {"SHOPSEARCH_REDIS_URL": redis_url, "SHOPSEARCH_RATE_LIMIT_SEARCH_KEY": f"{limit}/minute",
           "SHOPSEARCH_RATE_LIMIT_SEARCH_IP": "100000/minute"}  # one test IP: only the per-key budget may bind
    with serve(opensearch_url, served_index[0], tiny_bi_encoder_dir, tmp_path, env=env,
               extra_args=("--workers", "2")) as served:
        _, *workers = served.pids()
        assert len(workers) == 2

        def get(key: str) -> requests.Response:
            return requests.get(f"{served.url}/products/p1", headers={"Authorization": f"Bearer {key}"},
                                timeout=30)

        answers = []
        for busy_worker, paused in (workers, workers[::-1]):
            # Left alone, one worker's accept loop takes every connection; pausing the other (SIGSTOP) makes half
            # the requests go to each worker for sure.
            os.kill(paused, signal.SIGSTOP)
            try:
                with ThreadPoolExecutor(8) as pool:
                    answers += pool.map(get, [busy] * (sent // 2))
            finally:
                os.kill(paused, signal.SIGCONT)
        counts = Counter(r.status_code for r in answers)
        assert set(counts) == {200, 429}, counts
        assert abs(counts[200] - limit) <= limit * 0.1, counts  # per-worker memory would let 2x through
        assert abs(counts[429] - (sent - limit)) <= (sent - limit) * 0.1, counts
        for r in answers:
            if r.status_code == 429:
                assert int(r.headers["Retry-After"]) >= 1 and r.headers["X-RateLimit-Limit"] == str(limit)
                assert r.json()["error"]["code"] == "rate_limited"
        assert [get(other).status_code for _ in range(10)] == [200] * 10  # the second key is unaffected


# --- X-Forwarded-For: only from trusted proxies ------------------------------------------------------------------

def test_forwarded_for_is_ignored_unless_proxies_are_trusted(make_app):
    c = make_app(rate_limit_search_ip="1/minute").test_client()
    assert c.get("/search?q=lamp", headers={"X-Forwarded-For": "203.0.113.1"}).status_code == 200
    # a client cannot buy itself a fresh budget by writing the header
    assert c.get("/search?q=lamp", headers={"X-Forwarded-For": "203.0.113.2"}).status_code == 429


def test_one_trusted_proxy_gives_each_client_its_own_budget(make_app, tmp_path):
    c = make_app(rate_limit_search_ip="1/minute", trusted_proxies=1).test_client()
    key = {"X-API-Key": KeyStore(tmp_path / "keys.json").create("search").secret}  # remote clients need a key
    assert c.get("/search?q=lamp", headers={**key, "X-Forwarded-For": "203.0.113.1"}).status_code == 200
    assert c.get("/search?q=lamp", headers={**key, "X-Forwarded-For": "203.0.113.2"}).status_code == 200
    # only the entry the trusted proxy appended counts: a client's own entries to its left do not
    spoofed = {**key, "X-Forwarded-For": "198.51.100.7, 203.0.113.1"}
    assert c.get("/search?q=lamp", headers=spoofed).status_code == 429


def test_behind_a_trusted_proxy_remote_clients_are_not_local(make_app):
    c = make_app(trusted_proxies=1).test_client()  # no keys: local mode answers loopback clients only
    resp = c.get("/search?q=lamp", headers={"X-Forwarded-For": "203.0.113.1"})
    assert resp.status_code == 403 and resp.get_json()["error"]["code"] == "keys_not_configured"
    assert c.get("/search?q=lamp", headers={"X-Forwarded-For": "127.0.0.1"}).status_code == 200
