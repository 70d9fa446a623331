"""Team-draft interleaving (reranker/interleaving.py): invariants over many seeded random pairs, click credit,
and the merge of two profiles' responses."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from shopsearch.plugin.engine import Filters
from shopsearch.plugin.search_types import ScoredHit, SearchRequest, SearchResponse
from shopsearch.reranker.interleaving import (credit, interleave_responses, list_seed, preference,
                                              search_interleaved, team_draft)


def _pairs(n: int = 300):
    rng = random.Random(7)
    pool = [f"p{i}" for i in range(30)]
    for _ in range(n):
        yield rng.sample(pool, rng.randint(0, 15)), rng.sample(pool, rng.randint(0, 15)), f"q{rng.random()}"


@pytest.mark.parametrize("a, b, seed", list(_pairs()))
def test_invariants(a, b, seed):
    merged = team_draft(a, b, seed=seed)
    assert len(merged.ids) == len(set(merged.ids)) == len(merged.teams)  # no duplicates
    assert set(merged.ids) == set(a) | set(b)  # each list's items appear
    assert merged == team_draft(a, b, seed=seed)  # reproducible by seed
    # Each team's picks, in list order, are its own ranking's order.
    for team, ranking in (("a", a), ("b", b)):
        picked = [pid for pid, t in zip(merged.ids, merged.teams) if t == team]
        assert picked == sorted(picked, key=ranking.index)
    # Team balance: while both rankings still have unplaced items, pick counts differ by at most one.
    for k in range(1, len(merged.ids) + 1):
        placed = set(merged.ids[:k])
        if set(a) - placed and set(b) - placed:
            assert abs(merged.teams[:k].count("a") - merged.teams[:k].count("b")) <= 1


def test_length_prefix_is_a_prefix_of_the_whole_list():
    a, b = list("abcdefgh"), list("hgfedcba")
    whole = team_draft(a, b, seed="q1")
    assert team_draft(a, b, seed="q1", length=3) == (whole.ids[:3], whole.teams[:3])


def test_the_coin_depends_on_the_seed():
    a, b = [f"a{i}" for i in range(10)], [f"b{i}" for i in range(10)]  # disjoint: every round is the coin's
    firsts = {team_draft(a, b, seed=f"q{i}").teams[0] for i in range(40)}
    assert firsts == {"a", "b"}


def test_identical_rankings_interleave_to_the_same_order():
    assert team_draft(list("xyz"), list("xyz"), seed="s").ids == ("x", "y", "z")


def test_bad_arguments():
    with pytest.raises(ValueError, match="length must be >= 0"):
        team_draft(["a"], ["b"], seed="s", length=-1)
    with pytest.raises(ValueError, match="teams must be two different labels"):
        team_draft(["a"], ["b"], seed="s", teams=("x", "x"))


def test_click_credit_and_preference():
    ids, teams = ["p1", "p2", "p3", "p4"], ["A", "B", "A", "B"]
    assert credit(ids, teams, ["p1", "p3", "p2", "p9"]) == {"A": 2, "B": 1}
    assert preference(ids, teams, ["p1", "p3", "p2"]) == "A"
    assert preference(ids, teams, ["p2", "p4"]) == "B"
    assert preference(ids, teams, ["p1", "p2"]) is None  # a tie
    assert preference(ids, teams, []) is None
    assert preference(ids, teams, ["p9"]) is None  # not in the list: no credit


def _resp(profile: str, ids: list[str], page: int = 1, size: int = 10, facets=None) -> SearchResponse:
    hits = [ScoredHit(id=pid, rank=(page - 1) * size + i + 1, score=1.0 / (i + 1), stages={profile: 1.0})
            for i, pid in enumerate(ids)]
    return SearchResponse(query="q", profile=profile, page=page, size=size, total=len(ids), hits=hits,
                          facets=facets or {}, timings_ms={"total": 1.0})


def test_interleave_responses_serves_the_requested_page_with_its_teams():
    a, b = _resp("A", ["p1", "p2", "p3", "p4"]), _resp("B", ["p4", "p5", "p1", "p6"], facets={"brand": [("x", 1)]})
    req = SearchRequest("q", page=2, size=2)
    resp, teams = interleave_responses(a, b, seed="qid", req=req, teams=("A", "B"))
    whole = team_draft(["p1", "p2", "p3", "p4"], ["p4", "p5", "p1", "p6"], seed="qid", teams=("A", "B"))
    assert [h.id for h in resp.hits] == list(whole.ids[2:4]) and teams == whole.teams[2:4]
    assert [h.rank for h in resp.hits] == [3, 4]
    assert all(h.stages == {t: 1.0} for h, t in zip(resp.hits, teams))  # each hit as its own team scored it
    assert resp.profile == "A+B" and resp.timings_ms["total"] == 2.0 and resp.facets == {}


def _merchandised(profile: str, ids: list[str]) -> SearchResponse:
    """A profile's ranking as the pipeline serves it when rules fired: p_pin at position 3, p_bur last, marked."""
    order = [i for i in ids if i not in ("p_pin", "p_bur")]
    order = order[:2] + ["p_pin"] + order[2:] + ["p_bur"]
    resp = _resp(profile, order, size=len(order))
    marks = {"p_pin": {"pinned": 3.0}, "p_bur": {"buried": 1.0}}
    return replace(resp, hits=[replace(h, stages={**h.stages, **marks.get(h.id, {})}) for h in resp.hits])


@pytest.mark.parametrize("seed", [f"s{i}" for i in range(20)])
def test_interleaving_keeps_pins_in_place_buried_last_and_pages_one_list(seed):
    a_ids = [f"a{i}" for i in range(8)] + [f"c{i}" for i in range(4)]
    b_ids = [f"c{i}" for i in range(4)] + [f"b{i}" for i in range(8)]
    whole = None
    for size in (2, 3, 5, 22):
        pages = []
        for page in range(1, -(-22 // size) + 1):
            n = page * size  # each profile's top page * size, as search_interleaved asks for
            a, b = _merchandised("A", a_ids), _merchandised("B", b_ids)
            a, b = replace(a, hits=a.hits[:n]), replace(b, hits=b.hits[:n])
            resp, teams = interleave_responses(a, b, seed=seed, req=SearchRequest("q", page=page, size=size),
                                               teams=("A", "B"))
            assert len(teams) == len(resp.hits) and set(teams) <= {"A", "B"}
            pages += [h.id for h in resp.hits]
        assert pages[2] == "p_pin" and pages[-1] == "p_bur" and len(set(pages)) == len(pages) == 22, size
        whole = whole or pages
        assert pages == whole, size


@pytest.mark.parametrize("seed", [f"s{i}" for i in range(20)])
def test_buried_products_page_as_one_list_when_a_profile_finds_few_others(seed):
    """Each profile ranks its buried products last; where one profile finds few others, they come within its top
    page * size, and drafted among the others they moved with the page's length (repeated on pages 2-4)."""
    marks = {"x1": {"buried": 1.0}, "x2": {"buried": 1.0}}
    full = {"A": ["a0", "a1", "a2", "x1", "x2"], "B": [f"b{i}" for i in range(8)] + ["x2", "x1"]}
    whole = None
    for size in (1, 2, 3, 13):
        pages = []
        for page in range(1, -(-13 // size) + 1):
            n = page * size
            a, b = (replace(_resp(t, full[t][:n]), hits=[replace(h, stages={**h.stages, **marks.get(h.id, {})})
                                                         for h in _resp(t, full[t][:n]).hits]) for t in "AB")
            resp, _ = interleave_responses(a, b, seed=seed, req=SearchRequest("q", page=page, size=size),
                                           teams=("A", "B"))
            pages += [h.id for h in resp.hits]
        assert len(pages) == len(set(pages)) == 13 and set(pages[-2:]) == {"x1", "x2"}, size
        whole = whole or pages
        assert pages == whole, size


def test_search_interleaved_runs_each_profile_once_down_to_the_page_served():
    rankings = {"A": [f"a{i}" for i in range(7)], "B": [f"b{i}" for i in range(7)]}
    calls = []

    def search(req: SearchRequest) -> SearchResponse:
        calls.append((req.profile, req.page, req.size))
        start = (req.page - 1) * req.size
        return _resp(req.profile, rankings[req.profile][start:start + req.size], req.page, req.size)

    resp, teams = search_interleaved(search, SearchRequest("q", page=2, size=3), seed="qid", profiles=("A", "B"))
    assert calls == [("A", 1, 6), ("B", 1, 6)]  # one search a profile, its stages run once
    assert len(resp.hits) == 3 and sorted(teams) in (["A", "A", "B"], ["A", "B", "B"])
    assert "interleave" in resp.timings_ms
    # A page deeper than one search may hold is fetched in searches of the size limit, the same list either way.
    calls.clear()
    deep, deep_teams = search_interleaved(search, SearchRequest("q", page=2, size=3), seed="qid", profiles=("A", "B"),
                                          max_size=4)
    assert calls == [("A", 1, 4), ("A", 2, 4), ("B", 1, 4), ("B", 2, 4)]
    assert [h.id for h in deep.hits] == [h.id for h in resp.hits] and deep_teams == teams
    calls.clear()
    search_interleaved(search, SearchRequest("q", page=5, size=3), seed="qid", profiles=("A", "B"), max_size=4)
    assert calls[:3] == [("A", 1, 4), ("A", 2, 4), ("B", 1, 4)]  # A's ranking ended at 7: no third search


def test_list_seed_is_one_per_result_list_not_per_page():
    req = SearchRequest("Desk  Lamp", size=4)
    seed = list_seed("il", "c1", req)
    # Every page, and the same words typed differently, continue one draw ...
    assert seed == list_seed("il", "c1", replace(req, page=3, query="desk lamp"))
    # ... while another client, experiment, filter or sort is another list.
    assert len({seed, list_seed("il", "c2", req), list_seed("other", "c1", req),
                list_seed("il", "c1", replace(req, filters=Filters(brand=("Acme",)))),
                list_seed("il", "c1", replace(req, sort="price_asc"))}) == 5
