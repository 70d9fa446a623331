"""``shopsearch serve``: run the search API under gunicorn (threaded workers, graceful shutdown)."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from shopsearch.settings import ENGINES, QUERY_ENCODERS

HELP = """\
Serve the search API (GET /search, /suggest, /products/<id>, /products/<id>/similar, /recommendations, POST
/events, /healthz, /readyz, /metrics, /openapi.json), the storefront page (/) and the relevance console (/console)
with gunicorn.

Settings layer as: defaults < TOML file (--config or $SHOPSEARCH_CONFIG) < environment ($SHOPSEARCH_ENGINE,
$SHOPSEARCH_INDEX, $OPENSEARCH_URL, $SHOPSEARCH_MODEL, $SHOPSEARCH_HOME, ...) < these options; every option is in
docs/configuration.md, and `shopsearch config` shows the resolved values.
Each worker loads the bi-encoder once at boot; threads serve requests concurrently. SIGTERM or Ctrl-C stops
accepting connections and lets in-flight requests finish (up to --graceful-timeout seconds).
With --workers > 1 each worker keeps its own /metrics counters; use one worker with more threads for exact totals.
Overload: each worker runs at most --threads minus 1 searches at once (search_max_inflight) and answers the
excess 503 with Retry-After at once; every /search has a deadline (search_deadline_ms, default 1000).
Security (docs/security.md): with no API keys only a loopback --host is allowed (`shopsearch keys create`); rate
limits count per worker unless $SHOPSEARCH_REDIS_URL names a Redis that all workers share.
The equivalent plain gunicorn line: gunicorn -k gthread --threads 8 shopsearch.api.wsgi:app
"""

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``serve`` subcommand."""
    p = subparsers.add_parser("serve", help="serve the search API over HTTP", description=HELP,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--threads", type=int, default=8, help="request threads per worker (default 8)")
    p.add_argument("--engine", choices=ENGINES, help="default: config / $SHOPSEARCH_ENGINE")
    p.add_argument("--index", help="index or alias to search (default: config / $SHOPSEARCH_INDEX / products)")
    p.add_argument("--url", dest="opensearch_url", help="OpenSearch URL (default $OPENSEARCH_URL)")
    p.add_argument("--model", help="query bi-encoder name or directory (must match the index's vectors)")
    p.add_argument("--query-encoder", dest="query_encoder", choices=QUERY_ENCODERS,
                   help="query embedding runtime (default auto: ONNX Runtime on CPU, torch fp16 on CUDA)")
    p.add_argument("--config", help="TOML settings file (default $SHOPSEARCH_CONFIG)")
    p.add_argument("--engine-timeout", dest="engine_timeout_s", type=float,
                   help="seconds per engine request before answering 503 (default 5)")
    p.add_argument("--graceful-timeout", type=int, default=20,
                   help="seconds in-flight requests get to finish on shutdown (default 20)")
    p.add_argument("--access-log", action="store_true", help="log every request to stderr")
    p.set_defaults(run=run)


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The settings the command line sets (unset options fall through to file/env/defaults)."""
    names = ("config", "engine", "index", "opensearch_url", "model", "engine_timeout_s", "query_encoder")
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def _check(args: argparse.Namespace) -> None:
    for name, lo in (("workers", 1), ("threads", 1), ("port", 0)):
        if getattr(args, name) < lo:
            raise ValueError(f"--{name} must be >= {lo}; got {getattr(args, name)}")
    if args.port > 65535:
        raise ValueError(f"--port must be <= 65535; got {args.port}")
    if args.graceful_timeout <= 0:
        raise ValueError(f"--graceful-timeout must be > 0; got {args.graceful_timeout}")


def check_exposure(host: str, cfg: Any) -> None:
    """Secure by default: refuse a non-loopback ``host`` while no API key exists; warn once in local mode.

    Raises:
        ValueError: a non-loopback host without keys, or a storefront_key that is not an active search key.
    """
    from .auth import CREATE_KEY_HINT, LOCAL_MODE_WARNING, is_loopback, storefront_key
    from .keys import KeyStore

    store = KeyStore(cfg.keys_file)
    if store.configured():
        storefront_key(cfg, store)
        return
    if not is_loopback(host):
        raise ValueError(f"--host {host} is not a loopback address and no API keys are configured (keys file "
                         f"{cfg.keys_file}): {CREATE_KEY_HINT}, or serve on 127.0.0.1")
    print(f"shopsearch serve: warning: {LOCAL_MODE_WARNING}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    """Validate the settings, then run gunicorn until stopped; returns gunicorn's exit code."""
    from gunicorn.app.base import BaseApplication

    from shopsearch.settings import load_settings

    from .app import create_app
    from .request_guards import GUNICORN_MAX_REQUEST_LINE

    _check(args)
    overrides = overrides_from_args(args)  # each worker resolves the same layers (the file is named here)
    cfg = load_settings(overrides)  # fail fast (exit 2) on a bad setting, before any worker starts
    check_exposure(args.host, cfg)
    if cfg.search_max_inflight == 0:
        # One thread stays free to answer the excess 503 at once (api/overload.py) instead of leaving it queued.
        overrides["search_max_inflight"] = max(1, args.threads - 1)

    def post_worker_init(worker) -> None:
        # Engine, searcher, query encoder, speller and the profiles' models load at boot, not on the first
        # request; an engine that is down now only means /readyz says 503 until it is back.
        worker.wsgi.extensions["shopsearch"].warm()

    def worker_exit(server, worker) -> None:
        wsgi = getattr(worker, "wsgi", None)
        svc = wsgi.extensions.get("shopsearch") if wsgi is not None else None
        if svc is not None:
            svc.close()  # a last drain of the UBI spool, then the engine

    def when_ready(server) -> None:
        addrs = ", ".join(f"http://{host}:{port}" for host, port in
                          (s.sock.getsockname()[:2] for s in server.LISTENERS))
        print(f"shopsearch serve: listening on {addrs} (engine={cfg.engine}, index={cfg.index}, "
              f"workers={args.workers}, threads={args.threads})", flush=True)

    options = {
        "bind": f"{args.host}:{args.port}",
        "workers": args.workers,
        "worker_class": "shopsearch.api.gunicorn_worker.JsonErrorWorker",  # gthread, errors as JSON
        "threads": args.threads,
        "graceful_timeout": max(1, round(args.graceful_timeout)),
        "timeout": 120,  # a worker loading the model at boot must not be killed as hung
        "keepalive": 5,
        # gunicorn's longest request line, so URLs over the app's limit get its JSON 414 (api/request_guards.py);
        # longer lines, and oversized headers, get the worker's JSON 414/431 (api/gunicorn_worker.py)
        "limit_request_line": GUNICORN_MAX_REQUEST_LINE,
        "accesslog": "-" if args.access_log else None,
        "errorlog": "-",
        "loglevel": "info",
        "proc_name": "shopsearch-serve",
        "post_worker_init": post_worker_init,
        "worker_exit": worker_exit,
        "when_ready": when_ready,
    }

    class ShopsearchServer(BaseApplication):
        """gunicorn configured from the options above; each worker builds its own app."""

        def load_config(self) -> None:
            for key, value in options.items():
                if value is not None:
                    self.cfg.set(key, value)

        def load(self):
            return create_app(overrides)

    ShopsearchServer(prog="shopsearch serve").run()
    return 0
