"""Helpers for the page tests: an app with the pages blueprint, a searcher with autocomplete, tiny judgments,
and the app served over HTTP in a thread."""

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


class Suggesting:
    """The real searcher plus ``suggest`` from the engine (used until HybridSearcher has its own)."""

    def __init__(self, inner: Any, engine: Any, index: str = ALIAS) -> None:
        self._inner, self._engine, self._index = inner, engine, index

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def suggest(self, prefix: str, size: int) -> list[str]:
        return self._engine.suggest(self._index, prefix, size)


def with_suggest(searcher: Any, engine: Any) -> Any:
    """``searcher`` itself when it autocompletes, else wrapped in :class:`Suggesting`."""
    return searcher if callable(getattr(searcher, "suggest", None)) else Suggesting(searcher, engine)


def make_pages_app(searcher: Any, engine: Any, tmp: Path, **flask_config: Any):
    """The API app with the pages blueprint registered (if create_app does not register it yet)."""
    from shopsearch.api import routes_pages
    from shopsearch.api.app import create_app

    app = create_app({"TESTING": True, "searcher": searcher, "engine_instance": engine, "index": ALIAS,
                      "engine": "embedded", "events_dir": str(tmp / "events"), "home": str(tmp), **flask_config})
    if "pages" not in app.blueprints:
        app.register_blueprint(routes_pages.bp)
    return app


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
