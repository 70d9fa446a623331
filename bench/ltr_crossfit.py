"""Learning to rank on cross-fitted cross-encoder scores, cross-validated over every judged query (issue 13).

A fold's ranker learns how far to trust its cross-encoder from the cross-encoder's scores on the ranker's training
queries. When that cross-encoder was fine-tuned on the same queries (session 11's crowdflower-fold models), those
scores are better than on any new query, and the ranker learns to trust them too much. Cross-fitting (stacking)
gives every training row a score from a cross-encoder that never saw its query. For each of K seeded folds (the
folds of bench/ltr_cv.py, read from its ``--against`` work folder):

1. the fold's training queries go into a judged folder of their own, cut into two seeded halves; ``shopsearch train
   cross-encoder --folds 2 --fold J`` (the recipe of ``--ce-args``, from ``--base-model``) learns on the other half;
2. ``shopsearch train ranker --judgments --rows-cache`` computes half J's rows (the served head's features and
   grades through ``--profile``) with that half's cross-encoder, so no row's score comes from a model that saw it
   (the small ranker it also trains is not used);
3. the two halves' rows are pooled and the fold's ranker is trained on them (``reranker/ranker_training.py``, as
   ``train ranker`` does);
4. ``shopsearch compare`` on the fold's held-out queries serves the profile with the fold's own cross-encoder
   (``--ce``, trained on all its training queries, as before) and this ranker, against each ``--baseline``.

The folds' per-query scores are pooled (bench/pool_compare.py) and paired with the ``--against`` run, whose ranker
learnt from in-sample scores. Finished steps are kept in ``--work`` and skipped when the bench is run again.
Each half's cross-encoder learns from about 45% of the training queries where the served one learns from 90%, so
the ranker sees scores somewhat weaker than it is served: it errs on trusting the cross-encoder too little.

    python bench/ltr_crossfit.py --data ../shared/data/crowdflower --index crowdflower --work /tmp/ltr-cf-xfit \\
        --against /tmp/ltr-cf-cecf --base-model ~/.cache/shopsearch/bench-models/ce-hd --ce '/tmp/ce-cf/ce-cv{fold}'
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from _cli_runs import add_fold_args, models_with_links, step
from pool_compare import paired_table, pooled_table, side_scores

from shopsearch.judgments import read_qrels, read_queries, write_queries
from shopsearch.reranker.training_data import JUDGED_FILES, OPTIONAL_FILES
from shopsearch.settings import child_environment

CE_ARGS = ("--hard-negatives 10 --mine-depth 50 --epochs 2 --batch-size 32 --lr 3e-5 --warmup-ratio 0.05 "
           "--max-length 48 --max-valid-pairs 100000 --eval-steps 50 --patience 4 --seed 0 --loss lambda "
           "--list-size 16")


def judged_subset(data: Path, qids: set[str], folder: Path) -> Path:
    """A judged folder holding only ``qids``: the catalog linked, the queries and judgments filtered (its name is
    the data folder's, so ``--mine NAME=INDEX`` still names it)."""
    sub = folder / data.name
    sub.mkdir(parents=True, exist_ok=True)
    if not (sub / "products.jsonl").exists():
        (sub / "products.jsonl").symlink_to((data / "products.jsonl").resolve())
    for name in JUDGED_FILES:
        if name in OPTIONAL_FILES and not (data / name).is_file():
            continue
        lines = (data / name).read_text(encoding="utf-8").splitlines()
        keep = [line for line in lines if line.split(maxsplit=1)[0] in qids]
        (sub / name).write_text("\n".join(keep) + "\n", encoding="utf-8")
    return sub


def pooled_rows(paths: list[Path]):
    """The rows of several ``train ranker --rows-cache`` files as one set."""
    from shopsearch.reranker.training_rows import concat_rows, load_rows

    return concat_rows([load_rows(p, None) for p in paths])


def run_fold(f: int, args: argparse.Namespace, data: Path, work: Path) -> None:
    from shopsearch.plugin.profiles import ProfileStore
    from shopsearch.reranker.conversion import is_current
    from shopsearch.reranker.ranker_training import file_sha256, save, train

    d = work / f"f{f}"
    d.mkdir(parents=True, exist_ok=True)
    heldout = args.against / f"m{f}" / args.profile / "heldout-queries.tsv"
    test = {q.qid for q in read_queries(heldout)}
    served_ce = Path(args.ce.replace("{fold}", str(f)))
    unseen = {q.qid for q in read_queries(next(served_ce.glob("heldout-queries-*.tsv")))}
    if not test <= unseen:
        sys.exit(f"ltr_crossfit: fold {f}: {served_ce} trained on {len(test - unseen)} of the held-out queries")
    profile = ProfileStore().get(args.profile)
    ce_name, ranker_name = profile.rerank.model, profile.conversion.model
    judged = {r.query_id for r in read_qrels(data / "qrels-dev.txt")}
    train_qids = (judged & {q.qid for q in read_queries(data / "queries-dev.tsv")}) - test
    sub = judged_subset(data, train_qids, d / "data")
    print(f"fold {f}: {len(train_qids)} training queries in two halves, {len(test)} held out", flush=True)
    env0 = child_environment({})
    rows = []
    for j in (0, 1):
        ce = d / f"ce{j}"
        step(["shopsearch", "train", "cross-encoder", "--base-model", str(args.base_model), "--train", str(sub),
              "--mine", f"{data.name}={args.index}", "--engine", "embedded", "--out", str(ce), "--folds", "2",
              "--fold", str(j), *args.ce_args.split()], env0, d / f"train-ce{j}.txt")
        half = next(ce.glob("heldout-queries-*.tsv"))
        env = child_environment({"models_dir": models_with_links(d / f"m{j}", [f"{ce_name}={ce}"], f)})
        step(["shopsearch", "train", "ranker", "--judgments", str(sub / "qrels-dev.txt"), "--queries", str(half),
              "--index", args.index, "--engine", "embedded", "--profile", args.profile, "--rows-cache",
              str(d / f"rows{j}.npz"), "--folds", "2", "--out", str(d / f"m{j}" / "_rows-only"), "--no-progress"],
             env, d / f"rows{j}.txt")
        rows.append(d / f"rows{j}.npz")
    models = models_with_links(d / "models", [f"{ce_name}={served_ce}"], f)
    out = models / ranker_name
    if not is_current(out):
        t0 = time.perf_counter()
        pooled = pooled_rows(rows)
        result = train(pooled, objective="lambdarank", target="relevance", folds=max(2, args.folds - 1), seed=0)
        judgments = sub / "qrels-dev.txt"
        save(result, pooled, out, {"judgments": str(judgments), "judgments_sha256": file_sha256(judgments),
                                   "index": args.index, "engine": "embedded", "profile": args.profile,
                                   "depth": profile.conversion.depth, "rerank_model": ce_name,
                                   "cross_fitted_from": [str(p) for p in rows]})
        write_queries(out / "heldout-queries.tsv", read_queries(heldout))
        print(f"  ranker on {len(pooled)} cross-fitted rows, {len(set(pooled.query_ids.tolist()))} queries "
              f"({time.perf_counter() - t0:.0f}s)", flush=True)
    env = child_environment({"models_dir": models})
    for base in args.baseline:
        step(["shopsearch", "compare", "--index", args.index, "--engine", "embedded", "--no-budget", "--json",
              "--queries", str(heldout), "--qrels", str(data / "qrels-dev.txt"), base, args.profile], env,
             d / f"cmp-{base}.json")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])  # the first paragraph, whole
    add_fold_args(ap, "the embedded index of $SHOPSEARCH_HOME")
    ap.add_argument("--against", type=Path, required=True,
                    help="the ltr_cv.py work folder of the same folds (its held-out queries; paired with its ranker)")
    ap.add_argument("--base-model", type=Path, required=True, help="the cross-encoder the halves' models start from")
    ap.add_argument("--ce", required=True, help="the fold's own cross-encoder, served ({fold} in the path)")
    ap.add_argument("--ce-args", default=CE_ARGS, help="more `train cross-encoder` options (default: %(default)s)")
    ap.add_argument("--profile", default="ltr-ce", help="the profile whose ranker is trained (default ltr-ce)")
    ap.add_argument("--baseline", action="append", help="profiles compared with it (default: default, rerank-ce)")
    ap.add_argument("--only", type=int, action="append", metavar="I", help="run fold I only (repeatable)")
    args = ap.parse_args(argv)
    args.baseline = args.baseline or ["default", "rerank-ce"]
    work, data = Path(args.work), Path(args.data)
    t0 = time.perf_counter()
    for f in args.only or range(args.folds):
        run_fold(f, args, data, work)
    done = [f for f in range(args.folds) if all((work / f"f{f}" / f"cmp-{b}.json").exists() for b in args.baseline)]
    for base in args.baseline:
        print()
        print("\n".join(pooled_table([work / f"f{f}" / f"cmp-{base}.json" for f in done])))
    base = args.baseline[0]
    new = side_scores([work / f"f{f}" / f"cmp-{base}.json" for f in done], "b")[1]
    old = side_scores([args.against / f"cmp-{base}-{f}.json" for f in done], "b")[1]
    print()
    print("\n".join(paired_table(f"{args.profile} (in-sample scores)", old, f"{args.profile} (cross-fitted)", new,
                                 "paired")))
    print(f"\nltr_crossfit: folds {done} of {data.name} in {time.perf_counter() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
