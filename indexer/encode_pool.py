"""Embed product texts in a pool of worker processes: ``shopsearch index --workers N``.

On a CPU, embedding is the indexing job's bottleneck and one torch process does not keep every core busy (its
tokenisation, pooling and Python glue run on one thread between the parallel matrix products), so N processes
with ``cores / N`` threads each go faster. The pool only encodes: the parent keeps reading the catalog, looks
vectors up in (and adds them to) the vector cache, and feeds the bulk writer. So the cache, a SQLite file, has
one process reading and writing it, as before, and needs no locking across processes.

- Workers start with ``spawn``, never ``fork``: a forked child would inherit torch's and OpenMP's thread pools
  (which deadlock after fork) and the parent's open SQLite and HTTP connections.
- Each worker builds its encoder once, as it starts, from an :class:`EncoderSpec` (a picklable factory and its
  arguments); a build error (bad model folder) is kept and raised by the worker's first task, so it reaches the
  parent as that error. All workers are started, and load their models side by side, before the run begins.
- The job keeps at most :attr:`EncoderPool.depth` chunks in flight and takes their vectors back in submission
  order (see ``job._Run``), so memory stays bounded and the writer sees the catalog's order.
- Workers ignore SIGINT: on Ctrl-C the parent stops them (:meth:`EncoderPool.abort`) after cancelling what is
  queued. A worker that dies (killed, out of memory, crashed in native code) makes the waiting call raise
  :class:`EncoderPoolError`.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

log = logging.getLogger(__name__)


class EncoderPoolError(RuntimeError):
    """An encoder worker process died; the message says which rows were in flight and that the run may resume."""


@dataclass(frozen=True)
class EncoderSpec:
    """How a worker builds its encoder: ``factory(**kwargs)``; the factory must be importable by name (spawn
    pickles a reference to it). ``threads``: intra-op threads per worker (torch's; an ONNX factory takes its own
    ``threads`` argument).

    >>> from shopsearch.indexer.embedder import BiEncoder
    >>> EncoderSpec(BiEncoder, {"model": "all-MiniLM-L6-v2", "device": "cpu"}, threads=1).threads
    1
    """

    factory: Callable[..., Any]
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    threads: int = 1


def physical_cores() -> int:
    """Physical CPU cores (hyper-threads share one core's matrix units), at least 1.

    >>> physical_cores() >= 1
    True
    """
    import psutil

    return max(1, psutil.cpu_count(logical=False) or psutil.cpu_count() or 1)


# --------------------------------------------------------------------------------------------- worker side
_SPEC: EncoderSpec | None = None
_ENCODER: Any = None
_BUILD_ERROR: Exception | None = None


ORPHAN_CHECK_S = 1.0  # how often a worker checks that the job that started it still runs


def _exit_when_orphaned(parent: int) -> None:
    """End this worker once its parent is gone (killed with -9, by the OOM killer or ``timeout``): nothing else
    would, and an idle worker keeps a model's gigabyte of memory. A daemon thread; the process is then reparented,
    so its parent pid changes."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(ORPHAN_CHECK_S)
        os._exit(1)

    threading.Thread(target=watch, name="orphan-check", daemon=True).start()


def _init_worker(spec: EncoderSpec, parent: int | None = None) -> None:
    """Pool initializer: leave Ctrl-C to the parent (which stops the pool itself), end with the parent; build the
    encoder now, keeping a failure for the first task to raise (an initializer's own exception would only say
    "pool broken")."""
    global _SPEC, _BUILD_ERROR
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if parent is not None:
        _exit_when_orphaned(parent)
    _SPEC = spec
    try:
        _encoder()
    except Exception as exc:  # noqa: BLE001 - re-raised by the first task, in the parent
        _BUILD_ERROR = exc


def _encoder() -> Any:
    """This worker's encoder, built once (re-raises the error its build failed with)."""
    global _ENCODER
    if _BUILD_ERROR is not None:
        raise _BUILD_ERROR
    if _ENCODER is None:
        if _SPEC is None:
            raise RuntimeError("encoder worker used outside an EncoderPool (no spec)")
        _ENCODER = _SPEC.factory(**dict(_SPEC.kwargs))
        torch = sys.modules.get("torch")  # only when the factory loaded it: ONNX workers never import torch
        if torch is not None:
            torch.set_num_threads(_SPEC.threads)
    return _ENCODER


def _identify() -> tuple[int, str]:
    """(dims, fingerprint) of the worker's encoder."""
    enc = _encoder()
    return int(enc.dims), str(enc.fingerprint)


def _encode(texts: list[str]) -> np.ndarray:
    return np.ascontiguousarray(_encoder().encode(texts), dtype=np.float32)


# --------------------------------------------------------------------------------------------- parent side
class EncoderPool:
    """Worker processes that embed batches of texts; an ``Encoder`` (``dims``, ``fingerprint``, ``encode``) whose
    :meth:`submit` lets the job keep several chunks in flight.

    Args:
        spec: how each worker builds its encoder.
        workers: worker processes (>= 1).
        depth: chunks the job may keep in flight (default ``2 * workers``: each worker has the next chunk queued
            while it encodes one); bounds memory to about ``depth`` chunks of texts and vectors.

    Raises:
        ValueError: ``workers`` or ``depth`` < 1.
        Exception: whatever building the encoder raises in the first worker (e.g. a bad model folder).
        EncoderPoolError: the first worker died while building its encoder.

    >>> with EncoderPool(EncoderSpec(BiEncoder, {"model": "all-MiniLM-L6-v2"}), workers=2) as pool:  # doctest: +SKIP
    ...     report = run_index("catalog.jsonl", engine, pool)
    """

    def __init__(self, spec: EncoderSpec, workers: int, *, depth: int | None = None) -> None:
        if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
            raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
        depth = 2 * workers if depth is None else depth
        if not isinstance(depth, int) or depth < 1:
            raise ValueError(f"depth must be an integer >= 1, got {depth!r}")
        self.workers, self.depth = workers, depth
        self._executor = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_init_worker, initargs=(spec, os.getpid()))
        try:
            # one task per worker: the executor starts a process for each task that finds no idle one
            starting = [self._executor.submit(_identify) for _ in range(workers)]
            self.dims, self.fingerprint = self.result(starting[0], "loading the encoder")
        except BaseException:
            self.abort()
            raise
        log.info("encoder pool: %d worker processes, %d threads each, %s", workers, spec.threads, self.fingerprint)

    def submit(self, texts: Sequence[str]) -> "Future[np.ndarray]":
        """Queue ``texts`` for a worker; the future's result is a ``(len(texts), dims)`` float32 array."""
        try:
            return self._executor.submit(_encode, list(texts))
        except BrokenProcessPool as exc:
            raise EncoderPoolError(self._died("queueing a chunk")) from exc

    def result(self, future: "Future[Any]", what: str) -> Any:
        """The future's result; a dead worker becomes :class:`EncoderPoolError` saying it was ``what``."""
        try:
            return future.result()
        except BrokenProcessPool as exc:
            raise EncoderPoolError(self._died(what)) from exc

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts`` on a worker and wait (the in-order, one-chunk-at-a-time path)."""
        return self.result(self.submit(texts), f"embedding {len(texts)} texts")

    def _died(self, what: str) -> str:
        return (f"an encoder worker process died while {what} (killed, out of memory, or crashed; see the log "
                f"above), so the pool of {self.workers} workers stopped. A full rebuild left the alias where it "
                "was; rerun to resume: every vector cached so far is reused")

    def close(self) -> None:
        """Let the workers finish and exit (after a successful run)."""
        self._executor.shutdown(wait=True)

    def abort(self) -> None:
        """Cancel queued work and stop the workers now (after a failure or Ctrl-C); never raises."""
        self._executor.shutdown(wait=False, cancel_futures=True)
        # The executor has no public way to stop a busy worker before Python 3.14 (terminate_workers); a chunk
        # can take seconds, and an interrupted run should end at once.
        for proc in list((getattr(self._executor, "_processes", None) or {}).values()):
            try:
                proc.terminate()
            except (OSError, ValueError):  # already gone or closed
                pass

    def __enter__(self) -> "EncoderPool":
        return self

    def __exit__(self, exc_type: Any, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


# ---------------------------------------------------------------------------------------- choosing the encoder
# Below this a catalog is embedded in process when the worker count is automatic: about 2,000 products of
# homedepot's size, ~30 s of encoding on one core, against the ~3-5 s each worker spends loading the model.
SMALL_CATALOG_BYTES = 2_000_000

@contextmanager
def open_index_encoder(model: str | os.PathLike[str], *, kind: str = "torch", workers: int = 0,
                       max_length: int = 256, batch_size: int = 64, onnx_dir: str | os.PathLike[str],
                       catalog_bytes: int | None = None, cuda: bool | None = None) -> Iterator[Any]:
    """The encoder ``shopsearch index`` embeds products with, in process or as a pool; stopped on exit.

    Args:
        model: bi-encoder name or directory.
        kind: "torch" (BiEncoder) or "onnx-int8" (:func:`onnx_int8.int8_encoder`).
        workers: encoder processes; 1 embeds in this process (no pool); 0: one per physical core, or 1 for torch
            on CUDA (the GPU is the encoder there; more processes would only share it) or for a catalog file
            under :data:`SMALL_CATALOG_BYTES` (each worker loads the model: seconds a small catalog never wins back).
        catalog_bytes: the catalog file's size, for the choice above (None: not small).
        max_length, batch_size: as BiEncoder takes them (the int8 encoder embeds each text alone).
        onnx_dir: where ONNX exports live (the settings' ``onnx_dir``).
        cuda: whether CUDA is available (default: ask torch only where a CUDA driver exists); for tests.

    Yields:
        A BiEncoder, an OnnxQueryEncoder (int8) or an :class:`EncoderPool` of either.

    Raises:
        ValueError: an unknown ``kind`` or ``workers`` < 0 (and BiEncoder's own checks).

    >>> with open_index_encoder("all-MiniLM-L6-v2", workers=2, onnx_dir="/tmp/onnx") as enc:  # doctest: +SKIP
    ...     run_index("catalog.jsonl", engine, enc)
    """
    from shopsearch.settings import INDEX_ENCODERS

    from .embedder import BiEncoder
    from .onnx_encoder import cuda_available
    from .onnx_int8 import int8_encoder

    if kind not in INDEX_ENCODERS:
        raise ValueError(f"encoder must be one of {', '.join(INDEX_ENCODERS)}; got {kind!r}")
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 0:
        raise ValueError(f"workers must be an integer >= 0 (0: one per physical core), got {workers!r}")
    cores = physical_cores()
    if workers == 0:
        small = catalog_bytes is not None and catalog_bytes < SMALL_CATALOG_BYTES
        workers = 1 if small or (kind == "torch" and (cuda_available() if cuda is None else cuda)) else cores
    threads = max(1, cores // workers)
    if kind == "torch":
        if workers == 1:
            yield BiEncoder(model, max_length=max_length, batch_size=batch_size)
            return
        spec = EncoderSpec(BiEncoder, {"model": str(model), "max_length": max_length, "batch_size": batch_size},
                           threads=threads)
    else:
        # Exported (torch) and recorded here, once, so the workers load it with onnxruntime alone.
        enc = int8_encoder(model, cache_dir=onnx_dir, max_length=max_length, threads=0 if workers == 1 else 1)
        if workers == 1:
            yield enc
            return
        spec = EncoderSpec(int8_encoder, {"model": str(model), "cache_dir": str(onnx_dir), "max_length": max_length,
                                          "threads": threads})
    with EncoderPool(spec, workers) as pool:
        yield pool
