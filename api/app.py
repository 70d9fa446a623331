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
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

from flask import Flask, current_app
from werkzeug.middleware.proxy_fix import ProxyFix

from shopsearch.events import EventLog
from shopsearch.plugin.ubi_spool import SpoolDrainer, UbiSpool
from shopsearch.plugin.ubi_store import open_ubi_store
from shopsearch.settings import Settings, load_settings
from shopsearch.ubi import UbiEvent, UbiQuery

from . import auth, limits, overload, request_guards, response_headers
from .errors import register_error_handlers
from .event_gate import EventGate, GateLimits, recent_ids_store
from .hit_tokens import HitSigner, signing_key
from .keys import KeyStore
from .metrics import Metrics

log = logging.getLogger(__name__)
WARM_RETRY_S = 10.0  # after a failed warm-up, requests go straight to their own work for this long


@dataclass
class SearchService:
    """Per-app state in ``app.extensions["shopsearch"]``: config, metrics, event log and the lazy searcher."""

    config: Settings
    metrics: Metrics
    events: EventLog
    ubi_spool: UbiSpool  # UBI records on their way to the store (plugin/ubi_spool.py)
    ubi_drainer: SpoolDrainer
    signer: HitSigner  # signs each /search hit's event token (api/hit_tokens.py)
    searcher: Any = None
    engine: Any = None
    models: Any = None
    pipeline: Any = None
    experiments: Any = None  # the ExperimentStore (shopsearch.reranker.experiments) of the experiments_file setting
    recommender: Any = None  # GET /recommendations' Recommender (reranker/recommendations.py), built on first use
    popular_queries: Any = None  # the PopularQueryCache /suggest reads (plugin/popular_queries.py)
    warmed: bool = False  # whether warm() has run (see there)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _warm_lock: threading.Lock = field(default_factory=threading.Lock)
    _warm_failed_at: float = float("-inf")  # when warm() last failed (monotonic)
    event_gate: EventGate = field(init=False)  # what POST /events checks before storing (api/event_gate.py)

    def __post_init__(self) -> None:
        self.event_gate = EventGate(self.signer, self.find_product, GateLimits.from_settings(self.config),
                                    recent_ids=recent_ids_store(self.config))

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

    def warm(self) -> None:
        """Build what a search needs once per process (engine, searcher, query encoder, the index's speller, the
        profiles' models) before a shopper's deadline starts: at worker boot under ``serve``, else before the
        first search. Best effort: a failure is logged and retried WARM_RETRY_S later; the requests meanwhile build
        what they need themselves (under their deadlines) and report their own errors."""
        if self.warmed or time.monotonic() - self._warm_failed_at < WARM_RETRY_S:
            return
        with self._warm_lock:
            if self.warmed or time.monotonic() - self._warm_failed_at < WARM_RETRY_S:
                return
            try:
                pipeline, searcher = self.get_pipeline(), self.get_searcher()
                searcher.spellers.get()
                searcher.embeddings.embed("warm up")
                loaded = pipeline.warm_models()
            except Exception as exc:  # noqa: BLE001 - the request that follows reports the failure itself
                # Not retried for a while: with the engine down or frozen, every request would wait for it first.
                self._warm_failed_at = time.monotonic()
                log.warning("warm-up failed (%s); retried in %.0f s", exc, WARM_RETRY_S)
                return
            self.warmed = True
            log.info("warm: searcher, query encoder, speller and models loaded (%s)", ", ".join(loaded) or "none")

    def get_recommender(self) -> Any:
        """The Recommender over the searcher's engine and index (its vector cache lives as long as the app)."""
        if self.recommender is None:
            from shopsearch.reranker.recommendations import EngineCatalog, Recommender

            searcher = self.get_searcher()
            with self._lock:
                if self.recommender is None:
                    self.recommender = Recommender(EngineCatalog(searcher.engine, searcher.index))
        return self.recommender

    def log_ubi(self, queries: list[UbiQuery], events: list[UbiEvent], then: Any = None) -> None:
        """Spool UBI records for the store (the drainer starts with the first); raises SpoolFull when full.
        ``then`` runs once they are spooled; if it raises they are taken back out (UbiSpool.append)."""
        self.ubi_spool.append(queries, events, then=then)
        try:
            self.ubi_drainer.start()  # its first pass drains these records
        except RuntimeError as exc:  # no thread to be had: the records are spooled; the next request starts it
            log.error("UBI spool drainer could not start: %s", exc)

    def find_product(self, product_id: str) -> dict[str, Any] | None:
        """The catalog's ``product_id`` (its public fields), or None (one engine lookup; POST /events only, never in
        a /search)."""
        return self.get_searcher().get(product_id)

    def close(self) -> None:
        """Drain the UBI spool once more, stop the event history's refresh and close the engine (a worker's
        graceful exit)."""
        self.ubi_drainer.stop()
        self.stop_history()
        if self.popular_queries is not None:
            self.popular_queries.stop()
        if self.engine is not None:
            self.engine.close()

    def stop_history(self) -> None:
        """Stop the event history's background refresh (api tests share one engine, so they stop only this)."""
        stop = getattr(getattr(self.pipeline, "history", None), "stop", None)
        if callable(stop):
            stop()

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

    # A refused or reset connection moves on to the next node (a killed node costs no failed search), but a
    # timeout is not retried: a shopper's request must fail within engine_timeout_s (503), not a multiple of it.
    return open_engine(cfg.engine, settings=cfg, timeout=cfg.engine_timeout_s,
                       max_retries=len(cfg.opensearch_urls) - 1, retry_on_timeout=False)


def build_searcher(cfg: Settings, engine: Any = None) -> tuple[Any, Any]:
    """Open the engine (unless given), load the query encoder and the ranking profiles; returns (engine, searcher).

    The query encoder follows ``cfg.query_encoder`` (ONNX on CPU by default, exported once under
    ``<home>/onnx``); any ONNX problem falls back to the torch BiEncoder with a warning.
    """
    from shopsearch.indexer.encoder_record import check_query_encoder
    from shopsearch.indexer.onnx_encoder import load_query_encoder
    from shopsearch.plugin.hybrid import HybridSearcher
    from shopsearch.plugin.profiles import ProfileStore

    engine = engine if engine is not None else open_configured_engine(cfg)
    encoder = load_query_encoder(cfg.model, mode=cfg.query_encoder, cache_dir=cfg.onnx_dir)
    check_query_encoder(engine, cfg.index, encoder)  # warns when the index was embedded by another model
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

    history = EventLogHistory(cfg.events_dir, lookup, max_products=cfg.history_max_products,
                              max_users=cfg.history_max_users)
    return RankingPipeline(searcher, models, history)


def build_experiments(cfg: Settings) -> Any:
    """The ExperimentStore of ``cfg.experiments_file`` (none: no experiments), its arms checked against the profiles."""
    from shopsearch.plugin.profiles import ProfileStore
    from shopsearch.reranker.experiments import ExperimentStore

    return ExperimentStore(cfg.experiments_file, profiles=lambda: ProfileStore(settings=cfg).names())


def build_popular_queries(cfg: Settings) -> Any:
    """The popular-query cache of /suggest over the configured engine's query log (its store opened on the first
    refresh, in the background)."""
    from shopsearch.plugin.popular_queries import PopularQueryCache

    stores: list[Any] = []

    def load() -> Any:
        if not stores:
            stores.append(open_ubi_store(cfg))
        return stores[0].iter_queries()

    return PopularQueryCache(load, index=cfg.index, refresh_s=cfg.suggest_queries_refresh_s,
                             window_days=cfg.suggest_queries_window_days,
                             min_clients=cfg.suggest_queries_min_clients, max_queries=cfg.suggest_queries_max)


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
    if cfg.trusted_proxies:  # the client IP is the entry that many trusted proxies back in X-Forwarded-For
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=cfg.trusted_proxies)  # type: ignore[method-assign]
    app.json.sort_keys = False
    metrics = Metrics()
    spool = UbiSpool(cfg.ubi_spool_dir, cfg.ubi_spool_max_bytes)
    # The drainer's store has a client of its own: its bulk writes never hold up a search's connection.
    drainer = SpoolDrainer(spool, lambda: open_ubi_store(cfg, writer=True), cfg.ubi_flush_interval_s)
    app.extensions["shopsearch"] = SearchService(config=cfg, metrics=metrics, events=EventLog(cfg.events_dir),
                                                 ubi_spool=spool, ubi_drainer=drainer,
                                                 signer=HitSigner(signing_key(cfg)), searcher=searcher,
                                                 engine=engine, models=models,
                                                 experiments=build_experiments(cfg),
                                                 popular_queries=build_popular_queries(cfg))
    if spool.segments():  # what a stopped or killed process left
        drainer.start()
    metrics.init_app(app)
    register_error_handlers(app)
    request_guards.init_app(app)  # hostile URLs and JSON rejected before anything else looks at them
    response_headers.init_app(app)
    auth.init_app(app, cfg, KeyStore(cfg.keys_file))  # before the limits: they count per verified key
    limits.init_app(app, cfg)
    overload.init_app(app, cfg)  # after the limits: a client over its rate limit gets its 429 first

    from . import routes_events, routes_ops, routes_pages, routes_products, routes_recommendations, routes_search

    # routes_pages: the storefront (/) and relevance console (/console); HTML, not part of /openapi.json.
    for module in (routes_search, routes_products, routes_recommendations, routes_events, routes_ops, routes_pages):
        app.register_blueprint(module.bp)
    return app
