"""A CPU query encoder: the bi-encoder exported to ONNX and run by onnxruntime, one query per call.

On CPU, onnxruntime embeds one all-MiniLM-L6-v2 query in ~3.75 ms p50 against ~11.9 ms for the torch
sentence-transformers pipeline (1 thread, identical vectors): the difference matters for the search API's
"total p95 <= 60 ms" target. Indexing keeps torch (batched throughput is fine there).

The export (transformer + attention-masked mean pooling + L2 normalisation, what the packaged model's
sentence-transformers modules do; torch's exporter, see onnx_export.py) is cached under ``cache_dir``, keyed by
the BiEncoder's fingerprint (which holds a hash of the weights), so a fine-tuned or retrained model gets its own
file. ``load_query_encoder`` picks ONNX or torch per the ``query_encoder`` setting and falls back to torch, with a
warning, whenever ONNX cannot be used.

Serving an existing export imports neither torch nor sentence-transformers nor transformers (a search worker then
holds a few hundred MB instead of over a GB; bench/worker_rss.py): next to each export a small manifest, found from
what can be read without loading the model (its name, a digest of its weight files, the requested max_length),
records the BiEncoder's fingerprint, dims and clamped max_length. Only exporting, verifying against torch and the
fallback load torch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Sequence, Union

import numpy as np

from shopsearch.atomic_write import write_atomically
from shopsearch.settings import QUERY_ENCODERS

from .embedder import DEFAULT_MODEL, BiEncoder, model_name, resolve_model_dir, weights_digest
from .onnx_export import OPSET, SoloRuns, cpu_session, export_onnx, exportable_copy, onnx_available

log = logging.getLogger(__name__)

# Bump when the exported graph changes (inputs, pooling, exporter): old cache files are then ignored.
EXPORT_FORMAT = "mean-norm-v2-dynamo-eager"
OUTPUT = "sentence_embedding"
# Texts checked against torch right after an export (or a cache load, when a BiEncoder is at hand).
_PROBES = ("red lamp", "Kinder-Fahrradhelm für Mädchen, blau", "usb c cable " * 80)
_MIN_PROBE_COSINE = 0.9999
_CHUNK = 64  # texts per session.run in encode(): bounds the padded batch's memory

QueryEncoder = Union[BiEncoder, "OnnxQueryEncoder"]


def export_paths(cache_dir: Path, fingerprint: str) -> tuple[Path, Path]:
    """(model.onnx, tokenizer.json) paths of the export for ``fingerprint`` under ``cache_dir``.

    >>> export_paths(Path("/c"), "all-MiniLM-L6-v2|abc|len=256|d=384")[0].name  # doctest: +ELLIPSIS
    'all-MiniLM-L6-v2-...onnx'
    """
    digest = hashlib.sha1(f"{EXPORT_FORMAT}|opset={OPSET}|{fingerprint}".encode()).hexdigest()[:16]
    slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in fingerprint.split("|", 1)[0])[-48:]
    stem = f"{slug}-{digest}"
    return cache_dir / f"{stem}.onnx", cache_dir / f"{stem}.tokenizer.json"


def manifest_path(cache_dir: Path, name: str, weights: str, max_length: int) -> Path:
    """The manifest of the export for model ``name`` with weight digest ``weights`` asked for at ``max_length``.

    Keyed by what is known before the model is loaded (``max_length`` as requested, before the model's clamp).

    >>> manifest_path(Path("/c"), "all-MiniLM-L6-v2", "abc", 256).name  # doctest: +ELLIPSIS
    'all-MiniLM-L6-v2-...served.json'
    """
    key = f"{EXPORT_FORMAT}|opset={OPSET}|{name}|{weights}|requested_len={max_length}"
    slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[-48:]
    return cache_dir / f"{slug}-{hashlib.sha1(key.encode()).hexdigest()[:16]}.served.json"


def _write_manifest(path: Path, enc: "OnnxQueryEncoder") -> None:
    """Record ``enc``'s identity beside its export, so the next process serves it without loading torch."""
    record = {"fingerprint": enc.fingerprint, "dims": enc.dims, "max_length": enc.max_length, "name": enc.name}
    try:
        write_atomically(path, json.dumps(record))
    except OSError as exc:  # a read-only cache still serves; later processes just load torch once more
        log.warning("could not record the ONNX export in %s (%s); workers will load torch to find it", path, exc)


def _load_exported(manifest: Path, cache_dir: Path) -> "OnnxQueryEncoder | None":
    """The encoder of the export ``manifest`` records (torch-free), or None when there is none.

    Raises:
        Exception: an unreadable manifest or export, or onnxruntime missing (the caller falls back).
    """
    if not manifest.is_file():
        return None
    record = json.loads(manifest.read_text(encoding="utf-8"))
    onnx_path, tokenizer_path = export_paths(cache_dir, record["fingerprint"])
    if not (onnx_path.is_file() and tokenizer_path.is_file()):
        return None
    return OnnxQueryEncoder(onnx_path, tokenizer_path, fingerprint=record["fingerprint"], dims=record["dims"],
                            max_length=record["max_length"], name=record["name"])


def cuda_available() -> bool:
    """``torch.cuda.is_available()``, without importing torch where no CUDA driver library exists (CPU servers)."""
    import ctypes

    for lib in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            ctypes.CDLL(lib)  # loading only: no cuInit, which must not happen before gunicorn forks
        except OSError:
            continue
        import torch

        return torch.cuda.is_available()
    return False


def _check_pipeline(bi: BiEncoder) -> None:
    """Raise ValueError unless ``bi`` is Transformer -> mean Pooling [-> Normalize] (what the export reproduces)."""
    names = [type(m).__name__ for m in bi._st]
    if names[:2] != ["Transformer", "Pooling"] or any(n != "Normalize" for n in names[2:]):
        raise ValueError(f"ONNX export supports Transformer -> Pooling(mean) [-> Normalize]; got {names}")
    pooling = bi._st[1].get_config_dict()
    mode = pooling.get("pooling_mode")
    if mode is None:  # older configs: one boolean per mode
        mode = "mean" if pooling.get("pooling_mode_mean_tokens") and sum(
            bool(v) for k, v in pooling.items() if k.startswith("pooling_mode_")) == 1 else str(pooling)
    if mode != "mean":
        raise ValueError(f"ONNX export supports mean pooling only; the model pools with {mode!r}")


def _export(bi: BiEncoder, onnx_path: Path, tokenizer_path: Path) -> None:
    """Export ``bi``'s transformer + mean pooling + normalisation (fp32, CPU) and its truncating tokenizer."""
    import torch

    class MeanPooled(torch.nn.Module):
        """input_ids, attention_mask -> unit-length mean of the token states (transformers 5 wants kwargs)."""

        def __init__(self, transformer: torch.nn.Module):
            super().__init__()
            self.transformer = transformer

        def forward(self, input_ids, attention_mask):
            out = self.transformer(input_ids=input_ids, attention_mask=attention_mask)
            states = out[0]
            mask = attention_mask.unsqueeze(-1).to(states.dtype)
            mean = (states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, p=2.0, dim=1)

    _check_pipeline(bi)
    transformer = exportable_copy(bi._st[0].auto_model)
    tokenizer = _tokenizer_of(bi)
    batch = tokenizer.encode_batch(["red lamp", "a longer example query text"])  # batch and sequence >= 2
    sample = {"input_ids": torch.tensor([e.ids for e in batch], dtype=torch.int64),
              "attention_mask": torch.tensor([e.attention_mask for e in batch], dtype=torch.int64)}
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(tokenizer_path, tokenizer.to_str())
    export_onnx(MeanPooled(transformer), sample, OUTPUT, onnx_path)  # last: its presence means "complete"


def _tokenizer_of(bi: BiEncoder):
    """A copy of ``bi``'s fast tokenizer truncating at ``bi.max_length``, padding a batch to its longest text."""
    from tokenizers import Tokenizer

    backend = getattr(bi._st[0].tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ValueError("ONNX export needs a fast (tokenizers-backed) tokenizer; the model has "
                         f"{type(bi._st[0].tokenizer).__name__}")
    tok = Tokenizer.from_str(backend.to_str())
    tok.enable_truncation(max_length=bi.max_length)
    pad_id = tok.token_to_id("[PAD]") if tok.padding is None else tok.padding["pad_id"]
    pad_token = "[PAD]" if tok.padding is None else tok.padding["pad_token"]
    tok.enable_padding(pad_id=pad_id or 0, pad_token=pad_token)  # to the batch's longest text
    return tok


class OnnxQueryEncoder:
    """Embeds queries with onnxruntime on one CPU thread; same interface as BiEncoder for the search side.

    Thread-safe: onnxruntime sessions may be run from several threads at once (the API's request threads).
    Build it with :meth:`from_bi_encoder`. ``solo=True`` (the int8 export, onnx_int8.py) embeds each text in a run
    of its own, unpadded, ``threads`` runs at a time: dynamic quantisation would otherwise make a product's
    vector depend on the catalog rows embedded with it (see ``onnx_export.SoloRuns``).

    Attributes:
        dims, fingerprint, max_length, name: as the BiEncoder it was exported from (fingerprints are equal, so
            vector caches and index checks agree).
        onnx_path: the cached export in use.
        exported: True when this construction ran the export (False: loaded from the cache).
    """

    def __init__(self, onnx_path: Path, tokenizer_path: Path, *, fingerprint: str, dims: int, max_length: int,
                 name: str, exported: bool = False, threads: int = 1, solo: bool = False):
        from tokenizers import Tokenizer

        self._tokenizer = Tokenizer.from_file(str(tokenizer_path))  # read-only after this: safe across threads
        self._solo = SoloRuns(Path(onnx_path), threads) if solo else None
        if self._solo is not None:
            self._session = self._solo.session
            self._tokenizer.no_padding()
        else:
            # One query at a time per request thread: more intra-op threads only add hand-off cost at this size.
            self._session = cpu_session(onnx_path, threads=threads)
        self.onnx_path = Path(onnx_path)
        self.fingerprint = fingerprint
        self.dims = int(dims)
        self.max_length = int(max_length)
        self.name = name
        self.exported = exported

    @classmethod
    def from_bi_encoder(cls, model: str | os.PathLike[str] | BiEncoder = DEFAULT_MODEL, *,
                        cache_dir: str | os.PathLike[str], max_length: int = 256,
                        verify: bool = True) -> "OnnxQueryEncoder":
        """Export ``model`` to ONNX once (cached by its fingerprint) and load it.

        Args:
            model: a BiEncoder (any device), or a model name/directory loaded as ``BiEncoder(model, device="cpu",
                max_length=max_length)``.
            cache_dir: where exports live (created); one ``<model>-<digest>.onnx`` + ``.tokenizer.json`` each.
            max_length: token limit when ``model`` is a name (a BiEncoder brings its own).
            verify: compare a few probe texts against the torch BiEncoder (cosine > 0.9999) before returning.

        Returns:
            The encoder; ``.exported`` says whether the export ran now.

        Raises:
            ValueError: the model's pipeline is not Transformer -> mean Pooling [-> Normalize], its tokenizer is
                not a fast one, or the ONNX vectors disagree with torch's.
            ImportError: onnx, onnxscript or onnxruntime is missing.
            Exception: whatever torch.onnx.export raises (callers that must not fail use load_query_encoder).

        >>> enc = OnnxQueryEncoder.from_bi_encoder("all-MiniLM-L6-v2", cache_dir="/tmp/onnx")  # doctest: +SKIP
        >>> enc.encode_one("red lamp").shape  # doctest: +SKIP
        (384,)
        """
        bi = model if isinstance(model, BiEncoder) else BiEncoder(model, device="cpu", max_length=max_length)
        onnx_path, tokenizer_path = export_paths(Path(cache_dir), bi.fingerprint)
        exported = False
        if not (onnx_path.is_file() and tokenizer_path.is_file()):
            import time

            t = time.perf_counter()
            _export(bi, onnx_path, tokenizer_path)
            exported = True
            log.info("exported %s to %s in %.1f s", bi.name, onnx_path, time.perf_counter() - t)
        enc = cls(onnx_path, tokenizer_path, fingerprint=bi.fingerprint, dims=bi.dims, max_length=bi.max_length,
                  name=bi.name, exported=exported)
        if verify:
            cosines = np.sum(enc.encode(_PROBES) * bi.encode(_PROBES), axis=1)
            if float(cosines.min()) < _MIN_PROBE_COSINE:
                raise ValueError(f"ONNX vectors disagree with torch for {bi.name}: cosines {cosines.round(5)} "
                                 f"(need > {_MIN_PROBE_COSINE}); delete {onnx_path} to re-export")
        return enc

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts``: a ``(len(texts), dims)`` float32 array of unit-length rows.

        Raises:
            ValueError: ``texts`` is a single string (pass a list).

        >>> enc.encode(["red lamp", "oak desk"]).shape  # doctest: +SKIP
        (2, 384)
        """
        if isinstance(texts, str):
            raise ValueError("texts must be a list of strings, got a single str (use encode_one)")
        texts = list(texts)
        if self._solo is not None:
            encodings = [self._tokenizer.encode(t) for t in texts] if len(texts) == 1 else \
                self._tokenizer.encode_batch(texts)
            feeds = [{"input_ids": np.array([e.ids], dtype=np.int64),
                      "attention_mask": np.array([e.attention_mask], dtype=np.int64)} for e in encodings]
            rows = [out[0][0] for out in self._solo.map(feeds)]
            return np.array(rows, dtype=np.float32).reshape(len(texts), self.dims)
        out = np.zeros((len(texts), self.dims), dtype=np.float32)
        # Texts of similar length share a padded batch (as sentence-transformers does): far less padding to run
        # through the model when a product catalog is embedded; rows go back to the caller's order.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(texts), _CHUNK):
            rows = order[start:start + _CHUNK]
            chunk = [texts[i] for i in rows]
            # encode_batch hands work to a thread pool: pure overhead for the usual single query
            batch = [self._tokenizer.encode(chunk[0])] if len(chunk) == 1 else self._tokenizer.encode_batch(chunk)
            ids = np.array([e.ids for e in batch], dtype=np.int64)
            mask = np.array([e.attention_mask for e in batch], dtype=np.int64)
            out[rows] = self._session.run(None, {"input_ids": ids, "attention_mask": mask})[0]
        return out

    def encode_one(self, text: str) -> np.ndarray:
        """Embed one query: a ``(dims,)`` float32 unit vector."""
        return self.encode([text])[0]


def load_query_encoder(model: str | os.PathLike[str] = DEFAULT_MODEL, *, mode: str = "auto",
                       cache_dir: str | os.PathLike[str], max_length: int = 256,
                       cuda: bool | None = None) -> QueryEncoder:
    """The query embedder for serving: ONNX on CPU when possible, else the torch BiEncoder. Never fails on ONNX.

    Args:
        model: bi-encoder name or directory (as BiEncoder takes).
        mode: "auto" (ONNX when there is no CUDA and onnx, onnxscript and onnxruntime import; CUDA keeps torch
            fp16),
            "onnx" (ONNX on CPU even when CUDA is there) or "torch".
        cache_dir: where ONNX exports are cached (the settings' ``onnx_dir``).
        max_length: tokens per query.
        cuda: whether CUDA is available (default: ask torch, which is not imported when there is no CUDA driver);
            for tests.

    Returns:
        An OnnxQueryEncoder, or a BiEncoder when torch was asked for or ONNX could not be used (logged). An export
        already recorded in ``cache_dir`` is served without importing torch (and without re-verifying it).

    Raises:
        ValueError: an unknown ``mode``; a bad ``model`` or ``max_length`` (from BiEncoder).

    >>> load_query_encoder("all-MiniLM-L6-v2", cache_dir="/tmp/onnx")  # doctest: +SKIP
    <shopsearch.indexer.onnx_encoder.OnnxQueryEncoder object at ...>
    """
    if mode not in QUERY_ENCODERS:
        raise ValueError(f"query_encoder must be one of {', '.join(QUERY_ENCODERS)}; got {mode!r}")
    if mode == "torch":
        log.info("query encoder: torch (query_encoder=torch)")
        return BiEncoder(model, max_length=max_length)
    if mode == "auto":
        cuda = cuda_available() if cuda is None else cuda
        if cuda:
            log.info("query encoder: torch fp16 on CUDA (query_encoder=auto)")
            return BiEncoder(model, max_length=max_length)
    manifest = manifest_path(Path(cache_dir), model_name(model), weights_digest(resolve_model_dir(model)),
                             max_length)
    try:
        enc = _load_exported(manifest, Path(cache_dir))
    except Exception as exc:  # noqa: BLE001 - a bad cached export is rebuilt below, or torch serves
        log.warning("query encoder: cached ONNX export of %s unusable (%s: %s); rebuilding it",
                    model, type(exc).__name__, exc)
        enc = None
    if enc is not None:
        log.info("query encoder: onnxruntime on CPU (query_encoder=%s, cached %s)", mode, enc.onnx_path)
        return enc
    if not onnx_available():
        log.log(logging.WARNING if mode == "onnx" else logging.INFO,
                "query encoder: torch (onnx, onnxscript or onnxruntime is not installed; query_encoder=%s)", mode)
        return BiEncoder(model, max_length=max_length)
    bi = BiEncoder(model, device="cpu", max_length=max_length)
    try:
        enc = OnnxQueryEncoder.from_bi_encoder(bi, cache_dir=cache_dir)
    except Exception as exc:  # noqa: BLE001 - any export/load failure means "serve with torch", never "don't start"
        log.warning("query encoder: ONNX unavailable for %s (%s: %s); falling back to torch",
                    bi.name, type(exc).__name__, exc)
        cuda = cuda_available() if cuda is None else cuda
        return BiEncoder(model, max_length=max_length) if cuda else bi
    _write_manifest(manifest, enc)
    log.info("query encoder: onnxruntime on CPU (query_encoder=%s, %s %s)", mode,
             "exported to" if enc.exported else "cached", enc.onnx_path)
    return enc
