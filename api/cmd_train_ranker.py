"""``shopsearch train ranker``: a LightGBM conversion model from behaviour events (simulated or real)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``ranker`` target under ``train``."""
    p = subparsers.add_parser(
        "ranker", help="LightGBM conversion model (lambdarank or binary) from events JSONL",
        description="Build rows from impressions (labelled by later click/purchase in the same session and "
                    "query_id), cross-validate grouped by query_id, fit LightGBM and save model.txt + model card.")
    p.add_argument("--events", required=True, help="events JSONL (shopsearch simulate-events or the API log)")
    p.add_argument("--data", required=True, help="data folder with products.jsonl (+ queries/qrels) for product "
                                                 "fields and the BM25 features")
    p.add_argument("--out", required=True, help="model directory to write, e.g. models/lgbm-sim")
    p.add_argument("--objective", choices=("lambdarank", "binary"), default="lambdarank")
    p.add_argument("--target", choices=("purchase", "click"), default="purchase")
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds, grouped by query_id (default 5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--features", help="comma-separated feature names (default: DEFAULT_MODEL_FEATURES)")
    p.add_argument("--cross-encoder", metavar="MODEL",
                   help="cross-encoder (model name or folder) that scores every impression for the cross_encoder "
                        "feature; use the one the serving profile's rerank stage runs. Without it the feature is "
                        "missing in training and the model ignores it")
    p.add_argument("--bi-encoder", metavar="MODEL",
                   help="the index's bi-encoder (all-MiniLM-L6-v2 or a folder): fills the vector-similarity "
                        "features (knn, knn_list_rank) as the k-NN leg scores them; without it they are missing")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Train, cross-validate and save; prints a one-line summary. Returns 0."""
    import time

    from shopsearch.events import read_events
    from shopsearch.reranker.features import DEFAULT_MODEL_FEATURES
    from shopsearch.reranker.ranker_training import file_sha256, save, train
    from shopsearch.reranker.sim_catalog import load_judged
    from shopsearch.reranker.model_registry import load_cross_encoder
    from shopsearch.reranker.training_rows import (Bm25Scorer, CrossEncoderScorer, VectorScorer, build_rows,
                                                   combine_stages)

    t0 = time.perf_counter()
    names = tuple(n.strip() for n in args.features.split(",") if n.strip()) if args.features \
        else DEFAULT_MODEL_FEATURES
    data = load_judged(args.data)
    events = list(read_events(args.events))
    scorers = [Bm25Scorer(data.products)]
    if args.bi_encoder:
        from shopsearch.indexer.embedder import BiEncoder

        scorers.append(VectorScorer(BiEncoder(args.bi_encoder), data.products))
    if args.cross_encoder:
        scorers.append(CrossEncoderScorer(load_cross_encoder(args.cross_encoder), data.products))
    stages_fn = combine_stages(*scorers)
    rows = build_rows(events, data.products, names, stages_fn=stages_fn, progress=True)
    result = train(rows, objective=args.objective, target=args.target, folds=args.folds, seed=args.seed,
                   progress=True)
    model = save(result, rows, args.out, {
        "events": str(args.events), "events_sha256": file_sha256(args.events), "events_count": len(events),
        "data_dir": str(args.data), "simulated": any(e.simulated for e in events),
        "cross_encoder": args.cross_encoder, "bi_encoder": args.bi_encoder})
    mean = model.card["cv"]["mean"]
    dt = time.perf_counter() - t0
    print(f"saved {args.out}: {len(rows)} rows, {model.card['data']['lists']} lists, {args.folds}-fold CV by "
          f"query_id AUC {mean['auc']:.4f}, purchase nDCG@10 {mean['purchase_ndcg@10']:.4f}; {dt:.1f}s, "
          f"{len(rows) / max(dt, 1e-9):.0f} rows/s")
    return 0
