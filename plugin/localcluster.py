"""A real local OpenSearch cluster of several nodes on one machine, for fault tests and for trying replicas.

``start_cluster(3)`` runs three JVMs from the same assembled 2.19.1 install the single node uses
(:mod:`.localnode`), each with its own folder under the cluster root (``config/``, ``data/``, ``logs/``,
``run/opensearch.pid``), its own name (``shopsearch-node-1``...), HTTP port (9201, 9202, 9203) and transport port
(HTTP + 300). They find each other through ``discovery.seed_hosts`` and bootstrap once through
``cluster.initial_cluster_manager_nodes``; their cluster name differs from the single node's, which keeps running
on 9200 untouched. ``kill_node`` SIGKILLs one JVM (a crash, for fault tests); ``start_cluster`` again restarts
whatever is down and the node rejoins with its data. ``cluster.json`` in the root records the layout, so
``cluster_status``, ``kill_node`` and ``stop_cluster`` need no arguments.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

# The single node's pieces, shared rather than copied: its install, launcher, pid files and health probes.
from shopsearch.plugin.localnode import (OPENSEARCH_VERSION, _get_json, _install_lock, _pid_file, _pid_from_file,
                                         _port_taken, _tail, default_home, forget_spawned, remote_url, spawn_node,
                                         validate_heap, validate_port)
from shopsearch.plugin.localnode_download import cache_dir, fetch_artifacts, node_artifacts
from shopsearch.plugin.localnode_install import heap_options, install_node, is_installed
from shopsearch.settings import Settings, load_settings

log = logging.getLogger(__name__)

CLUSTER_NAME = "shopsearch-cluster"  # not the single node's "shopsearch": the two never join each other
NODE_PREFIX = "shopsearch-node-"
DEFAULT_FIRST_PORT = 9201
TRANSPORT_OFFSET = 300  # node i's transport port = its HTTP port + 300 (9501...), clear of 9300-9400 (the default)
DEFAULT_CLUSTER_HEAP = "512m"  # three JVMs of ~0.9 GB resident each fit a small box beside the single node
MAX_NODES = 9
MANIFEST = "cluster.json"
# Settings of the install's opensearch.yml that each cluster node sets for itself; every other line is kept.
NODE_KEYS = ("cluster.name", "node.name", "discovery.type", "discovery.seed_hosts",
             "cluster.initial_cluster_manager_nodes", "path.data", "path.logs", "http.port", "transport.port")


@dataclass(frozen=True)
class ClusterNode:
    """One node of the layout: its name and ports; its folder is ``<root>/<name>``."""

    name: str
    http_port: int
    transport_port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"


@dataclass(frozen=True)
class ClusterLayout:
    """Where a local cluster lives (``root``) and its nodes, in order."""

    root: Path
    nodes: tuple[ClusterNode, ...]

    @property
    def urls(self) -> str:
        """The nodes' URLs, comma-separated: the ``OPENSEARCH_URL`` for this cluster."""
        return ",".join(n.url for n in self.nodes)

    def node_dir(self, node: ClusterNode) -> Path:
        return self.root / node.name

    def node(self, name: str) -> ClusterNode:
        """The node called ``name``; raises ValueError naming the nodes there are."""
        for node in self.nodes:
            if node.name == name:
                return node
        raise ValueError(f"name={name!r} is not a node of the local cluster in {self.root}; "
                         f"allowed: {', '.join(n.name for n in self.nodes)}")


@dataclass(frozen=True)
class NodeState:
    """One node as found: ``pid`` of its live JVM (None when down), ``up`` when it answers HTTP, ``started`` when
    this call launched it."""

    name: str
    url: str
    pid: int | None
    up: bool
    started: bool = False


@dataclass(frozen=True)
class ClusterStatus:
    """Each node's state and the cluster's health as one of its nodes reports it (None when none answers)."""

    root: Path
    nodes: tuple[NodeState, ...]
    health: str | None
    joined: int  # nodes in the cluster, as the answering node sees it

    @property
    def running(self) -> bool:
        return any(n.up for n in self.nodes)

    @property
    def urls(self) -> str:
        return ",".join(n.url for n in self.nodes)


def cluster_layout(nodes: int, first_port: int, root: Path) -> ClusterLayout:
    """The layout of a ``nodes``-node cluster whose HTTP ports start at ``first_port``.

    Raises:
        ValueError: ``nodes`` is not an integer from 2 to 9, or a port falls outside 1..65535.

    >>> [(n.name, n.http_port, n.transport_port) for n in cluster_layout(2, 9201, Path("/c")).nodes]
    [('shopsearch-node-1', 9201, 9501), ('shopsearch-node-2', 9202, 9502)]
    """
    if isinstance(nodes, bool) or not isinstance(nodes, int) or not 2 <= nodes <= MAX_NODES:
        raise ValueError(f"nodes={nodes!r} is not allowed for a cluster; use an integer from 2 to {MAX_NODES} "
                         f"(1 is the single node: `shopsearch opensearch start`)")
    validate_port(first_port)
    validate_port(first_port + nodes - 1 + TRANSPORT_OFFSET)
    return ClusterLayout(root, tuple(ClusterNode(f"{NODE_PREFIX}{i + 1}", first_port + i,
                                                 first_port + i + TRANSPORT_OFFSET) for i in range(nodes)))


def default_cluster_root(settings: Settings) -> Path:
    """The settings' ``opensearch_cluster_home``, else ``<node install folder>-cluster`` beside the single node."""
    if settings.opensearch_cluster_home:
        return settings.opensearch_cluster_home.resolve()
    home = default_home(settings)
    return home.with_name(f"{home.name}-cluster")


def cluster_yml(base_yml: str, layout: ClusterLayout, node: ClusterNode) -> str:
    """``node``'s opensearch.yml: the install's ``base_yml`` without its one-node settings, plus the cluster's.

    >>> yml = cluster_yml("discovery.type: single-node\\nnetwork.host: 127.0.0.1\\n",
    ...                   cluster_layout(2, 9201, Path("/c")), cluster_layout(2, 9201, Path("/c")).nodes[1])
    >>> "single-node" in yml, "network.host: 127.0.0.1" in yml, "transport.port: 9502" in yml
    (False, True, True)
    """
    kept = [ln for ln in base_yml.splitlines() if ln.split(":", 1)[0].strip() not in NODE_KEYS]
    folder = layout.node_dir(node)
    return "\n".join([
        *kept,
        f"# The local cluster's node {node.name} (plugin/localcluster.py); rewritten at each start.",
        f"cluster.name: {CLUSTER_NAME}",
        f"node.name: {node.name}",
        f"http.port: {node.http_port}",
        f"transport.port: {node.transport_port}",
        "discovery.seed_hosts: " + json.dumps([f"127.0.0.1:{n.transport_port}" for n in layout.nodes]),
        # Read once, at the very first start (the bootstrap); later starts rejoin from the state on disk.
        "cluster.initial_cluster_manager_nodes: " + json.dumps([n.name for n in layout.nodes]),
        f"path.data: {folder / 'data'}",
        f"path.logs: {folder / 'logs'}",
        "",
    ])


def node_jvm_options(base: str, node_dir: Path) -> str:
    """The install's jvm.options with its relative ``logs/`` and ``data`` paths (GC log, heap dumps, crash files)
    pointed into ``node_dir``: bin/opensearch runs from the install folder, so nodes would share them otherwise.

    >>> node_jvm_options("-XX:HeapDumpPath=data\\n9-:-Xlog:gc*:file=logs/gc.log:utctime", Path("/c/n1"))
    '-XX:HeapDumpPath=/c/n1/data\\n9-:-Xlog:gc*:file=/c/n1/logs/gc.log:utctime'
    """
    text = re.sub(r"(?<=[=:])logs/", f"{node_dir}/logs/", base)
    return re.sub(r"HeapDumpPath=data\b", f"HeapDumpPath={node_dir}/data", text)


def read_layout(root: Path) -> ClusterLayout | None:
    """The layout recorded in ``root``'s manifest, or None when no cluster was started there."""
    try:
        nodes = json.loads((root / MANIFEST).read_text())["nodes"]
    except (OSError, ValueError, KeyError):
        return None
    return ClusterLayout(root, tuple(ClusterNode(n["name"], int(n["http_port"]), int(n["transport_port"]))
                                     for n in nodes))


def _write_layout(layout: ClusterLayout) -> None:
    layout.root.mkdir(parents=True, exist_ok=True)
    (layout.root / MANIFEST).write_text(json.dumps({
        "cluster": CLUSTER_NAME, "opensearch": OPENSEARCH_VERSION,
        "nodes": [{"name": n.name, "http_port": n.http_port, "transport_port": n.transport_port}
                  for n in layout.nodes]}, indent=2) + "\n")


def _prepare(home: Path, layout: ClusterLayout, node: ClusterNode, heap: str) -> Path:
    """Write ``node``'s config folder (the install's, adapted) and make its folders; returns the config folder."""
    folder = layout.node_dir(node)
    for sub in ("data", "logs", "run"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    conf = folder / "config"
    # Everything the install's config holds (log4j2, keystore, certificates if any) with this node's changes.
    shutil.copytree(home / "config", conf, dirs_exist_ok=True)
    (conf / "opensearch.yml").write_text(cluster_yml((home / "config" / "opensearch.yml").read_text(), layout, node))
    (conf / "jvm.options").write_text(node_jvm_options((home / "config" / "jvm.options").read_text(), folder))
    (conf / "jvm.options.d" / "shopsearch-heap.options").write_text(heap_options(heap))
    return conf


def _health_of(layout: ClusterLayout) -> dict | None:
    """``_cluster/health`` from the first node that answers it (a node without a cluster manager answers 503)."""
    for node in layout.nodes:
        body = _get_json(f"{node.url}/_cluster/health", timeout=2.0)
        if isinstance(body, dict):
            return body
    return None


def _terminate(procs: dict[str, subprocess.Popen]) -> None:
    for proc in procs.values():
        proc.terminate()
    for proc in procs.values():
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        forget_spawned(proc.pid)


def _wait_formed(layout: ClusterLayout, spawned: dict[str, subprocess.Popen], timeout: float) -> None:
    """Wait until every node has joined and the cluster is yellow or green; stops what this call started and
    raises RuntimeError (with the failing node's log tail) when a JVM exits or time runs out."""
    started_at = time.time() - 1.0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, proc in spawned.items():
            if proc.poll() is not None:
                tail = _tail(layout.root / name, since=started_at, cluster=CLUSTER_NAME)
                _terminate({k: p for k, p in spawned.items() if p.poll() is None})
                raise RuntimeError(f"OpenSearch node {name} exited with code {proc.returncode} while starting.\n"
                                   f"{tail}")
        health = _health_of(layout)
        if health and health.get("number_of_nodes") == len(layout.nodes) and health.get("status") in ("yellow",
                                                                                                      "green"):
            return
        time.sleep(1.0)
    tails = "\n".join(_tail(layout.root / name, lines=10, since=started_at, cluster=CLUSTER_NAME)
                      for name in spawned)
    _terminate(spawned)
    raise RuntimeError(f"the local cluster did not form (all {len(layout.nodes)} nodes joined, yellow or green) "
                       f"within {timeout:.0f} s; stopped the nodes this call started.\n{tails}")


def start_cluster(nodes: int = 3, port: int | None = None, heap: str | None = None, root: Path | None = None,
                  timeout: float = 180.0, settings: Settings | None = None) -> ClusterStatus:
    """Start a local cluster of ``nodes`` nodes, or the nodes of it that are down (a killed node rejoins).

    Args:
        nodes: how many nodes (2 to 9).
        port: HTTP port of the first node (the others follow); default: the running layout's, else 9201.
        heap: JVM heap of each node, e.g. ``"512m"`` (default 512m).
        root: the cluster's folder (default :func:`default_cluster_root`).
        timeout: seconds to wait until every node has joined and the cluster is yellow or green.
        settings: the resolved settings (default :func:`shopsearch.settings.load_settings`).
    Returns:
        The ClusterStatus once formed; ``started`` marks the nodes this call launched.
    Raises:
        ValueError: bad ``nodes``/``port``/``heap``.
        RuntimeError: ``opensearch_url`` is remote, another layout lives in ``root``, a port is taken by something
            else, or the cluster did not form in time (the message carries the log tail).
    Example:
        >>> start_cluster(3).urls  # doctest: +SKIP
        'http://127.0.0.1:9201,http://127.0.0.1:9202,http://127.0.0.1:9203'
    """
    settings = settings or load_settings()
    if remote_url(settings):
        raise RuntimeError(f"OPENSEARCH_URL={remote_url(settings)} names a remote cluster; unset it (or point it at "
                           f"127.0.0.1) to run a local one")
    heap = validate_heap(heap or DEFAULT_CLUSTER_HEAP)
    root = (root or default_cluster_root(settings)).resolve()
    recorded = read_layout(root)
    first = port if port is not None else (recorded.nodes[0].http_port if recorded else DEFAULT_FIRST_PORT)
    layout = cluster_layout(nodes, validate_port(first), root)
    home = default_home(settings).resolve()
    with _install_lock(home):
        if not is_installed(home):
            install_node(fetch_artifacts(node_artifacts(), cache_dir(settings.cache_dir)), home)
    with _install_lock(root):
        if recorded is not None and recorded != layout:
            raise RuntimeError(f"{root} holds a cluster of {len(recorded.nodes)} nodes on {recorded.urls}; stop it "
                               f"and delete {root} (its data) to start another layout, or set "
                               f"SHOPSEARCH_OPENSEARCH_CLUSTER_HOME elsewhere")
        _write_layout(layout)
        spawned: dict[str, subprocess.Popen] = {}
        for node in layout.nodes:
            folder = layout.node_dir(node)
            if _pid_from_file(folder) is not None:
                continue
            taken = [p for p in (node.http_port, node.transport_port) if _port_taken(p)]
            if taken:
                _terminate(spawned)
                raise RuntimeError(f"port {taken[0]} on 127.0.0.1 is taken, so {node.name} cannot start; stop that "
                                   f"service or pick other ports with --port")
            spawned[node.name] = spawn_node(home, folder, _prepare(home, layout, node, heap), [], settings)
        t0 = time.monotonic()
        _wait_formed(layout, spawned, timeout)
    log.info("local cluster %s formed (%d nodes, %d started) after %.1f s", CLUSTER_NAME, len(layout.nodes),
             len(spawned), time.monotonic() - t0)
    return cluster_status(root, settings=settings, started=frozenset(spawned))


def cluster_status(root: Path | None = None, settings: Settings | None = None,
                   started: frozenset[str] = frozenset()) -> ClusterStatus:
    """Each node's pid and whether it answers, and the cluster's health; no nodes when no cluster is in ``root``.

    Example:
        >>> [(n.name, n.up) for n in cluster_status().nodes]  # doctest: +SKIP
        [('shopsearch-node-1', True), ('shopsearch-node-2', False), ('shopsearch-node-3', True)]
    """
    root = (root or default_cluster_root(settings or load_settings())).resolve()
    layout = read_layout(root)
    if layout is None:
        return ClusterStatus(root, (), None, 0)
    states = []
    for node in layout.nodes:
        pid = _pid_from_file(layout.node_dir(node))
        up = pid is not None and _get_json(node.url, timeout=2.0) is not None
        states.append(NodeState(node.name, node.url, pid, up, node.name in started))
    health = _health_of(layout) if any(s.up for s in states) else None
    return ClusterStatus(root, tuple(states), (health or {}).get("status"), int((health or {}).get("number_of_nodes",
                                                                                                     0)))


def kill_node(name: str, root: Path | None = None, settings: Settings | None = None) -> int:
    """SIGKILL the JVM of node ``name`` (no shutdown at all: a crash, for fault tests) and wait until it is gone.

    Returns:
        The pid that was killed.
    Raises:
        ValueError: ``name`` is not a node of the cluster (the message lists them).
        RuntimeError: no cluster in ``root``, or that node is not running.
    Example:
        >>> kill_node("shopsearch-node-2")  # doctest: +SKIP
        48211
    """
    import psutil

    root = (root or default_cluster_root(settings or load_settings())).resolve()
    layout = read_layout(root)
    if layout is None:
        raise RuntimeError(f"no local cluster in {root}; start one with `shopsearch opensearch start --nodes 3`")
    folder = layout.node_dir(layout.node(name))
    pid = _pid_from_file(folder)
    if pid is None:
        raise RuntimeError(f"node {name} is not running (nothing to kill)")
    proc = psutil.Process(pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    forget_spawned(pid)
    _pid_file(folder).unlink(missing_ok=True)
    log.warning("killed OpenSearch node %s (pid %d) with SIGKILL", name, pid)
    return pid


def stop_cluster(root: Path | None = None, timeout: float = 60.0,
                 settings: Settings | None = None) -> list[tuple[str, int]]:
    """Stop every node of the local cluster: SIGTERM to all, wait up to ``timeout`` seconds, then SIGKILL.

    Data stays in ``root`` (a later start brings the same cluster back). Returns the (name, pid) pairs stopped.

    Example:
        >>> stop_cluster()  # doctest: +SKIP
        [('shopsearch-node-1', 48210), ('shopsearch-node-2', 48211), ('shopsearch-node-3', 48212)]
    """
    import psutil

    root = (root or default_cluster_root(settings or load_settings())).resolve()
    layout = read_layout(root)
    running: dict[str, psutil.Process] = {}
    for node in (layout.nodes if layout else ()):
        pid = _pid_from_file(layout.node_dir(node))
        if pid is not None:
            running[node.name] = psutil.Process(pid)
    for proc in running.values():
        proc.send_signal(signal.SIGTERM)
    _, alive = psutil.wait_procs(list(running.values()), timeout=timeout)
    for proc in alive:
        log.warning("OpenSearch pid %d ignored SIGTERM for %.0f s; sending SIGKILL", proc.pid, timeout)
        proc.kill()
    psutil.wait_procs(alive, timeout=10)
    for name, proc in running.items():
        forget_spawned(proc.pid)
        _pid_file(root / name).unlink(missing_ok=True)
    return [(name, proc.pid) for name, proc in running.items()]
