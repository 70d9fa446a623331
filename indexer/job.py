"""The indexing job: read -> validate -> chunk -> vector cache -> embed misses -> bulk write, in bounded memory.

Two modes:
- full: build a new ``<alias>-v<timestamp>`` index, verify its count, wait until it is green (its replicas
  copied), only then swap the alias onto it, then drop older versions except the one just replaced (kept for
  rollback). A crash or Ctrl-C leaves the alias on the old index; the partial index is dropped by the next run.
- incremental: compare content hashes with the live index; upsert new/changed products, delete ids that left
  the catalog, leave the rest alone. A product whose new row is quarantined keeps its last good version.

Safety (see :mod:`.catalog_guard` and :mod:`.rebuild_lock`): every run holds the alias's indexing lock, so a
second run of the same alias refuses; it first drops versions that never went live (a crashed run's partial
index); when the alias is live it counts the catalog before writing anything and refuses a run that would
remove more of the live catalog than the configured share, unless ``allow_shrink``.

The job writes through the ``IndexSink`` protocol only; it never imports an engine.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol, Sequence

import numpy as np

from shopsearch.settings import default
from shopsearch.timestamps import format_timestamp, utcnow

from .catalog_guard import CatalogShrinkRefused, ShrinkLimits, check_deletes, check_shrink, scan_catalog_ids
from .encode_pool import EncoderPool
from .encoder_record import EncoderRecord, cache_fingerprint
from .fields import FieldMapping
from .quarantine import QuarantineWriter
from .readers import read_rows
from .records import Product, QuarantinedRow
from .rebuild_lock import rebuild_lock
from .sink import FACET_ATTRIBUTES_META, Delete, IndexDoc, IndexSink
from .validate import REJECTED, Validator
from .vector_cache import VectorCache, cache_key
from .versions import WENT_LIVE, unfinished_versions, version_name, versions_to_delete
from .writer import BulkWriter

log = logging.getLogger(__name__)

MODES = ("auto", "full", "incremental")


class Encoder(Protocol):
    """What the job needs from a bi-encoder (``embedder.BiEncoder`` provides it)."""

    dims: int
    fingerprint: str

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


class IndexVerificationError(RuntimeError):
    """The rebuilt index does not hold the expected number of products, or did not turn green in time; the
    alias was not moved."""


@dataclass(frozen=True)
class IndexReport:
    """Outcome of one indexing run. ``read == indexed + quarantined + unchanged`` always holds."""

    alias: str
    index: str
    mode: str
    read: int
    indexed: int
    quarantined: int
    unchanged: int
    deleted: int
    embedded: int
    cache_hits: int
    seconds: float
    quarantine_path: str | None
    dropped_indices: tuple[str, ...] = ()
    failed_deletes: int = 0
    health: str = ""  # full rebuilds: the new index's status when the alias moved ("yellow: ..." says why)
    unfinished_dropped: tuple[str, ...] = ()  # partial versions of crashed or refused runs, dropped first
    rolled_back_dropped: tuple[str, ...] = ()  # versions a rollback moved the alias off, dropped likewise
    quarantine_summary: str = ""  # QuarantineWriter.summary(): counts by reason, the file and this run's stamp
    replaced: int | None = None  # full rebuilds over a live version: the products that version held

    @property
    def docs_per_s(self) -> float:
        return self.read / self.seconds if self.seconds > 0 else 0.0

    def summary_line(self) -> str:
        """One line: every count, seconds and throughput."""
        return (f"{self.mode} index {self.alias} -> {self.index}: read {self.read}, indexed {self.indexed}, "
                f"quarantined {self.quarantined}, unchanged {self.unchanged}, deleted {self.deleted}, "
                f"embedded {self.embedded}, cache hits {self.cache_hits}, {self.seconds:.1f} s, "
                f"{self.docs_per_s:.0f} docs/s" + (f"; index {self.health}" if self.health else "")
                + (f"; dropped unfinished {', '.join(self.unfinished_dropped)}" if self.unfinished_dropped else "")
                + (f"; dropped rolled-back {', '.join(self.rolled_back_dropped)}" if self.rolled_back_dropped
                   else "")
                + (f"; the version it replaced held {self.replaced} ({self.indexed - self.replaced:+d})"
                   if self.replaced is not None and self.replaced != self.indexed else ""))


def doc_hash(product: Product, fingerprint: str, facet_attributes: tuple[str, ...] = ()) -> str:
    """The stored change-detection hash: product content + the vectors' fingerprint (a new model, or a new int8
    cache epoch, re-embeds all: once, on the next run), and the mapping's facet attributes when it declares any
    (declaring one rewrites the products that carry it)."""
    facets = f"|{','.join(facet_attributes)}" if facet_attributes else ""
    return hashlib.sha1(f"{product.content_hash()}|{fingerprint}{facets}".encode()).hexdigest()


def run_index(catalog: str | Path, sink: IndexSink, encoder: Encoder, *, alias: str = "products",
              mode: str = "auto", mapping: FieldMapping | None = None, quarantine_path: str | Path | None = None,
              cache: VectorCache | None = None, chunk_size: int = 512, fmt: str | None = None,
              progress: bool = True, keep_previous: bool = True,
              on_chunk: Callable[[int], None] | None = None, limits: ShrinkLimits | None = None,
              lock_stale_s: float = default("index_lock_stale_s"), break_lock: bool = False) -> IndexReport:
    """Index a catalog file into ``alias`` on ``sink``.

    Args:
        catalog: JSONL, CSV or Parquet file.
        sink: the engine to write to (``plugin.engines.open_engine(...)``).
        encoder: the bi-encoder (``BiEncoder``, the int8 ``OnnxQueryEncoder``), or an ``EncoderPool`` of worker
            processes: then up to ``pool.depth`` chunks are embedded at once and written in catalog order.
            Its kind and fingerprint are recorded on the index (``encoder_record``).
        alias: the name searches use; concrete indices are ``<alias>-v<timestamp>``.
        mode: "full", "incremental", or "auto" (incremental when the alias exists, else full).
        mapping: catalog column mapping and limits (default: identity).
        quarantine_path: where rejected rows are appended as JSONL (default: ``<alias>.quarantine.jsonl``
            in the current directory); created only if a row is rejected.
        cache: vector cache (None: embed every product written).
        chunk_size: products per embed + bulk chunk (memory holds about 3 chunks of vectors, plus the pool's
            ``depth`` chunks in flight).
        fmt: catalog format (default from the suffix).
        progress: show a tqdm bar and print the summary line.
        keep_previous: after a full rebuild keep the index the alias pointed to before (rollback copy).
        on_chunk: called after each chunk is queued with the number of products queued so far (a test hook;
            raising from it aborts the run as a crash would).
        limits: how much of the live catalog the run may remove (default :class:`ShrinkLimits`: 5% deleted by
            an incremental run, 10% fewer products after a full rebuild).
        lock_stale_s: another run's lock whose heartbeat is older than this is stale and broken.
        break_lock: break another run's lock even if it looks alive.

    Returns:
        An IndexReport.

    Raises:
        ValueError: bad ``mode``/``chunk_size``/``alias``, or ``alias`` names a concrete index.
        FileNotFoundError: the catalog does not exist.
        IndexVerificationError: a full rebuild's count does not match, or the new index did not turn green
            within the engine's ready timeout (the alias is left untouched).
        CatalogShrinkRefused: the run would remove too much of the live catalog (nothing live changed).
        IndexLocked: another run holds the alias's indexing lock.

    >>> report = run_index("catalog.jsonl", open_engine("embedded"), BiEncoder())  # doctest: +SKIP
    >>> report.read == report.indexed + report.quarantined + report.unchanged  # doctest: +SKIP
    True
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be an integer >= 1, got {chunk_size!r}")
    if not alias or alias != alias.lower() or any(c in alias for c in ' "*\\<|,>/?#:'):
        raise ValueError(f"alias must be a lowercase index name without spaces or \\/*?\"<>|,#:; got {alias!r}")
    catalog = Path(catalog)
    if not catalog.is_file():
        raise FileNotFoundError(f"catalog not found: {catalog}")
    with rebuild_lock(sink, alias, stale_after_s=lock_stale_s, break_lock=break_lock) as lock:
        def chunk_done(queued: int) -> None:
            lock.heartbeat()
            if on_chunk is not None:
                on_chunk(queued)

        return _index_locked(catalog, sink, encoder, alias, mode, mapping, quarantine_path, cache, chunk_size,
                             fmt, progress, keep_previous, chunk_done, limits or ShrinkLimits())


def _index_locked(catalog: Path, sink: IndexSink, encoder: Encoder, alias: str, mode: str,
                  mapping: FieldMapping | None, quarantine_path: str | Path | None, cache: VectorCache | None,
                  chunk_size: int, fmt: str | None, progress: bool, keep_previous: bool,
                  on_chunk: Callable[[int], None], limits: ShrinkLimits) -> IndexReport:
    """run_index's work, under the alias's lock."""
    live = sink.resolve_alias(alias)
    if live is None and sink.index_exists(alias):
        raise ValueError(f"alias {alias!r} is a concrete index, not an alias; delete it or choose another name")
    if mode == "auto":
        mode = "incremental" if live else "full"
    if mode == "incremental" and live is None:
        raise ValueError(f"alias {alias!r} does not exist yet; run a full index first (mode='full')")

    started = time.perf_counter()
    quarantine = QuarantineWriter(quarantine_path or Path.cwd() / f"{alias}.quarantine.jsonl")  # fails before writes
    try:
        return _index_quarantined(catalog, sink, encoder, alias, mode, mapping, cache, chunk_size, fmt, progress,
                                  keep_previous, on_chunk, limits, live, started, quarantine)
    finally:
        quarantine.close()  # also when the run is refused or fails: its file closed, and removed when empty


def _drop_unfinished(sink: IndexSink, alias: str, names: tuple[str, ...]) -> tuple[str, ...]:
    """Drop versions newer than the live one, saying which kind each is: a build that never went live, or the
    version a rollback moved the alias off (it carries the went-live mark); returns the latter."""
    rolled_back = tuple(n for n in names if WENT_LIVE in sink.index_meta(n))
    for name in names:
        if name in rolled_back:
            log.warning("dropping %s: the version of %r a rollback moved off (`versions rollback --to` it before an "
                        "indexing run to keep it)", name, alias)
        else:
            log.warning("dropping %s: a version of %r that never went live (crashed or refused run)", name, alias)
        sink.delete_index(name)
    return rolled_back


def _index_quarantined(catalog: Path, sink: IndexSink, encoder: Encoder, alias: str, mode: str,
                       mapping: FieldMapping | None, cache: VectorCache | None, chunk_size: int, fmt: str | None,
                       progress: bool, keep_previous: bool, on_chunk: Callable[[int], None], limits: ShrinkLimits,
                       live: str | None, started: float, quarantine: QuarantineWriter) -> IndexReport:
    """The run itself, writing bad rows to ``quarantine`` (which the caller closes)."""
    unfinished = tuple(unfinished_versions(alias, sink.list_indices(f"{alias}-v"), live))
    # Count the catalog before anything is written, so a truncated export is refused before it costs anything.
    present = scan_catalog_ids(catalog, mapping, fmt) if live else None
    live_count = 0
    if mode == "full":
        if live is not None and present is not None:
            live_count = sink.count(live)
            check_shrink(alias, live, live_count, present.valid, limits)
        rolled_back = _drop_unfinished(sink, alias, unfinished)  # past the guards: a refused run deletes nothing
        index = version_name(alias)
        while sink.index_exists(index):
            time.sleep(0.001)
            index = version_name(alias)
        sink.create_index(index, encoder.dims)
        sink.set_bulk_mode(index, True)
        existing: dict[str, str] = {}
    else:
        index = live  # type: ignore[assignment]
        before = EncoderRecord.from_meta(sink.index_meta(index))
        if before is not None and before.fingerprint != encoder.fingerprint:
            log.warning("%s was embedded by %s (%s); this run's encoder is %s: every product is re-embedded",
                        index, before.fingerprint, before.kind, encoder.fingerprint)
        existing = dict(sink.scan_hashes(index))
        gone = existing.keys() - (present.ids if present is not None else frozenset())
        check_deletes(alias, index, len(existing), len(gone), limits)
        rolled_back = _drop_unfinished(sink, alias, unfinished)

    facet_attributes = (mapping or FieldMapping()).facet_attributes
    # The query side checks its encoder against the record and facets the attributes listed.
    sink.set_index_meta(index, {**EncoderRecord.of(encoder).to_meta(),
                                FACET_ATTRIBUTES_META: ",".join(facet_attributes)})
    run = _Run(sink, index, encoder, cache, quarantine, existing, incremental=(mode == "incremental"),
               facet_attributes=facet_attributes)
    try:
        run.load(catalog, Validator(mapping), fmt, chunk_size, progress, on_chunk)
    except BaseException:
        run.writer.abort()
        quarantine.close()
        raise
    quarantine.close()
    res = run.result

    dropped: tuple[str, ...] = ()
    health = ""
    if mode == "full":
        sink.set_bulk_mode(index, False)
        sink.refresh(index)
        stored = sink.count(index)
        if stored != res.indexed:
            raise IndexVerificationError(f"{index} holds {stored} products, expected {res.indexed}; "
                                         f"alias {alias!r} left on {live!r}")
        if live is not None:
            try:
                check_shrink(alias, live, live_count, stored, limits)  # engine rejections may have cost more
            except CatalogShrinkRefused:
                sink.delete_index(index)
                raise
        ready = sink.wait_ready(index)
        if not ready.ready:
            raise IndexVerificationError(f"{index} is not ready ({ready.note}); alias {alias!r} left on {live!r}. "
                                         "Check the cluster's nodes and disk, or lower the replicas "
                                         "(shopsearch index --replicas R, or [cluster] in index.toml)")
        health = ready.status + (f" ({ready.note})" if ready.note else "")
        sink.set_index_meta(index, {WENT_LIVE: format_timestamp(utcnow())})  # whole: `versions rollback --to` may
        sink.swap_alias(alias, index)
        dropped = tuple(versions_to_delete(alias, sink.list_indices(f"{alias}-v"), index, live, keep_previous))
        for name in dropped:
            sink.delete_index(name)
    else:
        sink.refresh(index)

    report = IndexReport(
        alias=alias, index=index, mode=mode, read=run.read, indexed=res.indexed, quarantined=quarantine.count,
        unchanged=run.unchanged, deleted=res.deleted, embedded=run.embedded, cache_hits=run.cache_hits,
        seconds=time.perf_counter() - started, quarantine_path=str(quarantine.path) if quarantine.count else None,
        dropped_indices=dropped, failed_deletes=len(res.failed_deletes), health=health,
        unfinished_dropped=tuple(n for n in unfinished if n not in rolled_back), rolled_back_dropped=rolled_back,
        quarantine_summary=quarantine.summary() if quarantine.count else "",
        replaced=live_count if mode == "full" and live is not None else None)
    if progress:  # else the caller prints the report (the CLI with --no-progress), once
        from tqdm import tqdm

        tqdm.write(report.summary_line())
        if quarantine.count:
            tqdm.write(quarantine.summary())
    return report


class _Run:
    """The streaming loop's state (counters, pending chunk, writer); one per run_index call."""

    def __init__(self, sink: IndexSink, index: str, encoder: Encoder, cache: VectorCache | None,
                 quarantine: QuarantineWriter, existing: dict[str, str], incremental: bool,
                 facet_attributes: tuple[str, ...] = ()):
        self.encoder, self.cache, self.quarantine = encoder, cache, quarantine
        self.facet_attributes = facet_attributes
        self.existing, self.incremental = existing, incremental
        self.cache_fingerprint = cache_fingerprint(encoder.fingerprint)
        self.writer = BulkWriter(sink, index)
        self.read = self.unchanged = self.embedded = self.cache_hits = self.queued = 0
        self.result = self.writer.result
        # With a pool, chunks wait here for their vectors, oldest first (at most pool.depth of them), and the keys
        # they are embedding are listed so a later chunk with the same text borrows the vector (via the cache)
        # instead of embedding it again: the counts then match the in-process run exactly.
        self.pool = encoder if isinstance(encoder, EncoderPool) else None
        self.inflight: deque[_Chunk] = deque()
        self.inflight_keys: set[str] = set()

    def load(self, catalog: Path, validator: Validator, fmt: str | None, chunk_size: int, progress: bool,
             on_chunk: Callable[[int], None] | None) -> None:
        from tqdm import tqdm

        pending: list[tuple[Product, str, int]] = []
        bar = tqdm(desc=f"index {catalog.name}", unit=" rows", disable=not progress, mininterval=0.5)
        try:
            for row in read_rows(catalog, fmt):
                self.read += 1
                if self.read % 256 == 0:
                    bar.update(256)
                if row.error is not None:
                    # a row that cannot be read keeps its product's stored version too, when its id can be told
                    if row.data is not None and (pid := validator.id_of(row.data)) is not None:
                        self.existing.pop(pid, None)
                    self.quarantine.write(QuarantinedRow(row.source, row.line, row.error, row.raw))
                    continue
                verdict = validator.check(row.data or {}, row.line)
                if verdict.product is None:
                    # in incremental mode the stored version of a row that now fails validation stays
                    if verdict.id is not None:
                        self.existing.pop(verdict.id, None)
                    self.quarantine.write(QuarantinedRow(row.source, row.line, verdict.reason or "", row.raw))
                    continue
                # the vectors' cache fingerprint, so vectors an older epoch computed are replaced on the next run
                h = doc_hash(verdict.product, self.cache_fingerprint, self.facet_attributes)
                if self.existing.pop(verdict.product.id, None) == h:
                    self.unchanged += 1
                    continue
                pending.append((verdict.product, h, row.line))
                if len(pending) >= chunk_size:
                    self._flush(pending, on_chunk)
                    pending = []
            if pending:
                self._flush(pending, on_chunk)
            while self.inflight:
                self._emit(self.inflight.popleft(), on_chunk)
            bar.update(self.read % 256)
        except BaseException:
            for chunk in self.inflight:  # queued work is dropped; the caller stops the pool's workers
                if chunk.future is not None:
                    chunk.future.cancel()
            raise
        finally:
            bar.close()
        if self.incremental and self.existing:
            gone = sorted(self.existing)
            for i in range(0, len(gone), chunk_size):
                self.writer.submit([(Delete(pid), 0) for pid in gone[i:i + chunk_size]])
        self.writer.finish()
        for doc, line, error in self.result.rejected:
            raw = json.dumps(doc.product.to_source(), ensure_ascii=False)
            self.quarantine.write(QuarantinedRow(str(catalog), line, f"{REJECTED}: {error}", raw))
        if self.result.failed_deletes:
            log.error("%d deletes failed, e.g. %s", len(self.result.failed_deletes), self.result.failed_deletes[0])

    def _flush(self, pending: list[tuple[Product, str, int]], on_chunk: Callable[[int], None] | None) -> None:
        """Look the chunk's vectors up in the cache, embed the missing ones (now, or on the pool), write it."""
        texts = [p.embed_text() for p, _, _ in pending]
        keys = [cache_key(self.cache_fingerprint, t) for t in texts]
        found = self.cache.get_many(keys) if self.cache is not None else {}
        missing: list[str] = []
        borrowed: list[str] = []
        for k in dict.fromkeys(keys):  # each distinct text embedded once
            if k not in found:
                (borrowed if k in self.inflight_keys else missing).append(k)
        self.embedded += len(missing)
        self.cache_hits += len(keys) - len(missing)
        text_of = dict(zip(keys, texts))
        batch = [text_of[k] for k in missing]
        chunk = _Chunk(pending, keys, found, missing, borrowed)
        if self.pool is None:
            if missing:
                self._store(chunk, self.encoder.encode(batch))
            self._write(chunk, on_chunk)
            return
        if missing:
            chunk.future = self.pool.submit(batch)
            if self.cache is not None:
                self.inflight_keys.update(missing)
        self.inflight.append(chunk)
        while len(self.inflight) > self.pool.depth:
            self._emit(self.inflight.popleft(), on_chunk)

    def _emit(self, chunk: "_Chunk", on_chunk: Callable[[int], None] | None) -> None:
        """Wait for a pooled chunk's vectors (the oldest in flight), then write it."""
        if chunk.future is not None and self.pool is not None:
            first = chunk.pending[0][2]
            what = f"embedding catalog lines {first}-{chunk.pending[-1][2]}"
            self._store(chunk, self.pool.result(chunk.future, what))
            self.inflight_keys.difference_update(chunk.missing)
        if chunk.borrowed and self.cache is not None:  # embedded by an earlier chunk, cached when it was written
            chunk.vectors.update(self.cache.get_many(chunk.borrowed))
        self._write(chunk, on_chunk)

    def _store(self, chunk: "_Chunk", vecs: np.ndarray) -> None:
        new = dict(zip(chunk.missing, vecs))
        if self.cache is not None:
            self.cache.put_many(new)
        chunk.vectors.update(new)

    def _write(self, chunk: "_Chunk", on_chunk: Callable[[int], None] | None) -> None:
        self.writer.submit([(IndexDoc(p, chunk.vectors[k], h, self.facet_attributes), line)
                            for (p, h, line), k in zip(chunk.pending, chunk.keys)])
        self.queued += len(chunk.pending)
        if on_chunk is not None:
            on_chunk(self.queued)


@dataclass
class _Chunk:
    """One chunk between the cache lookup and the writer: its rows, their cache keys, the vectors known so far,
    the keys it embeds itself, those an earlier chunk in flight embeds, and the pool's future."""

    pending: list[tuple[Product, str, int]]
    keys: list[str]
    vectors: dict[str, np.ndarray]
    missing: list[str]
    borrowed: list[str]
    future: "Future[np.ndarray] | None" = None
