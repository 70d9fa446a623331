"""``shopsearch opensearch start|stop|status``: the local OpenSearch 2.19.1 node (see ``plugin/localnode.py``)."""

from __future__ import annotations

import argparse
import sys

EXIT_NOT_RUNNING = 3  # like `systemctl status` / LSB: "program is not running"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``opensearch`` subcommand with its ``start``, ``stop`` and ``status`` actions."""
    p = subparsers.add_parser("opensearch", help="start/stop/inspect the local OpenSearch node",
                              description="Manage a local OpenSearch 2.19.1 node with k-NN. If $OPENSEARCH_URL names "
                                          "a remote cluster, `start` only checks it.")
    p.add_argument("action", choices=["start", "stop", "status"])
    p.add_argument("--port", type=int, default=None,
                   help="HTTP port on 127.0.0.1 (default: port of a local $OPENSEARCH_URL, else 9200)")
    p.add_argument("--heap", help="JVM heap for a new node, e.g. 512m or 2g (default: $SHOPSEARCH_OPENSEARCH_HEAP "
                                  "or 1g)")
    p.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for the node (default 180)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Do the chosen action; returns 0, 1 on failure, 3 when ``status`` finds no node."""
    from shopsearch.plugin import localnode
    from shopsearch.settings import load_settings

    settings = load_settings({"opensearch_heap": args.heap})
    if args.action == "start":
        try:
            node = localnode.ensure_node(port=args.port, timeout=args.timeout, settings=settings)
        except RuntimeError as exc:
            print(f"shopsearch opensearch start: error: {exc}", file=sys.stderr)
            return 1
        if node.pid is None and node.home is None:
            print(f"using remote OpenSearch at {node.url} (OPENSEARCH_URL); nothing started")
            return 0
        how = "started" if node.started else "already running"
        print(f"OpenSearch {localnode.OPENSEARCH_VERSION} {how} at {node.url}  pid={node.pid}")
        print(f"  home: {node.home}\n  logs: {node.log_path}")
        return 0
    if args.action == "stop":
        pid = localnode.stop_node(port=args.port, timeout=min(args.timeout, 60.0), settings=settings)
        print(f"stopped OpenSearch pid {pid}" if pid else "OpenSearch is not running (nothing to stop)")
        return 0
    status = localnode.node_status(port=args.port, settings=settings)
    if not status.running:
        print(f"OpenSearch is not running at {status.url}")
        return EXIT_NOT_RUNNING
    print(f"OpenSearch {status.version} at {status.url}  health={status.health}  pid={status.pid}")
    print(f"  plugins: {', '.join(status.plugins)}")
    return 0
