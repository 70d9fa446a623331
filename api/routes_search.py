"""GET /search and GET /suggest."""

from __future__ import annotations

import re
import uuid
from typing import Any

from flask import Blueprint, jsonify, request
from werkzeug.datastructures import MultiDict

from shopsearch.plugin.documents import public_source
from shopsearch.plugin.search_types import ScoredHit, SearchResponse
from shopsearch.reranker.pipeline import SearchContext

from .app import service
from .errors import ApiError, bad_parameter
from .params import SEARCH_PARAMS, SUGGEST_PARAMS, check_known, parse_int, parse_query, parse_search

bp = Blueprint("search", __name__)

# Who is searching (optional), for the conversion model's affinity features; see api/openapi.py.
CONTEXT_PARAMS = ("user_id", "session_id")
MAX_CONTEXT_ID = 128


def parse_context(args: MultiDict) -> tuple[SearchContext, MultiDict]:
    """The shopper context (user_id, session_id) and the remaining parameters for :func:`parse_search`.

    Raises:
        ApiError: 400 when either is repeated, blank or longer than 128 characters.
    """
    rest = args.copy()
    values: dict[str, str | None] = {}
    for name in CONTEXT_PARAMS:
        given = rest.poplist(name)
        if len(given) > 1:
            raise bad_parameter(name, f"{name} may be given once; got {len(given)} values")
        value = given[0].strip() if given else None
        if value is not None and not 0 < len(value) <= MAX_CONTEXT_ID:
            raise bad_parameter(name, f"{name} must be a non-empty string of at most {MAX_CONTEXT_ID} "
                                      f"characters; got {given[0][:40]!r}")
        values[name] = value
    return SearchContext(**values), rest


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
    context, args = parse_context(request.args)
    req = parse_search(args, svc.config)
    pipeline = svc.get_pipeline()
    try:
        resp = pipeline.search(req, context=context)
    except ValueError as exc:
        raise value_error_to_api(exc, SEARCH_PARAMS) from exc
    svc.metrics.observe_search(resp.timings_ms, resp.degraded)
    return jsonify(response_json(resp, req.explain, str(uuid.uuid4())))


@bp.get("/suggest")
def suggest():
    """Query autocomplete: up to ``size`` completions of the prefix ``q``."""
    svc = service()
    check_known(request.args, SUGGEST_PARAMS)
    prefix = parse_query(request.args, svc.config)
    size = parse_int(request.args, "size", 10, 1, min(svc.config.max_size, 50))
    searcher = svc.get_searcher()
    if not callable(getattr(searcher, "suggest", None)):
        raise ApiError(501, "not_implemented", "autocomplete is not available in this build")
    try:
        suggestions = list(searcher.suggest(prefix, size))
    except ValueError as exc:
        raise value_error_to_api(exc, SUGGEST_PARAMS) from exc
    return jsonify({"query": prefix, "suggestions": [str(s) for s in suggestions[:size]]})
