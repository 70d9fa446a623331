"""The bi-encoder fine-tuned on a catalog's own judgments, cross-validated over every judged query (issue 13: the
learnt ranker's homedepot CV has it measured beside it).

For each of K seeded folds (seed 0: the folds of bench/ltr_cv.py, which splits the queries the same way):

1. ``shopsearch train bi-encoder --folds K --fold I`` on the other folds' queries (hard negatives mined from the
   index with --mine-profile);
2. ``shopsearch index --full --model`` the catalog into INDEX-biI on the embedded engine, embedded by that model;
3. ``shopsearch compare --model`` the baseline against the profile on INDEX-biI over fold I's held-out queries;
4. with ``--ranker PROFILE``, ``shopsearch train ranker --judgments --fold I`` on INDEX-biI too, and the profile
   against it there (over the queries neither model trained on).

``--link NAME=PATH`` puts a shared model into every fold's models folder (``ltr-ce``'s cross-encoder). The folds'
per-query scores are pooled (bench/pool_compare.py). ``--against DIR`` (an ltr_cv.py work folder with
the same folds) also pairs the fine-tuned profile query by query with each profile of that run. Finished steps are
kept in ``--work`` and skipped when the bench is run again.

    python bench/bi_cv.py --data ../shared/data/homedepot --index homedepot --work /tmp/bi-hd --against /tmp/ltr-hd
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

from _cli_runs import add_fold_args, models_with_links, step
from pool_compare import paired_table, pooled_table, side_scores

from shopsearch.judgments import read_queries, write_queries
from shopsearch.reranker.model_card import read_model_card
from shopsearch.settings import child_environment


def compare(index: str, model: Path, queries: Path, qrels: Path, a: str, b: str) -> list[str]:
    """``shopsearch compare --json`` of profile ``b`` against ``a`` on a fine-tuned index, with its query encoder."""
    return ["shopsearch", "compare", "--index", index, "--engine", "embedded", "--model", str(model), "--no-budget",
            "--json", "--no-progress", "--queries", str(queries), "--qrels", str(qrels), a, b]


def ranker(args: argparse.Namespace, f: int, index: str, data: Path, model: Path, work: Path) -> None:
    """Fold ``f``'s ranker on its fine-tuned index, compared with the profile over the queries neither model saw."""
    models = models_with_links(work / f"m{f}", args.link, f)
    env = child_environment({"models_dir": models})
    out = models / args.ranker
    step(["shopsearch", "train", "ranker", "--judgments", str(data / "qrels-dev.txt"), "--queries",
          str(data / "queries-dev.tsv"), "--index", index, "--engine", "embedded", "--model", str(model), "--profile",
          args.ranker, "--folds", str(args.folds), "--fold", str(f), "--rows-cache", str(work / f"rows-{f}.npz"),
          "--out", str(out), "--no-progress"], env, work / f"ranker-{f}.txt")
    # The ranker splits the queries that have rows, the bi-encoder every judged one: the two held-out sets can
    # differ by a few queries, and only those in both were never trained on by either model.
    unseen = {q.qid for q in read_queries(model / "heldout-queries.tsv")}
    both = work / f"heldout-both-{f}.tsv"
    write_queries(both, [q for q in read_queries(out / "heldout-queries.tsv") if q.qid in unseen])
    step(compare(index, model, both, data / "qrels-dev.txt", args.profile, args.ranker), env,
         work / f"cmp-ranker-{f}.json")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])  # the first paragraph, whole
    add_fold_args(ap, "the embedded index of $SHOPSEARCH_HOME to mine negatives from")
    ap.add_argument("--profile", default="default", help="the profile scored on the fine-tuned index (default)")
    ap.add_argument("--baseline", default="bm25", help="the profile it is compared with (default bm25)")
    ap.add_argument("--only", type=int, action="append", metavar="I", help="run fold I only (repeatable)")
    ap.add_argument("--ranker", metavar="PROFILE", help="also train PROFILE's ranker (train ranker --judgments) on "
                    "each fold's fine-tuned index and compare it with --profile there")
    ap.add_argument("--link", action="append", default=[], metavar="NAME=PATH",
                    help="a model the --ranker profile needs beside the fold's own (its cross-encoder, say; {fold} in "
                         "PATH: the fold's own)")
    ap.add_argument("--against", type=Path, help="an ltr_cv.py work folder: pair with its cmp-*.json profiles")
    ap.add_argument("--train-args", default="--epochs 1 --batch-size 32 --lr 3e-5 --max-length 64 "
                    "--max-positives-per-query 2 --hard-negatives 1 --mine-profile bm25",
                    help="more `train bi-encoder` options (default: %(default)s)")
    args = ap.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    data = Path(args.data)
    env = child_environment({})
    t0 = time.perf_counter()
    for f in args.only or range(args.folds):
        model, index = work / f"bi{f}", f"{args.index}-bi{f}"
        print(f"fold {f}:", flush=True)
        step(["shopsearch", "train", "bi-encoder", "--data", str(data), "--index", args.index, "--engine", "embedded",
              "--out", str(model), "--folds", str(args.folds), "--fold", str(f), "--seed", "0", "--no-progress",
              *args.train_args.split()], env, work / f"train-{f}.txt")
        step(["shopsearch", "index", str(data / "products.jsonl"), "--index", index, "--engine", "embedded",
              "--model", str(model), "--full", "--no-progress"], env, work / f"index-{f}.txt")
        step(compare(index, model, model / "heldout-queries.tsv", data / "qrels-dev.txt", args.baseline,
                     args.profile), env, work / f"cmp-ft-{f}.json")
        if args.ranker:
            ranker(args, f, index, data, model, work)
    done = [f for f in range(args.folds) if (work / f"cmp-ft-{f}.json").exists()]
    if not done:
        return 1
    print(f"\nfolds done: {len(done)} of {args.folds}")
    for f in done:
        m = read_model_card(work / f"bi{f}")["metrics"]
        print(f"  fold {f}: held-out judged-pool nDCG@10 by cosine {m['heldout_pool_ndcg@10_before']:.4f} -> "
              f"{m['heldout_pool_ndcg@10_after']:.4f}")
    ours = [work / f"cmp-ft-{f}.json" for f in done]
    print()
    print("\n".join(pooled_table(ours)))
    name, tuned = side_scores(ours, "b")
    name = f"{name} (fine-tuned bi-encoder)"
    learnt = [work / f"cmp-ranker-{f}.json" for f in done if (work / f"cmp-ranker-{f}.json").exists()]
    if learnt:
        print()
        print("\n".join(pooled_table(learnt)))
        print(f"({args.profile} and its ranker on the fine-tuned indices)")
    others = {}  # each profile of the --against run once, though several of its reports hold it
    for first in sorted(args.against.glob("cmp-*-0.json")) if args.against else []:
        # exactly this report's folds: "cmp-default-*" would also take "cmp-default-judged-*" (--judged-only)
        stem = first.name[:-len("-0.json")]
        runs = sorted(p for p in args.against.glob(f"{stem}-*.json")
                      if re.fullmatch(rf"{re.escape(stem)}-\d+\.json", p.name))
        others.update(side_scores(runs, side) for side in ("a", "b"))
    tuned_runs = [(name, tuned)]
    if learnt:
        r_name, r_scores = side_scores(learnt, "b")
        tuned_runs.append((f"{r_name} (fine-tuned bi-encoder)", r_scores))
    for other, scores in others.items():
        for label, their_scores in tuned_runs:
            print()
            print("\n".join(paired_table(other, scores, label, their_scores, f"paired with {args.against}")))
    print(f"\nbi_cv: {len(args.only or range(args.folds))} folds of {data.name} in {time.perf_counter() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
