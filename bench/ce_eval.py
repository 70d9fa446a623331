"""Acceptance numbers of a trained cross-encoder, on queries it never saw (the model card's held-out test split).

crowdflower: nDCG@10 of reranking each test query's judged pool: cross-encoder vs BM25 (bm25s, stemmed, over the
pool) vs off-the-shelf all-MiniLM-L6-v2 cosine. homedepot: RMSE of the calibrated score vs the raw rating,
against predicting the train split's mean rating.

    python bench/ce_eval.py --model models/ce-minilm [--data ../shared/data] [--hd-queries 300] [--cf-queries N]
        [--fp32] [--split valid]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    """Print the crowdflower nDCG@10 table and the homedepot RMSE; returns 0."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(REPO / "models" / "ce-minilm"))
    ap.add_argument("--data", default=os.environ.get("SHOPSEARCH_DATA", str(REPO.parent / "shared" / "data")))
    ap.add_argument("--hd-queries", type=int, default=300, help="homedepot test queries to score (seeded cap)")
    ap.add_argument("--cf-queries", type=int, default=None, help="cap crowdflower test queries (default: all)")
    ap.add_argument("--split", choices=("test", "valid"), default="test",
                    help="score the held-out test queries (default) or the validation queries runs are chosen on")
    ap.add_argument("--fp32", action="store_true", help="score in fp32 instead of the CPU int8 fast path")
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from shopsearch.reranker.ce_metrics import rmse
    from shopsearch.reranker.cross_encoder import CrossEncoderReranker
    from shopsearch.reranker.model_card import read_model_card
    from shopsearch.reranker.pool_eval import heldout_pools, model_scores

    started = time.perf_counter()
    card = read_model_card(args.model)
    rr = CrossEncoderReranker(args.model, batch_size=args.batch_size, max_length=card["parameters"]["max_length"],
                              fast_cpu=not args.fp32)
    print(f"model {args.model} ({rr.precision}, {rr.device}); trained on "
          f"{[d['name'] for d in card['data']['dirs']]}, seed {card['seed']}")

    cf, cf_pools, cf_train = heldout_pools(Path(args.data) / "crowdflower", args.model, args.split,
                                            max_queries=args.cf_queries)
    n_pairs = sum(len(p.products) for p in cf_pools)
    ce = model_scores(cf_pools, rr.score)
    print(f"\ncrowdflower held-out {args.split}: {len(cf_pools)} queries, {n_pairs} judged pairs; "
          "nDCG@10 reranking the pool")
    pool_table(cf_pools, ce, rr.precision)
    cf_raw = np.concatenate([p.raw for p in cf_pools])
    cf_mean = np.nanmean([j.raw_score for j in cf_train])
    print(f"  RMSE calibrated {rmse(rr.calibrated(np.concatenate(ce), 'crowdflower'), cf_raw):.4f} vs "
          f"predict-the-mean {rmse(np.full(cf_raw.shape, cf_mean), cf_raw):.4f} (raw 1-4)")

    queries, pairs = len(cf_pools), n_pairs
    if "homedepot" not in {d["name"] for d in card["data"]["dirs"]}:
        print("\nhomedepot: not in this model's training data, skipped")
    else:
        hd, hd_pools, hd_train = heldout_pools(Path(args.data) / "homedepot", args.model, args.split,
                                               max_queries=args.hd_queries)
        hd_scores = model_scores(hd_pools, rr.score)
        raw = np.concatenate([p.raw for p in hd_pools])
        mean = float(np.nanmean([j.raw_score for j in hd_train]))
        cal_rmse = rmse(rr.calibrated(np.concatenate(hd_scores), "homedepot"), raw)
        base_rmse = rmse(np.full(raw.shape, mean), raw)
        print(f"\nhomedepot held-out {args.split}: {len(hd_pools)} queries, {raw.size} pairs (raw 1-3)")
        print(f"  RMSE calibrated cross-encoder {cal_rmse:.4f} vs predict-the-mean ({mean:.3f}) {base_rmse:.4f}: "
              f"{100 * (1 - cal_rmse / base_rmse):.1f}% lower")
        print("  nDCG@10 reranking the pool:")
        pool_table(hd_pools, hd_scores, rr.precision)
        queries, pairs = queries + len(hd_pools), pairs + raw.size
    print(f"\nce_eval: {queries} queries, {pairs} pairs scored in {time.perf_counter() - started:.0f} s")
    return 0


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
    sys.exit(main())
