"""Index settings from plugin/config/index.toml, and the OpenSearch index body rendered from index.json.

index.toml is validated by the pydantic model :class:`IndexFile` (strict types, unknown keys are errors naming
the file, key, value and what is allowed), which also produces its JSON Schema, docs/schemas/index.schema.json
(written by ``shopsearch schema``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from shopsearch.config_files import FILE_MODEL, file_schema, read_toml, validate_file

CONFIG_DIR = Path(__file__).parent / "config"


class VectorSettings(BaseModel):
    """The HNSW graph of the embedding field (lucene engine)."""

    model_config = FILE_MODEL
    m: int = Field(16, gt=0, description="Graph degree: higher, better recall, bigger index, slower writes")
    ef_construction: int = Field(100, gt=0, description="Candidate list size while building the graph")


class AnalysisSettings(BaseModel):
    """Text analysis."""

    model_config = FILE_MODEL
    synonyms_file: str = Field("", description='Synonym rules (Solr format), relative to index.toml ("": none)')


class BulkSettings(BaseModel):
    """How documents are written: chunked bulk requests, retried with exponential backoff."""

    model_config = FILE_MODEL
    chunk_size: int = Field(500, gt=0, description="Documents per bulk request")
    max_chunk_bytes: int = Field(10_000_000, gt=0, description="Bytes per bulk request")
    max_retries: int = Field(5, ge=0, description="Retries per failed document on 429/5xx/timeouts")
    initial_backoff: float = Field(0.5, ge=0, description="Seconds before the first retry (doubling after)")


class IndexFile(BaseModel):
    """What index.toml holds; every key is optional (the packaged file shows each with its default)."""

    model_config = FILE_MODEL
    vectors: VectorSettings = Field(default_factory=VectorSettings)
    analysis: AnalysisSettings = Field(default_factory=AnalysisSettings)
    bulk: BulkSettings = Field(default_factory=BulkSettings)


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


def index_file_schema() -> dict[str, Any]:
    """The JSON Schema of index.toml (docs/schemas/index.schema.json).

    >>> sorted(index_file_schema()["properties"])
    ['analysis', 'bulk', 'vectors']
    """
    return file_schema(IndexFile, title="shopsearch index settings", source="plugin/index_config.py")


def load_index_config(path: str | Path | None = None) -> IndexConfig:
    """Read an index.toml (default: the packaged one) into an IndexConfig, with its synonym rules loaded.

    Raises:
        FileNotFoundError: the file or its synonyms file is missing.
        ValueError: invalid TOML, an unknown key, a wrong type or a value out of range (the message names the
            file, the key, the value and what is allowed).

    >>> load_index_config().hnsw_m
    16
    """
    path = Path(path) if path else CONFIG_DIR / "index.toml"
    spec = validate_file(IndexFile, read_toml(path), path)
    synonyms: tuple[str, ...] = ()
    if spec.analysis.synonyms_file:
        lines = (path.parent / spec.analysis.synonyms_file).read_text(encoding="utf-8").splitlines()
        synonyms = tuple(ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#"))
    vec, bulk = spec.vectors, spec.bulk
    return IndexConfig(hnsw_m=vec.m, ef_construction=vec.ef_construction, synonyms=synonyms,
                       chunk_size=bulk.chunk_size, max_chunk_bytes=bulk.max_chunk_bytes,
                       max_retries=bulk.max_retries, initial_backoff=bulk.initial_backoff)


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
