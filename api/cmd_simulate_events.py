"""``shopsearch simulate-events``: SIMULATED impression/click/add_to_cart/purchase logs from graded judgements."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``simulate-events`` subcommand."""
    p = subparsers.add_parser(
        "simulate-events", help="simulate click/purchase logs (JSONL) from relevance judgements",
        description="Simulate shopper sessions over judged queries (position-biased clicks, price/rating/"
                    "affinity-driven add-to-cart and purchase). Output is SIMULATED; see docs/simulator.md.")
    p.add_argument("--data", required=True, help="data folder with products.jsonl, queries-dev.tsv, qrels-dev.txt")
    p.add_argument("--out", required=True, help="events JSONL file to write (replaced)")
    p.add_argument("--sessions", type=int, default=2000, help="number of sessions (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="random seed; same seed -> identical file (default 0)")
    p.add_argument("--users", type=int, default=200, help="number of simulated users (default 200)")
    p.add_argument("--ranking", help="run file giving the shown order (TREC 'qid Q0 pid rank score tag' or "
                                     "'qid pid score'); default: noisy lexical order of the judged pool")
    p.add_argument("--order", choices=("lexical", "random"), default="lexical",
                   help="shown order without --ranking: noisy lexical (default) or uniformly random")
    p.add_argument("--page-size", type=int, default=10, help="results shown per session (default 10)")
    p.add_argument("--eta", type=float, default=1.0, help="examination exponent, P(examine r) = 1/r^eta")
    p.add_argument("--exclude-queries", metavar="TSV", help="queries (qid<TAB>text) to leave out, e.g. a "
                   "cross-encoder's heldout-queries-NAME.tsv, so models trained on these events never see them")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Simulate and write the events; prints a one-line summary. Returns 0."""
    import time

    from shopsearch.events import write_events
    from shopsearch.reranker.sim_catalog import load_judged
    from shopsearch.reranker.simulate import SimParams, SimSummary, read_ranking, simulate, summarize

    params = SimParams(sessions=args.sessions, users=args.users, seed=args.seed, page_size=args.page_size, order=args.order,
                       eta=args.eta)
    t0 = time.perf_counter()
    data = load_judged(args.data)
    if args.exclude_queries:
        from shopsearch.judgments import read_queries

        data = data.without({q.qid for q in read_queries(args.exclude_queries)})
    ranking = read_ranking(args.ranking) if args.ranking else None
    summary = SimSummary()

    def stream():
        for _, events in simulate(data, params, ranking, progress=True):
            summarize(events, summary)
            yield from events

    n = write_events(args.out, stream())
    dt = time.perf_counter() - t0
    print(f"wrote {n} events to {args.out}: {summary.line()}; {dt:.1f}s, {summary.sessions / max(dt, 1e-9):.0f} "
          f"sessions/s")
    return 0
