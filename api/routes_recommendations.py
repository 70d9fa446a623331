"""GET /recommendations: "for you", "frequently bought together", "recently viewed" and "popular" lists for a
shopper (reranker/recommendations.py), answered from the event history's memory and the engine; never a log
read."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from shopsearch.plugin.search_types import ScoredHit
from shopsearch.reranker.event_history import affinity_key

from .app import service
from .auth import may_read_history, role
from .errors import ApiError
from .limits import budget
from .params import parse_params, request_models
from .routes_search import hit_json

bp = Blueprint("recommendations", __name__)


@bp.get("/recommendations")
@role("search")
@budget("search")
def recommendations():
    """The lists for ``context`` (home, product, cart), each labelled with its source; popular products when the
    shopper has no history. A ``product_id`` the catalog does not hold is a 404."""
    svc = service()
    params = parse_params(request_models(svc.config).recommendations, request.args)
    searcher = svc.get_searcher()
    if params.product_id is not None and searcher.get(params.product_id) is None:
        raise ApiError(404, "product_not_found", f"product {params.product_id!r} doesn't exist", "product_id")
    seeds = [params.product_id] if params.product_id else []
    inputs = svc.get_pipeline().history.recommendation_inputs(_history_key(svc, params), seeds, params.context)
    lists = svc.get_recommender().recommend(inputs, params.context, params.product_id, params.size)
    return jsonify({"client_id": params.client_id, "context": params.context, "product_id": params.product_id,
                    "lists": [{"source": rl.source,
                               "hits": [hit_json(ScoredHit(id=r.id, rank=i, score=r.score, source=dict(r.source)),
                                                 explain=False) for i, r in enumerate(rl.items, start=1)]}
                              for rl in lists]})


def _history_key(svc, params) -> str | None:
    """Whose history the lists may read. The search key is public and a user id can be guessed, so a user's
    history needs an admin key or the shopper's ``client_token``; anyone else's ``client_id`` is read as an
    anonymous session's id only, which is random and known to that browser alone."""
    client = params.client_id
    if client is None:
        return None
    return client if may_read_history(svc.signer, client, params.client_token) else affinity_key(None, client)
