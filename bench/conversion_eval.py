"""SIMULATED acceptance figures: the conversion model vs baseline orders on held-out queries' sessions.

Simulates sessions, builds rows and holds out the sessions of the cross-encoder's held-out test queries (its
heldout-queries-<data>.tsv, so neither model trained on them; without a cross-encoder, 1/``--holdout-folds`` of
the query_ids), trains LightGBM on the rest and prints AUC and purchase-nDCG@10 on the held-out sessions for:
the shown order, BM25 (bm25s over the judged products), the cross-encoder order alone, and the conversion model,
which gets the same cross-encoder score as a feature (as the pipeline's conversion stage does).

    python bench/conversion_eval.py --data ../shared/data/crowdflower --sessions 3000 --seed 0
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

# ir-measures (trec_eval) takes integer relevance levels only, and its cost grows with the highest level.
PROPENSITY_LEVELS = 10**5


def propensity_gains(list_ids: np.ndarray, prop: np.ndarray) -> np.ndarray:
    """Propensities as integer gains: each list's scaled so its most likely purchase is PROPENSITY_LEVELS, rounded.

    Scaling one list's gains leaves its nDCG unchanged, so only the rounding moves it: by under 1e-5 per list at
    10^5 levels (measured against real-valued gains: at most 5e-6 per list, 5e-8 on the mean of 2400 lists).
    """
    out = np.zeros(len(prop), dtype=np.int64)
    for lid in np.unique(list_ids):
        rows = list_ids == lid
        top = prop[rows].max()
        if top > 0:
            out[rows] = np.rint(prop[rows] / top * PROPENSITY_LEVELS)
    return out


def propensities(rows, events, data, params) -> np.ndarray:
    """The simulator's examination-free P(purchase) of every row (click x cart x buy probabilities)."""
    from shopsearch.reranker.simulate import make_users, outcome_probabilities

    users = {u.id: u for u in make_users(params, np.random.default_rng(params.seed))}  # same draw as simulate()
    user_of = {e.session_id: e.user_id for e in events}
    pids = [st["_pid"] for st in rows.stages]
    medians: dict[str, float] = {}
    for lid, pid in zip(rows.list_ids.tolist(), pids):
        medians.setdefault(lid, [])
        medians[lid].append(data.products[pid].price)
    medians = {lid: float(np.median(v)) for lid, v in medians.items()}
    out = []
    for lid, pid in zip(rows.list_ids.tolist(), pids):
        session, qid = lid.split("|", 1)
        a, c, b = outcome_probabilities(params, data, users[user_of[session]], qid, pid, medians[lid])
        out.append(a * c * b)
    return np.asarray(out)


def main(argv: list[str] | None = None) -> int:
    from shopsearch.evaluation import auc, mean_list_ndcg
    from shopsearch.judgments import read_queries
    from shopsearch.reranker.cross_encoder_ensemble import is_cross_encoder_dir
    from shopsearch.reranker.model_registry import open_cross_encoder
    from shopsearch.reranker.ranker_training import compare, fit, group_folds
    from shopsearch.reranker.sim_catalog import load_judged
    from shopsearch.reranker.simulate import SimParams, simulate
    from shopsearch.reranker.training_rows import Bm25Scorer, CrossEncoderScorer, build_rows, combine_stages

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--sessions", type=int, default=3000)
    ap.add_argument("--users", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--order", choices=("random", "lexical"), default="random",
                    help="shown order; random (default) makes the held-out labels free of position bias")
    ap.add_argument("--holdout-folds", type=int, default=5, help="hold out 1 of this many query groups")
    ap.add_argument("--objective", choices=("lambdarank", "binary"), default="lambdarank")
    ap.add_argument("--cross-encoder", default="models/ce-minilm", help="cross-encoder model dir (optional)")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    data = load_judged(args.data)
    params = SimParams(sessions=args.sessions, users=args.users, seed=args.seed, order=args.order)
    events = [e for _, evs in simulate(data, params) for e in evs]
    bm25 = Bm25Scorer(data.products)
    ce_dir = Path(args.cross_encoder)
    heldout_file = ce_dir / f"heldout-queries-{Path(args.data).name}.tsv"
    scorers = [bm25]
    if is_cross_encoder_dir(ce_dir):
        scorers.append(CrossEncoderScorer(open_cross_encoder(ce_dir), data.products))
        note = f"cross-encoder: {ce_dir}"
    else:
        note = "cross-encoder: none at %s, compared with BM25 and the shown order instead" % ce_dir
    scored = combine_stages(*scorers)

    def stages(query, pids):  # keep the pid so the simulator's propensities can be looked up per row
        return [{**st, "_pid": pid} for st, pid in zip(scored(query, pids), pids)]

    rows = build_rows(events, data.products, stages_fn=stages, progress=True)
    if heldout_file.is_file():
        heldout = {q.qid for q in read_queries(heldout_file)}
        test_mask = np.array([lid.split("|", 1)[1] in heldout for lid in rows.list_ids.tolist()])  # "session|qid"
        note += f"; held out: its {len(heldout)} test queries ({heldout_file.name})"
    else:
        test_mask = group_folds(rows.query_ids, args.holdout_folds, args.seed) == 0
    train_rows, test_rows = rows.subset(~test_mask), rows.subset(test_mask)
    booster = fit(train_rows, args.objective, "purchase", args.seed)
    candidate = booster.predict(test_rows.X, raw_score=True)
    baselines = {"shown order": -test_rows.positions.astype(float),
                 "bm25": np.array([st.get("bm25", np.nan) for st in test_rows.stages])}
    if len(scorers) > 1:
        baselines["cross-encoder"] = np.array([st.get("cross_encoder", np.nan) for st in test_rows.stages])
    report = compare(test_rows, candidate, baselines)
    # Logged labels favour whatever order was shown (position bias); the simulator's own purchase propensity
    # gives labels free of it: expected purchase-nDCG@10 (gain = propensity) and AUC on Bernoulli draws.
    prop = propensities(test_rows, events, data, params)
    drawn = (np.random.default_rng(args.seed).random(len(prop)) < prop).astype(int)
    gains = propensity_gains(test_rows.list_ids, prop)
    unbiased = {}
    for name, scores in {**baselines, "candidate": candidate}.items():
        sc = np.nan_to_num(np.asarray(scores, dtype=float), nan=-1e18)
        unbiased[name] = (auc(drawn, sc), mean_list_ndcg(test_rows.list_ids, gains, sc, 10)[0])
    print(f"SIMULATED: {args.sessions} sessions ({args.order} order), seed {args.seed}, data {args.data}; train {len(train_rows)} rows / "
          f"test {len(test_rows)} rows ({len(set(test_rows.query_ids.tolist()))} held-out queries); {note}")
    print(f"{'order':<16} {'logged AUC':>10} {'logged purch. nDCG@10':>22} {'lists':>6} | "
          f"{'unbiased AUC':>12} {'expected purch. nDCG@10':>24}")
    for name, m in report.items():
        label = f"lgbm-{args.objective}" if name == "candidate" else name
        u_auc, u_ndcg = unbiased[name]
        print(f"{label:<16} {m['auc']:10.4f} {m['purchase_ndcg@10']:22.4f} {m['lists_with_purchase']:6d} | "
              f"{u_auc:12.4f} {u_ndcg:24.4f}")
    print(f"done in {time.perf_counter() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
