"""The search API's settings: defaults < TOML file ($SHOPSEARCH_CONFIG) < environment < test config.

Every option, with its default (all optional)::

    engine = "embedded"            # "opensearch" or "embedded"
    index = "products"             # index or alias the API searches
    opensearch_url = ""            # "" = $OPENSEARCH_URL or http://127.0.0.1:9200
    model = "all-MiniLM-L6-v2"     # bi-encoder name or directory (must match the index's vectors)
    query_encoder = "auto"         # "auto" (onnxruntime on CPU, torch on CUDA), "onnx" or "torch"
    home = ""                      # "" = $SHOPSEARCH_HOME or ~/.shopsearch (embedded indices, events)
    events_dir = ""                # "" = <home>/events
    engine_timeout_s = 5.0         # per engine request; an outage answers 503 within about this
    retry_after_s = 5              # Retry-After header on 503
    max_query_length = 256         # characters in q
    max_size = 100                 # results per page
    max_depth = 1000               # page * size
    max_events = 500               # events per POST /events
    max_content_length = 1048576   # request body bytes (413 above)
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ENGINES = ("opensearch", "embedded")
QUERY_ENCODERS = ("auto", "onnx", "torch")  # = shopsearch.indexer.onnx_encoder.QUERY_ENCODERS (not imported: cheap)

# Environment variable -> option it sets.
ENV_VARS = {
    "SHOPSEARCH_ENGINE": "engine",
    "SHOPSEARCH_INDEX": "index",
    "OPENSEARCH_URL": "opensearch_url",
    "SHOPSEARCH_MODEL": "model",
    "SHOPSEARCH_QUERY_ENCODER": "query_encoder",
    "SHOPSEARCH_HOME": "home",
    "SHOPSEARCH_EVENTS_DIR": "events_dir",
    "SHOPSEARCH_ENGINE_TIMEOUT": "engine_timeout_s",
}


@dataclass(frozen=True)
class ApiConfig:
    """Validated API settings (see the module docstring for each option)."""

    engine: str = "embedded"
    index: str = "products"
    opensearch_url: str = ""
    model: str = "all-MiniLM-L6-v2"
    query_encoder: str = "auto"
    home: str = ""
    events_dir: str = ""
    engine_timeout_s: float = 5.0
    retry_after_s: int = 5
    max_query_length: int = 256
    max_size: int = 100
    max_depth: int = 1000
    max_events: int = 500
    max_content_length: int = 1_048_576

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}; got {self.engine!r}")
        if self.query_encoder not in QUERY_ENCODERS:
            raise ValueError(f"query_encoder must be one of {', '.join(QUERY_ENCODERS)}; got {self.query_encoder!r}")
        if not self.index:
            raise ValueError("index must be a non-empty index or alias name")
        positive = ("engine_timeout_s", "retry_after_s", "max_query_length", "max_size", "max_depth",
                    "max_events", "max_content_length")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0; got {getattr(self, name)!r}")
        if self.max_depth < self.max_size:
            raise ValueError(f"max_depth ({self.max_depth}) must be >= max_size ({self.max_size})")

    @property
    def home_dir(self) -> Path:
        """Where local state lives: ``home`` or ~/.shopsearch."""
        return Path(self.home) if self.home else Path.home() / ".shopsearch"

    @property
    def events_path(self) -> Path:
        """Directory of the append-only event log."""
        return Path(self.events_dir) if self.events_dir else self.home_dir / "events"


def _coerce(name: str, value: Any) -> Any:
    """Convert a raw (string or TOML) value to the option's type, naming the option when that fails."""
    kind = {f.name: f.type for f in fields(ApiConfig)}[name]
    try:
        if kind == "float":
            return float(value)
        if kind == "int":
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        return str(value)
    except (TypeError, ValueError):
        article = {"int": "an integer", "float": "a number"}.get(kind, "a string")
        raise ValueError(f"{name} must be {article}; got {value!r}") from None


def _apply(current: dict[str, Any], layer: Mapping[str, Any], origin: str) -> None:
    """Merge one layer of options into ``current``; unknown names are an error naming where they came from."""
    known = {f.name for f in fields(ApiConfig)}
    for key, value in layer.items():
        if key not in known:
            raise ValueError(f"{origin}: unknown option {key!r}; known: {', '.join(sorted(known))}")
        current[key] = _coerce(key, value)


def load_config(overrides: Mapping[str, Any] | None = None,
                environ: Mapping[str, str] | None = None) -> ApiConfig:
    """Build the API settings from every layer.

    Args:
        overrides: highest-priority options by name (a test config), e.g. ``{"index": "t"}``.
        environ: environment to read (default ``os.environ``); $SHOPSEARCH_CONFIG names a TOML file whose
            top-level keys (or ``[api]`` table) are options.

    Returns:
        The validated ApiConfig.

    Raises:
        ValueError: an unknown option, a value of the wrong type or out of range.
        FileNotFoundError: $SHOPSEARCH_CONFIG names a missing file.

    >>> load_config({"engine": "opensearch"}, environ={}).engine
    'opensearch'
    """
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    path = env.get("SHOPSEARCH_CONFIG")
    if path:
        data = tomllib.loads(Path(path).read_text())
        _apply(values, data.get("api", data), path)
    _apply(values, {opt: env[var] for var, opt in ENV_VARS.items() if env.get(var)}, "environment")
    _apply(values, overrides or {}, "config")
    return ApiConfig(**values)


def replace(cfg: ApiConfig, **changes: Any) -> ApiConfig:
    """A copy of ``cfg`` with ``changes`` applied and validated."""
    return dataclasses.replace(cfg, **changes)
