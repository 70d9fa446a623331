"""UBI logging in a real `shopsearch serve` (gunicorn, embedded engine): a worker killed with acknowledged events
still in its spool loses none of them, and the logged features of a served query are explain's."""

from __future__ import annotations

import contextlib
import os
import signal
import time

import pytest
import requests

from shopsearch.plugin.ubi_spool import UbiSpool
from shopsearch.plugin.ubi_store import JsonlUbiStore

from .conftest import build_catalog
from .test_served import serve


def wait_for(condition, what: str, log_path, timeout: float = 60.0):
    """``condition()``'s first truthy value, polled; fails naming ``what`` (with the server's log) on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(requests.ConnectionError, requests.Timeout):
            value = condition()
            if value:
                return value
        time.sleep(0.2)
    pytest.fail(f"{what} within {timeout}s:\n{log_path.read_text()[-3000:]}")


def test_a_killed_worker_loses_no_acknowledged_event(tmp_path, tiny_encoder, tiny_bi_encoder_dir):
    from shopsearch.plugin.engines import open_engine

    engine = open_engine("embedded", root=tmp_path / "embedded")
    build_catalog(engine, tiny_encoder)
    engine.close()
    store, spool = JsonlUbiStore(tmp_path / "ubi"), UbiSpool(tmp_path / "ubi" / "spool", max_bytes=1 << 30)
    log_path = tmp_path / "serve.log"
    # A worker drains once at its first record, then not for an hour: what comes after stays in its spool.
    with serve(None, "catalog", tiny_bi_encoder_dir, tmp_path, engine="embedded",
               env={"SHOPSEARCH_UBI_FLUSH_INTERVAL_S": "3600"}) as served:
        base = served.url
        body = requests.get(f"{base}/search", params={"q": "lamp", "size": 4, "explain": "true",
                                                      "session_id": "s-9"}, timeout=30).json()
        (record,) = wait_for(lambda: list(store.iter_queries()), "the first drain stored no query", log_path)
        assert record.query_id == body["query_id"]
        assert record.query_attributes["features"] == {h["id"]: h["stages"] for h in body["hits"]}

        clicks = [{"type": "click", "query_id": body["query_id"], "product_id": h["id"], "position": h["rank"],
                   "session_id": "s-9", "token": h["token"]} for h in body["hits"]]
        first = body["hits"][0]
        ubi = {"action_name": "add_to_cart", "query_id": body["query_id"], "client_id": "s-9", "session_id": "s-9",
               "timestamp": "2024-05-01T10:00:00Z",
               "event_attributes": {"object": {"object_id": first["id"]}, "token": first["token"],
                                    "position": {"ordinal": {"index": first["rank"]}}}}
        acked = []
        for batch in (clicks, [ubi], clicks[:1]):
            resp = requests.post(f"{base}/events", json=batch, timeout=10)
            assert resp.status_code == 202, resp.text
            acked += resp.json()["event_ids"]
        assert spool.size() > 0 and list(store.iter_events()) == []  # acknowledged, still in the spool

        master, (worker,) = served.pids()[0], served.pids()[1:]
        os.kill(worker, signal.SIGKILL)
        wait_for(lambda: len(served.pids()) == 2 and worker not in served.pids(), "no worker respawned", log_path)
        assert served.pids()[0] == master

        def all_acked():
            events = list(store.iter_events())
            return events if len(events) >= len(acked) else None

        events = wait_for(all_acked, "the new worker did not drain the killed one's spool", log_path)
        assert sorted(e.event_id for e in events) == sorted(acked)
        # A drain stores a segment's records, then deletes it: the store can be seen full before the spool empties.
        wait_for(lambda: spool.size() == 0 or None, "the drained spool was not emptied", log_path)
