"""GET /search and GET /suggest."""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import replace
from typing import Any

from flask import Blueprint, g, jsonify, request

from shopsearch.plugin.documents import public_source
from shopsearch.plugin.engine import EngineRejected
from shopsearch.plugin.profiles import ProfileError, UnknownProfile
from shopsearch.plugin.search_types import ScoredHit, SearchResponse
from shopsearch.plugin.suggest import mix_suggestions
from shopsearch.reranker.exploration import explore
from shopsearch.reranker.interleaving import list_seed, search_interleaved

from .app import service
from .auth import may_read_history, role
from .errors import ApiError, bad_parameter, engine_refused, profile_invalid
from .hit_tokens import HitSigner
from .limits import budget
from .overload import bounded, request_deadline
from .params import parse_params, request_models
from .query_log import client_id, explained_stages, log_query, query_record

MAX_DID_YOU_MEAN = 3  # "did you mean" suggestions a zero-hit search returns at most

bp = Blueprint("search", __name__)


def hit_json(hit: ScoredHit, explain: bool, token: str | None = None) -> dict[str, Any]:
    """One result as JSON: id, rank, score, the public product fields, its event ``token`` (on /search: events
    about this hit send it back, api/hit_tokens.py), and when explaining ``stages`` (and ``contributions``: the
    conversion model's per-feature contributions, for hits it scored)."""
    out: dict[str, Any] = {"id": hit.id, "rank": hit.rank, "score": float(hit.score)}
    if token is not None:
        out["token"] = token
    out.update({k: v for k, v in public_source(hit.source).items() if k != "id"})
    if hit.highlights:
        out["highlights"] = dict(hit.highlights)
    if explain:
        out["stages"] = explained_stages(hit)
        if hit.contributions:
            out["contributions"] = {k: float(v) for k, v in hit.contributions.items()}
    return out


def response_json(resp: SearchResponse, explain: bool, query_id: str, signer: HitSigner) -> dict[str, Any]:
    """The /search body for a SearchResponse; each hit's token is signed now for (``query_id``, its id)."""
    t = int(time.time())
    return {
        "query_id": query_id,
        "query": resp.query,
        "profile": resp.profile,
        "page": resp.page,
        "size": resp.size,
        "total": resp.total,
        "hits": [hit_json(h, explain, signer.token(query_id, h.id, t)) for h in resp.hits],
        "facets": {name: [{"value": str(v), "count": int(c)} for v, c in values]
                   for name, values in resp.facets.items()},
        "timings_ms": {k: round(float(v), 3) for k, v in resp.timings_ms.items()},
        "degraded": bool(resp.degraded),
        "degraded_reasons": list(resp.degraded_reasons),
        "notes": list(resp.notes),
        "correction": resp.correction,
        "did_you_mean": list(resp.did_you_mean),
        "relaxed": bool(resp.relaxed),
        "rules_applied": list(resp.rules_applied),
        "redirect": resp.redirect,
    }


def value_error_to_api(exc: ValueError, names: tuple[str, ...]) -> ApiError:
    """A searcher's ValueError as a 400 naming the parameter its message mentions (first match); the engine's
    refusal of a request every check here passed, as a 400 that keeps the engine's text for the log; a profile
    file that does not load, as a 500 (:func:`~.errors.profile_invalid`)."""
    message = str(exc)
    if isinstance(exc, EngineRejected):
        return engine_refused(exc)
    if isinstance(exc, ProfileError):
        return profile_invalid(exc)
    if isinstance(exc, UnknownProfile):
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
@bounded
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
    resp = with_popular_did_you_mean(svc, resp)
    svc.metrics.observe_search(resp.timings_ms, resp.degraded, resp.degraded_reasons)
    if request.method != "HEAD":  # a monitor's or link checker's probe: no shopper saw this list
        log_search(svc, params, resp, query_id)
    return jsonify(response_json(resp, params.explain, query_id, svc.signer))


def with_popular_did_you_mean(svc: Any, resp: SearchResponse) -> SearchResponse:
    """A search that found nothing (or only through its relaxed form) also offers the popular queries a few
    edits from it (plugin/popular_queries.py: searched by several shoppers, finding products), after the
    speller's suggestion; at most :data:`MAX_DID_YOU_MEAN` in all."""
    if (resp.total and not resp.relaxed) or svc.popular_queries is None or not resp.query.strip():
        return resp
    popular = svc.popular_queries.get().near(resp.query, MAX_DID_YOU_MEAN)
    if not popular:
        return resp
    merged = list(dict.fromkeys([*resp.did_you_mean, *popular]))[:MAX_DID_YOU_MEAN]
    return replace(resp, did_you_mean=tuple(merged))


def log_search(svc: Any, params: Any, resp: SearchResponse, query_id: str) -> None:
    """Spool the served search's UBI query record (api/query_log.py), with the client's experiment and arm and
    the page's exploration swaps."""
    record = query_record(params, resp, query_id, depth=svc.config.ubi_feature_depth,
                          attributes={"index": svc.config.index, **experiment_attributes()})
    log_query(svc, record)


def experiment_search(svc: Any, pipeline: Any, params: Any, query_id: str) -> SearchResponse:
    """The page for ``params``, through the client's experiment when it is in one (reranker/experiments.py).

    ab: the arm's profile serves; interleave: both profiles run and their team-draft interleaving serves, its coin
    flips seeded by the result list (``list_seed``: experiment, client, query, filters, sort), so every page of the
    list is a slice of one merged list. An interleaved client's search sorted other than by relevance is served
    by the baseline profile (merging two price-sorted lists would break the order) and logged with
    ``not_interleaved`` so the report leaves it out. A request without a client id, or with an explicit
    ``profile=``, is served as asked. A page that is not interleaved then takes its profile's exploration
    (reranker/exploration.py, seeded by ``query_id``). ``g.experiment_attributes`` keeps what the query log records
    (:func:`experiment_attributes`). Every search runs under the request's deadline (api/overload.py).
    """
    proven = params.user_id is not None and may_read_history(svc.signer, params.user_id, params.client_token)
    req, context, deadline = params.request(), params.context(user_proven=proven), request_deadline()
    explicit = bool(request.args.get("profile", "").strip())  # the client's choice overrides any experiment
    client = client_id(params)
    assignment = None if explicit or svc.experiments is None else svc.experiments.assign(client)
    g.experiment_attributes = {}
    if assignment is not None:
        try:
            return _assigned_search(pipeline, req, context, deadline, assignment, client, query_id)
        except UnknownProfile as exc:  # an arm's profile removed or renamed since the file was read
            svc.experiments.arm_unservable(assignment.experiment, str(exc))
            g.experiment_attributes = {}
    return _explored(pipeline, req, context, deadline, query_id)


def _assigned_search(pipeline: Any, req: Any, context: Any, deadline: Any, assignment: Any, client: str | None,
                     query_id: str) -> SearchResponse:
    """The page for a client in an experiment (:func:`experiment_search`)."""
    if assignment.mode == "interleave" and req.sort == "relevance":
        resp, teams = search_interleaved(lambda r: pipeline.search(r, context=context, deadline=deadline), req,
                                         seed=list_seed(assignment.experiment, client or "", req),
                                         profiles=assignment.profiles, max_size=pipeline.limits.max_size)
        g.experiment_attributes = assignment.query_attributes(teams)
        return resp  # the interleaving is this page's randomisation: no exploration on top
    if assignment.mode == "interleave":
        g.experiment_attributes = {**assignment.query_attributes(), "not_interleaved": f"sort={req.sort}"}
        req = replace(req, profile=assignment.profiles[0])
    else:
        g.experiment_attributes = assignment.query_attributes()
        req = replace(req, profile=assignment.arm)
    return _explored(pipeline, req, context, deadline, query_id)


def _explored(pipeline: Any, req: Any, context: Any, deadline: Any, query_id: str) -> SearchResponse:
    """``req``'s page with its profile's exploration (reranker/exploration.py, seeded by ``query_id``)."""
    resp = pipeline.search(req, context=context, deadline=deadline)
    resp, explored = explore(resp, pipeline.profiles.get(resp.profile).explore, req=req, seed=query_id)
    if explored is not None:
        g.experiment_attributes = {**g.experiment_attributes, "explore": explored}
    return resp


def experiment_attributes() -> dict[str, Any]:
    """This request's UBI query_attributes from its experiment: ``experiment``, ``arm`` (and ``teams``, the profile
    of each served position, when interleaved; ``not_interleaved``, why, when an interleaved client's search was
    not), and ``explore`` when the page explored; {} when neither."""
    return dict(g.get("experiment_attributes") or {})


@bp.get("/suggest")
@role("search")
@budget("search")
def suggest():
    """Query autocomplete: up to ``size`` completions of the prefix ``q``: popular past queries (kind ``query``,
    from the background-refreshed aggregate of the query log) mixed with product titles (kind ``product``)."""
    svc = service()
    model = request_models(svc.config).suggest
    params = parse_params(model, request.args)
    searcher = svc.get_searcher()
    if not callable(getattr(searcher, "suggest", None)):
        raise ApiError(501, "not_implemented", "autocomplete is not available in this build")
    try:
        titles = [str(s) for s in searcher.suggest(params.q, params.size)]
    except ValueError as exc:
        raise value_error_to_api(exc, tuple(model.model_fields)) from exc
    popular = svc.popular_queries.get().lookup(params.q, params.size) if svc.popular_queries is not None else []
    return jsonify({"query": params.q, "suggestions": [s._asdict() for s in mix_suggestions(popular, titles,
                                                                                             params.size)]})
