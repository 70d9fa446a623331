"""The end-to-end deadline in the engines and the hybrid searcher: what runs out of time is left out, marked.

The embedded engine checks the deadline between legs; a fake clock stands for time (a leg "takes" time by moving
it), so nothing here depends on how fast the machine is. OpenSearch's side (request timeouts cut to the time left)
is checked against the real node, and its 429 maps to EngineBusy.
"""

from __future__ import annotations

import pytest

from shopsearch.deadline import Deadline, DeadlineExceeded
from shopsearch.indexer.records import Product
from shopsearch.indexer.sink import IndexDoc
from shopsearch.plugin.embedded_engine import EmbeddedEngine
from shopsearch.plugin.engine import (BM25Leg, EngineBusy, EngineUnavailable, IndexNotFound, KnnLeg, LegsCutShort,
                                     MatchRule)
from shopsearch.plugin.hybrid import HybridSearcher
from shopsearch.plugin.opensearch_errors import translate_status
from shopsearch.plugin.search_types import DEGRADED_REASONS, SearchRequest

TITLE = {"title": 1.0}


class FakeClock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


class UnitEmbedder:
    """Every query is the vector (1, 0)."""

    def encode(self, texts):
        import numpy as np

        return np.array([[1.0, 0.0]] * len(texts), dtype=np.float32)


@pytest.fixture
def engine(tmp_path):
    eng = EmbeddedEngine(tmp_path)
    eng.create_index("shop-1", 2)
    docs = [Product(f"d{i}", title, brand="Acme", price=float(i))
            for i, title in enumerate(["red lamp", "blue lamp", "green chair", "lamp shade"], 1)]
    list(eng.bulk("shop-1", [IndexDoc(p, [1.0, 0.1 * i], p.content_hash()) for i, p in enumerate(docs)]))
    eng.refresh("shop-1")
    eng.swap_alias("shop", "shop-1")
    yield eng
    eng.close()


def slow_leg(monkeypatch, engine, clock: FakeClock, name: str, seconds: float) -> None:
    """Make the engine's ``name`` leg (``_bm25`` or ``_knn``) take ``seconds`` of fake time."""
    original = getattr(engine, name)

    def slow(*args, **kwargs):
        clock.now += seconds
        return original(*args, **kwargs)

    monkeypatch.setattr(engine, name, slow)


def test_deadline_basics():
    clock = FakeClock()
    d = Deadline.after(1.0, clock=clock)
    assert d.remaining_ms() == 1000.0 and d.timeout_s("search", cap=5.0) == 1.0 and d.timeout_s("x", 0.2) == 0.2
    assert d.leaving(0.25).remaining_s() == 0.75 and d.leaving(0.25).budget_s == 1.0
    clock.now += 1.0
    assert d.expired() and d.remaining_s() == 0.0
    with pytest.raises(DeadlineExceeded, match="before sources finished") as exc:
        d.timeout_s("sources", cap=5.0)
    assert exc.value.stage == "sources" and isinstance(exc.value, TimeoutError)
    with pytest.raises(ValueError, match="seconds=-1 must be a number > 0"):
        Deadline.after(-1)


def test_embedded_engine_checks_the_deadline_between_legs(engine, monkeypatch):
    clock = FakeClock()
    slow_leg(monkeypatch, engine, clock, "_bm25", 2.0)
    legs = [BM25Leg("lamp", TITLE), KnnLeg([1.0, 0.0], k=3)]
    assert [len(r) for r in engine.search("shop", legs, deadline=Deadline.after(5.0, clock=clock))] == [3, 3]
    with pytest.raises(LegsCutShort) as cut:
        engine.search("shop", legs, deadline=Deadline.after(1.0, clock=clock))
    assert [[h.id for h in hits] for hits in cut.value.done] == [["d1", "d2", "d4"]]  # the BM25 leg ran
    assert cut.value.done[0][0].source["title"] == "red lamp"
    late = Deadline.after(1.0, clock=clock)
    clock.now += 1.0
    with pytest.raises(LegsCutShort) as none_ran:
        engine.search("shop", legs, deadline=late)
    assert none_ran.value.done == []
    with pytest.raises(DeadlineExceeded):
        engine.match("shop", MatchRule(), size=1, deadline=late)
    with pytest.raises(DeadlineExceeded):
        engine.sources("shop", ["d1"], deadline=late)


def test_hybrid_serves_the_lexical_leg_alone_when_the_vector_leg_has_no_time(engine, monkeypatch):
    clock = FakeClock()
    searcher = HybridSearcher(engine, "shop", UnitEmbedder())
    full = searcher.search(SearchRequest("lamp", size=3), deadline=Deadline.after(1.0, clock=clock))
    assert not full.degraded and full.degraded_reasons == ()
    # BM25 takes 0.9 s of a 1 s deadline: past the 0.8 s retrieval may use (FETCH_RESERVE), so k-NN is left
    # out; the page's products are still fetched, the count and facets are not.
    slow_leg(monkeypatch, engine, clock, "_bm25", 0.9)
    resp = searcher.search(SearchRequest("lamp", size=3), deadline=Deadline.after(1.0, clock=clock))
    assert resp.degraded and resp.degraded_reasons == ("retrieve:deadline",)
    assert [h.id for h in resp.hits] == ["d1", "d2", "d4"] and all(h.source["title"] for h in resp.hits)
    assert all("knn" not in h.stages for h in resp.hits)
    assert "the knn leg did not run in time; served by bm25" in resp.notes[0]
    assert set(resp.degraded_reasons) <= set(DEGRADED_REASONS)


def test_hybrid_serves_the_fused_hits_without_facets_when_counting_has_no_time(engine, monkeypatch):
    clock = FakeClock()
    searcher = HybridSearcher(engine, "shop", UnitEmbedder())
    original = engine.sources

    def slow_sources(*args, **kwargs):
        out = original(*args, **kwargs)
        clock.now += 5.0  # the fetch ran, and then the deadline had passed
        return out

    monkeypatch.setattr(engine, "sources", slow_sources)
    resp = searcher.search(SearchRequest("lamp", size=2), deadline=Deadline.after(1.0, clock=clock))
    assert resp.degraded_reasons == ("match:deadline",) and len(resp.hits) == 2 and resp.facets == {}
    assert resp.total >= 2  # the fused hits: a lower bound
    # a browse has nothing but the matching set to serve: no time for it is no answer
    with pytest.raises(DeadlineExceeded):
        late = Deadline.after(1.0, clock=clock)
        clock.now += 2.0
        searcher.search(SearchRequest("", size=2), deadline=late)


def test_the_engine_rejecting_work_is_engine_busy():
    busy = translate_status(429, {"type": "es_rejected_execution_exception", "reason": "queue capacity 1000"},
                            index="p", url="http://node:9200")
    assert isinstance(busy, EngineBusy) and isinstance(busy, EngineUnavailable) and "saturated" in str(busy)


@pytest.mark.opensearch
def test_opensearch_requests_get_the_time_left_as_their_timeout(opensearch_url, monkeypatch):
    from shopsearch.plugin.opensearch_engine import OpenSearchEngine
    from shopsearch.settings import load_settings

    engine = OpenSearchEngine(opensearch_url, settings=load_settings(environ={}), timeout=5.0, max_retries=0)
    seen = []
    original = engine.client.msearch

    def spy(*args, **kwargs):
        seen.append(kwargs.get("request_timeout"))
        return original(*args, **kwargs)

    monkeypatch.setattr(engine.client, "msearch", spy)
    try:
        clock = FakeClock()
        with pytest.raises(IndexNotFound):  # the call was made, with the deadline's time left as its timeout
            engine.search("no-such-index-deadline", [BM25Leg("x", TITLE)], deadline=Deadline.after(0.5, clock=clock))
        assert seen == [0.5]
        late = Deadline.after(0.5, clock=clock)
        clock.now += 1.0
        with pytest.raises(DeadlineExceeded):  # no time left: not even sent
            engine.search("no-such-index-deadline", [BM25Leg("x", TITLE)], deadline=late)
        assert len(seen) == 1
    finally:
        engine.close()
