"""``shopsearch opensearch start|stop|status|certs``: the local OpenSearch 2.19.1 node (see ``plugin/localnode.py``)
and, with ``--secure``, the secured one (``plugin/localnode_security.py``)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .cli_args import EXIT_NOT_RUNNING

if TYPE_CHECKING:
    from shopsearch.settings import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``opensearch`` subcommand with its ``start``, ``stop`` and ``status`` actions."""
    p = subparsers.add_parser("opensearch", help="start/stop/inspect the local OpenSearch node",
                              description="Manage a local OpenSearch 2.19.1 node with k-NN. If $OPENSEARCH_URL names "
                                          "a remote cluster, `start` only checks it.")
    p.add_argument("action", choices=["start", "stop", "status", "certs", "kill-node"])
    p.add_argument("name", nargs="?", help="kill-node: the cluster node to SIGKILL, e.g. shopsearch-node-2")
    p.add_argument("--nodes", type=int, default=1,
                   help="start/stop/status: 2-9 = the local cluster (plugin/localcluster.py; its own folder, HTTP "
                        "ports --port (default 9201) onwards, heap --heap or 512m per node); 1 = the single node")
    p.add_argument("--port", type=int, default=None,
                   help="HTTP port on 127.0.0.1 (default: port of a local $OPENSEARCH_URL, else 9200)")
    p.add_argument("--heap", help="JVM heap for a new node, e.g. 512m or 2g (default: $SHOPSEARCH_OPENSEARCH_HEAP "
                                  "or 1g)")
    p.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for the node (default 180)")
    p.add_argument("--secure", action="store_true",
                   help="the secured node: security plugin, HTTPS with its own CA, basic auth (own home, port 9250)")
    p.add_argument("--out", type=Path, help="certs: folder for the CA, node and admin certificates (PEM)")
    p.add_argument("--host", action="append", dest="hosts",
                   help="certs: a name clients use for the node (repeat; default localhost and 127.0.0.1)")
    p.add_argument("--owner", help="certs: UID[:GID] to own the files (the node's user; 1000 in the official image)")
    p.add_argument("--internal-users", action="store_true",
                   help="certs: also write internal_users.yml for opensearch_user (default admin) with a bcrypt "
                        "hash of opensearch_password ($OPENSEARCH_PASSWORD)")
    p.add_argument("--force", action="store_true", help="certs: replace certificates already in --out")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Do the chosen action; returns 0, 1 on failure, 3 when ``status`` finds no node."""
    from shopsearch.plugin import localnode
    from shopsearch.settings import load_settings

    settings = load_settings({"opensearch_heap": args.heap})
    if args.action == "certs":
        return _certs(args, settings)
    if args.nodes != 1 or args.action == "kill-node":
        from .cmd_opensearch_cluster import run_cluster

        return run_cluster(args, settings)
    if args.action == "start":
        try:
            node = localnode.ensure_node(port=args.port, timeout=args.timeout, settings=settings,
                                         secure=args.secure)
        except RuntimeError as exc:
            print(f"shopsearch opensearch start: error: {exc}", file=sys.stderr)
            return 1
        if node.pid is None and node.home is None:
            print(f"using remote OpenSearch at {node.url} (OPENSEARCH_URL); nothing started")
            return 0
        how = "started" if node.started else "already running"
        print(f"OpenSearch {localnode.OPENSEARCH_VERSION} {how} at {node.url}  pid={node.pid}")
        print(f"  home: {node.home}\n  logs: {node.log_path}")
        if args.secure:
            _print_access(node.home, node.url)
        return 0
    if args.action == "stop":
        pid = localnode.stop_node(port=args.port, timeout=min(args.timeout, 60.0), settings=settings,
                                  secure=args.secure)
        print(f"stopped OpenSearch pid {pid}" if pid else "OpenSearch is not running (nothing to stop)")
        return 0
    status = localnode.node_status(port=args.port, settings=settings, secure=args.secure)
    if not status.running:
        print(f"OpenSearch is not running at {status.url}")
        return EXIT_NOT_RUNNING
    print(f"OpenSearch {status.version} at {status.url}  health={status.health}  pid={status.pid}  "
          f"security={'on' if status.security else 'off'}")
    if status.security:
        print(f"  user: {status.user}\n  CA:   {status.ca_certs or '(system trust store)'}")
    print(f"  plugins: {', '.join(status.plugins)}")
    return 0


def _print_access(home: Path, url: str) -> None:
    """How to point shopsearch at the secured node (the password is shown as the file that holds it)."""
    from shopsearch.plugin.localnode_security import PASSWORD_FILE, access_for

    access = access_for(home, int(url.rsplit(":", 1)[1]))
    secret = home / "secrets" / PASSWORD_FILE
    print(f"  security: on (HTTPS, basic auth)\n  user: {access.user}  password: in {secret} (mode 0600)\n"
          f"  CA:   {access.ca_certs}\n  use it:\n    export OPENSEARCH_URL={url} OPENSEARCH_USER={access.user} "
          f"OPENSEARCH_CA_CERTS={access.ca_certs}\n    export OPENSEARCH_PASSWORD=\"$(cat {secret})\"")


def _certs(args: argparse.Namespace, settings: Settings) -> int:
    """``certs --out DIR``: a CA with node and admin certificates (and optionally internal_users.yml) for a node."""
    from shopsearch.plugin.localnode_security import internal_users_yml, write_certs

    if args.out is None:
        raise ValueError("certs needs --out DIR (e.g. --out docker/certs)")
    owner = None
    if args.owner:
        uid, _, gid = args.owner.partition(":")
        if not uid.isdigit() or (gid and not gid.isdigit()):
            raise ValueError(f"--owner={args.owner!r} is not allowed; use UID or UID:GID (numbers), e.g. 1000:1000")
        owner = (int(uid), int(gid or uid))
    files = write_certs(args.out, tuple(args.hosts or ("localhost", "127.0.0.1")), owner=owner, force=args.force)
    print(f"certificates in {files.folder}: CA {files.ca.name}, node {files.node.name} (+ key), "
          f"admin {files.admin.name} (+ key); keys are mode 0600")
    if args.internal_users:
        if settings.opensearch_password is None:
            raise ValueError("--internal-users needs opensearch_password ($OPENSEARCH_PASSWORD): the admin password")
        users = files.folder / "internal_users.yml"
        users.write_text(internal_users_yml(settings.opensearch_user or "admin",
                                            settings.opensearch_password.get_secret_value()))
        if owner:
            os.chown(users, *owner)
        print(f"internal users in {users} (bcrypt hash, no password)")
    return 0
