"""A judged data folder (products, queries, qrels) for the simulator and ranker training, with simulated attributes.

The shared sets (crowdflower, homedepot) have no price, rating, brand or category. Where a product lacks one,
a deterministic value is derived from a hash of its id (:func:`simulated_attributes`); docs/simulator.md marks
these SIMULATED. A product's own value always wins.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from statistics import NormalDist

from shopsearch.indexer.fields import FieldMapping
from shopsearch.indexer.records import Product
from shopsearch.indexer.validate import RowError, to_product
from shopsearch.judgments import read_qrels, read_queries

# Invented names: simulated brands/categories must never look like real catalog data.
SIM_BRANDS = tuple(f"simbrand-{c}" for c in "abcdefghijklmnopqrstuvwx")  # 24
SIM_CATEGORIES = tuple(f"simcat-{i:02d}" for i in range(12))
_NORMAL = NormalDist()


@dataclass(frozen=True)
class JudgedData:
    """Queries (qid -> text), graded judgements (qid -> {product id -> grade}) and the judged products."""

    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    products: dict[str, Product]
    max_grade: int

    def without(self, qids: set[str]) -> "JudgedData":
        """The same data without the queries ``qids`` (products and grade scale kept)."""
        return JudgedData({q: t for q, t in self.queries.items() if q not in qids},
                          {q: g for q, g in self.qrels.items() if q not in qids}, self.products, self.max_grade)


def _unit(product_id: str, what: str) -> float:
    """A uniform number in (0, 1) from a hash of the id and the attribute name."""
    h = hashlib.blake2b(f"{product_id}\x1f{what}".encode(), digest_size=8).digest()
    return (int.from_bytes(h, "big") + 0.5) / 2.0**64


def simulated_attributes(product_id: str) -> dict:
    """Deterministic SIMULATED price, rating, review_count, popularity, brand and category for a product id.

    price ~ lognormal(median 40, sigma 0.9) rounded to x.99; rating ~ N(4.0, 0.6) clipped to [1, 5] at 0.1;
    review_count ~ lognormal(median 20, sigma 1.5); popularity = log1p(review_count) / log1p(10000);
    brand one of 24 and category one of 12 invented names, uniformly.

    >>> simulated_attributes("cf00001") == simulated_attributes("cf00001")
    True
    """
    price = math.exp(math.log(40.0) + 0.9 * _NORMAL.inv_cdf(_unit(product_id, "price")))
    rating = min(5.0, max(1.0, 4.0 + 0.6 * _NORMAL.inv_cdf(_unit(product_id, "rating"))))
    reviews = int(math.exp(math.log(20.0) + 1.5 * _NORMAL.inv_cdf(_unit(product_id, "reviews"))))
    return {
        "price": max(1.0, math.floor(price)) - 0.01,
        "rating": round(rating, 1),
        "review_count": reviews,
        "popularity": round(math.log1p(reviews) / math.log1p(10000), 4),
        "brand": SIM_BRANDS[int(_unit(product_id, "brand") * len(SIM_BRANDS))],
        "category": (SIM_CATEGORIES[int(_unit(product_id, "category") * len(SIM_CATEGORIES))],),
    }


def with_simulated_attributes(p: Product) -> Product:
    """``p`` with every missing price/rating/review_count/popularity/brand/category filled by simulation."""
    sim = simulated_attributes(p.id)
    return replace(p, price=p.price if p.price is not None else sim["price"],
                   rating=p.rating if p.rating is not None else sim["rating"],
                   review_count=p.review_count if p.review_count is not None else sim["review_count"],
                   popularity=p.popularity if p.popularity is not None else sim["popularity"],
                   brand=p.brand or sim["brand"], category=p.category or sim["category"])


def load_judged(data_dir: str | Path, *, simulate_missing: bool = True, whole_catalog: bool = False) -> JudgedData:
    """Read ``products.jsonl``, ``queries-dev.tsv`` and ``qrels-dev.txt`` of one data folder.

    Only judged products are kept (the simulator shows judged pools), unless ``whole_catalog`` (for lists a search
    served, which hold unjudged products too). Queries without judgements are dropped. Products are built as the
    indexer builds them (:func:`~shopsearch.indexer.validate.to_product`, the default field mapping), so simulated
    shoppers and rankers read the text that is served; a row the indexer would quarantine is left out.

    Raises:
        FileNotFoundError: a file is missing (the message names the folder and what it must hold).
        ValueError: a malformed qrels or queries line (file and line number).

    >>> load_judged("../shared/data/crowdflower").max_grade  # doctest: +SKIP
    3
    """
    d = Path(data_dir)
    need = ("products.jsonl", "queries-dev.tsv", "qrels-dev.txt")
    missing = [n for n in need if not (d / n).is_file()]
    if missing:
        raise FileNotFoundError(f"data dir {str(d)!r} lacks {', '.join(missing)}; it must hold {', '.join(need)}")
    qrels: dict[str, dict[str, int]] = {}
    for q in read_qrels(d / "qrels-dev.txt"):
        qrels.setdefault(q.query_id, {})[q.doc_id] = q.relevance
    queries = {q.qid: q.text for q in read_queries(d / "queries-dev.tsv") if q.qid in qrels}
    qrels = {q: g for q, g in qrels.items() if q in queries}
    judged = {pid for g in qrels.values() for pid in g}
    products: dict[str, Product] = {}
    with (d / "products.jsonl").open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                src = json.loads(line)
                if whole_catalog or str(src.get("id")) in judged:
                    try:  # as the indexer builds it, so simulated shoppers and rankers read the text served
                        p = to_product(src, FieldMapping())
                    except RowError:  # quarantined by the indexer, so never shown
                        continue
                    products[p.id] = with_simulated_attributes(p) if simulate_missing else p
    qrels = {q: {pid: g for pid, g in pool.items() if pid in products} for q, pool in qrels.items()}
    max_grade = max((g for pool in qrels.values() for g in pool.values()), default=0)
    return JudgedData(queries=queries, qrels=qrels, products=products, max_grade=max(1, max_grade))
