"""OpenSearchEngine against the real node, plain and secured: bulk, aliases, analysis, fuzziness, filtered k-NN,
facets, errors."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from shopsearch.indexer.records import Product
from shopsearch.indexer.sink import BulkItem, Delete, IndexDoc
from shopsearch.plugin.engine import BM25Leg, EngineUnavailable, Filters, IndexNotFound, KnnLeg, MatchRule
from shopsearch.plugin.index_config import IndexConfig, load_index_config
from shopsearch.plugin.opensearch_engine import OpenSearchEngine
from shopsearch.plugin.synonyms import load_synonyms
from tests.conftest import secure_settings

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.opensearch
DIMS = 4
TITLE = {"title": 3.0, "description": 1.0}


def doc(pid: str, title: str, vector: list[float], **fields) -> IndexDoc:
    product = Product(id=pid, title=title, **fields)
    return IndexDoc(product=product, vector=vector, content_hash=product.content_hash())


def unique(suffix: str) -> str:
    return f"test-os-{uuid.uuid4().hex[:8]}-{suffix}"


@pytest.fixture(scope="module", params=["plain", "secure"])
def engine(request, opensearch_url):
    """The adapter on the plain node, then on the secured one (HTTPS with certificate checks, basic auth)."""
    if request.param == "plain":
        eng = OpenSearchEngine(opensearch_url, timeout=10)
    else:
        eng = OpenSearchEngine(settings=secure_settings(request.getfixturevalue("secure_node")), timeout=10)
    yield eng
    eng.close()


@pytest.fixture
def new_index(engine):
    """Factory for empty indices that are deleted after the test."""
    made: list[str] = []

    def make(suffix: str = "idx", dims: int = DIMS) -> str:
        name = unique(suffix)
        engine.create_index(name, dims)
        made.append(name)
        return name

    yield make
    for name in made:
        engine.delete_index(name)


def catalog() -> list[IndexDoc]:
    """30 Acme products next to the query vector [1,0,0,0], 4 Zeta products far from it, and a few texts."""
    docs = [doc(f"a{i}", f"Acme widget {i}", [1.0, 0.01 * i, 0.0, 0.0], brand="Acme",
                category=("Home", "Tools"), price=10.0 + i, in_stock=i % 2 == 0, rating=4.0)
            for i in range(30)]
    docs += [doc(f"z{i}", f"Zeta gadget {i}", [0.0, 1.0, 0.1 * i, 0.0], brand="Zeta",
                 category=("Home", "Garden"), price=100.0 + i, in_stock=True, rating=2.0 + i)
             for i in range(4)]
    docs += [
        doc("tv1", "Samsung 55 inch TV", [0.0, 0.0, 1.0, 0.0], brand="Samsung",
            category=("Electronics", "TV & Video", "Televisions"), price=499.0, in_stock=True),
        doc("run1", "Trail run shoe", [0.0, 0.0, 0.0, 1.0], brand="Nike", category=("Apparel", "Shoes"),
            price=89.0, in_stock=False, description="Light shoe for the trail"),
        doc("lap1", "Dell laptop 15 inch", [0.0, 0.0, 0.7, 0.7], brand="Dell",
            category=("Electronics", "Computers", "Laptops"), price=899.0, in_stock=True),
    ]
    return docs


@pytest.fixture(scope="module")
def products(engine):
    """A module-wide index holding :func:`catalog`, refreshed."""
    name = unique("products")
    engine.create_index(name, DIMS)
    items = list(engine.bulk(name, catalog()))
    assert all(item.ok for item in items), [i for i in items if not i.ok]
    engine.refresh(name)
    yield name
    engine.delete_index(name)


def ids(hits) -> list[str]:
    return [h.id for h in hits]


# --- bulk and reads --------------------------------------------------------------------------------------------


def test_bulk_reports_each_item_in_order_with_the_failing_one_explained(engine, new_index):
    index = new_index("bulk")
    good = [doc("p1", "Red lamp", [1, 0, 0, 0]), doc("p2", "Blue lamp", [0, 1, 0, 0]),
            doc("p3", "Green lamp", [0, 0, 1, 0])]
    wrong_dims = doc("bad", "Broken lamp", [1.0, 2.0])
    items = list(engine.bulk(index, [good[0], wrong_dims, good[1], good[2]]))

    assert [i.id for i in items] == ["p1", "bad", "p2", "p3"]
    assert [i.ok for i in items] == [True, False, True, True]
    assert "dimension" in items[1].error.lower() and "400" in items[1].error
    engine.refresh(index)
    assert engine.count(index) == 3

    deletes = list(engine.bulk(index, [Delete("p2"), Delete("never-stored")]))
    assert deletes == [BulkItem("p2", True), BulkItem("never-stored", True)]
    engine.refresh(index)
    assert engine.count(index) == 2
    assert engine.get(index, "p2") is None


def test_bulk_chunks_by_count_and_keeps_order(engine, new_index):
    small_chunks = OpenSearchEngine(settings=engine.settings, config=IndexConfig(chunk_size=2, max_chunk_bytes=10_000))
    index = new_index("chunks")
    docs = [doc(f"c{i}", f"Chair {i}", [1, i, 0, 0]) for i in range(7)]
    nan_doc = doc("nan", "Chair nan", [float("nan"), 0, 0, 0])
    items = list(small_chunks.bulk(index, docs[:3] + [nan_doc] + docs[3:]))
    small_chunks.close()
    assert [i.id for i in items] == ["c0", "c1", "c2", "nan", "c3", "c4", "c5", "c6"]
    assert [i.ok for i in items].count(False) == 1 and "NaN" in items[3].error
    engine.refresh(index)
    assert engine.count(index) == 7


def test_get_returns_public_fields_and_vector_on_request(engine, products):
    src = engine.get(products, "tv1")
    assert src["title"] == "Samsung 55 inch TV" and src["brand"] == "Samsung"
    assert src["category"] == ["Electronics", "TV & Video", "Televisions"]
    assert not {"embedding", "content_hash", "brand_text", "category_lvl0", "vector"} & set(src)
    assert engine.get(products, "tv1", with_vector=True)["vector"] == [0.0, 0.0, 1.0, 0.0]
    assert engine.get(products, "no-such-id") is None


def test_scan_hashes_and_filtered_count(engine, products):
    hashes = dict(engine.scan_hashes(products))
    expected = {d.product.id: d.content_hash for d in catalog()}
    assert hashes == expected
    assert engine.filtered_count(products, Filters(brand=("Acme",), in_stock=True)) == 15
    assert engine.filtered_count(products, Filters(category=("Electronics",))) == 2
    assert engine.filtered_count(products, Filters(category=("Laptops",), price_max=900.0)) == 1
    assert engine.filtered_count(products, Filters(price_min=10.0, price_max=12.0)) == 3
    assert engine.filtered_count(products, Filters(rating_min=4.0, exclude_ids=("a0", "a1"))) == 28 + 2  # z2, z3
    assert engine.filtered_count(products, Filters()) == engine.count(products) == 37


# --- indices and aliases ---------------------------------------------------------------------------------------


def test_alias_swap_moves_the_alias_in_one_call_and_leaves_the_old_index_alone(engine, new_index, monkeypatch):
    old, new = new_index("v1"), new_index("v2")
    alias = unique("alias")
    list(engine.bulk(old, [doc("o1", "Old lamp", [1, 0, 0, 0])]))
    engine.refresh(old)
    assert engine.resolve_alias(alias) is None

    engine.swap_alias(alias, old)
    assert engine.resolve_alias(alias) == old

    calls = []
    real = engine.client.indices.update_aliases
    monkeypatch.setattr(engine.client.indices, "update_aliases", lambda **kw: calls.append(kw) or real(**kw))
    engine.swap_alias(alias, new)
    assert len(calls) == 1
    assert calls[0]["body"]["actions"] == [{"remove": {"index": old, "alias": alias}},
                                           {"add": {"index": new, "alias": alias}}]
    assert engine.resolve_alias(alias) == new
    assert engine.index_exists(old) and engine.count(old) == 1 and engine.get(old, "o1")["title"] == "Old lamp"
    assert engine.count(alias) == 0  # the alias now reads the new, empty index

    with pytest.raises(IndexNotFound):
        engine.swap_alias(alias, unique("missing"))
    assert engine.resolve_alias(alias) == new


def test_list_delete_and_exists(engine, new_index):
    prefix = unique("list")
    names = [f"{prefix}-b", f"{prefix}-a"]
    for name in names:
        engine.create_index(name, DIMS)
    try:
        assert engine.list_indices(prefix) == sorted(names)
        assert engine.index_exists(names[0])
    finally:
        for name in names:
            engine.delete_index(name)
    engine.delete_index(names[0])  # idempotent
    assert not engine.index_exists(names[0]) and engine.list_indices(prefix) == []
    with pytest.raises(ValueError, match="name"):
        engine.delete_index("Bad*Name")


def test_set_bulk_mode_toggles_refresh(engine, new_index):
    index = new_index("bulkmode")

    def setting(key):
        return engine.client.indices.get_settings(index=index)[index]["settings"]["index"][key]

    engine.set_bulk_mode(index, True)
    assert setting("refresh_interval") == "-1" and setting("number_of_replicas") == "0"
    engine.set_bulk_mode(index, False)
    assert setting("refresh_interval") == "1s"


# --- search ----------------------------------------------------------------------------------------------------


def test_msearch_returns_one_list_per_leg_without_vectors(engine, products):
    legs = [BM25Leg("widget", TITLE, size=5), KnnLeg([1, 0, 0, 0], k=4), BM25Leg("gadget", TITLE, size=2),
            BM25Leg("", TITLE)]
    results = engine.search(products, legs)
    assert len(results) == 4
    assert len(results[0]) == 5 and all(h.id.startswith("a") for h in results[0])
    assert ids(results[1]) == ["a0", "a1", "a2", "a3"]  # cosine order of [1, 0.01*i, 0, 0]
    assert len(results[2]) == 2 and all(h.id.startswith("z") for h in results[2])
    assert results[3] == []
    for hits in results[:3]:
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        assert all("embedding" not in h.source and "content_hash" not in h.source for h in hits)
    assert results[1][0].product.brand == "Acme"
    assert engine.search(products, []) == []


def test_english_stemming_and_synonyms(engine, products):
    syn = load_synonyms(REPO / "plugin" / "config" / "synonyms.txt")  # applied at search time (plugin/synonyms.py), not by the mapping
    television, running, runs = engine.search(products, [BM25Leg("television", TITLE, fuzziness=None, synonyms=syn),
                                                          BM25Leg("running", TITLE, fuzziness=None),
                                                          BM25Leg("runs", TITLE, fuzziness=None)])
    assert ids(television) == ["tv1"]
    assert ids(running) == ["run1"] and ids(runs) == ["run1"]


def test_fuzziness_tolerates_typos_only_when_enabled(engine, products):
    fuzzy, exact = engine.search(products, [BM25Leg("lapptop", TITLE), BM25Leg("lapptop", TITLE, fuzziness=None)])
    assert ids(fuzzy) == ["lap1"]
    assert exact == []


def test_bm25_filters_apply_inside_the_query(engine, products):
    (hits,) = engine.search(products, [BM25Leg("widget", TITLE, size=100,
                                               filters=Filters(in_stock=True, price_max=20.0,
                                                               exclude_ids=("a0",)))])
    assert sorted(ids(hits)) == sorted(["a2", "a4", "a6", "a8", "a10"])


def test_knn_filter_returns_a_full_k_when_nearest_neighbours_are_filtered_out(engine, products):
    only_zeta, excluded = engine.search(products, [
        KnnLeg([1, 0, 0, 0], k=3, filters=Filters(brand=("Zeta",))),
        KnnLeg([1, 0, 0, 0], k=3, filters=Filters(exclude_ids=("a0", "a1"))),
    ])
    # The 30 nearest products are Acme; a post-filter on the top 3 would leave nothing.
    assert len(only_zeta) == 3 and {h.source["brand"] for h in only_zeta} == {"Zeta"}
    assert ids(excluded) == ["a2", "a3", "a4"]


def facets(engine, index, query, filters, fields, size=10):
    rule = MatchRule(lexical=BM25Leg(query, {"title": 3.0, "description": 1.0}) if query is not None else None,
                     filters=filters)
    return engine.match(index, rule, facets=fields, facet_size=size).facets


def test_facets_count_the_matches_that_pass_the_other_filters(engine, products):
    everything = facets(engine, products, None, Filters(), ["brand", "category_lvl0", "category_lvl1"], size=3)
    assert everything["brand"] == [("Acme", 30), ("Zeta", 4), ("Dell", 1)]
    assert everything["category_lvl0"] == [("Home", 34), ("Electronics", 2), ("Apparel", 1)]
    assert everything["category_lvl1"][0] == ("Tools", 30)

    gadgets = facets(engine, products, "gadget", Filters(rating_min=3.0), ["brand"])
    assert gadgets == {"brand": [("Zeta", 3)]}
    # The brand facet ignores the brand filter (disjunctive); a blank query matches nothing.
    assert facets(engine, products, None, Filters(brand=("Dell", "Nike")), ["brand"], 3)["brand"] == [
        ("Acme", 30), ("Zeta", 4), ("Dell", 1)]
    assert facets(engine, products, "", Filters(), ["brand"]) == {"brand": []}
    with pytest.raises(ValueError, match="facet fields"):
        facets(engine, products, None, Filters(), ["title"])


# --- errors ----------------------------------------------------------------------------------------------------


def test_missing_index_raises_index_not_found(engine):
    missing = unique("missing")
    for call in (lambda: engine.count(missing), lambda: engine.get(missing, "1"),
                 lambda: engine.search(missing, [BM25Leg("x", TITLE)]), lambda: list(engine.bulk(missing, [])),
                 lambda: engine.match(missing, MatchRule(), facets=["brand"]),
                 lambda: list(engine.scan_hashes(missing))):
        with pytest.raises(IndexNotFound):
            call()


def test_bad_query_raises_value_error_with_opensearch_reason(engine, products):
    with pytest.raises(ValueError, match="dimension"):
        engine.search(products, [KnnLeg([1.0, 2.0], k=3)])
    with pytest.raises(ValueError, match="fields"):
        engine.search(products, [BM25Leg("tv", {"embedding": 1.0})])
    with pytest.raises(ValueError, match="k=0"):
        engine.search(products, [KnnLeg([1, 0, 0, 0], k=0)])


def test_unreachable_node_raises_engine_unavailable_quickly():
    dead = OpenSearchEngine("http://127.0.0.1:1", config=load_index_config(), timeout=1)
    started = time.monotonic()
    for call in (lambda: dead.count("products"), lambda: dead.search("products", [BM25Leg("tv", TITLE)]),
                 lambda: list(dead.bulk("products", [Delete("1")]))):
        with pytest.raises(EngineUnavailable, match="127.0.0.1:1"):
            call()
    assert time.monotonic() - started < 3.0
    dead.close()


def test_an_index_made_before_paths_and_attribute_facets_takes_them_on_its_next_run(engine):
    """An indexing run records its meta first (set_index_meta), which adds the new fields to an older index's
    strict mapping; before that the facets are simply empty and a search works."""
    from shopsearch.plugin.index_config import opensearch_index_body

    name = unique("old")
    body = opensearch_index_body(load_index_config(), DIMS)
    body["mappings"].pop("dynamic_templates")
    for field in ("category_paths", "attr"):
        body["mappings"]["properties"].pop(field)
    engine.client.indices.create(index=name, body=body)
    try:
        facets = ["category_path", "attr.color", "price"]
        assert engine.match(name, MatchRule(), facets=facets).facets == {f: [] for f in facets}
        engine.set_index_meta(name, {"facet_attributes": "color"})
        product = Product(id="1", title="Oak desk", category=("Home", "Office"), price=120.0,
                          attributes={"color": "brown", "origin": "SE"})
        items = list(engine.bulk(name, [IndexDoc(product, [1.0, 0.0, 0.0, 0.0], "h", ("color",))]))
        assert all(i.ok for i in items), items
        engine.refresh(name)
        got = engine.match(name, MatchRule(filters=Filters(category_path=("Home",))), facets=facets, size=1)
        assert got.total == 1 and got.facets == {"category_path": [("Home", 1), ("Home > Office", 1)],
                                                 "attr.color": [("brown", 1)], "price": [("100-250", 1)]}
        mapping = engine.client.indices.get_mapping(index=name)[name]["mappings"]["properties"]
        assert mapping["attr"]["properties"]["color"]["type"] == "keyword"
        assert "attr" not in got.hits[0].source and "category_paths" not in got.hits[0].source
        assert got.hits[0].source["attributes"] == {"color": "brown", "origin": "SE"}
    finally:
        engine.delete_index(name)
