"""Run queries through a searcher and keep each one's ranking: what ``shopsearch eval`` and ``compare`` score
(and what ``train bi-encoder`` mines negatives from). The engine I/O of evaluation; scoring is shopsearch/evaluation.py.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Iterable, Mapping, NamedTuple

RESULTS_DEPTH = 100  # results kept per query: deep enough for recall@100


class Rankings(NamedTuple):
    """The product ids each query got, best first, and how the searches went."""

    rankings: dict[str, list[str]]  # qid -> product ids, best first
    degraded: int  # searches served degraded (a rerank stage failed or ran over its budget)
    seconds: float  # wall time of the searches


def rank_queries(searcher: Any, queries: Mapping[str, str] | Iterable[tuple[str, str]], profile: str, *,
                 depth: int = RESULTS_DEPTH, desc: str | None = None, progress: bool = True) -> Rankings:
    """Search every query as GET /search would (page 1, ``depth`` results, no facets) with one profile.

    Args:
        searcher: anything with ``search(SearchRequest) -> SearchResponse``: a RankingPipeline (the served path,
            rerank stages included) or a HybridSearcher (retrieval only).
        queries: qid -> text, or (qid, text) pairs such as :class:`~shopsearch.judgments.Query` records.
        profile: the ranking profile name.
        depth: results kept per query.
        desc: the progress bar's label (default ``rank <profile>``).
        progress: show a tqdm bar on stderr.

    Returns:
        :class:`Rankings`: qid -> product ids in the order served, degraded searches, seconds.

    Raises:
        ValueError: ``depth`` below 1. Whatever the searcher raises (IndexNotFound, EngineUnavailable).

    >>> rank_queries(pipeline, {"q1": "red lamp"}, "bm25", progress=False).rankings  # doctest: +SKIP
    {'q1': ['p1', 'p2']}
    """
    from tqdm import tqdm

    from shopsearch.plugin.search_types import SearchRequest

    if depth < 1:
        raise ValueError(f"depth={depth!r} must be >= 1")
    items = list(queries.items()) if isinstance(queries, Mapping) else list(queries)
    rankings: dict[str, list[str]] = {}
    degraded = 0
    t0 = time.perf_counter()
    for qid, text in tqdm(items, desc=desc or f"rank {profile}", unit="q", disable=not progress, file=sys.stderr):
        resp = searcher.search(SearchRequest(text, size=depth, profile=profile, facets=()))
        rankings[qid] = [h.id for h in resp.hits]
        degraded += resp.degraded
    return Rankings(rankings, degraded, time.perf_counter() - t0)
