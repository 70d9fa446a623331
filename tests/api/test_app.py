"""The search API through the Flask test client, on the tiny catalog in the embedded engine."""

from __future__ import annotations

import io
import json
import uuid

import pytest

from shopsearch.api.app import create_app
from shopsearch.plugin.documents import FACET_FIELDS
from shopsearch.plugin.engine import EngineRejected, EngineUnavailable
from shopsearch.settings import load_settings

from .conftest import ALIAS, CONCRETE


def _error(resp, status: int, parameter: str | None) -> dict:
    assert resp.status_code == status, resp.get_json()
    body = resp.get_json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "parameter"}
    assert body["error"]["parameter"] == parameter
    return body["error"]


# --- /search -------------------------------------------------------------------------------------------------

def test_search_returns_ranked_hits_facets_and_query_id(client):
    resp = client.get("/search?q=lamp&size=3")
    assert resp.status_code == 200
    body = resp.get_json()
    assert uuid.UUID(body["query_id"])
    assert (body["query"], body["profile"], body["page"], body["size"]) == ("lamp", "default", 1, 3)
    assert len(body["hits"]) == 3 and body["total"] >= 3
    assert [h["rank"] for h in body["hits"]] == [1, 2, 3]
    scores = [h["score"] for h in body["hits"]]
    assert scores == sorted(scores, reverse=True)
    first = body["hits"][0]
    assert first["id"] in {"p1", "p2", "p7"}  # the products with "lamp" in their title lead BM25
    assert {"title", "brand", "price", "category", "in_stock"} <= set(first)
    assert "stages" not in first and "embedding" not in first and "content_hash" not in first
    assert set(body["facets"]) == set(FACET_FIELDS)
    brands = {f["value"]: f["count"] for f in body["facets"]["brand"]}
    # counted over the matching products: the lamps by word, and those the tiny model puts near "lamp"
    assert brands["Lumo"] == 2 and brands["Brightway"] >= 1 and sum(brands.values()) <= body["total"]
    assert {"embed", "retrieve", "fusion", "total"} <= set(body["timings_ms"])
    assert body["degraded"] is False


def test_search_category_path_price_and_rating_facets(client):
    body = client.get("/search", query_string={"q": "", "category_path": "Home > Lighting", "price_min": "50",
                                               "facets": "category_path,price,rating,brand"}).get_json()
    assert body["total"] == 2  # p2 89.0, p3 59.5: Lighting products of at least 50
    paths = {f["value"]: f["count"] for f in body["facets"]["category_path"]}
    # Disjunctive: the paths ignore category_path (Tools is still offered: p4, 119.0) and obey price_min.
    assert paths["Home > Lighting"] == body["total"] and "Tools" in paths and "Home > Lighting > Lamps" in paths
    prices = [f["value"] for f in body["facets"]["price"]]  # the price facet ignores price_min
    assert {"25-50", "50-100"} <= set(prices)  # p1 29.99 counts though under price_min
    assert [f["value"] for f in body["facets"]["rating"]][0] == "4+"
    none = client.get("/search", query_string={"q": "", "attr": "color:red", "facets": "attr.color"}).get_json()
    assert none["total"] == 0 and none["facets"] == {"attr.color": []}  # the tiny index facets no attribute


@pytest.mark.parametrize("name, value", [("attr", "color"), ("attr", "a.b:red"), ("facets", "attr.a.b"),
                                         ("facets", "colour")])
def test_bad_facet_parameters_are_400_naming_them(client, name, value):
    resp = client.get("/search", query_string={"q": "lamp", name: value})
    assert resp.status_code == 400 and resp.get_json()["error"]["parameter"] == name


def test_search_query_ids_are_unique(client):
    ids = {client.get("/search?q=lamp").get_json()["query_id"] for _ in range(3)}
    assert len(ids) == 3


def test_search_explain_adds_stages(client):
    hits = client.get("/search?q=lamp&explain=true&size=2").get_json()["hits"]
    assert all("fused" in h["stages"] for h in hits)
    assert any("bm25" in h["stages"] for h in hits)


def test_search_filters_brand_list_and_repeat(client):
    for url in ("/search?q=lamp light&brand=Lumo,Brightway&facets=none",
                "/search?q=lamp light&brand=Lumo&brand=Brightway&facets=none"):
        body = client.get(url).get_json()
        assert body["hits"] and {h["brand"] for h in body["hits"]} <= {"Lumo", "Brightway"}
        assert body["facets"] == {}



def test_a_comma_escaped_with_a_backslash_is_part_of_the_value():
    from werkzeug.datastructures import MultiDict

    from shopsearch.api.params import parse_params, request_models
    from shopsearch.settings import load_settings

    model = request_models(load_settings()).search
    args = MultiDict([("q", "lamp"), ("brand", r"Sonix\, Inc.,Acme"), ("brand", "a\\\\b"), ("brand", "Cafe\u0301"),
                      ("attr", r"color:red\, dark")])
    params = parse_params(model, args)
    assert params.brand == ("Sonix, Inc.", "Acme", "a\\b", "Caf\u00e9") and params.attr == ("color:red, dark",)


def test_search_filters_price_stock_rating_category(client):
    body = client.get("/search?q=lamp&price_min=20&price_max=60&in_stock=true&rating_min=4"
                      "&category=Lighting&size=10").get_json()
    assert [h["id"] for h in body["hits"]] == ["p1"]  # p2 out of stock, p7 too cheap, p3 rated 3.5


def test_a_category_filter_named_as_the_catalog_names_it_matches_the_level_indexed(client):
    """The indexer cleans a level (whitespace, HTML entities, a ">" written "›"); the filter is cleaned alike."""
    for name in ("Power%20%20Tools", "Power%20Tools", "Power&#32;Tools"):
        body = client.get(f"/search?q=drill&category={name.replace('&', '%26').replace('#', '%23')}"
                          "&facets=none").get_json()
        assert [h["id"] for h in body["hits"]] == ["p4"], name


def test_search_facets_subset_and_paging(client):
    page1 = client.get("/search?q=lamp&size=2&page=1&facets=brand").get_json()
    page2 = client.get("/search?q=lamp&size=2&page=2&facets=brand").get_json()
    assert set(page1["facets"]) == {"brand"}
    assert [h["rank"] for h in page2["hits"]] == [3, 4][:len(page2["hits"])]
    assert not {h["id"] for h in page1["hits"]} & {h["id"] for h in page2["hits"]}


def test_search_blank_query_browses(client):
    body = client.get("/search?brand=Torq").get_json()
    assert body["hits"] == [] and body["total"] == 2  # every Torq product matches a browse; none is ranked
    # the brand facet ignores the brand filter, so a shopper can add a second brand
    assert {f["value"]: f["count"] for f in body["facets"]["brand"]} == {
        "Lumo": 2, "Brightway": 2, "Torq": 2, "Greenline": 1}
    by_price = client.get("/search?brand=Torq&sort=price_desc").get_json()
    prices = [h["price"] for h in by_price["hits"]]
    assert len(prices) == 2 and prices == sorted(prices, reverse=True)


def test_search_profile_selects_named_profile(client):
    assert client.get("/search?q=drill&profile=bm25").get_json()["profile"] == "bm25"


@pytest.mark.parametrize("query, status, parameter", [
    ("q=" + "x" * 257, 400, "q"),
    ("q=lamp&size=0", 400, "size"),
    ("q=lamp&size=101", 400, "size"),
    ("q=lamp&size=ten", 400, "size"),
    ("q=lamp&page=0", 400, "page"),
    ("q=lamp&page=11&size=100", 422, "page"),
    ("q=lamp&price_min=abc", 400, "price_min"),
    ("q=lamp&price_max=-1", 400, "price_max"),
    ("q=lamp&price_min=50&price_max=10", 422, "price_min"),
    ("q=lamp&rating_min=6", 400, "rating_min"),
    ("q=lamp&in_stock=maybe", 400, "in_stock"),
    ("q=lamp&facets=color", 400, "facets"),
    ("q=lamp&explain=perhaps", 400, "explain"),
    ("q=lamp&profile=no-such-profile", 400, "profile"),
    ("q=lamp&profile=bad/name", 400, "profile"),
    ("q=lamp&sort=price", 400, "sort"),
    ("q=lamp&sort=newest", 400, "sort"),
    ("q=lamp&q=desk", 400, "q"),
    ("q=lamp&size=5&size=6", 400, "size"),
    ("q=lamp&brand=" + ",".join(f"b{i}" for i in range(51)), 400, "brand"),
    ("q=lamp&session_id=" + "s" * 129, 400, "session_id"),
])
def test_search_bad_parameters_are_named(client, query, status, parameter):
    err = _error(client.get(f"/search?{query}"), status, parameter)
    assert parameter in err["message"] or parameter == "profile"


def test_search_parameter_forms(client):
    for word, expected in [("true", ["p1"]), ("1", ["p1"]), ("YES", ["p1"]), ("on", ["p1"]), ("false", ["p2"]),
                           ("0", ["p2"]), ("no", ["p2"]), ("Off", ["p2"])]:
        body = client.get(f"/search?q=lamp&brand=Lumo&in_stock={word}&facets=none").get_json()
        assert [h["id"] for h in body["hits"]] == expected, word
    blank = client.get("/search?q=lamp&size=&page=&price_min=&in_stock=&profile=&explain=").get_json()
    assert (blank["size"], blank["page"], blank["profile"]) == (10, 1, "default")
    assert client.get("/search?q=lamp&facets=").get_json()["facets"] == {}
    err = _error(client.get("/search?q=lamp&size=ten"), 400, "size")
    assert err["message"] == "size must be an integer between 1 and 100; got 'ten'"
    # newest is refused with the reason, not served in product-id order: no product has a listing date
    err = _error(client.get("/search?q=lamp&sort=newest"), 400, "sort")
    assert err["message"].startswith("sort='newest' is not available: products carry no listing date")
    assert err["message"].endswith("allowed: relevance, price_asc, price_desc, rating")


def test_limits_are_configurable(searcher, catalog_engine, tmp_path):
    app = create_app({"searcher": searcher, "engine_instance": catalog_engine, "index": ALIAS, "max_size": 5,
                      "max_query_length": 10, "max_depth": 10, "events_dir": str(tmp_path)})
    c = app.test_client()
    assert "between 1 and 5" in _error(c.get("/search?q=lamp&size=6"), 400, "size")["message"]
    _error(c.get("/search?q=lamp+lamp+lamp"), 400, "q")
    _error(c.get("/search?q=lamp&size=5&page=3"), 422, "page")
    assert c.get("/search?q=lamp&size=5&page=2").status_code == 200
    assert c.get("/search?q=lamp").get_json()["size"] == 5  # the default size never exceeds the limit


# --- /suggest ------------------------------------------------------------------------------------------------

def test_suggest_returns_completions(client):
    # "Lamp shade" starts with the typed word; the other titles only contain a word starting with it (shorter, A-Z).
    # No query logged yet: every suggestion is a product title.
    body = client.get("/suggest?q=lam&size=2").get_json()
    assert body == {"query": "lam", "suggestions": [{"text": "Lamp shade", "kind": "product"},
                                                    {"text": "Blue floor lamp", "kind": "product"}]}
    texts = lambda url: [s["text"] for s in client.get(url).get_json()["suggestions"]]  # noqa: E731
    assert texts("/suggest?q=LAM") == ["Lamp shade", "Blue floor lamp", "Red desk lamp"]
    assert texts("/suggest?q=red la") == ["Red desk lamp"]
    assert texts("/suggest?q=zzz") == []
    _error(client.get("/suggest?q="), 400, "q")
    _error(client.get("/suggest?q=lam&size=0"), 400, "size")
    _error(client.get("/suggest?q=lam&size=51"), 400, "size")


def test_suggest_without_support_is_501(tmp_path, catalog_engine):
    class NoSuggest:
        pass

    c = create_app({"searcher": NoSuggest(), "engine_instance": catalog_engine, "index": ALIAS,
                    "events_dir": str(tmp_path)}).test_client()
    assert _error(c.get("/suggest?q=lam"), 501, None)["code"] == "not_implemented"


# --- /products -----------------------------------------------------------------------------------------------

def test_product_by_id(client):
    body = client.get("/products/p4").get_json()
    assert body == {"id": "p4", "title": "Cordless drill", "description": "18V cordless drill driver with two "
                    "batteries", "brand": "Torq", "category": ["Tools", "Power Tools", "Drills"], "price": 119.0,
                    "rating": 4.7, "review_count": 300, "popularity": None, "in_stock": True, "attributes": {}}


def test_a_product_whose_id_holds_a_slash_is_fetched_and_has_similar_products(tmp_path, tiny_encoder):
    """The storefront asks /products/<encodeURIComponent(id)>; the server sees the slash decoded."""
    from dataclasses import replace

    from shopsearch.plugin.engines import open_engine
    from shopsearch.plugin.hybrid import HybridSearcher
    from shopsearch.plugin.profiles import ProfileStore

    from .conftest import CATALOG, build_catalog

    engine = open_engine("embedded", root=tmp_path / "embedded")
    build_catalog(engine, tiny_encoder, products=[replace(p, id=f"SKU/{p.id}/x") for p in CATALOG]
                  + [replace(CATALOG[0], id="odd/similar")])
    app = create_app({"searcher": HybridSearcher(engine, ALIAS, tiny_encoder, ProfileStore()),
                      "engine_instance": engine, "index": ALIAS, "events_dir": str(tmp_path)})
    try:
        c = app.test_client()
        assert c.get("/products/SKU%2Fp4%2Fx").get_json()["id"] == "SKU/p4/x"
        body = c.get("/products/SKU%2Fp1%2Fx/similar?size=3").get_json()
        assert body["id"] == "SKU/p1/x" and len(body["hits"]) == 3 and "SKU/p1/x" not in {h["id"] for h in body["hits"]}
        _error(c.get("/products/SKU%2Fnope/similar"), 404, "product_id")
        # an id ending in "/similar" has its page too (no product "odd" to take the path as its similar list)
        assert c.get("/products/odd%2Fsimilar").get_json()["id"] == "odd/similar"
        assert c.get("/products/odd/similar/similar?size=2").get_json()["id"] == "odd/similar"
    finally:
        app.extensions["shopsearch"].ubi_drainer.stop()
        engine.close()


def test_unknown_product_is_404(client):
    err = _error(client.get("/products/nope"), 404, "product_id")
    assert "nope" in err["message"] and err["code"] == "product_not_found"
    _error(client.get("/products/nope/similar"), 404, "product_id")


def test_similar_excludes_itself_and_filters(client):
    body = client.get("/products/p1/similar?size=4").get_json()
    ids = [h["id"] for h in body["hits"]]
    assert body["id"] == "p1" and len(ids) == 4 and "p1" not in ids
    assert [h["rank"] for h in body["hits"]] == [1, 2, 3, 4]
    torq = client.get("/products/p1/similar?brand=Torq").get_json()["hits"]
    assert sorted(h["id"] for h in torq) == ["p4", "p5"]
    _error(client.get("/products/p1/similar?size=1000"), 400, "size")
    _error(client.get("/products/p1/similar?price_min=9&price_max=1"), 422, "price_min")


# --- errors --------------------------------------------------------------------------------------------------

def test_unknown_route_and_method_are_json(client):
    assert _error(client.get("/nope"), 404, None)["code"] == "not_found"
    resp = client.post("/search")
    _error(resp, 405, None)
    assert "GET" in resp.headers["Allow"]


class _Broken:
    """A searcher whose engine is down (or that crashes)."""

    def __init__(self, exc: Exception):
        self.exc = exc

    def search(self, *args, **kwargs):
        raise self.exc

    get = similar = suggest = search


def test_engine_outage_is_503_with_retry_after(tmp_path, catalog_engine):
    app = create_app({"searcher": _Broken(EngineUnavailable("connection refused")),
                      "engine_instance": catalog_engine, "index": ALIAS, "events_dir": str(tmp_path),
                      "retry_after_s": 7})
    c = app.test_client()
    for url in ("/search?q=lamp", "/products/p1", "/products/p1/similar"):
        resp = c.get(url)
        assert _error(resp, 503, None)["code"] == "engine_unavailable"
        assert resp.headers["Retry-After"] == "7"
    metrics = c.get("/metrics").get_data(as_text=True)
    assert metric(metrics, "shopsearch_engine_errors_total", kind="unavailable") == 3


def test_unexpected_error_is_500_without_traceback(tmp_path, catalog_engine, caplog):
    c = create_app({"searcher": _Broken(ZeroDivisionError("secret detail")), "engine_instance": catalog_engine,
                    "index": ALIAS, "events_dir": str(tmp_path)}).test_client()
    resp = c.get("/search?q=lamp")
    err = _error(resp, 500, None)
    assert "secret" not in resp.get_data(as_text=True) and "Traceback" not in resp.get_data(as_text=True)
    assert err["code"] == "internal_error"
    assert any("ZeroDivisionError" in (r.exc_text or "") for r in caplog.records)


def test_a_profile_file_that_does_not_load_is_a_500_that_names_no_file(tmp_path, catalog_engine, tiny_encoder,
                                                                       caplog):
    """A typo in a live profile is the operator's fault: not a 400 blaming a parameter, no server path shown."""
    from shopsearch.plugin.hybrid import HybridSearcher
    from shopsearch.plugin.profiles import PACKAGED_DIR, ProfileStore

    folder = tmp_path / "profiles"
    folder.mkdir()
    (folder / "default.toml").write_text('[bm25]\nfuzzines = "AUTO"\n', encoding="utf-8")
    (folder / "broken.toml").write_text("[bm25\n", encoding="utf-8")
    searcher = HybridSearcher(catalog_engine, ALIAS, tiny_encoder, ProfileStore([PACKAGED_DIR, folder]))
    c = create_app({"searcher": searcher, "engine_instance": catalog_engine, "index": ALIAS,
                    "events_dir": str(tmp_path), "home": str(tmp_path)}).test_client()
    for url in ("/search?q=lamp", "/search?q=lamp&profile=broken", "/search?q=lamp&size=3"):
        caplog.clear()
        resp = c.get(url)
        err = _error(resp, 500, None)
        assert err["code"] == "profile_invalid" and "misconfigured" in err["message"]
        assert str(tmp_path) not in resp.get_data(as_text=True)
        assert any(str(folder) in r.getMessage() for r in caplog.records)  # the operator is told which file
    assert c.get("/search?q=lamp&profile=bm25").status_code == 200  # the other profiles serve on


def test_a_request_the_engine_refuses_is_a_400_without_the_engines_text(tmp_path, catalog_engine, caplog):
    """Where the caller's query or filters reached the engine, its refusal is the caller's 400; where they did not
    (a product lookup, recommendations, POST /events' product check) the request was the API's own: a 500 the
    client retries, counted. Neither says what the engine said; the log does."""
    refused = EngineRejected("OpenSearch rejected the request on index 'shop-v20261205-1' (400): "
                             "search_phase_execution_exception: The length of regex [1012] ...")
    c = create_app({"searcher": _Broken(refused), "engine_instance": catalog_engine, "index": ALIAS,
                    "events_dir": str(tmp_path)}).test_client()
    event = [{"type": "purchase", "product_id": "p1", "session_id": "s"}]
    for status, call in [(400, lambda: c.get("/search?q=lamp")), (400, lambda: c.get("/suggest?q=la")),
                         (400, lambda: c.get("/products/p1/similar")), (500, lambda: c.get("/products/p1")),
                         (500, lambda: c.get("/recommendations?product_id=p1")),
                         (500, lambda: c.post("/events", json=event))]:
        caplog.clear()
        resp = call()
        err = _error(resp, status, None)
        if status == 400:
            assert err["code"] == "invalid_parameter" and "could not run this request" in err["message"]
        else:
            assert err["code"] == "internal_error"
        for internal in ("OpenSearch", "shop-v2026", "regex", "exception"):
            assert internal not in resp.get_data(as_text=True)
        assert any("length of regex" in r.getMessage() for r in caplog.records)  # kept for the operator
    assert metric(c.get("/metrics").get_data(as_text=True), "shopsearch_engine_errors_total", kind="rejected") == 3


def test_a_category_path_longer_than_the_engine_can_match_is_refused_by_name(client):
    from shopsearch.api.params import MAX_PATH_CHARS

    assert client.get("/search?q=lamp&category_path=" + "x" * MAX_PATH_CHARS).status_code == 200
    err = _error(client.get("/search?q=lamp&category_path=" + "x" * (MAX_PATH_CHARS + 1)), 400, "category_path")
    assert str(MAX_PATH_CHARS) in err["message"]


def test_body_too_large_is_413(tmp_path, searcher, catalog_engine):
    c = create_app({"searcher": searcher, "engine_instance": catalog_engine, "index": ALIAS,
                    "events_dir": str(tmp_path), "max_content_length": 100}).test_client()
    _error(c.post("/events", json=[{"type": "purchase", "product_id": "p" * 50, "session_id": "s"}] * 3), 413, None)
    # streamed without Content-Length (chunked), the body stops at the limit unannounced: still a 413, not bad JSON
    body = json.dumps([{"type": "purchase", "product_id": "p" * 50, "session_id": "s"}] * 3).encode()
    _error(c.post("/events", input_stream=io.BytesIO(body), content_type="application/json",
                  environ_overrides={"wsgi.input_terminated": True}), 413, None)
    small = json.dumps({"type": "purchase", "product_id": "p1", "session_id": "s"}).encode().ljust(100)  # the limit
    resp = c.post("/events", input_stream=io.BytesIO(small), content_type="application/json",
                  environ_overrides={"wsgi.input_terminated": True})
    assert resp.status_code == 202, resp.get_json()


# --- ops -----------------------------------------------------------------------------------------------------

def test_healthz_and_readyz(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    assert client.get("/readyz").get_json() == {"status": "ready", "engine": "embedded", "index": ALIAS,
                                                "concrete_index": CONCRETE}


def test_readyz_is_503_when_index_missing(tmp_path, searcher, catalog_engine):
    c = create_app({"searcher": searcher, "engine_instance": catalog_engine, "index": "missing",
                    "events_dir": str(tmp_path)}).test_client()
    resp = c.get("/readyz")
    assert _error(resp, 503, None)["code"] == "index_not_found"
    assert int(resp.headers["Retry-After"]) > 0


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one Prometheus sample (0.0 when absent)."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def test_metrics_count_requests_and_stages(client):
    client.get("/search?q=lamp")
    client.get("/search?q=lamp")
    client.get("/search?q=lamp&size=0")
    client.get("/products/nope")
    text = client.get("/metrics").get_data(as_text=True)
    req = "shopsearch_http_requests_total"
    assert metric(text, req, endpoint="/search", method="GET", status="200") == 2
    assert metric(text, req, endpoint="/search", method="GET", status="400") == 1
    assert metric(text, req, endpoint="/products/<product_id>", method="GET", status="404") == 1
    assert metric(text, "shopsearch_search_stage_duration_seconds_count", stage="total") == 2
    assert metric(text, "shopsearch_search_stage_duration_seconds_count", stage="retrieve") == 2
    assert metric(text, "shopsearch_http_request_duration_seconds_bucket", endpoint="/search", status="200",
                  le="+Inf") == 2
    assert metric(text, "shopsearch_http_request_duration_seconds_sum", endpoint="/search", status="200") > 0

    for made_up in ("ZZ1", "ZZ2"):  # a method a client makes up adds no series
        client.open("/search?q=lamp", method=made_up)
    text = client.get("/metrics").get_data(as_text=True)
    assert 'method="ZZ' not in text and metric(text, req, endpoint="unmatched", method="other", status="405") == 2


def test_config_layers(tmp_path, monkeypatch):
    toml = tmp_path / "api.toml"
    toml.write_text('engine = "opensearch"\nindex = "from-file"\nmax_size = 50\n')
    env = {"SHOPSEARCH_CONFIG": str(toml), "SHOPSEARCH_INDEX": "from-env"}
    cfg = load_settings({"max_size": 20}, environ=env)
    assert (cfg.engine, cfg.index, cfg.max_size) == ("opensearch", "from-env", 20)
    with pytest.raises(ValueError, match="flags: unknown option 'max_sise'"):
        load_settings({"max_sise": 1}, environ={})
    with pytest.raises(ValueError, match=r"engine='solr' \(from \$SHOPSEARCH_ENGINE\): Input should be"):
        load_settings(environ={"SHOPSEARCH_ENGINE": "solr"})
    with pytest.raises(ValueError, match=r"max_size='many' \(from flags\): Input should be a valid integer"):
        load_settings({"max_size": "many"}, environ={})


def test_wsgi_module_builds_the_app_from_the_environment(monkeypatch, tmp_path):
    import importlib

    monkeypatch.setenv("SHOPSEARCH_INDEX", "from-env")
    monkeypatch.setenv("SHOPSEARCH_HOME", str(tmp_path))
    monkeypatch.delenv("SHOPSEARCH_CONFIG", raising=False)
    import shopsearch.api.wsgi as wsgi

    app = importlib.reload(wsgi).app
    assert app.extensions["shopsearch"].config.index == "from-env"
    assert app.test_client().get("/healthz").status_code == 200


@pytest.mark.parametrize("argv, message", [
    (["--workers", "0"], "--workers must be >= 1"),
    (["--port", "70000"], "--port must be <= 65535"),
    (["--engine-timeout", "-1"], "engine_timeout_s=-1.0 (from flags): Input should be greater than 0"),
])
def test_serve_rejects_bad_options_before_starting(argv, message, capsys, monkeypatch):
    from shopsearch.api.cli import main

    monkeypatch.delenv("SHOPSEARCH_CONFIG", raising=False)
    assert main(["serve", *argv]) == 2
    assert message in capsys.readouterr().err
