"""A background bulk writer: the indexing job embeds the next chunk while this thread writes the last one."""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field

from .sink import Action, Delete, IndexDoc, IndexSink


@dataclass
class WriteResult:
    """What the writer stored: counts of successful upserts and deletes, and the refused actions."""

    indexed: int = 0
    deleted: int = 0
    rejected: list[tuple[IndexDoc, int, str]] = field(default_factory=list)  # (doc, catalog line, error)
    failed_deletes: list[tuple[str, str]] = field(default_factory=list)  # (id, error)


class BulkWriter:
    """Writes chunks of actions to ``sink.bulk`` on its own thread, through a bounded queue.

    The queue holds at most ``depth`` chunks, so a slow engine applies back-pressure instead of piling vectors
    up in memory. An exception on the writer thread is re-raised in the caller at the next ``submit``/``finish``.

    >>> w = BulkWriter(sink, "products-v1")  # doctest: +SKIP
    >>> w.submit([(doc, 1)]); result = w.finish()  # doctest: +SKIP
    """

    def __init__(self, sink: IndexSink, index: str, depth: int = 2):
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth!r}")
        self.sink, self.index = sink, index
        self.result = WriteResult()
        self.written = 0  # actions acknowledged so far (read by progress hooks; ints are atomic enough)
        self._queue: queue.Queue[list[tuple[Action, int]] | None] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"bulk-writer-{index}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                chunk = self._queue.get()
                if chunk is None:
                    return
                self._write(chunk)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            self._error = exc

    def _write(self, chunk: list[tuple[Action, int]]) -> None:
        items = self.sink.bulk(self.index, (a for a, _ in chunk))
        res = self.result
        n = 0
        for (action, line), item in zip(chunk, items):
            n += 1
            if isinstance(action, Delete):
                if item.ok:
                    res.deleted += 1
                else:
                    res.failed_deletes.append((action.id, item.error or "unknown error"))
            elif item.ok:
                res.indexed += 1
            else:
                res.rejected.append((action, line, item.error or "unknown error"))
            self.written += 1
        if n != len(chunk):
            raise RuntimeError(f"sink.bulk returned {n} results for {len(chunk)} actions on {self.index!r}")

    def _check(self) -> None:
        if self._error is not None:
            raise self._error

    def submit(self, chunk: list[tuple[Action, int]]) -> None:
        """Queue ``(action, catalog line)`` pairs for writing; blocks while the queue is full."""
        while True:
            self._check()
            if not self._thread.is_alive():
                raise RuntimeError("bulk writer stopped unexpectedly")
            try:
                self._queue.put(chunk, timeout=0.2)
                return
            except queue.Full:
                continue

    def finish(self) -> WriteResult:
        """Wait for every queued chunk to be written and return the totals (re-raises a writer error)."""
        self.submit_end()
        self._thread.join()
        self._check()
        return self.result

    def submit_end(self) -> None:
        while self._thread.is_alive():
            try:
                self._queue.put(None, timeout=0.2)
                return
            except queue.Full:
                self._check()

    def abort(self, timeout: float = 5.0) -> None:
        """Stop after the chunk in flight (used when the job fails or is interrupted); never raises."""
        self._stop.set()
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            pass
        self._thread.join(timeout)
