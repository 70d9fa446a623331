"""Held-out pools and the BM25 reference used by bench/ce_eval.py and bench/rerank.py (tiny data, no model)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from shopsearch.reranker.training_data import load_judged_set, split_queries
from shopsearch.reranker.pool_eval import bm25_scores, heldout_pools, pool_ndcg
from tests.reranker.tiny_ce import write_tiny_judged_set


@pytest.fixture(scope="module")
def data_and_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("pools")
    data = write_tiny_judged_set(root / "data")
    model = root / "model"
    write_card(model, data.name, seed=5, valid_fraction=0.25, test_fraction=0.25)
    return data, model


def write_card(model, trained_on: str, *, seed: int, **parameters):
    """A model card with just what the pools read: the seed, the split parameters and the data folders."""
    model.mkdir(exist_ok=True)
    card = {"seed": seed, "parameters": {"valid_fraction": 0.1, "test_fraction": 0.2, **parameters},
            "data": {"dirs": [{"name": trained_on}]}}
    (model / "model_card.json").write_text(json.dumps(card), encoding="utf-8")
    return model


def test_heldout_pools_follow_the_cards_split(data_and_model):
    data, model = data_and_model
    js, pools, train = heldout_pools(data, model)
    split = split_queries({j.query_id for j in js.qrels}, valid_fraction=0.25, test_fraction=0.25, seed=5)
    assert {p.qid for p in pools} == split.test and len(pools) == 3
    assert {j.query_id for j in train} == split.train
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
    grade = {(j.query_id, j.doc_id): j.relevance for j in js.qrels}
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


def test_a_folder_the_model_never_trained_on_is_scored_on_every_query(data_and_model, tmp_path):
    data, _ = data_and_model
    model = write_card(tmp_path / "other", "homedepot", seed=5)
    js, pools, train = heldout_pools(data, model)
    assert {p.qid for p in pools} == {j.query_id for j in js.qrels} and len(pools) == 12  # zero-shot: all unseen
    assert train == [] and heldout_pools(data, model, "valid")[1] == []


def test_fold_models_pool_into_every_query_each_scored_by_the_model_that_never_saw_it(data_and_model, tmp_path):
    from tests.bench_modules import load_bench

    ce_eval = load_bench("ce_eval")
    data, _ = data_and_model
    js = load_judged_set(data)
    train_of = {}

    class FoldScorer:
        """Scores a pool; fails loudly if asked about a query its fold trained on."""

        def __init__(self, fold):
            self.fold = fold

        def score(self, query, products):
            assert query not in train_of[self.fold]
            return np.arange(len(products), dtype=float)

        def calibrated(self, scores, name):
            return np.full(len(scores), 2.0)

    models = []
    for f in range(3):
        path = write_card(tmp_path / f"f{f}", data.name, seed=5, folds=3, fold=f)
        split = split_queries({j.query_id for j in js.qrels}, valid_fraction=0.1, seed=5, folds=3, fold=f)
        train_of[f] = {js.queries[q] for q in split.train}
        models.append((str(path), json.loads((path / "model_card.json").read_text()), FoldScorer(f)))
    pools, scores, rmse = ce_eval.heldout(data, models, "test", None)
    assert sorted(p.qid for p in pools) == sorted({j.query_id for j in js.qrels})  # every query, once
    assert len(scores) == len(pools) and set(rmse) == {"rmse_calibrated", "rmse_mean"}
    with pytest.raises(SystemExit, match="folds of one cross-validation"):
        ce_eval.heldout(data, models + models[:1], "test", None)
