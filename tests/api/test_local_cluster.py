"""A real three-node local cluster (`shopsearch opensearch start --nodes 3`): a full rebuild keeps its replicas, and
a node SIGKILLed under load (searches through `shopsearch serve`, incremental upserts through the indexing job)
costs no search, no acknowledged write and no readiness, and the cluster heals once the node is back.

The cluster is this module's own: its folder beside the shared node's install (the non-root ``opensearch`` user must
reach it, so not under pytest's tmp_path), HTTP ports from 9231 on; it is started by the module fixture through the
CLI, stopped afterwards and its folder deleted. The shared node on 9200 is never touched. About 2-3 minutes on a
busy 2-core machine: the three JVMs start in ~40 s, the killed one restarts in ~30 s.
"""

from __future__ import annotations

import random
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from shopsearch.api.cli import main
from shopsearch.indexer.job import run_index
from shopsearch.plugin.index_config import load_index_config
from shopsearch.plugin.localcluster import TRANSPORT_OFFSET, ClusterLayout, cluster_layout, read_layout
from shopsearch.plugin.opensearch_engine import OpenSearchEngine
from tests.indexer.catalogs import good_rows, write_jsonl
from tests.indexer.fakeenc import HashEncoder

from .test_served import serve

pytestmark = pytest.mark.opensearch

NODES = 3
FIRST_PORTS = range(9231, 9291, NODES)
START_TIMEOUT_S = 240.0
LAYOUT = {"shards": 3, "replicas": 1}  # every node holds two shard copies: any node's loss turns the index yellow
CATALOG_SIZE = 300
UPSERTS_PER_RUN = 5  # products whose title each incremental run changes
SEARCH_THREADS = 3
# Three JVMs, the API, the upserts and the test share 2 cores: a starved search must not count as a node fault.
SEARCH_DEADLINE_MS = 10_000
LOCK_STALE_S = 15.0
QUERIES = ["lamp", "product 12 lamp", "acme", "globex lamp", "description of item 7", "initech", "round lamp"]


def _free(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            return False
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _first_free_ports() -> int:
    """The first HTTP port p in FIRST_PORTS with p..p+2 and their transport ports free."""
    for first in FIRST_PORTS:
        if all(_free(p) and _free(p + TRANSPORT_OFFSET) for p in range(first, first + NODES)):
            return first
    pytest.fail(f"no {NODES} free ports from {FIRST_PORTS.start} to {FIRST_PORTS.stop} for the local cluster")


def _cli(*argv: str) -> int:
    return main(["opensearch", *argv])


@pytest.fixture(scope="module")
def cluster() -> Iterator[ClusterLayout]:
    """The module's three-node cluster, started and stopped through the CLI; its folder deleted afterwards."""
    from shopsearch.plugin.localnode import default_home
    from shopsearch.settings import load_settings

    home = default_home(load_settings(environ={}))
    root = home.with_name(f"{home.name}-cluster-test")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SHOPSEARCH_OPENSEARCH_CLUSTER_HOME", str(root))
        mp.delenv("OPENSEARCH_URL", raising=False)  # a remote $OPENSEARCH_URL would refuse a local cluster
        if root.exists():  # left by a run that was killed: stop whatever runs from it, start clean
            _cli("stop", "--nodes", str(NODES))
            shutil.rmtree(root)
        first = _first_free_ports()
        try:
            assert _cli("start", "--nodes", str(NODES), "--port", str(first),
                        "--timeout", str(START_TIMEOUT_S)) == 0
            layout = read_layout(root)
            assert layout == cluster_layout(NODES, first, root)
            yield layout
        finally:
            _cli("stop", "--nodes", str(NODES))
            shutil.rmtree(root, ignore_errors=True)
            (root.parent / f".{root.name}.lock").unlink(missing_ok=True)


def _engine(layout: ClusterLayout, **kw) -> OpenSearchEngine:
    return OpenSearchEngine(layout.urls, config=load_index_config().with_layout(**LAYOUT), **kw)


def _get(layout: ClusterLayout, path: str) -> dict | list:
    """GET ``path`` from the first node that answers (one may be down)."""
    for url in layout.urls.split(","):
        try:
            return requests.get(f"{url}{path}", timeout=90).json()
        except requests.ConnectionError:
            continue
    raise AssertionError(f"no node of {layout.urls} answers {path}")


def test_status_lists_three_nodes_up_on_their_own_ports(cluster, capsys):
    assert _cli("status", "--nodes", str(NODES)) == 0
    out = capsys.readouterr().out
    assert "cluster health=green  nodes joined=3/3" in out
    for node in cluster.nodes:
        assert f"{node.name:<19} {node.url:<23}" in out
    names = {row["name"] for row in _get(cluster, "/_cat/nodes?format=json")}
    assert names == {n.name for n in cluster.nodes}
    assert requests.get("http://127.0.0.1:9200/_cluster/health", timeout=10).json()["cluster_name"] == "shopsearch"


def test_full_rebuild_ends_with_the_configured_replicas_on_the_new_index(cluster, tmp_path):
    engine = _engine(cluster)
    alias = "cluster-rebuild"
    try:
        report = run_index(write_jsonl(tmp_path / "c.jsonl", good_rows(60)), engine, HashEncoder(), alias=alias,
                           mode="full", progress=False, quarantine_path=tmp_path / "q.jsonl")
        settings = engine.client.indices.get_settings(index=report.index)[report.index]["settings"]["index"]
        assert (settings["number_of_shards"], settings["number_of_replicas"]) == ("3", "1")
        assert report.health == "green" and engine.resolve_alias(alias) == report.index
        shards = _get(cluster, f"/_cat/shards/{report.index}?format=json")
        assert sorted(s["prirep"] for s in shards) == ["p"] * 3 + ["r"] * 3
        assert all(s["state"] == "STARTED" for s in shards)
        for number in "012":  # a primary and its replica never share a node
            assert len({s["node"] for s in shards if s["shard"] == number}) == 2
    finally:
        for index in engine.list_indices(f"{alias}-"):
            engine.delete_index(index)
        engine.close()


@dataclass
class Load:
    """What the background load saw: each search's outcome, each acknowledged upsert, each /readyz answer."""

    stop: threading.Event = field(default_factory=threading.Event)
    searches: list[tuple[float, int | str]] = field(default_factory=list)
    acked: dict[str, str] = field(default_factory=dict)  # product id -> its last acknowledged title
    acked_at: list[float] = field(default_factory=list)
    refused_runs: list[str] = field(default_factory=list)
    readyz: list[tuple[float, int, dict]] = field(default_factory=list)


def _search_loop(base: str, load: Load, seed: int) -> None:
    rng = random.Random(seed)
    while not load.stop.is_set():
        try:
            resp = requests.get(f"{base}/search", params={"q": rng.choice(QUERIES), "size": 5}, timeout=30)
            status: int | str = resp.status_code if resp.ok else f"{resp.status_code} {resp.text[:300]}"
        except requests.RequestException as exc:
            status = type(exc).__name__
        load.searches.append((time.monotonic(), status))


def _upsert_loop(layout: ClusterLayout, alias: str, encoder, folder: Path, load: Load) -> None:
    """Incremental runs of the indexing job, each changing a few titles of the whole catalog file."""
    rows = {r["id"]: r for r in good_rows(CATALOG_SIZE)}
    rng = random.Random(7)
    engine = _engine(layout)  # the indexer's client: retries on another node
    try:
        for run in range(10_000):
            if load.stop.is_set():
                break
            changed = rng.sample(sorted(rows), UPSERTS_PER_RUN)
            for pid in changed:
                rows[pid] = {**rows[pid], "title": f"{rows[pid]['title'].split(' round ')[0]} round {run}"}
            path = write_jsonl(folder / "upsert.jsonl", list(rows.values()))
            try:
                # A run cut off by the kill may fail to release its lock (the holder, this process, still
                # lives): a short stale time lets the next run break it instead of waiting the default 600 s.
                run_index(path, engine, encoder, alias=alias, mode="incremental", progress=False,
                          quarantine_path=folder / "q.jsonl", lock_stale_s=LOCK_STALE_S)
            except Exception as exc:  # noqa: BLE001 - a refused run is not acknowledged; the next one retries
                load.refused_runs.append(f"{time.monotonic():.1f} {type(exc).__name__}: {exc}"[:300])
                continue
            # Acknowledged: the whole file as this run read it (it also carries a refused run's changes).
            load.acked.update({pid: row["title"] for pid, row in rows.items() if " round " in row["title"]})
            load.acked_at.append(time.monotonic())
    finally:
        engine.close()


def _round(title: str) -> int:
    """The upsert round a title was written in (-1: never upserted)."""
    return int(title.rsplit(" round ", 1)[1]) if " round " in title else -1


def _readyz_loop(base: str, load: Load) -> None:
    while not load.stop.is_set():
        try:
            resp = requests.get(f"{base}/readyz", timeout=30)
            load.readyz.append((time.monotonic(), resp.status_code, resp.json()))
        except (requests.RequestException, ValueError) as exc:
            load.readyz.append((time.monotonic(), 0, {"error": type(exc).__name__}))
        load.stop.wait(0.5)


def _api_problems(log: Path) -> list[str]:
    """The API's warnings and errors (its serve.log, kept in tmp_path), for a failure's message: the 503's cause."""
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    return [line[:400] for line in lines if " WARNING " in line or " ERROR " in line or "Error" in line][-12:]


def _wait(predicate, timeout: float, what: str, load: Load) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; {len(load.searches)} searches, "
                                 f"{len(load.acked_at)} acknowledged upsert runs, refused runs: "
                                 f"{load.refused_runs[:6]}, last /readyz: {load.readyz[-4:]}")
        time.sleep(0.5)


def test_a_node_killed_under_load_costs_no_search_and_no_acknowledged_upsert(
        cluster, tiny_encoder, tiny_bi_encoder_dir, tmp_path):
    alias = "cluster-fault"
    engine = _engine(cluster)
    report = run_index(write_jsonl(tmp_path / "catalog.jsonl", good_rows(CATALOG_SIZE)), engine, tiny_encoder,
                       alias=alias, mode="full", progress=False, quarantine_path=tmp_path / "q.jsonl")
    assert report.health == "green", report.summary_line()
    load = Load()
    try:
        with serve(cluster.urls, alias, tiny_bi_encoder_dir, tmp_path, extra_args=("--engine-timeout", "5"),
                   env={"SHOPSEARCH_SEARCH_DEADLINE_MS": str(SEARCH_DEADLINE_MS),
                        # Unthrottled loops from one test IP stand for many shoppers: only node failures may fail
                        # a search here, not the per-IP budget (tests/api/test_limits.py covers that).
                        "SHOPSEARCH_RATE_LIMIT_SEARCH_IP": "100000/second"}) as api:
            threads = [threading.Thread(target=_search_loop, args=(api.url, load, i), daemon=True)
                       for i in range(SEARCH_THREADS)]
            threads += [threading.Thread(target=_upsert_loop, args=(cluster, alias, tiny_encoder, tmp_path, load),
                                         daemon=True),
                        threading.Thread(target=_readyz_loop, args=(api.url, load), daemon=True)]
            for t in threads:
                t.start()
            _wait(lambda: len(load.acked_at) >= 2 and len(load.searches) >= 20, 60, "the load to get going", load)

            # The elected cluster manager: its loss also costs an election and primary promotions.
            victim = _get(cluster, "/_cat/cluster_manager?format=json")[0]["node"]
            assert _cli("kill-node", victim) == 0
            killed_at = time.monotonic()
            acked_before = len(load.acked_at)
            _wait(lambda: any(t > killed_at and code == 200 and body.get("cluster", {}).get("nodes") == NODES - 1
                              for t, code, body in load.readyz), 60, "/readyz to report the node missing", load)
            _wait(lambda: len(load.acked_at) >= acked_before + 2, 90, "upserts acknowledged with a node down", load)
            # The node stays down until enough searches have run against the cluster without it.
            _wait(lambda: sum(1 for t, _ in load.searches if t > killed_at) >= 20, 60,
                  "20 searches with a node down", load)
            searches_down = sum(1 for t, _ in load.searches if t > killed_at)

            restart_began = time.monotonic()
            assert _cli("start", "--nodes", str(NODES), "--timeout", str(START_TIMEOUT_S)) == 0
            restarted_at = time.monotonic()
            health = _get(cluster, "/_cluster/health?wait_for_status=green&timeout=90s")
            _wait(lambda: any(t > restarted_at + 1 and body.get("cluster", {}).get("status") == "green"
                              for t, _, body in load.readyz), 30, "/readyz to report green again", load)
            load.stop.set()
            for t in threads:
                t.join(60)
    finally:
        load.stop.set()

    failed = [(round(t - killed_at, 1), s) for t, s in load.searches if s != 200]
    # The API's client moves a refused or reset connection on to the next node (api.app.open_configured_engine), so
    # no search may fail when a node is killed: neither those in flight at the kill nor those sent to it afterwards.
    assert not failed, (f"{len(failed)} of {len(load.searches)} searches failed (seconds after the kill, "
                        f"status): {failed[:20]}; the API logged: {_api_problems(tmp_path / 'serve.log')}")
    assert searches_down >= 20, f"only {searches_down} searches ran while a node was down"

    assert health["status"] == "green" and health["number_of_nodes"] == NODES, health
    concrete = engine.resolve_alias(alias)
    engine.refresh(concrete)
    stored = {pid: (engine.get(concrete, pid) or {}).get("title") or "" for pid in load.acked}
    # The acknowledged title, or a later one (a later run that was not acknowledged may still have written it).
    lost = {pid: (title, stored[pid]) for pid, title in load.acked.items() if _round(stored[pid]) < _round(title)}
    assert not lost, f"{len(lost)} of {len(load.acked)} acknowledged upserts are missing or stale: {lost}"
    assert engine.count(concrete) == CATALOG_SIZE
    engine.close()

    # While the node is down (from the kill until its restart begins): the restarted node can answer HTTP a moment
    # before the cluster manager counts its join, so a later sample may read 2 nodes with every host ok. The
    # cluster's colour then depends on where the lost copies were (yellow mostly; under load, a small index whose
    # replica was still recovering can read red, a shardless node green), so the node count marks the window.
    down = [body["cluster"] for t, code, body in load.readyz
            if killed_at < t < restart_began and code == 200 and body.get("cluster", {}).get("nodes") == NODES - 1]
    assert down and all(sum(not h["ok"] for h in c["hosts"]) == 1 for c in down), load.readyz[-40:]
    not_ready = [(round(t - killed_at, 1), code, body) for t, code, body in load.readyz if code != 200]
    assert not not_ready, f"/readyz answered not-ready during the fault: {not_ready[:5]}"
    print(f"\nfault test: {len(load.searches)} searches ({searches_down} after the kill), {len(failed)} failed; "
          f"{len(load.acked)} products upserted in {len(load.acked_at)} acknowledged runs "
          f"({len(load.refused_runs)} refused: {load.refused_runs[:3]}); {len(down)} /readyz answers with the "
          f"node down ({', '.join(sorted({c['status'] for c in down}))})")
