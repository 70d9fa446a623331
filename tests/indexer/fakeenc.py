"""A deterministic hashing encoder: fast, no model, counts what it embedded (for pipeline tests)."""

from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np


class HashEncoder:
    def __init__(self, dims: int = 8, name: str = "hash"):
        self.dims = dims
        self.fingerprint = f"{name}|d={dims}"
        self.calls: list[str] = []

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.extend(texts)
        out = np.zeros((len(texts), self.dims), dtype=np.float32)
        for i, t in enumerate(texts):
            seed = int.from_bytes(hashlib.sha1(t.encode()).digest()[:4], "little")
            v = np.random.default_rng(seed).standard_normal(self.dims).astype(np.float32)
            out[i] = v / np.linalg.norm(v)
        return out


class CrashingEncoder(HashEncoder):
    """A HashEncoder whose process dies at once (no exception, no cleanup: like a SIGKILL or a segfault) when it
    is asked to embed a text containing ``CRASH``; for the encoder pool's tests."""

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if any("CRASH" in t for t in texts):
            import os

            os._exit(70)
        return super().encode(texts)
