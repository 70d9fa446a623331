"""``shopsearch train cross-encoder``: fine-tune the cross-encoder reranker on judged data folders."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

from shopsearch.api.cli_args import add_engine_args, add_model_arg, settings_from_args

HELP = """\
Fine-tune a cross-encoder on judged (query, product) pairs with a query-grouped validation split and early
stopping on validation nDCG@10; writes the model, model_card.json, README.md and calibration.json to --out.

Judged pools alone never show the model the products retrieval puts beside them. --mine NAME=INDEX runs the
training and validation queries of the data folder named NAME through INDEX (profile --mine-profile, engine
--engine) and adds --hard-negatives of the top --mine-depth hits that are not judged for the query, labelled 0
(the assumption nDCG makes of unjudged products). Test queries are never searched. --loss lambda trains on the
order within each query (lists of --list-size products) instead of each pair's grade. --members N trains N
models that differ only in the order they see the pairs and serves the mean of their scores, at N times the
scoring cost; --base-model given N times trains one member from each instead (say a fine-tuned MiniLM and
all-mpnet-base-v2: on crowdflower, as ltr-ce's feature, +0.0031 nDCG@10 over the MiniLM alone, not significant,
at 3.6x its latency on CPU; bench/RESULTS.md, session 27). Example:
  shopsearch index ../shared/data/crowdflower/products.jsonl --index crowdflower --full
  shopsearch train cross-encoder --train ../shared/data/crowdflower --train ../shared/data/homedepot \\
      --mine crowdflower=crowdflower --hard-negatives 8 --out models/ce-minilm
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``cross-encoder`` target to ``train``."""
    p = subparsers.add_parser(
        "cross-encoder", help="fine-tune the cross-encoder reranker (from the packaged all-MiniLM-L6-v2)",
        description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", dest="train_dirs", action="append", required=True, metavar="DATA_DIR",
                   help="data folder in the shared layout (repeatable)")
    p.add_argument("--out", required=True, help="output model folder, e.g. models/ce-minilm")
    p.add_argument("--base-model", action="append", default=None,
                   help="model folder to start from, or a packaged model: all-MiniLM-L6-v2 (default), "
                        "all-mpnet-base-v2 (pip install 'shopsearch[mpnet]'); repeated: an ensemble with one "
                        "member from each, all seeing the pairs in one order")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=3e-5)
    p.add_argument("--warmup-ratio", type=float, default=0.1)
    p.add_argument("--max-length", type=int, default=128, help="token limit of a (query, product) pair")
    p.add_argument("--max-pairs", type=int, default=None,
                   help="cap training pairs per data folder (whole queries, seeded); default: all")
    p.add_argument("--max-valid-pairs", type=int, default=1500, help="cap validation pairs per data folder")
    p.add_argument("--seed", type=int, default=42, help="query split (and pair order); keep it when continuing "
                                                        "from a --base-model, or test queries leak into training")
    p.add_argument("--shuffle-seed", type=int, default=None, help="pair order only (default: --seed)")
    p.add_argument("--members", type=int, default=1, metavar="N",
                   help="train N models on the same split, each seeing the pairs in its own order (shuffle seeds "
                        "S..S+N-1), into --out/m0.. and serve their mean score (ensemble.toml); default 1")
    p.add_argument("--valid-fraction", type=float, default=0.1, help="share of queries held for validation")
    p.add_argument("--test-fraction", type=float, default=0.2,
                   help="share of queries held out entirely (for bench/ce_eval.py)")
    p.add_argument("--folds", type=int, default=0, metavar="K",
                   help="cross-validation: cut the queries into K seeded folds and hold fold --fold out as the "
                        "test set instead of --test-fraction; train K models (--fold 0..K-1) and evaluate them "
                        "together on every query (bench/ce_eval.py --model M0 --model M1 ...)")
    p.add_argument("--fold", type=int, default=0, metavar="I", help="with --folds: the held-out fold, 0..K-1")
    p.add_argument("--eval-steps", type=int, default=0, help="validate every N steps (0: once per epoch)")
    p.add_argument("--patience", type=int, default=2, help="evaluations without improvement before stopping")
    p.add_argument("--mine", action="append", default=[], metavar="NAME=INDEX",
                   help="mine hard negatives for data folder NAME from INDEX (repeatable)")
    p.add_argument("--hard-negatives", type=int, help="--mine: unjudged negatives per mined query (default 8)")
    p.add_argument("--mine-depth", type=int, help="--mine: top hits per query to draw them from (default 30)")
    p.add_argument("--mine-profile", help="--mine: profile whose hits are mined (default: default)")
    add_engine_args(p)
    add_model_arg(p, help="the mined index's query encoder")
    p.add_argument("--teacher", default=None, metavar="MODEL",
                   help="bi-encoder (all-MiniLM-L6-v2 or a folder) whose cosine is blended into the judged labels")
    p.add_argument("--teacher-weight", type=float,
                   help="--teacher: label = (1 - w) * grade + w * teacher similarity (default 0: labels only)")
    p.add_argument("--loss", choices=("bce", "lambda"), default="bce",
                   help="bce: pointwise on normalised grades; lambda: listwise LambdaLoss per query (default bce)")
    p.add_argument("--list-size", type=int, default=16, help="lambda: products per list (default 16)")
    p.add_argument("--device", default=None, help="cpu, cuda... (default: cuda when available)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (mining, training)")
    p.set_defaults(run=run)


def parse_mine(values: list[str], data_dirs: list[str]) -> dict[str, str]:
    """``NAME=INDEX`` values -> {data folder name: index}; ValueError naming a bad or unknown one.

    >>> parse_mine(["crowdflower=cf-v2"], ["../shared/data/crowdflower"])
    {'crowdflower': 'cf-v2'}
    """
    names = {Path(d).name for d in data_dirs}
    out = {}
    for v in values:
        name, sep, index = v.partition("=")
        if not sep or not name or not index:
            raise ValueError(f"--mine {v!r}: expected NAME=INDEX, e.g. crowdflower=crowdflower")
        if name not in names:
            raise ValueError(f"--mine {v!r}: {name!r} is not the name of a --train folder ({', '.join(sorted(names))})")
        out[name] = index
    return out


def run(args: argparse.Namespace) -> int:
    """Mine (when asked), train and report; returns 0, or 1 when a mined index is missing or the engine fails."""
    from shopsearch.api.mining import mine_candidates
    from shopsearch.reranker.ce_training import TrainConfig, resolve_base_model, train_cross_encoder, train_ensemble
    from shopsearch.reranker.cross_encoder_ensemble import MAX_MEMBERS, check_out_folder
    from shopsearch.reranker.training_data import load_judged_set, split_for

    settings = settings_from_args(args)  # resolves --engine for the card's note on where negatives were mined
    bases = args.base_model or []
    if len(bases) > 1 and args.members not in (1, len(bases)):
        raise ValueError(f"--members {args.members} with {len(bases)} --base-model: an ensemble of base models has "
                         f"one member per --base-model; give one --base-model for --members N")
    if len(bases) > MAX_MEMBERS:
        raise ValueError(f"--base-model given {len(bases)} times: an ensemble has at most {MAX_MEMBERS} members")
    if not 1 <= args.members <= MAX_MEMBERS:
        raise ValueError(f"--members {args.members}: must be in 1..{MAX_MEMBERS}")
    members = len(bases) if len(bases) > 1 else args.members
    # every base resolves (a packaged one unpacks) before any mining or training, so a typo fails at once
    bases = [str(resolve_base_model(b, settings.cache_dir)) for b in bases]
    twice = sorted({b for b in bases if bases.count(b) > 1})
    if twice:
        raise ValueError(f"--base-model {twice[0]!r} given twice: its members would be one model served twice; "
                         f"for seeds of one base give it once with --members N")
    mine = parse_mine(args.mine, args.train_dirs)
    # a flag of a step not asked for is an error, not silently dropped
    for flag, value, needs, given in (("--hard-negatives", args.hard_negatives, "--mine", mine),
                                      ("--mine-depth", args.mine_depth, "--mine", mine),
                                      ("--mine-profile", args.mine_profile, "--mine", mine),
                                      ("--teacher-weight", args.teacher_weight, "--teacher", args.teacher)):
        if value is not None and not given:
            raise ValueError(f"{flag} is for {needs}")
    if args.teacher and not args.teacher_weight:
        raise ValueError("--teacher needs --teacher-weight W (0 < W <= 1): with none, the teacher is not used")
    hard_negatives = 8 if args.hard_negatives is None else args.hard_negatives
    mine_depth = 30 if args.mine_depth is None else args.mine_depth
    mine_profile = args.mine_profile or "default"
    config = TrainConfig(
        data_dirs=tuple(args.train_dirs), out=args.out, base_model=bases[0] if bases else None,
        epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, warmup_ratio=args.warmup_ratio, max_length=args.max_length,
        max_pairs=args.max_pairs, max_valid_pairs=args.max_valid_pairs, seed=args.seed,
        shuffle_seed=args.shuffle_seed,
        valid_fraction=args.valid_fraction, test_fraction=args.test_fraction, folds=args.folds, fold=args.fold,
        eval_steps=args.eval_steps,
        patience=args.patience, hard_negatives=hard_negatives if mine else 0, mine_depth=mine_depth,
        mined_from=", ".join(f"{n}: index {i!r} ({args.engine}), profile {mine_profile!r}"
                             for n, i in sorted(mine.items())) or None, teacher=args.teacher,
        teacher_weight=args.teacher_weight or 0.0, loss=args.loss, list_size=args.list_size,
        device=args.device)
    config.validate()
    check_out_folder(args.out)  # before mining and training: the new model replaces --out whole
    candidates = {}
    for d in args.train_dirs:
        name = Path(d).name
        if name not in mine:
            continue
        data = load_judged_set(d)
        split = split_for({q.query_id for q in data.qrels}, asdict(config), config.seed)
        texts = {q: data.queries[q] for q in data.by_query() if q not in split.test}
        mined = mine_candidates(args, mine[name], texts, mine_profile, config.mine_depth,
                                "train cross-encoder", catalog=f"{d}/products.jsonl")
        if mined is None:
            return 1
        candidates[name] = mined
    if members == 1:
        train_cross_encoder(config, candidates, progress=not args.no_progress)
    else:
        train_ensemble(config, candidates, members, progress=not args.no_progress,
                       base_models=bases if len(bases) > 1 else None)
    return 0
