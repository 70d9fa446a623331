"""Exploration: randomised adjacent swaps (FairPairs) on a share of served first pages, so the logs can separate
where a product was shown from how good it is.

A profile that serves a query the same list every time confounds position with relevance: the product at 8 is
never seen at 3, and neither a click model (reranker/click_models.py) nor the position-debiased ranker can tell
"not clicked" from "not looked at". FairPairs (Radlinski and Joachims, AAAI 2006) fixes that at the price of one
position: pick an offset o of 0 or 1, pair positions (1+o, 2+o), (3+o, 4+o), ... within the top ``depth``, and
swap each pair on a coin flip. Each product of a pair is then shown at the other's position half the time.

The profile's ``[explore]`` table (plugin/profiles.py) sets the share of served first pages that explore and the
depth. The API applies it after the whole pipeline, so ``eval``/``compare`` and training never see it. The query log
records the swaps (``query_attributes.explore``). The coin flips come from the query_id, as interleaving's do, so a
logged list can be rebuilt from the unexplored ranking.

    >>> fair_pairs(6, seed="q1", share=1.0)
    ((4, 5),)
    >>> swap(["a", "b", "c", "d"], ((1, 2),))
    ['b', 'a', 'c', 'd']
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Collection, Sequence, TypeVar

from shopsearch.plugin.merchandising import PINNED
from shopsearch.plugin.profiles import ExploreSettings
from shopsearch.plugin.search_types import SearchResponse

from .interleaving import seeded_rng

METHOD = "fairpairs"
X = TypeVar("X")


def fair_pairs(n: int, *, seed: str, share: float, fixed: Collection[int] = ()) -> tuple[tuple[int, int], ...] | None:
    """The 1-based position pairs to swap in a list of ``n``, or None when this list does not explore.

    Args:
        n: positions that may swap (the profile's depth, or fewer when the list is shorter).
        seed: the query_id (the same seed gives the same answer).
        share: the probability that a list explores at all.
        fixed: positions that never move (merchandising pins); a pair holding one is not swapped.

    Returns:
        None, or the swapped pairs (possibly none: every coin said "keep").

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
    pairs = []
    for first in range(1 + offset, n, 2):  # (first, first + 1) with first + 1 <= n
        flip = rng.random() < 0.5  # drawn for every pair, so a pin does not shift the later pairs' coins
        if flip and first not in fixed and first + 1 not in fixed:
            pairs.append((first, first + 1))
    return tuple(pairs)


def swap(items: Sequence[X], pairs: Sequence[tuple[int, int]]) -> list[X]:
    """``items`` with each 1-based pair of positions exchanged."""
    out = list(items)
    for a, b in pairs:
        out[a - 1], out[b - 1] = out[b - 1], out[a - 1]
    return out


def explore(resp: SearchResponse, settings: ExploreSettings, *, seed: str,
            sort: str = "relevance") -> tuple[SearchResponse, dict[str, Any] | None]:
    """The served page with the profile's exploration applied, and what the query log records of it.

    Only a first page in relevance order explores (a page 2 must continue the list page 1 showed, and a sort by
    price is the shopper's order, not the ranking's).

    Args:
        resp: the pipeline's page.
        settings: the profile's ``explore`` table.
        seed: the query_id.
        sort: the request's sort.

    Returns:
        ``(resp, None)`` when this page does not explore; otherwise the page with the swaps applied (each hit's
        ``rank`` is the position served; scores and stages are the ranking's) and ``{"method", "share", "depth",
        "swaps"}`` for the query log.
    """
    if settings.share == 0.0 or resp.page != 1 or sort != "relevance" or len(resp.hits) < 2:
        return resp, None
    n = min(settings.depth, len(resp.hits))
    pinned = {i + 1 for i, h in enumerate(resp.hits[:n]) if PINNED in h.stages}
    pairs = fair_pairs(n, seed=seed, share=settings.share, fixed=pinned)
    if pairs is None:
        return resp, None
    hits = [replace(h, rank=i + 1) for i, h in enumerate(swap(resp.hits, pairs))]
    return replace(resp, hits=hits), {"method": METHOD, "share": settings.share, "depth": settings.depth,
                                      "swaps": [list(p) for p in pairs]}
