"""Candidate mining for the trainers: run a data folder's training queries through an index with a profile.

``shopsearch train bi-encoder`` and ``train cross-encoder`` draw hard negatives from what the search returns
(reranker/hard_negatives.py); this is their engine I/O.
"""

from __future__ import annotations

import argparse
import sys
from typing import Mapping


def mine_candidates(args: argparse.Namespace, index: str, queries: Mapping[str, str], profile: str, depth: int,
                    command: str, catalog: str) -> dict[str, list[str]] | None:
    """qid -> the top ``depth`` product ids of ``index`` (engine from ``args``, query encoder ``args.model``).

    Returns None, after saying why on stderr, when the index is missing or the engine fails.
    """
    from shopsearch.api.cli_args import index_missing, open_engine_from_args, settings_from_args
    from shopsearch.api.ranking_runs import rank_queries
    from shopsearch.indexer.embedder import BiEncoder
    from shopsearch.indexer.encoder_record import check_query_encoder
    from shopsearch.plugin.engine import EngineUnavailable, IndexNotFound
    from shopsearch.plugin.hybrid import HybridSearcher
    from shopsearch.plugin.merchandising import Merchandising
    from shopsearch.plugin.profiles import ProfileStore

    settings = settings_from_args(args)
    profiles = ProfileStore(settings=settings)
    name = profiles.get(profile).name
    engine = open_engine_from_args(args)
    try:
        if index_missing(engine, argparse.Namespace(**{**vars(args), "index": index}), command, catalog=catalog):
            return None
        encoder = BiEncoder(args.model)
        check_query_encoder(engine, index, encoder)  # warns, as eval does: another model finds other negatives
        searcher = HybridSearcher(engine, index, encoder, profiles,  # the rules as served, not the API's limits
                                  merchandising=Merchandising.from_settings(settings))
        return rank_queries(searcher, sorted(queries.items()), name, depth=min(max(depth, 1), 100),
                            desc=f"mine {index}", progress=not getattr(args, "no_progress", False)).rankings
    except (IndexNotFound, EngineUnavailable) as exc:
        print(f"shopsearch {command}: search failed: {exc}", file=sys.stderr)
        return None
    finally:
        engine.close()
