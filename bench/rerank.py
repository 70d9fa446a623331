"""Rerank latency and the fast path's cost: ms per query to rerank the top 50 on this CPU, fp32 vs ONNX int8.

Each crowdflower held-out test query's judged pool, in BM25 order, is the fused list; the cross-encoder reranks
its top ``--depth``. Reports mean / p50 / p95 ms per query and nDCG@10 over the pool for torch fp32 (the fallback)
and ONNX Runtime int8 (the served CPU path), how closely int8 follows fp32 (Kendall tau, top-10 overlap): on a
few dozen queries the nDCG change alone is noisy; and whether a product's score depends on the others scored with
it (it should not: a filter or a deeper head would otherwise reorder the products it keeps).

    python bench/rerank.py --model models/ce-minilm [--depth 50] [--queries N] [--threads T]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from shopsearch.settings import load_settings, offline_environment

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    """Print latency and nDCG@10 of fp32 vs the CPU fast path; returns 0."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])  # the first paragraph, whole
    ap.add_argument("--model", default=str(REPO / "models" / "ce-minilm"))
    ap.add_argument("--data", default=str(load_settings().data_dir), help="labelled data (default: data_dir)")
    ap.add_argument("--depth", type=int, default=50)
    ap.add_argument("--queries", type=int, default=None, help="cap the test queries (default: all)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args(argv)
    offline_environment()

    import torch

    from shopsearch.plugin.search_types import ScoredHit
    from shopsearch.reranker.cross_encoder import STAGE
    from shopsearch.reranker.model_registry import open_cross_encoder
    from shopsearch.reranker.model_card import read_model_card
    from shopsearch.reranker.pool_eval import bm25_scores, heldout_pools, per_query_ndcg, pool_ndcg

    if args.threads:
        torch.set_num_threads(args.threads)
    max_length = read_model_card(args.model)["parameters"]["max_length"]
    _, pools, _ = heldout_pools(Path(args.data) / "crowdflower", args.model, max_queries=args.queries)
    fused = []
    for p, s in zip(pools, bm25_scores(pools)):
        order = np.argsort(-s, kind="stable")
        fused.append([ScoredHit(id=p.products[i]["id"], rank=r, score=float(s[i]), source=p.products[i],
                                stages={"bm25": float(s[i])}) for r, i in enumerate(order, 1)])
    base = pool_ndcg(pools, [np.array([-h.rank for h in _by_id(f, p)]) for f, p in zip(fused, pools)])
    print(f"{len(pools)} crowdflower test queries, depth {args.depth}, torch threads {torch.get_num_threads()}, "
          f"max_length {max_length}; BM25 order nDCG@10 {base:.4f}")
    results, outs, rerankers = {}, {}, {}
    for fast in (False, True):
        rr = open_cross_encoder(Path(args.model), device="cpu", batch_size=args.batch_size, max_length=max_length,
                                fast_cpu=fast, require_onnx=fast)
        rr.rerank(pools[0].query, fused[0], depth=args.depth)  # warm-up (allocations, kernels)
        ms, runs = [], []
        for p, hits in zip(pools, fused):
            t = time.perf_counter()
            out, why = rr.rerank(p.query, hits, depth=args.depth)
            ms.append((time.perf_counter() - t) * 1000)
            if why is not None:
                raise RuntimeError(f"rerank degraded ({why}) on {p.qid} without a budget")
            runs.append(out)
        per_query = per_query_ndcg(pools, [np.array([-h.rank for h in _by_id(o, p)]) for o, p in zip(runs, pools)])
        ndcg = float(per_query.mean())
        pairs = sum(min(args.depth, len(h)) for h in fused)
        results[rr.precision] = (ndcg, ms)
        rerankers[rr.precision] = rr
        outs[rr.precision] = (runs, per_query)
        print(f"  {rr.precision:13s} nDCG@10 {ndcg:.4f}  ms/query mean {np.mean(ms):7.1f}  p50 "
              f"{np.percentile(ms, 50):7.1f}  p95 {np.percentile(ms, 95):7.1f}  ({pairs / (sum(ms) / 1000):.0f} "
              f"pairs/s)")
        if not all(STAGE in h.stages for out in runs for h in out[:args.depth]):
            raise RuntimeError("a reranked hit lacks its cross_encoder stage score")
    (n32, ms32), (n8, ms8) = results["fp32"], results["onnx-int8"]
    print(f"onnx-int8: {np.mean(ms32) / np.mean(ms8):.2f}x faster than fp32, nDCG@10 change {n8 - n32:+.4f} "
          f"(target loss <= 0.005)")
    _fidelity(*outs["fp32"], *outs["onnx-int8"], args.depth)
    for rr in rerankers.values():
        _batch_independence(rr, pools, fused, args.depth)
    return 0


def _batch_independence(rr, pools, fused, depth: int) -> None:
    """How far a head's scores move when the next 20 candidates are scored with it (0 for a scorer whose pair
    scores do not depend on their batch, as the served ranking should not)."""
    moved, reordered = [], 0
    for p, hits in zip(pools, fused):
        src = [h.source for h in hits[:depth + 20]]
        head = min(depth, len(src))
        alone, together = rr.score(p.query, src[:head]), rr.score(p.query, src)[:head]
        moved.append(float(np.abs(alone - together).max()) if head else 0.0)
        reordered += not np.array_equal(np.argsort(-alone, kind="stable"), np.argsort(-together, kind="stable"))
    print(f"  {rr.precision:13s} batch independence: the head scored alone vs with the next 20, max |score change| "
          f"median {np.median(moved):.4f} max {max(moved):.4f}; head order changed on {reordered} of {len(pools)} "
          "queries")


def _fidelity(runs32, ndcg32, runs8, ndcg8, depth: int) -> None:
    """How closely int8 follows fp32, apart from the labels: a few dozen queries make an nDCG change noisy."""
    from scipy.stats import kendalltau

    from shopsearch.api.compare import randomization_test
    from shopsearch.reranker.cross_encoder import STAGE

    taus, overlap, diffs = [], [], []
    for a, b in zip(runs32, runs8):
        sa = {h.id: h.stages[STAGE] for h in a[:depth]}
        sb = {h.id: h.stages[STAGE] for h in b[:depth]}
        ids = sorted(sa)
        taus.append(kendalltau([sa[i] for i in ids], [sb[i] for i in ids]).statistic)
        diffs.extend(abs(sa[i] - sb[i]) for i in ids)
        overlap.append(len({h.id for h in a[:10]} & {h.id for h in b[:10]}) / min(10, len(a)))
    d = ndcg8 - ndcg32
    print(f"  fidelity vs fp32: Kendall tau of the head's scores {np.nanmean(taus):.3f} (mean over queries), "
          f"top-10 overlap {100 * np.mean(overlap):.1f}%, mean |score change| {np.mean(diffs):.4f}; "
          f"nDCG@10 change p = {randomization_test(d):.2f} (paired randomisation)")


def _by_id(hits, pool):
    """Hits reordered to the pool's product order (so ranks line up with the pool's grades)."""
    pos = {h.id: h for h in hits}
    return [pos[x["id"]] for x in pool.products]


if __name__ == "__main__":
    from _main import finish

    finish(main)
