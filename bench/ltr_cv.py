"""Learning to rank from human judgments, cross-validated over every judged query of a folder (issue 13).

For each of K seeded folds (``split_queries``, seed 0): ``shopsearch train ranker --judgments --folds K --fold I``
trains the profile's ranker on the other folds' queries (the rows, the served head's features and grades, are
computed once and kept in ``--work``/rows.npz), then ``shopsearch compare`` scores each baseline profile against
it on fold I's held-out queries. The folds' per-query scores are pooled (bench/pool_compare.py): every query is
scored by the one model that never saw it.

    python bench/ltr_cv.py --data ../shared/data/crowdflower --index crowdflower --work /tmp/ltr-cf
    python bench/ltr_cv.py --data ../shared/data/homedepot --index homedepot --work /tmp/ltr-hd \
        --baseline default --baseline bm25

``--unjudged skip`` trains on judged products only (``train ranker --unjudged``); ``--judged-only`` adds a second
pooled table per baseline that scores judged products only (``compare --judged-only``, trec_eval's -J).

``--link NAME=PATH`` puts another model into every fold's models folder (a profile's cross-encoder, say); the
index must exist in $SHOPSEARCH_HOME on the embedded engine. ``--fold I`` runs fold I alone (a fold whose model is
ready while the next trains, or one rerun); the pooled table follows once every fold's reports are in ``--work``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from _cli_runs import add_fold_args, models_with_links, sh
from pool_compare import pooled_table

from shopsearch.settings import child_environment


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])  # the first paragraph, whole
    add_fold_args(ap, "the embedded index of $SHOPSEARCH_HOME")
    ap.add_argument("--profile", default="ltr", help="the profile whose ranker is trained (default ltr)")
    ap.add_argument("--baseline", action="append", help="profiles compared with it (repeatable; default: default)")
    ap.add_argument("--label-gain", choices=("linear", "exponential"),
                    help="the rankers' label gain (shopsearch train ranker --label-gain; default: its default)")
    ap.add_argument("--unjudged", choices=("zero", "skip"),
                    help="rows of products nobody judged (shopsearch train ranker --unjudged; default: zero)")
    ap.add_argument("--judged-only", action="store_true",
                    help="compare on judged products only as well (shopsearch compare --judged-only), pooled beside")
    ap.add_argument("--tune", action="store_true", help="the rankers choose their settings by CV first "
                                                        "(shopsearch train ranker --tune)")
    ap.add_argument("--members", type=int, help="boosters per ranker (shopsearch train ranker --members; default 1)")
    ap.add_argument("--link", action="append", default=[], metavar="NAME=PATH",
                    help="a model every fold's models folder also holds ({fold} in PATH: the fold's own; repeatable)")
    ap.add_argument("--fold", type=int, help="run this fold alone (default: every fold)")
    args = ap.parse_args(argv)
    if args.fold is not None and not 0 <= args.fold < args.folds:
        ap.error(f"--fold {args.fold}: must be in 0..{args.folds - 1}")
    baselines = args.baseline or ["default"]
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    data = Path(args.data)
    modes = [("", [])] + ([("-judged", ["--judged-only"])] if args.judged_only else [])
    t0 = time.perf_counter()
    for f in range(args.folds) if args.fold is None else [args.fold]:
        models = models_with_links(work / f"m{f}", args.link, f)
        env = child_environment({"models_dir": models})
        out = models / args.profile
        print(f"fold {f}:", flush=True)
        sh(["shopsearch", "train", "ranker", "--judgments", str(data / "qrels-dev.txt"), "--queries",
            str(data / "queries-dev.tsv"), "--index", args.index, "--engine", "embedded", "--profile", args.profile,
            "--folds", str(args.folds), "--fold", str(f), "--rows-cache", str(work / "rows.npz"), "--out", str(out),
            "--no-progress", *(["--label-gain", args.label_gain] if args.label_gain else []),
            *(["--tune"] if args.tune else []),
            *(["--members", str(args.members)] if args.members is not None else []),
            *(["--unjudged", args.unjudged] if args.unjudged else [])],
           env, work / f"train-{f}.txt")
        for base in baselines:
            for suffix, extra in modes:
                sh(["shopsearch", "compare", "--index", args.index, "--engine", "embedded", "--no-budget", "--json",
                    "--queries", str(out / "heldout-queries.tsv"), "--qrels", str(data / "qrels-dev.txt"), *extra,
                    base, args.profile], env, work / f"cmp-{base}{suffix}-{f}.json")
    for base in baselines:
        for suffix, _ in modes:
            reports = [work / f"cmp-{base}{suffix}-{f}.json" for f in range(args.folds)]
            missing = [r.name for r in reports if not r.is_file()]
            print("\njudged products only (trec_eval -J):" if suffix else "")
            print("\n".join(pooled_table(reports)) if not missing else
                  f"{base}: no pooled table until {missing} exist")
    ran = args.folds if args.fold is None else 1
    print(f"\nltr_cv: {ran} of {args.folds} folds of {data.name} in {time.perf_counter() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
