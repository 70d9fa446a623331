"""One contract suite for every Engine: the embedded engine and the OpenSearch adapter must behave alike.

A hand-made 12-product catalog with 4-dim vectors at known angles from the query vector (product ``pNN`` sits at
``(NN - 1) * 8`` degrees from ``Q``), so the nearest-neighbour order is p01, p02, ... by construction. Every
description holds the word "quality" so one BM25 query matches the whole catalog for the filter tests.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Callable

import pytest

from shopsearch.indexer.records import Product
from shopsearch.indexer.sink import BulkItem, Delete, IndexDoc
from shopsearch.plugin import synonyms as synonyms_module
from shopsearch.plugin.engine import SORTS, BM25Leg, Filters, IndexNotFound, KnnLeg, MatchRule
from shopsearch.plugin.synonyms import load_synonyms

DIMS = 4
Q = [1.0, 0.0, 0.0, 0.0]


def _vec(i: int) -> list[float]:
    """Unit vector ``(i - 1) * 8`` degrees away from Q (rounded to float32-exact values)."""
    a = math.radians((i - 1) * 8)
    return [round(math.cos(a), 4), round(math.sin(a), 4), 0.0, 0.0]


CATALOG = [
    Product("p01", "Red Running Shoes", "Lightweight running shoe, quality mesh", "Acme", ("Shoes", "Running"),
            59.99, 4.5, 120, 0.9, True),
    Product("p02", "Trail Running Shoes Waterproof", "Grippy sole, quality build", "Trekker", ("Shoes", "Running"),
            89.0, 4.1, 40, 0.5, True),
    Product("p03", "Leather Dress Shoes", "Formal quality leather", "Acme", ("Shoes", "Formal"),
            120.0, 3.9, 15, 0.2, False),
    Product("p04", "Velvet Sofa Three Seater", "Soft quality velvet", "Comfy", ("Home", "Furniture", "Sofas"),
            799.0, 4.7, 60, 0.7, True),
    Product("p05", "Oak Coffee Table", "Solid quality oak", "Comfy", ("Home", "Furniture", "Tables"),
            249.0, 4.2, 33, 0.4, True),
    Product("p06", "55 inch 4K Television", "Bright quality panel", "Vizio", ("Electronics", "TV"),
            499.0, 4.4, 210, 0.95, True),
    Product("p07", "Wireless Earbuds", "Quality sound <b>noise cancelling</b>", "Sonix", ("Electronics", "Audio"),
            79.0, 3.5, 80, 0.6, True),
    Product("p08", "Stainless Steel Refrigerator", "Quality cooling", "Frosty", ("Home", "Appliances"),
            1299.0, 4.0, 12, 0.3, False),
    Product("p09", "Kitchen Faucet with Pull Down Sprayer", "Quality brass", "Aqua", ("Home", "Kitchen"),
            149.0, 4.3, 22, 0.35, True),
    Product("p10", "Gas Barbecue", "Quality cast iron", "Flame", ("Outdoor", "Cooking"),
            399.0, 4.6, 18, 0.45, True),
    Product("p11", "Cotton Hoodie", "Quality cotton", "Acme", ("Clothing", "Tops"), 39.0, None, None, None, None),
    Product("p12", "Notebook Computer 15 inch", "Quality screen", "Techno", ("Electronics", "Computers"),
            None, 4.8, 5, 0.8, True),
]
# Catalog attributes; color, size and material are declared facetable (the field mapping's facet_attributes),
# origin is not.
ATTRS = {"p01": {"color": "red", "size": "42", "material": "mesh", "origin": "VN"},
         "p02": {"color": "blue", "size": "44", "material": "mesh"},
         "p03": {"color": "black", "size": "42", "material": "leather"},
         "p04": {"color": "blue", "material": "velvet", "origin": "IT"},
         "p05": {"color": "brown", "material": "oak"},
         "p06": {"color": "black"},
         "p07": {"color": "white"},
         "p08": {"color": "silver", "material": "steel"},
         "p09": {"material": "brass"},
         "p11": {"color": "red", "size": "M", "material": "cotton"}}
FACET_ATTRIBUTES = ("color", "size", "material")
CATALOG = [replace(p, attributes=ATTRS.get(p.id, {})) for p in CATALOG]
BY_ID = {p.id: p for p in CATALOG}
ALL_IDS = [p.id for p in CATALOG]


def _docs() -> list[IndexDoc]:
    return [IndexDoc(p, _vec(i + 1), p.content_hash(), FACET_ATTRIBUTES) for i, p in enumerate(CATALOG)]


@pytest.fixture(scope="module", params=["embedded", "opensearch"])
def engine(request, tmp_path_factory):
    """An engine of each kind; OpenSearch indices made by the suite start with ``contract-`` and are removed."""
    if request.param == "embedded":
        from shopsearch.plugin.embedded_engine import EmbeddedEngine

        eng = EmbeddedEngine(tmp_path_factory.mktemp("embedded"))
    else:
        from shopsearch.plugin.opensearch_engine import OpenSearchEngine

        eng = OpenSearchEngine(url=request.getfixturevalue("opensearch_url"))
    eng.test_prefix = f"contract-{uuid.uuid4().hex[:8]}-"
    yield eng
    for name in eng.list_indices(eng.test_prefix):
        eng.delete_index(name)
    eng.close()


@pytest.fixture
def new_index(engine) -> Callable[[], str]:
    """Make an empty, uniquely named index."""
    def make() -> str:
        name = f"{engine.test_prefix}{uuid.uuid4().hex[:8]}"
        engine.create_index(name, DIMS)
        return name
    return make


@pytest.fixture(scope="module")
def catalog(engine) -> str:
    """The 12-product catalog, loaded and refreshed once per engine (read-only tests)."""
    name = f"{engine.test_prefix}catalog"
    engine.create_index(name, DIMS)
    items = list(engine.bulk(name, _docs()))
    assert all(i.ok for i in items), items
    engine.refresh(name)
    return name


def bm25(engine, index, query, fields=None, **kw) -> list[str]:
    leg = BM25Leg(query, fields or {"title": 1.0}, **kw)
    return [h.id for h in engine.search(index, [leg])[0]]


def knn(engine, index, k=12, filters=Filters()) -> list[str]:
    return [h.id for h in engine.search(index, [KnnLeg(Q, k=k, filters=filters)])[0]]


# --- indices, bulk, reads ------------------------------------------------------------------------------------

def test_create_exists_list_delete(engine, new_index):
    a, b = new_index(), new_index()
    assert engine.index_exists(a) and engine.index_exists(b)
    assert [n for n in engine.list_indices(engine.test_prefix) if n in (a, b)] == sorted([a, b])
    engine.delete_index(a)
    assert not engine.index_exists(a)
    assert a not in engine.list_indices(engine.test_prefix)
    engine.delete_index(a)  # deleting again is no error


def test_bulk_yields_one_result_per_action_and_keeps_good_items(engine, new_index):
    name = new_index()
    bad = IndexDoc(Product("bad", "Wrong dims"), [1.0, 0.0], "h")
    actions = [*_docs()[:3], bad, Delete("p02"), Delete("never-stored")]
    items = list(engine.bulk(name, actions))
    assert [i.id for i in items] == ["p01", "p02", "p03", "bad", "p02", "never-stored"]
    assert [i.ok for i in items] == [True, True, True, False, True, True]
    assert items[3].error and "dim" in items[3].error.lower()
    assert isinstance(items[0], BulkItem) and items[0].error is None
    engine.refresh(name)
    assert engine.count(name) == 2
    assert engine.get(name, "p02") is None and engine.get(name, "bad") is None


def test_get_with_and_without_vector(engine, catalog):
    doc = engine.get(catalog, "p04")
    assert doc == CATALOG[3].to_source()  # public fields only, exactly as given
    with_vec = engine.get(catalog, "p04", with_vector=True)
    assert with_vec["vector"] == pytest.approx(_vec(4), abs=1e-6)
    assert {k: v for k, v in with_vec.items() if k != "vector"} == doc
    assert engine.get(catalog, "nope") is None


def test_count_refresh_upsert_and_delete(engine, new_index):
    name = new_index()
    list(engine.bulk(name, _docs()))
    engine.refresh(name)
    assert engine.count(name) == 12
    changed = Product("p05", "Walnut Coffee Table", brand="Comfy", category=("Home",), price=199.0)
    list(engine.bulk(name, [IndexDoc(changed, _vec(5), changed.content_hash()), Delete("p01")]))
    engine.refresh(name)
    assert engine.count(name) == 11
    assert engine.get(name, "p05")["title"] == "Walnut Coffee Table"
    assert bm25(engine, name, "walnut") == ["p05"] and bm25(engine, name, "oak") == []
    assert "p01" not in knn(engine, name)
    assert dict(engine.scan_hashes(name))["p05"] == changed.content_hash()


def test_scan_hashes(engine, catalog):
    assert dict(engine.scan_hashes(catalog)) == {p.id: p.content_hash() for p in CATALOG}


def test_alias_swap(engine, new_index):
    a, b = new_index(), new_index()
    list(engine.bulk(a, _docs()[:2]))
    list(engine.bulk(b, _docs()[2:5]))
    engine.refresh(a), engine.refresh(b)
    alias = f"{engine.test_prefix}alias"
    assert engine.resolve_alias(alias) is None
    engine.swap_alias(alias, a)
    assert engine.resolve_alias(alias) == a and engine.count(alias) == 2
    engine.swap_alias(alias, b)
    assert engine.resolve_alias(alias) == b and engine.count(alias) == 3
    assert sorted(knn(engine, alias)) == ["p03", "p04", "p05"]
    with pytest.raises(IndexNotFound):
        engine.swap_alias(alias, f"{engine.test_prefix}missing")
    with pytest.raises(ValueError):
        engine.swap_alias(a, b)  # an index name cannot become an alias


def test_unknown_index_raises_index_not_found(engine):
    missing = f"{engine.test_prefix}missing"
    for call in (lambda: engine.count(missing), lambda: engine.get(missing, "p01"),
                 lambda: engine.search(missing, [BM25Leg("shoe", {"title": 1.0})]),
                 lambda: engine.filtered_count(missing, Filters()),
                 lambda: engine.match(missing, MatchRule(), facets=["brand"]),
                 lambda: engine.sources(missing, ["p01"]),
                 lambda: list(engine.bulk(missing, _docs()[:1]))):
        with pytest.raises(IndexNotFound):
            call()


def test_invalid_legs_raise_value_error(engine, catalog):
    for leg in (BM25Leg("shoe", {"nope": 1.0}), BM25Leg("shoe", {"title": 1.0}, size=0),
                KnnLeg([float("nan")] * DIMS), KnnLeg(Q, k=0)):
        with pytest.raises(ValueError):
            engine.search(catalog, [leg])


# --- BM25 --------------------------------------------------------------------------------------------------------

def test_bm25_stemmed_term_ranks_its_product_first(engine, catalog):
    assert bm25(engine, catalog, "televisions") == ["p06"]
    shoes = bm25(engine, catalog, "shoe")  # p01 and p03 tie (3-term titles); p02's longer title ranks last
    assert sorted(shoes[:2]) == ["p01", "p03"] and shoes[2:] == ["p02"]
    assert bm25(engine, catalog, "Sprayers") == ["p09"]
    assert bm25(engine, catalog, "the of and") == []  # stop words only: nothing
    assert bm25(engine, catalog, "") == []


def test_bm25_field_boosts_and_best_fields(engine, catalog):
    # "running" is in p01/p02 titles and in their category_text; "quality" only in descriptions
    leg = BM25Leg("running quality", {"title": 5.0, "description": 1.0}, size=12, field_scores=True)
    hits = engine.search(catalog, [leg])[0]
    assert [h.id for h in hits][:2] == ["p01", "p02"]
    assert hits[0].score > 2 * hits[2].score
    assert len(hits) == 12
    assert hits[0].source == CATALOG[0].to_source()
    # each hit carries every field's own BM25 score, before its boost; best_fields of them is the hit's score
    for h in hits:
        assert set(h.fields) == {"title", "description"}
        boosted = [5.0 * h.fields["title"], 1.0 * h.fields["description"]]
        assert h.score == pytest.approx(max(boosted) + 0.3 * (sum(boosted) - max(boosted)), rel=1e-5)
    assert hits[0].fields["title"] > 0 and hits[2].fields["title"] == 0.0 and hits[2].fields["description"] > 0
    assert engine.search(catalog, [KnnLeg(Q, k=2)])[0][0].fields == {}
    assert engine.search(catalog, [replace(leg, field_scores=False)])[0][0].fields == {}  # only when asked


def test_bm25_synonyms(engine, catalog):
    syn = load_synonyms(Path(synonyms_module.__file__).parent / "config" / "synonyms.txt")  # the packaged rules
    assert bm25(engine, catalog, "tv", synonyms=syn) == ["p06"]  # tv, television
    assert bm25(engine, catalog, "couch", synonyms=syn) == ["p04"]  # couch, sofa
    assert bm25(engine, catalog, "fridge", synonyms=syn) == ["p08"]
    assert bm25(engine, catalog, "tap", synonyms=syn) == ["p09"]
    assert bm25(engine, catalog, "bbq", synonyms=syn) == ["p10"]
    assert bm25(engine, catalog, "laptop", synonyms=syn) == ["p12"]  # laptop, notebook computer (multi-word)
    assert bm25(engine, catalog, "earphones", synonyms=syn) == ["p07"]
    assert bm25(engine, catalog, "couch") == []  # synonyms travel with the leg; the mapping has none


def test_bm25_typos(engine, catalog):
    assert bm25(engine, catalog, "refrigerater") == ["p08"]  # two edits on a long term
    assert bm25(engine, catalog, "hoodei") == ["p11"]  # transposition counts as one edit
    assert bm25(engine, catalog, "velvat") == ["p04"]
    assert bm25(engine, catalog, "refrigerater", fuzziness=None) == []
    assert bm25(engine, catalog, "oax") == ["p05"]  # 3 letters allow one edit
    assert bm25(engine, catalog, "ta") == []  # 1-2 letters must match exactly
    assert bm25(engine, catalog, "aak") == []  # the first letter must match (prefix_length 1)


# --- k-NN --------------------------------------------------------------------------------------------------------

def test_knn_exact_order_and_scores(engine, catalog):
    hits = engine.search(catalog, [KnnLeg(Q, k=5)])[0]
    assert [h.id for h in hits] == ["p01", "p02", "p03", "p04", "p05"]
    expected = [(1 + math.cos(math.radians(8 * i))) / 2 for i in range(5)]
    assert [h.score for h in hits] == pytest.approx(expected, abs=1e-3)  # lucene cosinesimil: (1 + cos) / 2
    assert hits[2].source == CATALOG[2].to_source()


def test_knn_filters_during_search_return_a_full_k(engine, catalog):
    # The three electronics are the farthest products from Q: a post-filter of the top 3 would return nothing.
    assert knn(engine, catalog, k=3, filters=Filters(category=("Electronics",))) == ["p06", "p07", "p12"]
    assert knn(engine, catalog, k=2, filters=Filters(brand=("Acme",))) == ["p01", "p03"]
    assert knn(engine, catalog, k=4, filters=Filters(in_stock=True, exclude_ids=("p01",))) == [
        "p02", "p04", "p05", "p06"]


# --- filters in both legs ------------------------------------------------------------------------------------------

FILTER_CASES = {
    "brand": (Filters(brand=("Acme", "Comfy")), lambda p: p.brand in ("Acme", "Comfy")),
    "category_top": (Filters(category=("Home",)), lambda p: "Home" in p.category),
    "category_deep": (Filters(category=("Furniture", "Audio")), lambda p: {"Furniture", "Audio"} & set(p.category)),
    "price_range": (Filters(price_min=79.0, price_max=499.0),
                    lambda p: p.price is not None and 79.0 <= p.price <= 499.0),
    "price_max": (Filters(price_max=100.0), lambda p: p.price is not None and p.price <= 100.0),
    "in_stock_true": (Filters(in_stock=True), lambda p: p.in_stock is True),
    "in_stock_false": (Filters(in_stock=False), lambda p: p.in_stock is False),
    "rating_min": (Filters(rating_min=4.4), lambda p: p.rating is not None and p.rating >= 4.4),
    "exclude_ids": (Filters(exclude_ids=("p01", "p12")), lambda p: p.id not in ("p01", "p12")),
    "combined": (Filters(category=("Shoes",), in_stock=True, price_max=60.0),
                 lambda p: "Shoes" in p.category and p.in_stock is True and p.price is not None and p.price <= 60),
    "nothing": (Filters(brand=("NoSuchBrand",)), lambda p: False),
}


@pytest.mark.parametrize("case", sorted(FILTER_CASES))
def test_every_filter_in_both_legs(engine, catalog, case):
    filters, keep = FILTER_CASES[case]
    expected = {p.id for p in CATALOG if keep(p)}
    assert set(bm25(engine, catalog, "quality", {"description": 1.0}, size=50, filters=filters)) == expected
    assert set(knn(engine, catalog, k=12, filters=filters)) == expected
    assert engine.filtered_count(catalog, filters) == len(expected)


# --- matching sets: count, disjunctive facets, sorts, highlights -------------------------------------------------

def cos_score(i: int) -> float:
    """Product ``p{i:02d}``'s vector score for Q: lucene cosinesimil's ``(1 + cos) / 2``."""
    return (1 + math.cos(math.radians((i - 1) * 8))) / 2


def lexical(query: str) -> BM25Leg:
    return BM25Leg(query, {"title": 1.0, "description": 1.0})


def facets(engine, index, query, filters, fields, size=10):
    rule = MatchRule(lexical=lexical(query) if query else None, filters=filters)
    return engine.match(index, rule, facets=fields, facet_size=size).facets


def walk(engine, index, rule, sort, page_size=5, **kw) -> list:
    """Every hit of the matching set, page by page."""
    out, offset = [], 0
    while True:
        page = engine.match(index, rule, sort=sort, offset=offset, size=page_size, **kw)
        out += page.hits
        if len(page.hits) < page_size:
            return out
        offset += page_size


def test_facets(engine, catalog):
    got = facets(engine, catalog, None, Filters(), ["brand", "category_lvl0", "category_lvl2"], size=3)
    assert got["brand"] == [("Acme", 3), ("Comfy", 2), ("Aqua", 1)]  # count desc, then value asc
    assert got["category_lvl0"] == [("Home", 4), ("Electronics", 3), ("Shoes", 3)]
    assert got["category_lvl2"] == [("Sofas", 1), ("Tables", 1)]
    shoes = facets(engine, catalog, "shoes", Filters(), ["brand", "category_lvl1"])
    assert shoes == {"brand": [("Acme", 2), ("Trekker", 1)], "category_lvl1": [("Running", 2), ("Formal", 1)]}
    stocked = facets(engine, catalog, "shoes", Filters(in_stock=True), ["brand"])
    assert stocked == {"brand": [("Acme", 1), ("Trekker", 1)]}
    assert facets(engine, catalog, "zzzqqq", Filters(), ["brand"]) == {"brand": []}
    with pytest.raises(ValueError):
        facets(engine, catalog, None, Filters(), ["title"])


def test_radial_knn_leg_returns_only_products_over_min_score(engine, catalog):
    hits = engine.search(catalog, [KnnLeg(Q, k=12, min_score=cos_score(4) - 1e-4)])[0]
    assert [h.id for h in hits] == ["p01", "p02", "p03", "p04"]
    assert engine.search(catalog, [KnnLeg([-1.0, 0.0, 0.0, 0.0], k=12, min_score=0.9)])[0] == []


FAR = [0.0, 0.0, 1.0, 0.0]  # orthogonal to every product: score 0.5


@pytest.mark.parametrize("query,vector,min_score,filters", [
    ("quality", Q, 0.99, Filters()),  # every product, lexically
    ("shoes", Q, cos_score(6) - 1e-4, Filters()),  # shoes by word, p01..p06 by vector
    ("shoes", Q, cos_score(6) - 1e-4, Filters(brand=("Acme", "Comfy"), in_stock=True)),
    ("zzzzqqq xylophone", FAR, 0.6, Filters()),  # nonsense: no word matches, nothing near enough: zero
])
def test_total_is_the_matching_set_and_pages_walk_it(engine, catalog, query, vector, min_score, filters):
    rule = MatchRule(lexical(query), vector, min_score, filters)
    words = {h.id for h in engine.search(catalog, [replace(lexical(query), size=50, filters=filters)])[0]}
    near = {h.id for h in engine.search(catalog, [KnnLeg(vector, k=12, filters=filters, min_score=min_score)])[0]}
    page = engine.match(catalog, rule)
    assert page.total == len(words | near) and page.hits == []
    walked = walk(engine, catalog, rule, "relevance")
    assert len(walked) == page.total and {h.id for h in walked} == words | near
    scores = [h.score for h in walked]
    assert scores == sorted(scores, reverse=True)  # lexical + vector score, best first
    if query.startswith("zzzz"):
        assert page.total == 0


def test_exclude_skips_ids_in_the_slice_but_not_in_the_count(engine, catalog):
    rule = MatchRule(lexical("quality"), filters=Filters())
    first = [h.id for h in engine.match(catalog, rule, size=3).hits]
    rest = engine.match(catalog, rule, size=12, exclude=first, facets=["brand"])
    assert rest.total == 12 and len(rest.hits) == 9 and not set(first) & {h.id for h in rest.hits}
    assert sum(c for _, c in rest.facets["brand"]) == 12


@pytest.mark.parametrize("filters", [Filters(brand=("Acme",)), Filters(brand=("Acme", "Comfy"), in_stock=True),
                                     Filters(category=("Shoes",)), Filters(brand=("Acme",), category=("Home",))])
def test_facets_are_disjunctive_and_equal_direct_counts(engine, catalog, filters):
    rule = MatchRule(lexical("quality shoes"), Q, cos_score(5) - 1e-4, filters)
    got = engine.match(catalog, rule, facets=["brand", "category_lvl0", "category_lvl1"], facet_size=20).facets
    assert len(got["brand"]) > len(filters.brand)  # the other brands stay countable
    for name, key in (("brand", "brand"), ("category_lvl0", "category"), ("category_lvl1", "category")):
        for value, count in got[name]:
            # The direct query: the same rule with this facet's own filter replaced by its value (no category
            # name of this catalog sits at two levels, so the any-level category filter counts this level's).
            direct = engine.match(catalog, replace(rule, filters=replace(filters, **{key: (value,)})))
            assert count == direct.total, (name, value)


# --- attribute, range and category-path facets ----------------------------------------------------------------

def _passes(p: Product, f: Filters) -> bool:
    """The filters of these tests, computed over the catalog itself (the expected counts)."""
    paths = {" > ".join(p.category[:i + 1]) for i in range(len(p.category))}
    return ((not f.brand or p.brand in f.brand)
            and (not f.category_path or bool(paths & set(f.category_path)))
            and (f.price_min is None or (p.price is not None and p.price >= f.price_min))
            and (f.price_max is None or (p.price is not None and p.price <= f.price_max))
            and (f.rating_min is None or (p.rating is not None and p.rating >= f.rating_min))
            and (f.in_stock is None or p.in_stock == f.in_stock)
            and all(p.attributes.get(name) in values for name, values in f.attributes))


def _with_attr(filters: Filters, name: str, values: tuple[str, ...]) -> Filters:
    kept = tuple((n, v) for n, v in filters.attributes if n != name)
    return replace(filters, attributes=tuple(sorted(kept + ((name, values),))))


ATTRIBUTE_FILTERS = [
    Filters(),
    Filters(attributes=(("color", ("blue", "red")),)),  # two values of one attribute
    Filters(attributes=(("color", ("black", "blue")), ("material", ("leather", "mesh", "velvet")))),
    Filters(brand=("Acme", "Comfy"), attributes=(("color", ("red",)),), price_max=500.0),
    Filters(in_stock=True, rating_min=4.0, category_path=("Shoes",), attributes=(("size", ("42",)),)),
]


@pytest.mark.parametrize("filters", ATTRIBUTE_FILTERS)
def test_attribute_facets_are_disjunctive_and_equal_direct_counts(engine, catalog, filters):
    """Each attribute facet ignores its own attribute's filter and obeys the others; every count equals the
    engine's direct count of the same filters with that one value (OpenSearch: a _count query; embedded: its
    snapshot's count) and the count over the catalog itself."""
    page = engine.match(catalog, MatchRule(filters=filters), facets=["attr.color", "attr.size", "attr.material"],
                        facet_size=20)
    assert page.total == sum(_passes(p, filters) for p in CATALOG)
    for name in FACET_ATTRIBUTES:
        values = {p.attributes[name] for p in CATALOG if name in p.attributes}
        expected = {v: sum(_passes(p, _with_attr(filters, name, (v,))) for p in CATALOG) for v in values}
        assert dict(page.facets[f"attr.{name}"]) == {v: c for v, c in expected.items() if c}, name
        for value, count in page.facets[f"attr.{name}"]:
            assert engine.filtered_count(catalog, _with_attr(filters, name, (value,))) == count, (name, value)
    counts = [c for _, c in page.facets["attr.color"]]
    assert counts == sorted(counts, reverse=True)


def test_two_values_of_one_attribute(engine, catalog):
    two = Filters(attributes=(("color", ("blue", "red")),))
    page = engine.match(catalog, MatchRule(filters=two), size=12, facets=["attr.color", "attr.material"])
    assert sorted(h.id for h in page.hits) == ["p01", "p02", "p04", "p11"] and page.total == 4
    # The color facet still offers every color (a shopper can add a third); material obeys the color filter.
    assert dict(page.facets["attr.color"]) == {"black": 2, "blue": 2, "red": 2, "brown": 1, "silver": 1, "white": 1}
    assert dict(page.facets["attr.material"]) == {"mesh": 2, "velvet": 1, "cotton": 1}
    lexical_rule = MatchRule(lexical("shoes"), filters=two)
    got = engine.match(catalog, lexical_rule, facets=["attr.color"]).facets["attr.color"]
    assert got == [("black", 1), ("blue", 1), ("red", 1)]
    for value, count in got:
        assert engine.match(catalog, replace(lexical_rule, filters=_with_attr(two, "color", (value,)))).total == count


def test_undeclared_or_unknown_attributes_have_no_facet(engine, catalog):
    got = engine.match(catalog, MatchRule(), facets=["attr.origin", "attr.nothing"]).facets
    assert got == {"attr.origin": [], "attr.nothing": []}
    assert engine.match(catalog, MatchRule(filters=Filters(attributes=(("origin", ("IT",)),)))).total == 0
    for bad in ("attr.", "attr.a.b", "attr.x y", "color"):
        with pytest.raises(ValueError, match="facets"):
            engine.match(catalog, MatchRule(), facets=[bad])
    with pytest.raises(ValueError, match="attributes"):
        Filters(attributes=(("a.b", ("x",)),))


def test_price_and_rating_buckets(engine, catalog):
    f = Filters(price_min=50.0, price_max=300.0, rating_min=4.5)
    page = engine.match(catalog, MatchRule(filters=f), facets=["price", "rating", "brand"])
    # price ignores price_min/price_max and obeys rating_min; rating the other way round.
    assert page.facets["price"] == [("50-100", 1), ("250+", 2)]  # p01 59.99; p04 799, p10 399 (p12 has no price)
    assert page.facets["rating"] == [("4+", 4), ("3+", 6), ("2+", 6), ("1+", 6)]  # p01 p02 p03 p05 p07 p09
    assert page.total == 1 and dict(page.facets["brand"]) == {"Acme": 1}
    everything = engine.match(catalog, MatchRule(), facets=["price", "rating"]).facets
    assert everything["price"] == [("25-50", 1), ("50-100", 3), ("100-250", 3), ("250+", 4)]
    assert everything["rating"] == [("4+", 9), ("3+", 11), ("2+", 11), ("1+", 11)]
    custom = engine.match(catalog, MatchRule(), facets=["price"], price_edges=(100.0, 1000.0)).facets["price"]
    assert custom == [("0-100", 4), ("100-1000", 6), ("1000+", 1)]
    for label, count in everything["price"]:  # [from, to]: what the bucket's link price_min/price_max selects
        lo, _, hi = label.partition("-")
        f = Filters(price_min=float(lo.rstrip("+")), price_max=float(hi) if hi else None)
        assert engine.filtered_count(catalog, f) == count, label
    with pytest.raises(ValueError, match="price_edges"):
        engine.match(catalog, MatchRule(), facets=["price"], price_edges=(50.0, 25.0))


EDGE_PRICES = {"e0": 0.0, "e1": 19.99, "e2": 25.0, "e3": 25.01, "e4": 49.99, "e5": 50.0, "e6": 100.0, "e7": 250.0,
               "e8": 1000.0, "e9": None}


@pytest.mark.parametrize("edges, expect", [
    ((25.0, 50.0, 100.0, 250.0), [("0-25", 3), ("25-50", 4), ("50-100", 2), ("100-250", 2), ("250+", 2)]),
    ((19.99, 25.0, 50.0), [("0-19.99", 2), ("19.99-25", 2), ("25-50", 4), ("50+", 4)]),  # an edge off float32
])
def test_a_price_bucket_counts_exactly_what_its_link_selects(engine, new_index, edges, expect):
    """The storefront links a bucket 'lo-hi' to price_min=lo&price_max=hi (both inclusive): a product priced
    exactly at an edge is in the count of both buckets that share it, as it is in both of their results; the
    engines count alike (the same expected lists)."""
    name = new_index()
    products = [Product(id=pid, title=f"Edge product {pid}", price=price) for pid, price in EDGE_PRICES.items()]
    docs = [IndexDoc(p, _vec(i + 1), p.content_hash()) for i, p in enumerate(products)]
    assert all(item.ok for item in engine.bulk(name, docs))
    engine.refresh(name)
    buckets = engine.match(name, MatchRule(), facets=["price"], price_edges=edges).facets["price"]
    assert buckets == expect
    for label, count in buckets:
        lo, _, hi = label.rstrip("+").partition("-")
        link = Filters(price_min=float(lo), price_max=float(hi) if hi else None)
        page = engine.match(name, MatchRule(filters=link), size=20)
        assert page.total == len(page.hits) == engine.filtered_count(name, link) == count, label
        shown = sorted(EDGE_PRICES[h.id] for h in page.hits)
        assert shown[0] == float(lo) and (not hi or shown[-1] == float(hi)), label  # the edge products are in
    # the same filter under the bucket: the facet ignores it, the hits obey it
    chosen = engine.match(name, MatchRule(filters=Filters(price_min=0.0, price_max=25.0)), facets=["price"],
                          price_edges=edges)
    assert chosen.facets["price"] == expect and chosen.total == sum(1 for p in EDGE_PRICES.values()
                                                                    if p is not None and p <= 25.0)


def test_category_paths_count_prefixes_and_filter_subtrees(engine, catalog):
    page = engine.match(catalog, MatchRule(), facets=["category_path"], facet_size=20)
    # No path chosen: the roots only.
    assert page.facets["category_path"] == [("Home", 4), ("Electronics", 3), ("Shoes", 3), ("Clothing", 1),
                                            ("Outdoor", 1)]
    chosen = Filters(category_path=("Home > Furniture",))
    page = engine.match(catalog, MatchRule(filters=chosen), size=12, facets=["category_path", "brand"],
                        facet_size=20)
    assert sorted(h.id for h in page.hits) == ["p04", "p05"] and page.total == 2
    assert dict(page.facets["brand"]) == {"Comfy": 2}
    # Disjunctive: the roots, Home's children and Furniture's children, each level counted without the filter.
    assert page.facets["category_path"] == [
        ("Home", 4), ("Electronics", 3), ("Shoes", 3), ("Clothing", 1), ("Outdoor", 1),
        ("Home > Furniture", 2), ("Home > Appliances", 1), ("Home > Kitchen", 1),
        ("Home > Furniture > Sofas", 1), ("Home > Furniture > Tables", 1)]
    for path, count in page.facets["category_path"]:
        assert engine.filtered_count(catalog, Filters(category_path=(path,))) == count, path
    assert engine.match(catalog, MatchRule(filters=Filters(category_path=("Home",)))).total == 4
    assert engine.match(catalog, MatchRule(filters=Filters(category_path=("Furniture",)))).total == 0  # not a root
    both = Filters(category_path=("Shoes > Running", "Home > Kitchen"), brand=("Acme",))
    assert engine.match(catalog, MatchRule(filters=both)).total == 1  # p01


SORT_KEYS = {"price_asc": lambda p: p.price, "price_desc": lambda p: p.price, "rating": lambda p: p.rating}


@pytest.mark.parametrize("sort", sorted(SORTS))
def test_every_sort_is_monotone_over_all_pages(engine, catalog, sort):
    rule = MatchRule(lexical("quality"), Q, 0.99, Filters())
    hits = walk(engine, catalog, rule, sort, page_size=5)
    assert len(hits) == engine.match(catalog, rule).total == 12
    ids = [h.id for h in hits]
    assert len(set(ids)) == 12
    if sort == "relevance":
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        return
    values = [SORT_KEYS[sort](BY_ID[i]) for i in ids]
    present = [v for v in values if v is not None]
    assert values[:len(present)] == present, "products without the field come last"
    assert present == sorted(present, reverse=sort != "price_asc")
    missing = ids[len(present):]
    assert missing == sorted(missing)


def test_newest_is_refused_with_its_reason(engine, catalog):
    with pytest.raises(ValueError, match=r"sort='newest' is not available: products carry no listing date"):
        engine.match(catalog, MatchRule(lexical("quality"), Q, 0.99, Filters()), sort="newest", size=5)


def test_browse_sorted_by_price_walks_every_filtered_product(engine, catalog):
    rule = MatchRule(filters=Filters(category=("Home",)))
    hits = walk(engine, catalog, rule, "price_desc", page_size=3)
    assert [h.id for h in hits] == ["p08", "p04", "p05", "p09"]


def test_highlights_mark_query_terms_and_escape_markup(engine, catalog):
    page = engine.match(catalog, MatchRule(lexical("quality earbuds")), size=12, highlight="quality earbuds")
    by_id = {h.id: h.highlights for h in page.hits}
    assert by_id["p07"] == {"title": "Wireless <em>Earbuds</em>",
                            "description": "<em>Quality</em> sound &lt;b&gt;noise cancelling&lt;&#x2F;b&gt;"}
    assert by_id["p01"] == {"description": "Lightweight running shoe, <em>quality</em> mesh"}
    fetched = engine.sources(catalog, ["p07", "p02", "nope"], highlight="earbud")
    assert sorted(fetched) == ["p02", "p07"] and fetched["p02"].highlights == {}
    assert fetched["p07"].highlights == {"title": "Wireless <em>Earbuds</em>"}
    assert fetched["p07"].source == CATALOG[6].to_source()
    for h in page.hits:
        for text in h.highlights.values():
            bare = text.replace("<em>", "").replace("</em>", "")
            assert "<" not in bare and ">" not in bare  # nothing but our own markup is unescaped
            assert "<em>" in text
    typo = engine.sources(catalog, ["p08"], highlight="refrigerater")["p08"].highlights
    assert typo == {"title": "Stainless Steel <em>Refrigerator</em>"}  # fuzzy matches are marked too
    assert engine.match(catalog, MatchRule(lexical("earbuds")), size=1).hits[0].highlights == {}


# --- both engines side by side -------------------------------------------------------------------------------------

def test_cross_engine_scores_match(tmp_path, opensearch_url):
    """Not just the same order: the embedded BM25 and k-NN scores equal OpenSearch's (so fusion treats them alike)."""
    from shopsearch.plugin.embedded_engine import EmbeddedEngine
    from shopsearch.plugin.opensearch_engine import OpenSearchEngine

    engines = [EmbeddedEngine(tmp_path), OpenSearchEngine(url=opensearch_url)]
    name = f"contract-{uuid.uuid4().hex[:8]}-scores"
    fields = {"title": 3.0, "description": 1.0, "brand_text": 1.0, "category_text": 1.0}
    syn = load_synonyms(Path(synonyms_module.__file__).parent / "config" / "synonyms.txt")
    legs = [BM25Leg(q, fields, size=12, field_scores=True) for q in ("running shoes", "acme shoes", "laptop", "tv",
                                                                     "velvat sofa", "home furniture", "quality")]
    legs += [BM25Leg(q, fields, size=12, synonyms=syn, field_scores=True) for q in ("couch", "laptop bag")]
    legs.append(KnnLeg(Q, k=6, filters=Filters(in_stock=True)))
    try:
        results = []
        for eng in engines:
            eng.create_index(name, DIMS)
            list(eng.bulk(name, _docs()))
            eng.refresh(name)
            results.append(eng.search(name, legs))
        for leg, emb, ops in zip(legs, *results):
            assert {h.id: h.score for h in emb} == pytest.approx({h.id: h.score for h in ops}, rel=1e-4), leg
            # and so are the per-field scores (OpenSearch's from its named clauses), the ranker's features
            assert {(h.id, f): s for h in emb for f, s in h.fields.items()} == pytest.approx(
                {(h.id, f): s for h in ops for f, s in h.fields.items()}, rel=1e-4, abs=1e-6), leg
    finally:
        for eng in engines:
            eng.delete_index(name)
            eng.close()


def test_suggest_matches_word_prefixes_and_ranks_alike(engine, catalog):
    # "run" prefixes "Running" in two titles; the title starting with the typed words is not required here,
    # so the shorter title wins; "red ru" needs both words.
    assert engine.suggest(catalog, "run", 5) == ["Red Running Shoes", "Trail Running Shoes Waterproof"]
    assert engine.suggest(catalog, "red ru", 5) == ["Red Running Shoes"]
    assert engine.suggest(catalog, "Tele", 5) == ["55 inch 4K Television"]
    assert engine.suggest(catalog, "sh", 1) == ["Leather Dress Shoes"]  # size caps; ties go A-Z
    assert engine.suggest(catalog, "  ", 5) == []
    assert engine.suggest(catalog, "zzzq", 5) == []
    with pytest.raises(ValueError, match="size"):
        engine.suggest(catalog, "run", 0)


# --- spelling: the vocabulary, corrections, "did you mean", relaxed results ------------------------------------

def test_vocabulary_holds_the_catalog_words_with_document_frequencies(engine, catalog, new_index, monkeypatch):
    vocab = engine.vocabulary(catalog)
    assert vocab.words["quality"] == 12 and vocab.words["running"] == 2 and vocab.words["acme"] == 3
    assert "55" not in vocab.words and "4k" not in vocab.words and "tv" not in vocab.words  # no codes, no short
    assert vocab.pairs["running shoes"] == 2  # adjacent pairs held by two products or more
    assert engine.vocabulary(catalog).version == vocab.version  # cached per index version
    monkeypatch.setattr("shopsearch.plugin.opensearch_engine.VOCABULARY_CHECK_S", 0.0)  # check at once
    name = new_index()
    assert all(i.ok for i in engine.bulk(name, _docs()[:2]))
    engine.refresh(name)
    before = engine.vocabulary(name)
    assert before.words["running"] == 2 and "velvet" not in before.words
    assert all(i.ok for i in engine.bulk(name, _docs()[3:4]))
    engine.refresh(name)
    after = engine.vocabulary(name)
    assert after.version != before.version and after.words["velvet"] == 1  # a write makes a new version


class SofaEmbedder:
    """Queries with "sofa" sit on p04's vector, unless they hold nonsense ("zzzz"); anything else is orthogonal to
    every product (score 0.5)."""

    def encode(self, texts):
        import numpy as np

        return np.array([_vec(4) if "sofa" in t and "zzzz" not in t else [0.0, 0.0, 1.0, 0.0] for t in texts],
                        dtype=np.float32)


@pytest.mark.parametrize("query, profile, expect", [
    # nonsense: no word matches, nothing near, nothing close in the vocabulary: zero hits, an empty suggestion list
    ("zzzzqqq xylophone", "default", dict(total=0, did_you_mean=[], relaxed=False, correction=None)),
    # nothing matches (the typo is two edits away and starts the word), but the vocabulary has a close word
    ("zzzzqqq sifaa", "default", dict(total=0, did_you_mean=["sofa"], relaxed=False, correction=None)),
    # a typo is corrected before the query is embedded, and the response says so
    ("velvit sofaa", "default", dict(first="p04", correction="velvet sofa", relaxed=False, did_you_mean=[])),
    # the vector-only profile finds nothing for the whole query, but its known words do: relaxed results
    ("zzzzqqq sofa", "dense", dict(first="p04", correction="sofa", relaxed=True, did_you_mean=["sofa"])),
])
def test_spelling_nothing_found_did_you_mean_and_relaxed(engine, catalog, query, profile, expect):
    from shopsearch.plugin.hybrid import HybridSearcher
    from shopsearch.plugin.search_types import SearchRequest

    resp = HybridSearcher(engine, catalog, SofaEmbedder()).search(SearchRequest(query, size=5, profile=profile))
    assert list(resp.did_you_mean) == expect["did_you_mean"]
    assert (resp.correction, resp.relaxed) == (expect["correction"], expect["relaxed"])
    if "total" in expect:
        assert resp.total == expect["total"] and resp.hits == []
    else:
        assert resp.total >= len(resp.hits) > 0 and resp.hits[0].id == expect["first"]


def test_a_correction_that_found_nothing_is_not_suggested_again(engine, catalog):
    """Under filters nothing matches: the page said "Did you mean velvet sofa?", the very search it had run."""
    from shopsearch.plugin.engine import Filters
    from shopsearch.plugin.hybrid import HybridSearcher
    from shopsearch.plugin.search_types import SearchRequest

    req = SearchRequest("velvit sofaa", size=5, filters=Filters(brand=("no-such-brand",)))
    resp = HybridSearcher(engine, catalog, SofaEmbedder()).search(req)
    assert (resp.total, resp.correction) == (0, "velvet sofa")
    assert "velvet sofa" not in resp.did_you_mean
