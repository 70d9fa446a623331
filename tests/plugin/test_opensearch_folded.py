"""The folded OpenSearch search path: legs + facets in one _msearch, sources fetched for the page only.

Checks it returns exactly what the plain path (``search`` + ``facets``, sources from the legs) returns, on the real
node, both at the adapter and through HybridSearcher.
"""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from shopsearch.indexer.records import Product
from shopsearch.indexer.sink import IndexDoc
from shopsearch.plugin.engine import BM25Leg, Filters, IndexNotFound, KnnLeg
from shopsearch.plugin.hybrid import HybridSearcher
from shopsearch.plugin.opensearch_engine import OpenSearchEngine
from shopsearch.plugin.search_types import SearchRequest

pytestmark = pytest.mark.opensearch
FACETS = ["brand", "category_lvl0", "category_lvl1"]


def catalog() -> list[IndexDoc]:
    """20 lamps and 10 drills with 4-d vectors; brands and categories to facet on."""
    out = []
    for i in range(30):
        lamp = i < 20
        p = Product(id=f"p{i:02d}", title=f"{'Desk lamp' if lamp else 'Cordless drill'} model {i}",
                    description="warm light" if lamp else "18V battery", brand=["Lumo", "Brightway", "Torq"][i % 3],
                    category=("Home", "Lighting") if lamp else ("Tools", "Drills"), price=10.0 + i,
                    in_stock=i % 2 == 0)
        vec = [1.0, 0.02 * i, 0.0, 0.0] if lamp else [0.0, 0.0, 1.0, 0.03 * i]
        out.append(IndexDoc(product=p, vector=vec, content_hash=p.content_hash()))
    return out


@pytest.fixture(scope="module")
def engine(opensearch_url):
    eng = OpenSearchEngine(opensearch_url, timeout=10)
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def index(engine):
    name = f"test-fold-{uuid.uuid4().hex[:8]}"
    engine.create_index(name, 4)
    assert all(item.ok for item in engine.bulk(name, catalog()))
    engine.refresh(name)
    yield name
    engine.delete_index(name)


def legs(filters: Filters = Filters()) -> list:
    return [BM25Leg("lamp", {"title": 2.0, "description": 1.0}, size=15, filters=filters),
            KnnLeg([1.0, 0.1, 0.0, 0.0], k=12, filters=filters)]


@pytest.mark.parametrize("filters", [Filters(), Filters(brand=("Lumo", "Torq"), in_stock=True)])
def test_search_with_facets_equals_search_plus_facets(engine, index, filters):
    hits, facets = engine.search_with_facets(index, legs(filters), "lamp", filters, FACETS)
    plain = engine.search(index, legs(filters))
    assert [[(h.id, h.score, h.source) for h in leg] for leg in hits] == \
        [[(h.id, h.score, h.source) for h in leg] for leg in plain]
    assert facets == engine.facets(index, "lamp", filters, FACETS)
    assert len(hits[0]) == (15 if filters.is_empty() else 7)  # 20 lamps capped by size=15; 7 pass the filters
    assert facets["brand"][0][1] >= 1


def test_without_source_keeps_ids_and_scores_and_drops_sources(engine, index):
    full, _ = engine.search_with_facets(index, legs(), "lamp", Filters(), [])
    bare, facets = engine.search_with_facets(index, legs(), "lamp", Filters(), [], with_source=False)
    assert facets == {}
    assert [[(h.id, h.score) for h in leg] for leg in bare] == [[(h.id, h.score) for h in leg] for leg in full]
    assert all(h.source == {} for leg in bare for h in leg)


def test_sources_by_id(engine, index):
    got = engine.sources(index, ["p03", "nope", "p21", "p03"])
    assert sorted(got) == ["p03", "p21"]
    assert got["p03"]["title"] == "Desk lamp model 3" and got["p03"]["brand"] == "Lumo"
    assert not {"embedding", "content_hash", "brand_text", "category_lvl0"} & set(got["p21"])
    assert got["p21"] == engine.get(index, "p21")
    assert engine.sources(index, []) == {}
    with pytest.raises(IndexNotFound):
        engine.sources(f"missing-{uuid.uuid4().hex[:8]}", ["p01"])


class Plain:
    """The engine with only the Engine-protocol methods (no folding), as the embedded engine is."""

    def __init__(self, engine):
        self._e = engine

    def search(self, index, legs):
        return self._e.search(index, legs)

    def facets(self, index, query, filters, fields, size=10):
        return self._e.facets(index, query, filters, fields, size)


class Fixed:
    def encode(self, texts):
        return np.tile(np.array([[1.0, 0.05, 0.0, 0.0]], dtype=np.float32), (len(texts), 1))


@pytest.mark.parametrize("req", [
    SearchRequest("lamp", size=5), SearchRequest("lamp", page=3, size=4),
    SearchRequest("drill", filters=Filters(in_stock=True), size=10, facets=("brand",)),
    SearchRequest("lamp", size=10, facets=()), SearchRequest("", size=5), SearchRequest("lamp", page=50, size=10)])
def test_hybrid_folded_path_answers_like_the_plain_path(engine, index, req):
    folded = HybridSearcher(engine, index, Fixed()).search(req)
    plain = HybridSearcher(Plain(engine), index, Fixed()).search(req)
    assert [(h.id, h.rank, h.score, h.source, h.stages) for h in folded.hits] == \
        [(h.id, h.rank, h.score, h.source, h.stages) for h in plain.hits]
    assert (folded.total, folded.facets) == (plain.total, plain.facets)
    if req.query and folded.hits:
        assert "fetch" in folded.timings_ms and "facets" not in folded.timings_ms
        assert all(h.source["id"] == h.id for h in folded.hits)
    if not req.query:
        assert folded.facets["brand"] and folded.hits == []
