"""``shopsearch versions``: list an alias's kept versions, and roll it back to the one before (indexer/rollback.py)."""

from __future__ import annotations

import argparse
import sys

from shopsearch.api.cli_args import add_command_group, add_engine_args, add_setting_arg

HELP = """\
An alias's versions and its undo. A full `shopsearch index` run builds a new version (<alias>-v<UTC time>),
moves the alias onto it and keeps the version it replaced, so a rebuild that went live with a bad catalog is one
command from undone:

  list       the kept versions, newest first: products, build time, which is live
  rollback   move the alias back onto the version before the live one (or --to VERSION), under the indexing
             lock, once that version can take traffic. The version rolled back from stays until the next
             indexing run drops it; until then `rollback --to` it rolls forward again.

Exit 1 when an indexing run holds the alias; 2 when there is nothing to roll back to.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``versions`` with its ``list`` and ``rollback`` actions."""
    actions = add_command_group(subparsers, "versions", "action", description=HELP,
                                help="list an alias's versions; roll back a full rebuild",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    listing = actions.add_parser("list", help="the alias's kept versions, newest first")
    back = actions.add_parser("rollback", help="move the alias back onto the version before the live one")
    back.add_argument("--to", metavar="VERSION", help="the version to move the alias onto (default: the newest "
                                                      "one older than the live one)")
    for sub in (listing, back):
        add_setting_arg(sub, "index", "alias")
        add_engine_args(sub)
        sub.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """List, or roll back; returns 0, or 1 when an indexing run holds the alias."""
    from shopsearch.api.cli_args import settings_from_args
    from shopsearch.indexer.rebuild_lock import IndexLocked
    from shopsearch.indexer.rollback import alias_versions, roll_back
    from shopsearch.plugin.engines import open_engine

    settings = settings_from_args(args)
    engine = open_engine(settings.engine, root=args.root, settings=settings)
    try:
        if args.action == "list":
            for v in alias_versions(engine, args.index):
                state = ("  (live)" if v.live else f"  ({v.newer}: the next indexing run drops it)" if v.newer
                         else "")
                print(f"{'*' if v.live else ' '} {v.name}  {v.products:>9,} products  built "
                      f"{v.built:%Y-%m-%d %H:%M:%S} UTC{state}")
            return 0
        try:
            done = roll_back(engine, args.index, to=args.to, lock_stale_s=settings.index_lock_stale_s)
        except IndexLocked as exc:
            print(f"shopsearch versions: refused: {exc}", file=sys.stderr)
            return 1
        then = (f"the next indexing run drops {done.previous} unless you roll forward first (`shopsearch versions "
                f"rollback --index {done.alias} --to {done.previous}`)" if done.previous > done.live
                else f"{done.previous} is kept")
        print(f"{done.alias}: now on {done.live} ({done.live_products:,} products), was on {done.previous} "
              f"({done.previous_products:,}); {then}")
        return 0
    finally:
        engine.close()
