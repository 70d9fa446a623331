"""A real OpenSearch outage under `shopsearch serve`: the node is stopped, then started again, mid-run.

The node other tests share (9200) is never touched: this test starts a second, dedicated node (512 MB heap) on a
free port in 9250-9299 with its own home beside the shared one (the non-root ``opensearch`` user must reach it,
so not under pytest's tmp_path), indexes the tiny catalog into it and removes it all afterwards. About 45 s on a
quiet machine: two node starts of ~15 s each, the API boot, the tiny catalog.
"""

from __future__ import annotations

import shutil
import socket
import time
from collections.abc import Iterator

import pytest
import requests

from .conftest import build_catalog
from .test_served import SEARCH_DEADLINE_S, serve

pytestmark = pytest.mark.opensearch

PORTS = range(9250, 9300)
HEAP = "512m"
NODE_TIMEOUT_S = 120.0
ALIAS, CONCRETE = "fault-catalog", "fault-catalog-v1"


def _free_node_port() -> int:
    """The first port in PORTS nothing listens on and we can bind (so the node can too)."""
    for port in PORTS:
        with socket.socket() as probe:
            probe.settimeout(0.5)
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    pytest.fail(f"no free port in {PORTS.start}-{PORTS.stop - 1} for the dedicated OpenSearch node")


@pytest.fixture
def dedicated_node(monkeypatch) -> Iterator[dict]:
    """A second local OpenSearch node of our own; yields ensure_node's kwargs (port, heap, home, timeout) and url.
    Stopped and its home deleted afterwards, even when the test fails."""
    from shopsearch.plugin.localnode import default_home, ensure_node, stop_node
    from shopsearch.settings import load_settings

    monkeypatch.delenv("OPENSEARCH_URL", raising=False)  # a remote $OPENSEARCH_URL would make ensure_node use it
    port = _free_node_port()
    shared_home = default_home(load_settings())
    home = shared_home.parent / f"{shared_home.name}-fault-{port}"
    lock = home.parent / f".{home.name}.lock"
    if home.exists():  # left by a run that was killed: stop whatever runs from it, start clean
        stop_node(port=port, home=home)
        shutil.rmtree(home)
    spec = {"port": port, "heap": HEAP, "home": home, "timeout": NODE_TIMEOUT_S}
    try:
        node = ensure_node(**spec)
        assert node.started and node.url == f"http://127.0.0.1:{port}", node
        yield {**spec, "url": node.url}
    finally:
        stop_node(port=port, home=home)
        shutil.rmtree(home, ignore_errors=True)
        lock.unlink(missing_ok=True)


def _search(base: str, q: str, timeout: float = 30) -> requests.Response:
    return requests.get(f"{base}/search", params={"q": q, "size": 3}, timeout=timeout)


def _until_200(base: str, seconds: float = 30) -> list[int]:
    """Search every 0.5 s until one answers 200 (a fresh node's first queries may miss the 1 s deadline on a busy
    machine); the statuses seen, the last one 200 unless ``seconds`` ran out."""
    statuses: list[int] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        statuses.append(_search(base, "lamp").status_code)
        if statuses[-1] == 200:
            break
        time.sleep(0.5)
    return statuses


def test_stopped_node_answers_503_then_200_after_restart_without_restarting_the_api(
        dedicated_node, tiny_encoder, tiny_bi_encoder_dir, tmp_path):
    from shopsearch.plugin.engines import open_engine
    from shopsearch.plugin.localnode import ensure_node, stop_node

    url = dedicated_node["url"]
    engine = open_engine("opensearch", url=url)
    try:
        build_catalog(engine, tiny_encoder, index=CONCRETE, alias=ALIAS)
    finally:
        engine.close()

    with serve(url, ALIAS, tiny_bi_encoder_dir, tmp_path) as served:
        base, pids = served.url, served.pids()
        warm = _until_200(base)
        assert warm[-1] == 200, warm
        up = _search(base, "lamp")
        assert up.status_code == 200, up.text
        before = [h["id"] for h in up.json()["hits"]]
        assert len(before) == 3 and before[0] in {"p1", "p2", "p7"}

        stopped_pid = stop_node(port=dedicated_node["port"], home=dedicated_node["home"])
        assert stopped_pid is not None
        t0 = time.monotonic()
        down = _search(base, "lamp")
        elapsed = time.monotonic() - t0
        assert down.status_code == 503, down.text
        assert down.headers["Content-Type"].startswith("application/json")
        assert down.json()["error"]["code"] == "engine_unavailable"
        assert int(down.headers["Retry-After"]) > 0
        assert elapsed < 2 * SEARCH_DEADLINE_S, f"503 took {elapsed:.2f}s"  # generous: refused at once
        assert requests.get(f"{base}/readyz", timeout=30).status_code == 503

        restarted = ensure_node(**{k: v for k, v in dedicated_node.items() if k != "url"})
        assert restarted.started and restarted.pid != stopped_pid
        statuses = _until_200(base)
        assert statuses[-1] == 200, statuses
        assert [h["id"] for h in _search(base, "lamp").json()["hits"]] == before  # same data, same ranking
        assert requests.get(f"{base}/readyz", timeout=10).status_code == 200
        assert served.pids() == pids  # the API answered 503 and recovered without restarting
        metrics = requests.get(f"{base}/metrics", timeout=10).text
        assert 'shopsearch_engine_errors_total{kind="unavailable"}' in metrics
