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
    reports = _read(paths)
    a_name, a = _side(reports, "a")
    b_name, b = _side(reports, "b")
    return paired_table(a_name, a, b_name, b, f"pooled from {len(paths)} reports")


def side_scores(paths: Sequence[str | Path], side: str) -> tuple[str, dict[str, dict[str, float]]]:
    """One side (``"a"`` or ``"b"``) of disjoint reports: its profile's name and {query id: {metric: score}}.

    Raises:
        PoolError: the reports name different profiles on that side or repeat a query.
    """
    return _side(_read(paths), side)


def _read(paths: Sequence[str | Path]) -> list[tuple[str | Path, dict]]:
    return [(path, json.loads(Path(path).read_text(encoding="utf-8"))) for path in paths]


def _side(reports: list[tuple[str | Path, dict]], side: str) -> tuple[str, dict[str, dict[str, float]]]:
    name, scores, only = None, {}, None
    for path, report in reports:
        if name not in (None, report[side]):
            raise PoolError(f"{path} has {report[side]} as profile {side.upper()}, not {name}")
        name = report[side]
        judged_only = bool(report.get("judged_only", False))
        if only not in (None, judged_only):
            raise PoolError(f"{path} is scored on {'judged products only' if judged_only else 'every product'}, "
                            f"the reports before it on {'judged products only' if only else 'every product'}")
        only = judged_only
        shared = scores.keys() & report["per_query"].keys()
        if shared:
            raise PoolError(f"{path} repeats {len(shared)} queries (e.g. {sorted(shared)[0]}): "
                            "folds must be disjoint")
        scores.update({q: v[side] for q, v in report["per_query"].items()})
    return name, scores


def paired_table(a_name: str, a: dict[str, dict[str, float]], b_name: str, b: dict[str, dict[str, float]],
                 source: str) -> list[str]:
    """B against A over the queries both scored, as lines: a heading naming ``source``, then the Markdown table.

    Raises:
        PoolError: no query is scored on both sides.
    """
    from shopsearch.api.compare import compare_metric

    queries = sorted(a.keys() & b.keys())
    if not queries:
        raise PoolError(f"{a_name} and {b_name} share no scored query")
    lines = [f"{b_name} vs {a_name}: {len(queries)} queries {source}",
             f"| metric | {a_name} | {b_name} | delta | 95% CI | wins / losses / ties | p (randomisation) | p (t) |",
             "|---|---:|---:|---:|---|:---:|---:|---:|"]
    for m in a[queries[0]]:
        xs = [a[q][m] for q in queries]
        ys = [b[q][m] for q in queries]
        c = compare_metric(m, sum(xs) / len(xs), sum(ys) / len(ys), [y - x for x, y in zip(xs, ys)])
        lines.append(f"| {m} | {c.mean_a:.4f} | {c.mean_b:.4f} | {c.delta:+.4f} | [{c.ci_low:+.3f}, {c.ci_high:+.3f}] "
                     f"| {c.wins} / {c.losses} / {c.ties} | {c.p_randomization:.3f} | {c.p_ttest:.3f} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    """Print the pooled comparison; returns 0, or 2 when the reports overlap or compare different profiles."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])  # the first paragraph, whole
    ap.add_argument("reports", nargs="+", help="`shopsearch compare --json` outputs, one per fold")
    args = ap.parse_args(argv)
    try:
        print("\n".join(pooled_table(args.reports)))
    except PoolError as exc:
        print(f"pool_compare: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    from _main import finish

    finish(main)
