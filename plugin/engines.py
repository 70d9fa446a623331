"""Open an engine by name: ``opensearch`` (a real cluster) or ``embedded`` (in-process, on disk)."""

from __future__ import annotations

import os
from pathlib import Path

from .engine import Engine
from .index_config import IndexConfig

ENGINES = ("opensearch", "embedded")


def default_embedded_root() -> Path:
    """Where the embedded engine keeps its indices: $SHOPSEARCH_HOME/embedded (default ~/.shopsearch)."""
    return Path(os.environ.get("SHOPSEARCH_HOME", Path.home() / ".shopsearch")) / "embedded"


def open_engine(kind: str, *, url: str | None = None, root: str | Path | None = None,
                config: IndexConfig | None = None, timeout: float = 10.0, max_retries: int = 2) -> Engine:
    """Open an engine.

    Args:
        kind: "opensearch" or "embedded".
        url: OpenSearch URL (default $OPENSEARCH_URL or http://127.0.0.1:9200).
        root: the embedded engine's directory (default :func:`default_embedded_root`).
        config: index settings (default plugin/config/index.toml).
        timeout: per-request timeout in seconds (OpenSearch).
        max_retries: retries on timeouts/502/503/504 (OpenSearch); 0 bounds an outage's answer by ``timeout``.

    Raises:
        ValueError: unknown ``kind``.

    >>> open_engine("embedded", root="/tmp/ss-doc")  # doctest: +SKIP
    """
    if kind == "opensearch":
        from .opensearch_engine import OpenSearchEngine

        return OpenSearchEngine(url=url, config=config, timeout=timeout, max_retries=max_retries)
    if kind == "embedded":
        from .embedded_engine import EmbeddedEngine

        return EmbeddedEngine(Path(root) if root else default_embedded_root(), config=config)
    raise ValueError(f"engine must be one of {', '.join(ENGINES)}; got {kind!r}")
