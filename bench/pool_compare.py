"""Pool `shopsearch compare --json` reports over disjoint query sets into one comparison (cross-validation).

Each fold of a cross-validated model (`shopsearch train cross-encoder --folds K --fold I`) can only be scored on
its own held-out queries, so a profile that uses it is compared fold by fold. This joins the folds' per-query
scores and recomputes each metric's means, wins / losses, 95% CI and paired tests over all the queries, as one
`shopsearch compare` over them would.

    shopsearch compare ... --queries models/ce-cv0/heldout-queries-crowdflower.tsv --json A B > cv0.json  # each fold
    python bench/pool_compare.py cv0.json cv1.json cv2.json cv3.json cv4.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence


class PoolError(ValueError):
    """The reports cannot be pooled: they compare other profiles or share queries."""


def pooled_table(paths: Sequence[str | Path]) -> list[str]:
    """The pooled comparison as lines: a heading, then a Markdown table with one row per metric.

    Raises:
        PoolError: the reports compare different profiles or repeat a query.
    """
    from shopsearch.api.compare import compare_metric

    per_query: dict[str, dict] = {}
    names = None
    for path in paths:
        report = json.loads(Path(path).read_text(encoding="utf-8"))
        if names not in (None, (report["a"], report["b"])):
            raise PoolError(f"{path} compares {report['a']} vs {report['b']}, not {names[0]} vs {names[1]}")
        names = (report["a"], report["b"])
        shared = per_query.keys() & report["per_query"].keys()
        if shared:
            raise PoolError(f"{path} repeats {len(shared)} queries (e.g. {sorted(shared)[0]}): "
                            "folds must be disjoint")
        per_query.update(report["per_query"])
    metrics = list(next(iter(per_query.values()))["a"])
    lines = [f"{names[1]} vs {names[0]}: {len(per_query)} queries pooled from {len(paths)} reports",
             f"| metric | {names[0]} | {names[1]} | delta | 95% CI | wins / losses / ties | p (randomisation) | p (t) |",
             "|---|---:|---:|---:|---|:---:|---:|---:|"]
    for m in metrics:
        a = [q["a"][m] for q in per_query.values()]
        b = [q["b"][m] for q in per_query.values()]
        c = compare_metric(m, sum(a) / len(a), sum(b) / len(b), [y - x for x, y in zip(a, b)])
        lines.append(f"| {m} | {c.mean_a:.4f} | {c.mean_b:.4f} | {c.delta:+.4f} | [{c.ci_low:+.3f}, {c.ci_high:+.3f}] "
                     f"| {c.wins} / {c.losses} / {c.ties} | {c.p_randomization:.3f} | {c.p_ttest:.3f} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    """Print the pooled comparison; returns 0, or 2 when the reports overlap or compare different profiles."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("reports", nargs="+", help="`shopsearch compare --json` outputs, one per fold")
    args = ap.parse_args(argv)
    try:
        print("\n".join(pooled_table(args.reports)))
    except PoolError as exc:
        print(f"pool_compare: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
