"""``shopsearch train bi-encoder``: fine-tune the retrieval bi-encoder with hard negatives mined from an index."""

from __future__ import annotations

import argparse

from shopsearch.api.cli_args import add_engine_args, add_model_arg

HELP = """\
Fine-tune the bi-encoder (default: the packaged all-MiniLM-L6-v2) with MultipleNegativesRankingLoss on judged
(query, relevant product) pairs of DATA_DIR (shared layout), plus hard negatives: the top hits of --index for each
training query (profile --mine-profile) that are judged 0 or unjudged. Queries are split by query (seeded);
the --test-fraction held out (or fold --fold of --folds) is never trained on and is written to
OUT/heldout-queries.tsv.

Writes the model, model_card.json and README.md to --out. The index must then be rebuilt with the new model
into a separate index to use it, e.g.
  shopsearch index DATA_DIR/products.jsonl --index crowdflower-bi --model OUT --full
  shopsearch eval --index crowdflower-bi --model OUT --profile dense --queries OUT/heldout-queries.tsv --qrels ...
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``bi-encoder`` target to ``train``."""
    p = subparsers.add_parser("bi-encoder", help="fine-tune the retrieval bi-encoder (MNRL + mined hard negatives)",
                              description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, metavar="DATA_DIR", help="data folder in the shared layout")
    p.add_argument("--index", required=True, help="index to mine hard negatives from (built with --model)")
    add_engine_args(p)
    p.add_argument("--out", required=True, help="output model folder, e.g. models/bi-crowdflower")
    add_model_arg(p, help="base model, also the index's query encoder for mining", setting=False)
    p.add_argument("--mine-profile", default="default", help="profile whose hits are mined (default: default)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-5)
    p.add_argument("--hard-negatives", type=int, default=1, help="mined negatives per (query, positive) row")
    p.add_argument("--mine-depth", type=int, default=30, help="top hits per query to mine from (default 30)")
    p.add_argument("--min-positive-grade", type=int, default=2, help="grade a positive needs (default 2)")
    p.add_argument("--max-positives-per-query", type=int, default=8)
    p.add_argument("--max-length", type=int, default=128, help="token limit per text (default 128)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--test-fraction", type=float, default=0.2, help="share of queries held out (default 0.2)")
    p.add_argument("--folds", type=int, default=0, metavar="K",
                   help="cross-validation: cut the queries into K seeded folds and hold fold --fold out instead of "
                        "--test-fraction; K models (--fold 0..K-1) are then evaluated together on every query")
    p.add_argument("--fold", type=int, default=0, metavar="I", help="with --folds: the held-out fold, 0..K-1")
    p.add_argument("--device", default=None, help="cpu, cuda... (default: cuda when available)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (mining, training)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Mine, train and report; returns the exit code (1 when the index is missing or the engine fails)."""
    from shopsearch.api.mining import mine_candidates
    from shopsearch.reranker.bi_encoder_training import BiTrainConfig, train_bi_encoder
    from shopsearch.reranker.training_data import load_judged_set

    config = BiTrainConfig(
        data_dir=args.data, out=args.out, base_model=args.model, epochs=args.epochs, batch_size=args.batch_size,
        lr=args.lr, hard_negatives=args.hard_negatives, mine_depth=args.mine_depth,
        min_positive_grade=args.min_positive_grade, max_positives_per_query=args.max_positives_per_query,
        max_length=args.max_length, seed=args.seed, test_fraction=args.test_fraction, folds=args.folds,
        fold=args.fold, device=args.device)
    config.validate()
    data = load_judged_set(args.data)
    split = config.split({q.query_id for q in data.qrels})
    texts = {q: data.queries[q] for q in data.by_query() if q in split.train}
    candidates = mine_candidates(args, args.index, texts, args.mine_profile, args.mine_depth, "train bi-encoder",
                                 catalog=f"{args.data}/products.jsonl")
    if candidates is None:
        return 1
    train_bi_encoder(config, candidates, progress=not args.no_progress)
    return 0
