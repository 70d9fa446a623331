"""Ranking metrics (shopsearch.evaluation) against hand-computed values: run metrics, judged pools, conversion lists."""

from __future__ import annotations

import math

import numpy as np
import pytest

from shopsearch.evaluation import (auc, evaluate, mean_list_ndcg, mean_ndcg, ndcg_at_k, per_pool_ndcg, rmse,
                                   rmse_vs_mean, to_run)
from shopsearch.judgments import Qrel

LOG2_3 = math.log2(3)

# --- evaluate(): a search run against judgements -----------------------------------------------------------------

QRELS = [Qrel("q1", "a", 2), Qrel("q1", "b", 0), Qrel("q1", "c", 1), Qrel("q2", "x", 1)]


def test_metrics_by_hand_and_missing_query_counts_zero():
    report = evaluate(QRELS, {"q1": ["b", "a"]})  # q2 has no results at all
    # q1: DCG = 0/log2(2) + 2/log2(3); ideal = 2/1 + 1/log2(3)
    ndcg_q1 = (2 / LOG2_3) / (2 + 1 / LOG2_3)
    assert report.per_query["q1"] == pytest.approx({"ndcg@10": ndcg_q1, "recall@100": 0.5, "mrr@10": 0.5,
                                                    "judged@10": 1.0})
    assert report.per_query["q2"] == {"ndcg@10": 0.0, "recall@100": 0.0, "mrr@10": 0.0, "judged@10": 0.0}
    assert report.metrics == pytest.approx({"ndcg@10": ndcg_q1 / 2, "recall@100": 0.25, "mrr@10": 0.25,
                                            "judged@10": 0.5})
    assert report.queries == 2


def test_given_order_is_evaluated_not_resorted():
    # Equal engine scores would be re-sorted by doc id by trec_eval; the ranking as shown must count.
    ideal = evaluate(QRELS, {"q1": ["a", "c"]}, qids=["q1"])
    swapped = evaluate(QRELS, {"q1": ["c", "a"]}, qids=["q1"])
    assert ideal.metrics["ndcg@10"] == pytest.approx(1.0)
    assert swapped.metrics["ndcg@10"] == pytest.approx((1 + 2 / LOG2_3) / (2 + 1 / LOG2_3))
    assert [d.doc_id for d in to_run({"q": ["c", "a", "c"]})] == ["c", "a"]


def test_grade_one_is_relevant_for_recall_and_mrr():
    report = evaluate(QRELS, {"q1": ["b", "c"]}, qids=["q1"])
    assert report.per_query["q1"]["mrr@10"] == 0.5  # c (grade 1) at rank 2; b (grade 0) is not relevant
    assert report.per_query["q1"]["recall@100"] == 0.5


def test_rank_cutoffs():
    ranking = [f"junk{i}" for i in range(10)] + ["a"]  # a at rank 11: outside @10, inside @100
    report = evaluate(QRELS, {"q1": ranking}, qids=["q1"])
    assert report.per_query["q1"] == {"ndcg@10": 0.0, "recall@100": 0.5, "mrr@10": 0.0, "judged@10": 0.0}


def test_judged_at_10_counts_judged_products_of_any_grade_among_those_shown():
    # b is judged irrelevant (grade 0): judged all the same; junk never was; rank 11 is past the cutoff
    report = evaluate(QRELS, {"q1": ["b", "junk", "a"] + [f"junk{i}" for i in range(7)] + ["c"]}, qids=["q1"])
    assert report.per_query["q1"]["judged@10"] == pytest.approx(0.2)
    # a shorter list is measured on what it shows
    assert evaluate(QRELS, {"q1": ["a", "junk"]}, qids=["q1"]).per_query["q1"]["judged@10"] == pytest.approx(0.5)


def test_judged_only_scores_the_judged_products_of_each_ranking():
    rankings = {"q1": ["junk", "b", "a"], "q2": ["junk"]}  # q2: unjudged products only; q9 has no judgements
    every = evaluate(QRELS, rankings, qids=["q1", "q2", "q9"])
    judged = evaluate(QRELS, rankings, qids=["q1", "q2", "q9"], judged_only=True)
    assert judged.queries == 2 and judged.unjudged == ("q9",)
    assert every.per_query["q1"]["mrr@10"] == pytest.approx(1 / 3)
    assert judged.per_query["q1"]["mrr@10"] == 0.5  # junk taken out: b (grade 0) first, a second
    assert judged.per_query["q2"] == {"ndcg@10": 0.0, "recall@100": 0.0, "mrr@10": 0.0, "judged@10": 0.0}
    # judged@10 reads the rankings as shown
    assert judged.per_query["q1"]["judged@10"] == every.per_query["q1"]["judged@10"] == pytest.approx(2 / 3)
    assert evaluate(QRELS, {}, qids=["q1"], judged_only=True).per_query["q1"]["ndcg@10"] == 0.0


def test_unjudged_queries_are_left_out_and_listed():
    report = evaluate(QRELS, {"q1": ["a", "c"]}, qids=["q1", "q9"])
    assert report.queries == 1 and report.unjudged == ("q9",)
    with pytest.raises(ValueError, match="none of the 1 queries has judgements"):
        evaluate(QRELS, {}, qids=["q9"])


# --- judged pools ranked by scores -------------------------------------------------------------------------------

def test_pool_ndcg_matches_hand_computation():
    # ranking grades [1, 3, 0]; ideal [3, 1, 0]
    got = ndcg_at_k([0.9, 0.5, 0.1], [1, 3, 0], k=10)
    want = (1 + 3 / LOG2_3) / (3 + 1 / LOG2_3)
    assert got == pytest.approx(want)
    assert ndcg_at_k([0.9, 0.5, 0.1], [1, 3, 0], k=1) == pytest.approx(1 / 3)
    assert ndcg_at_k([], []) == 0.0
    with pytest.raises(ValueError, match="k=0"):
        ndcg_at_k([1.0], [1], k=0)
    with pytest.raises(ValueError, match="scores has 2 items but grades has 1"):
        ndcg_at_k([1.0, 0.5], [1])


def test_pool_without_relevant_items_by_hand():
    # Grades [0, 0]: DCG = 0 and the ideal DCG = 0. trec_eval (and so every nDCG here) scores such a query 0.0,
    # not NaN; a mean over pools counts it as 0, while mean_list_ndcg leaves the list out, as its doc says.
    assert ndcg_at_k([0.2, 0.1], [0, 0]) == 0.0
    assert evaluate([Qrel("q", "a", 0), Qrel("q", "b", 0)], {"q": ["a", "b"]}).per_query["q"]["ndcg@10"] == 0.0
    pools = {"good": ([0.1, 0.9], [0, 2]), "none": ([0.2, 0.1], [0, 0])}
    assert per_pool_ndcg(pools) == {"good": 1.0, "none": 0.0}
    assert mean_ndcg(pools) == 0.5
    assert mean_list_ndcg(["good", "good", "none", "none"], [0, 2, 0, 0], [0.1, 0.9, 0.2, 0.1]) == (1.0, 1)
    assert math.isnan(mean_list_ndcg(["none", "none"], [0, 0], [0.2, 0.1])[0])
    assert mean_ndcg({}) == 0.0


def test_pool_ndcg_equals_evaluate_ndcg_on_the_same_ranking():
    rng = np.random.default_rng(0)
    pools, qrels, rankings = {}, [], {}
    for q in range(30):
        grades = rng.integers(0, 4, int(rng.integers(1, 25))).tolist()
        scores = np.round(rng.random(len(grades)), 1)  # ties: the pool order breaks them
        pools[f"q{q}"] = (scores, grades)
        qrels += [Qrel(f"q{q}", f"d{i}", g) for i, g in enumerate(grades)]
        rankings[f"q{q}"] = [f"d{i}" for i in np.argsort(-scores, kind="stable")]
    report = evaluate(qrels, rankings)
    assert per_pool_ndcg(pools, 10) == {q: report.per_query[q]["ndcg@10"] for q in pools}
    assert mean_ndcg(pools) == pytest.approx(report.metrics["ndcg@10"], abs=1e-15)


def test_pool_ties_follow_the_pool_order_and_nan_ranks_last():
    assert ndcg_at_k([0.5, 0.5], [0, 1]) == pytest.approx(1 / LOG2_3)  # tie: item 0 first
    assert ndcg_at_k([0.5, 0.5], [1, 0]) == 1.0
    assert ndcg_at_k([float("nan"), 0.1], [0, 1]) == 1.0


def test_a_negative_grade_is_judged_and_not_relevant():
    """TREC's -2 (junk): no gain, judged. In a child process, as ir-measures' trec_eval backend crashed the whole
    process on a query whose only grades were negative."""
    import subprocess
    import sys

    script = ("from shopsearch.evaluation import evaluate, per_pool_ndcg\n"
              "from shopsearch.judgments import Qrel\n"
              "r = evaluate([Qrel('q1', 'a', 1), Qrel('q2', 'a', -2), Qrel('q3', 'a', -1), Qrel('q3', 'b', 2)],\n"
              "             {'q1': ['a'], 'q2': ['a'], 'q3': ['a', 'b']})\n"
              "print(r.per_query['q2']['ndcg@10'], r.per_query['q2']['judged@10'], r.per_query['q3']['mrr@10'])\n"
              "print(per_pool_ndcg({'x': ([0.9, 0.1], [-2, -2])}))\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("\n")[:2] == ["0.0 1.0 0.5", "{'x': 0.0}"]


def test_pool_grades_must_be_integers():
    assert ndcg_at_k([0.9, 0.1], np.array([2.0, 0.0])) == 1.0  # integral floats are fine
    with pytest.raises(ValueError, match=r"pool 'x': grades must be integers .*got 0\.5"):
        per_pool_ndcg({"x": ([0.9, 0.1], [0.5, 1])})


# --- conversion lists, AUC and RMSE ------------------------------------------------------------------------------

def test_conversion_metrics_hand_computed():
    assert auc([0, 1, 0, 1], [0.1, 0.9, 0.2, 0.8]) == 1.0
    assert auc([1, 0], [0.5, 0.5]) == 0.5 and math.isnan(auc([0, 0], [1, 2]))
    assert mean_list_ndcg(["a", "a"], [0, 1], [0.9, 0.1]) == (pytest.approx(1 / LOG2_3), 1)
    assert mean_list_ndcg(["a", "a", "b", "b"], [1, 0, 0, 0], [0.9, 0.1, 0.5, 0.4]) == (1.0, 1)


def test_rmse_ignores_missing_ratings():
    assert rmse([1.0, 2.0, 5.0], [1.0, 4.0, float("nan")]) == pytest.approx(math.sqrt(2))
    assert math.isnan(rmse([1.0], [float("nan")]))
    assert rmse_vs_mean([1.0, 3.0], [1.0, 3.0], mean=2.0) == {"rmse_calibrated": 0.0, "rmse_mean": 1.0}


# --- one held-out item per list (recommendations) ------------------------------------------------------------------

def test_held_out_hit_rate_and_ndcg_hand_computed():
    from shopsearch.evaluation import HeldOut, held_out_scores

    got = held_out_scores({"u1": ["a", "b"], "u2": ["c"], "u3": list("abcdefghijkl")},
                          {"u1": "b", "u2": "z", "u3": "l", "u4": "w"}, k=10)
    assert got == {"u1": HeldOut(1.0, pytest.approx(1 / LOG2_3)), "u2": HeldOut(0.0, 0.0),
                   "u3": HeldOut(0.0, 0.0), "u4": HeldOut(0.0, 0.0)}  # l is 12th: past k; u4 has no list
    assert held_out_scores({"u": ["x"]}, {"u": "x"}, k=1)["u"] == HeldOut(1.0, 1.0)
    with pytest.raises(ValueError, match="k=0"):
        held_out_scores({}, {}, k=0)
