"""Helpers for the page tests: the app with injected searcher and engine, tiny judgments, and the app served over
HTTP in a thread."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from .conftest import ALIAS

# Hand-made judgments for the tiny catalog: "lamp" is judged, "garden hose" is a known query without grades.
QRELS = """q1 0 p1 3
q1 0 p2 2
q1 0 p3 0
q1 0 p7 1
q1 0 p8 0
q2 0 p4 3
"""
QUERIES = "q1\tlamp\nq2\tCordless Drill\nq3\tgarden hose\n"


def write_judgments(folder: Path) -> tuple[Path, Path]:
    """Write the tiny qrels and queries into ``folder``; returns (qrels, queries)."""
    folder.mkdir(parents=True, exist_ok=True)
    qrels, queries = folder / "qrels.txt", folder / "queries.tsv"
    qrels.write_text(QRELS, encoding="utf-8")
    queries.write_text(QUERIES, encoding="utf-8")
    return qrels, queries


def make_pages_app(searcher: Any, engine: Any, tmp: Path, **flask_config: Any):
    """The API app (create_app registers the storefront and console pages) over ``searcher`` and ``engine``, with
    its event log and home under ``tmp``; ``flask_config`` adds or overrides settings."""
    from shopsearch.api.app import create_app

    return create_app({"TESTING": True, "searcher": searcher, "engine_instance": engine, "index": ALIAS,
                       "engine": "embedded", "events_dir": str(tmp / "events"), "home": str(tmp), **flask_config})


@contextmanager
def serve(app) -> Iterator[str]:
    """Serve ``app`` on 127.0.0.1 at a free port in a thread; yields the base URL, shuts down on exit."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="pages-test-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
