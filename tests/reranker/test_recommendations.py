"""The recommendations' memory: bounded whatever ids a flood of events names; co-purchases (counted per shopper),
recent products and the popular list fed by the event history's refresh, rebuilt alike after a restart; the
Recommender's lists over a fake catalog, out-of-stock products left out of what it offers."""

from __future__ import annotations

import random

import numpy as np
import pytest

from shopsearch.events import Event, EventLog
from shopsearch.indexer.records import Product
from shopsearch.reranker.event_context import EventLogHistory
from shopsearch.reranker.features import Affinity
from shopsearch.reranker.recommendations import (RecInputs, RecLimits, Recommender, RecommendationMemory,
                                                 top_popular)


def _ev(kind: str, pid: str, user: str, second: int = 0) -> Event:
    return Event(type=kind, product_id=pid, user_id=user, session_id=f"s-{user}",
                 timestamp=f"2024-01-01T00:{second // 60:02d}:{second % 60:02d}Z",
                 **({"query_id": "q", "position": 1} if kind in ("click", "impression") else {}))


def test_a_flood_of_random_ids_stays_within_the_bounds():
    limits = RecLimits(max_clients=50, recent_per_client=5, basket_size=4, max_pair_products=40,
                       pairs_per_product=3, popular_size=7)
    memory = RecommendationMemory(limits)
    rng = random.Random(0)
    for i in range(20_000):
        kind = rng.choice(["click", "add_to_cart", "purchase", "impression"])
        memory.add(_ev(kind, f"p{rng.randrange(10_000)}", f"u{rng.randrange(5_000)}", i % 3600), f"u{i % 5_000}")
    sizes = memory.sizes()
    assert sizes.clients <= 50 and sizes.pair_products <= 40 and sizes.pairs <= 40 * 3
    assert all(len(c.recent) <= 5 and len(c.basket) <= 4 for c in memory._clients.values())
    memory.set_popular((f"p{i}", float(100 - i)) for i in range(100))
    assert len(memory.inputs(None, [], Affinity()).popular) == 7


def test_co_purchases_recent_products_and_the_rarest_partner_goes_first():
    memory = RecommendationMemory(RecLimits(pairs_per_product=2, basket_window_s=3600))
    for user, (first, second) in {"a": ("x", "y"), "b": ("x", "y"), "c": ("x", "z"), "d": ("x", "w")}.items():
        memory.add(_ev("purchase", first, user, 0), user)
        memory.add(_ev("purchase", second, user, 10), user)
    # x's partners: y twice; z was the rarest when w came (cap 2), so it went
    assert memory.inputs("nobody", ["x"], Affinity()).together == [("y", 2.0), ("w", 1.0)]
    memory.add(_ev("click", "k", "a", 20), "a")
    memory.add(_ev("click", "y", "a", 30), "a")  # a repeat moves to the front, keeps "purchase"
    inputs = memory.inputs("a", [], Affinity())
    assert [(i.product_id, i.type) for i in inputs.recent] == [("y", "purchase"), ("k", "click"), ("x", "purchase")]
    assert inputs.purchased == ["y", "x"]


def test_bought_together_counts_shoppers_not_purchases():
    memory = RecommendationMemory()
    memory.add(_ev("purchase", "a", "loyal", 0), "loyal")
    for i in range(5):  # one shopper buys b five times after a
        memory.add(_ev("purchase", "b", "loyal", 10 + i), "loyal")
    for user in ("u1", "u2", "u3"):  # three shoppers buy a and c once
        memory.add(_ev("purchase", "a", user, 0), user)
        memory.add(_ev("purchase", "c", user, 10), user)
    memory.add(_ev("purchase", "a", "loyal", 20), "loyal")  # the pair again, the other way round
    assert memory.inputs("nobody", ["a"], Affinity()).together == [("c", 3.0), ("b", 1.0)]
    assert memory.inputs("nobody", ["b"], Affinity()).together == [("a", 1.0)]
    assert len(memory._counted) == 4  # (loyal, a/b), (u1, a/c), ...
    small = RecommendationMemory(RecLimits(max_counted_pairs=2))  # the record of who was counted is bounded
    for user in ("u1", "u2", "u3"):
        small.add(_ev("purchase", "a", user, 0), user)
        small.add(_ev("purchase", "c", user, 10), user)
    assert len(small._counted) == 2 and small.inputs("nobody", ["a"], Affinity()).together == [("c", 3.0)]
    with pytest.raises(ValueError, match="max_counted_pairs must be an integer >= 1; got 0"):
        RecLimits(max_counted_pairs=0)


def test_purchases_further_apart_than_the_window_do_not_pair():
    memory = RecommendationMemory(RecLimits(basket_window_s=60))
    memory.add(_ev("purchase", "x", "u", 0), "u")
    memory.add(_ev("purchase", "y", "u", 120), "u")
    assert memory.inputs("u", ["x"], Affinity()).together == []
    memory.add(_ev("purchase", "z", "u", 3000), "u")  # out of order: an earlier purchase logged later
    memory.add(_ev("purchase", "w", "u", 0), "u")
    assert memory.inputs("u", ["z"], Affinity()).together == []


def test_the_history_refresh_feeds_the_memory(tmp_path):
    log = EventLog(tmp_path)
    log.append([_ev("click", "p1", "u1", 1), _ev("purchase", "p2", "u1", 2), _ev("purchase", "p3", "u1", 3),
                _ev("click", "p3", "u2", 4)])
    history = EventLogHistory(tmp_path, lambda pid: None, refresh_s=0, max_users=10, max_products=10)
    assert history.recommendations.limits.max_clients == 10  # bounded as the history is
    assert history.refresh() == 4
    inputs = history.recommendation_inputs("u1", ["p2"], "product")
    assert [i.product_id for i in inputs.recent] == ["p3", "p2", "p1"]
    assert inputs.together == [("p3", 1.0)]
    assert inputs.popular == [("p3", 4.0), ("p2", 3.0), ("p1", 1.0)]
    assert history.recommendation_inputs("s-u1", [], "home").recent == []  # a user is not looked up as a session


def test_a_restart_rebuilds_the_memory_the_running_server_had(tmp_path):
    """A log longer than ``max_events``, its co-purchase before the last ``max_events``: a fresh history (a restart)
    reading it at once holds what one that read it as it grew holds."""
    rng = random.Random(0)
    events = [_ev("purchase", "a", "u1", 0), _ev("purchase", "b", "u1", 1)]
    for second in range(2, 60):
        events.append(_ev(rng.choice(["impression", "impression", "click", "add_to_cart", "purchase"]),
                          f"p{rng.randrange(6)}", f"u{rng.randrange(2, 6)}", second))
    catalog = {f"p{i}": Product(id=f"p{i}", title="t", brand=f"B{i % 2}", category=(f"C{i % 3}",)) for i in range(6)}
    log = EventLog(tmp_path)
    running = EventLogHistory(tmp_path, catalog.get, refresh_s=0, max_events=5)
    for start in range(0, len(events), 3):  # the running server reads the log pass by pass
        log.append(events[start:start + 3])
        running.refresh()
    restarted = EventLogHistory(tmp_path, catalog.get, refresh_s=0, max_events=5)
    assert restarted.refresh() == len(events)
    inputs = restarted.recommendation_inputs("u9", ["a"], "product")
    assert inputs.together == [("b", 1.0)]
    assert [i.product_id for i in restarted.recommendation_inputs("u1", [], "home").recent] == ["b", "a"]
    assert {"a", "b"} <= {p for p, _ in inputs.popular}

    def memory(h: EventLogHistory) -> list:
        shoppers = [f"u{i}" for i in range(1, 6)] + [f"s-u{i}" for i in range(1, 6)]
        products = ["a", "b"] + list(catalog)
        return [(h.recommendation_inputs(c, [p], "cart"), h.context(c, None, products)) for c in shoppers
                for p in products]

    assert memory(restarted) == memory(running)


def test_top_popular_ranks_purchases_above_clicks():
    assert top_popular([("a", 2, 0), ("b", 0, 1), ("c", 0, 0)], 5) == [("b", 3.0), ("a", 2.0)]


class FakeCatalog:
    """Four products on a circle: a's nearest is b, then c, then d."""

    VECTORS = {p: np.array([np.cos(a), np.sin(a)], dtype=np.float32)
               for p, a in {"a": 0.0, "b": 0.3, "c": 0.8, "d": 2.5}.items()}
    SOURCES = {"a": {"brand": "A"}, "b": {"brand": "B"}, "c": {"brand": "C"}, "d": {"brand": "A"}}

    def vectors(self, ids):
        return {p: self.VECTORS[p] for p in ids if p in self.VECTORS}

    def nearest(self, vector, k, exclude):
        scored = [(p, (1 + float(v @ vector)) / 2, self.SOURCES[p]) for p, v in self.VECTORS.items()
                  if p not in exclude]
        return sorted(scored, key=lambda t: -t[1])[:k]

    def sources(self, ids):
        return {p: self.SOURCES[p] for p in ids if p in self.SOURCES}


class StockCatalog(FakeCatalog):
    """FakeCatalog with b out of stock and c in stock (a and d have no in_stock)."""

    SOURCES = {**FakeCatalog.SOURCES, "b": {"brand": "B", "in_stock": False}, "c": {"brand": "C", "in_stock": True}}


class CircleCatalog(FakeCatalog):
    """``n`` products p0, p1, ... ever further from p0; p1 to p<sold_out> out of stock; records each k asked."""

    def __init__(self, n: int, sold_out: int) -> None:
        self.VECTORS = {f"p{i}": np.array([np.cos(i / n), np.sin(i / n)], dtype=np.float32) for i in range(n)}
        self.SOURCES = {f"p{i}": {"in_stock": not 1 <= i <= sold_out} for i in range(n)}
        self.asked: list[int] = []

    def nearest(self, vector, k, exclude):
        self.asked.append(k)
        return super().nearest(vector, k, exclude)


def _inputs(recent=(), together=(), popular=(), affinity=Affinity(), purchased=()):
    from shopsearch.reranker.recommendations import Interaction

    return RecInputs([Interaction(p, t) for p, t in recent], list(purchased), list(together), list(popular),
                     affinity)


def test_for_you_is_the_nearest_to_the_shoppers_products_blended_with_affinity():
    plain = Recommender(FakeCatalog(), affinity_weight=0.0)
    assert [r.id for r in plain.for_you(_inputs(recent=[("a", "click")]), 3).items] == ["b", "c", "d"]
    liked_a = Affinity(brands={"A": 3.0}, categories={}, total=3.0)
    blended = Recommender(FakeCatalog(), affinity_weight=0.9)
    assert [r.id for r in blended.for_you(_inputs(recent=[("a", "click")], affinity=liked_a), 3).items][0] == "d"


def test_lists_per_context_and_the_popular_fallback():
    rec = Recommender(FakeCatalog())
    cold = _inputs(popular=[("c", 5.0), ("b", 2.0)])
    assert [(rl.source, [r.id for r in rl.items]) for rl in rec.recommend(cold, "home", None, 10)] == \
        [("popular", ["c", "b"])]
    warm = _inputs(recent=[("a", "purchase")], purchased=["a"], together=[("a", 3.0), ("b", 1.0)],
                   popular=[("a", 9.0), ("c", 5.0)])
    got = {rl.source: [r.id for r in rl.items] for rl in rec.recommend(warm, "product", "c", 10)}
    assert got == {"bought_together": ["b"], "for_you": ["b", "d"], "recently_viewed": ["a"]}
    with pytest.raises(ValueError, match="context must be one of home, product, cart; got 'x'"):
        rec.recommend(warm, "x", None, 10)
    # products deleted since their events are passed over, however many lead the list
    gone = _inputs(popular=[("x1", 9.0), ("x2", 8.0), ("x3", 7.0), ("c", 5.0), ("b", 2.0)])
    assert [[r.id for r in rl.items] for rl in rec.recommend(gone, "home", None, 1)] == [["c"]]


def test_out_of_stock_products_are_left_out_of_what_is_offered_which_fills_from_the_next():
    rec = Recommender(StockCatalog(), affinity_weight=0.0)
    inputs = _inputs(recent=[("b", "click"), ("a", "click")], together=[("b", 5.0), ("c", 3.0), ("d", 1.0)],
                     popular=[("b", 9.0), ("x1", 8.0), ("c", 5.0), ("d", 2.0)])  # x1: deleted
    assert [r.id for r in rec.for_you(_inputs(recent=[("a", "click")]), 2).items] == ["c", "d"]
    assert [r.id for r in rec.bought_together(inputs, 2).items] == ["c", "d"]
    assert [r.id for r in rec.popular(inputs, 1).items] == ["c"]
    assert [r.id for r in rec.recently_viewed(inputs, 2).items] == ["b", "a"]  # their own history: kept
    # the k-NN asks for more while too few in-stock candidates are left, up to its cap
    deep = CircleCatalog(20, sold_out=10)
    got = Recommender(deep, affinity_weight=0.0).for_you(_inputs(recent=[("p0", "click")]), 2)
    assert [r.id for r in got.items] == ["p11", "p12"] and deep.asked == [7, 14]
    none_left = CircleCatalog(300, sold_out=299)
    assert Recommender(none_left).for_you(_inputs(recent=[("p0", "click")]), 2).items == []
    assert none_left.asked == [7, 14, 28, 56, 112, 200]


def test_engine_catalog_reads_a_cached_vector_again_after_its_ttl():
    """A product deleted (or re-embedded) since stops steering for_you once its cached vector expires."""
    from shopsearch.reranker.recommendations import EngineCatalog

    class Engine:
        docs = {"p1": {"vector": [1.0, 0.0]}}
        gets = 0

        def get(self, index, pid, with_vector=False):
            Engine.gets += 1
            return self.docs.get(pid)

    now = [0.0]
    catalog = EngineCatalog(Engine(), "idx", vector_ttl_s=600, clock=lambda: now[0])
    assert list(catalog.vectors(["p1"])) == ["p1"] and list(catalog.vectors(["p1"])) == ["p1"]
    assert Engine.gets == 1  # cached
    del Engine.docs["p1"]
    now[0] = 599.0
    assert list(catalog.vectors(["p1"])) == ["p1"]  # within its ttl
    now[0] = 601.0
    assert catalog.vectors(["p1"]) == {} and Engine.gets == 2
