"""``shopsearch compare``: two ranking profiles on the same judged queries, side by side, with significance."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Iterable, Mapping

from shopsearch.api.cli_args import add_ranking_args, add_report_args, write_reports
from shopsearch.judgments import FORMATS, Qrel, query_id_for, read_judgments, read_queries

HELP = """\
Compare ranking profile B against baseline profile A on one index and one judgment list.

Both profiles run every judged query through the same RankingPipeline.search path as GET /search and
`shopsearch eval` (page 1, 100 results, no facets; rerank stages with their budgets) and are scored by
shopsearch/evaluation.py. Reported per metric: A, B, the delta, wins / losses / ties over queries, and paired
significance (t-test and a seeded sign-flip randomisation test, random_seed 42; --stat-test picks which marks
a delta with †). A judged query with no results scores 0. judged@10, the share of each top 10 that was
judged, is shown beside them: unjudged products count as not relevant, so read a delta in nDCG@10 or MRR@10
together with the two profiles' judged@10, or score judged products only with --judged-only.

Judgments: TREC qrels, CSV (query,product_id,grade), Amazon ESCI, WANDS or a Quepid export (auto-detected;
--format overrides; see shopsearch/judgments.py for the grade mappings). --queries (qid<TAB>text) is needed for TREC
qrels; the other formats carry their query text (a --queries file, when given, still selects the queries).

--json prints one JSON object (the whole report); --html / --markdown write the reports.
Exit 1 when the index does not exist or the engine fails; 2 for bad arguments or input files.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``compare`` subcommand."""
    p = subparsers.add_parser("compare", help="compare two ranking profiles on judged queries", description=HELP,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("profile_a", metavar="PROFILE_A", help="baseline profile")
    p.add_argument("profile_b", metavar="PROFILE_B", help="candidate profile")
    add_judgment_args(p)
    p.add_argument("--metrics", default="ndcg@10,recall@100,mrr@10,judged@10",
                   help="comma-separated (default: all four)")
    p.add_argument("--stat-test", choices=("randomization", "ttest"), default="randomization",
                   help="which test marks significance (both are reported; default randomization)")
    p.add_argument("--alpha", type=float, default=0.05,
                   help="significance level; the intervals are at 1 - alpha (default 0.05: 95%%)")
    p.add_argument("--permutations", type=int, default=10_000, help="randomisation test permutations")
    p.add_argument("--seed", type=int, default=42, help="randomisation test seed (default 42)")
    p.add_argument("--top", type=int, default=10, help="biggest wins/losses listed per metric")
    p.add_argument("--judged-only", action="store_true",
                   help="score each ranking with its unjudged products taken out (trec_eval -J): how the two "
                        "order what the judges saw")
    add_report_args(p)
    add_ranking_args(p)
    p.set_defaults(run=run)


def add_judgment_args(p: argparse.ArgumentParser) -> None:
    """``--qrels``, ``--queries``, ``--format`` and ``--wands-queries``: what :func:`load_judged_queries` reads."""
    p.add_argument("--qrels", required=True, help="judgment list (TREC, CSV, ESCI, WANDS or Quepid)")
    p.add_argument("--queries", help="queries TSV: qid<TAB>query text (required for TREC qrels)")
    p.add_argument("--format", choices=FORMATS, help="judgment format (default: detected from the file)")
    p.add_argument("--wands-queries", help="WANDS query file (default: query.csv beside --qrels)")


def warn_textless(judged: Iterable[str], texts: Mapping[str, str], qrels_path: str, queries_path: str) -> int:
    """Say on stderr how many judged queries have no text in the queries file (they cannot be run, so they are
    left out of every mean); returns that number."""
    missing = [q for q in dict.fromkeys(judged) if q not in texts]
    if missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        print(f"warning: {len(missing)} judged queries of {qrels_path} have no text in {queries_path} and are "
              f"left out ({shown})", file=sys.stderr)
    return len(missing)


def load_judged_queries(qrels_path: str, fmt: str | None, queries_path: str | None,
                        wands_queries: str | None = None) -> tuple[list[Qrel], dict[str, str]]:
    """The judgments and the (qid -> text) queries to run, judged ones only (judged queries without text are
    named on stderr: :func:`warn_textless`).

    Raises:
        ValueError: TREC qrels without a --queries file, or no judged query to run.
    """
    judgments = read_judgments(qrels_path, fmt, queries_path=wands_queries)
    if queries_path:
        texts = {q.qid: q.text for q in read_queries(queries_path)}
        if judgments.queries:  # CSV and Quepid key a query by its text's id: the file selects by either
            by_text = {query_id_for(text): qid for qid, text in texts.items()}
            texts = {qid: text for qid, text in judgments.queries.items() if qid in texts or qid in by_text}
    elif judgments.queries:
        texts = dict(judgments.queries)
    else:
        raise ValueError(f"queries: {judgments.format} judgments in {qrels_path} carry no query text; "
                         f"pass --queries qid<TAB>text")
    judged = set(judgments.query_ids)
    todo = {qid: text for qid, text in texts.items() if qid in judged}
    if not todo:
        raise ValueError(f"queries: none of the {len(texts)} queries has judgements in {qrels_path}")
    warn_textless(judgments.query_ids, texts, qrels_path, queries_path or qrels_path)
    if len(todo) < len(texts):
        print(f"{len(texts) - len(todo)} queries of {queries_path or qrels_path} have no judgments in {qrels_path}: "
              f"not run", file=sys.stderr)
    return list(judgments.qrels), todo


def run(args: argparse.Namespace) -> int:
    """Run the compare command; returns the exit code."""
    from shopsearch.api.compare import compare, parse_metrics
    from shopsearch.api.ranking_runs import rank_profiles
    from shopsearch.api.report import render_html, render_markdown

    metrics = parse_metrics(args.metrics)
    if args.top < 1:
        raise ValueError(f"top must be >= 1, got {args.top}")
    qrels, todo = load_judged_queries(args.qrels, args.format, args.queries, args.wands_queries)
    ranked = rank_profiles(args, todo, (args.profile_a, args.profile_b), "compare")
    if ranked is None:
        return 1
    runs = {name: r.rankings for name, r in ranked.items()}
    seconds = sum(r.seconds for r in ranked.values())
    degraded = sum(r.degraded for r in ranked.values())
    report = compare(qrels, runs[args.profile_a], runs[args.profile_b], names=(args.profile_a, args.profile_b),
                     metrics=metrics, qids=list(todo), queries=todo, stat_test=args.stat_test, alpha=args.alpha,
                     permutations=args.permutations, random_seed=args.seed, judged_only=args.judged_only)
    write_reports(args, lambda: render_html(report, top=args.top),
                  lambda: render_markdown(report, top=min(args.top, 5)))
    searches = len(todo) * len(runs)
    summary = (f"compare {args.profile_a} -> {args.profile_b} on {args.engine}:{args.index}: {report.queries} queries, "
               f"{searches} searches in {seconds:.1f}s ({searches / max(seconds, 1e-9):.1f} q/s, {degraded} degraded); "
               + ", ".join(
                   f"{m.name} {m.mean_a:.4f} -> {m.mean_b:.4f}{'†' if m.significant else ''}"
                   for m in report.metrics.values()))
    if args.json:
        print(json.dumps(report.to_dict()))
        print(summary, file=sys.stderr)
    else:
        print(render_markdown(report, top=min(args.top, 5)))
        print(summary)
    return 0
