"""bench/interleave_share.py: the interleaving outcome two rankings can show simulated shoppers, in expectation."""

from __future__ import annotations

from collections import Counter

import pytest

from shopsearch.indexer.records import Product
from tests.bench_modules import load_bench


@pytest.fixture(scope="module")
def module():
    return load_bench("interleave_share")


PRODUCTS = {f"p{i}": Product(id=f"p{i}", title=f"p{i}", price=20.0, rating=4.0) for i in range(12)}
GRADES = {"q1": {"p0": 3, "p1": 3, "p2": 2, "p3": 1}, "q2": {"p5": 3, "p6": 2}}
GOOD = {"q1": [f"p{i}" for i in range(12)],
        "q2": ["p5", "p6", *(f"p{i}" for i in range(5)), *(f"p{i}" for i in range(7, 12))]}
WORSE = {q: list(reversed(r)) for q, r in GOOD.items()}


def _totals(out: dict[str, list[Counter]]) -> Counter:
    return sum((c for per_coin in out.values() for c in per_coin), Counter())


def test_the_same_ranking_on_both_sides_leans_nowhere(module):
    out = module.expected_preference(GOOD, GOOD, GRADES, PRODUCTS, 3, coins=200, shoppers=5, names=("a", "b"))
    total = _totals(out)
    assert set(out) == {"q1", "q2"} and all(len(per_coin) == 200 for per_coin in out.values())
    assert abs(total["a"] - total["b"]) / (total["a"] + total["b"]) < 0.08  # only the coins and shoppers differ


def test_the_ranking_with_relevant_products_first_wins(module):
    total = _totals(module.expected_preference(WORSE, GOOD, GRADES, PRODUCTS, 3, coins=100, shoppers=5,
                                               names=("default", "learnt")))
    assert total["learnt"] > 2 * total["default"]


def test_the_same_seed_gives_the_same_outcome(module):
    def run():
        return module.expected_preference(WORSE, GOOD, GRADES, PRODUCTS, 3, coins=20, shoppers=3, seed=7)

    assert run() == run()


def test_summary_reports_the_share_and_which_side_it_leans_to(module):
    worse = [Counter({"learnt": 3, "default": 7, None: 5})] * 40
    line = module.summary("fold0", worse, "learnt")
    assert "expected share 0.3000" in line and "the lean is to default" in line
    assert "searches for 80% power" in line
    even = module.summary("fold0", [Counter({"learnt": 5, "default": 5})] * 10, "learnt")
    assert "never (no lean)" in even
