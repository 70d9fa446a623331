"""GET /products/<id> and GET /products/<id>/similar."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from shopsearch.plugin.documents import public_source
from shopsearch.plugin.engine import IndexNotFound

from .app import service
from .errors import ApiError, bad_parameter
from .params import SIMILAR_PARAMS, check_known, parse_filters, parse_int
from .routes_search import hit_json, value_error_to_api

bp = Blueprint("products", __name__, url_prefix="/products")
MAX_ID = 128


def _check_id(product_id: str) -> None:
    if not product_id.strip() or len(product_id) > MAX_ID:
        raise bad_parameter("product_id", f"product_id must be 1 to {MAX_ID} characters; got {len(product_id)}")


def _not_found(product_id: str) -> ApiError:
    return ApiError(404, "product_not_found", f"product {product_id!r} doesn't exist", "product_id")


@bp.get("/<product_id>/similar")
def similar(product_id: str):
    """Products like ``product_id`` (nearest vectors), with the same filters as /search."""
    svc = service()
    _check_id(product_id)
    check_known(request.args, SIMILAR_PARAMS)
    filters = parse_filters(request.args)
    size = parse_int(request.args, "size", 10, 1, svc.config.max_size)
    searcher = svc.get_searcher()
    try:
        hits = searcher.similar(product_id, size=size, filters=filters)
    except IndexNotFound:
        raise
    except KeyError:  # plugin.hybrid.ProductNotFound
        raise _not_found(product_id) from None
    except ValueError as exc:
        raise value_error_to_api(exc, SIMILAR_PARAMS) from exc
    return jsonify({"id": product_id, "hits": [hit_json(h, explain=False) for h in hits]})


@bp.get("/<product_id>")
def product(product_id: str):
    """The stored product (public fields only)."""
    _check_id(product_id)
    check_known(request.args, ())
    doc = service().get_searcher().get(product_id)
    if doc is None:
        raise _not_found(product_id)
    return jsonify(public_source(doc))
