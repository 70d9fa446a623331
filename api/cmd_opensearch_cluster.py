"""``shopsearch opensearch start|stop|status --nodes N`` and ``opensearch kill-node NAME``: the local multi-node
cluster (see ``plugin/localcluster.py``); ``cmd_opensearch`` hands these over."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from .cli_args import EXIT_NOT_RUNNING

if TYPE_CHECKING:
    from shopsearch.plugin.localcluster import ClusterStatus
    from shopsearch.settings import Settings


def _print_status(status: ClusterStatus) -> None:
    """The cluster's health, then one line per node (name, URL, pid, up/down), then the URL to use."""
    print(f"cluster health={status.health or 'none'}  nodes joined={status.joined}/{len(status.nodes)}  "
          f"root={status.root}")
    for node in status.nodes:
        note = "  (started)" if node.started else ""
        print(f"  {node.name:<19} {node.url:<23} pid={node.pid or '-':<8} {'up' if node.up else 'down'}{note}")
    print(f"  OPENSEARCH_URL={status.urls}")


def run_cluster(args: argparse.Namespace, settings: Settings) -> int:
    """Do the chosen action on the local cluster; returns 0, 1 on failure, 3 when ``status`` finds no node up.

    Raises:
        ValueError: ``--nodes`` outside 2..9 for ``start``, ``kill-node`` without a name or an unknown one,
            ``--secure`` (the cluster has no security plugin).
    """
    from shopsearch.plugin import localcluster

    if getattr(args, "secure", False):
        raise ValueError("--secure is not allowed with --nodes or kill-node: the local cluster runs without the "
                         "security plugin (docker/compose.cluster.yaml shows a secured one)")
    if args.action == "kill-node":
        if not args.name:
            raise ValueError("kill-node needs the node's NAME, e.g. `shopsearch opensearch kill-node "
                             "shopsearch-node-2` (`opensearch status --nodes 3` lists them)")
        try:
            pid = localcluster.kill_node(args.name, settings=settings)
        except RuntimeError as exc:
            print(f"shopsearch opensearch kill-node: error: {exc}", file=sys.stderr)
            return 1
        print(f"killed {args.name} (pid {pid}) with SIGKILL; `shopsearch opensearch start --nodes N` restarts it")
        return 0
    if args.action == "start":
        try:
            status = localcluster.start_cluster(args.nodes, port=args.port, heap=args.heap, timeout=args.timeout,
                                                settings=settings)
        except RuntimeError as exc:
            print(f"shopsearch opensearch start: error: {exc}", file=sys.stderr)
            return 1
        print(f"OpenSearch {localcluster.OPENSEARCH_VERSION} local cluster {localcluster.CLUSTER_NAME}: "
              f"{sum(n.started for n in status.nodes)} of {len(status.nodes)} nodes started")
        _print_status(status)
        return 0
    if args.action == "stop":
        stopped = localcluster.stop_cluster(timeout=min(args.timeout, 60.0), settings=settings)
        for name, pid in stopped:
            print(f"stopped {name} pid {pid}")
        if not stopped:
            print("the local cluster is not running (nothing to stop)")
        return 0
    status = localcluster.cluster_status(settings=settings)
    if not status.nodes:
        print(f"no local cluster in {status.root}; start one with `shopsearch opensearch start --nodes 3`")
        return EXIT_NOT_RUNNING
    _print_status(status)
    return 0 if status.running else EXIT_NOT_RUNNING
