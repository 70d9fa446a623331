"""GET /search and GET /suggest."""

from __future__ import annotations

import re
import uuid
from typing import Any

from flask import Blueprint, jsonify, request

from shopsearch.plugin.documents import public_source
from shopsearch.plugin.search_types import ScoredHit, SearchResponse

from .app import service
from .errors import ApiError, bad_parameter
from .params import parse_params, request_models

bp = Blueprint("search", __name__)


def hit_json(hit: ScoredHit, explain: bool) -> dict[str, Any]:
    """One result as JSON: id, rank, score, the public product fields, and when explaining ``stages`` (and
    ``contributions``: the conversion model's per-feature contributions, for hits it scored)."""
    out: dict[str, Any] = {"id": hit.id, "rank": hit.rank, "score": float(hit.score)}
    out.update({k: v for k, v in public_source(hit.source).items() if k != "id"})
    if explain:
        out["stages"] = {k: float(v) for k, v in hit.stages.items()}
        if hit.contributions:
            out["contributions"] = {k: float(v) for k, v in hit.contributions.items()}
    return out


def response_json(resp: SearchResponse, explain: bool, query_id: str) -> dict[str, Any]:
    """The /search body for a SearchResponse."""
    return {
        "query_id": query_id,
        "query": resp.query,
        "profile": resp.profile,
        "page": resp.page,
        "size": resp.size,
        "total": resp.total,
        "hits": [hit_json(h, explain) for h in resp.hits],
        "facets": {name: [{"value": str(v), "count": int(c)} for v, c in values]
                   for name, values in resp.facets.items()},
        "timings_ms": {k: round(float(v), 3) for k, v in resp.timings_ms.items()},
        "degraded": bool(resp.degraded),
        "notes": list(resp.notes),
    }


def value_error_to_api(exc: ValueError, names: tuple[str, ...]) -> ApiError:
    """A searcher's ValueError as a 400 naming the parameter its message mentions (first match)."""
    message = str(exc)
    if type(exc).__name__ == "UnknownProfile":
        return bad_parameter("profile", message)
    if re.search(r"\bquery\b", message) and "q" in names:
        return bad_parameter("q", message)
    for name in names:
        if re.search(rf"\b{re.escape(name)}\b", message):
            return bad_parameter(name, message)
    return bad_parameter(None, message)


@bp.get("/search")
def search():
    """Hybrid search, then the profile's rerank stages, with filters, facets, paging and optional explanation."""
    svc = service()
    model = request_models(svc.config).search
    params = parse_params(model, request.args)
    pipeline = svc.get_pipeline()
    try:
        resp = pipeline.search(params.request(), context=params.context())
    except ValueError as exc:
        raise value_error_to_api(exc, tuple(model.model_fields)) from exc
    svc.metrics.observe_search(resp.timings_ms, resp.degraded)
    return jsonify(response_json(resp, params.explain, str(uuid.uuid4())))


@bp.get("/suggest")
def suggest():
    """Query autocomplete: up to ``size`` completions of the prefix ``q``."""
    svc = service()
    model = request_models(svc.config).suggest
    params = parse_params(model, request.args)
    searcher = svc.get_searcher()
    if not callable(getattr(searcher, "suggest", None)):
        raise ApiError(501, "not_implemented", "autocomplete is not available in this build")
    try:
        suggestions = list(searcher.suggest(params.q, params.size))
    except ValueError as exc:
        raise value_error_to_api(exc, tuple(model.model_fields)) from exc
    return jsonify({"query": params.q, "suggestions": [str(s) for s in suggestions[:params.size]]})
