"""Index settings from plugin/config/index.toml, and the OpenSearch index body rendered from index.json."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

CONFIG_DIR = Path(__file__).parent / "config"


@dataclass(frozen=True)
class IndexConfig:
    """Tunable index settings; defaults match the commented values in index.toml."""

    hnsw_m: int = 16
    ef_construction: int = 100
    synonyms: tuple[str, ...] = ()
    chunk_size: int = 500
    max_chunk_bytes: int = 10_000_000
    max_retries: int = 5
    initial_backoff: float = 0.5


def load_index_config(path: str | Path | None = None) -> IndexConfig:
    """Read an index.toml (default: the packaged one) into an IndexConfig.

    Raises:
        FileNotFoundError: the file or its synonyms file is missing.
        ValueError: a value is out of range.

    >>> load_index_config().hnsw_m
    16
    """
    path = Path(path) if path else CONFIG_DIR / "index.toml"
    data = tomllib.loads(path.read_text())
    vec, ana, bulk = data.get("vectors", {}), data.get("analysis", {}), data.get("bulk", {})
    syn_file = ana.get("synonyms_file")
    synonyms: tuple[str, ...] = ()
    if syn_file:
        lines = (path.parent / syn_file).read_text().splitlines()
        synonyms = tuple(ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#"))
    cfg = IndexConfig(
        hnsw_m=int(vec.get("m", 16)),
        ef_construction=int(vec.get("ef_construction", 100)),
        synonyms=synonyms,
        chunk_size=int(bulk.get("chunk_size", 500)),
        max_chunk_bytes=int(bulk.get("max_chunk_bytes", 10_000_000)),
        max_retries=int(bulk.get("max_retries", 5)),
        initial_backoff=float(bulk.get("initial_backoff", 0.5)),
    )
    for name in ("hnsw_m", "ef_construction", "chunk_size", "max_chunk_bytes"):
        if getattr(cfg, name) <= 0:
            raise ValueError(f"{path}: {name} must be > 0, got {getattr(cfg, name)}")
    return cfg


def opensearch_index_body(config: IndexConfig, dims: int) -> dict[str, Any]:
    """The settings+mappings body for creating an OpenSearch index with ``dims``-dimensional vectors."""
    if dims <= 0:
        raise ValueError(f"dims must be > 0, got {dims}")
    body = json.loads((CONFIG_DIR / "index.json").read_text())
    body.pop("_comment", None)
    syn = body["settings"]["analysis"]["filter"]["product_synonyms"]
    syn["synonyms"] = list(config.synonyms) or ["shopsearch_placeholder_a, shopsearch_placeholder_b"]
    vec = body["mappings"]["properties"]["embedding"]
    vec["dimension"] = dims
    vec["method"]["parameters"] = {"m": config.hnsw_m, "ef_construction": config.ef_construction}
    return body
