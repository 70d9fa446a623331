"""Index settings from plugin/config/index.toml, and the OpenSearch index body rendered from index.json.

index.toml is validated by the pydantic model :class:`IndexFile` (strict types, unknown keys are errors naming
the file, key, value and what is allowed), which also produces its JSON Schema, docs/schemas/index.schema.json
(written by ``shopsearch schema``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
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
    synonyms_file: str = Field("", description='Default synonym rules (Solr format), relative to index.toml ("": '
                                               'none); applied at search time (plugin/synonyms.py)')


# OpenSearch time values for refresh_interval ("-1": never refresh).
_INTERVAL = r"^(-1|[0-9]+(ms|s|m|h))$"
# auto_expand_replicas: "0-1", "1-all"; "" leaves the fixed replica count in charge.
_AUTO_EXPAND = r"^([0-9]+-([0-9]+|all))?$"


class ClusterSettings(BaseModel):
    """How a serving index is laid out on the cluster (applied at creation and restored after a bulk load)."""

    model_config = FILE_MODEL
    shards: int = Field(1, ge=1, le=1024, description="Primary shards (fixed once the index exists)")
    replicas: int = Field(1, ge=0, le=64, description="Copies of each shard on other nodes, restored after a bulk "
                                                      "load (unused while auto_expand_replicas is set)")
    auto_expand_replicas: str = Field("0-1", pattern=_AUTO_EXPAND,
                                      description='Replicas follow the node count within a range ("0-1": none '
                                                  'on one node, one on a cluster; "": use replicas)')
    refresh_interval: str = Field("1s", pattern=_INTERVAL, description="How often writes become searchable while "
                                                                       "serving")
    ready_timeout_s: float = Field(120.0, gt=0, description="How long a rebuild waits for the new index to turn "
                                                            "green before it refuses to move the alias")


class BulkSettings(BaseModel):
    """How documents are written: chunked bulk requests, retried with exponential backoff."""

    model_config = FILE_MODEL
    chunk_size: int = Field(500, gt=0, description="Documents per bulk request")
    max_chunk_bytes: int = Field(10_000_000, gt=0, description="Bytes per bulk request")
    max_retries: int = Field(5, ge=0, description="Retries per failed document on 429/5xx/timeouts")
    initial_backoff: float = Field(0.5, ge=0, description="Seconds before the first retry (doubling after)")
    refresh_interval: str = Field("-1", pattern=_INTERVAL, description='Refresh interval during a full rebuild '
                                                                       '("-1": no refreshes; replicas are 0 '
                                                                       'until the load ends)')


class IndexFile(BaseModel):
    """What index.toml holds; every key is optional (the packaged file shows each with its default)."""

    model_config = FILE_MODEL
    vectors: VectorSettings = Field(default_factory=VectorSettings)
    analysis: AnalysisSettings = Field(default_factory=AnalysisSettings)
    cluster: ClusterSettings = Field(default_factory=ClusterSettings)
    bulk: BulkSettings = Field(default_factory=BulkSettings)


def _default(model: type[BaseModel], key: str) -> Any:
    return model.model_fields[key].default


@dataclass(frozen=True)
class IndexConfig:
    """Tunable index settings; each default is the file model's (an index.toml without the key)."""

    hnsw_m: int = _default(VectorSettings, "m")
    ef_construction: int = _default(VectorSettings, "ef_construction")
    synonyms: tuple[str, ...] = ()  # the rules themselves; the file model's default names no file
    chunk_size: int = _default(BulkSettings, "chunk_size")
    max_chunk_bytes: int = _default(BulkSettings, "max_chunk_bytes")
    max_retries: int = _default(BulkSettings, "max_retries")
    initial_backoff: float = _default(BulkSettings, "initial_backoff")
    shards: int = _default(ClusterSettings, "shards")
    replicas: int = _default(ClusterSettings, "replicas")
    auto_expand_replicas: str = _default(ClusterSettings, "auto_expand_replicas")
    refresh_interval: str = _default(ClusterSettings, "refresh_interval")
    bulk_refresh_interval: str = _default(BulkSettings, "refresh_interval")
    ready_timeout_s: float = _default(ClusterSettings, "ready_timeout_s")

    def with_layout(self, shards: int | None = None, replicas: int | None = None) -> "IndexConfig":
        """A copy with ``shards`` and/or ``replicas`` overridden (a fixed replica count turns auto-expand off).

        Raises:
            ValueError: ``shards`` < 1 or ``replicas`` < 0.

        >>> c = IndexConfig().with_layout(replicas=2); (c.replicas, c.auto_expand_replicas)
        (2, '')
        """
        if shards is not None and (not isinstance(shards, int) or shards < 1):
            raise ValueError(f"shards={shards!r} must be an integer >= 1")
        if replicas is not None and (not isinstance(replicas, int) or replicas < 0):
            raise ValueError(f"replicas={replicas!r} must be an integer >= 0")
        changes: dict[str, Any] = {}
        if shards is not None:
            changes["shards"] = shards
        if replicas is not None:
            changes |= {"replicas": replicas, "auto_expand_replicas": ""}
        return replace(self, **changes)

    def serving_settings(self) -> dict[str, Any]:
        """The OpenSearch ``index`` settings of a serving index: refresh interval, replicas, durable translog.

        >>> IndexConfig(auto_expand_replicas="").serving_settings()["number_of_replicas"]
        1
        """
        replicas: dict[str, Any] = ({"auto_expand_replicas": self.auto_expand_replicas} if self.auto_expand_replicas
                                    else {"auto_expand_replicas": "false", "number_of_replicas": self.replicas})
        return {"refresh_interval": self.refresh_interval, **replicas, "translog.durability": "request"}

    def bulk_settings(self) -> dict[str, Any]:
        """The ``index`` settings during a bulk load: no replicas (copied once, at the end), bulk refresh interval.

        >>> IndexConfig().bulk_settings()["number_of_replicas"]
        0
        """
        # The translog is fsynced in the background: the job verifies counts before the alias moves, and a
        # crashed load is rebuilt, so per-request durability buys nothing there.
        return {"refresh_interval": self.bulk_refresh_interval, "auto_expand_replicas": "false",
                "number_of_replicas": 0, "translog.durability": "async"}


def index_file_schema() -> dict[str, Any]:
    """The JSON Schema of index.toml (docs/schemas/index.schema.json).

    >>> sorted(index_file_schema()["properties"])
    ['analysis', 'bulk', 'cluster', 'vectors']
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
    vec, bulk, cluster = spec.vectors, spec.bulk, spec.cluster
    return IndexConfig(hnsw_m=vec.m, ef_construction=vec.ef_construction, synonyms=synonyms,
                       chunk_size=bulk.chunk_size, max_chunk_bytes=bulk.max_chunk_bytes,
                       max_retries=bulk.max_retries, initial_backoff=bulk.initial_backoff,
                       shards=cluster.shards, replicas=cluster.replicas,
                       auto_expand_replicas=cluster.auto_expand_replicas, refresh_interval=cluster.refresh_interval,
                       bulk_refresh_interval=bulk.refresh_interval, ready_timeout_s=cluster.ready_timeout_s)


def opensearch_index_body(config: IndexConfig, dims: int) -> dict[str, Any]:
    """The settings+mappings body for creating an OpenSearch index with ``dims``-dimensional vectors."""
    if dims <= 0:
        raise ValueError(f"dims must be > 0, got {dims}")
    body = json.loads((CONFIG_DIR / "index.json").read_text())
    body.pop("_comment", None)
    body["settings"]["index"] |= {"number_of_shards": config.shards, **config.serving_settings()}
    vec = body["mappings"]["properties"]["embedding"]
    vec["dimension"] = dims
    vec["method"]["parameters"] = {"m": config.hnsw_m, "ef_construction": config.ef_construction}
    return body


# Fields added to the mapping after indices were created with it: put on an existing index before a run writes to it.
ADDED_PROPERTIES = ("category_paths", "attr")


def added_mappings() -> dict[str, Any]:
    """The ``put_mapping`` body adding :data:`ADDED_PROPERTIES` and the dynamic templates to an existing index
    (putting them again is a no-op).

    >>> sorted(added_mappings())
    ['dynamic_templates', 'properties']
    """
    mappings = json.loads((CONFIG_DIR / "index.json").read_text())["mappings"]
    return {"dynamic_templates": mappings["dynamic_templates"],
            "properties": {name: mappings["properties"][name] for name in ADDED_PROPERTIES}}
