"""Open an engine by name: ``opensearch`` (a real cluster) or ``embedded`` (in-process, on disk)."""

from __future__ import annotations

from pathlib import Path

from shopsearch.settings import ENGINES, Settings, load_settings

from .connection import JOB_TIMEOUT_S
from .engine import Engine
from .index_config import IndexConfig


def open_engine(kind: str, *, url: str | None = None, root: str | Path | None = None,
                config: IndexConfig | None = None, timeout: float = JOB_TIMEOUT_S, max_retries: int = 2,
                retry_on_timeout: bool = True, settings: Settings | None = None) -> Engine:
    """Open an engine.

    Args:
        kind: "opensearch" or "embedded".
        url: OpenSearch URL (default: the settings' ``opensearch_url``).
        root: the embedded engine's directory (default: the settings' ``embedded_dir``).
        config: index settings (default plugin/config/index.toml).
        timeout: per-request timeout in seconds (OpenSearch).
        max_retries: retries on connection errors/timeouts/502/503/504, each on the next node (OpenSearch).
        retry_on_timeout: False: a timeout is not retried, so a hung node's answer is bounded by ``timeout``.
        settings: the resolved settings (default :func:`shopsearch.settings.load_settings`).

    Raises:
        ValueError: unknown ``kind``.

    >>> open_engine("embedded", root="/tmp/ss-doc")  # doctest: +SKIP
    """
    if kind not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}; got {kind!r}")
    settings = settings or load_settings()
    if kind == "opensearch":
        from .opensearch_engine import OpenSearchEngine

        return OpenSearchEngine(url=url, settings=settings, config=config, timeout=timeout,
                                max_retries=max_retries, retry_on_timeout=retry_on_timeout)
    from .embedded_engine import EmbeddedEngine

    return EmbeddedEngine(Path(root) if root else settings.embedded_dir, config=config)
