"""HybridSearcher against a recording fake engine: exact legs, fusion, the matching set, paging, sorts, highlights."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from shopsearch.deadline import DeadlineExceeded
from shopsearch.plugin.engine import SORTS, BM25Leg, Filters, Hit, KnnLeg, MatchPage, MatchRule, check_match
from shopsearch.plugin.documents import FACET_FIELDS
from shopsearch.plugin.hybrid import HybridSearcher, ProductNotFound, validate_request
from shopsearch.plugin.profiles import PACKAGED_DIR, ProfileStore, UnknownProfile
from shopsearch.plugin.query_cache import QueryEmbeddingCache
from shopsearch.plugin.search_types import SearchRequest
from shopsearch.plugin.vocabulary import Vocabulary
from shopsearch.settings import load_settings


class FakeEngine:
    """Returns canned hit lists per leg type and a canned matching set (``matches``, in its relevance order);
    records every call."""

    def __init__(self, bm25, knn, docs=None, matches=("a", "c", "b", "d", "e", "f")):
        self.bm25, self.knn, self.docs, self.matches = bm25, knn, docs or {}, list(matches)
        self.calls: list[tuple] = []

    def search(self, index, legs, *, with_source=True, deadline=None):
        self.calls.append(("search", index, list(legs)))
        out = []
        for leg in legs:
            hits = self.bm25 if isinstance(leg, BM25Leg) else [h for h in self.knn if h.score >= leg.min_score]
            out.append([h for h in hits if h.id not in leg.filters.exclude_ids][:getattr(leg, "k", 100)])
        return out

    def match(self, index, rule, *, sort="relevance", offset=0, size=0, exclude=(), facets=(), facet_size=10,
              highlight=None, deadline=None, price_edges=()):
        self.calls.append(("match", index, rule, sort, offset, size, tuple(exclude), tuple(facets), highlight))
        ids = [i for i in self.matches if i not in exclude]
        if sort != "relevance":
            ids = sorted(self.matches)
        marks = {"title": f"<em>{highlight}</em>"} if highlight else {}
        hits = [Hit(i, 1.0 / (n + 1), src(i), marks) for n, i in enumerate(ids)][offset:offset + size]
        return MatchPage(total=len(self.matches), hits=hits, facets={f: [("x", 1)] for f in facets})

    def sources(self, index, ids, highlight=None, deadline=None):
        self.calls.append(("sources", index, list(ids), highlight))
        marks = {"title": f"<em>{highlight}</em>"} if highlight else {}
        return {i: Hit(i, 0.0, src(i), marks) for i in ids}

    def vocabulary(self, index):
        return Vocabulary("fake", {"lamp": 3, "sofa": 2})

    def index_meta(self, index):
        return {"facet_attributes": "color,size"}

    def get(self, index, id, with_vector=False):
        doc = self.docs.get(id)
        if doc is None:
            return None
        out = {"id": id, "title": doc["title"]}
        if with_vector:
            out["vector"] = doc["vector"]
        return out


class CountingEmbedder:
    def __init__(self):
        self.texts: list[str] = []

    def encode(self, texts):
        self.texts += list(texts)
        return np.full((len(texts), 3), 0.5, dtype=np.float32)


class FailingEmbedder:
    def encode(self, texts):
        raise RuntimeError("CUDA out of memory")


def src(i):
    return {"id": i, "title": f"product {i}", "content_hash": "h"}


BM25 = [Hit("a", 10.0, src("a")), Hit("b", 6.0, src("b")), Hit("c", 2.0, src("c"))]
KNN = [Hit("c", 0.95, src("c")), Hit("a", 0.9, src("a")), Hit("d", 0.85, src("d")), Hit("z", 0.6, src("z"))]


@pytest.fixture()
def engine():
    return FakeEngine(BM25, KNN, docs={"a": {"title": "product a", "vector": [1.0, 0.0, 0.0]}})


@pytest.fixture()
def embedder():
    return CountingEmbedder()


@pytest.fixture()
def searcher(engine, embedder):
    return HybridSearcher(engine, "products", embedder, ProfileStore([PACKAGED_DIR]))


def test_default_profile_sends_both_legs_in_one_call_and_fuses_rrf(searcher, engine):
    flt = Filters(brand=("Acme",))
    resp = searcher.search(SearchRequest("Red  Lamp", filters=flt, size=10, facets=("brand",)))
    searches = [c for c in engine.calls if c[0] == "search"]
    assert len(searches) == 1
    bm25, knn = searches[0][2]
    profile = ProfileStore([PACKAGED_DIR]).get("default")
    assert bm25 == BM25Leg("Red  Lamp", dict(profile.bm25.fields), size=profile.bm25.size,
                           fuzziness=profile.bm25.fuzziness, tie_breaker=profile.bm25.tie_breaker, filters=flt)
    assert isinstance(knn, KnnLeg) and knn.k == profile.knn.k and knn.filters == flt
    # ranked by a plain top-k search (exact threshold applied to its hits); radial search only counts the matches
    assert knn.min_score == 0.0 and profile.knn.min_score > 0
    assert list(knn.vector) == [0.5, 0.5, 0.5]
    # RRF k=60: a = 1/61 + 1/62 > c = 1/61 + 1/63 > b = 1/62 > d = 1/63; then the rest of the matching set
    assert [h.id for h in resp.hits] == ["a", "c", "b", "d", "e", "f"]
    assert resp.total == 6 and [h.rank for h in resp.hits] == [1, 2, 3, 4, 5, 6]
    assert resp.hits[0].score == pytest.approx(1 / 61 + 1 / 62)
    assert resp.hits[0].stages == pytest.approx({"bm25": 10.0, "bm25_rank": 1, "knn": 0.9, "knn_rank": 2,
                                                 "fused": 1 / 61 + 1 / 62})
    assert resp.hits[3].stages == pytest.approx({"knn": 0.85, "knn_rank": 3, "fused": 1 / 63})
    assert resp.hits[4].stages == pytest.approx({"match": 1.0})
    assert "content_hash" not in resp.hits[0].source and resp.hits[0].source["title"] == "product a"
    (match,) = [c for c in engine.calls if c[0] == "match"]
    # the bar: min_score, or relative_score x the best vector score (0.95) when higher
    bar = max(profile.knn.min_score, round(profile.knn.relative_score * 0.95, 6))
    rule = MatchRule(lexical=replace(bm25, size=profile.bm25.size), vector=[0.5, 0.5, 0.5], min_score=bar,
                     filters=flt)
    assert match == ("match", "products", rule, "relevance", 0, 6, ("a", "c", "b", "d"), ("brand",), None)
    assert resp.facets == {"brand": [("x", 1)]}
    assert {"embed", "retrieve", "fusion", "match", "fetch", "total"} <= set(resp.timings_ms)
    assert not resp.degraded


def test_field_scores_are_asked_for_the_pages_a_ranker_orders_only(tmp_path, engine, embedder):
    (tmp_path / "ranked.toml").write_text('[conversion]\ndepth = 4\nmodel = "m"\n')
    s = HybridSearcher(engine, "products", embedder, ProfileStore([PACKAGED_DIR, tmp_path]))
    for req, asked in [(SearchRequest("lamp", profile="ranked", size=2, facets=()), True),
                       (SearchRequest("lamp", profile="ranked", page=2, size=2, facets=()), True),
                       (SearchRequest("lamp", profile="ranked", page=3, size=2, facets=()), False),  # past the head
                       (SearchRequest("lamp", profile="ranked", size=2, facets=(), sort="price_asc"), False),
                       (SearchRequest("lamp", size=2, facets=()), False)]:  # no ranker stage
        engine.calls.clear()
        s.search(req)
        (search,) = [c for c in engine.calls if c[0] == "search"]
        (match,) = [c for c in engine.calls if c[0] == "match"]
        legs = [leg for leg in search[2] if isinstance(leg, BM25Leg)]
        assert [leg.field_scores for leg in legs] == ([True] if asked else [False] * len(legs)), req
        assert not match[2].lexical.field_scores  # counting the matching set needs no field scores


def test_pages_walk_the_fused_list_then_the_matching_set(searcher):
    full = [h.id for h in searcher.search(SearchRequest("lamp", size=6, facets=())).hits]
    pages = [searcher.search(SearchRequest("lamp", page=n, size=3, facets=())) for n in (1, 2, 3)]
    assert [h.id for p in pages[:2] for h in p.hits] == full == ["a", "c", "b", "d", "e", "f"]
    assert [h.rank for h in pages[1].hits] == [4, 5, 6]
    assert pages[2].hits == [] and pages[2].total == 6


def test_a_deeper_page_brings_the_first_page_it_is_ranked_against_in_one_fetch(searcher, engine):
    first = searcher.search(SearchRequest("lamp", size=2, facets=())).hits
    engine.calls.clear()
    resp = searcher.search(SearchRequest("lamp", page=2, size=2, facets=(), reference=2))
    assert [h.id for h in resp.hits] == ["b", "d"]
    assert [(h.id, h.rank, h.source, h.stages) for h in resp.first_page] == \
        [(h.id, h.rank, h.source, h.stages) for h in first]
    assert [c[2] for c in engine.calls if c[0] == "sources"] == [["b", "d", "a", "c"]]  # one fetch, one search
    assert len([c for c in engine.calls if c[0] == "search"]) == 1
    # not asked, already on the page, or a fused ranking shorter than it (then the page goes on into the
    # matching set, which only a search from the top reads): none
    for req in (SearchRequest("lamp", page=2, size=2), SearchRequest("lamp", size=2, reference=2),
                SearchRequest("lamp", page=2, size=2, reference=50)):
        assert searcher.search(replace(req, facets=())).first_page == ()
    assert searcher.search(SearchRequest("lamp", size=1, facets=(), reference=2)).first_page[1].id == "c"
    # a page past the fused list is read from the matching set first, then the first page's products are fetched
    engine.calls.clear()
    past = searcher.search(SearchRequest("lamp", page=3, size=2, facets=(), reference=2))
    assert [h.id for h in past.hits] == ["e", "f"] and [h.id for h in past.first_page] == ["a", "c"]
    assert [c[0] for c in engine.calls] == ["search", "match", "sources"] and engine.calls[-1][2] == ["a", "c"]


def test_a_page_past_the_fused_list_that_runs_out_of_time_fetches_nothing_for_its_first_page(engine, embedder):
    class SlowMatch(type(engine)):
        def match(self, *args, **kwargs):
            self.calls.append(("match",))
            raise DeadlineExceeded("match")

    slow = SlowMatch(engine.bm25, engine.knn)
    searcher = HybridSearcher(slow, "products", embedder, ProfileStore([PACKAGED_DIR]))
    with pytest.raises(DeadlineExceeded):
        searcher.search(SearchRequest("lamp", page=3, size=2, facets=(), reference=2))
    assert [c[0] for c in slow.calls] == ["search", "match"]
    with pytest.raises(ValueError, match="reference must be an integer"):
        searcher.search(SearchRequest("lamp", reference=-1))


def test_relative_cut_off_drops_vector_hits_far_below_the_best(tmp_path, engine, embedder):
    (tmp_path / "tight.toml").write_text("[knn]\nmin_score = 0.5\nrelative_score = 0.92\n")
    s = HybridSearcher(engine, "products", embedder, ProfileStore([PACKAGED_DIR, tmp_path]))
    resp = s.search(SearchRequest("lamp", profile="tight", size=4, facets=()))
    # best vector score 0.95: the bar is 0.874, so d (0.85) and z (0.6) no longer match by vector
    assert [h.id for h in resp.hits][:3] == ["a", "c", "b"] and "knn" not in resp.hits[2].stages
    (match,) = [c for c in engine.calls if c[0] == "match"]
    assert match[2].min_score == pytest.approx(0.874)


def test_sort_orders_the_whole_matching_set_and_highlights(searcher, engine):
    resp = searcher.search(SearchRequest("lamp", sort="price_asc", page=2, size=2, facets=(), highlight=True))
    assert [h.id for h in resp.hits] == ["c", "d"] and [h.rank for h in resp.hits] == [3, 4]
    assert resp.hits[0].highlights == {"title": "<em>lamp</em>"}
    (match,) = [c for c in engine.calls if c[0] == "match"]
    assert match[3:7] == ("price_asc", 2, 2, ())
    # No fusion is needed for a field sort: only a k=1 vector leg runs, for the relative cut-off's best score.
    (search,) = [c for c in engine.calls if c[0] == "search"]
    assert [(type(leg), leg.k) for leg in search[2]] == [(KnnLeg, 1)]
    fused = searcher.search(SearchRequest("lamp", size=2, facets=(), highlight=True))
    assert fused.hits[0].highlights == {"title": "<em>lamp</em>"}
    with pytest.raises(ValueError, match=r"^sort='cheapest' is unknown; allowed: relevance, price_asc"):
        searcher.search(SearchRequest("lamp", sort="cheapest"))


@pytest.mark.parametrize("sort", ["cheapest", "newest", "Newest", ""])
def test_the_searcher_and_the_engines_refuse_a_sort_in_one_text(sort):
    # one sort check: the request validation and the engines' match check say the same, naming the parameter
    with pytest.raises(ValueError) as by_searcher:
        validate_request(SearchRequest("lamp", sort=sort), load_settings(environ={}))
    with pytest.raises(ValueError) as by_engine:
        check_match(sort, 0, 10, (), 10)
    message = str(by_searcher.value)
    assert message == str(by_engine.value)
    assert message.startswith(f"sort={sort!r} is ") and message.endswith("allowed: " + ", ".join(SORTS))
    # newest says why it is refused: no product carries a listing date
    assert ("not available: products carry no listing date" in message) == (sort == "newest")


def test_single_leg_profiles(searcher, engine):
    bm25 = searcher.search(SearchRequest("lamp", profile="bm25", facets=()))
    assert [type(leg) for leg in [c for c in engine.calls if c[0] == "search"][-1][2]] == [BM25Leg]
    assert [h.id for h in bm25.hits][:3] == ["a", "b", "c"]
    assert "embed" not in bm25.timings_ms
    dense = searcher.search(SearchRequest("lamp", profile="dense", facets=()))
    assert [type(leg) for leg in [c for c in engine.calls if c[0] == "search"][-1][2]] == [KnnLeg]
    assert [h.id for h in dense.hits][:3] == ["c", "a", "d"]
    assert dense.hits[0].stages["knn_rank"] == 1


def test_query_embeddings_are_cached_by_normalised_text(searcher, embedder):
    for q in ["Red Lamp", "red lamp", "  RED   lamp "]:
        searcher.search(SearchRequest(q, facets=()))
    assert embedder.texts == ["red lamp"]
    assert (searcher.embeddings.hits, searcher.embeddings.misses) == (2, 1)


def test_cache_evicts_least_recently_used(embedder):
    cache = QueryEmbeddingCache(embedder, maxsize=2)
    for q in ["a", "b", "a", "c", "b"]:
        cache.embed(q)
    assert embedder.texts == ["a", "b", "c", "b"]  # "b" was evicted by "c" ("a" had been used more recently)
    assert len(cache) == 2
    with pytest.raises(ValueError, match="embed_cache_size must be an integer >= 0, got -1"):
        QueryEmbeddingCache(embedder, maxsize=-1)


def test_default_facets_take_the_index_attribute_facets(searcher, engine):
    resp = searcher.search(SearchRequest("", size=1))  # default facets: FACET_FIELDS and attr.*
    assert set(resp.facets) == set(FACET_FIELDS) | {"attr.color", "attr.size"}
    assert engine.calls[-1][7] == FACET_FIELDS + ("attr.color", "attr.size")
    searcher.search(SearchRequest("", size=1, facets=("attr.*", "attr.color", "price")))
    assert engine.calls[-1][7] == ("attr.color", "attr.size", "price")
    with pytest.raises(ValueError, match="facets has 'attr.a.b'"):
        searcher.search(SearchRequest("", facets=("attr.a.b",)))


def test_empty_query_is_browse_with_facets_only(searcher, engine):
    resp = searcher.search(SearchRequest("   ", filters=Filters(in_stock=True), facets=("brand",)))
    assert resp.hits == [] and resp.total == 6 and resp.notes
    assert not [c for c in engine.calls if c[0] == "search"]
    assert engine.calls[-1] == ("match", "products", MatchRule(filters=Filters(in_stock=True)), "relevance", 0, 0,
                                (), ("brand",), None)
    by_price = searcher.search(SearchRequest("", sort="price_desc", size=2, facets=()))
    assert len(by_price.hits) == 2 and "sorted by price_desc" in by_price.notes[0]


def test_embedder_failure_degrades_to_bm25(engine):
    s = HybridSearcher(engine, "products", FailingEmbedder(), ProfileStore([PACKAGED_DIR]))
    resp = s.search(SearchRequest("lamp", facets=()))
    assert resp.degraded and "BM25 only" in resp.notes[0]
    assert [h.id for h in resp.hits][:3] == ["a", "b", "c"]
    assert [c for c in engine.calls if c[0] == "match"][-1][2].vector is None  # matched lexically only
    with pytest.raises(RuntimeError, match="out of memory"):
        s.search(SearchRequest("lamp", profile="dense", facets=()))


@pytest.mark.parametrize("req, message", [
    (SearchRequest("x", page=0), r"page must be an integer in 1\.\.1000, got 0"),
    (SearchRequest("x", size=101), r"size must be an integer in 1\.\.100, got 101"),
    (SearchRequest("x", size="10"), r"size must be an integer in 1\.\.100, got '10'"),
    (SearchRequest("x", facets=("colour",)), r"facets has 'colour'; allowed: brand"),
    (SearchRequest("x", filters=Filters(price_min=10, price_max=5)), r"price_min \(10\) must be <= price_max"),
    (SearchRequest("x" * 257), r"query must be at most 256 characters, got 257"),
])
def test_bad_requests_raise_value_error_naming_the_parameter(searcher, engine, req, message):
    with pytest.raises(ValueError, match=message):
        searcher.search(req)
    assert engine.calls == []


def test_limits_are_the_settings(engine, embedder):
    limits = load_settings({"max_size": 5, "max_depth": 20, "max_query_length": 8}, environ={})
    s = HybridSearcher(engine, "products", embedder, ProfileStore([PACKAGED_DIR]), settings=limits)
    for req, message in [(SearchRequest("x", size=6), r"size must be an integer in 1\.\.5, got 6"),
                         (SearchRequest("x", page=21), r"page must be an integer in 1\.\.20, got 21"),
                         (SearchRequest("x" * 9), "query must be at most 8 characters, got 9")]:
        with pytest.raises(ValueError, match=message):
            s.search(req)
    with pytest.raises(ValueError, match=r"size must be an integer in 1\.\.5, got 6"):
        s.similar("a", size=6)
    with pytest.raises(ValueError, match="query must be a string of at most 8 characters"):
        s.suggest("x" * 9)
    assert engine.calls == []
    assert [h.id for h in s.search(SearchRequest("lamp", page=2, size=2, facets=())).hits] == ["b", "d"]


def test_unknown_profile_is_a_value_error(searcher):
    with pytest.raises(UnknownProfile, match="profile 'fancy' does not exist"):
        searcher.search(SearchRequest("x", profile="fancy"))


def test_similar_excludes_the_product_and_keeps_filters(searcher, engine):
    hits = searcher.similar("a", size=2, filters=Filters(exclude_ids=("z",), in_stock=True))
    (leg,) = engine.calls[-1][2]
    assert leg == KnnLeg([1.0, 0.0, 0.0], k=2, filters=Filters(exclude_ids=("z", "a"), in_stock=True))
    assert [h.id for h in hits] == ["c", "d"]
    assert hits[0].stages == {"knn": 0.95, "knn_rank": 1} and hits[1].rank == 2


def test_similar_unknown_product_and_bad_size(searcher):
    with pytest.raises(ProductNotFound, match="product 'nope' does not exist"):
        searcher.similar("nope")
    assert issubclass(ProductNotFound, KeyError)
    with pytest.raises(ValueError, match="size must be an integer in 1..100, got 0"):
        searcher.similar("a", size=0)


def test_get(searcher):
    assert searcher.get("a") == {"id": "a", "title": "product a"}
    assert searcher.get("nope") is None
