"""Overload and deadlines at the API: a slow engine leg is cut and served degraded within the deadline; nothing in
time is a JSON 503 with Retry-After; a worker over its in-flight bound, or a saturated engine, sheds at once."""

from __future__ import annotations

import threading
import time

from shopsearch.api.app import create_app
from shopsearch.deadline import DeadlineExceeded
from shopsearch.plugin.engine import EngineBusy
from shopsearch.plugin.search_types import DEGRADED_REASONS

from .conftest import ALIAS
from .test_app import metric


def _app(tmp_path, searcher, engine, **settings):
    return create_app({"TESTING": True, "searcher": searcher, "engine_instance": engine, "index": ALIAS,
                       "engine": "embedded", "events_dir": str(tmp_path / "events"), "home": str(tmp_path),
                       "retry_after_s": 3, **settings})


def _stop(app) -> None:
    app.extensions["shopsearch"].ubi_drainer.stop()
    app.extensions["shopsearch"].stop_history()


def _shed(resp, code: str) -> None:
    assert resp.status_code == 503 and resp.headers["Content-Type"].startswith("application/json")
    assert resp.get_json()["error"]["code"] == code and resp.headers["Retry-After"] == "3"


def test_a_slow_engine_leg_is_cut_and_the_rest_served_degraded_within_the_deadline(tmp_path, searcher,
                                                                                  catalog_engine, monkeypatch):
    deadline_s = 1.5
    original = catalog_engine._bm25

    def slow_bm25(*args, **kwargs):  # the lexical leg takes most of the deadline (past retrieval's share)
        time.sleep(1.25)
        return original(*args, **kwargs)

    monkeypatch.setattr(catalog_engine, "_bm25", slow_bm25)
    app = _app(tmp_path, searcher, catalog_engine, search_deadline_ms=int(deadline_s * 1000))
    try:
        t0 = time.monotonic()
        resp = app.test_client().get("/search?q=lamp&size=3")
        elapsed = time.monotonic() - t0
        body = resp.get_json()
        assert resp.status_code == 200, body
        assert body["degraded"] and "retrieve:deadline" in body["degraded_reasons"]
        assert set(body["degraded_reasons"]) <= set(DEGRADED_REASONS)
        assert body["hits"] and all("knn" not in h.get("stages", {}) for h in body["hits"])
        if "fetch:deadline" not in body["degraded_reasons"]:  # on a very busy machine the fetch may be cut too
            assert all(h["title"] for h in body["hits"])
        assert elapsed < 2 * deadline_s, f"answered in {elapsed:.2f}s"  # generous: never a timing-flaky test
        metrics = app.test_client().get("/metrics").get_data(as_text=True)
        assert metric(metrics, "shopsearch_search_degraded_reasons_total", reason="retrieve:deadline") == 1
        assert metric(metrics, "shopsearch_search_degraded_total") == 1
    finally:
        _stop(app)


class _Stuck:
    """A searcher stand-in: search raises ``exc``, or, when ``gate`` is given, waits for it then delegates."""

    def __init__(self, inner, exc: Exception | None = None, gate: threading.Event | None = None):
        self.inner, self.exc, self.gate = inner, exc, gate
        self.entered = threading.Event()

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def search(self, req, **kwargs):
        self.entered.set()
        if self.exc is not None:
            raise self.exc
        assert self.gate.wait(30)
        return self.inner.search(req, **kwargs)


def test_nothing_in_time_is_a_json_503_with_retry_after(tmp_path, searcher, catalog_engine):
    app = _app(tmp_path, _Stuck(searcher, exc=DeadlineExceeded("search")), catalog_engine)
    try:
        c = app.test_client()
        _shed(c.get("/search?q=lamp"), "deadline_exceeded")
        assert "deadline" in c.get("/search?q=lamp").get_json()["error"]["message"]
        assert metric(c.get("/metrics").get_data(as_text=True), "shopsearch_search_shed_total",
                      reason="deadline") == 2
    finally:
        _stop(app)


def test_a_saturated_engine_is_shed_at_once(tmp_path, searcher, catalog_engine):
    busy = EngineBusy("OpenSearch at http://10.0.0.9:9200 is saturated (429): es_rejected_execution_exception")
    app = _app(tmp_path, _Stuck(searcher, exc=busy), catalog_engine)
    try:
        c = app.test_client()
        resp = c.get("/search?q=lamp")
        _shed(resp, "overloaded")
        assert "10.0.0.9" not in resp.get_data(as_text=True)  # internals stay in the log
        assert metric(c.get("/metrics").get_data(as_text=True), "shopsearch_search_shed_total",
                      reason="engine_busy") == 1
    finally:
        _stop(app)


def test_a_worker_over_its_in_flight_bound_answers_503_at_once(tmp_path, searcher, catalog_engine):
    gate = threading.Event()
    slow = _Stuck(searcher, gate=gate)
    app = _app(tmp_path, slow, catalog_engine, search_max_inflight=1)
    first: dict = {}
    worker = threading.Thread(target=lambda: first.update(resp=app.test_client().get("/search?q=lamp")))
    worker.start()
    try:
        assert slow.entered.wait(30)  # the first search holds the only slot
        t0 = time.monotonic()
        second = app.test_client().get("/search?q=lamp")
        elapsed = time.monotonic() - t0
        _shed(second, "overloaded")
        assert elapsed < 5.0, f"shed after {elapsed:.2f}s"  # at once, not after the slow search (bounded: 30 s)
        assert app.test_client().get("/products/p1").status_code == 200  # only /search counts against the bound
    finally:
        gate.set()
        worker.join(30)
    try:
        assert first["resp"].status_code == 200
        assert app.test_client().get("/search?q=lamp").status_code == 200  # the slot was given back
        assert metric(app.test_client().get("/metrics").get_data(as_text=True), "shopsearch_search_shed_total",
                      reason="inflight") == 1
    finally:
        _stop(app)
