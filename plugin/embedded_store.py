"""SQLite storage of one embedded index: the source of truth the searchable snapshot is rebuilt from.

One ``docs.sqlite`` per index in WAL mode (readers never block the writer; a committed chunk survives a crash).
Rows hold the stored source JSON, the content hash, the float32 vector and the analyzed term counts of each
text field (analysed once at write time so a refresh only assembles arrays). ``meta.generation`` grows with every
committed write so any process can tell whether its snapshot is stale.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections import Counter
from pathlib import Path
from typing import Any, Iterator, Sequence

from .documents import TEXT_FIELDS
from .text_analysis import adjacent_pairs, analyze_positions

PAIRS_SUFFIX = "~pairs"  # analyzed[f"{field}~pairs"]: adjacent-term pair counts, for phrase (synonym) matching

_SCHEMA = """
CREATE TABLE IF NOT EXISTS docs (
    id TEXT PRIMARY KEY, source TEXT NOT NULL, content_hash TEXT NOT NULL, vector BLOB NOT NULL,
    analyzed TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def analyzed_counts(src: dict[str, Any]) -> dict[str, dict[str, int]]:
    """Term counts (and adjacent-pair counts) of every text field of a stored source, for the snapshot's BM25."""
    out: dict[str, dict[str, int]] = {}
    for f in TEXT_FIELDS:
        positions = analyze_positions(src.get(f))
        if positions:
            out[f] = dict(Counter(t for _, t in positions))
            pairs = adjacent_pairs(positions)
            if pairs:
                out[f + PAIRS_SUFFIX] = dict(Counter(pairs))
    return out


class DocStore:
    """Thread-safe access to one index's SQLite file (one connection per thread, one writer at a time)."""

    def __init__(self, path: Path, dims: int | None = None):
        self.path = path
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self.write_lock = threading.RLock()
        if dims is not None:  # creating
            with self.write_lock:
                c = self._conn()
                c.executescript(_SCHEMA)
                c.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                              [("dims", str(dims)), ("generation", "0"), ("bulk_mode", "0")])
                c.commit()
        self.dims = int(self.meta("dims"))

    def _conn(self) -> sqlite3.Connection:
        c = getattr(self._local, "conn", None)
        if c is None:
            c = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False, isolation_level=None)
            c.execute("PRAGMA journal_mode=WAL")
            c.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = c
            with self._lock:
                self._conns.append(c)
        return c

    def meta(self, key: str) -> str:
        """A value of the meta table."""
        row = self._conn().execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        if row is None:
            raise KeyError(f"{self.path}: meta key {key!r} missing")
        return row[0]

    def set_meta(self, key: str, value: str) -> None:
        """Set a meta value (its own transaction)."""
        with self.write_lock:
            self._conn().execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def generation(self) -> int:
        """How many write transactions were committed so far."""
        return int(self.meta("generation"))

    def write(self, upserts: Sequence[tuple[str, dict[str, Any], str, bytes]], ops: Sequence[tuple[str, str]]) -> None:
        """Apply ``ops`` in order in one transaction: ``("put", id)`` takes the next upsert, ``("del", id)`` deletes."""
        with self.write_lock:
            c = self._conn()
            c.execute("BEGIN IMMEDIATE")
            try:
                it = iter(upserts)
                for op, doc_id in ops:
                    if op == "del":
                        c.execute("DELETE FROM docs WHERE id = ?", (doc_id,))
                        continue
                    _, src, chash, blob = next(it)
                    c.execute("INSERT OR REPLACE INTO docs VALUES (?, ?, ?, ?, ?)",
                              (doc_id, json.dumps(src, ensure_ascii=False), chash, blob,
                               json.dumps(analyzed_counts(src), ensure_ascii=False)))
                c.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise

    def count(self) -> int:
        """Number of stored documents."""
        return int(self._conn().execute("SELECT COUNT(*) FROM docs").fetchone()[0])

    def get(self, doc_id: str) -> tuple[dict[str, Any], bytes] | None:
        """``(source, vector blob)`` of one document, or None."""
        row = self._conn().execute("SELECT source, vector FROM docs WHERE id = ?", (doc_id,)).fetchone()
        return (json.loads(row[0]), row[1]) if row else None

    def sources(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Sources of the given ids that exist (at most 900 per query, SQLite's parameter limit)."""
        out: dict[str, dict[str, Any]] = {}
        c = self._conn()
        for i in range(0, len(ids), 900):
            part = list(ids[i:i + 900])
            q = f"SELECT id, source FROM docs WHERE id IN ({','.join('?' * len(part))})"
            out.update((r[0], json.loads(r[1])) for r in c.execute(q, part))
        return out

    def hashes(self) -> Iterator[tuple[str, str]]:
        """Every ``(id, content_hash)``, read in one consistent pass."""
        yield from self._conn().execute("SELECT id, content_hash FROM docs").fetchall()

    def dump(self) -> tuple[int, list[tuple[str, dict[str, Any], dict[str, dict[str, int]], bytes]]]:
        """``(generation, rows)`` read in one transaction, rows in rowid order, for a snapshot build."""
        c = self._conn()
        c.execute("BEGIN")
        try:
            gen = int(c.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0])
            rows = [(r[0], json.loads(r[1]), json.loads(r[2]), r[3])
                    for r in c.execute("SELECT id, source, analyzed, vector FROM docs ORDER BY rowid")]
        finally:
            c.execute("COMMIT")
        return gen, rows

    def close(self) -> None:
        """Close every connection this store opened (any thread)."""
        with self._lock:
            for c in self._conns:
                c.close()
            self._conns.clear()
        self._local = threading.local()
