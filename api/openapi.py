"""The OpenAPI 3.1 description of the search API.

The parameters come from the request models the handlers validate with (:mod:`.params`, limits from the app's
settings) and the POST /events body from the event models (:class:`shopsearch.events.EventIn`, shopsearch's
format, and :class:`shopsearch.ubi.UbiEvent`, a UBI 1.0 event); the response
schemas are written here. Served at GET /openapi.json; tests validate real responses against it (JSON Schema
2020-12) and the document against the OpenAPI 3.1 schema.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from shopsearch.events import EventIn
from shopsearch.indexer.fields import ATTRIBUTE_NAME
from shopsearch.plugin.documents import FACET_FIELDS
from shopsearch.plugin.engine import HIGHLIGHT_FIELDS
from shopsearch.plugin.search_types import DEGRADED_REASONS
from shopsearch.reranker.recommendations import CONTEXTS, SOURCES
from shopsearch.settings import Settings, load_settings
from shopsearch.ubi import UbiEvent

from .params import REPEATABLE, ProductPath, parameter_schemas, request_models

REF = "#/components/schemas/"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF + name}


def _nullable(kind: str) -> dict[str, Any]:
    return {"type": [kind, "null"]}


def parameters(model: type[BaseModel], where: str = "query") -> list[dict[str, Any]]:
    """The OpenAPI parameters of ``model``'s fields (``where``: query or path); repeatable lists explode."""
    out = []
    schemas = parameter_schemas(model)
    for name, field in model.model_fields.items():
        schema = dict(schemas[name])
        p = {"name": name, "in": where, "required": where == "path" or field.is_required(),
             "description": schema.pop("description", ""), "schema": schema}
        if schema.get("type") == "array":  # comma lists (explode false), repeatable ones also repeated
            p["style"], p["explode"] = "form", REPEATABLE in field.metadata
        out.append(p)
    return out


def _json(schema_name: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(schema_name)}}}


def _events_errors() -> dict[str, Any]:
    """POST /events' errors, with the error.code of each refusal (api/event_gate.py, docs/security.md)."""
    out = _errors(400, 409, 413, 415, 429, 500, 503)
    out["400"]["description"] = (
        "A refused batch, nothing stored; error.code says why and error.parameter names the field: invalid_event "
        "(a field's value), invalid_json, missing_token / invalid_token (a query_id without its hit's token, or "
        "another's), stale_query (a search older than event_max_age_s), missing_product, unknown_product (not in "
        "the catalog), implausible_price (a unit price far above the catalog's)")
    out["429"]["description"] = (
        "rate_limited: over a rate limit (per API key or client IP), retry after the Retry-After seconds; or "
        "session_cap / product_cap: this session (or session and product) reached its cap for the window, and "
        "Retry-After is when the window ends (do not retry sooner)")
    return out


def _errors(*codes: int) -> dict[str, Any]:
    text = {400: "A malformed or out-of-limit parameter (named in error.parameter when one is at fault)",
            404: "Unknown product", 413: "Body too large or too many events", 415: "Body is not JSON",
            409: "An event_id another request is storing right now (a retry sent to two workers at once); retry "
                 "after the Retry-After seconds: it is then answered as a duplicate",
            422: "Parameters valid alone but inconsistent together", 500: "Unexpected error (logged)",
            501: "Not available in this build",
            414: "The URL is longer than the API reads (every operation; api/request_guards.py)",
            431: "Too many or too long request headers (every operation; api/gunicorn_worker.py)",
            401: "No API key, or an unknown, revoked or expired one (WWW-Authenticate: Bearer)",
            403: "The key's role may not call this (a search key on an admin endpoint)",
            429: "Rate limit exceeded (per API key or per client IP); retry after the Retry-After seconds",
            503: "Engine unavailable or index missing (POST /events: the event spool is full); overloaded (the "
                 "worker's searches in flight or a saturated engine) or nothing found within the search deadline "
                 "(deadline_exceeded); retry after the Retry-After seconds"}
    out = {str(c): _json("Error", text[c]) for c in codes}
    for code in (409, 503):
        if code in codes:
            out[str(code)]["headers"] = {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}}
    if 429 in codes:
        out["429"]["headers"] = RATE_HEADERS
    return out


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
            "id": {"type": "string"}, "rank": {"type": "integer", "minimum": 1,
                                               "description": "The position served (1-based, over all pages)"},
            "score": {"type": "number"},
            "token": {"type": "string", "description": "/search only: send it back with POST /events about this "
                                                       "hit (with the query_id); it proves this search served this "
                                                       "product, and when"},
            **hit_props,
            "stages": {"type": "object", "additionalProperties": {"type": "number"},
                       "description": "Per-stage scores and ranks (bm25, knn, fused, cross_encoder, rerank, "
                                      "conversion, conversion_raw, conversion_rrf, as far as the hit went; rerank "
                                      "and conversion_rrf when the profile fuses that stage with RRF); only with "
                                      "explain=true"},
            "contributions": {"type": "object", "additionalProperties": {"type": "number"},
                              "description": "The conversion model's per-feature contributions (and 'bias'), "
                                             "summing to stages.conversion_raw; only with explain=true, only for "
                                             "hits the conversion stage scored"},
            "highlights": {"type": "object", "propertyNames": {"enum": list(HIGHLIGHT_FIELDS)},
                           "additionalProperties": {"type": "string"},
                           "description": "The field's text, HTML-escaped, with <em>...</em> around the words the "
                                          "query matched; only with highlight=true, only fields with a match"}}},
        "FacetValue": {"type": "object", "required": ["value", "count"], "additionalProperties": False,
                       "properties": {"value": {"type": "string"}, "count": {"type": "integer", "minimum": 0}}},
        "SearchResponse": {
            "type": "object", "additionalProperties": False,
            "required": ["query_id", "query", "profile", "page", "size", "total", "hits", "facets", "timings_ms",
                         "degraded", "degraded_reasons", "notes", "correction", "did_you_mean", "relaxed",
                         "rules_applied", "redirect"],
            "properties": {
                "query_id": {"type": "string", "format": "uuid",
                             "description": "Send back with POST /events to tie behaviour to this search"},
                "query": {"type": "string"},
                "profile": {"type": "string", "description": "The profile that ranked the list (an interleaving "
                                                            "experiment: both, as A+B)"},
                "page": {"type": "integer", "minimum": 1}, "size": {"type": "integer", "minimum": 1},
                "total": {"type": "integer", "minimum": 0,
                          "description": "Exactly how many products match: lexically, or by a vector score over "
                                         "the profile's threshold; the pages walk them all"},
                "hits": {"type": "array", "items": _ref("Hit")},
                "facets": {"type": "object",
                           "propertyNames": {"anyOf": [{"enum": list(FACET_FIELDS)},
                                                       {"pattern": r"^attr\." + ATTRIBUTE_NAME.pattern[1:]}]},
                           "additionalProperties": {"type": "array", "items": _ref("FacetValue")},
                           "description": "Counts over the matching products; each facet ignores its own filter "
                                          "and obeys the others (brand: brand; category_lvlN: category; "
                                          "category_path: category_path; price: price_min/price_max; rating: "
                                          "rating_min; attr.<name>: that attribute's attr values). Keyword facets "
                                          "(brand, category levels, attr.<name>): top values, count descending. "
                                          "category_path: the roots, then the children of each level of the "
                                          "chosen category_path (values are whole paths, 'Home > Furniture'). "
                                          "price: buckets '0-25', '25-50', ... '250+' (the edges are the "
                                          "facet_price_edges setting), each counting exactly the products its "
                                          "filter price_min=<from>&price_max=<to> selects ('250+': "
                                          "price_min=250): both edges inclusive, so a product priced exactly at "
                                          "an edge counts in the two buckets that share it; rating: '4+' ... "
                                          "'1+'; empty buckets left out"},
                "timings_ms": {"type": "object", "additionalProperties": {"type": "number", "minimum": 0},
                               "description": "Milliseconds per stage: spell, embed, retrieve, fusion, match, fetch, "
                                              "rerank, conversion, total"},
                "degraded": {"type": "boolean", "description": "Part of the search was cut short (the deadline, a "
                                                               "stage's budget or a failure): what it had was "
                                                               "served; degraded_reasons say what"},
                "degraded_reasons": {"type": "array", "items": {"enum": list(DEGRADED_REASONS)},
                                     "description": "Why it is degraded, as <stage>:<cause> codes: " + "; ".join(
                                         f"{code}: {text}" for code, text in DEGRADED_REASONS.items())},
                "notes": {"type": "array", "items": {"type": "string"}},
                "correction": {"type": ["string", "null"],
                               "description": "The query the hits are for when it is not the one typed: the "
                                              "spelling correction (\"showing results for ...\"; the vector leg "
                                              "searched it) or, with relaxed, the relaxed query; null otherwise"},
                "did_you_mean": {"type": "array", "items": {"type": "string"},
                                 "description": "Only when the query matched nothing: spelling suggestions from the "
                                                "catalog's vocabulary, then popular past queries a few edits away "
                                                "(at most 3; empty when nothing is close)"},
                "relaxed": {"type": "boolean",
                            "description": "The query matched nothing; the hits are for a relaxed form of it "
                                           "(correction: the words the catalog holds)"},
                "rules_applied": {"type": "array", "items": {"type": "string"},
                                  "description": "The merchandising rules that fired, in the order they apply "
                                                 "(<merchandising_dir>/<index>.rules.toml): a rule fires for the "
                                                 "query as typed or for the one served (correction); those the "
                                                 "typed query fires come first, in file order, and win a "
                                                 "conflict (a product, a position, the redirect), then those only "
                                                 "the served query fires; with explain, hits show their "
                                                 "pinned/boost/buried stages"},
                "redirect": {"type": ["string", "null"],
                             "description": "A rule's URL (http(s) or /path) the storefront sends the shopper to; "
                                            "null: show the results"}}},
        "SimilarResponse": {"type": "object", "required": ["id", "hits"], "additionalProperties": False,
                            "properties": {"id": {"type": "string"},
                                           "hits": {"type": "array", "items": _ref("Hit")}}},
        "RecommendationsResponse": {
            "type": "object", "required": ["client_id", "context", "product_id", "lists"],
            "additionalProperties": False,
            "properties": {"client_id": {"type": ["string", "null"]}, "context": {"enum": list(CONTEXTS)},
                           "product_id": {"type": ["string", "null"]},
                           "lists": {"type": "array", "description": "Non-empty lists only, in display order",
                                     "items": {"type": "object", "required": ["source", "hits"],
                                               "additionalProperties": False,
                                               "properties": {"source": {"enum": list(SOURCES),
                                                                         "description": "What the list is: for_you, "
                                                                         "bought_together, recently_viewed or "
                                                                         "popular (the cold-start fallback)"},
                                                              "hits": {"type": "array", "items": _ref("Hit")}}}}}},
        "SuggestResponse": {"type": "object", "required": ["query", "suggestions"], "additionalProperties": False,
                            "properties": {"query": {"type": "string"},
                                           "suggestions": {"type": "array", "items": _ref("Suggestion")}}},
        "Suggestion": {"type": "object", "required": ["text", "kind"], "additionalProperties": False,
                       "properties": {"text": {"type": "string"},
                                      "kind": {"type": "string", "enum": ["query", "product"],
                                               "description": "query: a popular past search (searched by several "
                                                              "shoppers, finding products); product: a product "
                                                              "title"}}},
        "EventsAccepted": {"type": "object", "required": ["accepted", "event_ids", "duplicate", "duplicates"],
                           "additionalProperties": False,
                           "properties": {"accepted": {"type": "integer", "minimum": 0,
                                                       "description": "Events stored by this request"},
                                          "event_ids": {"type": "array", "items": {"type": "string"}},
                                          "duplicate": {"type": "boolean",
                                                        "description": "Every event was stored before (a retry)"},
                                          "duplicates": {"type": "array", "items": {"type": "string"},
                                                         "description": "Client event_ids already stored: not "
                                                                        "stored or counted again"}}},
        "Health": {"type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}},
        "Ready": {"type": "object", "required": ["status", "engine", "index", "concrete_index"],
                  "additionalProperties": False,
                  "properties": {"status": {"const": "ready"}, "engine": {"type": "string"},
                                 "index": {"type": "string"}, "concrete_index": {"type": "string"},
                                 "cluster": _ref("ClusterHealth")}},
        "ClusterHealth": {
            "type": "object", "required": ["status", "nodes", "unassigned_shards", "hosts"],
            "additionalProperties": False, "description": "OpenSearch only: the cluster's health and which "
                                                          "configured nodes answer",
            "properties": {"status": {"enum": ["green", "yellow", "red"]}, "nodes": {"type": "integer"},
                           "unassigned_shards": {"type": "integer"},
                           "hosts": {"type": "array", "items": {
                               "type": "object", "required": ["ok"], "additionalProperties": False,
                               "description": "url and error for an admin key only (node addresses are internal)",
                               "properties": {"url": {"type": "string"}, "ok": {"type": "boolean"},
                                              "error": {"type": "string"}}}}}},
        **_event_schemas(),
    }


def _event_schemas() -> dict[str, Any]:
    """The POST /events items (EventIn's JSON Schema, named Event, and UbiEvent's) and the schemas they use."""
    schema = EventIn.model_json_schema(ref_template=REF + "{model}")
    ubi = UbiEvent.model_json_schema(ref_template=REF + "{model}")
    ubi["description"] = ("A User Behavior Insights 1.0 event (https://o19s.github.io/ubi/schema/1.0.0/"
                          "event.schema.json), told apart by its action_name. Any action is stored in the UBI log; "
                          "impression, click, add_to_cart and purchase also need what an Event needs (product: "
                          "event_attributes.object.object_id; position: event_attributes.position.ordinal.index; "
                          "session: session_id or client_id).")
    return {**schema.pop("$defs", {}), **ubi.pop("$defs", {}), "Event": {**schema, "title": "Event"},
            "UbiEvent": ubi}


def openapi_spec(cfg: Settings) -> dict[str, Any]:
    """The OpenAPI 3.1 document for an app with settings ``cfg`` (limits appear in the parameter schemas).

    >>> openapi_spec(load_settings(environ={}))["openapi"]
    '3.1.0'
    """
    models = request_models(cfg)
    product_id = parameters(ProductPath, "path")
    return with_security({
        "openapi": "3.1.0",
        "info": {"title": "shopsearch API", "version": "0.1.0",
                 "description": "Hybrid (BM25 + k-NN) e-commerce search. On /search, /suggest, /products and "
                                "/recommendations an unknown query parameter is a 400, and a blank value of an "
                                "optional parameter means it is absent (except facets, where it asks for none). "
                                "Every error body is {\"error\": {code, "
                                "message, parameter}}."},
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "paths": {
            "/search": {"get": {"operationId": "search", "summary": "Search products",
                                "parameters": parameters(models.search),
                                "responses": {"200": _json("SearchResponse", "A page of results"),
                                              **_errors(400, 422, 500, 503)}}},
            "/suggest": {"get": {"operationId": "suggest",
                                 "summary": "Autocomplete a query prefix: popular past queries, then product titles",
                                 "parameters": parameters(models.suggest),
                                 "responses": {"200": _json("SuggestResponse", "Completions"),
                                               **_errors(400, 500, 501, 503)}}},
            "/products/{product_id}": {"get": {
                "operationId": "getProduct", "summary": "One product", "parameters": product_id,
                "responses": {"200": _json("Product", "The product"), **_errors(400, 404, 500, 503)}}},
            "/products/{product_id}/similar": {"get": {
                "operationId": "similarProducts", "summary": "Products similar to one product",
                "parameters": [*product_id, *parameters(models.similar)],
                "responses": {"200": _json("SimilarResponse", "Nearest products, the product itself excluded"),
                              **_errors(400, 404, 422, 500, 503)}}},
            "/recommendations": {"get": {
                "operationId": "recommendations", "summary": "Recommendations for a shopper",
                "description": "for_you (the shopper's recent products' vectors and brand/category affinity), "
                               "bought_together (co-purchases; context product or cart), recently_viewed and "
                               "popular (when the shopper has no history), from the event log as the API's "
                               "history last read it",
                "parameters": parameters(models.recommendations),
                "responses": {"200": _json("RecommendationsResponse", "Labelled lists"),
                              **_errors(400, 404, 422, 500, 503)}}},
            "/events": {"post": {
                "operationId": "postEvents", "summary": "Record storefront behaviour events",
                "description": "UBI 1.0 events, or shopsearch's own Event format (the documented alias), alone or "
                               "in a list (formats may mix). Both are stored as UBI events (the ubi_events log).",
                "requestBody": {"required": True, "content": {"application/json": {"schema": {"oneOf": [
                    _ref("Event"),
                    {"type": "array", "minItems": 1, "maxItems": cfg.max_events,
                     "items": {"oneOf": [_ref("Event"), _ref("UbiEvent")]}},
                    _ref("UbiEvent")]}}}},
                "responses": {"202": _json("EventsAccepted", "Stored (all or nothing)"),
                              "200": _json("EventsAccepted", "Every event was a duplicate: nothing stored again"),
                              **_events_errors()}}},
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
    }, cfg)


SECURITY_SCHEMES = {
    "bearerKey": {"type": "http", "scheme": "bearer", "description": "An API key (`shopsearch keys create`) as "
                                                                     "Authorization: Bearer <key>"},
    "headerKey": {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "The same key as "
                                                                                      "X-API-Key: <key>"},
}
RATE_HEADERS = {name: {"schema": {"type": "integer"}, "description": text} for name, text in (
    ("Retry-After", "seconds until the budget has room"), ("X-RateLimit-Limit", "requests in the window"),
    ("X-RateLimit-Remaining", "requests left in the window"), ("X-RateLimit-Reset", "epoch seconds of the reset"))}


def with_security(spec: dict[str, Any], cfg: Settings) -> dict[str, Any]:
    """Add the security schemes and, per operation, the role it needs (OpenAPI 3.1 lets non-OAuth schemes list
    role names) and its 401/403/429 answers; roles and budgets come from the views' own declarations
    (api/auth.py's ``role``, api/limits.py's ``budget``). In local mode (no key exists) loopback clients need
    none."""
    from . import routes_events, routes_ops, routes_products, routes_recommendations, routes_search
    from .auth import PUBLIC, ROLE_ATTR
    from .limits import BUDGET_ATTR

    views = {"search": routes_search.search, "suggest": routes_search.suggest, "getProduct": routes_products.product,
             "similarProducts": routes_products.similar, "postEvents": routes_events.events,
             "recommendations": routes_recommendations.recommendations,
             "healthz": routes_ops.healthz, "readyz": routes_ops.readyz, "metrics": routes_ops.metrics,
             "openapi": routes_ops.openapi}
    spec["components"]["securitySchemes"] = SECURITY_SCHEMES
    for item in spec["paths"].values():
        for op in item.values():
            # answered before any view: a query string that is not UTF-8 text, a URL over the limit
            # (api/request_guards.py), headers over gunicorn's limits (api/gunicorn_worker.py)
            op["responses"] = {**_errors(400, 414, 431), **op["responses"]}
            view = views[op["operationId"]]
            need, public_when = getattr(view, ROLE_ATTR)
            need = PUBLIC if public_when and getattr(cfg, public_when) else need
            op["security"] = [] if need == PUBLIC else [{name: [need]} for name in SECURITY_SCHEMES]
            if need != PUBLIC:
                op["responses"].update(_errors(401, 403))
            if getattr(view, BUDGET_ATTR, None):  # an operation's own 429 text (POST /events' caps) stays
                op["responses"].setdefault("429", _errors(429)["429"])
    return spec
