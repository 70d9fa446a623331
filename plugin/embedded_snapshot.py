"""The embedded engine's searchable view of one index: arrays built at refresh, saved without pickle.

A snapshot holds, row-aligned: ids, a normalised float32 vector matrix, filter/facet columns (brand, category
levels and facet attributes ``attr.<name>`` as codes into small vocabularies, category membership and category
path prefixes as sparse matrices, price/rating as float with NaN for missing, in_stock as int8 with -1 for
missing) and one :class:`FieldIndex` per text field. Filters become
boolean masks; facets are ``bincount``s over a mask. Saved as one ``snapshot.npz`` plus ``params.json``
(format version, generation, counts), both replaced atomically.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from scipy import sparse

from shopsearch.atomic_write import write_atomically

from .documents import ATTR_PREFIX, CATEGORY_LEVELS, TEXT_FIELDS, category_paths
from .embedded_bm25 import FieldIndex, build_field_index
from .embedded_store import PAIRS_SUFFIX
from .engine import Filters, is_child_path

FORMAT_VERSION = 3  # 2: phrase pairs (pair_vocab/pair_tf) per text field; 3: category paths, attribute columns


def _codes(values: Sequence[str | None]) -> tuple[np.ndarray, np.ndarray]:
    vocab = sorted({v for v in values if v is not None})
    lookup = {v: i for i, v in enumerate(vocab)}
    codes = np.array([lookup[v] if v is not None else -1 for v in values], dtype=np.int32)
    return np.array(vocab, dtype=str) if vocab else np.array([], dtype="<U1"), codes


@dataclass(frozen=True)
class Snapshot:
    """Everything a search needs, for the documents committed up to ``generation``."""

    generation: int
    dims: int
    ids: np.ndarray  # unicode, one per row
    vectors: np.ndarray  # float32 rows x dims, L2-normalised
    columns: dict[str, tuple[np.ndarray, np.ndarray]]  # brand / category_lvlN / attr.<name> -> (vocab, codes)
    category_vocab: np.ndarray
    category: sparse.csr_matrix  # rows x category_vocab, 1 where the path holds the value at any level
    path_vocab: np.ndarray
    paths: sparse.csr_matrix  # rows x path_vocab, 1 where the value is a prefix of the row's category path
    price: np.ndarray  # float64, NaN when missing
    rating: np.ndarray
    in_stock: np.ndarray  # int8: 1, 0 or -1 (missing)
    fields: dict[str, FieldIndex]

    def __len__(self) -> int:
        return len(self.ids)

    # ---------------------------------------------------------------------------------------- filters
    def mask(self, filters: Filters) -> np.ndarray:
        """Rows passing every filter (a missing value fails any filter on that field)."""
        m = np.ones(len(self), dtype=bool)
        if filters.brand:
            vocab, codes = self.columns["brand"]
            wanted = [i for i, v in enumerate(vocab.tolist()) if v in set(filters.brand)]
            m &= np.isin(codes, wanted)
        if filters.category:
            m &= _any_of(self.category, self.category_vocab, filters.category)
        if filters.category_path:  # a path's subtree: the rows whose prefixes include it
            m &= _any_of(self.paths, self.path_vocab, filters.category_path)
        for name, values in filters.attributes:
            column = self.columns.get(ATTR_PREFIX + name)
            if column is None:
                m[:] = False  # an attribute this index does not facet: nothing has it
            else:
                vocab, codes = column
                m &= np.isin(codes, [i for i, v in enumerate(vocab.tolist()) if v in set(values)])
        with np.errstate(invalid="ignore"):  # NaN compares False: missing values fail the range
            if filters.price_min is not None:
                m &= self.price >= filters.price_min
            if filters.price_max is not None:
                m &= self.price <= filters.price_max
            if filters.rating_min is not None:
                m &= self.rating >= filters.rating_min
        if filters.in_stock is not None:
            m &= self.in_stock == int(filters.in_stock)
        if filters.exclude_ids:
            m &= ~np.isin(self.ids, np.array(filters.exclude_ids, dtype=str))
        if filters.ids:
            m &= np.isin(self.ids, np.array(filters.ids, dtype=str))
        if filters.required is not None:
            m &= self.mask(filters.required)
        return m

    def facet_counts(self, mask: np.ndarray, field: str, size: int) -> list[tuple[str, int]]:
        """Top ``size`` values of keyword ``field`` over ``mask``: count desc, then value asc (no such column: [])."""
        if field not in self.columns:
            return []
        vocab, codes = self.columns[field]
        picked = codes[mask]
        counts = np.bincount(picked[picked >= 0], minlength=len(vocab))
        pairs = [(vocab[i].item(), int(c)) for i, c in enumerate(counts) if c > 0]
        pairs.sort(key=lambda vc: (-vc[1], vc[0]))
        return pairs[:size]

    def path_counts(self, mask: np.ndarray, parents: Sequence[str | None], size: int) -> list[tuple[str, int]]:
        """For each of ``parents`` in turn (None: the roots), its top ``size`` child paths over ``mask`` (count
        desc, then path asc), as engine.path_parents / is_child_path define them."""
        counts = np.asarray(self.paths.T @ mask.astype(np.int64)).ravel()
        vocab = self.path_vocab.tolist()
        out: list[tuple[str, int]] = []
        for parent in parents:
            pairs = [(p, int(counts[i])) for i, p in enumerate(vocab) if counts[i] > 0 and is_child_path(p, parent)]
            pairs.sort(key=lambda vc: (-vc[1], vc[0]))
            out += pairs[:size]
        return out

    def range_counts(self, mask: np.ndarray, field: str,
                     buckets: Sequence[tuple[str, float, float | None]]) -> list[tuple[str, int]]:
        """How many rows of ``mask`` fall in each ``(label, from, to)`` bucket of ``field`` (price or rating;
        from inclusive, to exclusive), in bucket order, empty buckets left out."""
        values = (self.price if field == "price" else self.rating)[mask]
        values = values[~np.isnan(values)]
        out = []
        for label, lo, hi in buckets:
            n = int(((values >= lo) & (values < hi)).sum() if hi is not None else (values >= lo).sum())
            if n:
                out.append((label, n))
        return out

    # ---------------------------------------------------------------------------------------- storage
    def save(self, directory: Path) -> None:
        """Write ``snapshot.npz``, then ``params.json``, each atomically and durably
        (:mod:`shopsearch.atomic_write`); both carry the generation, which :meth:`load` checks they agree on."""
        arrays: dict[str, np.ndarray] = {
            "generation": np.asarray(self.generation, dtype=np.int64), "ids": self.ids, "vectors": self.vectors,
            "category_vocab": self.category_vocab, "path_vocab": self.path_vocab, "price": self.price,
            "rating": self.rating, "in_stock": self.in_stock}
        _put_csr(arrays, "category", self.category)
        _put_csr(arrays, "paths", self.paths)
        for name, (vocab, codes) in self.columns.items():
            arrays[f"col.{name}.vocab"], arrays[f"col.{name}.codes"] = vocab, codes
        for name, fi in self.fields.items():
            arrays[f"f.{name}.vocab"], arrays[f"f.{name}.lengths"] = fi.vocab, fi.lengths
            _put_csr(arrays, f"f.{name}.tf", fi.tf)
            arrays[f"f.{name}.pair_vocab"] = fi.pair_vocab
            _put_csr(arrays, f"f.{name}.pair_tf", fi.pair_tf)
        def write(tmp: Path) -> None:
            with open(tmp, "wb") as fh:  # a file, not a name: np.savez would add ".npz" to the temporary one
                np.savez(fh, **arrays)

        write_atomically(directory / "snapshot.npz", write)
        params = {"format_version": FORMAT_VERSION, "generation": self.generation, "dims": self.dims,
                  "docs": len(self), "columns": sorted(self.columns),
                  "fields": {n: {"doc_count": fi.doc_count, "avgdl": fi.avgdl} for n, fi in self.fields.items()}}
        write_atomically(directory / "params.json", json.dumps(params, indent=1))

    @classmethod
    def load(cls, directory: Path) -> "Snapshot | None":
        """Read a saved snapshot, or None when absent, of another format version or half-written."""
        try:
            params = json.loads((directory / "params.json").read_text())
            if params.get("format_version") != FORMAT_VERSION:
                return None
            with np.load(directory / "snapshot.npz", allow_pickle=False) as z:
                a = {k: z[k] for k in z.files}
        except (OSError, ValueError, KeyError):
            return None
        try:
            # Each file is replaced whole, but two processes saving may leave one's params beside the other's arrays.
            if len(a["ids"]) != params["docs"] or int(a["generation"]) != params["generation"]:
                return None
            fields = {n: FieldIndex(a[f"f.{n}.vocab"], _get_csr(a, f"f.{n}.tf").tocsc(), a[f"f.{n}.lengths"],
                                    int(p["doc_count"]), float(p["avgdl"]), a[f"f.{n}.pair_vocab"],
                                    _get_csr(a, f"f.{n}.pair_tf").tocsc()) for n, p in params["fields"].items()}
            columns = {n: (a[f"col.{n}.vocab"], a[f"col.{n}.codes"]) for n in params["columns"]}
            return cls(int(params["generation"]), int(params["dims"]), a["ids"], a["vectors"], columns,
                       a["category_vocab"], _get_csr(a, "category"), a["path_vocab"], _get_csr(a, "paths"),
                       a["price"], a["rating"], a["in_stock"], fields)
        except (KeyError, ValueError):
            return None  # an older or damaged layout: the caller rebuilds from the document store


def _put_csr(arrays: dict[str, np.ndarray], key: str, m: sparse.spmatrix) -> None:
    m = sparse.csr_matrix(m)
    arrays[f"{key}.data"], arrays[f"{key}.indices"], arrays[f"{key}.indptr"] = m.data, m.indices, m.indptr
    arrays[f"{key}.shape"] = np.array(m.shape, dtype=np.int64)


def _get_csr(a: dict[str, np.ndarray], key: str) -> sparse.csr_matrix:
    return sparse.csr_matrix((a[f"{key}.data"], a[f"{key}.indices"], a[f"{key}.indptr"]),
                             shape=tuple(int(x) for x in a[f"{key}.shape"]))


def _any_of(matrix: sparse.csr_matrix, vocab: np.ndarray, wanted: Sequence[str]) -> np.ndarray:
    """Rows of a membership matrix holding any of ``wanted``."""
    cols = [i for i, v in enumerate(vocab.tolist()) if v in set(wanted)]
    if not cols:
        return np.zeros(matrix.shape[0], dtype=bool)
    return np.asarray(matrix[:, cols].sum(axis=1)).ravel() > 0


def _membership(values: Sequence[Iterable[str]]) -> tuple[np.ndarray, sparse.csr_matrix]:
    """A vocabulary and the rows x vocabulary 0/1 matrix of each row's set of values."""
    lookup: dict[str, int] = {}
    rows, cols = [], []
    for r, held in enumerate(values):
        for value in set(held):
            rows.append(r)
            cols.append(lookup.setdefault(value, len(lookup)))
    matrix = sparse.csr_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(len(values), len(lookup)),
                               dtype=np.int8)
    return (np.array(list(lookup), dtype=str) if lookup else np.array([], dtype="<U1")), matrix


def _float_col(rows: Sequence[dict[str, Any]], name: str) -> np.ndarray:
    return np.array([float(r[name]) if r.get(name) is not None else np.nan for r in rows], dtype=np.float64)


def build_snapshot(generation: int, dims: int, rows: Iterable[tuple[str, dict[str, Any], dict[str, dict[str, int]],
                                                                     bytes]]) -> Snapshot:
    """Build a snapshot from stored rows ``(id, source, analyzed term counts per text field, float32 vector)``."""
    ids: list[str] = []
    sources: list[dict[str, Any]] = []
    analyzed: list[dict[str, dict[str, int]]] = []
    vec_blobs: list[bytes] = []
    for doc_id, src, counts, blob in rows:
        ids.append(doc_id)
        sources.append(src)
        analyzed.append(counts)
        vec_blobs.append(blob)
    n = len(ids)
    vectors = (np.frombuffer(b"".join(vec_blobs), dtype=np.float32).reshape(n, dims).copy()
               if n else np.zeros((0, dims), dtype=np.float32))
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors /= np.where(norms > 0, norms, 1.0)
    columns = {"brand": _codes([s.get("brand") for s in sources])}
    for i in range(CATEGORY_LEVELS):
        columns[f"category_lvl{i}"] = _codes([s.get(f"category_lvl{i}") for s in sources])
    # Attribute columns from each document's ``attr`` (documents.to_engine_doc); paths from ``category`` itself, so
    # an index written before category paths existed gets them at its next refresh.
    for name in sorted({k for s in sources for k in (s.get("attr") or {})}):
        columns[ATTR_PREFIX + name] = _codes([(s.get("attr") or {}).get(name) for s in sources])
    category_vocab, category = _membership([s.get("category") or () for s in sources])
    path_vocab, paths = _membership([category_paths(s.get("category") or ()) for s in sources])
    in_stock = np.array([-1 if s.get("in_stock") is None else int(bool(s["in_stock"])) for s in sources], dtype=np.int8)
    fields = {f: build_field_index([a.get(f) for a in analyzed], [a.get(f + PAIRS_SUFFIX) for a in analyzed])
              for f in TEXT_FIELDS}
    return Snapshot(generation, dims, np.array(ids, dtype=str) if ids else np.array([], dtype="<U1"), vectors,
                    columns, category_vocab, category, path_vocab, paths, _float_col(sources, "price"),
                    _float_col(sources, "rating"), in_stock, fields)
