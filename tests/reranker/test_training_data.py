"""Training data: judged-set loading, the query-grouped split and capping; pair text and calibration (tiny data)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from shopsearch.evaluation import rmse
from shopsearch.judgments import Qrel
from shopsearch.reranker.calibration import fit_isotonic, load_calibrations, save_calibrations
from shopsearch.reranker.pair_text import product_text
from shopsearch.reranker.training_data import cap_by_query, load_judged_set, split_for, split_queries
from tests.reranker.tiny_ce import write_tiny_judged_set


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return write_tiny_judged_set(tmp_path_factory.mktemp("judged"))


def test_load_reads_typed_judgments_and_scales(tiny_data):
    js = load_judged_set(tiny_data)
    assert js.name == tiny_data.name and js.max_grade == 3
    assert (js.raw_min, js.raw_max) == (1.0, 4.0)
    first = js.qrels[0]
    assert isinstance(first, Qrel) and first.query_id == "tq000" and js.queries["tq000"] == "red lamp"
    top = [q for q in js.qrels if q.query_id == "tq000" and q.relevance == 3]
    assert [q.doc_id for q in top] == ["predlamp"] and js.raw_score(top[0]) == 4.0
    assert js.normalised_grade(top[0]) == 1.0
    assert math.isnan(js.raw_score(Qrel("tq000", "nowhere", 0)))  # a pair without a raw rating
    assert {q.doc_id for q in js.qrels} == js.products.keys()
    assert len(js.by_query()) == 12


def test_load_rejects_missing_file_and_unknown_qid(tmp_path, tiny_data):
    with pytest.raises(FileNotFoundError, match="lacks queries-dev.tsv"):
        load_judged_set(tmp_path)
    broken = write_tiny_judged_set(tmp_path / "broken")
    (broken / "qrels-dev.txt").write_text("nope 0 predlamp 3\n", encoding="utf-8")
    with pytest.raises(ValueError, match="'nope' is not in queries-dev.tsv"):
        load_judged_set(broken)


def test_judgments_without_ratings_take_their_grades_as_ratings(tmp_path):
    # the layout `judgments from-logs` qrels can be trained from: no scores-dev.tsv
    logged = write_tiny_judged_set(tmp_path / "logged")
    (logged / "scores-dev.tsv").unlink()
    js = load_judged_set(logged)
    assert all(js.raw_score(q) == q.relevance for q in js.qrels)
    assert (js.raw_min, js.raw_max) == (0.0, 3.0)
    fit_isotonic([0.1, 0.9], [js.raw_score(q) for q in js.qrels[:2]], js.raw_min, js.raw_max)  # calibrates


def test_split_is_disjoint_complete_seeded_and_order_free():
    qids = [f"q{i}" for i in range(100)]
    s = split_queries(qids, valid_fraction=0.1, test_fraction=0.2, seed=7)
    assert (len(s.train), len(s.valid), len(s.test)) == (70, 10, 20)
    assert not (s.train & s.valid or s.train & s.test or s.valid & s.test)
    assert s.train | s.valid | s.test == set(qids)
    assert split_queries(reversed(qids), valid_fraction=0.1, test_fraction=0.2, seed=7) == s
    assert split_queries(qids, valid_fraction=0.1, test_fraction=0.2, seed=8).test != s.test
    assert s.of(sorted(s.test)[0]) == "test"


def test_folds_test_every_query_once_and_keep_each_split_disjoint():
    qids = [f"q{i}" for i in range(53)]
    splits = [split_queries(qids, valid_fraction=0.1, test_fraction=0.2, seed=7, folds=5, fold=f) for f in range(5)]
    tests = [s.test for s in splits]
    assert sorted(len(t) for t in tests) == [10, 10, 11, 11, 11]
    assert set().union(*tests) == set(qids) and sum(len(t) for t in tests) == 53  # each query tested exactly once
    for s in splits:
        assert len(s.valid) == 5 and not (s.train & s.valid or s.train & s.test or s.valid & s.test)
        assert s.train | s.valid | s.test == set(qids)
    assert len({s.valid for s in splits}) == 5  # each fold validates on other queries
    # test_fraction plays no part once folds are set; the split stays order-free and seeded
    assert split_queries(reversed(qids), valid_fraction=0.1, test_fraction=0.5, seed=7, folds=5, fold=2) == splits[2]
    assert split_queries(qids, valid_fraction=0.1, seed=8, folds=5, fold=2).test != splits[2].test


@pytest.mark.parametrize("folds,fold", [(1, 0), (5, 5), (5, -1)])
def test_split_rejects_bad_folds(folds, fold):
    with pytest.raises(ValueError, match="folds"):
        split_queries([f"q{i}" for i in range(10)], folds=folds, fold=fold)


def test_split_for_reads_a_cards_parameters_old_and_new():
    qids = [f"q{i}" for i in range(30)]
    old_card = {"valid_fraction": 0.1, "test_fraction": 0.2}  # written before folds existed
    assert split_for(qids, old_card, 3) == split_queries(qids, valid_fraction=0.1, test_fraction=0.2, seed=3)
    assert split_for(qids, {**old_card, "folds": 3, "fold": 1}, 3) == split_queries(
        qids, valid_fraction=0.1, seed=3, folds=3, fold=1)


@pytest.mark.parametrize("kwargs,name", [({"valid_fraction": 1.0}, "valid_fraction"),
                                         ({"test_fraction": -0.1}, "test_fraction"),
                                         ({"valid_fraction": 0.5, "test_fraction": 0.5}, "valid_fraction")])
def test_split_rejects_bad_fractions(kwargs, name):
    with pytest.raises(ValueError, match=name):
        split_queries(["a", "b"], **kwargs)


def test_real_crowdflower_split_never_shares_a_query(shared_data):
    js = load_judged_set(shared_data / "crowdflower")
    s = split_queries({q.query_id for q in js.qrels})
    by_split = {name: {q.query_id for q in js.qrels if q.query_id in getattr(s, name)}
                for name in ("train", "valid", "test")}
    assert sum(len(v) for v in by_split.values()) == 168
    assert not (by_split["train"] & by_split["test"] or by_split["train"] & by_split["valid"])
    assert by_split["test"] and by_split["valid"]


def test_cap_keeps_whole_queries(tiny_data):
    js = load_judged_set(tiny_data)
    kept = cap_by_query(js.qrels, 30, seed=1)
    assert len(kept) >= 30
    for qid in {q.query_id for q in kept}:
        assert sum(q.query_id == qid for q in kept) == sum(q.query_id == qid for q in js.qrels)
    assert len(cap_by_query(js.qrels, None)) == len(js.qrels)
    with pytest.raises(ValueError, match="max_pairs=0"):
        cap_by_query(js.qrels, 0)


def test_product_text_strips_html_and_joins_fields():
    assert product_text({"title": "Lamp", "description": "<p>Warm &amp; bright</p>"}) == "Lamp. Warm & bright"
    assert product_text({"title": "Lamp", "description": ""}) == "Lamp"


def test_isotonic_calibration_is_monotone_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    s = rng.random(300)
    r = np.clip(1 + 2 * s + rng.normal(0, 0.3, 300), 1, 3)
    cal = fit_isotonic(s, r, 1.0, 3.0)
    grid = cal.apply(np.linspace(-1, 2, 50))
    assert np.all(np.diff(grid) >= 0) and grid.min() >= 1.0 and grid.max() <= 3.0
    assert rmse(cal.apply(s), r) < 0.6 * rmse(np.full(300, r.mean()), r)
    save_calibrations(tmp_path, {"hd": cal}, default="hd")
    loaded, default = load_calibrations(tmp_path)
    assert default == "hd" and np.allclose(loaded["hd"].apply(s), cal.apply(s))
    with pytest.raises(ValueError, match="at least 2"):
        fit_isotonic([0.1], [1.0], 1.0, 3.0)
