"""Records of a hybrid search request and response, shared by plugin/hybrid.py, the reranker and the API."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .documents import FACET_FIELDS
from .engine import Filters


@dataclass(frozen=True)
class SearchRequest:
    """One storefront search: query text, filters, page and the ranking profile to use."""

    query: str
    filters: Filters = Filters()
    page: int = 1  # 1-based
    size: int = 10
    profile: str = "default"
    facets: tuple[str, ...] = FACET_FIELDS
    explain: bool = False
    sort: str = "relevance"  # one of engine.SORTS, over the whole matching set
    highlight: bool = False  # mark the query's words in each hit's title and description


@dataclass(frozen=True)
class ScoredHit:
    """A ranked result with the score of every stage that produced it (for explain and evaluation)."""

    id: str
    rank: int  # 1-based position in the full ranking (not the page)
    score: float  # the final score the ranking is sorted by
    source: dict[str, Any] = field(default_factory=dict)
    # e.g. {"bm25": 12.3, "bm25_rank": 1, "knn": 0.83, "knn_rank": 4, "fused": 0.031}
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
