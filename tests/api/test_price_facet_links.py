"""A price facet bucket and the filter the storefront links it to agree: clicking a bucket shows as many products
as it counts, a product priced exactly at an edge included (GET /search on the tiny catalog, embedded engine)."""

from __future__ import annotations

import pytest

from .conftest import ALIAS, CATALOG

# Edges at catalog prices: p5 costs 15.0, p6 34.0, p2 89.0.
EDGES = (15.0, 34.0, 89.0)


@pytest.fixture
def make_client(tmp_path, catalog_engine, tiny_encoder):
    from shopsearch.api.app import create_app
    from shopsearch.plugin.hybrid import HybridSearcher
    from shopsearch.plugin.profiles import ProfileStore
    from shopsearch.settings import Settings

    apps = []

    def make(edges):
        searcher = HybridSearcher(catalog_engine, ALIAS, tiny_encoder, ProfileStore(),
                                  settings=Settings(facet_price_edges=edges))
        app = create_app({"TESTING": True, "searcher": searcher, "engine_instance": catalog_engine, "index": ALIAS,
                          "engine": "embedded", "events_dir": str(tmp_path / f"events{len(apps)}"),
                          "home": str(tmp_path)})
        apps.append(app)
        return app.test_client()

    yield make
    for app in apps:
        app.extensions["shopsearch"].ubi_drainer.stop()
        app.extensions["shopsearch"].stop_history()


@pytest.fixture
def client(make_client):
    return make_client(EDGES)


def link(value: str) -> dict[str, str]:
    """The filter api/static/storefront.js sets for a bucket: its value's edges as price_min and price_max."""
    lo, _, hi = value.removesuffix("+").partition("-")
    return {"price_min": lo, "price_max": hi} if hi else {"price_min": lo}


def test_clicking_a_price_bucket_shows_as_many_products_as_it_counts(client):
    body = client.get("/search", query_string={"q": "", "facets": "price"}).get_json()
    buckets = {f["value"]: f["count"] for f in body["facets"]["price"]}
    # 12.5 15 | 15 29.99 34 | 34 59.5 89 | 89 119: a product priced at an edge is in both buckets that share it
    assert buckets == {"0-15": 2, "15-34": 3, "34-89": 3, "89+": 2}
    prices = {p.id: p.price for p in CATALOG}
    for value, count in buckets.items():
        shown = client.get("/search", query_string={"q": "", "sort": "price_asc", "size": 20, "facets": "price",
                                                     **link(value)}).get_json()
        assert shown["total"] == len(shown["hits"]) == count, value
        lo, _, hi = value.replace("+", "").partition("-")
        inside = {i for i, p in prices.items() if p is not None and float(lo) <= p and (not hi or p <= float(hi))}
        assert {h["id"] for h in shown["hits"]} == inside, value  # the products priced at its edges among them
        # the price facet ignores the price filter: the shopper still sees every bucket, with the same counts
        assert {f["value"]: f["count"] for f in shown["facets"]["price"]} == buckets


def test_a_bucket_agrees_with_its_link_under_a_query_too(client):
    query = {"q": "lamp", "profile": "bm25", "size": 20}
    body = client.get("/search", query_string={**query, "facets": "price"}).get_json()
    prices = [h["price"] for h in body["hits"] if h.get("price") is not None]
    assert body["total"] == len(body["hits"]) and 89.0 in prices  # p2, priced at the edge 89
    buckets = {f["value"]: f["count"] for f in body["facets"]["price"]}
    assert buckets["34-89"] >= 1 and buckets["89+"] >= 1  # p2 counts in both
    for value, count in buckets.items():
        shown = client.get("/search", query_string={**query, **link(value)}).get_json()
        assert shown["total"] == count, value


def test_edges_of_any_size_are_labelled_exactly(make_client):
    """A currency of large amounts, an edge in cents: the label is the edge itself, never rounded or in exponent
    notation, so its link selects what it counts."""
    client = make_client((29.99, 1234567.0))
    body = client.get("/search", query_string={"q": "", "facets": "price"}).get_json()
    buckets = {f["value"]: f["count"] for f in body["facets"]["price"]}
    assert buckets == {"0-29.99": 3, "29.99-1234567": 5}  # 12.5 15 29.99 | 29.99 34 59.5 89 119
    for value, count in buckets.items():
        shown = client.get("/search", query_string={"q": "", "size": 20, **link(value)})
        assert shown.status_code == 200 and shown.get_json()["total"] == count, value
    assert client.get("/search", query_string={"q": "", **link("1234567+")}).get_json()["total"] == 0
