"""Closed-loop load on a real ``shopsearch serve``: throughput, latency percentiles and errors per concurrency level.

Starts ``shopsearch serve`` (gunicorn) on the crowdflower index once with rate limits off and once with them on
(counters in Redis), and at each level runs N client threads that each send ``GET /search?q=<dev query>&size=12``
as soon as the previous answer arrived (closed loop), for ``--duration`` seconds. One table at the end: requests per
second, p50/p95/p99 of every answer, answers by status and error code (``timeout``: no answer within
``--timeout`` s; ``conn``: connection refused or reset) and the p99 of the 429/503 answers alone, which shows that an overloaded API
says "retry later" quickly instead of holding the client until it times out.

    python bench/load.py [--engine opensearch] [--index crowdflower] [--levels 1,8,32,64] [--duration 15]
                         [--modes off,on] [--workers 2] [--threads 8] [--redis-url redis://127.0.0.1:6379/0]

Settings come from the environment as for any ``shopsearch`` command (``SHOPSEARCH_HOME`` holds the embedded index,
the ONNX export and the model cache; ``OPENSEARCH_URL``); the server runs in local mode (no API keys in that home:
loopback clients need none), so the budget that binds is the per-IP one (every client thread is 127.0.0.1). The
clients run in this process (Python threads): at 64 clients on a small machine they compete with the server for
CPU, so the figures are a lower bound on what the server does alone. Print the load average with the table.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # noqa: E402 - run as a script from anywhere

from shopsearch.judgments import read_queries as judged_queries  # noqa: E402
from shopsearch.settings import SHARED_DATA, child_environment, load_settings  # noqa: E402

DEFAULT_QUERIES = Path(load_settings().data_dir or SHARED_DATA) / "crowdflower" / "queries-dev.tsv"
SHED = ("429", "503")  # the "come back later" answers


@dataclass
class Level:
    """What one concurrency level saw."""

    mode: str
    clients: int
    seconds: float
    latencies_ms: list[float] = field(default_factory=list)
    shed_ms: list[float] = field(default_factory=list)  # latencies of 429/503 answers only
    statuses: Counter[str] = field(default_factory=Counter)

    def row(self) -> list[str]:
        lat = np.asarray(self.latencies_ms) if self.latencies_ms else np.asarray([float("nan")])
        p50, p95, p99 = np.percentile(lat, [50, 95, 99])
        shed = f"{np.percentile(self.shed_ms, 99):.0f}" if self.shed_ms else "-"
        errors = ", ".join(f"{k}:{v}" for k, v in sorted(self.statuses.items()) if k != "200") or "-"
        total = sum(self.statuses.values())
        return [self.mode, str(self.clients), f"{total / self.seconds:.1f}", f"{p50:.0f}", f"{p95:.0f}",
                f"{p99:.0f}", f"{max(lat):.0f}", str(self.statuses.get("200", 0)), errors, shed]


def read_queries(path: Path) -> list[str]:
    """The query texts of a ``qid<TAB>query`` file (shopsearch.judgments' reader: UTF-8, each line checked)."""
    out = [q.text for q in judged_queries(path)]
    if not out:
        raise ValueError(f"--queries {path}: no qid<TAB>query lines")
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def served(args: argparse.Namespace, rate_limits: bool, log_path: Path) -> Iterator[str]:
    """``shopsearch serve`` with rate limits on or off, until the block ends; yields its base URL."""
    port = free_port()
    options = {"rate_limits": rate_limits, "redis_url": args.redis_url if rate_limits else None}
    env = child_environment(options, drop=("SHOPSEARCH_REDIS_URL",))
    cmd = [sys.executable, "-m", "shopsearch.api.cli", "serve", "--port", str(port), "--engine", args.engine,
           "--index", args.index, "--workers", str(args.workers), "--threads", str(args.threads)]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"serve exited with {proc.returncode}; see {log_path}")
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"serve was not ready within 300 s; see {log_path}")
            time.sleep(0.5)
        yield base
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_level(base: str, queries: list[str], mode: str, clients: int, duration: float, timeout: float) -> Level:
    """``clients`` closed-loop clients for ``duration`` seconds; each starts at its own offset in the queries."""
    level = Level(mode, clients, duration)
    lock = threading.Lock()
    stop_at = time.monotonic() + duration

    def client(i: int) -> None:
        session = requests.Session()
        n = i * 7
        while time.monotonic() < stop_at:
            q = queries[n % len(queries)]
            n += 1
            t0 = time.perf_counter()
            try:
                resp = session.get(f"{base}/search", params={"q": q, "size": "12"}, timeout=timeout)
                status = str(resp.status_code)
                if resp.status_code != 200:  # which error: "503 overloaded", "503 deadline_exceeded", "429 ..."
                    with contextlib.suppress(ValueError, KeyError, TypeError):
                        status += " " + resp.json()["error"]["code"]
            except requests.Timeout:
                status = "timeout"
            except requests.ConnectionError:
                status = "conn"
            ms = (time.perf_counter() - t0) * 1000
            with lock:
                level.statuses[status] += 1
                level.latencies_ms.append(ms)
                if status.split()[0] in SHED:
                    level.shed_ms.append(ms)
        session.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return level


def table(levels: list[Level]) -> str:
    """The levels as one aligned text table."""
    head = ["rate limits", "clients", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms", "200", "other answers",
            "429/503 p99 ms"]
    rows = [head, *(lv.row() for lv in levels)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.rjust(w) if i and i != 8 else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
                     for r in rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engine", default="opensearch", choices=("opensearch", "embedded"))
    ap.add_argument("--index", default="crowdflower", help="index or alias (default crowdflower)")
    ap.add_argument("--queries", default=str(DEFAULT_QUERIES), help="qid<TAB>query file (default crowdflower dev)")
    ap.add_argument("--levels", default="1,8,32,64", help="concurrent clients per level (default 1,8,32,64)")
    ap.add_argument("--duration", type=float, default=15.0, help="seconds per level (default 15)")
    ap.add_argument("--modes", default="off,on", help="rate limits off, on, or both (default off,on)")
    ap.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2)")
    ap.add_argument("--threads", type=int, default=8, help="threads per worker (default 8)")
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/0",
                    help="Redis for the rate-limit counters when on (default redis://127.0.0.1:6379/0)")
    ap.add_argument("--timeout", type=float, default=10.0, help="client timeout per request, s (default 10)")
    ap.add_argument("--warmup", type=int, default=20,
                    help="warm-up before the first level, unreported: one client for WARMUP/20 seconds, at least 1 "
                         "(default 20: about 20 requests at a cold start's pace)")
    ap.add_argument("--log-dir", default=None, help="where the server logs go (default: a temporary folder)")
    args = ap.parse_args(argv)
    levels = [int(x) for x in args.levels.split(",")]
    modes = [m.strip() for m in args.modes.split(",")]
    if not levels or min(levels) < 1:
        raise SystemExit(f"--levels must be positive integers; got {args.levels!r}")
    if set(modes) - {"off", "on"}:
        raise SystemExit(f"--modes must be off, on or off,on; got {args.modes!r}")
    queries = read_queries(Path(args.queries))
    import tempfile

    log_dir = Path(args.log_dir or tempfile.mkdtemp(prefix="shopsearch-load-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {len(queries)} queries; "
          f"engine={args.engine} index={args.index} workers={args.workers} threads={args.threads} "
          f"{args.duration:g} s per level; server logs in {log_dir}", flush=True)
    results: list[Level] = []
    for mode in modes:
        with served(args, mode == "on", log_dir / f"serve-limits-{mode}.log") as base:
            run_level(base, queries, mode, 1, max(1.0, args.warmup / 20), args.timeout)  # warm-up, not reported
            for n in levels:
                results.append(run_level(base, queries, mode, n, args.duration, args.timeout))
                print(f"  limits {mode}, {n} clients: {sum(results[-1].statuses.values())} requests", flush=True)
    print()
    print(table(results))
    print(f"\nload average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
