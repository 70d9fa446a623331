"""Lucene-compatible BM25 over one text field, and ``best_fields`` multi-field scoring. Pure: arrays in, arrays out.

Scores follow the similarity OpenSearch uses by default, Lucene's LegacyBM25Similarity (checked against a live
node): ``idf = ln(1 + (N - df + 0.5) / (df + 0.5))`` with N the number of documents that have the field, times
``(k1 + 1) * tf / (tf + k1 * (1 - b + b * len / avgdl))`` with ``len`` after Lucene's lossy one-byte norm
encoding (:func:`lucene_length`). Query clauses are scored like OpenSearch's match query (see
:class:`~shopsearch.plugin.text_analysis.QueryClause`): fuzzy expansions are blended (every expansion uses the
largest df among them) and weighted by their similarity boost; a synonym's alternatives are scored each on its
own and summed (what the bool query that :mod:`.synonyms` sends OpenSearch scores). Multi-term alternatives
(``notebook computer``) are phrase queries: positions are not stored,
but counts of adjacent term pairs are, so a 2-term phrase is exact (idf summed over its terms, tf = the pair's
count); a longer phrase is approximated by requiring all its consecutive pairs (tf = the smallest pair count).

Term frequencies are scipy CSC matrices (documents x vocabulary) so one query term costs one column slice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
from scipy import sparse

from .text_analysis import QueryClause, fuzzy_expand, lucene_length, parse_fuzziness

K1 = 1.2
B = 0.75


@dataclass(frozen=True)
class FieldIndex:
    """Inverted statistics of one field: sorted vocabulary, tf matrix, Lucene lengths, N, avgdl, pair counts."""

    vocab: np.ndarray  # sorted unicode array; column j of ``tf`` is vocab[j]
    tf: sparse.csc_matrix  # float32, n_docs x len(vocab)
    lengths: np.ndarray  # float32 per document, after norm encoding (0 when the field is empty)
    doc_count: int  # documents with at least one term in this field
    avgdl: float
    pair_vocab: np.ndarray  # sorted "a b" strings: terms at consecutive positions
    pair_tf: sparse.csc_matrix  # n_docs x len(pair_vocab)

    @property
    def vocab_list(self) -> list[str]:
        """The vocabulary as Python strings (for bisect and fuzzy matching); cached per instance."""
        cached = self.__dict__.get("_vocab_list")
        if cached is None:
            cached = self.vocab.tolist()
            object.__setattr__(self, "_vocab_list", cached)
        return cached

    def column(self, term: str) -> int | None:
        """Vocabulary column of ``term``, or None."""
        return _find(self.vocab, term)

    def pair_column(self, pair: str) -> int | None:
        """Column of an adjacent-term pair (``"run shoe"``) in ``pair_tf``, or None."""
        return _find(self.pair_vocab, pair)

    def df(self, col: int) -> int:
        """Document frequency of vocabulary column ``col``."""
        return int(self.tf.indptr[col + 1] - self.tf.indptr[col])


def _find(vocab: np.ndarray, term: str) -> int | None:
    i = int(np.searchsorted(vocab, term))
    return i if i < len(vocab) and vocab[i] == term else None


def _tf_matrix(docs: Sequence[Mapping[str, int] | None]) -> tuple[np.ndarray, sparse.csc_matrix, np.ndarray]:
    """Sorted vocabulary, CSC tf matrix and raw per-document term totals."""
    term_ids: dict[str, int] = {}
    rows: list[int] = []
    cols: list[int] = []
    vals: list[int] = []
    raw_len = np.zeros(len(docs), dtype=np.int64)
    for r, counts in enumerate(docs):
        if not counts:
            continue
        for term, n in counts.items():
            rows.append(r)
            cols.append(term_ids.setdefault(term, len(term_ids)))
            vals.append(n)
            raw_len[r] += n
    terms = np.array(list(term_ids), dtype=str) if term_ids else np.array([], dtype="<U1")
    order = np.argsort(terms, kind="stable")
    remap = np.empty(len(terms), dtype=np.int64)
    remap[order] = np.arange(len(terms))
    tf = sparse.csc_matrix(
        (np.asarray(vals, dtype=np.float32),
         (np.asarray(rows, dtype=np.int64), remap[np.asarray(cols, dtype=np.int64)])),
        shape=(len(docs), len(terms)), dtype=np.float32)
    tf.sort_indices()
    return terms[order], tf, raw_len


def build_field_index(docs: Sequence[Mapping[str, int] | None],
                      pairs: Sequence[Mapping[str, int] | None] | None = None) -> FieldIndex:
    """Build a field index from per-document term counts (None or {} for an empty field) and pair counts.

    >>> fi = build_field_index([{"lamp": 2, "red": 1}, None, {"lamp": 1}])
    >>> fi.vocab.tolist(), fi.doc_count, round(fi.avgdl, 3)
    (['lamp', 'red'], 2, 2.0)
    """
    vocab, tf, raw_len = _tf_matrix(docs)
    pair_vocab, pair_tf, _ = _tf_matrix(pairs if pairs is not None else [None] * len(docs))
    doc_count = int((raw_len > 0).sum())
    avgdl = float(raw_len.sum() / doc_count) if doc_count else 0.0
    lengths = np.array([lucene_length(int(n)) for n in raw_len], dtype=np.float32)
    return FieldIndex(vocab, tf, lengths, doc_count, avgdl, pair_vocab, pair_tf)


def idf(df: int, doc_count: int) -> float:
    """Lucene's BM25 idf."""
    return float(np.log(1.0 + (doc_count - df + 0.5) / (df + 0.5)))


def _tf_part(fi: FieldIndex, rows: np.ndarray, freq: np.ndarray) -> np.ndarray:
    norm = K1 * (1.0 - B + B * fi.lengths[rows] / fi.avgdl)
    return (K1 + 1.0) * freq / (freq + norm)


def _column(m: sparse.csc_matrix, col: int) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = m.indptr[col], m.indptr[col + 1]
    return m.indices[lo:hi], m.data[lo:hi]


def _fuzzy_term(fi: FieldIndex, term: str, fuzziness: str | None, scores: np.ndarray, matched: np.ndarray) -> None:
    expansions = fuzzy_expand(term, fi.vocab_list, parse_fuzziness(fuzziness, term))
    cols = [(fi.column(t), boost) for t, boost in expansions]
    if not cols:
        return
    df_blend = max(fi.df(c) for c, _ in cols)  # TopTermsBlendedFreqScoringRewrite
    w = idf(df_blend, fi.doc_count)
    for col, boost in cols:
        rows, freq = _column(fi.tf, col)
        scores[rows] += boost * w * _tf_part(fi, rows, freq)
        matched[rows] = True


def _phrase(fi: FieldIndex, terms: Sequence[str], scores: np.ndarray, matched: np.ndarray) -> None:
    cols = [fi.column(t) for t in terms]
    pcols = [fi.pair_column(f"{a} {b}") for a, b in zip(terms, terms[1:])]
    if any(c is None for c in cols) or any(c is None for c in pcols):
        return
    freq = None
    for col in pcols:
        f = np.zeros(len(scores), dtype=np.float32)
        rows, vals = _column(fi.pair_tf, col)
        f[rows] = vals
        freq = f if freq is None else np.minimum(freq, f)
    rows = np.flatnonzero(freq)
    w = sum(idf(fi.df(c), fi.doc_count) for c in cols)  # PhraseQuery: idf summed over its terms
    scores[rows] += w * _tf_part(fi, rows, freq[rows])
    matched[rows] = True


def score_field(fi: FieldIndex, clauses: Sequence[QueryClause], fuzziness: str | None) -> tuple[np.ndarray, np.ndarray]:
    """BM25 score of every document for the analyzed query on one field (OR of the clauses, summed).

    Returns:
        ``(scores, matched)``: float32 scores and a bool mask of documents matching at least one clause.

    Raises:
        ValueError: ``fuzziness`` is not None, "AUTO", "0", "1" or "2".
    """
    n = fi.tf.shape[0]
    scores = np.zeros(n, dtype=np.float32)
    matched = np.zeros(n, dtype=bool)
    if fi.doc_count == 0:
        return scores, matched
    for clause in clauses:
        if clause.kind == "term":
            _fuzzy_term(fi, clause.alternatives[0][0], fuzziness, scores, matched)
        else:  # graph: each path on its own, summed (a BooleanQuery of SHOULD clauses)
            for alt in clause.alternatives:
                if len(alt) == 1:
                    _fuzzy_term(fi, alt[0], fuzziness, scores, matched)
                else:
                    _phrase(fi, alt, scores, matched)
    return scores, matched


def best_fields(per_field: Sequence[tuple[np.ndarray, np.ndarray]], boosts: Sequence[float],
                tie_breaker: float) -> tuple[np.ndarray, np.ndarray]:
    """Combine field scores like ``multi_match`` ``best_fields``: max boosted score + tie_breaker x the others.

    Raises:
        ValueError: no fields.

    >>> s, m = best_fields([(np.array([2.0, 0.0]), np.array([True, False])),
    ...                     (np.array([1.0, 3.0]), np.array([True, True]))], [1.0, 1.0], 0.5)
    >>> s.tolist(), m.tolist()
    ([2.5, 3.0], [True, True])
    """
    if not per_field:
        raise ValueError("best_fields needs at least one field")
    stacked = np.stack([s * np.float32(b) for (s, _), b in zip(per_field, boosts)])
    best = stacked.max(axis=0)
    total = best + np.float32(tie_breaker) * (stacked.sum(axis=0) - best)
    matched = np.logical_or.reduce([m for _, m in per_field])
    return total.astype(np.float32), matched
