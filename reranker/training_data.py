"""Training data from the shared data layout: its judgments, query texts, raw ratings and products; query splits.

A data folder holds ``queries-dev.tsv`` (qid, text), ``qrels-dev.txt`` (TREC: qid 0 product grade),
``scores-dev.tsv`` (qid, product, raw mean rating; optional) and ``products.jsonl``. Judgments are the one record type,
:class:`shopsearch.judgments.Qrel`, read by :mod:`shopsearch.judgments`' readers. Splits are by query only, so no
query's pairs are ever in two splits.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from shopsearch.judgments import Qrel, read_qrels, read_queries

SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class JudgedSet:
    """All judgments of one data folder, its query texts and raw ratings, the products they refer to and the
    folder's grade/rating scales."""

    name: str
    path: Path
    qrels: tuple[Qrel, ...]  # in qrels-dev.txt order
    queries: dict[str, str]  # qid -> text
    raw_scores: dict[tuple[str, str], float]  # (qid, product id) -> raw mean rating (the grade without scores-dev)
    products: dict[str, dict[str, Any]]
    max_grade: int
    raw_min: float
    raw_max: float

    def raw_score(self, q: Qrel) -> float:
        """The raw mean rating the judgment's grade came from (its grade when the folder has no scores-dev.tsv); NaN
        when scores-dev.tsv has no row for the pair."""
        return self.raw_scores.get((q.query_id, q.doc_id), math.nan)

    def normalised_grade(self, q: Qrel) -> float:
        """The grade mapped to [0, 1] (the cross-encoder's training label)."""
        return q.relevance / self.max_grade

    def by_query(self, qrels: Iterable[Qrel] | None = None) -> dict[str, list[Qrel]]:
        """Judgments grouped by qid, in file order."""
        groups: dict[str, list[Qrel]] = defaultdict(list)
        for q in self.qrels if qrels is None else qrels:
            groups[q.query_id].append(q)
        return dict(groups)


@dataclass(frozen=True)
class QuerySplit:
    """Disjoint qid sets."""

    train: frozenset[str]
    valid: frozenset[str]
    test: frozenset[str]

    def of(self, qid: str) -> str:
        """Which split ``qid`` is in ("train", "valid" or "test")."""
        for name in SPLITS:
            if qid in getattr(self, name):
                return name
        raise ValueError(f"qid={qid!r} is in no split")


# a judged folder's per-query files, beside its catalog (products.jsonl)
JUDGED_FILES = ("queries-dev.tsv", "qrels-dev.txt", "scores-dev.tsv")
# Judgments without raw ratings (`judgments from-logs` writes grades only) may leave scores-dev.tsv out: the grades
# then stand for the ratings, so a model's calibration maps onto the grade scale.
OPTIONAL_FILES = ("scores-dev.tsv",)


def load_judged_set(data_dir: str | Path) -> JudgedSet:
    """Read one data folder of the shared layout into a :class:`JudgedSet`.

    Args:
        data_dir: folder with queries-dev.tsv, qrels-dev.txt, products.jsonl and, when the grades came from
            ratings, scores-dev.tsv.
    Returns:
        The judgments in qrels order, with the query texts, raw ratings (the grades, without scores-dev.tsv) and
        the products they refer to.
    Raises:
        FileNotFoundError: a file is missing.
        ValueError: a malformed line, or a qrel naming an unknown query or product.
    Example:
        >>> js = load_judged_set("../shared/data/crowdflower")  # doctest: +SKIP
        >>> js.max_grade, len(js.qrels)  # doctest: +SKIP
        (3, 6397)
    """
    path = Path(data_dir)
    files = {n: path / n for n in (*JUDGED_FILES, "products.jsonl")}
    for f in files.values():
        if not f.is_file() and f.name not in OPTIONAL_FILES:
            raise FileNotFoundError(f"data_dir={str(path)!r} lacks {f.name} (expected the shared data layout)")
    queries = {q.qid: q.text for q in read_queries(files["queries-dev.tsv"])}
    qrels = tuple(read_qrels(files["qrels-dev.txt"]))
    if files["scores-dev.tsv"].is_file():
        raw = {(q, p): float(s) for q, p, s in _tsv(files["scores-dev.tsv"], 3)}
    else:
        raw = {(q.query_id, q.doc_id): float(q.relevance) for q in qrels}
    unknown = next((q for q in qrels if q.query_id not in queries), None)
    if unknown is not None:
        raise ValueError(f"{files['qrels-dev.txt']}: qid {unknown.query_id!r} is not in queries-dev.tsv (it judges "
                         f"{unknown.doc_id!r})")
    wanted = {q.doc_id for q in qrels}
    products = load_product_rows(files["products.jsonl"], wanted)
    missing = wanted - products.keys()
    if missing:
        raise ValueError(f"{files['qrels-dev.txt']}: {len(missing)} judged products are not in products.jsonl, "
                         f"e.g. {sorted(missing)[:3]}")
    raws = [r for r in raw.values() if not math.isnan(r)] or [0.0]
    return JudgedSet(name=path.name, path=path, qrels=qrels, queries=queries, raw_scores=raw, products=products,
                     max_grade=max(1, max((q.relevance for q in qrels), default=1)),
                     raw_min=min(raws), raw_max=max(raws))


def load_product_rows(products_jsonl: str | Path, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The rows of ``products_jsonl`` whose ``id`` is in ``ids`` (id as a string -> row); absent ids are left out."""
    wanted = {str(i) for i in ids}
    rows = {}
    with Path(products_jsonl).open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                row = json.loads(line)
                if str(row.get("id")) in wanted:
                    rows[str(row["id"])] = row
    return rows


def split_queries(qids: Iterable[str], *, valid_fraction: float = 0.1, test_fraction: float = 0.2,
                  seed: int = 42, folds: int = 0, fold: int = 0) -> QuerySplit:
    """Assign each qid to train, valid or test; seeded and independent of the order the qids come in.

    Qids are ordered by ``sha256(seed:qid)``; the first ``round(n * test_fraction)`` go to test, the next
    ``round(n * valid_fraction)`` to valid (each at least 1 when its fraction is > 0 and n >= 3), the rest to train.
    With ``folds`` = K > 1 the order is cut into K near-equal slices instead and slice ``fold`` is the test set
    (``test_fraction`` is then unused): the K splits of one seed test every query exactly once, so K models
    trained on them are evaluated together on all queries (cross-validation). Valid is then the
    ``round(n * valid_fraction)`` queries that follow the test slice in that order (wrapping round).

    Args:
        qids: the queries to split (duplicates are ignored).
        valid_fraction, test_fraction: shares in [0, 1) with a sum below 1.
        seed: changes the assignment.
        folds, fold: 0 (no folds), or K >= 2 folds and the one (0 .. K-1) held out as test.
    Returns:
        A :class:`QuerySplit` of disjoint sets covering every qid.
    Raises:
        ValueError: a fraction or fold out of range.
    Example:
        >>> s = split_queries([f"q{i}" for i in range(10)], valid_fraction=0.2, test_fraction=0.2)
        >>> len(s.train), len(s.valid), len(s.test)
        (6, 2, 2)
        >>> tests = [split_queries([f"q{i}" for i in range(10)], folds=3, fold=f).test for f in range(3)]
        >>> sorted(len(t) for t in tests), len(set().union(*tests))
        ([3, 3, 4], 10)
    """
    fractions = (("valid_fraction", valid_fraction),) + ((("test_fraction", test_fraction),) if not folds else ())
    for name, value in fractions:
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{name}={value!r} must be in [0, 1)")
    if folds and not (folds >= 2 and 0 <= fold < folds):
        raise ValueError(f"folds={folds!r}, fold={fold!r}: folds must be >= 2 and fold in 0..folds-1")
    order = sorted(set(qids), key=lambda q: (_hash(seed, q), q))
    n = len(order)
    if folds:
        lo, hi = n * fold // folds, n * (fold + 1) // folds
        rest = order[hi:] + order[:lo]  # the queries after the test slice first, so valid differs per fold
        n_valid = _count(n, valid_fraction)
        if n_valid >= len(rest):
            raise ValueError(f"valid_fraction={valid_fraction!r} leaves no training queries with {folds} folds")
        return QuerySplit(train=frozenset(rest[n_valid:]), valid=frozenset(rest[:n_valid]),
                          test=frozenset(order[lo:hi]))
    if valid_fraction + test_fraction >= 1.0:
        raise ValueError(f"valid_fraction + test_fraction = {valid_fraction + test_fraction!r} must be below 1")
    n_test, n_valid = (_count(n, f) for f in (test_fraction, valid_fraction))
    return QuerySplit(train=frozenset(order[n_test + n_valid:]), valid=frozenset(order[n_test:n_test + n_valid]),
                      test=frozenset(order[:n_test]))


def split_for(qids: Iterable[str], params: Mapping[str, Any], seed: int) -> QuerySplit:
    """The split a training run made, from its parameters (a TrainConfig's fields or a model card's
    ``parameters``; cards written before folds existed have no ``folds`` key and split by ``test_fraction``)."""
    return split_queries(qids, valid_fraction=params["valid_fraction"], test_fraction=params["test_fraction"],
                         seed=seed, folds=params.get("folds", 0), fold=params.get("fold", 0))


def cap_by_query(qrels: Sequence[Qrel], max_pairs: int | None, *, seed: int = 42) -> list[Qrel]:
    """Keep whole queries, in seeded order, until at least ``max_pairs`` pairs are kept (None keeps all).

    Raises:
        ValueError: ``max_pairs`` below 1.
    Example:
        >>> qs = [Qrel("a", "p1", 1), Qrel("a", "p2", 0), Qrel("b", "p1", 1)]
        >>> len(cap_by_query(qs, 1)) in (1, 2)
        True
    """
    if max_pairs is None:
        return list(qrels)
    if max_pairs < 1:
        raise ValueError(f"max_pairs={max_pairs!r} must be >= 1 (or None for no cap)")
    groups: dict[str, list[Qrel]] = defaultdict(list)
    for q in qrels:
        groups[q.query_id].append(q)
    kept: list[Qrel] = []
    for qid in sorted(groups, key=lambda q: (_hash(seed + 1, q), q)):
        if len(kept) >= max_pairs:
            break
        kept.extend(groups[qid])
    return kept


def _count(n: int, fraction: float) -> int:
    """How many of n items a fraction takes (at least one when the fraction is positive and n >= 3)."""
    k = round(n * fraction)
    return max(k, 1) if fraction > 0 and n >= 3 else k


def _hash(seed: int, qid: str) -> str:
    """Seeded stable key of a qid."""
    return hashlib.sha256(f"{seed}:{qid}".encode()).hexdigest()


def _tsv(path: Path, width: int) -> list[tuple[str, ...]]:
    """Rows of a tab-separated file, each with exactly ``width`` fields."""
    rows = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != width:
            raise ValueError(f"{path}:{lineno}: expected {width} tab-separated fields, got {len(parts)}")
        rows.append(tuple(parts))
    return rows
