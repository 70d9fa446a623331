"""A content-hash-keyed vector cache on SQLite: the same text under the same model is embedded once, ever.

Key = sha1(model fingerprint + NUL + embed text), so the cache is shared across runs, indices and engines,
and a different model or max length never returns a stale vector.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

_CHUNK = 500  # SQLite's default limit on bound parameters is 999 (older builds)


def cache_key(fingerprint: str, text: str) -> str:
    """The cache key of ``text`` embedded by the model with ``fingerprint``."""
    return hashlib.sha1(f"{fingerprint}\0{text}".encode("utf-8", "surrogatepass")).hexdigest()


class VectorCache:
    """Batch get/put of float32 vectors by key, in one SQLite file (WAL; safe for one writer at a time).

    >>> cache = VectorCache("/tmp/vectors.sqlite")  # doctest: +SKIP
    >>> cache.put_many({"k": np.ones(4, np.float32)}); cache.get_many(["k"])["k"].shape  # doctest: +SKIP
    (4,)
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS vectors (key TEXT PRIMARY KEY, dims INTEGER, vec BLOB)")
        self._db.commit()

    def get_many(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        """The cached vectors among ``keys`` (missing keys are absent from the result)."""
        found: dict[str, np.ndarray] = {}
        unique = list(dict.fromkeys(keys))
        for i in range(0, len(unique), _CHUNK):
            chunk = unique[i:i + _CHUNK]
            marks = ",".join("?" * len(chunk))
            for key, dims, blob in self._db.execute(
                    f"SELECT key, dims, vec FROM vectors WHERE key IN ({marks})", chunk):
                vec = np.frombuffer(blob, dtype=np.float32)
                if vec.shape[0] == dims:
                    found[key] = vec
        return found

    def put_many(self, items: dict[str, np.ndarray] | Iterable[tuple[str, np.ndarray]]) -> None:
        """Store vectors (float32) under their keys, replacing any existing ones, in one transaction."""
        pairs = items.items() if isinstance(items, dict) else items
        rows = [(k, int(v.shape[0]), np.ascontiguousarray(v, dtype=np.float32).tobytes()) for k, v in pairs]
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO vectors (key, dims, vec) VALUES (?, ?, ?)", rows)

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0])

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "VectorCache":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
