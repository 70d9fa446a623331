"""Cluster settings on the real node: shards/replicas from index.toml, replicas restored after a bulk load, the
health wait before an alias moves, a client with several hosts (one dead) and the health /readyz reports."""

from __future__ import annotations

import uuid

import pytest

from shopsearch.indexer.job import run_index
from shopsearch.plugin.cluster_health import ONE_NODE_NOTE
from shopsearch.plugin.index_config import load_index_config
from shopsearch.plugin.opensearch_engine import OpenSearchEngine
from tests.indexer.catalogs import good_rows, write_jsonl
from tests.indexer.fakeenc import HashEncoder

pytestmark = pytest.mark.opensearch
DEAD = "http://127.0.0.1:9"  # the discard port: nothing listens there


def _settings(engine: OpenSearchEngine, index: str) -> dict:
    return engine.client.indices.get_settings(index=index)[index]["settings"]["index"]


@pytest.fixture
def alias(opensearch_url):
    name = f"ixtest-{uuid.uuid4().hex[:10]}"
    yield name
    cleanup = OpenSearchEngine(opensearch_url)
    for index in cleanup.list_indices(f"{name}-"):
        cleanup.delete_index(index)
    cleanup.close()


def test_bulk_mode_drops_replicas_and_serving_restores_the_configured_ones(opensearch_url, alias):
    config = load_index_config().with_layout(shards=2, replicas=1)
    engine = OpenSearchEngine(opensearch_url, config=config)
    index = f"{alias}-v1"
    engine.create_index(index, 4)
    created = _settings(engine, index)
    assert (created["number_of_shards"], created["number_of_replicas"]) == ("2", "1")
    engine.set_bulk_mode(index, True)
    bulk = _settings(engine, index)
    assert (bulk["refresh_interval"], bulk["number_of_replicas"], bulk["auto_expand_replicas"]) == ("-1", "0", "false")
    engine.set_bulk_mode(index, False)
    serving = _settings(engine, index)
    assert (serving["refresh_interval"], serving["number_of_replicas"]) == ("1s", "1")
    # One node cannot hold a replica: yellow, accepted only because the cluster has one node, and said so.
    health = engine.wait_ready(index)
    assert (health.status, health.nodes, health.ready, health.note) == ("yellow", 1, True, ONE_NODE_NOTE)
    engine.close()


def test_full_rebuild_ends_with_the_configured_replicas_and_says_why_it_is_yellow(opensearch_url, alias, tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", good_rows(20))
    tiny_encoder = HashEncoder()
    engine = OpenSearchEngine(opensearch_url, config=load_index_config().with_layout(replicas=1))
    report = run_index(path, engine, tiny_encoder, alias=alias, mode="full", progress=False,
                       quarantine_path=tmp_path / "q.jsonl")
    assert engine.resolve_alias(alias) == report.index
    assert _settings(engine, report.index)["number_of_replicas"] == "1"
    assert report.health == f"yellow ({ONE_NODE_NOTE})" and ONE_NODE_NOTE in report.summary_line()
    engine.close()

    auto = OpenSearchEngine(opensearch_url)  # the packaged default: auto_expand_replicas "0-1" -> green here
    again = run_index(path, auto, tiny_encoder, alias=alias, mode="full", progress=False,
                      quarantine_path=tmp_path / "q.jsonl")
    assert again.health == "green" and _settings(auto, again.index)["auto_expand_replicas"] == "0-1"
    auto.close()


def test_a_client_with_a_dead_host_retries_on_the_live_one_and_readyz_health_names_both(opensearch_url):
    engine = OpenSearchEngine(f"{DEAD},{opensearch_url}", timeout=5)
    assert all(c.pool.pool.maxsize == 10 for c in engine.client.transport.seed_connections)  # one pool per node
    for _ in range(4):  # round robin: half of these go to the dead node first and are retried on the other
        engine.ping()
    health = engine.cluster_health()
    assert health.status in ("green", "yellow") and health.nodes >= 1
    answers = {h.url: h.ok for h in health.hosts}
    assert answers == {DEAD: False, opensearch_url: True}
    assert next(h for h in health.as_json()["hosts"] if h["url"] == DEAD)["error"] == "ConnectionError"
    engine.close()
