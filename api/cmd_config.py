"""``shopsearch config``: the resolved settings and where each came from, or the reference of every option."""

from __future__ import annotations

import argparse

HELP = """\
Print the settings every shopsearch command resolves (defaults < TOML file < environment < flags), one line per
option with the layer it came from; passwords are masked. --reference prints docs/configuration.md instead.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``config`` subcommand."""
    p = subparsers.add_parser("config", help="show the resolved settings (or --reference for every option)",
                              description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="TOML settings file (default $SHOPSEARCH_CONFIG)")
    p.add_argument("--reference", action="store_true", help="print the reference of every option (markdown)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Print the settings or the reference; returns 0 (a bad setting exits 2 through the CLI's error path)."""
    from shopsearch.settings import describe_settings, load_settings, reference_markdown

    if args.reference:
        print(reference_markdown(), end="")
        return 0
    print(describe_settings(load_settings({"config": args.config})))
    return 0
