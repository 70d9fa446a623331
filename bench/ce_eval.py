"""Acceptance numbers of a trained cross-encoder, on queries it never saw (the model card's held-out test split).

crowdflower: nDCG@10 of reranking each test query's judged pool: cross-encoder vs BM25 (bm25s, stemmed, over the
pool) vs off-the-shelf all-MiniLM-L6-v2 cosine. homedepot: RMSE of the calibrated score vs the raw rating,
against predicting the train split's mean rating. A data folder the model never trained on is scored on all its
queries (zero-shot, no RMSE: it has no calibration there). The models of a cross-validation (`shopsearch train
cross-encoder --folds K --fold I`, I = 0..K-1) are given together: each scores the test fold it never saw, and
the table covers every query (--hd-queries and --cf-queries cap each model's share).

    python bench/ce_eval.py --model models/ce-minilm [--data ../shared/data] [--hd-queries 300] [--cf-queries N]
        [--fp32] [--split valid]
    python bench/ce_eval.py --model models/ce-f0 --model models/ce-f1 ... --model models/ce-f4
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from shopsearch.settings import load_settings, offline_environment

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    """Print the crowdflower nDCG@10 table and the homedepot RMSE; returns 0."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])  # the first paragraph, whole
    ap.add_argument("--model", action="append", default=None,
                    help="a trained cross-encoder (default: models/ce-minilm); repeat it with each fold's model of "
                         "a cross-validation (train cross-encoder --folds K) to score every query")
    ap.add_argument("--data", default=str(load_settings().data_dir), help="labelled data (default: data_dir)")
    ap.add_argument("--hd-queries", type=int, default=300, help="homedepot test queries to score (seeded cap)")
    ap.add_argument("--cf-queries", type=int, default=None, help="cap crowdflower test queries (default: all)")
    ap.add_argument("--split", choices=("test", "valid"), default="test",
                    help="score the held-out test queries (default) or the validation queries runs are chosen on")
    ap.add_argument("--fp32", action="store_true", help="score in fp32 instead of the CPU int8 fast path")
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args(argv)
    offline_environment()

    from shopsearch.reranker.model_registry import open_cross_encoder
    from shopsearch.reranker.model_card import read_model_card, trained_on

    started = time.perf_counter()
    models = []
    for path in args.model or [str(REPO / "models" / "ce-minilm")]:
        card = read_model_card(path)
        rr = open_cross_encoder(Path(path), batch_size=args.batch_size, max_length=card["parameters"]["max_length"],
                                fast_cpu=not args.fp32)
        fold = f", fold {card['parameters']['fold']} of {card['parameters']['folds']}" \
            if card["parameters"].get("folds") else ""
        print(f"model {path} ({rr.precision}, {rr.device}); trained on "
              f"{trained_on(card)}, seed {card['seed']}{fold}")
        models.append((path, card, rr))
    precision = models[0][2].precision

    queries = pairs = 0
    for name, scale in (("crowdflower", "raw 1-4"), ("homedepot", "raw 1-3")):
        held = heldout(Path(args.data) / name, models, args.split,
                       args.cf_queries if name == "crowdflower" else args.hd_queries)
        if held is None:
            print(f"\n{name}: not in these models' training data, skipped")
            continue
        pools, scores, rmse = held
        n_pairs = sum(len(p.products) for p in pools)
        unseen = "every query (zero-shot: not in the training data)" if rmse is None else f"held-out {args.split}"
        print(f"\n{name} {unseen}: {len(pools)} queries, {n_pairs} judged pairs ({scale}); nDCG@10 reranking the pool")
        pool_table(pools, scores, precision)
        if rmse is not None:
            print(f"  RMSE calibrated cross-encoder {rmse['rmse_calibrated']:.4f} vs predict-the-mean "
                  f"{rmse['rmse_mean']:.4f}: {100 * (1 - rmse['rmse_calibrated'] / rmse['rmse_mean']):.1f}% lower")
        queries, pairs = queries + len(pools), pairs + n_pairs
    print(f"\nce_eval: {queries} queries, {pairs} pairs scored in {time.perf_counter() - started:.0f} s")
    return 0


def heldout(data_dir: Path, models: list, split: str, max_queries: int | None):
    """Each model's held-out pools of one data folder, scored by that model, pooled over the models.

    Several models must be folds of one cross-validation (``train cross-encoder --folds K --fold I``): their test
    queries are disjoint, so every query is scored by the one model that never saw it. Returns (pools, scores,
    {"rmse_calibrated", "rmse_mean"} of the calibrated scores, or None for a folder no model trained on), or None
    when a zero-shot folder has no "valid" split.
    """
    from shopsearch.evaluation import rmse_vs_mean
    from shopsearch.reranker.model_card import trained_on
    from shopsearch.reranker.pool_eval import heldout_pools, model_scores

    trained = [data_dir.name in trained_on(card) for _, card, _ in models]
    if not any(trained) and (split != "test" or len(models) > 1):
        return None  # zero-shot has no validation queries; several untrained models would score the same ones
    pools, scores, calibrated, means, seen = [], [], [], [], set()
    for path, _, rr in models:
        data, ps, train = heldout_pools(data_dir, path, split, max_queries=max_queries)
        qids = {p.qid for p in ps}
        if seen & qids:
            raise SystemExit(f"ce_eval: {path} shares {split} queries of {data_dir.name} with an earlier --model: "
                             "several models must be the folds of one cross-validation (same seed and --folds)")
        seen |= qids
        s = model_scores(ps, rr.score)
        pools += ps
        scores += s
        if any(trained) and ps:
            calibrated.append(rr.calibrated(np.concatenate(s), data_dir.name))
            # each model is measured against its own train split's mean, as a single model would be
            means.append(np.full(sum(len(p.products) for p in ps), np.nanmean([data.raw_score(q) for q in train])))
    if not any(trained):
        return pools, scores, None
    raw = np.concatenate([p.raw for p in pools])
    return pools, scores, rmse_vs_mean(np.concatenate(calibrated), raw, np.concatenate(means))


def pool_table(pools: list, ce: list, precision: str) -> None:
    """Print nDCG@10 of BM25, MiniLM cosine and the cross-encoder over the pools, and the cross-encoder's gap to each
    reference with its 95% CI, wins/losses and a paired randomisation p (as ``shopsearch compare``): a few dozen
    queries resolve only large gaps."""
    from shopsearch.api.compare import mean_ci, randomization_test
    from shopsearch.reranker.pool_eval import bm25_scores, cosine_scores, per_query_ndcg

    refs = {"BM25 (bm25s, stemmed, pool)": per_query_ndcg(pools, bm25_scores(pools)),
            "MiniLM cosine (off the shelf)": per_query_ndcg(pools, cosine_scores(pools))}
    ce_q = per_query_ndcg(pools, ce)
    for name, values in {**refs, f"cross-encoder ({precision})": ce_q}.items():
        print(f"  {name:34s} {values.mean():.4f}")
    for name, ref_q in refs.items():
        d = ce_q - ref_q
        low, high = mean_ci(d)
        print(f"  cross-encoder - {name.split(' (')[0]}: {d.mean():+.4f} (95% CI {low:+.4f} to {high:+.4f}), "
              f"{int((d > 0).sum())} wins / {int((d < 0).sum())} losses, p = {randomization_test(d):.3f} "
              "(paired randomisation)")


if __name__ == "__main__":
    from _main import finish

    finish(main)
