"""``shopsearch eval``: run judged queries through the search path and report nDCG@10, Recall@100 and MRR@10."""

from __future__ import annotations

import argparse
import json
import sys

from shopsearch.api.cli_args import add_ranking_args

HELP = """\
Evaluate a ranking profile on an indexed catalog against relevance judgements.

Every query goes through the same RankingPipeline.search path as GET /search (page 1, 100 results,
no facets, no shopper context) with the chosen --profile: hybrid retrieval, then the profile's cross-encoder
and conversion stages, with their time budgets (a degraded search is scored as served, and counted; --no-budget
lets every stage finish, to measure a GPU profile's ranking on a CPU).
Models named by the profile are looked up in $SHOPSEARCH_MODELS (default $SHOPSEARCH_HOME/models), then
./models; a missing one stops the command before it runs (exit 2). Metrics (see shopsearch/evaluation.py):
nDCG@10 with graded gains, Recall@100 and MRR@10 where "relevant" means grade >= 1; unjudged products count as
not relevant, and Judged@10 says what share of each top 10 was judged; a judged query with no results scores 0.
Queries without judgements are skipped (and counted).

--json prints exactly one JSON object on stdout: {"ndcg@10", "recall@100", "mrr@10", "judged@10", "queries",
"degraded", "unjudged" (queries without judgements), "textless" (judged queries without a text)}
(plus "per_query": {qid: {metric: score}} with --per-query, and "judged_only": true with --judged-only).
Progress and the summary go to stderr.
Exit 1 when the index does not exist or the engine fails; 2 for bad arguments or input files.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``eval`` subcommand."""
    p = subparsers.add_parser("eval", help="evaluate a ranking profile against judgements", description=HELP,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--queries", required=True, help="queries TSV: qid<TAB>query text")
    p.add_argument("--qrels", required=True, help="TREC qrels: qid iteration doc_id grade")
    p.add_argument("--profile", default="default", help="ranking profile name (default: default)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--per-query", action="store_true", help="include every query's scores")
    p.add_argument("--judged-only", action="store_true",
                   help="score each ranking with its unjudged products taken out (trec_eval -J)")
    add_ranking_args(p)
    p.set_defaults(run=run)


def _table(report, per_query: bool) -> str:
    """The human-readable report: one row per metric, then per-query rows when asked."""
    lines = [f"{'metric':<12}{'mean':>8}"] + [f"{name:<12}{value:>8.4f}" for name, value in report.metrics.items()]
    if per_query:
        names = list(report.metrics)
        lines += ["", f"{'qid':<16}" + "".join(f"{n:>12}" for n in names)]
        for qid, scores in report.per_query.items():
            lines.append(f"{qid:<16}" + "".join(f"{scores[n]:>12.4f}" for n in names))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Run the eval command; returns the exit code."""
    from shopsearch.api.cmd_compare import warn_textless
    from shopsearch.api.ranking_runs import rank_profiles
    from shopsearch.evaluation import evaluate
    from shopsearch.judgments import read_qrels, read_queries

    queries = read_queries(args.queries)
    qrels = read_qrels(args.qrels)
    judged = {q.query_id for q in qrels}
    todo = [q for q in queries if q.qid in judged]
    if not todo:
        raise ValueError(f"queries: none of the {len(queries)} queries in {args.queries} has judgements "
                         f"in {args.qrels}")
    textless = warn_textless((q.query_id for q in qrels), {q.qid: q.text for q in queries}, args.qrels,
                             args.queries)
    ranked = rank_profiles(args, todo, [args.profile], "eval")
    if ranked is None:
        return 1
    rankings, degraded, seconds = ranked[args.profile]
    report = evaluate(qrels, rankings, [q.qid for q in queries], judged_only=args.judged_only)
    m = report.metrics
    summary = (f"eval {args.profile} on {args.engine}:{args.index}: {report.queries} queries "
               f"({len(report.unjudged)} unjudged skipped) in {seconds:.1f}s "
               f"({report.queries / max(seconds, 1e-9):.1f} q/s, {degraded} degraded); nDCG@10 {m['ndcg@10']:.4f}, "
               f"Recall@100 {m['recall@100']:.4f}, MRR@10 {m['mrr@10']:.4f}, Judged@10 {m['judged@10']:.4f}")
    if args.json:
        out: dict = {**report.metrics, "queries": report.queries, "degraded": degraded,
                     "unjudged": len(report.unjudged), "textless": textless,
                     **({"judged_only": True} if args.judged_only else {})}
        if args.per_query:
            out["per_query"] = report.per_query
        print(json.dumps(out))
        print(summary, file=sys.stderr)
    else:
        print(_table(report, args.per_query))
        print(summary)
    return 0
