"""The local OpenSearch node: pure helpers, the sha1-checked download, and the real running node (.ci/run starts it)."""

from __future__ import annotations

import hashlib
import http.server
import threading
import uuid
from pathlib import Path

import pytest
import requests

from shopsearch.api.cli import main
from shopsearch.plugin import localnode
from shopsearch.plugin.localnode_download import Artifact, fetch_artifacts, node_artifacts, parse_sha1_file
from shopsearch.plugin.localnode_install import heap_options, opensearch_yml, plugin_descriptor
from shopsearch.settings import load_settings

# --- pure helpers -------------------------------------------------------------------------------------------------


def test_artifacts_match_core_and_plugin_versions():
    arts = {a.name: a for a in node_artifacts()}
    assert arts["opensearch"].path == ("org/opensearch/distribution/integ-test-zip/opensearch/2.19.1/"
                                       "opensearch-2.19.1.zip")
    assert arts["opensearch-knn"].filename == "opensearch-knn-2.19.1.0.zip"
    assert {a.name for a in node_artifacts() if a.role == "module:lang-painless"} == {
        "lang-painless", "opensearch-scripting-painless-spi", "antlr4-runtime",
        "asm", "asm-util", "asm-tree", "asm-commons", "asm-analysis"}
    assert "neural-search" not in {a.name for a in node_artifacts(with_neural=False)}


def test_descriptors_and_config():
    desc = plugin_descriptor("analysis-common")
    assert "classname=org.opensearch.analysis.common.CommonAnalysisPlugin" in desc
    assert "extended.plugins=lang-painless" in desc and "opensearch.version=2.19.1" in desc
    with pytest.raises(ValueError, match="name='nope'"):
        plugin_descriptor("nope")
    yml = opensearch_yml()
    assert "discovery.type: single-node" in yml and "network.host: 127.0.0.1" in yml
    assert "cluster.routing.allocation.disk.threshold_enabled: false" in yml
    assert heap_options("512m") == "-Xms512m\n-Xmx512m\n"


@pytest.mark.parametrize("heap", ["1", "1gb", "-1g", "100m", ""])
def test_bad_heap_is_rejected(heap):
    with pytest.raises(ValueError, match="heap="):
        localnode.validate_heap(heap)


@pytest.mark.parametrize("port", [0, 70000, "9200", True])
def test_bad_port_is_rejected(port):
    with pytest.raises(ValueError, match="port="):
        localnode.validate_port(port)


def test_sha1_file_parsing():
    digest = "a" * 40
    assert parse_sha1_file(f"{digest}  opensearch-2.19.1.zip\n") == digest
    with pytest.raises(ValueError, match="40-hex-digit"):
        parse_sha1_file("<html>not found</html>")


def test_remote_url_only_for_non_local_hosts():
    local = load_settings(environ={"OPENSEARCH_URL": "http://127.0.0.1:9201"})
    assert localnode.remote_url(local) is None
    assert localnode.resolve_port(None, local) == 9201
    remote = load_settings(environ={"OPENSEARCH_URL": "https://search.example.com:443/"})
    assert localnode.remote_url(remote) == "https://search.example.com:443"


# --- download: a tiny local HTTP "Maven" ----------------------------------------------------------------------------


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    requests_seen: list[str] = []

    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):  # noqa: N802 - http.server naming
        self.requests_seen.append(self.path)
        super().do_GET()


@pytest.fixture()
def fake_maven(tmp_path):
    """Serve tmp_path/repo over HTTP; yields (base_url, repo_dir, requested_paths)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    _QuietHandler.requests_seen = []
    handler = lambda *a, **kw: _QuietHandler(*a, directory=str(repo), **kw)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", repo, _QuietHandler.requests_seen
    server.shutdown()
    server.server_close()
    thread.join()


def _publish(repo: Path, art: Artifact, payload: bytes, sha1: str | None = None) -> None:
    target = repo / art.path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(payload)
    (repo / f"{art.path}.sha1").write_text(sha1 or hashlib.sha1(payload).hexdigest())


def test_download_verifies_sha1_and_caches(fake_maven, tmp_path):
    base, repo, seen = fake_maven
    art = Artifact("org.example", "thing", "1.0", "jar", "module:thing")
    _publish(repo, art, b"jar bytes")
    cache = tmp_path / "cache"
    files = fetch_artifacts([art], dest=cache, base_url=base)
    assert files[art].read_bytes() == b"jar bytes"
    assert len(seen) == 2  # .sha1 + the file
    fetch_artifacts([art], dest=cache, base_url=base)
    assert len(seen) == 2  # second call: served from the cache, nothing downloaded


def test_download_rejects_sha1_mismatch(fake_maven, tmp_path):
    base, repo, _ = fake_maven
    art = Artifact("org.example", "evil", "1.0", "zip", "plugin:evil")
    _publish(repo, art, b"tampered", sha1="0" * 40)
    with pytest.raises(RuntimeError, match="sha1 mismatch"):
        fetch_artifacts([art], dest=tmp_path / "cache", base_url=base)
    assert not list((tmp_path / "cache").iterdir())  # nothing half-trusted left behind


# --- the real node --------------------------------------------------------------------------------------------------


@pytest.mark.opensearch
def test_node_version_and_plugins(opensearch_url):
    assert requests.get(opensearch_url, timeout=10).json()["version"]["number"] == "2.19.1"
    status = localnode.node_status()
    assert status.running and status.version == "2.19.1" and status.health in ("green", "yellow")
    assert {"analysis-common", "lang-painless", "opensearch-knn"} <= set(status.plugins)


@pytest.mark.opensearch
def test_english_stemmer(opensearch_url):
    body = {"tokenizer": "standard", "filter": ["lowercase", {"type": "stemmer", "language": "english"}],
            "text": "running shoes"}
    resp = requests.post(f"{opensearch_url}/_analyze", json=body, timeout=10)
    assert [t["token"] for t in resp.json()["tokens"]] == ["run", "shoe"]


@pytest.mark.opensearch
def test_knn_lucene_cosine_nearest_first(opensearch_url):
    index = f"test-localnode-knn-{uuid.uuid4().hex[:8]}"
    mapping = {"settings": {"index.knn": True, "number_of_shards": 1, "number_of_replicas": 0},
               "mappings": {"properties": {"v": {"type": "knn_vector", "dimension": 3, "method": {
                   "name": "hnsw", "engine": "lucene", "space_type": "cosinesimil"}}}}}
    try:
        requests.put(f"{opensearch_url}/{index}", json=mapping, timeout=30).raise_for_status()
        bulk = "".join(f'{{"index":{{"_id":"{i}"}}}}\n{{"v":{v}}}\n'
                       for i, v in [("x", [1, 0, 0]), ("y", [0, 1, 0]), ("xy", [0.7, 0.7, 0])])
        resp = requests.post(f"{opensearch_url}/{index}/_bulk?refresh=true", data=bulk, timeout=30,
                             headers={"content-type": "application/x-ndjson"})
        assert resp.json()["errors"] is False
        query = {"size": 3, "query": {"knn": {"v": {"vector": [0.9, 0.1, 0], "k": 3}}}}
        hits = requests.post(f"{opensearch_url}/{index}/_search", json=query, timeout=30).json()["hits"]["hits"]
        assert [h["_id"] for h in hits] == ["x", "xy", "y"]
    finally:
        requests.delete(f"{opensearch_url}/{index}", timeout=30)


@pytest.mark.opensearch
def test_ensure_node_reuses_running_jvm(opensearch_url):
    first = localnode.ensure_node()
    second = localnode.ensure_node()
    assert not first.started and not second.started  # .ci/run already started it
    assert second.pid == first.pid
    if localnode.remote_url(load_settings()) is None:
        assert first.pid is not None and first.home is not None


@pytest.mark.opensearch
def test_cli_status(opensearch_url, capsys):
    assert main(["opensearch", "status"]) == 0
    assert "2.19.1" in capsys.readouterr().out
    if localnode.remote_url(load_settings()) is None:
        assert main(["opensearch", "status", "--port", "9"]) == 3  # nothing listens on the discard port
        assert "not running" in capsys.readouterr().out
