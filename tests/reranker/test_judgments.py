"""Judged-pair loading, the query-grouped split, pair text, nDCG and calibration (pure parts, tiny data)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from shopsearch.reranker.calibration import fit_isotonic, load_calibrations, save_calibrations
from shopsearch.reranker.ce_metrics import ndcg_at_k, rmse
from shopsearch.reranker.judgments import Judgment, cap_by_query, load_judged_set, split_queries
from shopsearch.reranker.pair_text import product_text
from tests.reranker.tiny_ce import write_tiny_judged_set


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return write_tiny_judged_set(tmp_path_factory.mktemp("judged"))


def test_load_reads_typed_judgments_and_scales(tiny_data):
    js = load_judged_set(tiny_data)
    assert js.name == tiny_data.name and js.max_grade == 3
    assert (js.raw_min, js.raw_max) == (1.0, 4.0)
    first = js.judgments[0]
    assert isinstance(first, Judgment) and first.qid == "tq000" and first.query == "red lamp"
    top = [j for j in js.judgments if j.qid == "tq000" and j.grade == 3]
    assert [j.product_id for j in top] == ["predlamp"] and top[0].raw_score == 4.0
    assert js.normalised_grade(top[0]) == 1.0
    assert {j.product_id for j in js.judgments} == js.products.keys()
    assert len(js.by_query()) == 12


def test_load_rejects_missing_file_and_unknown_qid(tmp_path, tiny_data):
    with pytest.raises(FileNotFoundError, match="lacks queries-dev.tsv"):
        load_judged_set(tmp_path)
    broken = write_tiny_judged_set(tmp_path / "broken")
    (broken / "qrels-dev.txt").write_text("nope 0 predlamp 3\n", encoding="utf-8")
    with pytest.raises(ValueError, match="'nope' is not in queries-dev.tsv"):
        load_judged_set(broken)


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
    from shopsearch.reranker.judgments import split_for

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
    s = split_queries({j.qid for j in js.judgments})
    by_split = {name: {j.qid for j in js.judgments if j.qid in getattr(s, name)} for name in ("train", "valid", "test")}
    assert sum(len(v) for v in by_split.values()) == 168
    assert not (by_split["train"] & by_split["test"] or by_split["train"] & by_split["valid"])
    assert by_split["test"] and by_split["valid"]


def test_cap_keeps_whole_queries(tiny_data):
    js = load_judged_set(tiny_data)
    kept = cap_by_query(js.judgments, 30, seed=1)
    assert len(kept) >= 30
    for qid in {j.qid for j in kept}:
        assert sum(j.qid == qid for j in kept) == sum(j.qid == qid for j in js.judgments)
    assert len(cap_by_query(js.judgments, None)) == len(js.judgments)
    with pytest.raises(ValueError, match="max_pairs=0"):
        cap_by_query(js.judgments, 0)


def test_product_text_strips_html_and_joins_fields():
    assert product_text({"title": "Lamp", "description": "<p>Warm &amp; bright</p>"}) == "Lamp. Warm & bright"
    assert product_text({"title": "Lamp", "description": ""}) == "Lamp"


def test_ndcg_matches_hand_computation():
    # ranking grades [1, 3, 0]; ideal [3, 1, 0]
    got = ndcg_at_k([0.9, 0.5, 0.1], [1, 3, 0], k=10)
    want = (1 + 3 / math.log2(3)) / (3 + 1 / math.log2(3))
    assert got == pytest.approx(want)
    assert ndcg_at_k([0.2, 0.1], [0, 0]) == 0.0
    assert ndcg_at_k([0.9, 0.5, 0.1], [1, 3, 0], k=1) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="k=0"):
        ndcg_at_k([1.0], [1], k=0)


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
