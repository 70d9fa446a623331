"""What the per-field BM25 features cost on OpenSearch: the retrieval legs of one search, as a profile with a ranker
stage sends them (the BM25 leg asks for ``field_scores``: a ``_search`` of its own, sent beside the k-NN leg's
``_msearch``, whose hits' named clauses OpenSearch scores again), next to the same legs as ``default`` sends them
(one ``_msearch``), alternating per query on the real node.

    python bench/field_scores.py [--index crowdflower] [--queries PATH] [--repeat 3] [--profile ltr]

Prints p50 / p95 / p99 wall milliseconds of ``OpenSearchEngine.search`` (sources not fetched, as the searcher
does) for each, and the paired difference per query.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

from _latency_stats import summarise
from tqdm import tqdm

from shopsearch.indexer.embedder import BiEncoder
from shopsearch.judgments import read_queries
from shopsearch.plugin.engine import BM25Leg, Filters
from shopsearch.plugin.hybrid import HybridSearcher
from shopsearch.plugin.opensearch_engine import OpenSearchEngine
from shopsearch.settings import load_settings

REPO = Path(__file__).resolve().parents[1]
DEFAULT_QUERIES = Path(load_settings().data_dir or REPO.parent / "shared" / "data") / "crowdflower" / "queries-dev.tsv"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])  # the first paragraph, whole
    ap.add_argument("--index", default="crowdflower", help="index or alias on the node (default crowdflower)")
    ap.add_argument("--queries", default=str(DEFAULT_QUERIES), help="qid<TAB>query file (default crowdflower dev)")
    ap.add_argument("--profile", default="ltr", help="a profile with a ranker stage (default ltr)")
    ap.add_argument("--repeat", type=int, default=3, help="passes over the queries (default 3)")
    args = ap.parse_args(argv)
    encoder = BiEncoder()
    engine = OpenSearchEngine(url=load_settings().opensearch_url)
    try:
        return run(args, engine, encoder)
    finally:
        engine.close()


def run(args: argparse.Namespace, engine: OpenSearchEngine, encoder: BiEncoder) -> int:
    searcher = HybridSearcher(engine, args.index, encoder)
    profile = searcher.profiles.get(args.profile)
    if not profile.conversion.depth:
        sys.exit(f"profile {args.profile!r} has no ranker stage: its BM25 leg asks for no field scores")
    queries = [q.text for q in read_queries(args.queries)]
    vectors = encoder.encode(queries)
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    times: dict[bool, list[float]] = {False: [], True: []}
    paired = []
    for rep in range(args.repeat):
        for i, (text, vec) in enumerate(tqdm(list(zip(queries, vectors)), desc=f"pass {rep + 1}")):
            legs = list(searcher.legs_for(profile, text, vec, Filters()).values())
            took = {}
            for asked in ((False, True) if (i + rep) % 2 == 0 else (True, False)):
                send = [replace(leg, field_scores=asked) if isinstance(leg, BM25Leg) else leg for leg in legs]
                t = time.perf_counter()
                engine.search(args.index, send, with_source=False)
                took[asked] = (time.perf_counter() - t) * 1000
                times[asked].append(took[asked])
            paired.append(took[True] - took[False])
    print(f"load average at end: {os.getloadavg()[0]:.2f}\n")
    print("| retrieval legs of one search, ms | n | p50 | p95 | p99 |")
    print("|---|---:|---:|---:|---:|")
    for label, values in (("one _msearch (default)", times[False]),
                          (f"+ per-field BM25 ({args.profile}: BM25 leg as its own _search)", times[True]),
                          ("paired difference per query", paired)):
        s = summarise(values)
        print(f"| {label} | {s['n']} | {s['p50']:.2f} | {s['p95']:.2f} | {s['p99']:.2f} |")
    print(f"\nfield_scores: {len(queries)} queries x {args.repeat} passes on {args.index}")
    return 0


if __name__ == "__main__":
    from _main import finish

    finish(main)
