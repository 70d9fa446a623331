"""``shopsearch train cross-encoder``: fine-tune the cross-encoder reranker on judged data folders."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``cross-encoder`` target to ``train``."""
    p = subparsers.add_parser(
        "cross-encoder", help="fine-tune the cross-encoder reranker (from the packaged all-MiniLM-L6-v2)",
        description="Fine-tune a cross-encoder on judged (query, product) pairs with a query-grouped validation "
                    "split and early stopping on validation nDCG@10; writes the model, model_card.json, "
                    "README.md and calibration.json to --out.")
    p.add_argument("--train", dest="train_dirs", action="append", required=True, metavar="DATA_DIR",
                   help="data folder in the shared layout (repeatable)")
    p.add_argument("--out", required=True, help="output model folder, e.g. models/ce-minilm")
    p.add_argument("--base-model", default=None, help="local model folder to start from (default: packaged MiniLM)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=3e-5)
    p.add_argument("--warmup-ratio", type=float, default=0.1)
    p.add_argument("--max-length", type=int, default=128, help="token limit of a (query, product) pair")
    p.add_argument("--max-pairs", type=int, default=None,
                   help="cap training pairs per data folder (whole queries, seeded); default: all")
    p.add_argument("--max-valid-pairs", type=int, default=1500, help="cap validation pairs per data folder")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--valid-fraction", type=float, default=0.1, help="share of queries held for validation")
    p.add_argument("--test-fraction", type=float, default=0.2,
                   help="share of queries held out entirely (for bench/ce_eval.py)")
    p.add_argument("--eval-steps", type=int, default=0, help="validate every N steps (0: once per epoch)")
    p.add_argument("--patience", type=int, default=2, help="evaluations without improvement before stopping")
    p.add_argument("--device", default=None, help="cpu, cuda... (default: cuda when available)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Train and report; returns 0."""
    from shopsearch.reranker.ce_training import TrainConfig, train_cross_encoder

    config = TrainConfig(
        data_dirs=tuple(args.train_dirs), out=args.out, base_model=args.base_model, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, warmup_ratio=args.warmup_ratio, max_length=args.max_length,
        max_pairs=args.max_pairs, max_valid_pairs=args.max_valid_pairs, seed=args.seed,
        valid_fraction=args.valid_fraction, test_fraction=args.test_fraction, eval_steps=args.eval_steps,
        patience=args.patience, device=args.device)
    train_cross_encoder(config)
    return 0
