"""Operations: GET /healthz, /readyz, /metrics and /openapi.json."""

from __future__ import annotations

import logging

from flask import Blueprint, jsonify

from shopsearch.plugin.engine import EngineUnavailable

from .app import service
from .auth import role, sees_details
from .errors import ApiError
from .openapi import openapi_spec

bp = Blueprint("ops", __name__)
log = logging.getLogger(__name__)


@bp.get("/healthz")
@role("public")
def healthz():
    """The process is alive (no engine call)."""
    return jsonify({"status": "ok"})


@bp.get("/readyz")
@role("public")
def readyz():
    """Ready when the engine answers and the index (or alias) exists; 503 with Retry-After otherwise.

    On OpenSearch the answer also holds ``cluster``: its status (green/yellow/red), node count, unassigned shards
    and, for each configured (or sniffed) node, whether it answers (its URL and error for an admin key only); a
    degraded cluster that still serves the index is ready (status "ready", cluster status "yellow" and the node
    that does not answer).
    """
    svc = service()
    cfg = svc.config
    retry = {"Retry-After": str(cfg.retry_after_s)}
    cluster = None
    try:
        engine = svc.get_engine()
        concrete = engine.resolve_alias(cfg.index)
        exists = concrete is not None or engine.index_exists(cfg.index)
        if cfg.engine == "opensearch":
            cluster = engine.cluster_health().as_json()
            if not sees_details():  # node URLs are for operators, not for anyone who can reach /readyz
                cluster["hosts"] = [{"ok": h["ok"]} for h in cluster["hosts"]]
    except EngineUnavailable as exc:
        svc.metrics.engine_error("unavailable")
        raise ApiError(503, "engine_unavailable", f"search engine unavailable: {exc}", headers=retry) from None
    except Exception as exc:  # noqa: BLE001 - any failure to answer means "not ready"
        log.warning("readiness check failed: %r", exc)
        raise ApiError(503, "not_ready", f"readiness check failed: {type(exc).__name__}", headers=retry) from None
    if not exists:
        raise ApiError(503, "index_not_found", f"index {cfg.index!r} does not exist", headers=retry)
    return jsonify({"status": "ready", "engine": cfg.engine, "index": cfg.index,
                    "concrete_index": concrete or cfg.index, **({"cluster": cluster} if cluster else {})})


@bp.get("/metrics")
@role("admin", public_when="metrics_public")
def metrics():
    """Prometheus text exposition."""
    return service().metrics.exposition()


@bp.get("/openapi.json")
@role("public")
def openapi():
    """The OpenAPI 3.1 description of this API."""
    return jsonify(openapi_spec(service().config))
