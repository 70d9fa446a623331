"""The bi-encoder quantised to int8 and run by ONNX Runtime, for indexing: ``shopsearch index --encoder onnx-int8``.

The fp32 export of the query encoder (onnx_encoder.py, verified against torch) is quantised with ONNX Runtime's
dynamic quantiser (per-channel int8 weights, as the cross-encoder's fast path; onnx_export.quantize_int8) into
``<export>.int8.onnx`` beside it. Its vectors are not torch's: its fingerprint is the model's plus ``|onnx-int8``,
so they get their own vector-cache keys and change-detection hashes, and the index records the encoder
(encoder_record.py). Their cosine to the fp32 vectors and the nDCG@10 cost are measured in bench/indexing.py and
bench/RESULTS.md. Each text is embedded in a run of its own, unpadded (``OnnxQueryEncoder(solo=True)``): the
quantiser scales activations per run, so in a shared batch a product's vector would depend on the rows beside it,
and a product re-embedded by an increment would not get the vector a full run gave it.

Like the query encoder's export, a small manifest (``*.int8.served.json``, found from the model's name, weight
digest and requested max_length) records it, so indexing worker processes load it with onnxruntime and tokenizers
only: neither torch nor transformers (a lean worker starts in a fraction of a second and holds ~100 MB).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from shopsearch.atomic_write import write_atomically

from .embedder import DEFAULT_MODEL, model_name, resolve_model_dir, weights_digest
from .encoder_record import INT8_SUFFIX
from .onnx_encoder import OnnxQueryEncoder, export_paths, manifest_path
from .onnx_export import quantize_int8

log = logging.getLogger(__name__)


def int8_manifest_path(cache_dir: Path, model: str | os.PathLike[str], max_length: int) -> Path:
    """Where the int8 export of ``model`` (asked for at ``max_length``) is recorded; reads the weights, no torch."""
    fp32 = manifest_path(cache_dir, model_name(model), weights_digest(resolve_model_dir(model)), max_length)
    return fp32.with_name(fp32.name.removesuffix(".served.json") + ".int8.served.json")


def int8_encoder(model: str | os.PathLike[str] = DEFAULT_MODEL, *, cache_dir: str | os.PathLike[str],
                 max_length: int = 256, threads: int = 0) -> OnnxQueryEncoder:
    """The int8 bi-encoder of ``model``: loaded from its recorded export (torch-free), else exported now.

    Args:
        model: bi-encoder name or directory (as BiEncoder takes).
        cache_dir: where ONNX exports live (the settings' ``onnx_dir``).
        max_length: tokens per product text (clamped to the model's limit as BiEncoder does).
        threads: texts embedded at once, one single-threaded run each (0: one per physical core; a pool of N
            workers gives each cores / N).

    Returns:
        An OnnxQueryEncoder whose fingerprint ends with ``|onnx-int8``.

    Raises:
        ValueError: a bad ``model``/``max_length``, or an unsupported model pipeline (from the fp32 export).
        ImportError: onnx, onnxscript or onnxruntime is missing (exporting only).

    >>> enc = int8_encoder("all-MiniLM-L6-v2", cache_dir="/tmp/onnx")  # doctest: +SKIP
    >>> enc.fingerprint.endswith("|onnx-int8"), enc.encode(["red lamp"]).shape  # doctest: +SKIP
    (True, (1, 384))
    """
    cache = Path(cache_dir)
    manifest = int8_manifest_path(cache, model, max_length)
    if manifest.is_file():
        rec = json.loads(manifest.read_text(encoding="utf-8"))
        onnx_path, tokenizer_path = cache / rec["onnx"], cache / rec["tokenizer"]
        if onnx_path.is_file() and tokenizer_path.is_file():
            return OnnxQueryEncoder(onnx_path, tokenizer_path, fingerprint=rec["fingerprint"], dims=rec["dims"],
                                    max_length=rec["max_length"], name=rec["name"], threads=threads, solo=True)
    fp32 = OnnxQueryEncoder.from_bi_encoder(model, cache_dir=cache, max_length=max_length)  # loads torch
    onnx_path = fp32.onnx_path.with_name(fp32.onnx_path.name.removesuffix(".onnx") + ".int8.onnx")
    if not onnx_path.is_file():
        quantize_int8(fp32.onnx_path, onnx_path)
        log.info("quantised %s to int8: %s", fp32.name, onnx_path)
    tokenizer_path = export_paths(cache, fp32.fingerprint)[1]
    enc = OnnxQueryEncoder(onnx_path, tokenizer_path, fingerprint=fp32.fingerprint + INT8_SUFFIX, dims=fp32.dims,
                           max_length=fp32.max_length, name=fp32.name, threads=threads, solo=True)
    record = {"fingerprint": enc.fingerprint, "dims": enc.dims, "max_length": enc.max_length, "name": enc.name,
              "onnx": onnx_path.name, "tokenizer": tokenizer_path.name}
    write_atomically(manifest, json.dumps(record))
    return enc
