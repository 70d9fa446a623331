"""GET /products/<id> and GET /products/<id>/similar."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from shopsearch.plugin.documents import public_source
from shopsearch.plugin.engine import IndexNotFound

from .app import service
from .auth import role
from .errors import ApiError
from .limits import budget
from .params import ProductPath, QueryParams, parse_params, request_models
from .routes_search import hit_json, value_error_to_api

bp = Blueprint("products", __name__, url_prefix="/products")


def _not_found(product_id: str) -> ApiError:
    return ApiError(404, "product_not_found", f"product {product_id!r} doesn't exist", "product_id")


@bp.get("/<path:product_id>/similar")  # path: a catalog id may hold a slash
@role("search")
@budget("search")
def similar(product_id: str):
    """Products like ``product_id`` (nearest vectors), with the same filters as /search."""
    svc = service()
    parse_params(ProductPath, {"product_id": product_id})
    model = request_models(svc.config).similar
    params = parse_params(model, request.args)
    searcher = svc.get_searcher()
    try:
        hits = searcher.similar(product_id, size=params.size, filters=params.filters())
    except IndexNotFound:
        raise
    except KeyError:  # plugin.hybrid.ProductNotFound
        # "/products/a/similar" is also the page of a product whose id is "a/similar" (ids may hold a slash)
        doc = searcher.get(f"{product_id}/similar")
        if doc is not None:
            return jsonify(public_source(doc))
        raise _not_found(product_id) from None
    except ValueError as exc:
        raise value_error_to_api(exc, tuple(model.model_fields)) from exc
    return jsonify({"id": product_id, "hits": [hit_json(h, explain=False) for h in hits]})


@bp.get("/<path:product_id>")
@role("search")
@budget("search")
def product(product_id: str):
    """The stored product (public fields only)."""
    parse_params(ProductPath, {"product_id": product_id})
    parse_params(QueryParams, request.args)  # it takes none
    doc = service().get_searcher().get(product_id)
    if doc is None:
        raise _not_found(product_id)
    return jsonify(public_source(doc))
