"""plugin/popular_queries.py and plugin/suggest.py's mixing: the aggregate, the typo-tolerant lookup, the
background refresh (never on the request path), and popular queries mixed with titles."""

from __future__ import annotations

import threading
from datetime import datetime, timezone

import pytest

from shopsearch.plugin.popular_queries import (PopularQueries, PopularQueryCache, aggregate_queries,
                                               prefix_distance)
from shopsearch.plugin.suggest import Suggestion, mix_suggestions, rank_suggestions
from shopsearch.ubi import UbiQuery


def rec(n: int, text: str, who: str | None, total: int = 3, page: int = 1, simulated: bool = False,
        day: int = 1, index: str | None = None) -> UbiQuery:
    attrs = {"page": page, "total": total, "simulated": simulated} | ({"index": index} if index else {})
    return UbiQuery(query_id=f"q{n}", client_id=who, user_query=text, query_response_id="r",
                    query_response_hit_ids=["p1"] if total else [], timestamp=f"2024-01-{day:02d}T00:00:{n:02d}Z",
                    query_attributes=attrs)


def test_aggregate_counts_searches_clients_zero_results_and_simulated():
    stats = aggregate_queries([rec(1, "Red Lamp", "a"), rec(2, "red  lamp", "a", simulated=True),
                               rec(3, "red lamp", None, total=0), rec(4, "red lamp", "b", page=2),
                               rec(5, "rug", "a", index="other"), rec(6, "  ", "a")], index="products")
    (lamp,) = stats
    assert lamp[:5] == ("red lamp", 3, 2, 1, 1)  # page 2 and another index's search left out; anonymous = 1 client
    assert lamp.last_found is False  # its latest search found nothing
    since = datetime(2024, 1, 2, tzinfo=timezone.utc)
    assert aggregate_queries([rec(1, "a", "x", day=1), rec(2, "b", "x", day=3)], since=since)[0].query == "b"
    # a relevance console's explained searches are no shopper's; attributes as text, as UBI clients store them
    console = rec(7, "lamp", "eng").model_copy(update={"query_attributes": {"explain": True, "total": 3}})
    as_text = rec(8, "lamp", "c").model_copy(update={"query_attributes": {"page": "2", "simulated": "false"}})
    text_first = rec(9, "lamp", "d").model_copy(update={"query_attributes": {"page": "1", "simulated": "true"}})
    assert aggregate_queries([console, as_text, text_first])[0][:5] == ("lamp", 1, 1, 0, 1)


def test_a_redirected_search_found_what_the_merchandiser_meant():
    redirected = rec(1, "gift card", "a", total=0)
    redirected = redirected.model_copy(update={"query_attributes": {**redirected.query_attributes,
                                                                    "redirect": "/pages/gift-cards"}})
    (stats,) = aggregate_queries([redirected])
    assert stats.zero_results == 0 and stats.last_found is True  # not a "zero-result query" to fix


def test_searches_without_a_client_id_count_as_one_client_never_enough_alone():
    alone = [rec(i, "satin pillow zq7", None) for i in range(5)]
    (stats,) = aggregate_queries(alone)
    assert (stats.searches, stats.clients) == (5, 1)
    assert PopularQueries(aggregate_queries(alone)).ranked == []  # one anonymous shopper, five times: not public
    assert PopularQueries(aggregate_queries([*alone, rec(9, "satin pillow zq7", "a")])).ranked == ["satin pillow zq7"]


def test_lookup_prefix_then_typos_popular_first_and_privacy():
    records = [rec(i, q, w) for i, (q, w) in enumerate([("lamp shade", "a"), ("lamp shade", "b"), ("lamp", "a"),
                                                        ("lamp", "b"), ("lamp", "c"), ("secret order 123", "a"),
                                                        ("lampe", "a"), ("lampe", "b")])]
    popular = PopularQueries(aggregate_queries(records))
    assert popular.lookup("LAM", 5) == ["lamp", "lamp shade", "lampe"]
    assert popular.lookup("lanp sh", 5) == ["lamp shade"]  # one edit in 7 characters
    assert popular.lookup("lanp", 5) == ["lamp", "lamp shade", "lampe"]  # 4 characters: one edit
    assert popular.lookup("lan", 5) == []  # 3 characters: no typo forgiven
    assert popular.lookup("secret", 5) == []  # one client only
    assert PopularQueries(aggregate_queries(records), min_clients=1).lookup("secret", 5) == ["secret order 123"]
    assert len(PopularQueries(aggregate_queries(records), max_queries=1)) == 1
    assert popular.lookup("", 5) == [] and popular.lookup("lamp", 1) == ["lamp"]
    with pytest.raises(ValueError, match="min_clients=0"):
        PopularQueries([], min_clients=0)


def test_prefix_distance():
    assert prefix_distance("wirless", "wireless mouse", 1) == 1
    assert prefix_distance("wireless", "wireless", 2) == 0
    assert prefix_distance("mouse", "wireless mouse", 2) is None


def test_cache_refreshes_in_the_background_and_keeps_the_old_snapshot_on_failure():
    gate, calls = threading.Event(), []

    def load():
        calls.append(1)
        gate.wait(10)
        if len(calls) > 1:
            raise OSError("store down")
        return [rec(1, "lamp", "a"), rec(2, "lamp", "b")]

    now = [0.0]
    cache = PopularQueryCache(load, refresh_s=60, window_days=36500, clock=lambda: now[0])
    assert len(cache.get()) == 0  # returns at once (the refresh waits on the gate)
    cache.get()  # one refresh at a time
    gate.set()
    cache.stop()
    assert calls == [1] and cache.get().lookup("la", 5) == ["lamp"]
    now[0] = 61.0  # stale: the next get refreshes, which fails; the old snapshot stays
    cache.get()
    cache.stop()
    assert len(calls) == 2 and cache.get().lookup("la", 5) == ["lamp"]
    with pytest.raises(ValueError, match="refresh_s=0"):
        PopularQueryCache(load, refresh_s=0)


def test_mix_gives_each_kind_half_and_fills_from_the_other():
    q, t = ["a1", "a2", "a3", "a4"], ["T1", "T2", "T3", "T4"]
    assert [s.kind for s in mix_suggestions(q, t, 4)] == ["query", "query", "product", "product"]
    assert [s.kind for s in mix_suggestions(q, t, 5)] == ["query"] * 3 + ["product"] * 2
    assert mix_suggestions(q, ["T1"], 3) == [Suggestion("a1", "query"), Suggestion("a2", "query"),
                                             Suggestion("T1", "product")]
    assert mix_suggestions([], t, 2) == [Suggestion("T1", "product"), Suggestion("T2", "product")]
    assert mix_suggestions(["t1"], ["T1", "T2"], 5) == [Suggestion("t1", "query"), Suggestion("T2", "product")]


def test_a_title_that_is_a_suggested_query_in_another_case_or_width_is_dropped():
    """Popular queries are keyed by normalise_query (NFKC, casefold), so the titles are compared in that form."""
    assert mix_suggestions(["strasse", "led lamp"], ["Straße", "ＬＥＤ lamp", "LED lamp shade"], 4) == [
        Suggestion("strasse", "query"), Suggestion("led lamp", "query"), Suggestion("LED lamp shade", "product")]
    assert rank_suggestions("led", ["ＬＥＤ lamp", "LED  lamp"], 5) == ["ＬＥＤ lamp"]  # one suggestion, not two


def test_near_gives_popular_queries_a_few_edits_from_a_whole_query():
    records = [rec(i, q, w) for i, (q, w) in enumerate([("velvet sofa", "a"), ("velvet sofa", "b"),
                                                        ("velvet sofas", "a"), ("velvet sofas", "b"),
                                                        ("sofa", "a"), ("sofa", "b")])]
    popular = PopularQueries(aggregate_queries(records))
    assert popular.near("velvit sofa") == ["velvet sofa", "velvet sofas"]  # closest first
    assert popular.near("velvet sofa") == ["velvet sofas"]  # never the query itself
    assert popular.near("sofx") == ["sofa"] and popular.near("sfx") == []  # under 4 characters: none
