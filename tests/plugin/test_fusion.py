"""Fusion functions against values computed by hand (see the comments next to each expectation)."""

from __future__ import annotations

import math

import pytest

from shopsearch.plugin.engine import Hit
from shopsearch.plugin.fusion import Fused, fuse, minmax, rrf, zscore

# bm25 ranks a, b, c; knn ranks c, a, d.
LEGS = {
    "bm25": [Hit("a", 10.0), Hit("b", 6.0), Hit("c", 2.0)],
    "knn": [Hit("c", 0.9), Hit("a", 0.5), Hit("d", 0.1)],
}


def scores(fused: list[Fused]) -> dict[str, float]:
    return {f.id: f.score for f in fused}


def test_rrf_default_k60_equal_weights():
    fused = rrf(LEGS)
    assert [f.id for f in fused] == ["a", "c", "b", "d"]
    expected = {"a": 1 / 61 + 1 / 62, "c": 1 / 63 + 1 / 61, "b": 1 / 62, "d": 1 / 63}
    assert scores(fused) == pytest.approx(expected)


def test_rrf_custom_k_and_weights():
    # k=1, bm25 weight 2: a = 2/2 + 1/3, b = 2/3, c = 2/4 + 1/2, d = 1/4
    fused = rrf(LEGS, k=1, weights={"bm25": 2.0})
    assert [f.id for f in fused] == ["a", "c", "b", "d"]
    assert scores(fused) == pytest.approx({"a": 4 / 3, "b": 2 / 3, "c": 1.0, "d": 0.25})


def test_per_leg_scores_and_ranks_are_kept():
    by_id = {f.id: f for f in rrf(LEGS)}
    assert by_id["a"].leg_scores == {"bm25": 10.0, "knn": 0.5}
    assert by_id["a"].leg_ranks == {"bm25": 1, "knn": 2}
    assert by_id["d"].leg_scores == {"knn": 0.1}
    assert by_id["d"].leg_ranks == {"knn": 3}


def test_minmax_missing_doc_gets_zero():
    # bm25 -> a 1, b .5, c 0; knn -> c 1, a .5, d 0; absent -> 0
    fused = minmax(LEGS)
    assert [f.id for f in fused] == ["a", "c", "b", "d"]
    assert scores(fused) == pytest.approx({"a": 1.5, "b": 0.5, "c": 1.0, "d": 0.0})


def test_minmax_weights_change_the_winner():
    # knn weight 3: a = 1 + 1.5, b = .5, c = 0 + 3, d = 0
    fused = minmax(LEGS, weights={"knn": 3.0})
    assert [f.id for f in fused] == ["c", "a", "b", "d"]
    assert scores(fused) == pytest.approx({"a": 2.5, "b": 0.5, "c": 3.0, "d": 0.0})


def test_zscore_missing_doc_gets_leg_minimum():
    # Each leg is evenly spaced: z = +sqrt(1.5), 0, -sqrt(1.5); a missing doc gets -sqrt(1.5) from that leg.
    z = math.sqrt(1.5)
    fused = zscore(LEGS)
    assert [f.id for f in fused] == ["a", "c", "b", "d"]
    assert scores(fused) == pytest.approx({"a": z, "b": -z, "c": 0.0, "d": -2 * z})


def test_ties_are_broken_by_id():
    # Both docs rank 1 in one leg each: equal RRF scores, so id order decides, whatever the leg order.
    assert [f.id for f in rrf({"l1": [Hit("z", 1)], "l2": [Hit("m", 1)]})] == ["m", "z"]
    assert [f.id for f in rrf({"l1": [Hit("m", 1)], "l2": [Hit("z", 1)]})] == ["m", "z"]
    assert [f.id for f in minmax({"l1": [Hit("q", 2), Hit("b", 2), Hit("k", 2)]})] == ["b", "k", "q"]


def test_degenerate_legs():
    assert rrf({}) == []
    assert minmax({"bm25": []}) == []
    # One hit, or all-equal scores: min-max gives 1.0 (all are the best), z-score 0.0 (no information).
    assert scores(minmax({"bm25": [Hit("a", 3.0), Hit("b", 3.0)]})) == {"a": 1.0, "b": 1.0}
    assert scores(zscore({"bm25": [Hit("a", 3.0)]})) == {"a": 0.0}


def test_repeated_id_in_a_leg_keeps_first_rank():
    fused = rrf({"bm25": [Hit("a", 5), Hit("b", 4), Hit("a", 3)]}, k=1)
    assert scores(fused) == pytest.approx({"a": 1 / 2, "b": 1 / 3})
    assert fused[0].leg_ranks == {"bm25": 1}


def test_fuse_dispatches_and_validates():
    assert fuse("rrf", LEGS, rrf_k=1, weights={"bm25": 2.0}) == rrf(LEGS, k=1, weights={"bm25": 2.0})
    assert fuse("zscore", LEGS) == zscore(LEGS)
    with pytest.raises(ValueError, match="method must be one of rrf, minmax, zscore; got 'borda'"):
        fuse("borda", LEGS)
    with pytest.raises(ValueError, match="k must be"):
        rrf(LEGS, k=0)
    with pytest.raises(ValueError, match=r"weights\['knn'\] must be a finite number >= 0, got -1"):
        minmax(LEGS, weights={"knn": -1})
    with pytest.raises(ValueError, match="no leg named 'dense'"):
        rrf(LEGS, weights={"dense": 1.0})
