"""Cluster and index health as typed records: what a rebuild waits for and what /readyz reports.

The functions here are pure (they read ``_cluster/health`` answers); :class:`~.opensearch_engine.OpenSearchEngine`
does the requests, and :func:`probe_hosts` asks each configured node directly whether it answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from shopsearch.indexer.sink import IndexHealth

ONE_NODE_NOTE = "yellow: a one-node cluster has no other node for the replicas"


@dataclass(frozen=True)
class NodeAnswer:
    """Whether the configured node ``url`` (credentials removed) answered, and its error when not."""

    url: str
    ok: bool
    error: str = ""


@dataclass(frozen=True)
class ClusterHealth:
    """The cluster's health as /readyz reports it: status, node count, unassigned shards and each host's answer."""

    status: str
    nodes: int
    unassigned_shards: int
    hosts: tuple[NodeAnswer, ...]

    def as_json(self) -> dict[str, Any]:
        """The JSON object /readyz returns under ``cluster``."""
        return {"status": self.status, "nodes": self.nodes, "unassigned_shards": self.unassigned_shards,
                "hosts": [{"url": h.url, "ok": h.ok, **({"error": h.error} if h.error else {})} for h in self.hosts]}


def index_health(health: Mapping[str, Any]) -> IndexHealth:
    """An IndexHealth from a ``_cluster/health?index=...&wait_for_status=green`` answer.

    >>> index_health({"status": "yellow", "number_of_data_nodes": 1, "timed_out": True}).ready
    True
    >>> index_health({"status": "yellow", "number_of_data_nodes": 3, "timed_out": True}).ready
    False
    """
    status = str(health.get("status", "red"))
    nodes = int(health.get("number_of_data_nodes", health.get("number_of_nodes", 0)) or 0)
    if status == "green":
        return IndexHealth(status, nodes, True)
    if status == "yellow" and nodes <= 1:
        return IndexHealth(status, nodes, True, ONE_NODE_NOTE)
    unassigned = health.get("unassigned_shards", "?")
    return IndexHealth(status, nodes, False, f"{status} with {unassigned} unassigned shards on {nodes} data nodes")


def cluster_health(health: Mapping[str, Any], hosts: Iterable[NodeAnswer]) -> ClusterHealth:
    """A ClusterHealth from a ``_cluster/health`` answer and the per-host probes.

    >>> cluster_health({"status": "green", "number_of_nodes": 3, "unassigned_shards": 0}, []).status
    'green'
    """
    return ClusterHealth(status=str(health.get("status", "red")), nodes=int(health.get("number_of_nodes", 0) or 0),
                         unassigned_shards=int(health.get("unassigned_shards", 0) or 0), hosts=tuple(hosts))


def probe_hosts(connections: Iterable[Any], timeout: float) -> list[NodeAnswer]:
    """Ask each opensearch-py Connection for ``GET /`` directly (bypassing the pool's dead-node bookkeeping)."""
    from .connection import display_url

    answers = []
    for conn in connections:
        url = display_url(conn.host)
        try:
            conn.perform_request("GET", "/", timeout=timeout)
            answers.append(NodeAnswer(url, True))
        except Exception as exc:  # noqa: BLE001 - any failure means "this node does not answer"
            answers.append(NodeAnswer(url, False, type(exc).__name__))
    return answers
