"""The cross-encoder's budget: a time-decayed cost estimate checked before each batch, so one slow spell never
switches the stage off for good. Everything runs on a fake clock that the fake model advances."""

from __future__ import annotations

import pytest

from shopsearch.deadline import Deadline
from shopsearch.plugin.search_types import ScoredHit
from shopsearch.reranker.batch_cost import BatchCost
from shopsearch.reranker.cross_encoder import CrossEncoderReranker, OverBudget


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeModel:
    """An ONNX-scorer stand-in: ``ms_per_pair`` of fake time per pair, scores from the title's number."""

    def __init__(self, clock: FakeClock, ms_per_pair: float) -> None:
        self.clock, self.ms_per_pair, self.batches = clock, ms_per_pair, 0

    def predict(self, pairs):
        self.batches += 1
        self.clock.now += self.ms_per_pair * len(pairs) / 1000
        return [float(text.split()[-1]) / 100 for _, text in pairs]


def fake_reranker(clock: FakeClock, model: FakeModel, batch_size: int = 4) -> CrossEncoderReranker:
    """A CrossEncoderReranker around the fake model (no weights loaded; the scoring loop and budget are real)."""
    rr = CrossEncoderReranker.__new__(CrossEncoderReranker)
    rr.model, rr._onnx, rr.batch_size = None, model, batch_size
    rr.cost = BatchCost(half_life_s=30.0, clock=clock)
    return rr


def _hits(n: int) -> list[ScoredHit]:
    return [ScoredHit(id=f"h{i}", rank=i + 1, score=1.0 / (i + 1), source={"title": f"Lamp {i}"},
                      stages={"fused": 1.0 / (i + 1)}) for i in range(n)]


def test_the_estimate_is_a_moving_average_that_decays_toward_the_fastest_cost_seen():
    clock = FakeClock()
    cost = BatchCost(half_life_s=10.0, alpha=0.5, clock=clock)
    assert cost.ms_per_pair() is None and cost.batch_ms(8) is None
    cost.observe(pairs=4, ms=8.0)  # 2 ms a pair: the prior
    cost.observe(pairs=2, ms=100.0)  # 50 ms a pair
    assert cost.ms_per_pair() == pytest.approx(26.0)  # 0.5 * 2 + 0.5 * 50
    clock.now += 10.0
    assert cost.ms_per_pair() == pytest.approx(2 + 24 / 2)  # one half-life: halfway back to the prior
    clock.now += 100.0
    assert cost.ms_per_pair() == pytest.approx(2.0, abs=0.05) and cost.batch_ms(10) == pytest.approx(20, abs=0.5)
    cost.observe(pairs=0, ms=5.0)  # nothing scored: ignored
    with pytest.raises(ValueError, match="half_life_s=0"):
        BatchCost(half_life_s=0)


def test_the_budget_is_checked_before_each_batch():
    clock = FakeClock()
    model = FakeModel(clock, ms_per_pair=50.0)  # 100 ms per batch of 2
    rr = fake_reranker(clock, model, batch_size=2)
    products = [{"title": f"Lamp {i}"} for i in range(10)]
    # No estimate for the first batch; then each batch is started only if its estimate fits the time left.
    with pytest.raises(OverBudget, match="scored 6 of 10 pairs"):
        rr.score("lamp", products, deadline=Deadline.after(0.35, clock=clock))
    assert model.batches == 3 and clock.now == pytest.approx(1000.3)  # stopped before overrunning, not after
    assert rr.score("lamp", products[:4], deadline=Deadline.after(1.0, clock=clock)).tolist() == \
        pytest.approx([0.0, 0.01, 0.02, 0.03])


def test_a_slow_spell_switches_the_stage_off_only_until_the_estimate_decays():
    clock = FakeClock()
    model = FakeModel(clock, ms_per_pair=1.0)
    rr = fake_reranker(clock, model)
    hits = _hits(20)
    out, why = rr.rerank("lamp", hits, depth=20, budget_ms=100)  # 20 ms: fits
    assert why is None and [h.id for h in out[:3]] == ["h19", "h18", "h17"]

    model.ms_per_pair = 40.0  # a slow spell (a noisy neighbour): 800 ms for the head
    for _ in range(3):
        _, why = rr.rerank("lamp", hits, depth=20, budget_ms=100)
        assert why == "budget"
    assert rr.cost.ms_per_pair() > 5  # the estimate learned the spell (100 ms fits at most 5 ms a pair)
    batches = model.batches
    out, why = rr.rerank("lamp", hits, depth=20, budget_ms=100)
    assert (out, why) == (hits, "budget") and model.batches == batches  # skipped up front: nothing scored

    model.ms_per_pair = 1.0  # the spell is over, but nothing scores while the stage is skipped...
    clock.now += 10.0
    assert rr.rerank("lamp", hits, depth=20, budget_ms=100)[1] == "budget"  # a third of a half-life: not yet
    clock.now += 300.0  # ...so the estimate itself decays back toward the fastest cost seen
    out, why = rr.rerank("lamp", hits, depth=20, budget_ms=100)
    assert why is None and model.batches > batches and [h.id for h in out[:3]] == ["h19", "h18", "h17"]
    assert rr.cost.ms_per_pair() < 5
