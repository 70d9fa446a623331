"""The ranking pipeline: hybrid top-N -> cross-encoder top-K -> LightGBM order -> page, per profile.

A stand-in searcher serves a fixed fused ranking (so every expected order is known); the cross-encoder stage runs
the real ``CrossEncoderReranker.rerank`` over table scores, or the real tiny cross-encoder; the conversion stage
runs a tiny LightGBM model that prefers cheap products.
"""

from __future__ import annotations

import logging

import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from shopsearch.deadline import DeadlineExceeded
from shopsearch.plugin.hybrid import validate_request
from shopsearch.plugin.profiles import ProfileStore
from shopsearch.plugin.search_types import ScoredHit, SearchRequest, SearchResponse
from shopsearch.reranker.batch_cost import BatchCost
from shopsearch.reranker.conversion import ConversionModel
from shopsearch.reranker.cross_encoder import CrossEncoderReranker
from shopsearch.reranker.features import LIST_REFERENCE, Affinity, FeatureContext
from shopsearch.reranker.model_registry import ModelNotFound, ModelRegistry
from shopsearch.reranker.pipeline import RankingPipeline, SearchContext, check_models
from shopsearch.settings import Settings
from tests.reranker.tiny_ce import build_tiny_cross_encoder
from tests.reranker.tiny_lgbm import build_tiny_conversion_model

N = 30  # fused candidates of the stand-in searcher


def product(i: int) -> dict:
    # Prices go up and down so the conversion model (cheap first) reorders the fused list.
    return {"id": f"p{i:03d}", "title": f"Lamp {i}", "price": float(10 + (i * 37) % 90), "rating": 4.0}


class FixedSearcher:
    """A HybridSearcher stand-in: a fixed fused ranking of ``n`` products, paginated, with the first page when
    asked for (as HybridSearcher, unless ``with_reference`` is off); records every request."""

    with_reference = True

    def __init__(self, profiles: ProfileStore, n: int = N):
        self.profiles = profiles
        self.fused = [ScoredHit(id=f"p{i:03d}", rank=i + 1, score=1.0 / (i + 1), source=product(i),
                                stages={"bm25": 10.0 - i * 0.1, "bm25_rank": i + 1, "knn": 0.9 - i * 0.01,
                                        "knn_rank": i + 1, "fused": 1.0 / (i + 1)}) for i in range(n)]
        self.requests: list[SearchRequest] = []
        self.settings = Settings()

    def search(self, req: SearchRequest, *, deadline=None) -> SearchResponse:
        validate_request(req, self.settings)
        self.profiles.get(req.profile)
        self.requests.append(req)
        start = (req.page - 1) * req.size
        asked = self.with_reference and req.reference and len(self.fused) >= req.reference and \
            (start or req.size < req.reference)
        return SearchResponse(query=req.query, profile=req.profile, page=req.page, size=req.size,
                              total=len(self.fused), hits=self.fused[start:start + req.size],
                              facets={"brand": [("acme", 3)]} if req.facets else {},
                              timings_ms={"retrieve": 1.0, "fusion": 0.5, "total": 2.0},
                              first_page=tuple(self.fused[:req.reference]) if asked else ())


class TableCrossEncoder:
    """The real CrossEncoderReranker.rerank over scores from a function of the product id; optionally failing."""

    rerank = CrossEncoderReranker.rerank

    def __init__(self, scores, fail: bool = False):
        self.scores, self.fail, self.cost = scores, fail, BatchCost()
        self.calls = 0

    def score(self, query, products, *, deadline=None):
        self.calls += 1
        if self.fail:
            raise RuntimeError("CUDA out of memory")
        return np.array([self.scores(p["id"]) for p in products], dtype=np.float32)


def REVERSE(pid: str) -> float:
    """CE scores that reverse the fused order: the later a product was fused, the higher it scores."""
    return float(int(pid[1:]))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A models folder: tiny-ce (real tiny cross-encoder), cheap-first (LightGBM), cheap-ce (uses cross_encoder)."""
    d = tmp_path_factory.mktemp("models")
    build_tiny_cross_encoder(d / "tiny-ce")
    build_tiny_conversion_model(d / "cheap-first")
    build_tiny_conversion_model(d / "cheap-ce", features=("price", "cross_encoder"))
    return d


PROFILES = {
    "plain": "",
    "ce": '[rerank]\ndepth = 8\nmodel = "table-ce"\n',
    "ce-deep": '[rerank]\ndepth = 150\nbudget_ms = 5000\nmodel = "table-ce"\n',
    "ce-rrf": '[rerank]\ndepth = 8\nmodel = "table-ce"\ncombine = "rrf"\nrrf_k = 1\n',
    "ce-fail": '[rerank]\ndepth = 8\nmodel = "failing-ce"\n',
    "ce-tiny": '[rerank]\ndepth = 8\nbudget_ms = 30000\nmodel = "tiny-ce"\n',
    "ce-tiny-overrun": '[rerank]\ndepth = 8\nbudget_ms = 0.001\nmodel = "tiny-ce"\n',
    "ce-missing": '[rerank]\ndepth = 8\nmodel = "no-such-model"\n',
    "both": '[rerank]\ndepth = 12\nmodel = "table-ce"\n[conversion]\ndepth = 6\nmodel = "cheap-first"\n',
    "conv-only": '[conversion]\ndepth = 10\nmodel = "cheap-first"\n',
    "conv-rrf": '[conversion]\ndepth = 10\nmodel = "cheap-first"\ncombine = "rrf"\nrrf_k = 1\n',
    "conv-missing": '[conversion]\ndepth = 10\nmodel = "no-such-lgbm"\n',
    "conv-deep": '[conversion]\ndepth = 30\nmodel = "cheap-first"\n',
    "fail-then-ce-model": '[rerank]\ndepth = 8\nmodel = "failing-ce"\n[conversion]\ndepth = 5\nmodel = "cheap-ce"\n',
    "fail-then-plain-model": ('[rerank]\ndepth = 8\nmodel = "failing-ce"\n'
                              '[conversion]\ndepth = 5\nmodel = "cheap-first"\n'),
}


@pytest.fixture
def profiles(tmp_path) -> ProfileStore:
    d = tmp_path / "profiles"
    d.mkdir()
    for name, text in PROFILES.items():
        (d / f"{name}.toml").write_text(text)
    return ProfileStore([d])


@pytest.fixture
def registry(model_dir) -> ModelRegistry:
    """Table-driven cross-encoders by name (via stub folders) plus the real tiny models of ``model_dir``."""
    table = TableCrossEncoder(REVERSE)
    failing = TableCrossEncoder(REVERSE, fail=True)
    for name in ("table-ce", "failing-ce"):
        (model_dir / name).mkdir(exist_ok=True)
    real = ModelRegistry([model_dir]).loaders["cross_encoder"]

    def load_ce(path: Path):
        return {"table-ce": table, "failing-ce": failing}.get(path.name) or real(path)

    return ModelRegistry([model_dir], loaders={"cross_encoder": load_ce})


@pytest.fixture
def searcher(profiles) -> FixedSearcher:
    return FixedSearcher(profiles)


def ids(hits) -> list[str]:
    return [h.id for h in hits]


def cheap_first(model_dir: Path, incoming: list[str]) -> list[str]:
    """The order the cheap-first model gives ``incoming`` ids (ties keep the incoming order)."""
    model = ConversionModel.load(model_dir / "cheap-first")
    probs = model.predict(np.array([[product(int(i[1:]))["price"], 4.0] for i in incoming]))
    order = sorted(range(len(incoming)), key=lambda k: (-probs[k], k))
    assert order != list(range(len(incoming)))  # the test data makes the model reorder something
    return [incoming[k] for k in order]


FUSED_IDS = [f"p{i:03d}" for i in range(N)]


def test_cross_encoder_reorders_the_head_and_the_tail_keeps_fused_order(searcher, registry):
    resp = RankingPipeline(searcher, registry).search(SearchRequest("lamp", size=20, profile="ce"))
    assert ids(resp.hits) == FUSED_IDS[:8][::-1] + FUSED_IDS[8:20]
    assert [h.rank for h in resp.hits] == list(range(1, 21))
    assert all("cross_encoder" in h.stages for h in resp.hits[:8])
    assert not any("cross_encoder" in h.stages for h in resp.hits[8:])
    assert resp.hits[0].score == 7.0 and resp.hits[8].score == pytest.approx(1 / 9)
    assert not resp.degraded and resp.total == N and resp.facets == {"brand": [("acme", 3)]}
    assert {"retrieve", "fusion", "rerank", "total"} <= set(resp.timings_ms)


def test_asks_for_enough_candidates_and_skips_pages_below_the_head(searcher, registry):
    pipeline = RankingPipeline(searcher, registry)
    resp = pipeline.search(SearchRequest("lamp", page=2, size=5, profile="ce"))
    assert [(r.page, r.size) for r in searcher.requests] == [(1, 10)]  # max(depth 8, page*size 10)
    assert ids(resp.hits) == [FUSED_IDS[2], FUSED_IDS[1], FUSED_IDS[0], FUSED_IDS[8], FUSED_IDS[9]]
    searcher.requests.clear()
    below = pipeline.search(SearchRequest("lamp", page=3, size=5, profile="ce"))  # ranks 11-15: all in the tail
    # one search of the page, which brings the first page its logged list features are taken against
    assert [(r.page, r.size, r.reference) for r in searcher.requests] == [(3, 5, LIST_REFERENCE)]
    assert ids(below.hits) == FUSED_IDS[10:15] and [h.rank for h in below.hits] == list(range(11, 16))
    assert (below.page, below.size) == (3, 5) and "rerank" not in below.timings_ms and not below.first_page
    assert [h.stages["retrieval_rank"] for h in below.hits] == list(range(11, 16))
    assert below.hits[0].stages["bm25_list_rank"] == LIST_REFERENCE + 1  # ranked against ranks 1-10
    longer = FixedSearcher(searcher.profiles, n=80)
    longer.with_reference = False  # a searcher without the first page (HybridSearcher: a fused ranking under 10)
    deep = RankingPipeline(longer, registry).search(SearchRequest("lamp", page=6, size=10, profile="ce"))
    # the page, then the first page in a search of its own
    assert [(r.page, r.size) for r in longer.requests] == [(6, 10), (1, 10)]
    assert [h.rank for h in deep.hits] == list(range(51, 61)) and deep.hits[0].stages["retrieval_rank"] == 51


def test_a_head_deeper_than_a_page_is_fetched_in_chunks(profiles, registry):
    searcher = FixedSearcher(profiles, n=230)
    resp = RankingPipeline(searcher, registry).search(SearchRequest("lamp", size=10, profile="ce-deep"))
    assert [(r.page, r.size, bool(r.facets)) for r in searcher.requests] == [(1, 100, True), (2, 100, False)]
    assert resp.hits[0].id == "p149" and resp.timings_ms["retrieve"] == 2.0  # summed over both calls


class MatchCutSearcher(FixedSearcher):
    """HybridSearcher's answer when the matching set was not read in time: the fused hits only, degraded, and a
    page that lies wholly past them raises (``fused`` holds the fused hits; nothing continues past them)."""

    def search(self, req: SearchRequest, *, deadline=None) -> SearchResponse:
        start = (req.page - 1) * req.size
        if start >= len(self.fused):
            self.requests.append(req)
            raise DeadlineExceeded("match")
        resp = super().search(req, deadline=deadline)
        return replace(resp, degraded=True, degraded_reasons=("match:deadline",))


def test_a_page_sliced_from_one_search_serves_what_the_page_alone_would(profiles, registry):
    # a page past the fused hits whose matching set ran out of time: the 503 the page alone gets, not an empty 200
    cut = MatchCutSearcher(profiles, n=20)
    with pytest.raises(DeadlineExceeded):
        RankingPipeline(cut, registry).search(SearchRequest("lamp", page=3, size=10, profile="plain"))
    part = RankingPipeline(cut, registry).search(SearchRequest("lamp", page=2, size=15, profile="plain"))
    assert [h.rank for h in part.hits] == list(range(16, 21)) and part.degraded_reasons == ("match:deadline",)
    # a page below a ranker's head is searched as itself (no per-field BM25 on the hits above it), with its first
    # page; a searcher without it, then the first page apart
    for with_reference, searches in ((True, [(3, 5)]), (False, [(3, 5), (1, 10)])):
        searcher = FixedSearcher(profiles)
        searcher.with_reference = with_reference
        RankingPipeline(searcher, registry).search(SearchRequest("lamp", page=3, size=5, profile="conv-only"))
        assert [(r.page, r.size) for r in searcher.requests] == searches
    # a results limit below the reference: a short first page is still stamped against itself
    small = FixedSearcher(profiles, n=3)
    small.settings = Settings(max_size=8)
    short = RankingPipeline(small, registry).search(SearchRequest("lamp", size=5, profile="plain"))
    assert [(r.page, r.size) for r in small.requests] == [(1, 5)]
    assert [h.stages["retrieval_rank"] for h in short.hits] == [1, 2, 3]
    # ... and with a paging depth below it too: the page is served, unstamped only where the first page can't be had
    small.settings = Settings(max_size=5, max_depth=5)
    small.requests.clear()
    shallow = RankingPipeline(small, registry).search(SearchRequest("lamp", size=5, profile="plain"))
    assert [(r.page, r.size, r.reference) for r in small.requests] == [(1, 5, 0)]
    assert [h.stages["retrieval_rank"] for h in shallow.hits] == [1, 2, 3]


def test_pages_are_stable_after_reranking(searcher, registry):
    pipeline = RankingPipeline(searcher, registry)
    for profile in ("ce", "both"):
        whole = pipeline.search(SearchRequest("lamp", size=20, profile=profile)).hits
        paged = [h for page in range(1, 5)
                 for h in pipeline.search(SearchRequest("lamp", page=page, size=5, profile=profile)).hits]
        assert [(h.id, h.rank) for h in paged] == [(h.id, h.rank) for h in whole]


def test_failure_and_budget_overrun_serve_the_fused_order_degraded(searcher, registry, caplog):
    pipeline = RankingPipeline(searcher, registry)
    for profile in ("ce-fail", "ce-tiny-overrun"):
        resp = pipeline.search(SearchRequest("lamp", size=10, profile=profile))
        assert ids(resp.hits) == FUSED_IDS[:10], profile
        assert resp.degraded and len(resp.notes) == 1 and resp.notes[0].startswith("rerank stage degraded")
        why = "failed" if profile == "ce-fail" else "budget"
        assert why in resp.notes[0] and resp.degraded_reasons == (f"rerank:{why}",)
        assert not any("cross_encoder" in h.stages for h in resp.hits)
    assert "0.001 ms" in resp.notes[0]
    # offline evaluation lets the same profile finish: the head is reranked, nothing degraded
    offline = RankingPipeline(searcher, registry, budgets=False).search(
        SearchRequest("lamp", size=10, profile="ce-tiny-overrun"))
    assert not offline.degraded and all("cross_encoder" in h.stages for h in offline.hits[:8])


def test_the_real_tiny_cross_encoder_scores_the_head(searcher, registry):
    resp = RankingPipeline(searcher, registry).search(SearchRequest("lamp 3", size=10, profile="ce-tiny"))
    assert not resp.degraded
    head = resp.hits[:8]
    assert sorted(ids(head)) == FUSED_IDS[:8] and ids(resp.hits[8:]) == FUSED_IDS[8:10]
    scores = [h.stages["cross_encoder"] for h in head]
    assert scores == sorted(scores, reverse=True) and all(0 < s < 1 for s in scores)


def test_missing_models_are_served_degraded_with_a_note_and_fail_the_check(searcher, registry, model_dir):
    pipeline = RankingPipeline(searcher, registry)
    resp = pipeline.search(SearchRequest("lamp", size=10, profile="ce-missing"))
    assert ids(resp.hits) == FUSED_IDS[:10] and resp.degraded
    assert "cross-encoder 'no-such-model' unavailable (not installed)" in resp.notes[0]  # the folders: the log's
    conv = pipeline.search(SearchRequest("lamp", size=10, profile="conv-missing"))
    assert ids(conv.hits) == FUSED_IDS[:10] and conv.degraded
    assert conv.notes[0].startswith("conversion stage degraded: model 'no-such-lgbm' unavailable")
    with pytest.raises(ModelNotFound, match=r"profile 'conv-missing' \(conversion stage\): model 'no-such-lgbm'"):
        check_models(searcher.profiles, registry, "conv-missing")
    assert check_models(searcher.profiles, registry, "both").name == "both"


def test_a_ranker_of_an_older_card_version_fails_the_check_with_what_to_do(tmp_path):
    import json

    build_tiny_conversion_model(tmp_path / "models" / "old-lgbm")
    card = tmp_path / "models" / "old-lgbm" / "model_card.json"
    card.write_text(json.dumps({**json.loads(card.read_text()), "card_version": 1}))
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "old.toml").write_text('[conversion]\ndepth = 10\nmodel = "old-lgbm"\n')
    with pytest.raises(ValueError, match=r"profile 'old' \(conversion stage\): .* retrain it"):
        check_models(ProfileStore([tmp_path / "profiles"]), ModelRegistry([tmp_path / "models"]), "old")


def test_a_ranker_missing_a_member_its_card_lists_fails_the_check(tmp_path):
    import json

    d = build_tiny_conversion_model(tmp_path / "models" / "bag")
    card = d / "model_card.json"
    card.write_text(json.dumps({**json.loads(card.read_text()), "members": ["model.txt", "model-1.txt"]}))
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "bag.toml").write_text('[conversion]\ndepth = 10\nmodel = "bag"\n')
    with pytest.raises(FileNotFoundError, match=r"profile 'bag' \(conversion stage\): .* lacks model-1.txt of the 2"):
        check_models(ProfileStore([tmp_path / "profiles"]), ModelRegistry([tmp_path / "models"]), "bag")
    (d / "model-1.txt").write_text((d / "model.txt").read_text())
    profiles, models = ProfileStore([tmp_path / "profiles"]), ModelRegistry([tmp_path / "models"])
    assert check_models(profiles, models, "bag").name == "bag"


def test_conversion_orders_the_reranked_head_and_explains_every_stage(searcher, registry, model_dir):
    resp = RankingPipeline(searcher, registry).search(SearchRequest("lamp", size=15, profile="both", explain=True))
    reranked = FUSED_IDS[:12][::-1]  # the cross-encoder's order; the conversion model reorders its top 6
    head, rest = resp.hits[:6], resp.hits[6:]
    assert ids(head) == cheap_first(model_dir, reranked[:6]) and ids(rest) == reranked[6:] + FUSED_IDS[12:15]
    prices = [h.source["price"] for h in head]
    model = ConversionModel.load(model_dir / "cheap-first")
    assert [h.score for h in head] == pytest.approx(model.predict(np.array([[p, 4.0] for p in prices])).tolist())
    for h in head:
        assert {"bm25", "knn", "fused", "cross_encoder", "conversion", "conversion_raw"} <= set(h.stages)
        assert set(h.contributions) == {"price", "rating", "bias"}
        assert sum(h.contributions.values()) == pytest.approx(h.stages["conversion_raw"])
        assert h.score == h.stages["conversion"]
    assert all(not h.contributions and "conversion" not in h.stages for h in rest)
    assert {"rerank", "conversion"} <= set(resp.timings_ms) and not resp.degraded
    quiet = RankingPipeline(searcher, registry).search(SearchRequest("lamp", size=15, profile="both"))
    assert ids(quiet.hits) == ids(resp.hits) and not any(h.contributions for h in quiet.hits)


def test_conversion_alone_orders_the_fused_head(searcher, registry, model_dir):
    resp = RankingPipeline(searcher, registry).search(SearchRequest("lamp", size=12, profile="conv-only"))
    assert ids(resp.hits) == cheap_first(model_dir, FUSED_IDS[:10]) + FUSED_IDS[10:12]


def test_conversion_rrf_fuses_its_order_with_the_incoming_one(searcher, registry, model_dir):
    resp = RankingPipeline(searcher, registry).search(SearchRequest("lamp", size=12, profile="conv-rrf"))
    head = FUSED_IDS[:10]
    own = {p: r for r, p in enumerate(cheap_first(model_dir, head), 1)}
    fused = {p: 1 / (1 + own[p]) + 1 / (1 + r) for r, p in enumerate(head, 1)}
    assert ids(resp.hits) == sorted(head, key=lambda p: (-fused[p], head.index(p))) + FUSED_IDS[10:12]
    assert ids(resp.hits[:10]) != cheap_first(model_dir, head) and ids(resp.hits[:10]) != head  # both count
    for h in resp.hits[:10]:
        assert h.score == pytest.approx(fused[h.id]) == h.stages["conversion_rrf"]
        assert 0 < h.stages["conversion"] < 1


def test_conversion_skips_when_it_needs_a_degraded_cross_encoder(searcher, registry, model_dir):
    pipeline = RankingPipeline(searcher, registry)
    skipped = pipeline.search(SearchRequest("lamp", size=10, profile="fail-then-ce-model"))
    assert ids(skipped.hits) == FUSED_IDS[:10] and len(skipped.notes) == 2
    assert skipped.notes[1].startswith("conversion stage skipped: model 'cheap-ce' needs the cross-encoder score")
    ran = pipeline.search(SearchRequest("lamp", size=10, profile="fail-then-plain-model"))
    assert ran.degraded and len(ran.notes) == 1  # only the rerank note: conversion ran on the fused order
    assert ids(ran.hits[:5]) == cheap_first(model_dir, FUSED_IDS[:5]) and "conversion" in ran.hits[0].stages


class RecordingHistory:
    def __init__(self, fail: bool = False):
        self.calls, self.fail = [], fail

    def context(self, user_id, session_id, product_ids):
        self.calls.append((user_id, session_id, list(product_ids)))
        if self.fail:
            raise OSError("disk gone")
        return FeatureContext(user=Affinity(brands={"acme": 3.0}, total=3.0))


def test_shopper_context_reaches_the_features_and_a_broken_history_degrades(searcher, registry, model_dir):
    history = RecordingHistory()
    RankingPipeline(searcher, registry, history).search(SearchRequest("lamp", profile="conv-only"),
                                                        context=SearchContext(user_id="u1", session_id="s1"))
    assert history.calls == [("u1", "s1", FUSED_IDS[:10])]
    broken = RankingPipeline(searcher, registry, RecordingHistory(fail=True)).search(
        SearchRequest("lamp", profile="conv-only"))
    assert broken.degraded and "event history unavailable (OSError)" in broken.notes[0]
    assert ids(broken.hits) == cheap_first(model_dir, FUSED_IDS[:10])  # still ranked, from priors


def test_profiles_without_stages_and_bad_requests_pass_through(searcher, registry):
    pipeline = RankingPipeline(searcher, registry)
    resp = pipeline.search(SearchRequest("lamp", page=2, size=5, profile="plain"))
    assert ids(resp.hits) == FUSED_IDS[5:10] and [(r.page, r.size) for r in searcher.requests] == [(2, 5)]
    assert (resp.page, resp.size, resp.total) == (2, 5, N)
    searcher.requests.clear()
    price = pipeline.search(SearchRequest("lamp", page=2, size=5, profile="plain", sort="price_asc"))
    assert [(r.page, r.size) for r in searcher.requests] == [(2, 5)]  # no ranker orders a price-sorted page
    assert not any("retrieval_rank" in h.stages for h in price.hits)
    with pytest.raises(ValueError, match="size must be an integer in 1..100, got 500"):
        pipeline.search(SearchRequest("lamp", size=500, profile="ce"))
    with pytest.raises(ValueError, match="profile 'nope' does not exist"):
        pipeline.search(SearchRequest("lamp", profile="nope"))


# --- model registry ----------------------------------------------------------------------------------------------

def test_warm_models_loads_every_named_model_once_and_skips_missing_ones(searcher, registry, caplog):
    pipe = RankingPipeline(searcher, registry)
    loaded = pipe.warm_models()
    assert {"cross_encoder:table-ce", "cross_encoder:failing-ce", "cross_encoder:tiny-ce", "conversion:cheap-first",
            "conversion:cheap-ce"} <= set(loaded)
    assert len(loaded) == len(set(loaded)) and not any("no-such" in k for k in loaded)
    assert "'no-such-model' not loaded" in caplog.text and "'no-such-lgbm' not loaded" in caplog.text
    assert pipe.warm_models() == loaded
    resp = pipe.search(SearchRequest("lamp", size=5, profile="ce-tiny"))  # served by the warmed model
    assert not resp.degraded and "cross_encoder" in resp.hits[0].stages


def test_warm_up_warns_of_a_cross_encoder_stage_that_cannot_fit_its_budget(searcher, registry, caplog):
    # an operator hears at start that a profile's shoppers will always get the retrieval order
    caplog.set_level(logging.WARNING)
    RankingPipeline(searcher, registry).warm_models()
    over = [r.getMessage() for r in caplog.records if "over the stage's budget_ms" in r.getMessage()]
    assert len(over) == 1 and over[0].startswith("profile 'ce-tiny-overrun': its cross-encoder 'tiny-ce' scores 8 "
                                                 "products in ")
    assert "Raise [rerank] budget_ms, lower depth, or serve on a GPU." in over[0]
    assert "'failing-ce' could not be timed (CUDA out of memory)" in caplog.text


def test_warm_up_timing_leaves_the_serving_estimate_as_it_was(searcher, registry):
    # full-length products scored while workers boot must not decide whether shoppers' searches run the stage
    pipe = RankingPipeline(searcher, registry)
    pipe.search(SearchRequest("lamp", size=5, profile="ce-tiny"))
    tiny, table = registry.get("cross_encoder", "tiny-ce"), registry.get("cross_encoder", "table-ce")
    before, calls = tiny.cost.snapshot(), table.calls
    pipe.warm_models()
    assert tiny.cost.snapshot() == before
    # table-ce serves at depths 8 (profiles ce and ce-rrf), 12 and 150: each depth is timed once, in two runs
    assert table.calls - calls == 2 * 3
    resp = pipe.search(SearchRequest("lamp", size=5, profile="ce-tiny"))
    assert not resp.degraded and "cross_encoder" in resp.hits[0].stages


def test_registry_finds_by_name_in_order_and_says_where_it_looked(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    (first / "m1").mkdir(parents=True)
    (second / "m1").mkdir(parents=True)
    (second / "m2").mkdir(parents=True)
    reg = ModelRegistry([first, second, tmp_path / "missing"])
    assert reg.find("m1") == first / "m1" and reg.find("m2") == second / "m2"
    with pytest.raises(ModelNotFound, match=rf"model 'm3' not found; looked in: {first}, {second}, "):
        reg.find("m3")
    for bad in ("../m1", "a/b", "", ".hidden"):
        with pytest.raises(ValueError, match="must be a name"):
            reg.find(bad)
    with pytest.raises(ValueError, match="kind must be one of cross_encoder, conversion"):
        reg.get("bi_encoder", "m1")


def test_registry_default_dirs_follow_the_settings(tmp_path, monkeypatch):
    from shopsearch.reranker.model_registry import default_model_dirs
    from shopsearch.settings import load_settings

    both = {"SHOPSEARCH_MODELS": "/m", "SHOPSEARCH_HOME": "/h"}
    assert default_model_dirs(load_settings(environ=both)) == [Path("/m"), Path("models")]
    assert default_model_dirs(load_settings(environ={"SHOPSEARCH_HOME": "/h"})) == [Path("/h/models"), Path("models")]
    monkeypatch.setenv("SHOPSEARCH_MODELS", str(tmp_path))
    assert ModelRegistry().dirs[0] == tmp_path


def test_registry_loads_each_model_once_across_threads(tmp_path):
    (tmp_path / "m").mkdir()
    loads = []

    def slow_load(path):
        loads.append(path)
        time.sleep(0.05)
        return object()

    reg = ModelRegistry([tmp_path], loaders={"conversion": slow_load})
    got = []
    threads = [threading.Thread(target=lambda: got.append(reg.conversion("m"))) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(loads) == 1 and len({id(g) for g in got}) == 1 and reg.loaded() == [("conversion", "m")]


def test_registry_loads_the_real_conversion_model(model_dir):
    model = ModelRegistry([model_dir]).conversion("cheap-first")
    assert isinstance(model, ConversionModel) and model.names == ("price", "rating")


def test_scored_hit_contributions_default_empty():
    h = ScoredHit(id="p", rank=1, score=0.0)
    assert h.contributions == {} and replace(h, contributions={"bias": 1.0}).contributions == {"bias": 1.0}


def test_rrf_combine_fuses_cross_encoder_and_incoming_ranks(searcher, registry):
    # REVERSE puts the fused order upside down; with rrf_k = 1 the two ranks of head position i (0-based) are
    # i + 1 and 8 - i, so every score is 1/(2 + i) + 1/(9 - i): symmetric, ties kept in fused order, and the
    # ends of the head (agreeing with one ranking strongly) beat its middle.
    resp = RankingPipeline(searcher, registry).search(SearchRequest("lamp", size=10, profile="ce-rrf"))
    head = resp.hits[:8]
    expected = {f"p{i:03d}": 1 / (2 + i) + 1 / (9 - i) for i in range(8)}
    assert {h.id: h.stages["rerank"] for h in head} == pytest.approx(expected)
    assert [h.score for h in head] == sorted((h.score for h in head), reverse=True)
    assert ids(head)[:2] == ["p000", "p007"] and all(h.stages["cross_encoder"] == REVERSE(h.id) for h in head)


def test_ranker_input_is_the_head_the_conversion_stage_scores(searcher, registry, model_dir):
    from shopsearch.reranker.features import feature_matrix

    pipeline = RankingPipeline(searcher, registry)
    inp = pipeline.ranker_input(SearchRequest("lamp", profile="both"))
    served = pipeline.search(SearchRequest("lamp", profile="both", size=6, explain=True))
    model = ConversionModel.load(model_dir / "cheap-first")
    raw = dict(zip(ids(inp.hits), model.raw_scores(feature_matrix("lamp", inp.hits, inp.context, model.names))))
    assert len(inp.hits) == 6 and not inp.degraded and set(raw) == set(ids(served.hits))
    assert all(raw[h.id] == pytest.approx(h.stages["conversion_raw"]) for h in served.hits)
    with pytest.raises(ValueError, match="conversion.depth is 0"):
        pipeline.ranker_input(SearchRequest("lamp", profile="ce"))


def test_a_ranker_learnt_from_logged_pages_is_served_the_features_it_learnt(profiles, registry):
    """The query log records the first page a profile without stages served; a ranker over a head of 30 must
    compute the list-relative features of those ten products as training from that log does."""
    from shopsearch.reranker.features import LIST_FEATURES, list_features

    searcher = FixedSearcher(profiles)
    # BM25 and vector scores out of the fused order, and a head whose best BM25 lies below the first page
    searcher.fused = [replace(h, stages={**h.stages, "bm25": float((i * 7) % 13) + (20.0 if i == 25 else 0.0),
                                         "knn": float((i * 5) % 11) / 10})
                      for i, h in enumerate(searcher.fused)]
    pipeline = RankingPipeline(searcher, registry)
    head = pipeline.ranker_input(SearchRequest("lamp", profile="conv-deep")).hits
    served = {h.id: r for h, r in zip(head, list_features("lamp", head, FeatureContext()))}
    assert len(head) == 30
    # the first page, a deeper page and a smaller one, as the storefront or an API client asks for them: each
    # page with its first page from one search, then each page with its first page searched for apart
    pages = ((1, LIST_REFERENCE), (2, LIST_REFERENCE), (2, 12), (1, 5), (3, LIST_REFERENCE), (6, 5))
    for with_reference, page, size in [(True, *p) for p in pages] + [(False, *p) for p in pages]:
        searcher.with_reference = with_reference
        logged = pipeline.search(SearchRequest("lamp", page=page, size=size, profile="plain", explain=True)).hits
        # what training from the UBI log rebuilds: the logged stages on the logged products, nothing else
        rebuilt = [ScoredHit(h.id, h.rank, 0.0, h.source, dict(h.stages)) for h in logged]
        learnt = list_features("lamp", rebuilt, FeatureContext())
        assert len(learnt) == size
        for h, a in zip(logged, learnt):
            assert {n: a[n] for n in LIST_FEATURES} == {n: served[h.id][n] for n in LIST_FEATURES}, (page, size)
    # below the first page: ranked against it, so the product with the best BM25 of all ranks first
    assert served["p025"]["bm25_list_rank"] == 1.0 and served["p025"]["bm25_rel"] > 1.0
    assert max(r["bm25_list_rank"] for r in served.values()) <= LIST_REFERENCE + 1


def merchandised(profiles: ProfileStore) -> FixedSearcher:
    """A FixedSearcher serving what HybridSearcher serves when rules fired: its ranking already arranged (every
    fourth product boosted x2, p020 pinned at position 2, p001 buried) and the hits marked."""
    from shopsearch.plugin.merchandising import arrange

    searcher = FixedSearcher(profiles)
    pins, boosts, buried = {"p020": 2}, {f"p{i:03d}": 2.0 for i in range(3, N, 4)}, {"p001"}
    order = arrange(searcher.fused, lambda h: h.id, pins, boosts, buried)
    marks = {**{i: {"boost": 2.0} for i in boosts}, "p020": {"pinned": 2.0}, "p001": {"buried": 1.0}}
    searcher.fused = [replace(h, rank=r, stages={**h.stages, **marks.get(h.id, {})}) for r, h in enumerate(order, 1)]
    return searcher

def test_merchandising_applies_once_and_every_page_slices_one_ranking(profiles, registry, model_dir):
    searcher = merchandised(profiles)
    pipeline = RankingPipeline(searcher, registry)
    for profile in ("ce", "both"):
        walked = {}
        for size in (5, 7, 10):
            walked[size] = [(h.id, h.rank) for page in range(1, -(-N // size) + 1)
                            for h in pipeline.search(SearchRequest("lamp", page=page, size=size,
                                                                   profile=profile)).hits]
        assert walked[5] == walked[7] == walked[10], profile
        served = [i for i, _ in walked[7]]
        assert sorted(served) == sorted(FUSED_IDS) and [r for _, r in walked[7]] == list(range(1, N + 1))
        assert served[1] == "p020" and served[-1] == "p001", profile  # the pin and the bury hold
        # Past the head the searcher's (boosted) order is served as it came: boosts are not applied again.
        head = max(profiles.get(profile).rerank.depth, profiles.get(profile).conversion.depth)
        assert served[head:] == [h.id for h in searcher.fused[head:]], profile
