"""/openapi.json describes every route, and real responses (success and error) validate against it."""

from __future__ import annotations

import re

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from referencing import Registry, Resource

from .conftest import ALIAS

SPEC_PATH = re.compile(r"\{(\w+)\}")


@pytest.fixture
def spec(client) -> dict:
    resp = client.get("/openapi.json")
    assert resp.status_code == 200
    return resp.get_json()


def _validator(spec: dict, schema: dict) -> Draft202012Validator:
    """A validator for ``schema`` whose ``#/components/...`` refs resolve inside ``spec``."""
    # The schema sits inside a copy of the spec so its relative refs (at any depth) resolve against the spec.
    root = Resource.from_contents({**spec, "$schema": "https://json-schema.org/draft/2020-12/schema",
                                   "x-checked": schema})
    registry = Registry().with_resource("urn:spec", root)
    return Draft202012Validator({"$ref": "urn:spec#/x-checked"}, registry=registry)


def check(spec: dict, path: str, method: str, resp) -> None:
    """Assert ``resp`` is a documented status of the operation and its JSON body fits the documented schema."""
    op = spec["paths"][path][method]
    status = str(resp.status_code)
    assert status in op["responses"], f"{method.upper()} {path} -> undocumented status {status}"
    documented = op["responses"][status]
    if "application/json" in documented.get("content", {}):
        schema = documented["content"]["application/json"]["schema"]
        errors = sorted(_validator(spec, schema).iter_errors(resp.get_json()), key=str)
        assert not errors, f"{method.upper()} {path} {status}: {errors[0].message}"
    for header in documented.get("headers", {}):
        assert header in resp.headers


def test_spec_is_openapi_31_and_schemas_are_valid(spec):
    assert spec["openapi"] == "3.1.0"
    validate(spec)  # the whole document against the OpenAPI 3.1 schema (openapi-spec-validator)
    for name, schema in spec["components"]["schemas"].items():
        Draft202012Validator.check_schema(schema)
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            assert op["operationId"] and ("200" in op["responses"] or "202" in op["responses"])
            for p in op.get("parameters", []):
                assert {"name", "in", "schema"} <= set(p), (path, p)
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared == set(SPEC_PATH.findall(path)), path


def test_every_route_is_documented(app, spec):
    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or rule.endpoint.startswith("pages."):
            continue  # the HTML storefront/console (api/routes_pages.py) is not part of the public API
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            routes.add((path, method.lower()))
    documented = {(p, m) for p, ops in spec["paths"].items() for m in ops}
    assert routes == documented


def _example(schema: dict) -> str:
    """A valid query-string value for a parameter schema (its default when it has one)."""
    if schema.get("examples"):
        return str(schema["examples"][0])
    default = schema.get("default")
    if isinstance(default, list):
        return ",".join(default)
    if default is not None and default != "":
        return str(default).lower() if isinstance(default, bool) else str(default)
    kind = schema["type"]
    if kind in ("integer", "number"):
        return str(schema.get("minimum", 1))
    if kind == "boolean":
        return "true"
    if kind == "array":
        return schema["items"].get("enum", ["lamp"])[0]
    return "lamp"


@pytest.mark.parametrize("path, url", [("/search", "/search"), ("/suggest", "/suggest"),
                                       ("/products/{product_id}/similar", "/products/p1/similar"),
                                       ("/products/{product_id}", "/products/p1")])
def test_documented_parameters_are_exactly_the_accepted_ones(client, spec, path, url):
    params = [p for p in spec["paths"][path]["get"].get("parameters", []) if p["in"] == "query"]
    required = {p["name"]: _example(p["schema"]) for p in params if p["required"]}
    for n, p in enumerate(params):  # one client address per request: /search has more parameters than the
        # per-IP rate limit allows in a second (loopback addresses: no API keys here)
        resp = client.get(url, query_string={**required, p["name"]: _example(p["schema"])},
                          environ_base={"REMOTE_ADDR": f"127.0.0.{n + 1}"})
        assert resp.status_code == 200, (p["name"], resp.get_json())
    resp = client.get(url, query_string={**required, "colour": "red"})
    assert resp.status_code == 400 and resp.get_json()["error"]["parameter"] == "colour"


def test_limits_in_the_document_are_the_apps(searcher, catalog_engine, tmp_path):
    from shopsearch.api.app import create_app

    app = create_app({"searcher": searcher, "engine_instance": catalog_engine, "index": ALIAS, "max_size": 5,
                      "max_query_length": 10, "max_depth": 20, "max_events": 7, "events_dir": str(tmp_path)})
    spec = app.test_client().get("/openapi.json").get_json()
    validate(spec)

    def schemas(path):
        return {p["name"]: p["schema"] for p in spec["paths"][path]["get"]["parameters"]}

    search = schemas("/search")
    assert (search["size"]["maximum"], search["page"]["maximum"], search["q"]["maxLength"]) == (5, 20, 10)
    assert schemas("/suggest")["size"]["maximum"] == 5
    assert schemas("/products/{product_id}/similar")["size"]["maximum"] == 5
    body = spec["paths"]["/events"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["oneOf"][1]["maxItems"] == 7


def test_responses_validate_against_the_spec(client, spec):
    cases = [
        ("/search", "get", client.get("/search?q=lamp&explain=true&size=3")),
        ("/search", "get", client.get("/search?brand=Torq")),
        ("/search", "get", client.get("/search?q=lamp&size=500")),
        ("/search", "get", client.get("/search?q=lamp&price_min=9&price_max=1")),
        ("/products/{product_id}", "get", client.get("/products/p8")),
        ("/products/{product_id}", "get", client.get("/products/nope")),
        ("/products/{product_id}/similar", "get", client.get("/products/p2/similar?size=3")),
        ("/products/{product_id}/similar", "get", client.get("/products/nope/similar")),
        ("/events", "post", client.post("/events", json={"type": "purchase", "product_id": "p1",
                                                         "session_id": "s"})),
        ("/events", "post", client.post("/events", json={"type": "nope"})),
        ("/healthz", "get", client.get("/healthz")),
        ("/readyz", "get", client.get("/readyz")),
        ("/metrics", "get", client.get("/metrics")),
        ("/openapi.json", "get", client.get("/openapi.json")),
    ]
    for path, method, resp in cases:
        check(spec, path, method, resp)
    assert {c[2].status_code for c in cases} >= {200, 202, 400, 404, 422}


def test_event_request_schema_matches_the_validator(spec):
    body_schema = spec["paths"]["/events"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    v = _validator(spec, body_schema)
    assert v.is_valid({"type": "click", "query_id": "q", "product_id": "p", "position": 1, "session_id": "s"})
    assert v.is_valid([{"type": "purchase", "product_id": "p", "session_id": "s", "price": 3}])
    assert not v.is_valid({"type": "hover", "product_id": "p", "session_id": "s"})
    assert not v.is_valid({"type": "purchase", "product_id": "p", "session_id": "s", "colour": "red"})
    ubi = {"action_name": "click", "query_id": "q", "client_id": "c", "timestamp": "2024-01-01T00:00:00Z",
           "event_attributes": {"object": {"object_id": "p"}, "position": {"ordinal": {"index": 1}}}}
    assert v.is_valid(ubi) and v.is_valid([ubi, {"type": "purchase", "product_id": "p", "session_id": "s"}])
    assert not v.is_valid({**ubi, "client_id": "c" * 101})
    priced = {"object": {"object_id": "p"}, "position": {"ordinal": {"index": 1}}, "price": -5}
    assert not v.is_valid({**ubi, "event_attributes": priced})  # as the server refuses it
    for units in (0, 101):  # quantity's bounds, in both formats, as the server's
        assert not v.is_valid({**ubi, "event_attributes": {**priced, "price": 5, "quantity": units}})
        assert not v.is_valid({"type": "purchase", "product_id": "p", "session_id": "s", "quantity": units})
    assert v.is_valid({"type": "purchase", "product_id": "p", "session_id": "s", "price": 5, "quantity": 3})


def test_post_events_names_its_refusals(spec):
    responses = spec["paths"]["/events"]["post"]["responses"]
    assert "implausible_price" in responses["400"]["description"]
    assert "session_cap / product_cap" in responses["429"]["description"]  # not the generic rate-limit text
