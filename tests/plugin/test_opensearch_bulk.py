"""Bulk retries: 429s, 5xx, timeouts and lost connections are retried with backoff; the rest are reported.

A scripted ``send`` (streaming_bulk's contract: ``(ok, {op_type: item})`` per action) stands in for the cluster in
the pure tests; the last test runs the real OpenSearchEngine.bulk (opensearch-py, HTTP) against a local HTTP stub
that answers 503, then a 429 for one document, then accepts everything.
"""

from __future__ import annotations

import json
import random
import threading
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from shopsearch.indexer.records import Product
from shopsearch.indexer.sink import BulkItem, Delete, IndexDoc
from shopsearch.plugin.engine import EngineUnavailable
from shopsearch.plugin.opensearch_bulk import RetryPolicy, ordered_bulk, retryable

URL = "http://node:9200"
FAST = RetryPolicy(max_retries=3, initial_backoff=0.1, max_backoff=1.0)


def _doc(pid: str) -> IndexDoc:
    return IndexDoc(Product(id=pid, title=f"t{pid}"), [1.0, 0.0], "h")


class ScriptedCluster:
    """``send`` for ordered_bulk: ``script[id]`` lists the answers for each time a document is sent ("ok", a
    status such as 429/503/400, or "timeout": the whole chunk lost); past the end of its list a document is ok.
    Records every round's ids."""

    def __init__(self, script: dict[str, list]):
        self.script = {k: list(v) for k, v in script.items()}
        self.rounds: list[list[str]] = []

    def __call__(self, bodies):
        bodies = list(bodies)
        self.rounds.append([b["_id"] for b in bodies])
        answers = {b["_id"]: (self.script.get(b["_id"]) or ["ok"]).pop(0) for b in bodies}
        if "timeout" in answers.values():  # streaming_bulk marks every action of a lost chunk failed
            for b in bodies:
                yield False, {b["_op_type"]: {"_id": b["_id"], "status": "N/A", "exception": TimeoutError("read"),
                                              "error": "ConnectionTimeout(read timed out)"}}
            return
        for b in reversed(bodies):  # any order: ordered_bulk restores the caller's
            answer = answers[b["_id"]]
            if answer == "ok":
                yield True, {b["_op_type"]: {"_id": b["_id"], "status": 201}}
            else:
                yield False, {b["_op_type"]: {"_id": b["_id"], "status": answer,
                                              "error": {"type": "x", "reason": f"answered {answer}"}}}


def test_retryable_failures_are_sent_again_until_they_succeed_in_order():
    cluster = ScriptedCluster({"1": [429, "timeout"], "2": [400], "4": [502]})
    waits: list[float] = []
    items = list(ordered_bulk("idx", [_doc(i) for i in "12345"], cluster, url=URL, policy=FAST,
                              sleep=waits.append, rng=random.Random(1)))
    assert [i.id for i in items] == ["1", "2", "3", "4", "5"]
    assert [i.ok for i in items] == [True, False, True, True, True]
    assert items[1] == BulkItem("2", False, "400: x: answered 400")  # not retryable: reported (quarantined)
    # the retryable failures go again, alone; the timeout then loses that whole chunk, so both go once more
    assert cluster.rounds == [list("12345"), ["1", "4"], ["1", "4"]]
    assert len(waits) == 2 and 0.05 <= waits[0] <= 0.1 and 0.1 <= waits[1] <= 0.2  # exponential, jittered


def test_still_failing_after_the_last_round_stops_the_run_after_the_acknowledged_prefix():
    cluster = ScriptedCluster({"2": [429] * 10})
    got: list[BulkItem] = []
    with pytest.raises(EngineUnavailable, match=r"1 documents still failing after 3 retries \(last error 429"):
        for item in ordered_bulk("idx", [_doc("1"), _doc("2"), _doc("3")], cluster, url=URL, policy=FAST,
                                 sleep=lambda s: None):
            got.append(item)
    assert got == [BulkItem("1", True)]  # exactly what the cluster acknowledged, in order, before the stop
    assert len(cluster.rounds) == 1 + FAST.max_retries and all(r == ["2"] for r in cluster.rounds[1:])


def test_deletes_are_retried_too_and_a_missing_one_is_fine():
    def send(bodies):
        for b in bodies:
            send.calls += 1
            status = 503 if send.calls == 1 else 404
            yield False, {"delete": {"_id": b["_id"], "status": status, "result": "not_found"}}
    send.calls = 0
    assert list(ordered_bulk("idx", [Delete("9")], send, url=URL, policy=FAST, sleep=lambda s: None)) == \
        [BulkItem("9", True)]


def test_retry_policy_and_what_is_retryable():
    rng = random.Random(0)
    policy = RetryPolicy(max_retries=8, initial_backoff=0.5, max_backoff=4.0)
    for attempt, step in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (8, 4.0)]:
        assert step / 2 <= policy.wait_s(attempt, rng) <= step
    assert [retryable({"status": s}) for s in (429, 500, 503, "N/A", None, 400, 404, 409)] == \
        [True, True, True, True, True, False, False, False]
    with pytest.raises(ValueError, match="max_retries=-1"):
        RetryPolicy(max_retries=-1)


class _StubHandler(BaseHTTPRequestHandler):
    """Enough of OpenSearch for OpenSearchEngine.bulk: HEAD /<index> exists; POST /_bulk answers per
    ``server.plan``: "503" (the whole request), "429:<id>" (that document rejected), "ok"."""

    def log_message(self, *args):  # keep the test output clean
        pass

    def _send(self, status: int, body: dict | None = None) -> None:
        data = json.dumps(body or {}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_HEAD(self):  # noqa: N802 - http.server's naming
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self):  # noqa: N802
        lines = self.rfile.read(int(self.headers["Content-Length"])).decode().splitlines()
        ids = [json.loads(line)["index"]["_id"] for line in lines[0::2]]
        self.server.seen.append(ids)
        plan = self.server.plan.pop(0) if self.server.plan else "ok"
        if plan == "503":
            return self._send(503, {"error": {"type": "unavailable", "reason": "node restarting"}, "status": 503})
        rejected = plan.split(":", 1)[1] if plan.startswith("429:") else None
        items = [{"index": {"_id": i, "status": 429, "error": {"type": "es_rejected_execution_exception",
                                                                "reason": "queue full"}}} if i == rejected
                 else {"index": {"_id": i, "status": 201, "result": "created"}} for i in ids]
        return self._send(200, {"took": 1, "errors": rejected is not None, "items": items})


def test_the_engine_retries_a_503_and_a_429_from_a_real_http_stub():
    from shopsearch.plugin.index_config import load_index_config
    from shopsearch.plugin.opensearch_engine import OpenSearchEngine
    from shopsearch.settings import load_settings

    server = ThreadingHTTPServer(("127.0.0.1", 0), _StubHandler)
    server.plan, server.seen = ["503", "429:b"], []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    # no transport retries (they would hide the 503 from the bulk layer); tiny backoff to keep the test fast
    engine = OpenSearchEngine(url, settings=load_settings(environ={}), max_retries=0,
                              config=replace(load_index_config(), initial_backoff=0.01))
    try:
        items = list(engine.bulk("stub", [_doc("a"), _doc("b"), _doc("c")]))
    finally:
        engine.close()
        server.shutdown()
        server.server_close()
    assert items == [BulkItem("a", True), BulkItem("b", True), BulkItem("c", True)]
    assert server.seen == [["a", "b", "c"], ["a", "b", "c"], ["b"]]
