"""Records of a hybrid search request and response, shared by plugin/hybrid.py, the reranker and the API."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .documents import DEFAULT_FACETS, TEXT_FIELDS
from .engine import Filters

# ScoredHit.stages key of a text field's own BM25 score (a ranker profile's hits carry one per field).
BM25_FIELD_STAGES: dict[str, str] = {f: f"bm25_{f}" for f in TEXT_FIELDS}


@dataclass(frozen=True)
class SearchRequest:
    """One storefront search: query text, filters, page and the ranking profile to use."""

    query: str
    filters: Filters = Filters()
    page: int = 1  # 1-based
    size: int = 10
    profile: str = "default"
    facets: tuple[str, ...] = DEFAULT_FACETS  # attr.* : every attribute facet of the index
    explain: bool = False
    sort: str = "relevance"  # one of engine.SORTS, over the whole matching set
    highlight: bool = False  # mark the query's words in each hit's title and description
    # Also return the ranking's first ``reference`` fused hits (``SearchResponse.first_page``), fetched with the
    # page's products: what a page is ranked against (the logged list features), without a second search.
    reference: int = 0


@dataclass(frozen=True)
class ScoredHit:
    """A ranked result with the score of every stage that produced it (for explain and evaluation)."""

    id: str
    rank: int  # 1-based position in the full ranking (not the page); served: the position shown
    score: float  # the final score the ranking is sorted by (a profile's exploration may swap neighbours)
    source: dict[str, Any] = field(default_factory=dict)
    # e.g. {"bm25": 12.3, "bm25_rank": 1, "knn": 0.83, "knn_rank": 4, "fused": 0.031}; with a ranker stage also
    # "bm25_title", "bm25_description", ... (each field's own BM25 score, before its boost)
    stages: dict[str, float] = field(default_factory=dict)
    # LightGBM's per-feature contributions to stages["conversion_raw"] (feature name or "bias" -> value; they sum
    # to it); filled only by the conversion stage of an explained search.
    contributions: dict[str, float] = field(default_factory=dict)
    # title/description HTML-escaped with <em> around the query's words (only when highlighting was asked for)
    highlights: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SearchResponse:
    """A page of results, facet counts over the filtered set, per-stage timings and degradation notes."""

    query: str
    profile: str
    page: int
    size: int
    total: int  # how many products match (lexically, or by vector score over the profile's threshold); exact
    hits: list[ScoredHit]
    facets: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    timings_ms: dict[str, float] = field(default_factory=dict)  # embed, retrieve, fusion, rerank, conversion, total
    degraded: bool = False
    notes: tuple[str, ...] = ()
    # The query the hits are for when it is not the one typed: the speller's correction ("showing results for
    # ...", the vector leg embedded it) or, with ``relaxed``, the relaxed query that found them.
    correction: str | None = None
    # Only when the query matched nothing: spelling suggestions from the catalog's vocabulary (may be empty).
    did_you_mean: tuple[str, ...] = ()
    # The query matched nothing and these hits are for ``correction``, a relaxed form of it (unknown words dropped).
    relaxed: bool = False
    # Why it is degraded, as "<stage>:<cause>" codes (DEGRADED_REASONS); the notes say it in words.
    degraded_reasons: tuple[str, ...] = ()
    # The merchandising rules that fired (plugin/merchandising.py): the typed query's, in file order, then those
    # only the query served instead of it fired.
    rules_applied: tuple[str, ...] = ()
    # A rule's URL the storefront sends the shopper to (the results are still computed); None: stay.
    redirect: str | None = None
    # With ``SearchRequest.reference``: the ranking's first that many fused hits (ids, sources, each leg's score
    # and rank and ``fused``; no per-field BM25 or merchandising marks), when the fused legs hold that many;
    # empty when not asked, when the page holds them, when the ranking is shorter or the page is empty.
    first_page: tuple[ScoredHit, ...] = ()


# The degradation codes a SearchResponse can carry: what was cut short and why. ``deadline``: the request's
# end-to-end deadline (shopsearch.deadline) ran out; ``budget``: the stage's own time budget; ``failed``: an error.
DEGRADED_REASONS = {
    "embed:failed": "the query embedding failed; the lexical leg alone served",
    "retrieve:deadline": "a retrieval leg (or a deeper candidate page) did not run in time; the legs that ran served",
    "fetch:deadline": "the page's products were not fetched in time; hits carry ids and scores only",
    "match:deadline": "the matching set was not counted in time: total counts the fused hits only, no facets",
    "merchandise:deadline": "the pin, boost and bury rules were not applied in time; the ranking is unarranged",
    "rerank:deadline": "no time left for the cross-encoder; the fused order served",
    "rerank:budget": "the cross-encoder could not fit its own time budget; the fused order served",
    "rerank:failed": "the cross-encoder failed while scoring; the fused order served",
    "rerank:unavailable": "the cross-encoder model is missing or failed to load; the fused order served",
    "conversion:deadline": "no time left for the conversion model; the order kept",
    "conversion:failed": "the conversion model is missing or failed, or needs a degraded input; the order kept",
    "history:failed": "the event history was unavailable; the conversion model ranked with priors",
}
