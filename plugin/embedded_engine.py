"""The Engine contract in-process, with no server: the default when no OpenSearch is configured.

Design (why it looks like this):

- **SQLite per index is the source of truth** (``root/<index>/docs.sqlite``, WAL): a bulk chunk is one
  transaction, so a crash loses nothing committed and readers in other processes (API workers) never block the
  indexer. Text is analysed at write time (see :mod:`.embedded_store`) so refreshes only assemble arrays.
- **Search structures are rebuilt on refresh**, like OpenSearch's refresh: a :class:`~.embedded_snapshot.Snapshot`
  of plain numpy/scipy arrays (BM25 tf matrices, normalised vectors, filter columns), saved as ``.npz`` plus a
  versioned ``params.json`` (no pickle) so another process opens it without rebuilding. Searches refresh lazily
  when writes are pending (unless bulk mode is on, the analogue of ``refresh_interval: -1``).
- **Same results contract as :class:`~.opensearch_engine.OpenSearchEngine`**: Lucene BM25 with the mapping's
  analyzer (:mod:`.text_analysis`, :mod:`.embedded_bm25`), ``best_fields`` with fuzziness AUTO, prefix_length 1,
  max_expansions 50; k-NN scores reported as lucene ``cosinesimil`` does, ``(1 + cos) / 2``; filters applied
  *during* k-NN (mask, then exact top-k, so k filtered hits come back whenever k pass). Exact k-NN is a
  matrix-vector product, fine up to ~1M products; an HNSW index (usearch/hnswlib) would slot in behind
  ``_knn`` if larger catalogs are needed.
- **Aliases** live in ``root/aliases.json``, replaced atomically and durably (:mod:`shopsearch.atomic_write`).
- **Threads**: one SQLite connection per thread, a lock per index for writes and rebuilds; a search takes a
  reference to the current immutable snapshot, so concurrent readers never see half a refresh.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from shopsearch.atomic_write import write_atomically
from shopsearch.deadline import Deadline
from shopsearch.indexer.sink import Action, BulkItem, Delete, IndexDoc, IndexHealth, LockHolder

from .documents import TEXT_FIELDS, public_source, to_engine_doc
from .embedded_bm25 import best_fields, score_field
from .embedded_locks import FileLocks
from .embedded_snapshot import Snapshot, build_snapshot
from .embedded_store import DocStore
from .engine import (HIGHLIGHT_FIELDS, PRICE_EDGES, BM25Leg, Filters, Hit, IndexNotFound, KnnLeg,
                     LegsCutShort, MatchPage, MatchRule, check_leg_size, check_match, check_min_score,
                     check_price_edges, facet_filters, path_parents, range_buckets, split_faceted)
from .highlight import highlight as mark, matched_terms
from .index_config import IndexConfig, load_index_config
from .suggest import PrefixIndex, check_suggest_size
from .text_analysis import analyze_query
from .vocabulary import Vocabulary, build_vocabulary

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")  # the same names OpenSearchEngine accepts
RETIRE_S = 60.0  # a version another process deleted is closed this long after it was found gone (no search is longer)
# Field sorts: the snapshot column and whether larger values come first (relevance sorts by score).
SORT_COLUMNS = {"price_asc": ("price", False), "price_desc": ("price", True), "rating": ("rating", True)}


def counted_buckets(facet: str, price_edges: Sequence[float] = PRICE_EDGES) -> list[tuple[str, float, float | None]]:
    """The ``(label, from, to)`` buckets :meth:`.embedded_snapshot.Snapshot.range_counts` counts a range facet in
    (``from`` inclusive, ``to`` exclusive): :func:`~.engine.range_buckets`, with a price bucket's upper edge moved
    one float64 step up so a product priced exactly at it counts. A price bucket then holds exactly the products
    its link selects (``price_min=from&price_max=to``, both inclusive; a product priced at an edge counts in both
    buckets that share it), as the OpenSearch adapter's counts (:func:`.opensearch_queries.facet_aggs`).

    >>> [(label, hi == 25.0, hi > 25.0) for label, _, hi in counted_buckets("price", (25.0,))[:1]]
    [('0-25', False, True)]
    >>> counted_buckets("rating") == range_buckets("rating")
    True
    """
    buckets = range_buckets(facet, price_edges)
    if facet != "price":
        return buckets
    return [(label, lo, None if hi is None else math.nextafter(float(hi), math.inf)) for label, lo, hi in buckets]


def _check_name(param: str, value: str) -> str:
    if not isinstance(value, str) or not _NAME_RE.match(value) or len(value) > 255 or value in (".", ".."):
        raise ValueError(f"{param}={value!r} is not a valid index name: lowercase letters, digits, '.', '_', '-', "
                         "starting with a letter or digit")
    return value



def _top(scores: np.ndarray, mask: np.ndarray, k: int) -> np.ndarray:
    """Rows of the ``k`` best scores among ``mask``, best first; ties keep index order (like Lucene doc ids)."""
    rows = np.flatnonzero(mask)
    if len(rows) > k:
        part = np.argpartition(-scores[rows], k - 1)[:k]
        kth = scores[rows[part]].min()
        rows = rows[scores[rows] >= kth]  # keep every tie at the cut so the stable sort decides by row
    order = np.lexsort((rows, -scores[rows]))
    return rows[order][:k]


def _vector_scores(snap: Snapshot, vector: Sequence[float]) -> np.ndarray:
    """Every row's lucene ``cosinesimil`` score, ``(1 + cos) / 2``, for ``vector``."""
    q = np.asarray([float(x) for x in vector], dtype=np.float32)
    if len(q) != snap.dims:
        raise ValueError(f"vector has {len(q)} dimensions; the index expects {snap.dims}")
    norm = float(np.linalg.norm(q))
    if norm == 0.0:
        raise ValueError("vector is all zeros: cosine similarity is undefined")
    if not len(snap):
        return np.zeros(0, dtype=np.float32)
    return ((1.0 + snap.vectors @ (q / norm)) / 2.0).astype(np.float32)


def _sorted_rows(snap: Snapshot, rows: np.ndarray, scores: np.ndarray, sort: str) -> np.ndarray:
    """``rows`` in ``sort`` order, ties by id ascending; a field sort puts rows missing the value last."""
    ids = snap.ids[rows]
    if sort == "relevance":
        return rows[np.lexsort((ids, -scores[rows]))]
    column, descending = SORT_COLUMNS[sort]
    # A field the snapshot has no column for is missing everywhere.
    values = getattr(snap, column, None)
    values = np.full(len(snap), np.nan) if values is None else np.asarray(values, dtype=np.float64)
    picked = values[rows]
    missing = np.isnan(picked)
    key = np.where(missing, 0.0, -picked if descending else picked)
    return rows[np.lexsort((ids, key, missing))]


class _Index:
    """One open index: its store and the current snapshot."""

    def __init__(self, store: DocStore):
        self.store = store
        self.snapshot: Snapshot | None = None
        self.prefixes: tuple[int, PrefixIndex] | None = None  # autocomplete index, by snapshot generation
        self.vocabulary: Vocabulary | None = None  # spelling vocabulary of one snapshot generation


class EmbeddedEngine:
    """Index, bulk-load and search products on local disk, in process.

    Args:
        root: directory holding one sub-directory per index and ``aliases.json`` (created if missing).
        config: index settings (default plugin/config/index.toml): the bulk chunk size is used (synonyms come
            with each BM25 leg: :mod:`.synonyms`).

    >>> engine = EmbeddedEngine(Path("/tmp/ss-embedded"))  # doctest: +SKIP
    >>> engine.search("products", [BM25Leg("tv", {"title": 3.0})])  # doctest: +SKIP
    """

    def __init__(self, root: Path, *, config: IndexConfig | None = None) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.config = config or load_index_config()
        self._lock = threading.RLock()
        self._open: dict[str, _Index] = {}
        self._retired: list[tuple[float, _Index]] = []  # (when, index) deleted by another process, closed later
        self._locks = FileLocks(self.root)

    def __repr__(self) -> str:
        return f"EmbeddedEngine({str(self.root)!r})"

    # --- indices and aliases -----------------------------------------------------------------------------------

    def _dir(self, name: str) -> Path:
        return self.root / name

    def _aliases(self) -> dict[str, str]:
        try:
            return json.loads((self.root / "aliases.json").read_text())
        except FileNotFoundError:
            return {}

    def _write_aliases(self, aliases: dict[str, str]) -> None:
        write_atomically(self.root / "aliases.json", json.dumps(aliases, indent=1, sort_keys=True))

    def _is_index(self, name: str) -> bool:
        return (self._dir(name) / "docs.sqlite").is_file()

    def _index(self, name: str) -> _Index:
        """The open index ``name`` (or the one alias ``name`` points to); raises IndexNotFound."""
        _check_name("index", name)
        concrete = name if self._is_index(name) else self._aliases().get(name)
        if concrete is None or not self._is_index(concrete):
            raise IndexNotFound(name)
        with self._lock:
            idx = self._open.get(concrete)
            if idx is None:
                self._retire_deleted()
                idx = self._open[concrete] = _Index(DocStore(self._dir(concrete) / "docs.sqlite"))
            while self._retired and time.monotonic() - self._retired[0][0] >= RETIRE_S:
                self._retired.pop(0)[1].store.close()
            return idx

    def _retire_deleted(self) -> None:
        """Retire the open indices another process deleted (a rebuild drops the version before last): a server
        would otherwise hold their files, and their memory, until it stops. Checked when an index is first opened,
        which is when a rebuild's new version takes over; a retired index is closed by the first lookup at least
        :data:`RETIRE_S` later, so a search still reading it finishes."""
        now = time.monotonic()
        for name in [n for n in self._open if not self._is_index(n)]:
            self._retired.append((now, self._open.pop(name)))

    def create_index(self, name: str, dims: int) -> None:
        """Create an empty index with ``dims``-dimensional vectors.

        Raises:
            ValueError: bad name or dims, or an index or alias called ``name`` already exists.
        """
        _check_name("name", name)
        if not isinstance(dims, int) or isinstance(dims, bool) or dims <= 0:
            raise ValueError(f"dims={dims!r} must be an integer > 0")
        with self._lock:
            if self._is_index(name) or name in self._aliases():
                raise ValueError(f"index or alias {name!r} already exists in {self.root}")
            self._dir(name).mkdir(parents=True, exist_ok=True)
            self._open[name] = _Index(DocStore(self._dir(name) / "docs.sqlite", dims=dims))

    def delete_index(self, name: str) -> None:
        """Delete an index (and the aliases pointing to it); no error if it does not exist."""
        _check_name("name", name)
        with self._lock:
            idx = self._open.pop(name, None)
            if idx is not None:
                idx.store.close()
            if self._dir(name).is_dir() and self._is_index(name):
                shutil.rmtree(self._dir(name))
            aliases = self._aliases()
            kept = {a: i for a, i in aliases.items() if i != name}
            if kept != aliases:
                self._write_aliases(kept)

    def index_exists(self, name: str) -> bool:
        """Whether an index (or an alias) called ``name`` exists."""
        _check_name("name", name)
        return self._is_index(name) or self._aliases().get(name) is not None

    def list_indices(self, prefix: str) -> list[str]:
        """Concrete index names starting with ``prefix``, sorted."""
        if prefix and not re.match(r"^[a-z0-9._-]*$", prefix):
            raise ValueError(f"prefix={prefix!r} may hold only lowercase letters, digits, '.', '_' and '-'")
        return sorted(p.name for p in self.root.iterdir() if p.name.startswith(prefix) and self._is_index(p.name))

    def resolve_alias(self, alias: str) -> str | None:
        """The concrete index ``alias`` points to, or None when the alias does not exist."""
        _check_name("alias", alias)
        return self._aliases().get(alias)

    def swap_alias(self, alias: str, index: str) -> None:
        """Point ``alias`` at ``index`` atomically (one file replace).

        Raises:
            IndexNotFound: ``index`` does not exist.
            ValueError: ``alias`` is the name of a concrete index.
        """
        _check_name("alias", alias)
        _check_name("index", index)
        with self._lock:
            if not self._is_index(index):
                raise IndexNotFound(index)
            if self._is_index(alias):
                raise ValueError(f"alias={alias!r} is the name of an index; pick another alias name")
            aliases = self._aliases()
            aliases[alias] = index
            self._write_aliases(aliases)

    def set_bulk_mode(self, index: str, on: bool) -> None:
        """Bulk mode on: searches stop refreshing lazily (only refresh() rebuilds); off: lazy refresh again."""
        self._index(index).store.set_meta("bulk_mode", "1" if on else "0")

    def set_index_meta(self, index: str, meta: dict[str, str]) -> None:
        """Record ``meta`` on ``index`` (merged over what it holds), in its meta table."""
        store = self._index(index).store
        with store.write_lock:
            store.set_meta("index_meta", json.dumps({**self.index_meta(index), **meta}, sort_keys=True))

    def index_meta(self, index: str) -> dict[str, str]:
        """What :meth:`set_index_meta` recorded on ``index`` (or the index alias ``index`` names); {} if nothing.

        Raises:
            IndexNotFound: no such index or alias.
        """
        try:
            return dict(json.loads(self._index(index).store.meta("index_meta")))
        except KeyError:
            return {}

    def wait_ready(self, index: str) -> IndexHealth:
        """An existing embedded index is ready at once (one copy on local disk: nothing to replicate)."""
        self._index(index)
        return IndexHealth("green", 1, True)

    def create_lock(self, name: str, holder: LockHolder) -> LockHolder | None:
        """Take the indexing lock ``name`` (a file under ``root/.locks``); None when taken, else its holder."""
        return self._locks.create(_check_name("name", name), holder)

    def touch_lock(self, name: str, holder: LockHolder) -> bool:
        """Refresh ``holder``'s heartbeat if it still holds lock ``name``."""
        return self._locks.touch(_check_name("name", name), holder)

    def delete_lock(self, name: str, holder: LockHolder) -> bool:
        """Release lock ``name`` if ``holder`` still holds it."""
        return self._locks.delete(_check_name("name", name), holder)

    # --- writes ------------------------------------------------------------------------------------------------

    def bulk(self, index: str, actions: Iterable[Action]) -> Iterator[BulkItem]:
        """Write actions in transactions of ``config.chunk_size``; yield one BulkItem per action, in order.

        A bad document (missing id, wrong vector dimension, NaN or zero vector) is ``ok=False`` with the reason
        while the others are written. Deleting an absent id is ok. Items are yielded once their chunk committed.

        Raises:
            IndexNotFound: ``index`` does not exist (on first iteration).
            ValueError: an action is neither IndexDoc nor Delete.
        """
        idx = self._index(index)
        chunk: list[Action] = []
        for action in actions:
            chunk.append(action)
            if len(chunk) >= self.config.chunk_size:
                yield from self._write_chunk(idx, chunk)
                chunk = []
        if chunk:
            yield from self._write_chunk(idx, chunk)

    def _reject(self, doc: IndexDoc, dims: int) -> str | None:
        if not str(doc.product.id).strip():
            return "id is empty"
        vec = doc.vector
        if len(vec) != dims:
            return f"vector has {len(vec)} dimensions; the index expects {dims}"
        if not all(math.isfinite(float(x)) for x in vec):
            return "vector holds NaN or infinite values"
        if not any(float(x) for x in vec):
            return "zero vector: cosine similarity is undefined"
        return None

    def _write_chunk(self, idx: _Index, chunk: list[Action]) -> list[BulkItem]:
        items: list[BulkItem] = []
        upserts, ops = [], []
        for action in chunk:
            if isinstance(action, IndexDoc):
                doc_id = str(action.product.id)
                reason = self._reject(action, idx.store.dims)
                if reason:
                    items.append(BulkItem(doc_id, False, reason))
                    continue
                src = to_engine_doc(action)
                blob = np.asarray(src.pop("embedding"), dtype=np.float32).tobytes()
                upserts.append((doc_id, src, action.content_hash, blob))
                ops.append(("put", doc_id))
            elif isinstance(action, Delete):
                doc_id = str(action.id)
                ops.append(("del", doc_id))
            else:
                raise ValueError(f"actions must hold IndexDoc or Delete; got {type(action).__name__}")
            items.append(BulkItem(doc_id, True))
        if ops:
            idx.store.write(upserts, ops)
        return items

    def refresh(self, index: str) -> None:
        """Make every write so far visible to searches and counts (rebuild and save the snapshot if stale)."""
        idx = self._index(index)
        self._snapshot(idx, force=True)

    def _snapshot(self, idx: _Index, force: bool = False) -> Snapshot:
        snap = idx.snapshot
        gen = idx.store.generation()
        if snap is not None and snap.generation == gen:
            return snap
        if snap is not None and not force and idx.store.meta("bulk_mode") == "1":
            return snap
        with idx.store.write_lock:
            if idx.snapshot is not None and idx.snapshot.generation == idx.store.generation():
                return idx.snapshot
            directory = idx.store.path.parent
            loaded = Snapshot.load(directory)
            gen = idx.store.generation()
            if loaded is not None and loaded.generation == gen:
                idx.snapshot = loaded
            else:
                gen, rows = idx.store.dump()
                idx.snapshot = build_snapshot(gen, idx.store.dims, rows)
                idx.snapshot.save(directory)
            return idx.snapshot

    # --- reads -------------------------------------------------------------------------------------------------

    def count(self, index: str) -> int:
        """How many products ``index`` holds (every committed write; never less current than OpenSearch)."""
        return self._index(index).store.count()

    def get(self, index: str, id: str, with_vector: bool = False) -> dict[str, Any] | None:
        """The stored product ``id`` (public fields; plus ``"vector"`` when asked), or None when absent.

        Raises:
            IndexNotFound: ``index`` does not exist.
        """
        found = self._index(index).store.get(str(id))
        if found is None:
            return None
        src, blob = found
        out = public_source(src)
        if with_vector:
            out["vector"] = [float(x) for x in np.frombuffer(blob, dtype=np.float32)]
        return out

    def scan_hashes(self, index: str) -> Iterator[tuple[str, str]]:
        """Yield ``(id, content_hash)`` for every stored product."""
        yield from self._index(index).store.hashes()

    def search(self, index: str, legs: Sequence[BM25Leg | KnnLeg], *, with_source: bool = True,
               deadline: Deadline | None = None) -> list[list[Hit]]:
        """Run every leg against one snapshot; one hit list per leg, best first (``with_source=False``: ids and
        scores only; fetch a page's products with :meth:`sources`).

        ``deadline`` is checked before each leg (a leg in progress is not interrupted): once it has passed, the
        legs that ran come back in :class:`~.engine.LegsCutShort`.

        Raises:
            IndexNotFound: ``index`` does not exist.
            ValueError: a leg is invalid (size, fields, boosts, vector length...).
            LegsCutShort: the deadline passed before every leg ran.
        """
        for leg in legs:
            self._check_leg(leg)
        idx = self._index(index)
        if not legs:
            return []
        snap = self._snapshot(idx)
        ranked: list[list[tuple[str, float, dict[str, float]]]] = []
        for leg in legs:
            if deadline is not None and deadline.expired():
                raise LegsCutShort(self._with_sources(idx, ranked, with_source))
            if isinstance(leg, BM25Leg):
                ranked.append(self._bm25(snap, leg))
            else:
                ranked.append(self._knn(snap, leg))
        return self._with_sources(idx, ranked, with_source)

    @staticmethod
    def _with_sources(idx: _Index, ranked: list[list[tuple[str, float, dict[str, float]]]],
                      with_source: bool) -> list[list[Hit]]:
        """Ranked (id, score, field scores) lists as Hits, with their stored sources when asked."""
        if not with_source:
            return [[Hit(i, s, fields=f) for i, s, f in r] for r in ranked]
        sources = idx.store.sources(list({i for r in ranked for i, _, _ in r}))
        return [[Hit(i, s, public_source(sources[i]), fields=f) for i, s, f in r if i in sources] for r in ranked]

    def _check_leg(self, leg: Any) -> None:
        if isinstance(leg, BM25Leg):
            check_leg_size("size", leg.size)
            if not isinstance(leg.query, str):
                raise ValueError(f"query={leg.query!r} must be a string")
            if not leg.fields:
                raise ValueError("fields must name at least one of " + ", ".join(TEXT_FIELDS))
            for name, boost in leg.fields.items():
                if name not in TEXT_FIELDS:
                    raise ValueError(f"fields has {name!r}; allowed fields: {', '.join(TEXT_FIELDS)}")
                if not isinstance(boost, (int, float)) or not math.isfinite(boost) or boost <= 0:
                    raise ValueError(f"boost for field {name!r} is {boost!r}; it must be a finite number > 0")
            if not 0.0 <= leg.tie_breaker <= 1.0:
                raise ValueError(f"tie_breaker={leg.tie_breaker!r} must be within 0..1")
        elif isinstance(leg, KnnLeg):
            check_leg_size("k", leg.k)
            check_min_score(leg.min_score, allow_zero=True)
            vector = [float(x) for x in leg.vector]
            if not vector or not all(math.isfinite(x) for x in vector):
                raise ValueError(f"vector must be a non-empty list of finite numbers; got {len(vector)} values")
        else:
            raise ValueError(f"legs must be BM25Leg or KnnLeg; got {type(leg).__name__}")

    def _lexical(self, snap: Snapshot, leg: BM25Leg) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        """The leg's best_fields scores and match mask, and each field's own (unboosted) scores."""
        clauses = analyze_query(leg.query, leg.synonyms)
        if not clauses:
            return np.zeros(len(snap), dtype=np.float32), np.zeros(len(snap), dtype=bool), []
        per_field = [score_field(snap.fields[f], clauses, leg.fuzziness) for f in leg.fields]
        scores, matched = best_fields(per_field, list(leg.fields.values()), leg.tie_breaker)
        return scores, matched, [s for s, _ in per_field]

    def _bm25(self, snap: Snapshot, leg: BM25Leg) -> list[tuple[str, float, dict[str, float]]]:
        if not leg.query.strip() or not len(snap):
            return []  # an empty lexical query matches nothing, as in OpenSearchEngine
        scores, matched, per_field = self._lexical(snap, leg)
        rows = _top(scores, matched & snap.mask(leg.filters), leg.size)
        return [(snap.ids[r].item(), float(scores[r]),
                 {f: float(s[r]) for f, s in zip(leg.fields, per_field)} if leg.field_scores else {}) for r in rows]

    def _knn(self, snap: Snapshot, leg: KnnLeg) -> list[tuple[str, float, dict[str, float]]]:
        scores = _vector_scores(snap, leg.vector)
        mask = snap.mask(leg.filters)
        if leg.min_score:
            mask &= scores >= np.float32(leg.min_score)  # radial search
        rows = _top(scores, mask, leg.k)
        return [(snap.ids[r].item(), float(scores[r]), {}) for r in rows]

    def match(self, index: str, rule: MatchRule, *, sort: str = "relevance", offset: int = 0, size: int = 0,
              exclude: Sequence[str] = (), facets: Sequence[str] = (), facet_size: int = 10,
              highlight: str | None = None, deadline: Deadline | None = None,
              price_edges: Sequence[float] = PRICE_EDGES) -> MatchPage:
        """The products matching ``rule``: lexically, or with a vector score of at least ``rule.min_score``.

        Returns the exact count, the slice ``offset:offset+size`` in ``sort`` order (relevance: the lexical score
        plus the vector score of those clearing ``min_score``, as OpenSearch's bool ``should`` sums them; field
        sorts put missing values last; ties by id; ``exclude`` ids skipped in the slice only) and disjunctive facet
        counts (each facet ignores its own filter: engine.FACET_FILTER; their shapes: :meth:`.engine.Engine.match`).

        Raises:
            ValueError: an unknown sort or facet field, a bad offset/size/min_score or leg.
            IndexNotFound: ``index`` does not exist.
            DeadlineExceeded: ``deadline`` had passed before the call.

        >>> engine.match("products", MatchRule(BM25Leg("sofa", {"title": 1.0})), size=10)  # doctest: +SKIP
        MatchPage(total=20, hits=[...], facets={})
        """
        check_match(sort, offset, size, facets, facet_size)
        check_price_edges(price_edges)
        if rule.lexical is not None:
            self._check_leg(rule.lexical)
        if rule.vector is not None:
            check_min_score(rule.min_score)
        if deadline is not None:
            deadline.check("match")
        idx = self._index(index)
        snap = self._snapshot(idx)
        scores, matched = self._matching(snap, rule)
        rest, owned = split_faceted(rule.filters)
        base = matched & snap.mask(rest)
        hits_mask = base & snap.mask(owned)
        counts = {}
        for name in dict.fromkeys(facets):
            counted = base & snap.mask(facet_filters(owned, name))
            if name == "category_path":
                counts[name] = snap.path_counts(counted, path_parents(owned.category_path), facet_size)
            elif name in ("price", "rating"):
                counts[name] = snap.range_counts(counted, name, counted_buckets(name, price_edges))
            else:
                counts[name] = snap.facet_counts(counted, name, facet_size)
        rows: list[int] = []
        if size:
            wanted = hits_mask & ~np.isin(snap.ids, np.array([str(i) for i in exclude], dtype=str)) \
                if exclude else hits_mask
            rows = _sorted_rows(snap, np.flatnonzero(wanted), scores, sort)[offset:offset + size].tolist()
        found = self._hits(idx, snap, [(snap.ids[r].item(), float(scores[r]) if sort == "relevance" else 0.0)
                                       for r in rows], highlight)
        return MatchPage(total=int(hits_mask.sum()), hits=found, facets=counts)

    def _matching(self, snap: Snapshot, rule: MatchRule) -> tuple[np.ndarray, np.ndarray]:
        """Relevance scores and the match mask of ``rule`` (before filters)."""
        scores = np.zeros(len(snap), dtype=np.float32)
        if rule.lexical is None and rule.vector is None:
            return scores, np.ones(len(snap), dtype=bool)
        matched = np.zeros(len(snap), dtype=bool)
        lex = rule.lexical
        if lex is not None and lex.query.strip() and len(snap):
            lex_scores, matched, _ = self._lexical(snap, lex)
            scores = np.where(matched, lex_scores, np.float32(0.0)).astype(np.float32)
        if rule.vector is not None and len(snap):
            vec = _vector_scores(snap, rule.vector)
            near = vec >= np.float32(rule.min_score)
            scores = (scores + np.where(near, vec, np.float32(0.0))).astype(np.float32)
            matched = matched | near
        if rule.also:
            matched = matched | np.isin(snap.ids, np.array(rule.also, dtype=str))
        return scores, matched

    def _hits(self, idx: _Index, snap: Snapshot, scored: list[tuple[str, float]], query: str | None) -> list[Hit]:
        """Hits with their sources (ids no longer stored left out), highlighted for ``query`` when given."""
        sources = idx.store.sources([i for i, _ in scored])
        terms = {}
        if query and query.strip():
            clauses = analyze_query(query)
            terms = {name: matched_terms(clauses, snap.fields[name].vocab_list) for name in HIGHLIGHT_FIELDS}
        out = []
        for i, score in scored:
            if i not in sources:
                continue
            src = public_source(sources[i])
            marks = {name: mark(src.get(name), found) for name, found in terms.items()}
            out.append(Hit(i, score, src, {name: m for name, m in marks.items() if m is not None}))
        return out

    def sources(self, index: str, ids: Sequence[str], highlight: str | None = None,
                deadline: Deadline | None = None) -> dict[str, Hit]:
        """The stored products of ``ids`` as Hits (score 0; ids not found left out), with ``Hit.highlights`` for
        the query ``highlight`` when given (the markup of :mod:`.highlight`, as OpenSearch's highlighter writes).

        Raises:
            IndexNotFound: ``index`` does not exist.
            DeadlineExceeded: ``deadline`` had passed before the call.
        """
        if deadline is not None:
            deadline.check("sources")
        idx = self._index(index)
        snap = self._snapshot(idx)
        return {h.id: h for h in self._hits(idx, snap, [(str(i), 0.0) for i in dict.fromkeys(ids)], highlight)}

    def suggest(self, index: str, prefix: str, size: int = 8) -> list[str]:
        """Autocomplete titles (word-prefix match on every typed word), ranked as in plugin/suggest.py.

        Raises:
            ValueError: size outside 1..MAX_SUGGESTIONS (50).
            IndexNotFound: ``index`` does not exist.
        """
        check_suggest_size(size)
        idx = self._index(index)
        snap = self._snapshot(idx)
        with self._lock:
            cached = idx.prefixes
            if cached is None or cached[0] != snap.generation:
                sources = idx.store.sources([i.item() for i in snap.ids])
                titles = [sources[i.item()].get("title", "") for i in snap.ids if i.item() in sources]
                cached = idx.prefixes = (snap.generation, PrefixIndex(titles))
        return cached[1].lookup(prefix, size)

    def vocabulary(self, index: str) -> Vocabulary:
        """The spelling vocabulary of ``index``'s current snapshot (words of the indexed text with their document
        frequencies: :mod:`.vocabulary`), versioned ``<concrete index>:<generation>``.

        Built once per generation and saved as ``vocabulary.json`` beside the snapshot, so another process (an
        API worker) reads it instead of rebuilding it; cached in memory, so a call costs a generation check.

        Raises:
            IndexNotFound: ``index`` does not exist.
        """
        idx = self._index(index)
        snap = self._snapshot(idx)
        directory = idx.store.path.parent
        version = f"{directory.name}:{snap.generation}"
        cached = idx.vocabulary
        if cached is not None and cached.version == version:
            return cached
        with idx.store.write_lock:
            path = directory / "vocabulary.json"
            try:
                found = Vocabulary.from_json(path.read_text(encoding="utf-8"))
            except (FileNotFoundError, ValueError, KeyError):
                found = None
            if found is None or found.version != version:
                sources = idx.store.sources([i.item() for i in snap.ids])
                found = build_vocabulary(version, sources.values())
                write_atomically(path, found.to_json())
            idx.vocabulary = found
            return found

    def filtered_count(self, index: str, filters: Filters) -> int:
        """How many products pass ``filters``."""
        snap = self._snapshot(self._index(index))
        return int(snap.mask(filters).sum())

    def close(self) -> None:
        """Close every SQLite connection; the engine reopens them if used again."""
        with self._lock:
            for idx in [*self._open.values(), *(idx for _, idx in self._retired)]:
                idx.store.close()
            self._open.clear()
            self._retired.clear()
