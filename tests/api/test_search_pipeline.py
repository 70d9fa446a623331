"""GET /search through the ranking pipeline: profile=rerank with tiny models, shopper context, degraded notes."""

from __future__ import annotations

from pathlib import Path

import pytest

from shopsearch.plugin.search_types import DEGRADED_REASONS, SearchRequest
from shopsearch.plugin.ubi_store import open_ubi_store
from shopsearch.reranker.model_registry import ModelRegistry
from tests.api.conftest import ALIAS
from tests.api.test_openapi import check
from tests.reranker.tiny_ce import build_tiny_cross_encoder
from tests.reranker.tiny_lgbm import build_tiny_conversion_model


@pytest.fixture(scope="module")
def rerank_models(tmp_path_factory) -> Path:
    """The model names the packaged rerank profile uses, as tiny models."""
    d = tmp_path_factory.mktemp("api-models")
    build_tiny_cross_encoder(d / "ce-minilm")
    build_tiny_conversion_model(d / "lgbm-sim")
    return d


def make_client(tmp_path, searcher, engine, models_dir):
    from shopsearch.api.app import create_app

    return create_app({"TESTING": True, "searcher": searcher, "engine_instance": engine, "index": ALIAS,
                       "engine": "embedded", "events_dir": str(tmp_path / "events"), "home": str(tmp_path),
                       "models": ModelRegistry([models_dir])}).test_client()


def test_rerank_profile_runs_every_stage_and_explains_it(tmp_path, searcher, catalog_engine, rerank_models):
    c = make_client(tmp_path, searcher, catalog_engine, rerank_models)
    assert c.post("/events", json={"type": "purchase", "product_id": "p2", "session_id": "s1",
                                   "user_id": "u1"}).status_code == 202
    resp = c.get("/search?q=lamp&profile=rerank&explain=true&size=5&user_id=u1&session_id=s1")
    body = resp.get_json()
    assert resp.status_code == 200 and not body["degraded"], body["notes"]
    assert {"rerank", "conversion", "total"} <= set(body["timings_ms"])
    for hit in body["hits"]:
        assert {"fused", "cross_encoder", "rerank", "conversion", "conversion_raw", "conversion_rrf"} <= set(
            hit["stages"])
        assert sum(hit["contributions"].values()) == pytest.approx(hit["stages"]["conversion_raw"])
        assert hit["score"] == pytest.approx(hit["stages"]["conversion_rrf"])  # the packaged profile fuses, RRF
        assert 0 < hit["stages"]["conversion"] < 1
    scores = [h["score"] for h in body["hits"]]
    assert scores == sorted(scores, reverse=True) and [h["rank"] for h in body["hits"]] == [1, 2, 3, 4, 5]
    check(c.get("/openapi.json").get_json(), "/search", "get", resp)
    plain = c.get("/search?q=lamp&explain=true&size=5").get_json()
    assert all("contributions" not in h and "cross_encoder" not in h["stages"] for h in plain["hits"])
    assert [h["id"] for h in plain["hits"]] == [h.id for h in searcher.search(SearchRequest("lamp", size=5)).hits]


def test_missing_models_answer_200_degraded_with_notes(tmp_path, searcher, catalog_engine):
    c = make_client(tmp_path, searcher, catalog_engine, tmp_path / "no-models")
    resp = c.get("/search?q=lamp&profile=rerank&size=3")
    body = resp.get_json()
    assert resp.status_code == 200 and body["degraded"] and len(body["notes"]) == 2
    assert "cross-encoder 'ce-minilm' unavailable (not installed)" in body["notes"][0]
    assert str(tmp_path) not in resp.get_data(as_text=True)  # where the server looked is for its log
    assert "conversion stage degraded: model 'lgbm-sim' unavailable" in body["notes"][1]
    metrics = c.get("/metrics").get_data(as_text=True)
    assert "shopsearch_search_degraded_total 1.0" in metrics
    c.get("/search?q=lamp&size=3")
    svc = c.application.extensions["shopsearch"]
    svc.ubi_drainer.stop()
    degraded, plain = open_ubi_store(svc.config).iter_queries()  # the query log says which page was degraded
    assert degraded.query_attributes["degraded"] == body["degraded_reasons"]
    assert set(body["degraded_reasons"]) <= set(DEGRADED_REASONS) and "degraded" not in plain.query_attributes


def test_context_parameters_are_validated(tmp_path, searcher, catalog_engine, rerank_models):
    c = make_client(tmp_path, searcher, catalog_engine, rerank_models)
    for url, name in (("/search?q=lamp&user_id=a&user_id=b", "user_id"), ("/search?q=lamp&session_id=s&session_id=t",
                                                                          "session_id"),
                      (f"/search?q=lamp&user_id={'x' * 200}", "user_id")):
        resp = c.get(url)
        assert resp.status_code == 400 and resp.get_json()["error"]["parameter"] == name, url
    assert c.get("/search?q=lamp&user_id=u9&session_id=s9").status_code == 200
    assert c.get("/search?q=lamp&user_id=%20&session_id=").status_code == 200  # blank: absent, as for any option


def test_a_users_affinity_personalises_a_search_only_with_their_client_token(tmp_path, searcher, catalog_engine,
                                                                              monkeypatch):
    """The search key is public: user_id=alice must not rank (and explain) by alice's history for anyone."""
    from shopsearch.api.hit_tokens import client_token, signing_key

    c = make_client(tmp_path, searcher, catalog_engine, tmp_path / "no-models")
    svc = c.application.extensions["shopsearch"]
    pipeline, seen = svc.get_pipeline(), []
    real = pipeline.search
    monkeypatch.setattr(pipeline, "search", lambda req, context=None, **kw: seen.append(context) or real(
        req, context=context, **kw))
    token = client_token(signing_key(svc.config), "alice")
    for extra in ("", f"&client_token={client_token(signing_key(svc.config), 'bob')}", f"&client_token={token}"):
        assert c.get(f"/search?q=lamp&user_id=alice&session_id=s1{extra}").status_code == 200
    assert [(x.user_id, x.session_id) for x in seen] == [(None, "s1"), (None, "s1"), ("alice", "s1")]
