"""GET /search and GET /suggest."""

from __future__ import annotations

import re
import uuid
from dataclasses import replace
from typing import Any

from flask import Blueprint, g, jsonify, request

from shopsearch.plugin.documents import public_source
from shopsearch.plugin.search_types import ScoredHit, SearchResponse
from shopsearch.reranker.interleaving import search_interleaved

from .app import service
from .auth import role
from .errors import ApiError, bad_parameter
from .limits import budget
from .params import parse_params, request_models
from .query_log import client_id, explained_stages, log_query, query_record

bp = Blueprint("search", __name__)


def hit_json(hit: ScoredHit, explain: bool) -> dict[str, Any]:
    """One result as JSON: id, rank, score, the public product fields, and when explaining ``stages`` (and
    ``contributions``: the conversion model's per-feature contributions, for hits it scored)."""
    out: dict[str, Any] = {"id": hit.id, "rank": hit.rank, "score": float(hit.score)}
    out.update({k: v for k, v in public_source(hit.source).items() if k != "id"})
    if hit.highlights:
        out["highlights"] = dict(hit.highlights)
    if explain:
        out["stages"] = explained_stages(hit)
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
@role("search")
@budget("search")
def search():
    """Hybrid search, then the profile's rerank stages, with filters, facets, paging and optional explanation."""
    svc = service()
    model = request_models(svc.config).search
    params = parse_params(model, request.args)
    pipeline = svc.get_pipeline()
    query_id = str(uuid.uuid4())
    try:
        resp = experiment_search(svc, pipeline, params, query_id)
    except ValueError as exc:
        raise value_error_to_api(exc, tuple(model.model_fields)) from exc
    svc.metrics.observe_search(resp.timings_ms, resp.degraded)
    log_search(svc, params, resp, query_id)
    return jsonify(response_json(resp, params.explain, query_id))


def log_search(svc: Any, params: Any, resp: SearchResponse, query_id: str) -> None:
    """Spool the served search's UBI query record (api/query_log.py), with the client's experiment and arm."""
    record = query_record(params, resp, query_id, depth=svc.config.ubi_feature_depth,
                          attributes=experiment_attributes())
    log_query(svc, record)


def experiment_search(svc: Any, pipeline: Any, params: Any, query_id: str) -> SearchResponse:
    """The page for ``params``, through the client's experiment when it is in one (reranker/experiments.py).

    ab: the arm's profile serves; interleave: both profiles run and their team-draft interleaving (seeded by
    ``query_id``) serves. A request without a client id, or with an explicit ``profile=``, is served as asked.
    ``g.experiment_attributes`` keeps what the query log records (:func:`experiment_attributes`).
    """
    req, context = params.request(), params.context()
    explicit = bool(request.args.get("profile", "").strip())  # the client's choice overrides any experiment
    assignment = None if explicit or svc.experiments is None else svc.experiments.assign(client_id(params))
    g.experiment_attributes = {}
    if assignment is None:
        return pipeline.search(req, context=context)
    if assignment.mode == "interleave":
        resp, teams = search_interleaved(lambda r: pipeline.search(r, context=context), req, seed=query_id,
                                         profiles=assignment.profiles)
        g.experiment_attributes = assignment.query_attributes(teams)
        return resp
    g.experiment_attributes = assignment.query_attributes()
    return pipeline.search(replace(req, profile=assignment.arm), context=context)


def experiment_attributes() -> dict[str, Any]:
    """This request's UBI query_attributes from its experiment: ``experiment``, ``arm`` (and ``teams``, the profile
    of each served position, when interleaved); {} when the client is in none."""
    return dict(g.get("experiment_attributes") or {})


@bp.get("/suggest")
@role("search")
@budget("search")
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
