"""Every shopsearch setting, resolved once: defaults < TOML file < environment < flags.

This is the one module that reads the process environment. Everything else receives a :class:`Settings` (or
the single values it needs) from its caller: the CLI and the API factory call :func:`load_settings` once and
pass the result down.

    >>> s = load_settings({"engine": "opensearch", "home": "/srv/shop"}, environ={})
    >>> s.engine, str(s.models_dir)
    ('opensearch', '/srv/shop/models')

Layers, lowest first:

1. the defaults declared on :class:`Settings` (each field's ``default``);
2. a TOML file named by ``config`` (flag ``--config`` or ``$SHOPSEARCH_CONFIG``): options at the top level or
   grouped in tables named after their section (``[api]``, ``[paths]``...);
3. environment variables: each option's is ``SHOPSEARCH_<OPTION>`` unless the reference names another
   (``OPENSEARCH_URL``, ``OPENSEARCH_PASSWORD``...); an empty variable counts as unset;
4. explicit overrides: command-line flags, or a test's config.

The reference of every option, docs/configuration.md, is generated from this module
(``shopsearch config --reference``) and a test keeps it current.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, Mapping
from urllib.parse import urlsplit

from pydantic import (BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, ValidationError, field_validator,
                      model_validator)

from .config_files import read_toml

SECTIONS = {
    "paths": "Where shopsearch keeps its state, models and caches",
    "engine": "Which search engine and index to use",
    "opensearch": "How to reach an OpenSearch cluster",
    "node": "The local OpenSearch node that `shopsearch opensearch start` runs",
    "models": "The bi-encoder that embeds queries",
    "api": "The search API's limits",
    "console": "The relevance console's default judgments and the grades given in it",
    "ubi": "User Behavior Insights logging: the query and event records and their on-disk spool",
    "security": "API keys, roles and rate limits (docs/security.md)",
    "indexing": "What `shopsearch index` refuses to do to a live catalog, and how it embeds products",
}
ENGINES = ("opensearch", "embedded")
QUERY_ENCODERS = ("auto", "onnx", "torch")
INDEX_ENCODERS = ("torch", "onnx-int8")
DEFAULT_MODEL = "all-MiniLM-L6-v2"
DEFAULT_OPENSEARCH_URL = "http://127.0.0.1:9200"
# The labelled data beside a checkout (shared/ next to the project folder), used when data_dir is not set.
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
# Hugging Face libraries must never reach for a model hub: models come from packages and local folders.
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
# Paths under ``home`` that an unset option defaults to (and follows when ``home`` changes).
_DERIVED = {"models_dir": ("models",), "events_dir": ("events",), "ubi_spool_dir": ("ubi", "spool"),
            "merchandising_dir": ("merchandising",), "keys_file": ("keys.json",),
            "event_signing_key_file": ("event-signing.key",),
            "console_grades": ("judgments", "console-grades.csv")}


def _opt(default: Any, section: str, help: str, env: str | None = None, **kw: Any) -> Any:
    """A settings field: its section, help text and (when not SHOPSEARCH_<NAME>) its environment variable."""
    extra = {"section": section} | ({"env": env} if env else {})
    return Field(default, description=help, json_schema_extra=extra, **kw)


def expand_home(path: Path) -> Path:
    """``path`` with a leading ``~`` or ``~/`` read as the user's home folder.

    >>> expand_home(Path("~/x")) == Path.home() / "x", expand_home(Path("~old/x"))
    (True, PosixPath('~old/x'))
    """
    text = str(path)
    return Path.home() / text[2:] if text.startswith("~/") else Path.home() if text == "~" else path


class Settings(BaseModel):
    """The resolved settings. Build with :func:`load_settings`; derived paths are filled in from ``home``."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)
    _origins: dict[str, str] = PrivateAttr(default_factory=dict)

    config: Path | None = _opt(None, "paths", "TOML file with settings (the layer between defaults and the "
                                              "environment)")
    home: Path = _opt(Path.home() / ".shopsearch", "paths",
                      "State: embedded indices, event logs, ONNX exports, models")
    models_dir: Path | None = _opt(None, "paths", "First folder searched for models by name (default "
                                                  "<home>/models; ./models is searched after it)",
                                   env="SHOPSEARCH_MODELS")
    events_dir: Path | None = _opt(None, "paths", "The behaviour event log (default <home>/events)")
    merchandising_dir: Path | None = _opt(None, "paths", "Per-index merchandising rules (<index>.rules.toml) and "
                                                         "synonyms (<index>.synonyms.txt), reloaded when they change "
                                                         "(default <home>/merchandising)")
    profiles_dir: Path | None = _opt(None, "paths", "Extra ranking profiles, layered over the packaged ones",
                                     env="SHOPSEARCH_PROFILES")
    experiments_file: Path | None = _opt(None, "paths", "Online experiments the API assigns clients to (TOML; "
                                                        "see reranker/experiments.example.toml); none: no experiments")
    cache_dir: Path = _opt(Path.home() / ".cache" / "shopsearch", "paths",
                           "Downloads, unpacked packaged models and the project's virtualenv (OpenSearch artifacts, ...)",
                           env="SHOPSEARCH_CACHE")
    data_dir: Path | None = _opt(None, "paths", "Labelled data for benchmarks and the demo (default "
                                                "../shared/data beside the project, when present)",
                                 env="SHOPSEARCH_DATA")

    engine: Literal["opensearch", "embedded"] = _opt("embedded", "engine", "Search engine: opensearch or embedded")
    index: str = _opt("products", "engine", "Index or alias the API searches", min_length=1)
    engine_timeout_s: float = _opt(5.0, "engine", "Per engine request (s); an outage answers 503 within about "
                                                  "this", env="SHOPSEARCH_ENGINE_TIMEOUT", gt=0)

    opensearch_url: str = _opt(DEFAULT_OPENSEARCH_URL, "opensearch", "Cluster URL, or several comma-separated "
                                                                      "node URLs of one cluster (a failed request "
                                                                      "is retried on another)", env="OPENSEARCH_URL")
    opensearch_user: str | None = _opt(None, "opensearch", "Basic-auth user (with the password)",
                                       env="OPENSEARCH_USER")
    opensearch_password: SecretStr | None = _opt(None, "opensearch", "Basic-auth password (never logged)",
                                                 env="OPENSEARCH_PASSWORD")
    opensearch_verify_certs: bool = _opt(True, "opensearch", "Verify the cluster's TLS certificate (https)",
                                         env="OPENSEARCH_VERIFY_CERTS")
    opensearch_ca_certs: Path | None = _opt(None, "opensearch", "CA bundle for https", env="OPENSEARCH_CA_CERTS")
    opensearch_allow_insecure_http_auth: bool = _opt(False, "opensearch", "Allow sending the basic-auth password "
                                                                     "over plain http (refused otherwise)",
                                                     env="OPENSEARCH_ALLOW_INSECURE_HTTP_AUTH")
    opensearch_sniff: bool = _opt(False, "opensearch", "Learn the cluster's nodes from the cluster (every minute "
                                                       "and after a failure) instead of only the URLs given",
                                  env="OPENSEARCH_SNIFF")
    opensearch_pool_maxsize: int = _opt(10, "opensearch", "HTTP connections kept per node in each process; at "
                                                          "least the API's threads per worker (serve --threads), "
                                                          "twice that when ranker profiles serve (two requests "
                                                          "a search)",
                                        env="OPENSEARCH_POOL_MAXSIZE", gt=0)

    opensearch_home: Path | None = _opt(None, "node", "Install folder of the local node (default "
                                                      "/var/lib/shopsearch/opensearch-<v> as root, else under "
                                                      "cache_dir)")
    opensearch_heap: str = _opt("1g", "node", "JVM heap of the local node (e.g. 512m, 1g)",
                                pattern=r"^[0-9]+[mMgG]$")
    opensearch_java_home: Path | None = _opt(None, "node", "JDK for the local node (default: the `java` on PATH)",
                                             env="OPENSEARCH_JAVA_HOME")
    opensearch_cluster_home: Path | None = _opt(None, "node", "Folder of the local multi-node cluster (`opensearch "
                                                              "start --nodes N`; default: <opensearch_home>-cluster)")

    model: str = _opt(DEFAULT_MODEL, "models", "Query bi-encoder, by name or folder (must be the index's)",
                      min_length=1)
    query_encoder: Literal["auto", "onnx", "torch"] = _opt(
        "auto", "models", "auto (ONNX Runtime on CPU, torch on CUDA), onnx or torch")

    retry_after_s: int = _opt(5, "api", "Retry-After header on 503", gt=0)
    max_query_length: int = _opt(256, "api", "Characters in a query", gt=0)
    max_size: int = _opt(100, "api", "Results per page", gt=0)
    max_depth: int = _opt(1000, "api", "Deepest result reachable by paging (page * size)", gt=0)
    max_events: int = _opt(500, "api", "Events per POST /events", gt=0)
    max_content_length: int = _opt(1_048_576, "api", "Request body bytes (413 above)", gt=0)
    search_deadline_ms: int = _opt(1000, "api", "End-to-end deadline of one /search (ms): engine calls get the time "
                                                "left, the reranker fits in it; past it the search serves what it "
                                                "has (degraded) or answers 503 with Retry-After", gt=0)
    search_max_inflight: int = _opt(0, "api", "GET /search requests one worker runs at once; "
                                              "more answer 503 with Retry-After at once instead of queueing. 0: "
                                              "serve's --threads minus 1 (no bound outside serve)", ge=0)
    facet_price_edges: tuple[float, ...] = _opt(
        (25.0, 50.0, 100.0, 250.0), "api", "Edges of /search's price facet buckets (0-25, 25-50, ..., 250+): "
                                           "increasing numbers > 0, comma-separated in the environment")

    console_qrels: Path | None = _opt(None, "console", "Judgments file the console loads by default")
    console_queries: Path | None = _opt(None, "console", "Queries file (qid<TAB>text) for the console's default "
                                                          "judgments")
    console_grades: Path | None = _opt(None, "console", "Grades given in the console, kept as a CSV judgment list "
                                                         "(query,product_id,grade,graded_by,graded_at) that "
                                                         "compare reads and `judgments merge` folds into a TREC "
                                                         "list (default <home>/judgments/console-grades.csv)")

    ubi_spool_dir: Path | None = _opt(None, "ubi", "Spool of UBI records not yet in the store (default "
                                                   "<home>/ubi/spool)")
    ubi_spool_max_bytes: int = _opt(64 * 1024 * 1024, "ubi", "Spool size at which POST /events answers 503 "
                                                             "and searches go unlogged (each worker may pass it "
                                                             "by 1/64 between its listings)", gt=0)
    ubi_flush_interval_s: float = _opt(1.0, "ubi", "How often the spool is drained into the store (s)", gt=0)
    ubi_feature_depth: int = _opt(10, "ubi", "Top results whose stage features each query record logs", ge=0)
    suggest_queries_refresh_s: float = _opt(300.0, "ubi", "How often /suggest's popular queries are rebuilt from "
                                                          "the query log, in the background (s)", gt=0)
    suggest_queries_window_days: float = _opt(30.0, "ubi", "Days of logged searches /suggest's popular queries "
                                                           "count", gt=0)
    suggest_queries_min_clients: int = _opt(2, "ubi", "Distinct clients a logged query needs before /suggest "
                                                      "offers it to others (privacy)", ge=1)
    suggest_queries_max: int = _opt(5000, "ubi", "Most popular queries /suggest keeps in memory", gt=0)

    index_max_delete_share: float = _opt(0.05, "indexing", "Share of the live catalog an --incremental run may "
                                                           "delete (more is refused unless --allow-shrink)",
                                         ge=0, le=1)
    index_max_shrink_share: float = _opt(0.10, "indexing", "How far below the live count a --full rebuild may "
                                                           "fall (more is refused unless --allow-shrink)",
                                         ge=0, le=1)
    index_lock_stale_s: float = _opt(600.0, "indexing", "A rebuild lock whose heartbeat is older than this is "
                                                        "stale and broken by the next run (s)", gt=0)
    index_workers: int = _opt(0, "indexing", "Encoder worker processes of `shopsearch index` (--workers); 0: one "
                                             "per physical core on CPU, 1 (in-process) on CUDA or for a catalog "
                                             "file under 2 MB", ge=0)
    index_encoder: Literal["torch", "onnx-int8"] = _opt(
        "torch", "indexing", "How `shopsearch index` embeds products (--encoder): torch (the model as trained) or "
                             "onnx-int8 (int8 ONNX Runtime, faster on CPU; its cost in bench/RESULTS.md)")

    keys_file: Path | None = _opt(None, "security", "API keys, hashed (default <home>/keys.json); any key in it "
                                                    "turns key checks on (`shopsearch keys create`)")
    storefront_key: SecretStr | None = _opt(None, "security", "The search-role key the storefront page embeds (a "
                                                              "meta tag) when keys are configured")
    metrics_public: bool = _opt(False, "security", "Serve /metrics without an admin key")
    api_key: SecretStr | None = _opt(None, "security", "The key client commands (simulate-traffic) send to a served "
                                                       "API as X-API-Key; none: the API's local mode")
    redis_url: SecretStr | None = _opt(None, "security", "Redis (redis://host:port/db) shared by every worker for "
                                                         "rate limits; none: each worker counts in its own memory")
    rate_limits: bool = _opt(True, "security", "Enforce the rate limits below (429 with Retry-After)")
    rate_limit_search_key: str = _opt("100/second", "security", "Search budget (/search, /suggest, /products) per "
                                                                "API key, all its clients together")
    rate_limit_search_ip: str = _opt("20/second;600/minute", "security", "Search budget per client IP")
    rate_limit_events_key: str = _opt("200/second", "security", "POST /events budget per API key")
    rate_limit_events_ip: str = _opt("20/second;600/minute", "security", "POST /events budget per client IP")
    trusted_proxies: int = _opt(0, "security", "Reverse proxies in front of the API whose X-Forwarded-For entry is "
                                               "trusted: the client IP (rate limits, loopback checks) is that many "
                                               "hops back; 0 uses the TCP peer", ge=0, le=10)
    event_signing_key: SecretStr | None = _opt(None, "security", "HMAC-SHA256 key that signs each /search hit's "
                                                                 "event token (>= 32 characters); none: generated "
                                                                 "once into event_signing_key_file. Every API host of "
                                                                 "a cluster must set the same key")
    event_signing_key_file: Path | None = _opt(None, "security", "Where the generated signing key is kept (default "
                                                                 "<home>/event-signing.key; workers on one home share "
                                                                 "it)")
    event_max_age_s: float = _opt(86400.0, "security", "Oldest search an event may name (s); older: 400 "
                                                       "stale_query", gt=0)
    event_session_cap: int = _opt(1000, "security", "Events one session may add per event_cap_window_s (429 "
                                                    "above)", gt=0)
    event_product_cap: int = _opt(20, "security", "Clicks, add-to-carts and purchases one session may add for one "
                                                  "product per event_cap_window_s (429 above)", gt=0)
    event_impression_cap: int = _opt(200, "security", "Impressions one session may add for one product per "
                                                      "event_cap_window_s (429 above)", gt=0)
    event_cap_window_s: float = _opt(3600.0, "security", "Window of the per-session and per-product event caps (s)",
                                     gt=0)
    event_recent_ids: int = _opt(100_000, "security", "Client event_ids remembered per worker when redis_url is "
                                                      "not set (a repeat is answered duplicate and not stored "
                                                      "again; with Redis they are shared, for event_max_age_s)",
                                 gt=0)
    event_known_products: int = _opt(50_000, "security", "Product ids known to exist, remembered per worker (events "
                                                         "without a query must name one)", gt=0)
    history_max_products: int = _opt(200_000, "security", "Products whose event counts the serving history keeps "
                                                          "(least recently active dropped first)", gt=0)
    history_max_users: int = _opt(100_000, "security", "Shoppers (users or sessions) whose affinity the serving "
                                                       "history keeps (least recently active dropped first)", gt=0)

    @field_validator("facet_price_edges", mode="before")
    @classmethod
    def _price_edges(cls, value: Any) -> Any:
        if isinstance(value, str):  # from the environment: "25,50,100"
            try:
                value = tuple(float(v) for v in value.split(",") if v.strip())
            except ValueError:
                raise ValueError("must be comma-separated numbers, e.g. 25,50,100,250") from None
        if isinstance(value, (list, tuple)):
            ok = 1 <= len(value) <= 20 and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                               and 0 < v < float("inf") for v in value)
            if not ok or any(b <= a for a, b in zip(value, value[1:])):
                raise ValueError("must be 1..20 finite numbers > 0, strictly increasing")
        return value

    @field_validator("*", mode="after")
    @classmethod
    def _home_folders(cls, value: Any) -> Any:
        """Every path as a shell reads it: ``~/merch`` in a file or a quoted variable names the home's folder, not a
        folder called ``~`` (rules in it would silently never load). Only ``~`` and ``~/``: ``~name`` stays a name."""
        return expand_home(value) if isinstance(value, Path) else value

    @model_validator(mode="before")
    @classmethod
    def _derived_paths(cls, data: Any) -> Any:
        if isinstance(data, dict):
            home = Path(data.get("home") or cls.model_fields["home"].default).expanduser()
            data = {**data, "home": home}
            for name, parts in _DERIVED.items():
                data[name] = data.get(name) or home.joinpath(*parts)
            if not data.get("data_dir") and (SHARED_DATA / "crowdflower").is_dir():
                data["data_dir"] = SHARED_DATA
        return data

    @field_validator("opensearch_url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        urls = [u.strip() for u in url.split(",")]
        for one in urls:
            parts, shown = urlsplit(one), repr(_without_credentials(one))
            try:
                parts.port  # noqa: B018 - raises ValueError for a bad port
            except ValueError as exc:
                raise ValueError(f"{shown}: invalid port: {exc}") from None
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"{shown} must look like http(s)://host[:port] (several: comma-separated)")
        if len({urlsplit(u).scheme for u in urls}) > 1:
            raise ValueError("every node URL must use the same scheme (all http or all https)")
        return ",".join(urls)

    @property
    def opensearch_urls(self) -> list[str]:
        """Each node URL of ``opensearch_url`` (one, or several comma-separated)."""
        return self.opensearch_url.split(",")

    @model_validator(mode="after")
    def _consistent(self) -> "Settings":
        if self.max_depth < self.max_size:
            raise ValueError(f"max_depth ({self.max_depth}) must be >= max_size ({self.max_size})")
        if (self.opensearch_user is None) != (self.opensearch_password is None):
            given = "opensearch_user" if self.opensearch_user else "opensearch_password"
            raise ValueError(f"opensearch_user and opensearch_password must be set together (basic auth); "
                             f"got only {given}")
        return self

    def origin(self, name: str) -> str:
        """Which layer set option ``name``: a file path, ``$VARIABLE``, ``flags`` or ``default``."""
        return self._origins.get(name, "default")

    @property
    def embedded_dir(self) -> Path:
        """Where the embedded engine keeps its indices."""
        return self.home / "embedded"

    @property
    def onnx_dir(self) -> Path:
        """Where ONNX exports of the models are cached (keyed by a hash of the weights)."""
        return self.home / "onnx"

    @property
    def ubi_dir(self) -> Path:
        """Where the embedded engine keeps the UBI query and event logs."""
        return self.home / "ubi"

    def replace(self, **changes: Any) -> "Settings":
        """A copy with ``changes`` applied and validated (derived paths follow a changed ``home``)."""
        values = self.model_dump()
        if "home" in changes:
            for name, parts in _DERIVED.items():
                if values[name] == self.home.joinpath(*parts):
                    values[name] = None
        values.update(changes)
        return _validate(values, {**self._origins, **dict.fromkeys(changes, "replace()")})


def default(name: str) -> Any:
    """Setting ``name``'s default, for code that takes the value as an argument (its one home is the field).

    >>> default("index_lock_stale_s")
    600.0
    """
    return Settings.model_fields[name].default


def env_var(name: str) -> str:
    """The environment variable that sets option ``name``.

    >>> env_var("max_size"), env_var("opensearch_url")
    ('SHOPSEARCH_MAX_SIZE', 'OPENSEARCH_URL')
    """
    extra = Settings.model_fields[name].json_schema_extra or {}
    return extra.get("env") or f"SHOPSEARCH_{name.upper()}"


def load_settings(overrides: Mapping[str, Any] | None = None,
                  environ: Mapping[str, str] | None = None) -> Settings:
    """Resolve every layer into validated settings.

    Args:
        overrides: the highest layer, by option name (flags, a test's config); None values are ignored, so
            argparse defaults of None fall through to the lower layers.
        environ: the environment to read (default: this process's).

    Returns:
        The validated :class:`Settings`.

    Raises:
        ValueError: an unknown option, or a value of the wrong type or out of range; the message names the
            option, the value and the layer it came from (file path, environment variable or flag).
        FileNotFoundError: the config file does not exist.

    >>> load_settings({"max_size": 20}, environ={"SHOPSEARCH_MAX_SIZE": "50"}).max_size
    20
    """
    env = os.environ if environ is None else environ
    flags = {k: v for k, v in (overrides or {}).items() if v is not None}
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    config = flags.get("config") or env.get(env_var("config")) or None
    if config:
        path = expand_home(Path(config))
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        layer = _flatten_toml(read_toml(path), str(path))
        _merge(values, origins, layer, str(path))
        values["config"] = path
    from_env = {name: env[env_var(name)] for name in Settings.model_fields if env.get(env_var(name))}
    for name in from_env:
        origins[name] = f"${env_var(name)}"
    values.update(from_env)
    _merge(values, origins, flags, "flags")
    return _validate(values, origins)


def _flatten_toml(data: Mapping[str, Any], origin: str) -> dict[str, Any]:
    """Top-level options plus those in section tables (``[api] max_size = 50``); unknown names are errors."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            if key not in SECTIONS:
                raise ValueError(f"{origin}: unknown section [{key}]; sections: {', '.join(SECTIONS)}")
            for name, inner in value.items():
                if name in Settings.model_fields and _section(name) != key:
                    raise ValueError(f"{origin}: option {name!r} belongs in [{_section(name)}], not [{key}]")
                out[name] = inner
        else:
            out[key] = value
    return out


def _merge(values: dict[str, Any], origins: dict[str, str], layer: Mapping[str, Any], origin: str) -> None:
    for key, value in layer.items():
        if key not in Settings.model_fields:
            raise ValueError(f"{origin}: unknown option {key!r}; see docs/configuration.md for the options")
        values[key] = value
        origins[key] = origin


def _validate(values: dict[str, Any], origins: Mapping[str, str]) -> Settings:
    try:
        settings = Settings.model_validate(values)
        settings._origins.update(origins)
        return settings
    except ValidationError as exc:
        err = exc.errors()[0]
        name = str(err["loc"][0]) if err["loc"] else ""
        if not name:  # a rule across options (max_depth vs max_size)
            raise ValueError(err["msg"].removeprefix("Value error, ")) from None
        value = values.get(name)
        shown = "***" if "password" in name else repr(_without_credentials(value))
        where = f" (from {origins[name]})" if name in origins else ""
        raise ValueError(f"{name}={shown}{where}: {err['msg']}") from None


def _without_credentials(value: Any) -> Any:
    if isinstance(value, str) and "," in value and "://" in value:  # several node URLs
        return ",".join(_without_credentials(one) for one in value.split(","))
    if isinstance(value, str) and "@" in value and "://" in value:
        scheme, rest = value.split("://", 1)
        return f"{scheme}://{rest.rsplit('@', 1)[1]}"
    return value


def _section(name: str) -> str:
    return (Settings.model_fields[name].json_schema_extra or {})["section"]


def offline_environment() -> None:
    """Make Hugging Face libraries run offline in this process (and its children), unless already set."""
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)


def set_process_default(name: str, value: str) -> None:
    """Set environment variable ``name`` unless already set (thread-pool tuning read by native libraries)."""
    os.environ.setdefault(name, value)


@contextlib.contextmanager
def command_config(config: str | os.PathLike[str] | None) -> Iterator[None]:
    """A command's ``--config FILE`` as ``$SHOPSEARCH_CONFIG`` while it runs (the CLI wraps every command in it).

    Code that resolves the settings itself (where a packaged model unpacks, the ONNX cache, worker processes)
    then reads the file the command was given, not only the environment's.
    """
    if not config:
        yield
        return
    name = env_var("config")
    before = os.environ.get(name)
    os.environ[name] = os.path.abspath(expand_home(Path(config)))
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def child_environment(options: Mapping[str, Any] | None = None, drop: tuple[str, ...] = ()) -> dict[str, str]:
    """This process's environment for a child process, minus ``drop``, plus ``options`` as their variables.

    A child ``shopsearch`` command then resolves to the same settings without flags.

    >>> child_environment({"max_size": 20})["SHOPSEARCH_MAX_SIZE"]
    '20'
    """
    env = {k: v for k, v in os.environ.items() if k not in drop}
    for name, value in (options or {}).items():
        if name not in Settings.model_fields:
            raise ValueError(f"unknown option {name!r}")
        if value is not None:
            env[env_var(name)] = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
    return env


def describe_settings(settings: Settings) -> str:
    """One ``option = value  # layer`` line per option, for ``shopsearch config``: a TOML settings file that
    ``--config`` reads back. An unset option is a comment, a secret is a comment that masks it, and a password
    written into ``opensearch_url`` is left out.

    >>> [ln for ln in describe_settings(load_settings({"max_size": 20}, environ={})).splitlines() if "max_size" in ln]
    ['max_size = 20  # flags']
    """
    lines = ["# shopsearch settings (defaults < file < environment < flags)"]
    for section in SECTIONS:
        lines.append(f"\n[{section}]")
        for name in Settings.model_fields:
            if _section(name) == section:
                value, origin = getattr(settings, name), settings.origin(name)
                if isinstance(value, SecretStr):
                    lines.append(f'# {name} = "***"  # {origin}; a secret: set it in the environment')
                elif value is None:
                    lines.append(f"# {name} =  # unset ({origin})")
                else:
                    shown = _without_credentials(value)
                    note = "; its credentials left out: set opensearch_user / opensearch_password" \
                        if shown != value else ""
                    lines.append(f"{name} = {_toml_value(shown)}  # {origin}{note}")
    return "\n".join(lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)  # a TOML basic string is a JSON string


def reference_markdown() -> str:
    """docs/configuration.md: every option by section with its variable, type, default and meaning."""
    lines = ["# Configuration reference", "",
             "<!-- Generated by `shopsearch config --reference` from shopsearch/settings.py; do not edit. -->", "",
             "Every option is resolved in one place, `shopsearch/settings.py`, from these layers (later wins):",
             "defaults < TOML file (`--config` or `$SHOPSEARCH_CONFIG`) < environment < command-line flags.",
             "In the TOML file an option stands at the top level or in the table of its section:", "",
             "```toml", "engine = \"opensearch\"", "", "[api]", "max_size = 50", "```", "",
             "`shopsearch config` prints the resolved settings and where each came from.", ""]
    for section, title in SECTIONS.items():
        lines += [f"## [{section}] — {title}", "", "| option | environment | type | default | meaning |",
                  "|---|---|---|---|---|"]
        for name, field in Settings.model_fields.items():
            if _section(name) != section:
                continue
            lines.append(f"| `{name}` | `{env_var(name)}` | {_type_name(field.annotation)} | "
                         f"{_default_text(name)} | {field.description} |")
        lines.append("")
    return "\n".join(lines)


def _type_name(annotation: Any) -> str:
    text = str(annotation).replace("typing.", "").replace("pathlib.", "").replace("pydantic.types.", "")
    text = text.replace("<class '", "").replace("'>", "").replace("PosixPath", "Path")
    return text.replace("|", "or")


def _default_text(name: str) -> str:
    default = Settings.model_fields[name].default
    if default is None:
        return "—"
    if isinstance(default, Path):
        return f"`{str(default).replace(str(Path.home()), '~')}`"
    return f"`{default!r}`" if isinstance(default, str) else f"`{default}`"
