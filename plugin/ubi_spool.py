"""The bounded on-disk spool between a request and the UBI store: append + fsync now, write to the store later.

A request appends its records (one JSON line each) to the spool and acknowledges; :class:`SpoolDrainer`, a
background thread per process, moves them to the store (:mod:`.ubi_store`) in batches. So neither an engine
outage nor a ``kill -9`` loses an acknowledged record, and the request never waits for the store.

Layout: ``<spool dir>/<ns>-<pid>-<rand>.jsonl`` segment files. A process appends only to its own open segment,
which it holds under an exclusive ``flock``; a drain first closes that segment (releasing the lock), then claims
every segment it can lock — its own closed ones, those other processes closed, and those a killed process left
(the kernel drops a dead process's locks) — writes their records to the store and deletes each segment once
stored. A store failure leaves the segment for the next pass (the records have ids, so a batch stored twice is
kept once). Lines torn by a crash mid-write were never acknowledged and are skipped.

Bounded: an append that would take the spool past ``max_bytes`` raises :class:`SpoolFull` and writes nothing
(the API answers 503 to POST /events and logs a search without its query record). The spool's size is listed
again after a second or after this process appended 1/64 of ``max_bytes`` (counting its own appends in between),
so appends do not list every segment each time; concurrent processes may each overshoot the bound by that 1/64.
While the store fails, a drain closes this process's segment only once it holds ``OUTAGE_SEGMENT_BYTES``, so an
outage leaves few segments rather than one per worker per pass.

    >>> spool = UbiSpool("/tmp/ss-spool-doc", max_bytes=1 << 20)  # doctest: +SKIP
    >>> spool.append([], [to_ubi_event(event)]); spool.drain(JsonlUbiStore("/tmp/ss-ubi-doc")).records  # doctest: +SKIP
    1
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

from shopsearch.atomic_write import fsync_dir
from shopsearch.ubi import UbiEvent, UbiQuery

from .ubi_store import UbiStore, read_record, record_json

log = logging.getLogger(__name__)

BATCH_RECORDS = 500  # records per store write
MAX_BACKOFF_S = 60.0  # the longest pause between drains while the store fails
SIZE_TTL_S = 1.0  # how long an append trusts the last listing of the spool's size
OUTAGE_SEGMENT_BYTES = 1 << 20  # while the store fails, a drain closes this process's segment only past this size


class SpoolFull(RuntimeError):
    """The spool has no room for a batch (``max_bytes`` reached); nothing was written."""


class Drained(NamedTuple):
    """One drain pass: records written to the store, segments deleted, lines skipped (torn or invalid)."""

    records: int
    segments: int
    skipped: int


class UbiSpool:
    """Append-only segments under ``directory``, at most about ``max_bytes`` in all (see the module docstring).

    Args:
        directory: the spool directory (created on first append).
        max_bytes: the bound; concurrent processes may each overshoot it by ``max_bytes / 64``.
    Raises:
        ValueError: ``max_bytes`` < 1.
    """

    def __init__(self, directory: str | Path, max_bytes: int) -> None:
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be >= 1; got {max_bytes!r}")
        self.directory, self.max_bytes = Path(directory), max_bytes
        self._lock = threading.Lock()
        self._fd: int | None = None  # this process's open segment, held under flock
        self._written = 0  # bytes in it
        self._listed: tuple[float, int] | None = None  # (monotonic time, bytes) of the last size listing
        self._appended = 0  # bytes this process appended since that listing

    def __repr__(self) -> str:
        return f"UbiSpool({str(self.directory)!r}, max_bytes={self.max_bytes})"

    def segments(self) -> list[Path]:
        """Every segment, oldest first."""
        return sorted(self.directory.glob("*.jsonl")) if self.directory.is_dir() else []

    def size(self) -> int:
        """Bytes in the spool (every segment, every process's)."""
        total = 0
        try:
            entries = list(os.scandir(self.directory))
        except FileNotFoundError:
            return 0
        for entry in entries:
            if entry.name.endswith(".jsonl"):
                try:
                    total += entry.stat().st_size
                except FileNotFoundError:  # drained meanwhile
                    pass
        return total

    def append(self, queries: Sequence[UbiQuery], events: Sequence[UbiEvent],
               then: Callable[[], object] | None = None) -> None:
        """Write the records with one ``write`` + ``fsync``; on return they survive a crash of this process.

        Args:
            queries, events: the records.
            then: called once the records are written, before the spool's lock is released (POST /events writes
                the event log there); if it raises, the records are taken back out and the error re-raised, so a
                batch lands in both places or in neither.
        Raises:
            SpoolFull: no room for the batch; nothing was written.
            OSError: the disk failed (a short write is an error too, ``errno.ENOSPC``); nothing stays written.
        """
        lines = [f'{{"query":{record_json(q)}}}' for q in queries]  # the record's JSON, serialised once
        lines += [f'{{"event":{record_json(e)}}}' for e in events]
        if not lines:
            return
        data = ("\n".join(lines) + "\n").encode()
        with self._lock:
            if self._known_size() + len(data) > self.max_bytes:
                raise SpoolFull(f"UBI spool {self.directory} is full ({self.max_bytes} bytes)")
            fd = self._segment()
            try:
                written = os.write(fd, data)
                if written != len(data):  # a short write on a regular file means the disk is full
                    raise OSError(errno.ENOSPC, f"short write to the UBI spool: {written} of {len(data)} bytes")
                os.fsync(fd)
                if then is not None:
                    then()
            except BaseException:
                # Our own segment, under our flock and lock: nobody else has read or written it since.
                os.ftruncate(fd, self._written)
                raise
            self._written += written
            self._appended += written

    def _known_size(self) -> int:
        """The spool's size as of the last listing plus what this process appended since; listed again after
        ``SIZE_TTL_S`` or ``max_bytes / 64`` appended, so other processes' appends count within that much."""
        now = time.monotonic()
        if self._listed is None or now - self._listed[0] >= SIZE_TTL_S or self._appended > self.max_bytes // 64:
            self._listed, self._appended = (now, self.size()), 0
        return self._listed[1] + self._appended

    def _segment(self) -> int:
        """This process's open segment (a new one, locked, when none is open)."""
        while self._fd is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            name = f"{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
            # shoppers' ids and behaviour: readable by the server's user only
            fd = os.open(self.directory / name, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)  # nobody drains it while we write it; released when we die
            if os.fstat(fd).st_nlink == 0:
                # A drain locked it between our open and our flock, found it empty and deleted it: records
                # written to it now would have no name. Take a new one.
                os.close(fd)
                continue
            fsync_dir(self.directory)  # the new name survives a crash too
            self._fd, self._written = fd, 0
        return self._fd

    def rotate(self, above: int = 0) -> None:
        """Close this process's segment when it holds more than ``above`` bytes, so a drain may claim it."""
        with self._lock:
            if self._fd is not None and self._written > above:
                os.close(self._fd)
                self._fd = None

    def close(self) -> None:
        """Close this process's segment; what it holds stays for the next drain."""
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def drain(self, store: UbiStore, batch: int = BATCH_RECORDS, rotate_above: int = 0) -> Drained:
        """Move every claimable segment's records to ``store``, oldest segment first; this process's own open
        segment is closed first when it holds more than ``rotate_above`` bytes.

        Raises:
            whatever ``store.write`` raises (the segment stays; what was stored of it is stored again next time).
        """
        self.rotate(rotate_above)
        records = segments = skipped = 0
        for path in self.segments():
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue  # another process drained it
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # being written or drained by someone else
                if os.fstat(fd).st_nlink == 0:
                    continue  # drained and deleted between our listing and our lock
                queries, events, bad = _parse(_read_all(fd))
                for i in range(0, max(len(queries), len(events)), batch):
                    store.write(queries[i:i + batch], events[i:i + batch])
                path.unlink()
                records, segments, skipped = records + len(queries) + len(events), segments + 1, skipped + bad
            finally:
                os.close(fd)
        if segments:
            with self._lock:
                self._listed = None  # room was made: list again at the next append
        if skipped:
            log.warning("UBI spool: skipped %d torn or invalid lines", skipped)
        return Drained(records, segments, skipped)


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def _parse(data: bytes) -> tuple[list[UbiQuery], list[UbiEvent], int]:
    """A segment's records; a torn last line (no newline: never acknowledged) or an invalid line is skipped."""
    queries: list[UbiQuery] = []
    events: list[UbiEvent] = []
    complete, _, torn = data.rpartition(b"\n")
    skipped = 1 if torn.strip() else 0
    for line in complete.splitlines():
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            if "query" in item:
                queries.append(read_record(UbiQuery, item["query"]))
            else:
                events.append(read_record(UbiEvent, item["event"]))
        except (ValueError, KeyError, TypeError):  # json and pydantic errors are ValueErrors
            skipped += 1
    return queries, events, skipped


class SpoolDrainer:
    """A daemon thread that drains ``spool`` into the store every ``interval_s`` (at once when started, so a
    restart moves what a killed process left), backing off exponentially (up to 60 s) while the store fails.

    Args:
        spool: the spool.
        open_store: builds the store on first use (so a store that cannot be built yet is retried too).
        interval_s: seconds between drains (> 0).
    """

    def __init__(self, spool: UbiSpool, open_store: Callable[[], UbiStore], interval_s: float) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0; got {interval_s!r}")
        self.spool, self.open_store, self.interval_s = spool, open_store, interval_s
        self.failures = 0  # consecutive failed drains
        self._store: UbiStore | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def start(self) -> None:
        """Start the thread (once)."""
        with self._start_lock:
            if self._thread is None:
                thread = threading.Thread(target=self._run, name="ubi-spool-drainer", daemon=True)
                thread.start()  # raises when no thread can be had: the next call tries again
                self._thread = thread

    def drain_once(self, final: bool = False) -> Drained:
        """One drain pass now, in the caller's thread (``final``: this process's own segment too, whatever the
        last passes did). Raises what the store raises."""
        if self._store is None:
            self._store = self.open_store()
        # While the store fails, keep appending to one segment rather than leave a new one at every pass.
        return self.spool.drain(self._store, rotate_above=OUTAGE_SEGMENT_BYTES if self.failures and not final else 0)

    def _run(self) -> None:
        wait = 0.0
        while not self._stop.wait(wait):
            try:
                self.drain_once()
                self.failures, wait = 0, self.interval_s
            except Exception as exc:  # noqa: BLE001 - the records stay spooled; keep trying
                self.failures += 1
                wait = min(MAX_BACKOFF_S, self.interval_s * 2 ** min(self.failures, 16))
                log.warning("UBI spool: store write failed (%s: %s); retrying in %.1fs", type(exc).__name__, exc,
                            wait)

    def stop(self, drain: bool = True, timeout: float = 10.0) -> None:
        """Stop the thread; with ``drain``, one last pass first (errors logged, records kept in the spool)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if drain:
            try:
                self.drain_once(final=True)
            except Exception as exc:  # noqa: BLE001 - shutting down; the spool keeps the records
                log.warning("UBI spool: final drain failed (%s); records stay spooled", exc)
        self.spool.close()
