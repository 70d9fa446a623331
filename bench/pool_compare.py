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


def main(argv: list[str] | None = None) -> int:
    """Print the pooled comparison; returns 0, or 2 when the reports overlap or compare different profiles."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("reports", nargs="+", help="`shopsearch compare --json` outputs, one per fold")
    args = ap.parse_args(argv)

    from shopsearch.api.compare import compare_metric

    per_query: dict[str, dict] = {}
    names = None
    for path in args.reports:
        with open(path, encoding="utf-8") as fh:
            report = json.load(fh)
        if names not in (None, (report["a"], report["b"])):
            print(f"pool_compare: {path} compares {report['a']} vs {report['b']}, not {names[0]} vs {names[1]}",
                  file=sys.stderr)
            return 2
        names = (report["a"], report["b"])
        shared = per_query.keys() & report["per_query"].keys()
        if shared:
            print(f"pool_compare: {path} repeats {len(shared)} queries (e.g. {sorted(shared)[0]}): folds must be "
                  "disjoint", file=sys.stderr)
            return 2
        per_query.update(report["per_query"])
    metrics = list(next(iter(per_query.values()))["a"])
    print(f"{names[1]} vs {names[0]}: {len(per_query)} queries pooled from {len(args.reports)} reports")
    print(f"| metric | {names[0]} | {names[1]} | delta | 95% CI | wins / losses / ties | p (randomisation) | p (t) |")
    print("|---|---:|---:|---:|---|:---:|---:|---:|")
    for m in metrics:
        a = [q["a"][m] for q in per_query.values()]
        b = [q["b"][m] for q in per_query.values()]
        c = compare_metric(m, sum(a) / len(a), sum(b) / len(b), [y - x for x, y in zip(a, b)])
        print(f"| {m} | {c.mean_a:.4f} | {c.mean_b:.4f} | {c.delta:+.4f} | [{c.ci_low:+.3f}, {c.ci_high:+.3f}] | "
              f"{c.wins} / {c.losses} / {c.ties} | {c.p_randomization:.3f} | {c.p_ttest:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
