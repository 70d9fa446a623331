"""Training rows, metrics, LightGBM training/saving and the ConversionModel on tiny data."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from shopsearch.events import Event, write_events
from shopsearch.plugin.search_types import ScoredHit
from shopsearch.reranker.conversion import ConversionModel, platt
from shopsearch.reranker.features import FeatureContext
from shopsearch.reranker.ranker_training import compare, group_folds, train
from shopsearch.reranker.sim_catalog import load_judged
from shopsearch.reranker.simulate import SimParams, simulate
from shopsearch.reranker.training_rows import build_rows
from tests.reranker.simdata import write_tiny_data


def test_platt_fits_a_rising_map():
    a, b = platt(np.array([-2.0, -1.0, 1.0, 2.0, 0.5]), np.array([0, 0, 1, 1, 0]))
    assert a > 0


def _ev(kind, pid, pos, t, session="s1", qid="q1", user="u1"):
    return Event(type=kind, query_id=qid, query="red lamp", product_id=pid, position=pos, user_id=user,
                 session_id=session, timestamp=f"2024-01-01T00:00:{t:02d}Z")


def test_rows_are_labelled_by_later_outcomes_and_see_only_the_past(tmp_path):
    data = load_judged(write_tiny_data(tmp_path))
    events = [_ev("impression", "p1", 1, 0), _ev("impression", "p2", 2, 0),
              _ev("click", "p2", 2, 3), _ev("add_to_cart", "p2", 2, 5),
              Event(type="purchase", product_id="p2", user_id="u1", session_id="s1",
                    timestamp="2024-01-01T00:00:09Z"),  # no query_id
              _ev("impression", "p2", 1, 20, session="s2"), _ev("impression", "p1", 2, 20, session="s2")]
    rows = build_rows(events, data.products, ("ctr", "user_brand_affinity"))
    assert rows.list_ids.tolist() == ["s1|q1"] * 2 + ["s2|q1"] * 2
    assert rows.clicked.tolist() == [0, 1, 0, 0] and rows.purchased.tolist() == [0, 1, 0, 0]
    assert rows.carted.tolist() == [0, 1, 0, 0] and rows.positions.tolist() == [1, 2, 1, 2]
    # s1 rows see no history (prior CTR 0.1); s2's p2 row sees 1 impression + 1 click: (1 + 2) / (1 + 20)
    assert rows.X[:2, 0].tolist() == [0.1, 0.1]
    assert rows.X[2, 0] == pytest.approx(3 / 21) and rows.X[2, 1] > 0


def test_group_folds_keep_queries_together():
    groups = np.array(["a", "a", "b", "c", "c", "d"])
    folds = group_folds(groups, 2, seed=0)
    for g in "abcd":
        assert len(set(folds[groups == g].tolist())) == 1
    assert set(folds.tolist()) == {0, 1}
    with pytest.raises(ValueError, match="folds=5"):
        group_folds(groups, 5, 0)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A lambdarank model trained through the CLI on 300 simulated sessions of the tiny data."""
    from shopsearch.api import cmd_train_ranker

    d = tmp_path_factory.mktemp("conv")
    data_dir = write_tiny_data(d / "data")
    data = load_judged(data_dir)
    events = [e for _, evs in simulate(data, SimParams(sessions=300, users=10, seed=3)) for e in evs]
    write_events(d / "ev.jsonl", events)
    parser = argparse.ArgumentParser()
    cmd_train_ranker.register(parser.add_subparsers())
    args = parser.parse_args(["ranker", "--events", str(d / "ev.jsonl"), "--data", str(data_dir),
                              "--out", str(d / "lgbm-tiny"), "--folds", "2", "--seed", "1"])
    assert args.run(args) == 0
    return d / "lgbm-tiny", data


def test_a_fold_held_out_of_an_events_file_is_named_by_query_text(trained, tmp_path):
    from shopsearch.api import cmd_train_ranker
    from shopsearch.events import read_events
    from shopsearch.text import normalise_query

    out, _ = trained
    events, data_dir = out.parent / "ev.jsonl", out.parent / "data"
    parser = argparse.ArgumentParser()
    cmd_train_ranker.register(parser.add_subparsers())
    args = parser.parse_args(["ranker", "--events", str(events), "--data", str(data_dir), "--out",
                              str(tmp_path / "m"), "--folds", "3", "--fold", "0", "--seed", "1", "--no-progress"])
    assert args.run(args) == 0
    card = json.loads((tmp_path / "m" / "model_card.json").read_text())
    held = card["data"]["heldout_query_texts"]
    assert "heldout_queries" not in card["data"] and held and card["heldout"]["queries"] == len(held)
    assert set(held) <= {normalise_query(e.query) for e in read_events(events)}
    args = parser.parse_args(["ranker", "--events", str(events), "--data", str(data_dir), "--out",
                              str(tmp_path / "none"), "--folds", "500", "--fold", "0", "--no-progress"])
    with pytest.raises(ValueError, match="--fold 0: holds out none of the .* queries; use fewer --folds"):
        args.run(args)


def test_model_dir_holds_text_model_and_card(trained):
    out, _ = trained
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "model.txt", "model_card.json"]
    assert (out / "model.txt").read_text().startswith("tree")
    card = json.loads((out / "model_card.json").read_text())
    assert card["objective"] == "lambdarank" and card["data"]["simulated"] is True
    assert len(card["data"]["events_sha256"]) == 64 and len(card["cv"]["folds"]) == 2
    assert set(card["importance_gain"]) == set(card["features"])
    assert "Cross-validation (folds grouped by query)" in (out / "README.md").read_text()


def test_predict_contributions_and_rerank(trained):
    out, data = trained
    model = ConversionModel.load(out)
    hits = [ScoredHit(pid, r, 0.0, data.products[pid].to_source(), {"bm25": b})
            for r, (pid, b) in enumerate([("p3", 1.0), ("p2", 2.0), ("p1", 5.0)], 1)]
    ranked = model.rerank("red lamp", hits, FeatureContext())
    assert sorted(h.id for h in ranked) == ["p1", "p2", "p3"] and [h.rank for h in ranked] == [1, 2, 3]
    probs = [h.stages["conversion"] for h in ranked]
    assert probs == sorted(probs, reverse=True) and all(0 < p < 1 for p in probs)
    assert all(h.score == h.stages["conversion"] and "bm25" in h.stages for h in ranked)
    from shopsearch.reranker.features import feature_matrix

    x = feature_matrix("red lamp", hits, FeatureContext(), model.names)
    contrib = model.contributions(x)
    assert [sum(c.values()) for c in contrib] == pytest.approx(model.raw_scores(x).tolist())
    assert set(contrib[0]) == {*model.names, "bias"}
    with pytest.raises(ValueError, match="features must be"):
        model.predict(np.zeros((1, 2)))
    assert model.rerank("q", []) == []


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="model.txt"):
        ConversionModel.load(tmp_path)


def test_a_ranker_trained_on_the_old_list_features_is_refused_with_what_to_do(tmp_path):
    import json

    from tests.reranker.tiny_lgbm import build_tiny_conversion_model

    d = build_tiny_conversion_model(tmp_path / "old", features=("price", "bm25_rel"))
    card = json.loads((d / "model_card.json").read_text())
    (d / "model_card.json").write_text(json.dumps({**card, "card_version": 1}))
    with pytest.raises(ValueError, match="retrain it with `shopsearch train ranker`"):
        ConversionModel.load(d)
    # a cache of trained rankers (the demo's) trains this one again, and keeps a current one
    from shopsearch.reranker.conversion import is_current

    assert not is_current(d) and not is_current(tmp_path / "none")
    assert is_current(build_tiny_conversion_model(tmp_path / "new", features=("price", "bm25_rel")))


def test_train_rejects_bad_arguments_and_compare_takes_any_baseline(tmp_path):
    data = load_judged(write_tiny_data(tmp_path))
    events = [e for _, evs in simulate(data, SimParams(sessions=60, users=5, seed=2)) for e in evs]
    rows = build_rows(events, data.products)
    with pytest.raises(ValueError, match="objective"):
        train(rows, objective="xendcg")
    with pytest.raises(ValueError, match="folds"):
        train(rows, folds=1)
    perfect = rows.purchased.astype(float)
    report = compare(rows, perfect, {"position": -rows.positions.astype(float)})
    assert list(report) == ["position", "candidate"] and report["candidate"]["auc"] == 1.0
    assert report["candidate"]["purchase_ndcg@10"] == 1.0


def test_cli_cross_encoder_scores_every_impression_for_its_feature(tmp_path, tiny_bi_encoder_dir):
    from shopsearch.api import cmd_train_ranker
    from shopsearch.reranker.conversion import ConversionModel
    from tests.reranker.tiny_ce import build_tiny_cross_encoder

    data_dir = write_tiny_data(tmp_path / "data")
    data = load_judged(data_dir)
    write_events(tmp_path / "ev.jsonl", [e for _, evs in simulate(data, SimParams(sessions=120, users=5, seed=2))
                                         for e in evs])
    ce = build_tiny_cross_encoder(tmp_path / "ce")
    parser = argparse.ArgumentParser()
    cmd_train_ranker.register(parser.add_subparsers())
    args = parser.parse_args(["ranker", "--events", str(tmp_path / "ev.jsonl"), "--data", str(data_dir), "--out",
                              str(tmp_path / "lgbm"), "--folds", "2", "--features",
                              "cross_encoder,knn_list_rank,title_overlap", "--cross-encoder", str(ce),
                              "--bi-encoder", str(tiny_bi_encoder_dir)])
    assert args.run(args) == 0
    card = json.loads((tmp_path / "lgbm" / "model_card.json").read_text())
    assert card["data"]["cross_encoder"] == str(ce) and card["data"]["bi_encoder"] == str(tiny_bi_encoder_dir)
    # the features had values in training, so the booster could split on them (a NaN column never is)
    assert card["importance_gain"]["cross_encoder"] > 0 and card["importance_gain"]["knn_list_rank"] > 0
    assert ConversionModel.load(tmp_path / "lgbm").names == ("cross_encoder", "knn_list_rank", "title_overlap")


def test_vector_scorer_reports_the_engine_scale_and_caches():
    from shopsearch.indexer.records import Product
    from shopsearch.reranker.training_rows import VectorScorer

    class Enc:
        calls = 0

        def encode(self, texts):
            Enc.calls += 1
            return np.array([[1.0, 0.0] if "lamp" in t else [0.0, 1.0] for t in texts])

    scorer = VectorScorer(Enc(), {"a": Product(id="a", title="Red lamp"), "b": Product(id="b", title="Mug")})
    assert scorer("lamp", ["a", "b", "x"]) == [{"knn": 1.0}, {"knn": 0.5}, {}]  # (1 + cos) / 2
    calls = Enc.calls
    assert scorer("lamp", ["b", "a"]) == [{"knn": 0.5}, {"knn": 1.0}] and Enc.calls == calls
