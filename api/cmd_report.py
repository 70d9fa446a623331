"""``shopsearch report``: reports from the logs for a merchandiser (``report queries``: what shoppers search)."""

from __future__ import annotations

import argparse
import json
from datetime import datetime

from shopsearch.api.cli_args import add_command_group, add_report_args, add_ubi_args, write_reports
from shopsearch.timestamps import parse_age, utc_time, utcnow

HELP = """\
Reports from the UBI logs (the configured engine's store, or --ubi-dir).

  queries   the top queries (most distinct clients, then searches), the queries that found nothing, and the
            queries whose results are rarely clicked (CTR: the share of a query's first-page result lists with at
            least one click, from --min-impressions lists). Queries are normalised (case, width, spaces); only
            first pages count. Says SIMULATED when searches are simulated traffic (`shopsearch simulate-traffic`).
"""

def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``--since``: an ISO 8601 date or time (UTC unless it says otherwise), or an age: ``24h``, ``7d``, ``2w``.

    Raises:
        ValueError: neither form (naming the value and what is allowed).

    >>> parse_since("2024-05-01").isoformat()
    '2024-05-01T00:00:00+00:00'
    >>> parse_since("2d", now=parse_since("2024-05-03")).isoformat()
    '2024-05-01T00:00:00+00:00'
    """
    age = parse_age(text)
    if age is not None:
        return (now or utcnow()) - age
    try:
        return utc_time(text)
    except ValueError:
        raise ValueError(f"since={text!r} must be an ISO 8601 date or time (2024-05-01, 2024-05-01T10:00Z) or an "
                         f"age (24h, 7d, 2w)") from None


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``report`` with its ``queries`` action."""
    actions = add_command_group(subparsers, "report", "action", description=HELP,
                                help="reports from the logs for a merchandiser",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    q = actions.add_parser("queries", help="top, zero-result and low click-through queries")
    q.add_argument("--index", help="only searches of this index or alias (default: every index; searches logged "
                                   "without one always count)")
    q.add_argument("--since", help="only searches since: an ISO date/time or an age (24h, 7d, 2w)")
    q.add_argument("--top", type=int, default=20, help="rows per list (default 20)")
    q.add_argument("--min-impressions", type=int, default=10,
                   help="result lists a query needs before its CTR is listed (default 10)")
    add_report_args(q)
    add_ubi_args(q)
    q.set_defaults(run=run_queries)


def run_queries(args: argparse.Namespace) -> int:
    """Build the queries report and print (or write) it; returns the exit code."""
    from shopsearch.api.cli_args import open_ubi_store_from_args
    from shopsearch.api.query_report import queries_report
    from shopsearch.api.report import render_queries_html, render_queries_markdown

    since = parse_since(args.since) if args.since else None
    store = open_ubi_store_from_args(args)
    report = queries_report(store.iter_queries(), store.iter_events(), index=args.index, since=since, top=args.top,
                            min_impressions=args.min_impressions)
    markdown = render_queries_markdown(report)
    write_reports(args, lambda: render_queries_html(report), lambda: markdown)
    print(json.dumps(report.to_dict()) if args.json else markdown)
    return 0
