"""The Flask application factory: ``create_app(test_config=None)`` (the Flask tutorial's pattern).

Configuration layers: defaults < TOML file (``config``, $SHOPSEARCH_CONFIG) < environment variables < test_config
(see shopsearch.settings). ``test_config`` keys are settings option names (``"index"``, ``"max_size"``...),
Flask settings in upper case (``"TESTING"``), and optionally ``"searcher"`` / ``"engine_instance"``: ready
objects used instead of building them (tests), and ``"models"``: a ModelRegistry (default: the settings'
``models_dir``, then ./models).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Mapping

from flask import Flask, current_app

from shopsearch.events import EventLog
from shopsearch.plugin.ubi_spool import SpoolDrainer, UbiSpool
from shopsearch.plugin.ubi_store import open_ubi_store
from shopsearch.settings import Settings, load_settings
from shopsearch.ubi import UbiEvent, UbiQuery

from . import auth, limits, request_guards
from .errors import register_error_handlers
from .keys import KeyStore
from .metrics import Metrics

log = logging.getLogger(__name__)


@dataclass
class SearchService:
    """Per-app state in ``app.extensions["shopsearch"]``: config, metrics, event log and the lazy searcher."""

    config: Settings
    metrics: Metrics
    events: EventLog
    ubi_spool: UbiSpool  # UBI records on their way to the store (plugin/ubi_spool.py)
    ubi_drainer: SpoolDrainer
    searcher: Any = None
    engine: Any = None
    models: Any = None
    pipeline: Any = None
    experiments: Any = None  # the ExperimentStore (shopsearch.reranker.experiments) of the experiments_file setting
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get_searcher(self) -> Any:
        """The HybridSearcher, built on first use (engine + model load once per process, thread-safe)."""
        if self.searcher is None:
            with self._lock:
                if self.searcher is None:
                    self.engine, self.searcher = build_searcher(self.config, self.engine)
        return self.searcher

    def get_pipeline(self) -> Any:
        """The RankingPipeline around the searcher (the one search path: hybrid -> rerank -> conversion)."""
        if self.pipeline is None:
            searcher = self.get_searcher()
            with self._lock:
                if self.pipeline is None:
                    self.pipeline = build_pipeline(self.config, searcher, self.models)
        return self.pipeline

    def log_ubi(self, queries: list[UbiQuery], events: list[UbiEvent]) -> None:
        """Spool UBI records for the store (the drainer starts with the first); raises SpoolFull when full."""
        self.ubi_spool.append(queries, events)
        self.ubi_drainer.start()

    def close(self) -> None:
        """Drain the UBI spool once more and close the engine (a worker's graceful exit)."""
        self.ubi_drainer.stop()
        if self.engine is not None:
            self.engine.close()

    def get_engine(self) -> Any:
        """The engine behind the searcher (opened without loading the model when only readiness is asked)."""
        if self.engine is None:
            self.engine = getattr(self.searcher, "engine", None)
        if self.engine is None:
            with self._lock:
                if self.engine is None:
                    self.engine = open_configured_engine(self.config)
        return self.engine


def open_configured_engine(cfg: Settings) -> Any:
    """Open the engine the settings name (embedded indices live under ``<home>/embedded``)."""
    from shopsearch.plugin.engines import open_engine

    # No client retries: a shopper's request must fail within engine_timeout_s (503), not a multiple of it.
    return open_engine(cfg.engine, settings=cfg, timeout=cfg.engine_timeout_s, max_retries=0)


def build_searcher(cfg: Settings, engine: Any = None) -> tuple[Any, Any]:
    """Open the engine (unless given), load the query encoder and the ranking profiles; returns (engine, searcher).

    The query encoder follows ``cfg.query_encoder`` (ONNX on CPU by default, exported once under
    ``<home>/onnx``); any ONNX problem falls back to the torch BiEncoder with a warning.
    """
    from shopsearch.indexer.onnx_encoder import load_query_encoder
    from shopsearch.plugin.hybrid import HybridSearcher
    from shopsearch.plugin.profiles import ProfileStore

    engine = engine if engine is not None else open_configured_engine(cfg)
    encoder = load_query_encoder(cfg.model, mode=cfg.query_encoder, cache_dir=cfg.onnx_dir)
    searcher = HybridSearcher(engine, cfg.index, encoder, ProfileStore(settings=cfg), settings=cfg)
    log.info("searcher ready: engine=%s index=%s model=%s query encoder=%s", cfg.engine, cfg.index, cfg.model,
             type(encoder).__name__)
    return engine, searcher


def build_pipeline(cfg: Settings, searcher: Any, models: Any = None) -> Any:
    """The ranking pipeline over ``searcher``: models by name (loaded on first use), context from the event log."""
    from shopsearch.indexer.records import Product
    from shopsearch.reranker.event_context import EventLogHistory
    from shopsearch.reranker.model_registry import ModelRegistry, default_model_dirs
    from shopsearch.reranker.pipeline import RankingPipeline

    if models is None:
        models = ModelRegistry(default_model_dirs(cfg))

    def lookup(pid: str) -> Product | None:
        get = getattr(searcher, "get", None)
        doc = get(pid) if callable(get) else None
        return Product.from_source(doc) if doc else None

    return RankingPipeline(searcher, models, EventLogHistory(cfg.events_dir, lookup))


def build_experiments(cfg: Settings) -> Any:
    """The ExperimentStore of ``cfg.experiments_file`` (none: no experiments), its arms checked against the profiles."""
    from shopsearch.plugin.profiles import ProfileStore
    from shopsearch.reranker.experiments import ExperimentStore

    return ExperimentStore(cfg.experiments_file, profiles=lambda: ProfileStore(settings=cfg).names())


def service() -> SearchService:
    """The current app's SearchService."""
    return current_app.extensions["shopsearch"]


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Create the search API.

    Args:
        test_config: overrides (see module docstring); None in production.

    Returns:
        A Flask app with every blueprint, JSON error handlers and /metrics.

    Raises:
        ValueError: an invalid configuration value (named).

    >>> create_app({"TESTING": True, "searcher": object()}).url_map  # doctest: +SKIP
    """
    test_config = dict(test_config or {})
    flask_keys = {k: test_config.pop(k) for k in list(test_config) if k.isupper()}
    searcher, engine = test_config.pop("searcher", None), test_config.pop("engine_instance", None)
    models = test_config.pop("models", None)
    cfg = load_settings(test_config)

    app = Flask(__name__)
    app.config.from_mapping(MAX_CONTENT_LENGTH=cfg.max_content_length, JSON_SORT_KEYS=False)
    app.config.update(flask_keys)
    app.json.sort_keys = False
    metrics = Metrics()
    spool = UbiSpool(cfg.ubi_spool_dir, cfg.ubi_spool_max_bytes)
    # The drainer's store has a client of its own: its bulk writes never hold up a search's connection.
    drainer = SpoolDrainer(spool, lambda: open_ubi_store(cfg), cfg.ubi_flush_interval_s)
    app.extensions["shopsearch"] = SearchService(config=cfg, metrics=metrics, events=EventLog(cfg.events_dir),
                                                 ubi_spool=spool, ubi_drainer=drainer, searcher=searcher,
                                                 engine=engine, models=models,
                                                 experiments=build_experiments(cfg))
    if spool.segments():  # what a stopped or killed process left
        drainer.start()
    metrics.init_app(app)
    register_error_handlers(app)
    request_guards.init_app(app)  # hostile URLs and JSON rejected before anything else looks at them
    auth.init_app(app, cfg, KeyStore(cfg.keys_file))  # before the limits: they count per verified key
    limits.init_app(app, cfg)

    from . import routes_events, routes_ops, routes_pages, routes_products, routes_search

    # routes_pages: the storefront (/) and relevance console (/console); HTML, not part of /openapi.json.
    for module in (routes_search, routes_products, routes_events, routes_ops, routes_pages):
        app.register_blueprint(module.bp)
    return app
