"""Exploration: randomised adjacent swaps (FairPairs) on a share of served first pages, so the logs can separate
where a product was shown from how good it is.

A profile that serves a query the same list every time confounds position with relevance: the product at 8 is
never seen at 3, and neither a click model (reranker/click_models.py) nor the position-debiased ranker can tell
"not clicked" from "not looked at". FairPairs (Radlinski and Joachims, AAAI 2006) fixes that at the price of one
position: pick an offset o of 0 or 1, pair positions (1+o, 2+o), (3+o, 4+o), ... within the top ``depth``, and
swap each pair on a coin flip. Each product of a pair is then shown at the other's position half the time.

The profile's ``[explore]`` table (plugin/profiles.py) sets the share of served first pages that explore and the
depth. The API applies it after the whole pipeline, so ``eval``, ``compare``, explained searches and training from
judgments never see it; the logs record the order served, which is what ``judgments from-logs`` and ``train
ranker --logs`` learn from. The coin flips come from the query_id, as interleaving's do, so a logged list can be
rebuilt from the unexplored ranking.

    >>> fair_pairs(6, seed="q1", share=1.0)
    FairPairs(offset=1, formed=(2, 4), swapped=(4,))
    >>> swap(["a", "b", "c", "d"], (1,))
    ['b', 'a', 'c', 'd']
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Collection, NamedTuple, Sequence, TypeVar

from shopsearch.plugin.merchandising import BURIED, PINNED
from shopsearch.plugin.profiles import ExploreSettings
from shopsearch.plugin.search_types import SearchRequest, SearchResponse

from .interleaving import seeded_rng

METHOD = "fairpairs"
X = TypeVar("X")


class FairPairs(NamedTuple):
    """One list's draw: the offset, the first position of each pair formed, and of each pair swapped (1-based)."""

    offset: int
    formed: tuple[int, ...]
    swapped: tuple[int, ...]


def fair_pairs(n: int, *, seed: str, share: float, fixed: Collection[int] = ()) -> FairPairs | None:
    """The FairPairs draw for a list of ``n`` positions, or None when this list does not explore.

    Args:
        n: positions that may swap (the profile's depth, or fewer when the list is shorter).
        seed: the query_id (the same seed gives the same answer).
        share: the probability that a list explores at all.
        fixed: positions that never move (merchandising pins and buried products); a pair holding one is not
            formed.

    Returns:
        None, or the draw (possibly with nothing swapped: every coin said "keep").

    Raises:
        ValueError: share outside [0, 1].

    >>> fair_pairs(6, seed="q1", share=0.0) is None
    True
    """
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share must be in [0, 1]; got {share!r}")
    rng = seeded_rng(f"explore:{seed}")
    if share == 0.0 or rng.random() >= share:
        return None
    offset = rng.randrange(2)
    formed, swapped = [], []
    for first in range(1 + offset, n, 2):  # (first, first + 1) with first + 1 <= n
        flip = rng.random() < 0.5  # drawn for every pair, so a fixed position does not shift the later coins
        if first in fixed or first + 1 in fixed:
            continue
        formed.append(first)
        if flip:
            swapped.append(first)
    return FairPairs(offset, tuple(formed), tuple(swapped))


def swap(items: Sequence[X], swapped: Sequence[int]) -> list[X]:
    """``items`` with each 1-based position of ``swapped`` exchanged with the next one."""
    out = list(items)
    for first in swapped:
        out[first - 1], out[first] = out[first], out[first - 1]
    return out


def explore(resp: SearchResponse, settings: ExploreSettings, *, req: SearchRequest,
            seed: str) -> tuple[SearchResponse, dict[str, Any] | None]:
    """The served page with the profile's exploration applied, and what the query log records of it.

    Only a first page in relevance order, not explained, explores: a page 2 must continue the list page 1 showed,
    a sort by price is the shopper's order rather than the ranking's, and ``explain`` shows the ranking as the
    profile computes it (the relevance console compares profiles with it).

    Args:
        resp: the pipeline's page.
        settings: the profile's ``explore`` table.
        req: the request the page answers (its page, sort and explain).
        seed: the query_id.

    Returns:
        ``(resp, None)`` when this page does not explore; otherwise the page with the swaps applied (each hit's
        ``rank`` is the position served; scores and stages are the ranking's) and, for the query log, ``method``,
        ``share``, ``depth`` (the positions that could swap), ``offset``, ``pairs`` (the first position of each
        pair formed) and ``swapped`` (of each pair swapped).
    """
    if settings.share == 0.0 or req.page != 1 or req.sort != "relevance" or req.explain or len(resp.hits) < 2:
        return resp, None
    n = min(settings.depth, len(resp.hits))
    fixed = {i + 1 for i, h in enumerate(resp.hits[:n]) if PINNED in h.stages or BURIED in h.stages}
    draw = fair_pairs(n, seed=seed, share=settings.share, fixed=fixed)
    if draw is None:
        return resp, None
    hits = [replace(h, rank=i + 1) for i, h in enumerate(swap(resp.hits, draw.swapped))]
    return replace(resp, hits=hits), {"method": METHOD, "share": settings.share, "depth": n, "offset": draw.offset,
                                      "pairs": list(draw.formed), "swapped": list(draw.swapped)}
