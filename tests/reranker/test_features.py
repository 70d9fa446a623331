"""Conversion features on tiny hand-made inputs with expected values."""

from __future__ import annotations

import math

import pytest

from shopsearch.events import Event
from shopsearch.indexer.records import Product
from shopsearch.plugin.search_types import ScoredHit
from shopsearch.reranker.event_history import EventHistory
from shopsearch.reranker.features import (DEFAULT_MODEL_FEATURES, FEATURE_NAMES, Affinity, FeatureContext,
                                          ProductStats, RELEVANCE_FEATURES, feature_matrix, list_features,
                                          smoothed_rate, text_features)

P1 = Product(id="p1", title="Acme Red Lamp", brand="Acme", category=("home", "lamps"), price=10.0, rating=4.5,
             review_count=9, popularity=0.2)
P2 = Product(id="p2", title="Blue Lamp Shade", brand="Zed", category=("home",), price=30.0)
P3 = Product(id="p3", title="Mug")


def _hits():
    return [ScoredHit("p1", 1, 0.0, P1.to_source(), {"bm25": 8.0, "bm25_title": 3.5, "bm25_description": 0.0,
                                                      "knn": 0.5, "fused": 0.03}),
            ScoredHit("p2", 2, 0.0, P2.to_source(), {"bm25": 4.0, "cross_encoder": 2.5}),
            ScoredHit("p3", 3, 0.0, P3.to_source(), {"knn": 0.9})]


def test_features_declared_once_and_defaults_are_known():
    assert len(FEATURE_NAMES) == len(set(FEATURE_NAMES))
    assert set(DEFAULT_MODEL_FEATURES) <= set(FEATURE_NAMES) and "fused_rank" not in DEFAULT_MODEL_FEATURES


def test_text_features():
    assert text_features("acme red lamp", P1) == {
        "title_overlap": 1.0, "exact_phrase": 1.0, "description_overlap": 0.0, "brand_overlap": 1 / 3,
        "brand_phrase": 0.0, "category_overlap": 0.0, "category_phrase": 0.0, "brand_in_query": 1.0}
    lamp = text_features("lamp red", P1)
    assert (lamp["title_overlap"], lamp["exact_phrase"], lamp["brand_in_query"]) == (1.0, 0.0, 0.0)
    home = text_features("home lamps", P1)  # category path ("home", "lamps")
    assert (home["category_overlap"], home["category_phrase"]) == (1.0, 1.0) and home["title_overlap"] == 0.0
    assert text_features("acme", P1)["brand_phrase"] == 1.0
    assert text_features("red shade", P2)["description_overlap"] == 0.0
    assert text_features("blue lamps", P2)["title_overlap"] == 0.5
    assert text_features("", P3)["title_overlap"] == 0.0


def test_retrieval_and_product_features():
    rows = list_features("red lamp", _hits(), FeatureContext())
    r1, r2, r3 = rows
    assert (r1["bm25"], r1["bm25_list_rank"], r1["bm25_rel"]) == (8.0, 1.0, 1.0)
    assert (r2["bm25_list_rank"], r2["bm25_rel"]) == (2.0, 0.5)
    assert math.isnan(r3["bm25"]) and math.isnan(r3["bm25_list_rank"]) and math.isnan(r3["bm25_rel"])
    assert (r1["knn_list_rank"], r3["knn_list_rank"]) == (2.0, 1.0) and math.isnan(r2["knn_list_rank"])
    assert math.isnan(r1["cross_encoder"]) and r2["cross_encoder"] == 2.5
    assert r1["fused"] == 0.03 and r3["fused_rank"] == 3.0
    assert r1["price_rel"] == 0.5 and r2["price_rel"] == 1.5 and math.isnan(r3["price"])  # median of 10, 30
    assert r1["review_count_log"] == pytest.approx(math.log(10)) and math.isnan(r2["rating"])
    # per-field BM25 as the engine scored it; a field the leg did not search, or a hit without BM25, is missing
    assert (r1["bm25_title"], r1["bm25_description"]) == (3.5, 0.0) and math.isnan(r1["bm25_brand_text"])
    assert math.isnan(r2["bm25_title"]) and math.isnan(r3["bm25_title"])


def test_list_relative_features_keep_the_values_the_pipeline_stamped():
    from shopsearch.reranker.features import LIST_FEATURES, with_list_features

    stamped = with_list_features(_hits())
    assert "bm25_list_rank" not in stamped[2].stages  # no BM25: left out of the stages, read back as NaN
    whole = list_features("red lamp", stamped, FeatureContext())
    # a sub-list (a page below the first, a logged top K) keeps the values computed against the first page
    tail = list_features("red lamp", stamped[1:], FeatureContext())
    for a, b in zip(whole[1:], tail):
        assert [str(a[n]) for n in LIST_FEATURES] == [str(b[n]) for n in LIST_FEATURES]  # str: nan == nan
    assert tail[0]["bm25_list_rank"] == 2.0 and tail[0]["bm25_rel"] == 0.5 and tail[0]["price_rel"] == 1.5
    # never stamped (a log written before the stamping): ranked against its own first page
    old = list_features("red lamp", _hits()[1:], FeatureContext())
    assert old[0]["bm25_list_rank"] == 1.0 and old[0]["bm25_rel"] == 1.0
    # each hit on its own: a stamped one keeps its values beside one that was not stamped
    mixed = list_features("red lamp", [_hits()[1], stamped[1]], FeatureContext())
    assert (mixed[0]["bm25_list_rank"], mixed[1]["bm25_list_rank"]) == (1.0, 2.0)
    # a stamped hit without any retrieval score (a pinned product retrieval did not find) keeps its price_rel
    pinned = ScoredHit("p2", 1, 0.0, P2.to_source(), {"fused": 0.0, "pinned": 1.0})
    alone = with_list_features([pinned], _hits())
    assert list_features("red lamp", alone, FeatureContext())[0]["price_rel"] == 1.5  # against 10, 30


def test_per_field_bm25_is_for_judgments_only():
    # raw engine scores stay out of the default model for logs (as the multi-field bm25 does)
    assert "bm25_title" in RELEVANCE_FEATURES and "bm25_title" not in DEFAULT_MODEL_FEATURES


def test_event_rates_are_smoothed():
    ctx = FeatureContext(stats={"p1": ProductStats(impressions=80, clicks=20, purchases=4)},
                         ctr_prior=0.1, cvr_prior=0.05, prior_strength=20.0)
    r1, r2, _ = list_features("x", _hits(), ctx)
    assert r1["ctr"] == pytest.approx((20 + 2) / 100) and r1["cvr"] == pytest.approx((4 + 1) / 100)
    assert r2["ctr"] == pytest.approx(0.1) and r2["impressions_log"] == 0.0
    assert smoothed_rate(1, 1, 0.0, 1.0) == 0.5


def test_user_affinity():
    ctx = FeatureContext(user=Affinity(brands={"Acme": 3.0}, categories={"lamps": 2.0, "home": 1.0}, total=4.0))
    r1, r2, r3 = list_features("x", _hits(), ctx)
    assert r1["user_brand_affinity"] == pytest.approx(3 / 5) and r1["user_category_affinity"] == pytest.approx(2 / 5)
    assert r2["user_brand_affinity"] == 0.0 and r2["user_category_affinity"] == pytest.approx(1 / 5)
    assert r3["user_brand_affinity"] == 0.0 and r1["user_history_log"] == pytest.approx(math.log(5))


def test_event_history_builds_context():
    h = EventHistory({"p1": P1})

    def ev(kind, pid="p1", user="u1"):
        return Event(type=kind, query_id="q", query="lamp", product_id=pid, position=1, user_id=user, session_id="s",
                     timestamp="2024-01-01T00:00:00Z")

    for kind in ("impression", "impression", "click", "add_to_cart", "purchase"):
        h.add(ev(kind))
    h.add(ev("click", pid="unknown"))
    ctx = h.context("u1", ["p1", "p9"])
    assert ctx.stats["p1"] == ProductStats(2, 1, 1) and ctx.stats["p9"] == ProductStats()
    assert ctx.user.total == 6.0 and ctx.user.brands == {"Acme": 6.0} and ctx.user.categories["lamps"] == 6.0
    assert h.context("nobody", []).user == Affinity()


def test_feature_matrix_columns_follow_names():
    m = feature_matrix("red lamp", _hits(), FeatureContext(), ("bm25_rel", "price"))
    assert m.shape == (3, 2) and m[1, 0] == 0.5 and m[1, 1] == 30.0
    with pytest.raises(ValueError, match="unknown feature 'bogus'"):
        feature_matrix("q", _hits(), FeatureContext(), ("bogus",))
