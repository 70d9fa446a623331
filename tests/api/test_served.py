"""`shopsearch serve` as a real process against the real OpenSearch node, queried over HTTP.

A real outage (the node stopped, then started again) is in test_node_fault.py, on a node of its own. Here a small
TCP proxy (started here) sits between the API and the shared node and turns into a "blackhole" (connections
accepted, never answered): to the API that is a node that hangs, which checks the engine-timeout path without
touching the node other tests share.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import pytest
import requests

from .conftest import build_catalog

pytestmark = pytest.mark.opensearch

ENGINE_TIMEOUT_S = 1.0
SEARCH_DEADLINE_S = 1.0  # the default search_deadline_ms: every /search answers within about this
BOOT_TIMEOUT_S = 180.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TcpProxy:
    """A threaded TCP forwarder to ``upstream``; :meth:`stop` closes the port and every open connection."""

    def __init__(self, upstream: tuple[str, int], port: int | None = None) -> None:
        self.upstream, self.port = upstream, port or free_port()
        self.blackhole = False  # accept connections but never forward (an engine that hangs)
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> "TcpProxy":
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def stop(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            conns, self._conns = self._conns, []
        for s in [listener, *conns]:
            if s is not None:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # stopped
            with self._lock:
                self._conns.append(client)
            if self.blackhole:
                continue
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns.append(upstream)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)


@pytest.fixture(scope="module")
def served_index(opensearch_url, tiny_encoder):
    """The tiny catalog on the real node, behind a unique alias; deleted afterwards."""
    from shopsearch.plugin.engines import open_engine

    engine = open_engine("opensearch", url=opensearch_url)
    tag = uuid.uuid4().hex[:8]
    alias, concrete = f"api-served-{tag}", f"api-served-{tag}-v1"
    build_catalog(engine, tiny_encoder, index=concrete, alias=alias)
    yield alias, concrete
    engine.delete_index(concrete)
    engine.close()


@dataclass(frozen=True)
class Served:
    """A running ``shopsearch serve``: its base URL and the gunicorn master process."""

    url: str
    proc: subprocess.Popen

    def pids(self) -> tuple[int, ...]:
        """The master's pid then its workers' pids (sorted): unchanged as long as nothing restarted."""
        import psutil

        return (self.proc.pid, *sorted(c.pid for c in psutil.Process(self.proc.pid).children()))


@contextlib.contextmanager
def serve(url: str | None, index: str, model_dir: Path, home: Path, *, engine: str = "opensearch",
          env: dict[str, str] | None = None, extra_args: tuple[str, ...] = ()) -> Iterator[Served]:
    """Run ``shopsearch serve`` on a free port until the block ends; yields a :class:`Served`. Stops it with SIGTERM
    and checks the graceful shutdown exits 0. ``env``: more settings (``SHOPSEARCH_<OPTION>`` variables);
    ``extra_args``: more ``serve`` options (``--workers 2``)."""
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "SHOPSEARCH_HOME": str(home),
           "SHOPSEARCH_EVENTS_DIR": str(home / "events"), **(env or {})}
    env.pop("SHOPSEARCH_CONFIG", None)
    cmd = [sys.executable, "-m", "shopsearch.api.cli", "serve", "--port", str(port), "--engine", engine,
           *(["--url", url] if url else []), "--index", index, "--model", str(model_dir),
           "--engine-timeout", str(ENGINE_TIMEOUT_S), "--threads", "4", "--graceful-timeout", "10", *extra_args]
    log_path = home / "serve.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + BOOT_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"serve exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            with contextlib.suppress(requests.ConnectionError, requests.Timeout):  # worker still booting
                if requests.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"serve did not answer within {BOOT_TIMEOUT_S}s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.3)
        yield Served(base, proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            pytest.fail(f"serve did not stop within 30s of SIGTERM:\n{log_path.read_text()[-3000:]}")
    assert code == 0, log_path.read_text()[-3000:]


def test_serve_end_to_end(opensearch_url, served_index, tiny_bi_encoder_dir, tmp_path):
    alias, concrete = served_index
    with serve(opensearch_url, alias, tiny_bi_encoder_dir, tmp_path) as served:
        base = served.url
        ready = requests.get(f"{base}/readyz", timeout=10).json()
        cluster = ready.pop("cluster")
        assert ready == {"status": "ready", "engine": "opensearch", "index": alias, "concrete_index": concrete}
        assert cluster["status"] in ("green", "yellow") and cluster["nodes"] >= 1
        assert cluster["hosts"] == [{"ok": True}]  # node URLs for admin keys only, never in local mode

        body = requests.get(f"{base}/search", params={"q": "lamp", "size": 3, "explain": "true"}, timeout=10).json()
        assert len(body["hits"]) == 3 and body["hits"][0]["id"] in {"p1", "p2", "p7"}
        assert all("fused" in h["stages"] for h in body["hits"])
        # facets count the whole matching set (lexical matches plus products over the vector threshold)
        brands = {f["value"]: f["count"] for f in body["facets"]["brand"]}
        assert brands["Lumo"] == 2 and brands["Brightway"] >= 1 and sum(brands.values()) <= body["total"]

        filtered = requests.get(f"{base}/search", params={"q": "lamp", "price_min": 20, "price_max": 60,
                                                          "in_stock": "true", "rating_min": 4}, timeout=10).json()
        assert [h["id"] for h in filtered["hits"]] == ["p1"]

        assert requests.get(f"{base}/products/p4", timeout=10).json()["title"] == "Cordless drill"
        missing = requests.get(f"{base}/products/nope", timeout=10)
        assert missing.status_code == 404 and missing.json()["error"]["parameter"] == "product_id"
        similar = requests.get(f"{base}/products/p1/similar", params={"size": 3}, timeout=10).json()
        assert len(similar["hits"]) == 3 and "p1" not in {h["id"] for h in similar["hits"]}

        bad = requests.get(f"{base}/search", params={"q": "lamp", "size": 1000}, timeout=10)
        assert bad.status_code == 400 and bad.json()["error"]["parameter"] == "size"

        event = {"type": "click", "query_id": body["query_id"], "product_id": body["hits"][0]["id"],
                 "position": 1, "session_id": "s-1", "token": body["hits"][0]["token"]}
        accepted = requests.post(f"{base}/events", json=[event, {**event, "type": "add_to_cart"}], timeout=10)
        assert accepted.status_code == 202 and accepted.json()["accepted"] == 2

        metrics = requests.get(f"{base}/metrics", timeout=10).text
        assert 'endpoint="/search",method="GET",status="200"} 2.0' in metrics
        assert requests.get(f"{base}/openapi.json", timeout=10).json()["openapi"] == "3.1.0"

    (log_file,) = (tmp_path / "events").glob("events-*.jsonl")
    lines = log_file.read_text().splitlines()
    assert len(lines) == 2 and body["query_id"] in lines[0]


def test_hung_engine_answers_503_within_the_timeout_then_recovers(opensearch_url, served_index,
                                                                  tiny_bi_encoder_dir, tmp_path):
    alias, _ = served_index
    node = urlparse(opensearch_url)
    proxy = TcpProxy((node.hostname, node.port or 9200)).start()
    try:
        with serve(f"http://127.0.0.1:{proxy.port}", alias, tiny_bi_encoder_dir, tmp_path) as served:
            base, pids = served.url, served.pids()
            assert requests.get(f"{base}/search", params={"q": "lamp"}, timeout=10).status_code == 200

            proxy.stop()
            proxy.blackhole = True  # the node hangs: connections accepted, never answered
            proxy.start()
            t0 = time.monotonic()
            hung = requests.get(f"{base}/search", params={"q": "hammer"}, timeout=30)
            elapsed = time.monotonic() - t0
            assert hung.status_code == 503, hung.text
            # the engine request's timeout is the time the search's deadline leaves, so the deadline ends it
            assert hung.json()["error"]["code"] == "deadline_exceeded"
            assert int(hung.headers["Retry-After"]) > 0
            assert elapsed < 2 * SEARCH_DEADLINE_S, f"503 took {elapsed:.2f}s"  # generous: ~0.8 s on the server
            proxy.stop()

            proxy.blackhole = False  # the node answers again: same API process, no restart
            proxy.start()
            statuses = []
            for _ in range(10):
                statuses.append(requests.get(f"{base}/search", params={"q": "lamp"}, timeout=30).status_code)
                if statuses[-1] == 200:
                    break
                time.sleep(0.5)
            assert statuses[-1] == 200, statuses
            assert requests.get(f"{base}/readyz", timeout=10).status_code == 200
            assert served.pids() == pids
            metrics = requests.get(f"{base}/metrics", timeout=10).text
            assert 'shopsearch_search_shed_total{reason="deadline"}' in metrics
    finally:
        proxy.stop()
