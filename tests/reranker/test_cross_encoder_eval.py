"""Held-out pools and the BM25 reference used by bench/ce_eval.py and bench/rerank.py (tiny data, no model)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from shopsearch.reranker.judgments import load_judged_set, split_queries
from shopsearch.reranker.pool_eval import bm25_scores, heldout_pools, pool_ndcg
from tests.reranker.tiny_ce import write_tiny_judged_set


@pytest.fixture(scope="module")
def data_and_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("pools")
    data = write_tiny_judged_set(root / "data")
    model = root / "model"
    model.mkdir()
    card = {"seed": 5, "parameters": {"valid_fraction": 0.25, "test_fraction": 0.25}}
    (model / "model_card.json").write_text(json.dumps(card), encoding="utf-8")
    return data, model


def test_heldout_pools_follow_the_cards_split(data_and_model):
    data, model = data_and_model
    js, pools, train = heldout_pools(data, model)
    split = split_queries({j.qid for j in js.judgments}, valid_fraction=0.25, test_fraction=0.25, seed=5)
    assert {p.qid for p in pools} == split.test and len(pools) == 3
    assert {j.qid for j in train} == split.train
    for p in pools:
        ids = [x["id"] for x in p.products]
        assert ids == sorted(ids) and len(p.grades) == len(ids) == len(p.raw)
    assert len(heldout_pools(data, model, max_queries=2)[1]) == 2


def test_bm25_reference_ranks_the_exact_match_first(data_and_model):
    data, model = data_and_model
    _, pools, _ = heldout_pools(data, model)
    scores = bm25_scores(pools)
    for p, s in zip(pools, scores):
        assert s.shape == (len(p.products),)
        assert p.grades[int(np.argmax(s))] == 3  # both query words match only the grade-3 product
    assert pool_ndcg(pools, scores) > pool_ndcg(pools, [-s for s in scores])


def test_loaded_pool_grades_match_the_qrels(data_and_model):
    data, model = data_and_model
    js = load_judged_set(data)
    _, pools, _ = heldout_pools(data, model)
    grade = {(j.qid, j.product_id): j.grade for j in js.judgments}
    assert all(grade[(p.qid, x["id"])] == g for p in pools for x, g in zip(p.products, p.grades))


def test_per_query_ndcg_is_paired_and_averages_to_pool_ndcg(data_and_model):
    from shopsearch.reranker.pool_eval import per_query_ndcg

    data, model = data_and_model
    _, pools, _ = heldout_pools(data, model)
    ideal = [np.asarray(p.grades, dtype=float) for p in pools]
    worst = [-s for s in ideal]
    best, low = per_query_ndcg(pools, ideal), per_query_ndcg(pools, worst)
    assert best.shape == (len(pools),) and np.allclose(best, 1.0)
    assert (low < 1.0).all()
    assert low.mean() == pytest.approx(pool_ndcg(pools, worst))
