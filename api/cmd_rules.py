"""``shopsearch rules check FILE``: validate a merchandising rules file and print what its rules do."""

from __future__ import annotations

import argparse
import sys

HELP = """\
Validate a merchandising rules file (<merchandising_dir>/<index>.rules.toml; the commented example is
plugin/config/rules.example.toml, the schema docs/schemas/rules.schema.json) and print each rule: when it fires
and what it does. Exit 1 when the file is invalid (each error names the key, the value, what is allowed and the
line of its rule). A running server picks an edited file up by itself; a bad file there keeps the last good rules.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``rules`` subcommand."""
    p = subparsers.add_parser("rules", help="check a merchandising rules file", description=HELP,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="rules_command", metavar="ACTION", required=True)
    check = sub.add_parser("check", help="validate FILE and print its rules")
    check.add_argument("file", help="the rules file (TOML)")
    p.set_defaults(run=run)


def describe(rule) -> str:
    """One rule as a line: its name, when it fires and its actions."""
    start, end = rule.window()
    when = "".join([f" from {start.isoformat()}" if start else "", f" until {end.isoformat()}" if end else ""])
    acts = [f"pin {p.id}@{p.position}" for p in rule.pin]
    acts += [f"bury {i}" for i in rule.bury] + [f"hide {i}" for i in rule.hide]
    acts += [f"boost x{b.factor:g} {_attrs(b)}" for b in rule.boost]
    acts += [f"filter {_attrs(rule.filter)}"] if rule.filter else []
    acts += [f"redirect {rule.redirect}"] if rule.redirect else []
    return f"{rule.name}: {rule.match} {' | '.join(rule.queries)}{when} -> {'; '.join(acts)}"


def _attrs(a) -> str:
    keys = ("brand", "category", "price_min", "price_max", "in_stock", "rating_min")
    return ", ".join(f"{k}={getattr(a, k)}" for k in keys if getattr(a, k) not in (None, []))


def run(args: argparse.Namespace) -> int:
    """Print the file's rules (0), or its errors on stderr (1)."""
    from shopsearch.plugin.merchandising_rules import RulesError, load_rules

    try:
        rules = load_rules(args.file)
    except (RulesError, OSError) as exc:
        print(f"shopsearch rules check: {exc}", file=sys.stderr)
        return 1
    for rule in rules.rule:
        print(describe(rule))
    print(f"{args.file}: {len(rules.rule)} rules OK")
    return 0
