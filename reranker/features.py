"""The learned ranker's features of (query, product, context), declared once by name; pure functions only.

Each feature is a :class:`Feature` in :data:`FEATURES`; a model card lists the names it uses (defaults:
:data:`DEFAULT_MODEL_FEATURES` for behaviour logs, :data:`RELEVANCE_FEATURES` for human judgments) and
:func:`feature_matrix` returns the columns in that order. The pipeline's ranker stage and every training path call
:func:`feature_matrix` on the stage's own input hits, so training never computes a feature with other code.
Missing inputs (no BM25 leg, no cross-encoder, no price) are NaN, which LightGBM treats as missing.

Per-field BM25 (``bm25_title`` ...) is each text field's own BM25 score of the hit before the profile's boost, as
the engine's lexical leg scored it (``stages["bm25_<field>"]``: the embedded engine's field scores, OpenSearch's
named clauses); NaN when the BM25 leg did not return the hit.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from typing import Mapping, Sequence

import numpy as np

from shopsearch.indexer.records import Product
from shopsearch.plugin.search_types import BM25_FIELD_STAGES, ScoredHit

NAN = float("nan")
# List-relative features compare a hit with the retrieval's first page (its fused top 10), not with whatever
# list a stage happens to hold: the query log records that page's features, so a ranker learnt from the logs
# and the same ranker served over a head of 50 see one definition. The pipeline stamps them on the hits
# (:func:`with_list_features`) before any stage reorders; the query log records them with the other stages.
LIST_REFERENCE = 10
LIST_FEATURES: tuple[str, ...] = ("bm25_list_rank", "bm25_rel", "knn_list_rank", "price_rel")
# Stamped on every hit with them (always a number, where a list feature may be missing): the hit's rank in the
# retrieval order they were taken in. Its presence tells a stamped hit from one of a log written before.
STAMP = "retrieval_rank"
_TOKEN = re.compile(r"[a-z0-9]+")
# A number, then (after an optional space) a unit of size, weight, volume, power or count: 12v, 3/4 in, 5 gal, 8".
_UNIT = re.compile(r"\d\s*(?:\"|'|in|inch|inches|ft|feet|foot|yd|mm|cm|m|oz|lb|lbs|kg|g|gal|gallon|gallons|qt|pt|"
                   r"ml|l|w|watt|watts|v|volt|volts|amp|amps|ah|mah|hz|gb|tb|mb|btu|psi|pc|pcs|pk|pack|ct|"
                   r"count|sq|cu)(?![a-z])")


@dataclass(frozen=True)
class Feature:
    """A named feature and what it measures."""

    name: str
    description: str


FEATURES: tuple[Feature, ...] = (
    Feature("bm25", "raw BM25 score of the hit (stages['bm25']); scale depends on the engine"),
    Feature("bm25_list_rank", "1-based rank of the BM25 score among the retrieval's first page (NaN without BM25)"),
    Feature("bm25_rel", "BM25 score / the best BM25 score of the retrieval's first page"),
    *(Feature(stage, f"BM25 score of the {f.replace('_text', '')} field alone, before its boost "
              f"(stages['{stage}']; NaN without BM25)") for f, stage in BM25_FIELD_STAGES.items()),
    Feature("knn", "vector similarity (stages['knn'])"),
    Feature("knn_list_rank", "1-based rank of the vector score among the retrieval's first page"),
    Feature("fused", "fused retrieval score (stages['fused'])"),
    Feature("fused_rank", "the hit's incoming 1-based rank (ScoredHit.rank); position-biased in logs"),
    Feature("cross_encoder", "cross-encoder score (stages['cross_encoder']), NaN when absent"),
    Feature("price", "product price"),
    Feature("price_rel", "price / median price of the retrieval's first page"),
    Feature("rating", "average rating (1-5)"),
    Feature("review_count_log", "log1p(review_count)"),
    Feature("popularity", "catalog popularity score"),
    Feature("ctr", "clicks / impressions of the product in past events, smoothed toward ctr_prior"),
    Feature("cvr", "purchases / impressions of the product in past events, smoothed toward cvr_prior"),
    Feature("impressions_log", "log1p(past impressions of the product)"),
    Feature("title_overlap", "share of the query's distinct tokens that occur in the title"),
    Feature("exact_phrase", "1 when the query's tokens occur contiguously in the title, else 0"),
    Feature("description_overlap", "share of the query's distinct tokens that occur in the description"),
    Feature("brand_overlap", "share of the query's distinct tokens that occur in the brand"),
    Feature("brand_phrase", "1 when the query's tokens occur contiguously in the brand, else 0"),
    Feature("category_overlap", "share of the query's distinct tokens that occur in the category path"),
    Feature("category_phrase", "1 when the query's tokens occur contiguously in the category path, else 0"),
    Feature("brand_in_query", "1 when every token of the product's brand occurs in the query, else 0"),
    Feature("query_terms", "number of tokens in the query (its shape: which leg to trust)"),
    Feature("query_has_digits", "1 when the query contains a digit (part numbers, sizes), else 0"),
    Feature("query_has_units", "1 when the query has a number followed by a unit (12v, 3/4 in, 5 gal), else 0"),
    Feature("user_brand_affinity", "share of the user's past interaction weight on the product's brand"),
    Feature("user_category_affinity", "share of the user's past interaction weight on the product's categories"),
    Feature("user_history_log", "log1p(the user's past interaction weight)"),
)
FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
BM25_FIELD_FEATURES: tuple[str, ...] = tuple(BM25_FIELD_STAGES.values())
# Scale-free features that simulated logs can fill: raw engine scores and the (position-biased) incoming rank
# are left out by default so a model trained on logs transfers to live rankings.
DEFAULT_MODEL_FEATURES: tuple[str, ...] = tuple(
    n for n in FEATURE_NAMES if n not in ("bm25", "knn", "fused", "fused_rank", *BM25_FIELD_FEATURES))
# Human judgments carry no position bias and are collected on the engine that serves, so the raw scores and the
# incoming rank are kept; the shopper's affinities are left out (a judged query has no shopper).
RELEVANCE_FEATURES: tuple[str, ...] = tuple(n for n in FEATURE_NAMES if not n.startswith("user_"))


@dataclass(frozen=True)
class ProductStats:
    """Past event counts of one product."""

    impressions: int = 0
    clicks: int = 0
    purchases: int = 0


@dataclass(frozen=True)
class Affinity:
    """A user's past interaction weight per brand and per category, and in total."""

    brands: Mapping[str, float] = field(default_factory=dict)
    categories: Mapping[str, float] = field(default_factory=dict)
    total: float = 0.0


@dataclass(frozen=True)
class FeatureContext:
    """What the features know besides query and hit: product event stats, the user's affinity, priors.

    ``prior_strength`` is the pseudo-count of the smoothed rates: rate = (k + prior * m) / (n + m).
    """

    stats: Mapping[str, ProductStats] = field(default_factory=dict)
    user: Affinity = Affinity()
    ctr_prior: float = 0.1
    cvr_prior: float = 0.03
    prior_strength: float = 20.0


def tokens(text: str) -> list[str]:
    """Lower-cased alphanumeric tokens.

    >>> tokens("Red LED-Lamp, 2x")
    ['red', 'led', 'lamp', '2x']
    """
    return _TOKEN.findall(text.lower())


def smoothed_rate(successes: float, trials: float, prior: float, strength: float) -> float:
    """(successes + prior * strength) / (trials + strength).

    >>> smoothed_rate(0, 0, 0.1, 20)
    0.1
    """
    return (successes + prior * strength) / (trials + strength)


def _contains_run(haystack: list[str], needle: list[str]) -> bool:
    n = len(needle)
    return n > 0 and any(haystack[i:i + n] == needle for i in range(len(haystack) - n + 1))


def text_features(query: str, product: Product) -> dict[str, float]:
    """Query-term coverage and exact-phrase matches of one query in the product's title, description, brand and
    category path, and whether the brand occurs in the query.

    >>> text_features("acme red lamp", Product(id="p", title="Red Lamp", brand="Acme"))["title_overlap"]
    0.6666666666666666
    """
    q = tokens(query)
    qset = set(q)
    title, brand = tokens(product.title), tokens(product.brand or "")
    category = tokens(" ".join(product.category))

    def overlap(field: list[str]) -> float:
        return len(qset & set(field)) / len(qset) if qset else 0.0

    return {
        "title_overlap": overlap(title),
        "exact_phrase": float(_contains_run(title, q)),
        "description_overlap": overlap(tokens(product.description)),
        "brand_overlap": overlap(brand),
        "brand_phrase": float(_contains_run(brand, q)),
        "category_overlap": overlap(category),
        "category_phrase": float(_contains_run(category, q)),
        "brand_in_query": float(bool(brand) and set(brand) <= qset),
    }


def query_features(query: str) -> dict[str, float]:
    """The query's shape: its length in tokens, whether it has a digit, whether it has a measurement.

    >>> query_features("12v cordless drill")
    {'query_terms': 3.0, 'query_has_digits': 1.0, 'query_has_units': 1.0}
    """
    text = query.lower()
    return {"query_terms": float(len(tokens(text))), "query_has_digits": float(any(c.isdigit() for c in text)),
            "query_has_units": float(bool(_UNIT.search(text)))}


def _num(x) -> float:
    return NAN if x is None else float(x)


def _ranks_against(values: list[float], reference: list[float]) -> list[float]:
    """1-based rank of each value among ``reference`` (1 + the reference values above it: ties share the best
    rank, and a value from the reference ranks as it does there); NaN stays NaN."""
    ok = sorted((v for v in reference if not math.isnan(v)), reverse=True)
    return [NAN if math.isnan(v) else float(1 + sum(1 for r in ok if r > v)) for v in values]


def _price(h: ScoredHit) -> float | None:
    return Product.from_source({"id": h.id, "title": "", **h.source}).price


def reference_features(hits: Sequence[ScoredHit], reference: Sequence[ScoredHit]) -> list[dict[str, float]]:
    """The :data:`LIST_FEATURES` of each hit, relative to ``reference`` (the retrieval's first page).

    >>> page = [ScoredHit(id=p, rank=r, score=0.0, source={"id": p, "price": pr}, stages={"bm25": b})
    ...         for r, (p, b, pr) in enumerate([("a", 4.0, 10.0), ("b", 2.0, 30.0)], 1)]
    >>> reference_features(page, page)[1]
    {'bm25_list_rank': 2.0, 'bm25_rel': 0.5, 'knn_list_rank': nan, 'price_rel': 1.5}
    """
    bm25 = [_num(h.stages.get("bm25")) for h in hits]
    knn = [_num(h.stages.get("knn")) for h in hits]
    ref_bm25 = [_num(h.stages.get("bm25")) for h in reference]
    best = max((v for v in ref_bm25 if not math.isnan(v)), default=NAN)
    hit_prices = [_price(h) for h in hits]
    known = dict(zip((h.id for h in hits), hit_prices))  # the reference is mostly these hits: parse each once
    prices = [p for p in (known[h.id] if h.id in known else _price(h) for h in reference) if p is not None and p > 0]
    median = float(np.median(prices)) if prices else NAN
    bm25_rank = _ranks_against(bm25, ref_bm25)
    knn_rank = _ranks_against(knn, [_num(h.stages.get("knn")) for h in reference])
    out = []
    for i, price in enumerate(hit_prices):
        out.append({"bm25_list_rank": bm25_rank[i],
                    "bm25_rel": bm25[i] / best if not math.isnan(best) and best > 0 else NAN,
                    "knn_list_rank": knn_rank[i],
                    "price_rel": price / median if price is not None and not math.isnan(median) else NAN})
    return out


def with_list_features(hits: Sequence[ScoredHit], first_page: Sequence[ScoredHit] | None = None
                       ) -> list[ScoredHit]:
    """``hits`` in retrieval order (``rank``) with their :data:`LIST_FEATURES` and :data:`STAMP` in ``stages``,
    relative to the retrieval's first page: ``first_page`` (its first :data:`LIST_REFERENCE`), or the hits' own
    first :data:`LIST_REFERENCE` when they start at rank 1. A missing feature (NaN: no BM25, no price) is left out,
    as stages are (JSON has no NaN), and :func:`list_features` reads the absence on a stamped hit as NaN again."""
    reference = (hits if first_page is None else first_page)[:LIST_REFERENCE]
    rows = reference_features(hits, reference)
    return [replace(h, stages={**{k: v for k, v in h.stages.items() if k not in LIST_FEATURES},
                               **{k: v for k, v in row.items() if not math.isnan(v)}, STAMP: float(h.rank)})
            for h, row in zip(hits, rows)]


def list_features(query: str, hits: Sequence[ScoredHit], context: FeatureContext) -> list[dict[str, float]]:
    """Every feature of :data:`FEATURE_NAMES` for each hit of one candidate list (list-relative ones included).

    Args:
        query: the query text.
        hits: the candidate list; ``source`` holds the product fields, ``stages`` the retrieval scores.
        context: event stats, user affinity and priors.

    Returns:
        One ``{feature name: value}`` per hit, in the hits' order.

    >>> h = ScoredHit(id="p", rank=1, score=1.0, source={"id": "p", "title": "Red Lamp"}, stages={"bm25": 2.0})
    >>> list_features("red lamp", [h], FeatureContext())[0]["bm25_rel"]
    1.0
    """
    products = [Product.from_source({"id": h.id, "title": "", **h.source}) for h in hits]
    bm25 = [_num(h.stages.get("bm25")) for h in hits]
    knn = [_num(h.stages.get("knn")) for h in hits]
    # As the pipeline stamped them (served, or logged with the query); a hit never stamped (a log written before,
    # a list built by hand) is ranked against its list's own first page, computed only for such a list.
    own = (reference_features(hits, hits[:LIST_REFERENCE]) if any(STAMP not in h.stages for h in hits)
           else [{}] * len(hits))
    relative = [{n: _num(h.stages.get(n)) for n in LIST_FEATURES} if STAMP in h.stages else o
                for h, o in zip(hits, own)]
    user = context.user
    shape = query_features(query)
    out = []
    for i, (h, p) in enumerate(zip(hits, products)):
        st = context.stats.get(h.id, ProductStats())
        cats = [user.categories.get(c, 0.0) for c in p.category]
        row = {
            "bm25": bm25[i],
            **relative[i],
            **{n: _num(h.stages.get(n)) if not math.isnan(bm25[i]) else NAN for n in BM25_FIELD_FEATURES},
            "knn": knn[i],
            "fused": _num(h.stages.get("fused")),
            "fused_rank": float(h.rank),
            "cross_encoder": _num(h.stages.get("cross_encoder")),
            "price": _num(p.price),
            "rating": _num(p.rating),
            "review_count_log": math.log1p(p.review_count) if p.review_count is not None else NAN,
            "popularity": _num(p.popularity),
            "ctr": smoothed_rate(st.clicks, st.impressions, context.ctr_prior, context.prior_strength),
            "cvr": smoothed_rate(st.purchases, st.impressions, context.cvr_prior, context.prior_strength),
            "impressions_log": math.log1p(st.impressions),
            **text_features(query, p),
            **shape,
            # +1 smooths a user with little history toward "no preference"
            "user_brand_affinity": user.brands.get(p.brand, 0.0) / (user.total + 1.0) if p.brand else 0.0,
            "user_category_affinity": max(cats, default=0.0) / (user.total + 1.0),
            "user_history_log": math.log1p(user.total),
        }
        out.append(row)
    return out


def feature_matrix(query: str, hits: Sequence[ScoredHit], context: FeatureContext,
                   names: Sequence[str] = DEFAULT_MODEL_FEATURES) -> np.ndarray:
    """The ``(len(hits), len(names))`` float matrix of the named features, columns in ``names`` order.

    Raises:
        ValueError: a name that is not in :data:`FEATURE_NAMES`.
    """
    check_names(names)
    rows = list_features(query, hits, context)
    return np.array([[r[n] for n in names] for r in rows], dtype=np.float64).reshape(len(rows), len(names))


def check_names(names: Sequence[str]) -> None:
    """Raise ValueError naming the first unknown feature name (and listing the known ones)."""
    for n in names:
        if n not in FEATURE_NAMES:
            raise ValueError(f"unknown feature {n!r}; known features: {', '.join(FEATURE_NAMES)}")
