"""``shopsearch judgments``: ``from-logs``, graded TREC qrels from the UBI query and click logs through a click
model; ``merge``, one TREC qrels file from a judgment list and the grades added to it (the console's CSV, say);
``pool``, a worklist of the unjudged products ranking profiles show in their top k (:mod:`.judgment_pool`).

``from-logs`` writes three files: the qrels (``qid 0 doc_id grade``, what ``eval`` and ``compare`` read), the queries
(``qid<TAB>normalised query``; qids from :func:`shopsearch.judgments.query_id_for`) and the evidence behind each
grade (TSV: qid, query, doc_id, grade, estimate, stderr, impressions, clicks; grouped by query, best first).
The models and the grade scale: :mod:`shopsearch.reranker.click_models`.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from shopsearch.api.cli_args import add_command_group, add_ranking_args, add_ubi_args, open_ubi_store_from_args
from shopsearch.api.cmd_compare import add_judgment_args, load_judged_queries
from shopsearch.api.ranking_runs import RESULTS_DEPTH
from shopsearch.atomic_write import write_atomically
# already loaded by cmd_compare's arguments
from shopsearch.judgments import (Qrel, Query, as_text_cell, qrels_field, query_id_for, query_ids_by_text,
                                  query_texts, read_judgments, write_qrels, write_queries)
from shopsearch.reranker.click_models import MODELS  # numpy only: --help stays fast

EVIDENCE_COLUMNS = ("qid", "query", "doc_id", "grade", "estimate", "stderr", "impressions", "clicks",
                    "examinations")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``judgments`` and its ``from-logs``, ``merge`` and ``pool`` actions."""
    actions = add_command_group(subparsers, "judgments", "action",
                                help="judgments from behaviour (graded qrels from click logs) and merged lists",
                                description="Relevance judgments from shopper behaviour, and judgment lists merged.")
    f = actions.add_parser(
        "from-logs", help="graded TREC qrels from the UBI logs through a click model",
        description="Fit a click model (COEC, PBM or DBN) to the logged first-page result lists and their clicks, "
                    "grade every (query, product) pair shown at least --min-impressions times 0..3, and write "
                    "TREC qrels, the queries file and the evidence behind each grade.")
    f.add_argument("--model", choices=MODELS, required=True,
                   help="clicks over expected clicks, position-based model or dynamic Bayesian network")
    f.add_argument("--out", required=True, help="TREC qrels file to write (replaced)")
    f.add_argument("--queries-out", help="queries TSV (qid<TAB>text) to write (default: <out stem>-queries.tsv)")
    f.add_argument("--evidence-out", help="per-pair evidence TSV to write (default: <out stem>-evidence.tsv)")
    f.add_argument("--min-impressions", type=int, default=10,
                   help="pairs shown fewer times are left out (default 10)")
    f.add_argument("--iterations", type=int, default=100, help="most EM iterations for pbm/dbn (default 100)")
    add_ubi_args(f)
    f.set_defaults(run=run_from_logs)
    m = actions.add_parser(
        "merge", help="one TREC qrels file from a judgment list and the grades added to it",
        description="Read a judgment list (TREC qrels with --queries, or a file that carries its query text: CSV, "
                    "ESCI, Quepid; the format is detected) and the lists of grades added to it (the relevance "
                    "console's CSV download, say). An added grade goes to the query with the same normalised text, "
                    "or to a new query; it replaces an earlier grade of the same product. Writes TREC qrels and the "
                    "queries TSV that eval and compare read.")
    m.add_argument("base", help="the judgment list the grades go into")
    m.add_argument("added", nargs="+", help="lists of grades carrying their query text (CSV, ESCI, ...)")
    m.add_argument("--queries", help="the base's queries TSV (qid<TAB>text); needed for TREC qrels")
    m.add_argument("--out", required=True, help="TREC qrels file to write (replaced)")
    m.add_argument("--queries-out", help="queries TSV to write (default: <out stem>-queries.tsv)")
    m.set_defaults(run=run_merge)
    p = actions.add_parser(
        "pool", help="a worklist of the unjudged products that profiles show in their top k",
        description="Run every judged query through each profile (the served path, as compare does) and list the "
                    "products in any profile's top --depth that the judgment list does not grade: a metric counts "
                    "them as not relevant, so grade them before trusting a delta. Writes a Quepid-style CSV "
                    "(Query Text, Doc ID, Title, Rating, Best Rank, Shown By, Console): fill in Rating (unrated "
                    "rows are skipped) or grade in each row's console link, then `judgments merge` the grades into "
                    "the list and evaluate with the merged list.")
    p.add_argument("profiles", nargs="+", metavar="PROFILE", help="ranking profiles to pool")
    add_judgment_args(p)
    p.add_argument("--depth", type=int, default=10, help="top k of each ranking pooled (default 10, as nDCG@10)")
    p.add_argument("--out", required=True, help="worklist CSV to write (replaced)")
    p.add_argument("--console-url", default="http://127.0.0.1:8000",
                   help="the API serving the console, for the worklist's links (default http://127.0.0.1:8000)")
    add_ranking_args(p)
    p.set_defaults(run=run_pool)


def run_from_logs(args: argparse.Namespace) -> int:
    """Read the logs, fit, grade and write the three files; prints a summary. Returns 0 (1 when no pair has
    enough impressions)."""
    import sys

    from shopsearch.reranker.click_models import fit_click_model, grade_pairs, serp_sessions

    if args.min_impressions < 1:
        raise ValueError(f"--min-impressions must be >= 1; got {args.min_impressions}")
    out = Path(args.out)
    queries_out = Path(args.queries_out or out.with_name(f"{out.stem}-queries.tsv"))
    evidence_out = Path(args.evidence_out or out.with_name(f"{out.stem}-evidence.tsv"))
    if len({p.resolve() for p in (out, queries_out, evidence_out)}) < 3:
        raise ValueError(f"--out, --queries-out and --evidence-out must be three files; got {out}, {queries_out}, "
                         f"{evidence_out}")
    store = open_ubi_store_from_args(args)
    logged = list(store.iter_queries())
    events = {"all": 0, "simulated": 0}

    def counted(stream):  # the events are streamed once, into the sessions; count the simulated on the way
        for ev in stream:
            events["all"] += 1
            events["simulated"] += bool(ev.event_attributes and ev.event_attributes.simulated)
            yield ev

    sessions = serp_sessions(logged, counted(store.iter_events()))
    if not sessions:
        print(f"shopsearch judgments: the logs hold no first-page result list of a search yet "
              f"({args.ubi_dir or 'the engine store'})", file=sys.stderr)
        return 1
    fit = fit_click_model(args.model, sessions, iterations=args.iterations)
    try:
        graded = grade_pairs(fit.pairs, min_impressions=args.min_impressions)
    except ValueError as exc:
        print(f"shopsearch judgments: {exc} ({len(sessions)} result lists, "
              f"{sum(any(s.clicked) for s in sessions)} with a click); collect more logs", file=sys.stderr)
        return 1
    if not graded:
        print(f"shopsearch judgments: none of {len(fit.pairs)} (query, product) pairs was shown "
              f"{args.min_impressions} times; lower --min-impressions or collect more logs", file=sys.stderr)
        return 1
    # A product id with whitespace cannot be a qrels field (it would split the line): those pairs are left out
    # and named, rather than lose every other grade.
    unwritable = [g for g in graded if not qrels_field(g.doc_id)]
    if unwritable:
        graded = [g for g in graded if qrels_field(g.doc_id)]
        ids = list(dict.fromkeys(g.doc_id for g in unwritable))
        print(f"warning: {len(unwritable)} graded pairs left out: product ids with whitespace cannot be written "
              f"as TREC qrels ({', '.join(map(repr, ids[:5]))}{', ...' if len(ids) > 5 else ''})", file=sys.stderr)
        if not graded:
            return 1
    write_qrels(out, (Qrel(g.qid, g.doc_id, g.grade) for g in graded))
    n_queries = write_queries(queries_out, list(dict.fromkeys(Query(g.qid, g.query) for g in graded)))
    _write_evidence(evidence_out, graded)
    counts = [sum(g.grade == k for g in graded) for k in range(4)]
    print(f"{args.model}: {len(sessions)} result lists, {len(fit.pairs)} pairs, {len(graded)} graded in "
          f"{n_queries} queries ({len(fit.pairs) - len(graded)} left out: shown, or never clicked and looked at, "
          f"< {args.min_impressions} times, or no evidence); grades 0/1/2/3: {'/'.join(map(str, counts))}")
    if not fit.converged:
        print(f"warning: EM stopped at --iterations {args.iterations} before converging; the estimates may still "
              f"move (raise --iterations)", file=sys.stderr)
    if fit.positions:
        kind = "click-through rate" if args.model == "coec" else "examination"
        print(f"{kind} by rank: {' '.join(f'{x:.3f}' for x in fit.positions[:10])}")
    if fit.continuation is not None:
        print(f"continuation (gamma): {fit.continuation:.3f}")
    simulated = sum(q.simulated for q in logged)
    if simulated or events["simulated"]:
        print(f"SIMULATED: {simulated} of the {len(logged)} logged searches and {events['simulated']} of the "
              f"{events['all']} events came from simulated shoppers (simulate-traffic); these grades describe "
              f"them, not real shoppers")
    print(f"wrote {out}, {queries_out}, {evidence_out}")
    return 0


def _write_evidence(path: Path, graded) -> None:
    """The evidence TSV: a header, then one row per graded pair, its query (what a shopper typed) as a text cell
    a spreadsheet does not run (:func:`~shopsearch.judgments.as_text_cell`)."""
    rows = ["\t".join(EVIDENCE_COLUMNS)]
    rows += ["\t".join((g.qid, as_text_cell(g.query), g.doc_id, str(g.grade), f"{g.estimate:.6g}", f"{g.stderr:.6g}",
                        str(g.impressions), str(g.clicks),
                        "" if math.isnan(g.examinations) else f"{g.examinations:.1f}")) for g in graded]
    write_atomically(path, "\n".join(rows) + "\n")


def run_merge(args: argparse.Namespace) -> int:
    """Merge the added grades into the base list and write TREC qrels and queries; prints a summary. Returns 0."""
    from shopsearch.text import normalise_query

    base = read_judgments(args.base)
    texts = query_texts(base, args.queries)
    if not texts:
        raise ValueError(f"{args.base}: {base.format} judgments carry no query text; give --queries")
    # An added grade goes to the query the console showed for its text (shopsearch.judgments.query_ids_by_text).
    judged = {q.query_id for q in base.qrels}
    qids = query_ids_by_text(texts.items(), judged=judged)

    nameless = next((q.query_id for q in base.qrels if q.query_id not in texts), None)
    if nameless is not None:
        raise ValueError(f"{args.base}: query {nameless!r} has no text in {args.queries or 'the file'}")
    out = Path(args.out)
    queries_out = Path(args.queries_out or out.with_name(f"{out.stem}-queries.tsv"))
    if out.resolve() == queries_out.resolve():
        raise ValueError(f"--out and --queries-out are the same file: {out}")
    merged = {(q.query_id, q.doc_id): q for q in base.qrels}  # a base line keeps its iteration field as written
    added = regraded = 0
    new_queries: list[str] = []
    for path in args.added:
        extra = read_judgments(path)
        if extra.qrels and not extra.queries:  # (an empty list, every grade withdrawn, merely adds nothing)
            raise ValueError(f"{path}: {extra.format} judgments carry no query text to match the base's queries by")
        for q in extra.qrels:
            text = extra.queries[q.query_id]
            key = normalise_query(text)
            qid = qids.get(key)
            if qid is None:  # a query the base never judged: an id of its own, as CSV judgments get
                qid = qids[key] = query_id_for(text)
                texts[qid] = text
                new_queries.append(qid)
            grade = int(q.relevance)
            old = merged.get((qid, q.doc_id))
            added += old is None
            regraded += old is not None and old.relevance != grade
            merged[(qid, q.doc_id)] = old._replace(relevance=grade) if old else Qrel(qid, q.doc_id, grade)
    n = write_qrels(out, merged.values())
    write_queries(queries_out, [Query(qid, texts[qid]) for qid in dict.fromkeys(qid for qid, _ in merged)])
    print(f"merged {len(args.added)} list(s) into {args.base}: {added} grades added, {regraded} changed, "
          f"{len(new_queries)} new queries; wrote {n} judgments to {out} and their queries to {queries_out}")
    return 0


def run_pool(args: argparse.Namespace) -> int:
    """Pool the profiles' top k over the judged queries and write the worklist of unjudged products."""
    from shopsearch.api.judgment_pool import pool_holes, unjudged_counts, write_worklist
    from shopsearch.api.ranking_runs import rank_profiles
    from shopsearch.evaluation import judged_pools

    if not 1 <= args.depth <= RESULTS_DEPTH:
        raise ValueError(f"--depth must be between 1 and {RESULTS_DEPTH}, got {args.depth}")
    qrels, todo = load_judged_queries(args.qrels, args.format, args.queries, args.wands_queries)
    titles: dict[str, str] = {}
    ranked = rank_profiles(args, todo, args.profiles, "judgments pool", depth=args.depth, titles=titles)
    if ranked is None:
        return 1
    profiles = list(ranked)
    holes = pool_holes(judged_pools(qrels), todo, {p: r.rankings for p, r in ranked.items()}, args.depth)
    write_worklist(args.out, holes, titles, args.console_url, profiles)
    shown = {p: sum(min(len(r.rankings.get(q, [])), args.depth) for q in todo) for p, r in ranked.items()}
    for p, n in unjudged_counts(holes, profiles).items():
        print(f"  {p}: {n} of the {shown[p]} products in its top {args.depth} are unjudged "
              f"({n / max(shown[p], 1):.1%})")
    degraded = sum(r.degraded for r in ranked.values())
    print(f"judgments pool {' '.join(profiles)} at depth {args.depth} on {args.engine}:{args.index}: "
          f"{len(todo)} judged queries, {len(holes)} products to grade in {len({h.qid for h in holes})} queries "
          f"({degraded} searches degraded{'; --no-budget ranks as offline quality runs do' if degraded else ''}); "
          f"worklist: {args.out}")
    return 0
