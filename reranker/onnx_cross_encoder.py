"""CPU fast path for the cross-encoder: the model exported to ONNX and dynamically quantised to int8 by ONNX Runtime.

Measured in bench/rerank.py (crowdflower held-out pools, top 30, 2 cores): about twice as fast as torch fp32 and
close to its ranking (per-channel weight scales). Dynamic quantisation scales a run's activations by their range
over the whole input, so in a shared batch a pair's score would depend on the pairs (and padding) beside it: a
product's rank would move when a filter removed another. So each pair runs alone, unpadded, the runs spread over
one single-threaded run per core (``onnx_export.SoloRuns``; bench/RESULTS.md, session 14). Export and
quantisation are torch's and ONNX Runtime's (see shopsearch.indexer.onnx_export). The export is cached under
``cache_dir``, keyed by a hash of the weights, so a retrained model gets its own file and serving processes share
one export. ``CrossEncoderReranker``
falls back to torch fp32, with a warning, when this path cannot be built.

Serving a recorded export imports neither torch nor transformers (issue 16, item 6: a search worker whose profile
reranks stays lean): beside the export, the model's fast tokenizer (``<export>.tokenizer.json``) and a manifest
(``<export>.served.json``: the files and the graph's inputs) are written, and :func:`load_exported` needs only
them, onnxruntime and tokenizers. Pairs are encoded by the same tokenizers library the Hugging Face fast
tokenizer wraps, with its truncation (longest first), so the ids are the torch model's.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from shopsearch.atomic_write import write_atomically
from shopsearch.indexer.onnx_export import OPSET, SoloRuns, export_onnx, exportable_copy, quantize_int8

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
        if not _manifest(out).is_file():  # an export from before manifests: record it now
            _record(out, model.tokenizer, _input_names(model.tokenizer))
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    hf = exportable_copy(model.model)
    # batch and sequence >= 2: torch.export would specialise an axis of size 1
    sample = model.tokenizer([("red lamp", "a red lamp for the desk"), ("oak desk", "a desk")], return_tensors="pt",
                             padding=True)
    names = _input_names(model.tokenizer)

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
    _record(out, model.tokenizer, names)
    return out


def _input_names(tokenizer: Any) -> list[str]:
    """The graph inputs the model's tokenizer produces (RoBERTa-style tokenizers have no token_type_ids)."""
    return [n for n in INPUTS if n in tokenizer.model_input_names]


def _manifest(onnx_path: Path) -> Path:
    return onnx_path.with_name(onnx_path.name.removesuffix(".onnx") + ".served.json")


def _record(onnx_path: Path, tokenizer: Any, inputs: Sequence[str]) -> None:
    """Write the fast tokenizer and the manifest beside the export (the manifest last: it means "complete")."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:  # a slow tokenizer: serving keeps loading the model's tokenizer with transformers
        return
    tok_path = onnx_path.with_name(onnx_path.name.removesuffix(".onnx") + ".tokenizer.json")
    write_atomically(tok_path, backend.to_str())
    record = {"onnx": onnx_path.name, "tokenizer": tok_path.name, "inputs": list(inputs)}
    write_atomically(_manifest(onnx_path), json.dumps(record))


def pair_tokenizer(tokenizer: Any, max_length: int) -> Any:
    """A ``tokenizers.Tokenizer`` (or a Hugging Face fast tokenizer, whose backend is copied) that truncates a
    (query, text) pair longest-first to ``max_length`` tokens, as the Hugging Face tokenizer does when the torch
    model scores; it never pads (each pair runs alone)."""
    from tokenizers import Tokenizer

    backend = getattr(tokenizer, "backend_tokenizer", tokenizer)
    tok = Tokenizer.from_str(backend.to_str())
    tok.enable_truncation(max_length=max_length, strategy="longest_first")
    tok.no_padding()
    return tok


def load_exported(model_dir: str | Path, cache_dir: str | Path, max_length: int,
                  threads: int = 0) -> "OnnxCrossEncoder | None":
    """The int8 scorer of ``model_dir``'s recorded export, built without torch or transformers; None when there
    is no recorded export (the caller then loads the model, which exports and records it).

    Raises:
        Exception: an unreadable manifest or export, or onnxruntime/tokenizers missing (the caller falls back).

    >>> load_exported("models/ce-minilm", "/srv/home/onnx", 256)  # doctest: +SKIP
    <shopsearch.reranker.onnx_cross_encoder.OnnxCrossEncoder object at ...>
    """
    from tokenizers import Tokenizer

    onnx_path = export_path(model_dir, cache_dir)
    manifest = _manifest(onnx_path)
    if not (onnx_path.is_file() and manifest.is_file()):
        return None
    rec = json.loads(manifest.read_text(encoding="utf-8"))
    tok = Tokenizer.from_file(str(onnx_path.with_name(rec["tokenizer"])))
    return OnnxCrossEncoder(onnx_path, pair_tokenizer(tok, max_length), max_length, threads)


class OnnxCrossEncoder:
    """Scores (query, text) pairs with an exported cross-encoder: ``sigmoid(logit)``, as ``CrossEncoder.predict``.

    Each pair is one run of the graph, unpadded, so its score never depends on the pairs scored with it (see the
    module docstring); the runs of a call are spread over ``threads`` single-threaded runs at a time.

    Args:
        onnx_path: an :func:`export_int8` file.
        tokenizer: a :func:`pair_tokenizer` (pairs are encoded exactly as the torch model sees them).
        max_length: token limit of a pair (the tokenizer's truncation).
        threads: pairs scored at once (0: one per physical core).
    """

    def __init__(self, onnx_path: str | Path, tokenizer: Any, max_length: int, threads: int = 0) -> None:
        self.runs = SoloRuns(Path(onnx_path), threads)
        self.inputs = [i.name for i in self.runs.session.get_inputs()]
        self.tokenizer = tokenizer
        self.max_length = max_length

    def predict(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """float32 scores in (0, 1), one per pair; a pair's score is the same in any batch and any order."""
        if not pairs:
            return np.zeros(0, dtype=np.float32)
        feeds = [self._feed(e) for e in self.tokenizer.encode_batch([(q, t) for q, t in pairs])]
        logits = np.array([out[0][0, 0] for out in self.runs.map(feeds)], dtype=np.float64)
        return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)

    def _feed(self, encoding: Any) -> dict[str, np.ndarray]:
        """One pair's inputs, a batch of one."""
        arrays = {"input_ids": encoding.ids, "attention_mask": encoding.attention_mask,
                  "token_type_ids": encoding.type_ids}
        return {name: np.array([arrays[name]], dtype=np.int64) for name in self.inputs}
