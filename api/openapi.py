"""The OpenAPI 3.1 description of the search API, built from the same constants the handlers validate with.

Served at GET /openapi.json; tests validate real responses against these schemas (JSON Schema 2020-12).
"""

from __future__ import annotations

from typing import Any

from shopsearch.plugin.documents import FACET_FIELDS

from .config import ApiConfig
from .events import EVENT_FIELDS, EVENT_TYPES, MAX_ID

REF = "#/components/schemas/"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF + name}


def _nullable(kind: str) -> dict[str, Any]:
    return {"type": [kind, "null"]}


def _param(name: str, schema: dict[str, Any], description: str, *, where: str = "query", required: bool = False,
           explode: bool | None = None) -> dict[str, Any]:
    p = {"name": name, "in": where, "required": required, "description": description, "schema": schema}
    if explode is not None:
        p["style"], p["explode"] = "form", explode
    return p


def _json(schema_name: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(schema_name)}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {400: "A malformed or out-of-limit parameter (named in error.parameter)",
            404: "Unknown product", 413: "Body too large or too many events", 415: "Body is not JSON",
            422: "Parameters valid alone but inconsistent together", 500: "Unexpected error (logged)",
            501: "Not available in this build",
            503: "Engine unavailable or index missing; retry after the Retry-After seconds"}
    out = {str(c): _json("Error", text[c]) for c in codes}
    if 503 in codes:
        out["503"]["headers"] = {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}}
    return out


def _filter_params() -> list[dict[str, Any]]:
    return [
        _param("brand", {"type": "array", "items": {"type": "string"}}, "Brands to keep (repeat or comma-separate)",
               explode=True),
        _param("category", {"type": "array", "items": {"type": "string"}},
               "Categories to keep, any level of the path (repeat or comma-separate)", explode=True),
        _param("price_min", {"type": "number", "minimum": 0}, "Lowest price (<= price_max, else 422)"),
        _param("price_max", {"type": "number", "minimum": 0}, "Highest price"),
        _param("in_stock", {"type": "boolean"}, "Only products in (true) or out of (false) stock"),
        _param("rating_min", {"type": "number", "minimum": 0, "maximum": 5}, "Lowest average rating"),
    ]


def _schemas() -> dict[str, Any]:
    product_props = {
        "id": {"type": "string"}, "title": {"type": "string"}, "description": {"type": "string"},
        "brand": _nullable("string"), "category": {"type": "array", "items": {"type": "string"}},
        "price": _nullable("number"), "rating": _nullable("number"), "review_count": _nullable("integer"),
        "popularity": _nullable("number"), "in_stock": _nullable("boolean"),
        "attributes": {"type": "object", "additionalProperties": {"type": "string"}},
    }
    hit_props = {k: v for k, v in product_props.items() if k != "id"}
    return {
        "Error": {"type": "object", "required": ["error"], "additionalProperties": False, "properties": {
            "error": {"type": "object", "required": ["code", "message", "parameter"], "additionalProperties": False,
                      "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                                     "parameter": _nullable("string")}}}},
        "Product": {"type": "object", "required": ["id", "title"], "properties": product_props},
        "Hit": {"type": "object", "required": ["id", "rank", "score"], "properties": {
            "id": {"type": "string"}, "rank": {"type": "integer", "minimum": 1}, "score": {"type": "number"},
            **hit_props,
            "stages": {"type": "object", "additionalProperties": {"type": "number"},
                       "description": "Per-stage scores and ranks (bm25, knn, fused, cross_encoder, rerank, "
                                      "conversion, conversion_raw, conversion_rrf, as far as the hit went; rerank "
                                      "and conversion_rrf when the profile fuses that stage with RRF); only with "
                                      "explain=true"},
            "contributions": {"type": "object", "additionalProperties": {"type": "number"},
                              "description": "The conversion model's per-feature contributions (and 'bias'), "
                                             "summing to stages.conversion_raw; only with explain=true, only for "
                                             "hits the conversion stage scored"}}},
        "FacetValue": {"type": "object", "required": ["value", "count"], "additionalProperties": False,
                       "properties": {"value": {"type": "string"}, "count": {"type": "integer", "minimum": 0}}},
        "SearchResponse": {
            "type": "object", "additionalProperties": False,
            "required": ["query_id", "query", "profile", "page", "size", "total", "hits", "facets", "timings_ms",
                         "degraded", "notes"],
            "properties": {
                "query_id": {"type": "string", "format": "uuid",
                             "description": "Send back with POST /events to tie behaviour to this search"},
                "query": {"type": "string"}, "profile": {"type": "string"},
                "page": {"type": "integer", "minimum": 1}, "size": {"type": "integer", "minimum": 1},
                "total": {"type": "integer", "minimum": 0}, "hits": {"type": "array", "items": _ref("Hit")},
                "facets": {"type": "object", "propertyNames": {"enum": list(FACET_FIELDS)},
                           "additionalProperties": {"type": "array", "items": _ref("FacetValue")}},
                "timings_ms": {"type": "object", "additionalProperties": {"type": "number", "minimum": 0},
                               "description": "Milliseconds per stage: embed, retrieve, fusion, facets, rerank, "
                                              "conversion, total"},
                "degraded": {"type": "boolean"}, "notes": {"type": "array", "items": {"type": "string"}}}},
        "SimilarResponse": {"type": "object", "required": ["id", "hits"], "additionalProperties": False,
                            "properties": {"id": {"type": "string"},
                                           "hits": {"type": "array", "items": _ref("Hit")}}},
        "SuggestResponse": {"type": "object", "required": ["query", "suggestions"], "additionalProperties": False,
                            "properties": {"query": {"type": "string"},
                                           "suggestions": {"type": "array", "items": {"type": "string"}}}},
        "Event": {
            "type": "object", "additionalProperties": False, "required": ["type", "product_id", "session_id"],
            "propertyNames": {"enum": list(EVENT_FIELDS)},
            "description": "query_id and position are also required for impression and click",
            "properties": {
                "type": {"enum": list(EVENT_TYPES)},
                "query_id": {"type": "string", "maxLength": MAX_ID},
                "product_id": {"type": "string", "minLength": 1, "maxLength": MAX_ID},
                "position": {"type": "integer", "minimum": 1},
                "user_id": {"type": "string", "maxLength": MAX_ID},
                "session_id": {"type": "string", "minLength": 1, "maxLength": MAX_ID},
                "timestamp": {"type": ["string", "number"],
                              "description": "ISO 8601 with timezone or epoch seconds; server time if absent"},
                "query": {"type": "string", "maxLength": 1024}, "price": {"type": "number", "minimum": 0}}},
        "EventsAccepted": {"type": "object", "required": ["accepted", "event_ids"], "additionalProperties": False,
                           "properties": {"accepted": {"type": "integer", "minimum": 1},
                                          "event_ids": {"type": "array", "items": {"type": "string"}}}},
        "Health": {"type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}},
        "Ready": {"type": "object", "required": ["status", "engine", "index", "concrete_index"],
                  "additionalProperties": False,
                  "properties": {"status": {"const": "ready"}, "engine": {"type": "string"},
                                 "index": {"type": "string"}, "concrete_index": {"type": "string"}}},
    }


def openapi_spec(cfg: ApiConfig) -> dict[str, Any]:
    """The OpenAPI 3.1 document for an app with settings ``cfg`` (limits appear in the parameter schemas).

    >>> openapi_spec(ApiConfig())["openapi"]
    '3.1.0'
    """
    q = _param("q", {"type": "string", "minLength": 1, "maxLength": cfg.max_query_length}, "Query text",
               required=True)
    size = _param("size", {"type": "integer", "minimum": 1, "maximum": cfg.max_size, "default": 10},
                  "Results per page")
    product_id = _param("product_id", {"type": "string", "minLength": 1, "maxLength": MAX_ID}, "Product id",
                        where="path", required=True)
    browse_q = _param("q", {"type": "string", "maxLength": cfg.max_query_length, "default": ""},
                      "Query text; blank browses (no hits, facets over the filtered products)")
    search_params = [
        browse_q, *_filter_params(),
        _param("facets", {"type": "string", "default": ",".join(FACET_FIELDS)},
               f"Comma list of facet fields ({', '.join(FACET_FIELDS)}); empty or 'none' for none"),
        _param("page", {"type": "integer", "minimum": 1, "default": 1},
               f"1-based page; page * size must be <= {cfg.max_depth} (else 422)"),
        size,
        _param("profile", {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,64}$", "default": "default"},
               "Ranking profile name (unknown: 400)"),
        _param("explain", {"type": "boolean", "default": False},
               "Add per-stage scores (and the conversion model's feature contributions) to each hit"),
        _param("user_id", {"type": "string", "minLength": 1, "maxLength": 128},
               "Shopper id, as sent with POST /events: the conversion stage uses their brand/category affinity"),
        _param("session_id", {"type": "string", "minLength": 1, "maxLength": 128},
               "Session id, as sent with POST /events: affinity of an anonymous shopper (when no user_id)"),
    ]
    return {
        "openapi": "3.1.0",
        "info": {"title": "shopsearch API", "version": "0.1.0",
                 "description": "Hybrid (BM25 + k-NN) e-commerce search. Unknown query parameters are rejected "
                                "with 400. Every error body is {\"error\": {code, message, parameter}}."},
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "paths": {
            "/search": {"get": {"operationId": "search", "summary": "Search products", "parameters": search_params,
                                "responses": {"200": _json("SearchResponse", "A page of results"),
                                              **_errors(400, 422, 500, 503)}}},
            "/suggest": {"get": {"operationId": "suggest", "summary": "Autocomplete a query prefix",
                                 "parameters": [q, size],
                                 "responses": {"200": _json("SuggestResponse", "Completions"),
                                               **_errors(400, 500, 501, 503)}}},
            "/products/{product_id}": {"get": {
                "operationId": "getProduct", "summary": "One product", "parameters": [product_id],
                "responses": {"200": _json("Product", "The product"), **_errors(400, 404, 500, 503)}}},
            "/products/{product_id}/similar": {"get": {
                "operationId": "similarProducts", "summary": "Products similar to one product",
                "parameters": [product_id, *_filter_params(), size],
                "responses": {"200": _json("SimilarResponse", "Nearest products, the product itself excluded"),
                              **_errors(400, 404, 422, 500, 503)}}},
            "/events": {"post": {
                "operationId": "postEvents", "summary": "Record storefront behaviour events",
                "requestBody": {"required": True, "content": {"application/json": {"schema": {"oneOf": [
                    _ref("Event"),
                    {"type": "array", "minItems": 1, "maxItems": cfg.max_events, "items": _ref("Event")}]}}}},
                "responses": {"202": _json("EventsAccepted", "Stored (all or nothing)"),
                              **_errors(400, 413, 415, 500)}}},
            "/healthz": {"get": {"operationId": "healthz", "summary": "Liveness",
                                 "responses": {"200": _json("Health", "The process is alive")}}},
            "/readyz": {"get": {"operationId": "readyz", "summary": "Readiness: engine answers and index exists",
                                "responses": {"200": _json("Ready", "Ready to serve"), **_errors(503)}}},
            "/metrics": {"get": {"operationId": "metrics", "summary": "Prometheus metrics",
                                 "responses": {"200": {"description": "Prometheus text format",
                                                       "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
            "/openapi.json": {"get": {"operationId": "openapi", "summary": "This document",
                                      "responses": {"200": {"description": "OpenAPI 3.1 document",
                                                            "content": {"application/json": {
                                                                "schema": {"type": "object"}}}}}}},
        },
        "components": {"schemas": _schemas()},
    }
