"""Indexing locks of the embedded engine: one file per alias, ``<root>/.locks/<alias>.lock`` (JSON holder;
no index name starts with a dot).

A lock is taken by writing its holder only where no lock file exists (:mod:`shopsearch.atomic_write`, a hard
link of a fully written temporary file), so two processes cannot both take it and no reader sees a half-written
holder. Heartbeats and releases
compare the holder's token under an ``flock`` on ``.locks/.guard`` (held for microseconds), so a run never
overwrites or deletes a lock that another run took after breaking its stale one.
"""

from __future__ import annotations

import fcntl
import json
import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from shopsearch.atomic_write import write_atomically
from shopsearch.indexer.sink import LockHolder

log = logging.getLogger(__name__)


class FileLocks:
    """The lock files under ``root/.locks``."""

    def __init__(self, root: Path):
        self.dir = Path(root) / ".locks"

    def _path(self, name: str) -> Path:
        return self.dir / f"{name}.lock"

    @contextmanager
    def _guard(self) -> Iterator[None]:
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / ".guard", "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _read(self, name: str) -> LockHolder | None:
        path = self._path(name)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return LockHolder.from_json(data if isinstance(data, dict) else {})
        except FileNotFoundError:
            return None
        except (ValueError, TypeError):
            # Emptied by a power cut (holders are written unflushed) or edited by hand: a holder of no host and no
            # heartbeat, so the usual staleness rule breaks it, with its warning, instead of a JSON error.
            log.warning("lock file %s is unreadable; reading it as a lock with no heartbeat (stale)", path)
            return LockHolder.from_json({})

    def create(self, name: str, holder: LockHolder) -> LockHolder | None:
        """Take lock ``name`` for ``holder``; None when taken, else the current holder."""
        with self._guard():
            # not flushed: after a power cut every holder is dead, and a stale lock is broken by its age
            if write_atomically(self._path(name), json.dumps(holder.to_json()), replace=False, durable=False):
                return None
            return self._read(name)

    def touch(self, name: str, holder: LockHolder) -> bool:
        """Write ``holder`` (a newer heartbeat) if the lock still carries its token."""
        with self._guard():
            found = self._read(name)
            if found is None or found.token != holder.token:
                return False
            write_atomically(self._path(name), json.dumps(holder.to_json()), durable=False)
            return True

    def delete(self, name: str, holder: LockHolder) -> bool:
        """Delete lock ``name`` if it still carries ``holder``'s token."""
        with self._guard():
            found = self._read(name)
            if found is None or found.token != holder.token:
                return False
            self._path(name).unlink()
            return True
