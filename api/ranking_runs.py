"""Run queries through a searcher and keep each one's ranking: what ``shopsearch eval`` and ``compare`` score
(and what ``train bi-encoder`` mines negatives from). The engine I/O of evaluation; scoring is shopsearch/evaluation.py.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Iterable, Mapping, NamedTuple, Sequence

RESULTS_DEPTH = 100  # results kept per query: deep enough for recall@100


class Rankings(NamedTuple):
    """The product ids each query got, best first, and how the searches went."""

    rankings: dict[str, list[str]]  # qid -> product ids, best first
    degraded: int  # searches served degraded (a rerank stage failed or ran over its budget)
    seconds: float  # wall time of the searches


def rank_queries(searcher: Any, queries: Mapping[str, str] | Iterable[tuple[str, str]], profile: str, *,
                 depth: int = RESULTS_DEPTH, desc: str | None = None, progress: bool = True,
                 titles: dict[str, str] | None = None) -> Rankings:
    """Search every query as GET /search would (page 1, ``depth`` results, no facets) with one profile.

    Args:
        searcher: anything with ``search(SearchRequest) -> SearchResponse``: a RankingPipeline (the served path,
            rerank stages included) or a HybridSearcher (retrieval only).
        queries: qid -> text, or (qid, text) pairs such as :class:`~shopsearch.judgments.Query` records.
        profile: the ranking profile name.
        depth: results kept per query.
        desc: the progress bar's label (default ``rank <profile>``).
        progress: show a tqdm bar on stderr.
        titles: filled with product id -> title from the hits, when given.

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
        if titles is not None:
            titles.update((h.id, str(h.source.get("title", ""))) for h in resp.hits)
    return Rankings(rankings, degraded, time.perf_counter() - t0)


def rank_profiles(args: Any, queries: Mapping[str, str] | Iterable[tuple[str, str]], profiles: Sequence[str],
                  command: str, *,
                  depth: int = RESULTS_DEPTH, titles: dict[str, str] | None = None) -> dict[str, Rankings] | None:
    """Every query through each profile on the index and engine ``args`` name (``--index``, ``--engine``,
    ``--model``, ``--no-budget``, ``--no-progress``), as GET /search serves it: the RankingPipeline with the
    profiles' models and budgets. Warns when the index was embedded by another model than ``--model``.

    Returns:
        profile -> :class:`Rankings`; None when the index is missing or the engine fails (said on stderr, as
        ``shopsearch <command>: ...``).
    Raises:
        ValueError: an unknown profile or a model it needs is missing (checked before any search).
    """
    from shopsearch.api.cli_args import index_missing, open_engine_from_args, settings_from_args
    from shopsearch.indexer.embedder import BiEncoder
    from shopsearch.indexer.encoder_record import check_query_encoder
    from shopsearch.plugin.engine import EngineUnavailable, IndexNotFound
    from shopsearch.plugin.hybrid import HybridSearcher
    from shopsearch.plugin.merchandising import Merchandising
    from shopsearch.plugin.profiles import ProfileStore
    from shopsearch.reranker.model_registry import ModelRegistry, default_model_dirs
    from shopsearch.reranker.pipeline import RankingPipeline, check_models

    items = list(queries.items()) if isinstance(queries, Mapping) else list(queries)  # ranked once per profile
    # The command's settings for every part, as the API builds them: rules, synonyms and models from one place.
    settings = settings_from_args(args)
    store = ProfileStore(settings=settings)
    models = ModelRegistry(default_model_dirs(settings))
    for name in profiles:
        check_models(store, models, name)  # unknown profile or missing model: a clear error up front
    engine = open_engine_from_args(args)
    runs: dict[str, Rankings] = {}
    try:
        if index_missing(engine, args, command):
            return None
        encoder = BiEncoder(args.model)
        check_query_encoder(engine, args.index, encoder)
        # the configured rules and synonyms, as /search serves them; not the API's request limits (eval asks for
        # its depth in one request, whatever max_size a storefront is held to)
        searcher = HybridSearcher(engine, args.index, encoder, store,
                                  merchandising=Merchandising.from_settings(settings))
        pipeline = RankingPipeline(searcher, models, budgets=not args.no_budget)
        for name in dict.fromkeys(profiles):
            runs[name] = rank_queries(pipeline, items, name, depth=depth, desc=f"{command} {name}",
                                      progress=not args.no_progress, titles=titles)
    except (IndexNotFound, EngineUnavailable) as exc:
        print(f"shopsearch {command}: search failed: {exc}", file=sys.stderr)
        return None
    finally:
        engine.close()
    return runs
