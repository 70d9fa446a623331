"""Team-draft interleaving (Radlinski, Kurup and Joachims, CIKM 2008): two rankings merged into one list, each
position remembering which ranking ("team") contributed it, so clicks say which ranking shoppers prefer.

Each round, the team with fewer picks so far (a coin flip when even) adds its highest-ranked product not yet in
the list; a team whose ranking is used up stops picking. A click on a product credits its team; the query's
preference goes to the team with more credited clicks (a tie when equal, including no clicks). The coin flips
come from a generator seeded with sha256 of :func:`list_seed` (experiment, client, normalised query, filters,
sort), not of the request's query_id: every page of one result list is a slice of the same merged list, so page 2
never repeats or skips a product of page 1. The team of each served position is logged with the search, so clicks
are credited from what was served.

Merchandising holds in the merged list: pinned products (the same position in both rankings) stay out of the draft
and are put at their positions, each credited to a team by a coin flip of its own (so a pin favours neither
profile); buried products are drafted after all the others, so they stay last.

    >>> merged = team_draft(["a", "b", "c"], ["b", "d", "a"], seed="q1", teams=("A", "B"))
    >>> sorted(merged.ids) == ["a", "b", "c", "d"] and len(merged.teams) == 4
    True
    >>> preference(merged.ids, merged.teams, clicked=[merged.ids[0]]) == merged.teams[0]
    True
"""

from __future__ import annotations

import hashlib
import random
import time
from collections import Counter
from dataclasses import replace
from typing import Callable, Iterable, NamedTuple, Sequence

from shopsearch.plugin.merchandising import BURIED, PINNED, arrange
from shopsearch.plugin.search_types import SearchRequest, SearchResponse
from shopsearch.settings import Settings
from shopsearch.text import normalise_query


class Interleaved(NamedTuple):
    """A merged list: product ids in order and, position by position, the team that contributed each."""

    ids: tuple[str, ...]
    teams: tuple[str, ...]


def seeded_rng(seed: str) -> random.Random:
    """A generator seeded by sha256 of ``seed`` (stable across processes, unlike ``hash``)."""
    return random.Random(int.from_bytes(hashlib.sha256(seed.encode("utf-8")).digest()[:8], "big"))


def list_seed(experiment: str, client_id: str, req: SearchRequest) -> str:
    """The coin flips' seed of one client's result list: hex sha256 of the experiment, the client and what defines
    the list (normalised query text, filters, sort), but not the page, so every page continues the same draw.

    >>> first, second = SearchRequest("Lamp "), SearchRequest("lamp", page=2)
    >>> list_seed("x", "c1", first) == list_seed("x", "c1", second) != list_seed("x", "c2", first)
    True
    """
    parts = (experiment, client_id, normalise_query(req.query), repr(req.filters), req.sort)
    return hashlib.sha256("\x00".join(parts).encode("utf-8")).hexdigest()


def team_draft(a: Sequence[str], b: Sequence[str], *, seed: str, teams: tuple[str, str] = ("a", "b"),
               length: int | None = None) -> Interleaved:
    """Team-draft interleave rankings ``a`` and ``b``.

    Args:
        a, b: product ids, best first (duplicates within one list are ignored after the first).
        seed: the coin flips' seed (:func:`list_seed`): the same seed gives the same list.
        teams: the labels recorded for a's and b's picks.
        length: stop after this many products (default: when both rankings are used up).

    Returns:
        The Interleaved list: every product of either ranking at most once, the teams' pick counts never more than
        one apart while both rankings have products left.

    Raises:
        ValueError: ``length`` < 0, or the two team labels are equal.

    >>> team_draft(["x"], [], seed="s")
    Interleaved(ids=('x',), teams=('a',))
    """
    if length is not None and length < 0:
        raise ValueError(f"length must be >= 0 or None; got {length!r}")
    if teams[0] == teams[1]:
        raise ValueError(f"teams must be two different labels; got {teams!r}")
    rng = seeded_rng(seed)
    lists, cursors, picks = (list(a), list(b)), [0, 0], [0, 0]
    ids: list[str] = []
    teams_out: list[str] = []
    seen: set[str] = set()
    limit = len(set(a) | set(b)) if length is None else length
    while len(ids) < limit:
        for side in (0, 1):  # skip what the other team already placed
            while cursors[side] < len(lists[side]) and lists[side][cursors[side]] in seen:
                cursors[side] += 1
        left = [cursors[side] < len(lists[side]) for side in (0, 1)]
        if not any(left):
            break
        if all(left):
            side = 0 if picks[0] < picks[1] or (picks[0] == picks[1] and rng.random() < 0.5) else 1
        else:
            side = 0 if left[0] else 1
        pid = lists[side][cursors[side]]
        ids.append(pid)
        teams_out.append(teams[side])
        seen.add(pid)
        picks[side] += 1
    return Interleaved(tuple(ids), tuple(teams_out))


def credit(ids: Sequence[str], teams: Sequence[str], clicked: Iterable[str]) -> Counter[str]:
    """Clicks credited per team: each click on a product of the list credits the team that placed it.

    Clicks on products not in the list are ignored; a product clicked twice counts twice.

    >>> credit(["p1", "p2"], ["a", "b"], ["p2", "p2", "p9"])
    Counter({'b': 2})
    """
    team_of = dict(zip(ids, teams))
    return Counter(team_of[pid] for pid in clicked if pid in team_of)


def preference(ids: Sequence[str], teams: Sequence[str], clicked: Iterable[str]) -> str | None:
    """The team with more credited clicks on this list, or None for a tie (no clicks included).

    >>> preference(["p1", "p2"], ["a", "b"], ["p1"]), preference(["p1", "p2"], ["a", "b"], [])
    ('a', None)
    """
    counts = credit(ids, teams, clicked).most_common()
    if not counts or (len(counts) > 1 and counts[0][1] == counts[1][1]):
        return None
    return counts[0][0]


def interleave_responses(first: SearchResponse, second: SearchResponse, *, seed: str, req: SearchRequest,
                         teams: tuple[str, str]) -> tuple[SearchResponse, tuple[str, ...]]:
    """The page ``req`` asks for, of the team-draft interleaving of two profiles' rankings.

    Args:
        first, second: each profile's top ``req.page * req.size`` (hits best first; facets from ``first``).
        seed: the coin flips' seed (:func:`list_seed`; the same for every page of one list).
        req: the page and size served.
        teams: the two profiles' names, recorded per position.

    Returns:
        The response (hits keep their own profile's score and stages; ``rank`` is the interleaved position;
        profile ``"A+B"``) and the team of each served hit.
    """
    # A product in both rankings is served as the team that placed it scored it (its score and stages).
    hits_of = {team: {h.id: h for h in resp.hits} for team, resp in zip(teams, (first, second))}
    both = [*first.hits, *second.hits]
    pins = {h.id: int(h.stages[PINNED]) for h in both if PINNED in h.stages}
    buried = {h.id for h in both if BURIED in h.stages}
    length = req.page * req.size
    # Pins and buried products stay out of the draft, so the draft's prefix (and with the pins put back and the
    # buried drafted after it, every page) is one list: a buried product drafted among the others would move
    # with the page's length.
    merged = team_draft([h.id for h in first.hits if h.id not in pins and h.id not in buried],
                        [h.id for h in second.hits if h.id not in pins and h.id not in buried],
                        seed=seed, teams=teams, length=length)
    last = team_draft([h.id for h in first.hits if h.id in buried and h.id not in pins],
                      [h.id for h in second.hits if h.id in buried and h.id not in pins],
                      seed=f"{seed}\x00buried", teams=teams, length=max(0, length - len(merged.ids)))
    picked = [*zip(merged.ids, merged.teams), *zip(last.ids, last.teams),
              *((pid, teams[seeded_rng(f"{seed}\x00pin\x00{pid}").random() >= 0.5]) for pid in pins)]
    placed = arrange(picked, lambda pair: pair[0], pins, None, buried)[:length]
    start = (req.page - 1) * req.size
    served = placed[start:]
    other = dict(zip(teams, reversed(teams)))  # a pin's coin may name a team whose ranking lacks it
    hits = [replace(hits_of[team].get(pid) or hits_of[other[team]][pid], rank=start + i + 1)
            for i, (pid, team) in enumerate(served)]
    timings = {k: round(first.timings_ms.get(k, 0.0) + second.timings_ms.get(k, 0.0), 3)
               for k in dict.fromkeys([*first.timings_ms, *second.timings_ms])}
    resp = SearchResponse(query=first.query, profile="+".join(teams), page=req.page, size=req.size,
                          total=max(first.total, second.total), hits=hits, facets=first.facets, timings_ms=timings,
                          degraded=first.degraded or second.degraded,
                          notes=tuple(dict.fromkeys([*first.notes, *second.notes])),
                          degraded_reasons=tuple(dict.fromkeys([*first.degraded_reasons, *second.degraded_reasons])),
                          correction=first.correction, did_you_mean=first.did_you_mean, relaxed=first.relaxed,
                          rules_applied=first.rules_applied, redirect=first.redirect)
    return resp, tuple(team for _, team in served)


def search_interleaved(search: Callable[[SearchRequest], SearchResponse], req: SearchRequest, *, seed: str,
                       profiles: tuple[str, str], max_size: int = Settings.model_fields["max_size"].default
                       ) -> tuple[SearchResponse, tuple[str, ...]]:
    """Run ``req`` under both ``profiles`` and serve their team-draft interleaving (see :func:`interleave_responses`).

    Args:
        search: one ranked page for a request (``RankingPipeline.search`` with the shopper's context bound).
        req: the shopper's request (its profile is replaced by each of ``profiles``).
        seed: the coin flips' seed (:func:`list_seed`; the same for every page of one list).
        profiles: baseline and candidate.
        max_size: the most hits ``search`` serves in one page (the settings' ``max_size``).

    Returns:
        The interleaved page and each served hit's team (profile name); ``timings_ms`` adds ``interleave``.

    Raises:
        Whatever ``search`` raises (a bad parameter, an unknown profile, an engine outage).
    """
    t0 = time.perf_counter()
    ranked = [_top(search, replace(req, profile=p), max_size) for p in profiles]
    resp, teams = interleave_responses(ranked[0], ranked[1], seed=seed, req=req, teams=profiles)
    timings = {**resp.timings_ms, "interleave": round((time.perf_counter() - t0) * 1000.0, 3)}
    return replace(resp, timings_ms=timings), teams


def _top(search: Callable[[SearchRequest], SearchResponse], req: SearchRequest, max_size: int) -> SearchResponse:
    """A profile's top ``page * size`` as one response, in as few searches as ``max_size`` allows.

    Every page slices one ranking, so one search down to the page serves what pages 1..page would, and runs the
    profile's stages once rather than once a page (again per ``max_size`` chunk that starts inside a stage's
    head deeper than ``max_size``).
    """
    want = req.page * req.size
    step = max(1, min(want, max_size))
    first = search(replace(req, page=1, size=step))
    hits = list(first.hits)
    for page in range(2, -(-want // step) + 1):
        if len(hits) < (page - 1) * step:
            break  # the ranking ended
        hits.extend(search(replace(req, page=page, size=step, facets=())).hits)
    return replace(first, hits=hits[:want], page=1, size=want)
