"""CPU fast path for the cross-encoder: the model exported to ONNX and dynamically quantised to int8 by ONNX Runtime.

Measured in bench/rerank.py (crowdflower held-out pools, top 30, 2 threads): 2.7x faster than torch fp32 and
close to its ranking (per-channel weight scales). Export and quantisation are torch's and ONNX Runtime's (see
shopsearch.indexer.onnx_export). The export is cached under ``cache_dir``, keyed by a hash of the weights, so a
retrained model gets its own file and serving processes share one export. ``CrossEncoderReranker`` falls back to
torch fp32, with a warning, when this path cannot be built.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from shopsearch.indexer.onnx_export import OPSET, cpu_session, export_onnx, exportable_copy, quantize_int8

# Bump when the exported graph changes (inputs, outputs, exporter): old cache files are then ignored.
EXPORT_FORMAT = "ce-logit-int8-per-channel-v2-dynamo-eager"
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "config.json")
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def export_path(model_dir: str | Path, cache_dir: str | Path) -> Path:
    """Where the int8 export of ``model_dir`` lives: ``<cache_dir>/ce-<name>-<digest of the weights>.onnx``."""
    model_dir = Path(model_dir)
    h = hashlib.sha256(f"{EXPORT_FORMAT}|opset={OPSET}".encode())
    for name in _WEIGHT_FILES:
        f = model_dir / name
        if f.is_file():
            h.update(name.encode())
            with f.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
    slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in model_dir.resolve().name)[-40:]
    return Path(cache_dir) / f"ce-{slug}-{h.hexdigest()[:16]}.onnx"


def export_int8(model: Any, model_dir: str | Path, cache_dir: str | Path) -> Path:
    """Export a loaded sentence-transformers ``CrossEncoder`` to ONNX, quantise it to int8, cache it; returns the path.

    An existing export is reused; the file appears atomically (see ``quantize_int8``).

    Args:
        model: the loaded ``CrossEncoder`` (any device or dtype: a float32 CPU copy is exported).
        model_dir: its folder (the cache key hashes its weights).
        cache_dir: where exports live (created).
    Raises:
        ImportError: onnx, onnxscript or onnxruntime is missing. Exception: whatever the exporter or the
            quantiser raises (``CrossEncoderReranker`` then falls back to torch).
    Example:
        >>> export_int8(CrossEncoder("models/ce-minilm"), "models/ce-minilm", "/tmp/onnx")  # doctest: +SKIP
        PosixPath('/tmp/onnx/ce-ce-minilm-3f2a....onnx')
    """
    import torch

    out = export_path(model_dir, cache_dir)
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    hf = exportable_copy(model.model)
    # batch and sequence >= 2: torch.export would specialise an axis of size 1
    sample = model.tokenizer([("red lamp", "a red lamp for the desk"), ("oak desk", "a desk")], return_tensors="pt",
                             padding=True)
    names = [n for n in INPUTS if n in sample]

    class Logits(torch.nn.Module):
        """The tokenizer's tensors, positionally (what the exporter passes) -> the one relevance logit."""

        def __init__(self, inner: torch.nn.Module):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}  # RoBERTa has none
            return self.inner(input_ids=input_ids, attention_mask=attention_mask, **extra).logits

    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        export_onnx(Logits(hf), {n: sample[n] for n in names}, "logits", fp32)
        quantize_int8(fp32, out)
    return out


class OnnxCrossEncoder:
    """Scores (query, text) pairs with an exported cross-encoder: ``sigmoid(logit)``, as ``CrossEncoder.predict``.

    Args:
        onnx_path: an :func:`export_int8` file.
        tokenizer: the model's Hugging Face tokenizer (pairs are encoded exactly as the torch model sees them).
        max_length: token limit of a pair.
        threads: onnxruntime intra-op threads (0: its default, one per core).
    """

    def __init__(self, onnx_path: str | Path, tokenizer: Any, max_length: int, threads: int = 0) -> None:
        self.session = cpu_session(Path(onnx_path), threads)
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.tokenizer = tokenizer
        self.max_length = max_length

    def predict(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """float32 scores in (0, 1), one per pair."""
        if not pairs:
            return np.zeros(0, dtype=np.float32)
        enc = self.tokenizer([p[0] for p in pairs], [p[1] for p in pairs], padding=True, truncation=True,
                             max_length=self.max_length, return_tensors="np")
        logits = self.session.run(None, {n: enc[n].astype(np.int64) for n in self.inputs})[0][:, 0]
        return (1.0 / (1.0 + np.exp(-logits.astype(np.float64)))).astype(np.float32)
