"""Typo tolerance: seeded one-typo queries, and nDCG@10 on clean vs typo queries per profile and engine (issue 14).

Each query gets exactly one typo, in one of its words of five or more letters (chosen at random): two adjacent
different letters swapped, a letter dropped, or a letter replaced by another. The generator is seeded, so the
typo file is the same on every machine; queries without such a word are kept as they are (and counted).

    python bench/typos.py make --queries ../shared/data/crowdflower/queries-dev.tsv --out /tmp/queries-dev-typos.tsv
    python bench/typos.py eval --index crowdflower --queries ../shared/data/crowdflower/queries-dev.tsv \
        --qrels ../shared/data/crowdflower/qrels-dev.txt --engine embedded --engine opensearch \
        --profile default --profile bm25 --profile dense

``eval`` writes the typo queries itself (same seed) and prints one row per profile and engine: nDCG@10 on the
clean queries, on the typo queries, the difference, and how many typo queries the speller changed. Every query
runs through the same path as ``shopsearch eval`` (RankingPipeline.search, page 1, 100 results).
"""

from __future__ import annotations

import argparse
import random
import re
import string
import sys
from typing import Sequence

from shopsearch.settings import DEFAULT_MODEL

SEED = 14  # the issue number; fixed so everyone gets the same typos
MIN_WORD_LETTERS = 5
KINDS = ("swap", "drop", "replace")
_WORD = re.compile(r"[A-Za-z]+")


def make_typo(query: str, rng: random.Random) -> str:
    """``query`` with one typo in one word of at least five letters, or unchanged when it has none.

    >>> make_typo("queen mattress", random.Random(1))
    'queen mattrss'
    """
    words = [m for m in _WORD.finditer(query) if len(m.group()) >= MIN_WORD_LETTERS]
    if not words:
        return query
    m = rng.choice(words)
    word = m.group()
    kind = rng.choice(KINDS)
    if kind == "swap":
        spots = [i for i in range(len(word) - 1) if word[i].lower() != word[i + 1].lower()]
        if not spots:
            kind = "drop"
        else:
            i = rng.choice(spots)
            typo = word[:i] + word[i + 1] + word[i] + word[i + 2:]
    if kind == "drop":
        i = rng.randrange(len(word))
        typo = word[:i] + word[i + 1:]
    elif kind == "replace":
        i = rng.randrange(len(word))
        letter = rng.choice([c for c in string.ascii_lowercase if c != word[i].lower()])
        typo = word[:i] + letter + word[i + 1:]
    return query[:m.start()] + typo + query[m.end():]


def typo_queries(queries: Sequence[tuple[str, str]], seed: int = SEED) -> list[tuple[str, str]]:
    """``(qid, query with one typo)`` for every query, in order, from one generator seeded with ``seed``."""
    rng = random.Random(seed)
    return [(qid, make_typo(text, rng)) for qid, text in queries]


def _read_tsv(path: str) -> list[tuple[str, str]]:
    from shopsearch.judgments import read_queries

    return [(q.qid, q.text) for q in read_queries(path)]


def _write_tsv(rows: Sequence[tuple[str, str]], path: str) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        fh.writelines(f"{qid}\t{text}\n" for qid, text in rows)


def _eval(args: argparse.Namespace) -> int:
    from shopsearch.api.ranking_runs import rank_queries
    from shopsearch.evaluation import evaluate
    from shopsearch.indexer.embedder import BiEncoder
    from shopsearch.judgments import read_qrels
    from shopsearch.plugin.engines import open_engine
    from shopsearch.plugin.hybrid import HybridSearcher
    from shopsearch.plugin.profiles import ProfileStore
    from shopsearch.plugin.search_types import SearchRequest
    from shopsearch.reranker.model_registry import ModelRegistry
    from shopsearch.reranker.pipeline import RankingPipeline
    from shopsearch.settings import load_settings

    clean = _read_tsv(args.queries)
    qrels = read_qrels(args.qrels)
    judged = {q.query_id for q in qrels}
    clean = [(qid, text) for qid, text in clean if qid in judged]
    typos = typo_queries(clean, args.seed)
    if args.out:
        _write_tsv(typos, args.out)
    changed = sum(a != b for (_, a), (_, b) in zip(clean, typos))
    print(f"{len(clean)} judged queries, {changed} with a typo (seed {args.seed})", file=sys.stderr)
    settings = load_settings()
    embedder = BiEncoder(args.model)
    rows = []
    for kind in args.engine:
        engine = open_engine(kind, settings=settings)
        try:
            searcher = HybridSearcher(engine, args.index, embedder, ProfileStore(settings=settings))
            pipeline = RankingPipeline(searcher, ModelRegistry())
            for profile in args.profile:
                scores = {}
                for label, qs in (("clean", clean), ("typo", typos)):
                    run = rank_queries(pipeline, qs, profile, desc=f"{kind} {profile} {label}", progress=False)
                    scores[label] = evaluate(qrels, run.rankings, [qid for qid, _ in qs]).metrics["ndcg@10"]
                corrected = sum(bool(searcher.search(SearchRequest(t, size=1, profile=profile, facets=())).correction)
                                for (_, t), (_, c) in zip(typos, clean) if t != c)
                rows.append((profile, kind, scores["clean"], scores["typo"], corrected))
        finally:
            engine.close()
    print("| profile | engine | nDCG@10 clean | nDCG@10 typo | typo - clean | typo queries the speller changed |")
    print("|---|---|---:|---:|---:|---:|")
    for profile, kind, c, t, n in rows:
        print(f"| {profile} | {kind} | {c:.4f} | {t:.4f} | {t - c:+.4f} | {n} / {changed} |")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``make``: write the typo queries TSV; ``eval``: the clean-vs-typo table. Returns the exit code."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])  # the first paragraph, whole
    sub = ap.add_subparsers(dest="command", required=True)
    mk = sub.add_parser("make", help="write the one-typo queries TSV")
    mk.add_argument("--queries", required=True, help="queries TSV: qid<TAB>text")
    mk.add_argument("--out", required=True, help="where to write the typo queries TSV")
    mk.add_argument("--seed", type=int, default=SEED, help=f"generator seed (default {SEED})")
    ev = sub.add_parser("eval", help="nDCG@10 on clean vs typo queries per profile and engine")
    ev.add_argument("--index", default="crowdflower")
    ev.add_argument("--queries", required=True)
    ev.add_argument("--qrels", required=True)
    ev.add_argument("--engine", action="append", choices=("embedded", "opensearch"), required=True)
    ev.add_argument("--profile", action="append", required=True)
    ev.add_argument("--model", default=DEFAULT_MODEL, help="query encoder (the index's bi-encoder)")
    ev.add_argument("--seed", type=int, default=SEED)
    ev.add_argument("--out", help="also write the typo queries TSV here")
    args = ap.parse_args(argv)
    if args.command == "make":
        rows = typo_queries(_read_tsv(args.queries), args.seed)
        _write_tsv(rows, args.out)
        print(f"wrote {len(rows)} queries to {args.out} (seed {args.seed})", file=sys.stderr)
        return 0
    return _eval(args)


if __name__ == "__main__":
    from _main import finish

    finish(main)
