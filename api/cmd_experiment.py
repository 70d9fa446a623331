"""``shopsearch experiment``: check an experiments file; report an online experiment from the UBI logs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from shopsearch.api.cli_args import add_command_group, add_report_args, add_ubi_args, write_reports
from shopsearch.settings import Settings

HELP = """\
Online experiments (reranker/experiments.example.toml is the commented example of the file; the API serves the
one the experiments_file setting names). A client with a client_id (by default its session_id) is assigned an
arm by a stable sha256 hash of (experiment, client_id); an explicit profile= parameter overrides experiments.

  check [FILE]   validate an experiments file (default: the experiments_file setting) against the schema and the
                 ranking profiles that exist; exit 2 naming file, key and value when it is invalid.
  report NAME    from the UBI logs (the configured engine's store, or --ubi-dir): per arm searches, CTR,
                 add-to-cart and purchase rates, revenue per search with 95% intervals and tests against the
                 baseline arm (Welch's t-test with clients as the units), or for an
                 interleaving experiment wins / losses / ties with a sign (exact binomial) test. Says SIMULATED
                 when the logs are simulated traffic.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``experiment`` with its ``check`` and ``report`` actions."""
    actions = add_command_group(subparsers, "experiment", "action", description=HELP,
                                help="check an experiments file; report an online experiment",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    c = actions.add_parser("check", help="validate an experiments file")
    c.add_argument("file", nargs="?", help="the file (default: the experiments_file setting)")
    c.add_argument("--config", help="TOML settings file (default $SHOPSEARCH_CONFIG)")
    c.set_defaults(run=run_check)
    r = actions.add_parser("report", help="an experiment's outcome from the UBI logs")
    r.add_argument("name", metavar="NAME", help="the experiment (its [experiments.NAME] table)")
    r.add_argument("--arms", help="arms in order, baseline first, comma-separated (default: the experiments file's "
                                  "order when it has NAME, else sorted by name)")
    r.add_argument("--alpha", type=float, default=0.05, help="significance level (default 0.05)")
    add_report_args(r)
    add_ubi_args(r)
    r.set_defaults(run=run_report)


def run_check(args: argparse.Namespace) -> int:
    """Validate the file; print its experiments and whether each is active now."""
    from datetime import datetime, timezone

    from shopsearch.plugin.profiles import ProfileStore
    from shopsearch.reranker.experiments import load_experiments
    from shopsearch.settings import load_settings

    settings = load_settings({"config": args.config})
    path = args.file or settings.experiments_file
    if not path:
        raise ValueError("file: none given and the experiments_file setting is not set")
    spec = load_experiments(path, ProfileStore(settings=settings).names())
    now = datetime.now(timezone.utc)
    print(f"{path}: {len(spec.experiments)} experiments, valid")
    for name, exp in spec.experiments.items():
        arms = ", ".join(f"{a.profile}" + (f" {a.share:g}" if a.share is not None else "") for a in exp.arms)
        print(f"  {name}: {exp.mode} [{arms}] {'active now' if exp.active(now) else 'not active now'}")
    return 0


def run_report(args: argparse.Namespace) -> int:
    """Analyse the experiment and print (or write) the report; returns the exit code."""
    from shopsearch.api.cli_args import open_ubi_store_from_args, settings_from_args
    from shopsearch.api.experiment_report import experiment_report
    from shopsearch.api.report import render_experiment_html, render_experiment_markdown

    arms = ([a.strip() for a in args.arms.split(",") if a.strip()] if args.arms
            else _file_arms(settings_from_args(args), args.name))
    store = open_ubi_store_from_args(args)
    report = experiment_report(args.name, store.iter_queries(), store.iter_events(), arms=arms, alpha=args.alpha)
    markdown = render_experiment_markdown(report)
    write_reports(args, lambda: render_experiment_html(report), lambda: markdown)
    if args.json:
        print(json.dumps(report.to_dict()))
    else:
        print(markdown)
    return 0


def _file_arms(settings: Settings, name: str) -> list[str] | None:
    """The arms of ``name`` in the experiments file, baseline first; None (said on stderr: the baseline is then
    the first arm by name, and the deltas' signs depend on it) when there is no file, or the file no longer has
    ``name`` (an experiment that ran and was removed since: its searches are still in the logs), or the file does
    not load (the report reads the logs, not the file).
    """
    import sys

    from shopsearch.reranker.experiments import load_experiments

    if not settings.experiments_file or not Path(settings.experiments_file).is_file():
        where = (f"experiments file {settings.experiments_file} not found" if settings.experiments_file
                 else "no experiments_file setting")
    else:
        try:
            experiments = load_experiments(settings.experiments_file).experiments
        except ValueError as exc:  # the report reads the logs; a file broken since is said, not fatal
            experiments, where = None, f"experiments file unreadable ({exc})"
        if experiments is not None and name in experiments:
            return list(experiments[name].profiles)
        if experiments is not None:
            # An experiment that ran and was taken out of the file since: its searches are still in the logs.
            where = (f"no experiment {name!r} in {settings.experiments_file} "
                     f"(it has: {', '.join(experiments) or 'none'})")
    print(f"note: {where}: arms in name order, the first taken as the baseline (choose with --arms)",
          file=sys.stderr)
    return None
