"""``shopsearch train calibration``: refit a cross-encoder's calibration on its validation queries, as served."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = """\
Refit the isotonic map from a trained cross-encoder's score to each data folder's raw rating scale on every
validation query of its seeded split (never a test query), scoring them the way the model is served: ONNX
Runtime int8 on CPU, fp16 on CUDA, or fp32 with --fp32. Rewrites calibration.json and records the fit in
model_card.json. Example:
  shopsearch train calibration --model models/ce-minilm --data ../shared/data/homedepot \\
      --data ../shared/data/crowdflower
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``calibration`` target to ``train``."""
    p = subparsers.add_parser("calibration", description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
                              help="refit a cross-encoder's score calibration on its validation queries")
    p.add_argument("--model", required=True, help="trained cross-encoder folder, e.g. models/ce-minilm")
    p.add_argument("--data", dest="data_dirs", action="append", required=True, metavar="DATA_DIR",
                   help="a data folder the model was trained on (repeatable)")
    p.add_argument("--fp32", action="store_true", help="score in fp32 instead of the CPU int8 fast path")
    p.add_argument("--device", default=None, help="cpu, cuda... (default: cuda when available)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Refit, print a line per data folder and a summary; returns 0."""
    import time

    from shopsearch.reranker.model_registry import open_cross_encoder
    from shopsearch.reranker.recalibration import recalibrate

    started = time.perf_counter()
    rr = open_cross_encoder(Path(args.model), device=args.device, fast_cpu=not args.fp32)
    report = recalibrate(args.model, args.data_dirs, rr.score, rr.precision)
    for name, r in report.items():
        print(f"  {name}: {r['queries']} validation queries, {r['pairs']} pairs: RMSE calibrated "
              f"{r['rmse_calibrated']:.4f} vs predict-the-mean {r['rmse_mean']:.4f}")
    pairs = sum(r["pairs"] for r in report.values())
    seconds = time.perf_counter() - started
    print(f"calibrated {args.model} ({rr.precision}) on {pairs} validation pairs of {len(report)} data folder(s) "
          f"in {seconds:.0f} s ({pairs / max(seconds, 1e-9):.0f} pairs/s)")
    return 0
