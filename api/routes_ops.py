"""Operations: GET /healthz, /readyz, /metrics and /openapi.json."""

from __future__ import annotations

import logging

from flask import Blueprint, jsonify

from shopsearch.plugin.engine import EngineUnavailable

from .app import service
from .errors import ApiError
from .openapi import openapi_spec

bp = Blueprint("ops", __name__)
log = logging.getLogger(__name__)


@bp.get("/healthz")
def healthz():
    """The process is alive (no engine call)."""
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():
    """Ready when the engine answers and the index (or alias) exists; 503 with Retry-After otherwise."""
    svc = service()
    cfg = svc.config
    retry = {"Retry-After": str(cfg.retry_after_s)}
    try:
        engine = svc.get_engine()
        concrete = engine.resolve_alias(cfg.index)
        exists = concrete is not None or engine.index_exists(cfg.index)
    except EngineUnavailable as exc:
        svc.metrics.engine_error("unavailable")
        raise ApiError(503, "engine_unavailable", f"search engine unavailable: {exc}", headers=retry) from None
    except Exception as exc:  # noqa: BLE001 - any failure to answer means "not ready"
        log.warning("readiness check failed: %r", exc)
        raise ApiError(503, "not_ready", f"readiness check failed: {type(exc).__name__}", headers=retry) from None
    if not exists:
        raise ApiError(503, "index_not_found", f"index {cfg.index!r} does not exist", headers=retry)
    return jsonify({"status": "ready", "engine": cfg.engine, "index": cfg.index,
                    "concrete_index": concrete or cfg.index})


@bp.get("/metrics")
def metrics():
    """Prometheus text exposition."""
    return service().metrics.exposition()


@bp.get("/openapi.json")
def openapi():
    """The OpenAPI 3.1 description of this API."""
    return jsonify(openapi_spec(service().config))
