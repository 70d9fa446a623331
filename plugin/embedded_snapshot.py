"""The embedded engine's searchable view of one index: arrays built at refresh, saved without pickle.

A snapshot holds, row-aligned: ids, a normalised float32 vector matrix, filter/facet columns (brand and category
levels as codes into small vocabularies, category membership as a sparse matrix, price/rating as float with NaN
for missing, in_stock as int8 with -1 for missing) and one :class:`FieldIndex` per text field. Filters become
boolean masks; facets are ``bincount``s over a mask. Saved as one ``snapshot.npz`` plus ``params.json``
(format version, generation, counts), both replaced atomically.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from scipy import sparse

from .documents import CATEGORY_LEVELS, FACET_FIELDS, TEXT_FIELDS
from .embedded_bm25 import FieldIndex, build_field_index
from .embedded_store import PAIRS_SUFFIX
from .engine import Filters

FORMAT_VERSION = 2  # 2: phrase pairs (pair_vocab/pair_tf) per text field


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
    columns: dict[str, tuple[np.ndarray, np.ndarray]]  # brand / category_lvlN -> (vocab, codes)
    category_vocab: np.ndarray
    category: sparse.csr_matrix  # rows x category_vocab, 1 where the path holds the value at any level
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
            cols = [i for i, v in enumerate(self.category_vocab.tolist()) if v in set(filters.category)]
            if cols:
                m &= np.asarray(self.category[:, cols].sum(axis=1)).ravel() > 0
            else:
                m[:] = False
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
        return m

    def facet_counts(self, mask: np.ndarray, field: str, size: int) -> list[tuple[str, int]]:
        """Top ``size`` values of keyword ``field`` over ``mask``: count desc, then value asc."""
        vocab, codes = self.columns[field]
        picked = codes[mask]
        counts = np.bincount(picked[picked >= 0], minlength=len(vocab))
        pairs = [(vocab[i].item(), int(c)) for i, c in enumerate(counts) if c > 0]
        pairs.sort(key=lambda vc: (-vc[1], vc[0]))
        return pairs[:size]

    # ---------------------------------------------------------------------------------------- storage
    def save(self, directory: Path) -> None:
        """Write ``snapshot.npz`` and ``params.json`` atomically (temp file + os.replace)."""
        arrays: dict[str, np.ndarray] = {
            "ids": self.ids, "vectors": self.vectors, "category_vocab": self.category_vocab,
            "price": self.price, "rating": self.rating, "in_stock": self.in_stock}
        _put_csr(arrays, "category", self.category)
        for name, (vocab, codes) in self.columns.items():
            arrays[f"col.{name}.vocab"], arrays[f"col.{name}.codes"] = vocab, codes
        for name, fi in self.fields.items():
            arrays[f"f.{name}.vocab"], arrays[f"f.{name}.lengths"] = fi.vocab, fi.lengths
            _put_csr(arrays, f"f.{name}.tf", fi.tf)
            arrays[f"f.{name}.pair_vocab"] = fi.pair_vocab
            _put_csr(arrays, f"f.{name}.pair_tf", fi.pair_tf)
        tmp = directory / "snapshot.npz.tmp"
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, directory / "snapshot.npz")
        params = {"format_version": FORMAT_VERSION, "generation": self.generation, "dims": self.dims,
                  "docs": len(self), "fields": {n: {"doc_count": fi.doc_count, "avgdl": fi.avgdl}
                                                  for n, fi in self.fields.items()}}
        tmp = directory / "params.json.tmp"
        tmp.write_text(json.dumps(params, indent=1))
        os.replace(tmp, directory / "params.json")

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
            if len(a["ids"]) != params["docs"]:
                return None
            fields = {n: FieldIndex(a[f"f.{n}.vocab"], _get_csr(a, f"f.{n}.tf").tocsc(), a[f"f.{n}.lengths"],
                                    int(p["doc_count"]), float(p["avgdl"]), a[f"f.{n}.pair_vocab"],
                                    _get_csr(a, f"f.{n}.pair_tf").tocsc()) for n, p in params["fields"].items()}
            columns = {n: (a[f"col.{n}.vocab"], a[f"col.{n}.codes"]) for n in FACET_FIELDS}
            return cls(int(params["generation"]), int(params["dims"]), a["ids"], a["vectors"], columns,
                       a["category_vocab"], _get_csr(a, "category"), a["price"], a["rating"], a["in_stock"], fields)
        except (KeyError, ValueError):
            return None  # an older or damaged layout: the caller rebuilds from the document store


def _put_csr(arrays: dict[str, np.ndarray], key: str, m: sparse.spmatrix) -> None:
    m = sparse.csr_matrix(m)
    arrays[f"{key}.data"], arrays[f"{key}.indices"], arrays[f"{key}.indptr"] = m.data, m.indices, m.indptr
    arrays[f"{key}.shape"] = np.array(m.shape, dtype=np.int64)


def _get_csr(a: dict[str, np.ndarray], key: str) -> sparse.csr_matrix:
    return sparse.csr_matrix((a[f"{key}.data"], a[f"{key}.indices"], a[f"{key}.indptr"]),
                             shape=tuple(int(x) for x in a[f"{key}.shape"]))


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
    cat_lookup: dict[str, int] = {}
    c_rows, c_cols = [], []
    for r, s in enumerate(sources):
        for value in set(s.get("category") or ()):
            c_rows.append(r)
            c_cols.append(cat_lookup.setdefault(value, len(cat_lookup)))
    category = sparse.csr_matrix((np.ones(len(c_rows), dtype=np.int8), (c_rows, c_cols)),
                                 shape=(n, len(cat_lookup)), dtype=np.int8)
    in_stock = np.array([-1 if s.get("in_stock") is None else int(bool(s["in_stock"])) for s in sources], dtype=np.int8)
    fields = {f: build_field_index([a.get(f) for a in analyzed], [a.get(f + PAIRS_SUFFIX) for a in analyzed])
              for f in TEXT_FIELDS}
    return Snapshot(generation, dims, np.array(ids, dtype=str) if ids else np.array([], dtype="<U1"), vectors,
                    columns, np.array(list(cat_lookup), dtype=str) if cat_lookup else np.array([], dtype="<U1"),
                    category, _float_col(sources, "price"), _float_col(sources, "rating"), in_stock, fields)
