"""The local cluster's pure parts: its layout, each node's config and JVM options, the manifest, and the CLI's
answers when no cluster runs. The real three-node cluster is exercised in tests/api/test_local_cluster.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from shopsearch.api.cli import main
from shopsearch.plugin import localcluster
from shopsearch.plugin.localcluster import cluster_layout, cluster_yml, node_jvm_options, read_layout
from shopsearch.plugin.localnode_install import opensearch_yml
from shopsearch.settings import load_settings


def test_layout_gives_each_node_its_name_ports_and_folder():
    layout = cluster_layout(3, 9201, Path("/c"))
    assert [(n.name, n.http_port, n.transport_port) for n in layout.nodes] == [
        ("shopsearch-node-1", 9201, 9501), ("shopsearch-node-2", 9202, 9502), ("shopsearch-node-3", 9203, 9503)]
    assert layout.urls == "http://127.0.0.1:9201,http://127.0.0.1:9202,http://127.0.0.1:9203"
    assert layout.node_dir(layout.nodes[1]) == Path("/c/shopsearch-node-2")
    with pytest.raises(ValueError, match="name='nope'.*allowed: shopsearch-node-1, shopsearch-node-2"):
        layout.node("nope")


@pytest.mark.parametrize("nodes", [0, 1, 10, True, "3"])
def test_bad_node_counts_are_refused(nodes):
    with pytest.raises(ValueError, match=f"nodes={nodes!r} is not allowed"):
        cluster_layout(nodes, 9201, Path("/c"))


def test_ports_past_65535_are_refused():
    with pytest.raises(ValueError, match="port="):
        cluster_layout(3, 65300, Path("/c"))


def test_node_config_replaces_the_single_node_settings_and_keeps_the_rest():
    layout = cluster_layout(3, 9201, Path("/c"))
    yml = cluster_yml(opensearch_yml(), layout, layout.nodes[2])
    assert "discovery.type" not in yml and "node.name: shopsearch-local" not in yml
    assert "cluster.routing.allocation.disk.threshold_enabled: false" in yml and "network.host: 127.0.0.1" in yml
    for line in ["cluster.name: shopsearch-cluster", "node.name: shopsearch-node-3", "http.port: 9203",
                 "transport.port: 9503", 'discovery.seed_hosts: ["127.0.0.1:9501", "127.0.0.1:9502", "127.0.0.1:9503"]',
                 'cluster.initial_cluster_manager_nodes: ["shopsearch-node-1", "shopsearch-node-2", '
                 '"shopsearch-node-3"]', "path.data: /c/shopsearch-node-3/data", "path.logs: /c/shopsearch-node-3/logs"]:
        assert line in yml.splitlines()
    assert sum(ln.startswith("cluster.name:") for ln in yml.splitlines()) == 1


def test_jvm_options_point_logs_and_dumps_into_the_node_folder():
    base = ("-XX:HeapDumpPath=data\n-XX:ErrorFile=logs/hs_err_pid%p.log\n"
            "9-:-Xlog:gc*,gc+age=trace,safepoint:file=logs/gc.log:utctime,pid,tags:filecount=32,filesize=64m\n")
    out = node_jvm_options(base, Path("/c/n1"))
    assert out.splitlines() == ["-XX:HeapDumpPath=/c/n1/data", "-XX:ErrorFile=/c/n1/logs/hs_err_pid%p.log",
                                "9-:-Xlog:gc*,gc+age=trace,safepoint:file=/c/n1/logs/gc.log:utctime,pid,tags:"
                                "filecount=32,filesize=64m"]


def test_manifest_round_trips_and_a_missing_one_is_none(tmp_path):
    assert read_layout(tmp_path) is None
    layout = cluster_layout(2, 9301, tmp_path)
    localcluster._write_layout(layout)
    assert read_layout(tmp_path) == layout


def test_default_root_is_beside_the_node_install_unless_set(tmp_path):
    settings = load_settings({"opensearch_home": tmp_path / "os"}, environ={})
    assert localcluster.default_cluster_root(settings) == (tmp_path / "os-cluster").resolve()
    chosen = load_settings({"opensearch_cluster_home": tmp_path / "elsewhere"}, environ={})
    assert localcluster.default_cluster_root(chosen) == (tmp_path / "elsewhere").resolve()


def test_cli_without_a_cluster_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SHOPSEARCH_OPENSEARCH_CLUSTER_HOME", str(tmp_path / "none"))
    assert main(["opensearch", "status", "--nodes", "3"]) == 3
    assert "no local cluster in" in capsys.readouterr().out
    assert main(["opensearch", "kill-node", "shopsearch-node-1"]) == 1
    assert "no local cluster in" in capsys.readouterr().err
    assert main(["opensearch", "kill-node"]) == 2
    assert "kill-node needs the node's NAME" in capsys.readouterr().err
    assert main(["opensearch", "stop", "--nodes", "3"]) == 0
    assert "not running (nothing to stop)" in capsys.readouterr().out
    assert main(["opensearch", "start", "--nodes", "3", "--secure"]) == 2
    assert "--secure is not allowed with --nodes" in capsys.readouterr().err


def test_compose_cluster_file_forms_one_secured_three_node_cluster():
    import yaml  # PyYAML: installed with transformers

    root = Path(__file__).resolve().parents[2] / "docker"
    text = (root / "compose.cluster.yaml").read_text()
    services = yaml.safe_load(text)["services"]
    nodes = sorted(name for name in services if name.startswith("opensearch-"))
    assert nodes == ["opensearch-1", "opensearch-2", "opensearch-3"]
    for name in nodes:
        node = services[name]
        env = node["environment"]
        assert node["image"] == "opensearchproject/opensearch:2.19.1" and env["node.name"] == name
        assert env["discovery.seed_hosts"].split(",") == nodes
        assert env["cluster.initial_cluster_manager_nodes"].split(",") == nodes
        assert "discovery.type" not in env and node["restart"] == "unless-stopped" and node["mem_limit"]
        assert f"{name.replace('opensearch', 'opensearch-data')}:/usr/share/opensearch/data" in node["volumes"]
        assert "./opensearch.yml:/usr/share/opensearch/config/opensearch.yml:ro" in node["volumes"]
    assert "DISABLE_SECURITY_PLUGIN" not in text and "OPENSEARCH_INITIAL_ADMIN_PASSWORD" in text
    api_env = dict(item.split("=", 1) for item in services["api"]["environment"])
    assert api_env["OPENSEARCH_URL"].split(",") == [f"https://{n}:9200" for n in nodes]
    assert all(f"--host {n}" in " ".join(services["certs"]["command"]) for n in nodes)
