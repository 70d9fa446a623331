"""``shopsearch redis start|stop|status``: a local Redis for rate limits shared by gunicorn workers (api/limits.py).

Runs Debian's ``redis-server`` (``apt-get install redis-server``) on 127.0.0.1, in memory only (no snapshots: rate
counters are worth nothing after a restart), its pid file and log under ``<cache_dir>/redis``. Point the API at it
with ``SHOPSEARCH_REDIS_URL=redis://127.0.0.1:6379/0``. ``./run test`` starts it for the rate-limit tests.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

from .cli_args import EXIT_NOT_RUNNING

DEFAULT_PORT = 6379


class RedisStatus(NamedTuple):
    """What ``status`` found: the URL, whether it answers PING, and the server version."""

    url: str
    running: bool
    version: str | None


def _url(port: int) -> str:
    return f"redis://127.0.0.1:{port}/0"


def status(port: int = DEFAULT_PORT) -> RedisStatus:
    """Ask the Redis on 127.0.0.1:``port`` for its version (not running: ``running`` False)."""
    import redis

    client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1, socket_timeout=2)
    try:
        return RedisStatus(_url(port), True, str(client.info("server").get("redis_version")))
    except redis.RedisError:
        return RedisStatus(_url(port), False, None)
    finally:
        client.close()


def start(state_dir: Path, port: int = DEFAULT_PORT, timeout: float = 20.0) -> tuple[RedisStatus, bool]:
    """Start ``redis-server`` on 127.0.0.1:``port`` unless one answers there; returns (status, started).

    Raises:
        RuntimeError: redis-server is not installed, or did not answer within ``timeout`` seconds (the log's tail).
    """
    found = status(port)
    if found.running:
        return found, False
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed; install Debian's package: apt-get install redis-server")
    state_dir.mkdir(parents=True, exist_ok=True)
    log = state_dir / f"redis-{port}.log"
    subprocess.run([binary, "--bind", "127.0.0.1", "--port", str(port), "--daemonize", "yes",
                    "--pidfile", str(state_dir / f"redis-{port}.pid"), "--logfile", str(log),
                    "--dir", str(state_dir), "--save", "", "--appendonly", "no", "--protected-mode", "yes"],
                   check=True, capture_output=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = status(port)
        if found.running:
            return found, True
        time.sleep(0.1)
    tail = log.read_text()[-1500:] if log.exists() else "(no log)"
    raise RuntimeError(f"redis-server did not answer on port {port} within {timeout:.0f}s; log {log}:\n{tail}")


def stop(state_dir: Path, port: int = DEFAULT_PORT) -> int | None:
    """Stop the Redis this command started on ``port`` (by its pid file); returns its pid, or None."""
    import os
    import signal

    pidfile = state_dir / f"redis-{port}.pid"
    if not pidfile.exists():
        return None
    pid = int(pidfile.read_text().strip())
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pidfile.unlink(missing_ok=True)
        return None
    for _ in range(100):
        if not status(port).running:
            break
        time.sleep(0.1)
    return pid


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``redis`` subcommand with its ``start``, ``stop`` and ``status`` actions."""
    p = subparsers.add_parser("redis", help="start/stop/inspect a local Redis for shared rate limits",
                              description=__doc__.split("\n\n", 1)[1])
    p.add_argument("action", choices=["start", "stop", "status"])
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port on 127.0.0.1 (default {DEFAULT_PORT})")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Do the chosen action; returns 0, 1 on failure, 3 when ``status`` finds no server."""
    from shopsearch.settings import load_settings

    state_dir = load_settings().cache_dir / "redis"
    if args.action == "start":
        try:
            found, started = start(state_dir, args.port)
        except RuntimeError as exc:
            print(f"shopsearch redis start: error: {exc}", file=sys.stderr)
            return 1
        print(f"Redis {found.version} {'started' if started else 'already running'} at {found.url}")
        return 0
    if args.action == "stop":
        pid = stop(state_dir, args.port)
        print(f"stopped Redis pid {pid}" if pid else "no Redis started by shopsearch on that port (nothing to stop)")
        return 0
    found = status(args.port)
    if not found.running:
        print(f"Redis is not running at {found.url}")
        return EXIT_NOT_RUNNING
    print(f"Redis {found.version} at {found.url}")
    return 0
