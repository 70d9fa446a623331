"""Hybrid search: embed the query, run the profile's BM25 and k-NN legs in one engine call, fuse, paginate, facet.

The request path is a few lines on purpose; the fusion is pure (:mod:`.fusion`), the profile is data
(:mod:`.profiles`), the engine does the I/O. Filters travel inside every leg, so a page never comes up short
because of post-filtering.

Decisions worth knowing:
- Honest result sets: a product matches when the lexical query matches it or its vector score clears the
  profile's threshold (``knn.min_score``, raised to ``knn.relative_score`` x the best vector hit); the k-NN leg is
  a radial search, so a nonsense query matches nothing. ``SearchResponse.total`` is the exact size of that set,
  the facets count it (disjunctively: each facet ignores its own filter) and the pages walk it.
- Relevance order: the fused legs (their sizes fixed by the profile, ``bm25.size``, ``knn.k``, never by the page
  asked for, so page 2 always continues page 1), then the rest of the matching set by its summed lexical and
  vector scores. Other sorts (price, rating, newest) order the whole set by the field, missing values last.
- Ties (fused score, match score, sort field) are broken by product id, so the order is deterministic.
- An empty (blank) query is a *browse*: every product passing the filters matches; it ranks nothing (no hits)
  unless sorted by a field; the facets count it, for a storefront's landing page; the notes say so.
- If the query embedder fails (e.g. the GPU runs out of memory) and the profile has a BM25 leg, the search is
  served lexically with ``degraded=True`` and a note; a dense-only profile re-raises.
- A request is checked against the same limits as the API's (:class:`~shopsearch.settings.Settings`:
  ``max_query_length``, ``max_size``, ``max_depth``), so a caller past the API gets a ValueError, not a deep scan.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Any

from shopsearch.settings import Settings

from .documents import FACET_FIELDS, VECTOR_FIELD, public_source
from .engine import SORTS, BM25Leg, Engine, Filters, Hit, KnnLeg, MatchRule
from .fusion import Fused, fuse
from .profiles import Profile, ProfileStore
from .query_cache import Embedder, QueryEmbeddingCache
from .search_types import ScoredHit, SearchRequest, SearchResponse

log = logging.getLogger(__name__)


class ProductNotFound(KeyError):
    """No product with that id in the index (the API answers 404)."""

    def __str__(self) -> str:
        return f"product {self.args[0]!r} does not exist" if self.args else "product does not exist"


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000.0, 3)


def _check_int(name: str, value: Any, lo: int, hi: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ValueError(f"{name} must be an integer in {lo}..{hi}, got {value!r}")


def validate_request(req: SearchRequest, limits: Settings) -> None:
    """Check a request's parameters against ``limits`` before any engine call.

    Each parameter is checked alone (query length, ``page`` in 1..max_depth, ``size`` in 1..max_size); the API also
    rejects ``page * size`` past ``max_depth`` (422), which is not checked here because the ranking pipeline pages
    through a profile's rerank head, which may reach deeper than a shopper may page.

    Raises:
        ValueError: naming the parameter, its value and what is allowed (query, page, size, sort, facets, filters).

    >>> validate_request(SearchRequest("lamp", size=0), Settings())
    Traceback (most recent call last):
    ...
    ValueError: size must be an integer in 1..100, got 0
    """
    if not isinstance(req.query, str):
        raise ValueError(f"query must be a string, got {type(req.query).__name__}")
    if len(req.query) > limits.max_query_length:
        raise ValueError(f"query must be at most {limits.max_query_length} characters, got {len(req.query)}")
    _check_int("page", req.page, 1, limits.max_depth)
    _check_int("size", req.size, 1, limits.max_size)
    if req.sort not in SORTS:
        raise ValueError(f"sort must be one of {', '.join(SORTS)}; got {req.sort!r}")
    for name in req.facets:
        if name not in FACET_FIELDS:
            raise ValueError(f"facets has {name!r}; allowed: {', '.join(FACET_FIELDS)}")
    f = req.filters
    if f.price_min is not None and f.price_max is not None and f.price_min > f.price_max:
        raise ValueError(f"price_min ({f.price_min}) must be <= price_max ({f.price_max})")


class HybridSearcher:
    """Searches one index with ranking profiles: BM25 + k-NN legs, fused, paginated, faceted.

    Args:
        engine: an open :class:`~shopsearch.plugin.engine.Engine` (OpenSearch or embedded).
        index: index or alias name.
        embedder: the bi-encoder the index was built with (``encode(list[str]) -> np.ndarray``).
        profiles: where profiles are found by name (default: packaged + ``$SHOPSEARCH_PROFILES``).
        embed_cache_size: query embeddings kept in the LRU cache (0 disables it).
        settings: the request limits (``max_query_length``, ``max_size``, ``max_depth``; default: the declared
            defaults); the API passes its own, so both check the same numbers.

    Raises:
        ValueError: an empty ``index`` or a bad ``embed_cache_size``.

    >>> searcher = HybridSearcher(engine, "products", BiEncoder())  # doctest: +SKIP
    >>> searcher.search(SearchRequest("red lamp", size=5)).hits[0].stages  # doctest: +SKIP
    {'bm25': 12.1, 'bm25_rank': 1, 'knn': 0.71, 'knn_rank': 3, 'fused': 0.032}
    """

    def __init__(self, engine: Engine, index: str, embedder: Embedder, profiles: ProfileStore | None = None, *,
                 embed_cache_size: int = 2048, settings: Settings | None = None):
        if not isinstance(index, str) or not index.strip():
            raise ValueError(f"index must be a non-empty string, got {index!r}")
        self.settings = settings if settings is not None else Settings()
        self.engine = engine
        self.index = index
        self.profiles = profiles if profiles is not None else ProfileStore()
        self.embeddings = QueryEmbeddingCache(embedder, embed_cache_size)

    def legs_for(self, profile: Profile, query: str, vector: Any, filters: Filters) -> dict[str, BM25Leg | KnnLeg]:
        """The legs a profile asks for, by name; the k-NN leg only when a ``vector`` is given.

        The k-NN leg ranks by a plain top-k search and :meth:`search` drops the hits under the profile's threshold
        (exact scores); only counting the matching set uses OpenSearch's radial search, whose graph walk from
        the threshold is approximate and reordered the top 10 (dense profile nDCG@10 0.799 -> 0.772 on crowdflower).
        """
        legs: dict[str, BM25Leg | KnnLeg] = {}
        if profile.bm25.enabled:
            b = profile.bm25
            legs["bm25"] = BM25Leg(query=query, fields=dict(b.fields), size=b.size, fuzziness=b.fuzziness,
                                   tie_breaker=b.tie_breaker, filters=filters)
        if profile.knn.enabled and vector is not None:
            legs["knn"] = KnnLeg(vector=[float(x) for x in vector], k=profile.knn.k, filters=filters)
        return legs

    def search(self, req: SearchRequest) -> SearchResponse:
        """Run one search request.

        Args:
            req: query, filters, 1-based page, page size, profile name, facet fields, sort, highlight
                (limits: ``settings``).

        Returns:
            A SearchResponse over the products the query matches (lexically, or by a vector score over the
            profile's thresholds): ``total`` is their exact number, the facets count them (each facet ignoring its
            own filter) and the pages walk them all in ``req.sort`` order. In relevance order the fused legs come
            first (``rank`` is the position in the whole ranking; ``stages`` holds ``bm25``/``bm25_rank``/``knn``/
            ``knn_rank`` for the legs that found the product and ``fused``), then the other matches by their
            summed lexical and vector scores (``stages["match"]``). ``timings_ms``: embed, retrieve, fusion, match
            (count, facets and any page past the fused list), fetch (the page's products), total.

        Raises:
            ValueError: a bad parameter (message names it), including an unknown profile
                (:class:`~shopsearch.plugin.profiles.UnknownProfile`, a ValueError subclass).
            IndexNotFound, EngineUnavailable: from the engine.
        """
        t_total = time.perf_counter()
        validate_request(req, self.settings)
        profile = self.profiles.get(req.profile)
        query = req.query.strip()
        timings: dict[str, float] = {}
        notes: list[str] = []
        degraded = False
        fused: list[Fused] = []
        rule = MatchRule(filters=req.filters)
        if not query:
            notes.append("empty query: browse mode, facets over the filtered products"
                         + (", no ranked hits" if req.sort == "relevance" else f", sorted by {req.sort}"))
        else:
            vector = None
            if profile.knn.enabled:
                t = time.perf_counter()
                try:
                    vector = self.embeddings.embed(query)
                except RuntimeError as exc:
                    if not profile.bm25.enabled:
                        raise
                    log.warning("query embedding failed, serving BM25 only: %s", exc)
                    degraded = True
                    notes.append(f"query embedding failed ({type(exc).__name__}); served by BM25 only")
                timings["embed"] = _ms(t)
            legs = self.legs_for(profile, query, vector, req.filters)
            lexical = legs.get("bm25")  # its query decides the lexical match (kept: the legs may be cut below)
            if req.sort != "relevance" and "knn" in legs:
                # Only the vector leg's best score is needed (for the relative cut-off); the order is the field's.
                legs = {"knn": replace(legs["knn"], k=1)} if profile.knn.relative_score else {}
            t = time.perf_counter()
            by_leg = dict(zip(legs, self.engine.search(self.index, list(legs.values()), with_source=False)))
            timings["retrieve"] = _ms(t)
            threshold = vector_threshold(profile, by_leg.get("knn", []))
            if "knn" in by_leg:
                by_leg["knn"] = [h for h in by_leg["knn"] if h.score >= threshold]
            if req.sort == "relevance":
                t = time.perf_counter()
                fused = fuse(profile.fusion.method, by_leg, rrf_k=profile.fusion.rrf_k,
                             weights={name: profile.fusion.weights[name] for name in by_leg})
                timings["fusion"] = _ms(t)
            rule = MatchRule(lexical=lexical,
                             vector=None if vector is None else [float(x) for x in vector],
                             min_score=threshold, filters=req.filters)
        start = (req.page - 1) * req.size
        head = fused[start:start + req.size]
        ranked = req.sort == "relevance"
        # The page continues past the fused list into the rest of the matching set (relevance), or is a slice of
        # the whole set in the field's order; a blank query ranks nothing unless sorted by a field.
        want = req.size - len(head) if (query or not ranked) else 0
        t = time.perf_counter()
        mark = query if req.highlight and query else None
        page = self.engine.match(self.index, rule, sort=req.sort, offset=max(0, start - len(fused)), size=want,
                                 exclude=[f.id for f in fused] if want and fused else (), facets=req.facets,
                                 highlight=mark)
        timings["match"] = _ms(t)
        hits: list[ScoredHit] = []
        if head:
            t = time.perf_counter()
            found = self.engine.sources(self.index, [f.id for f in head], highlight=mark)
            timings["fetch"] = _ms(t)
            hits = [_scored(f, start + i + 1, found.get(f.id)) for i, f in enumerate(head)]
        for h in page.hits:
            stages = {"match": h.score} if ranked else {}
            hits.append(ScoredHit(id=h.id, rank=start + len(hits) + 1, score=h.score if ranked else 0.0,
                                  source=public_source(h.source), stages=stages, highlights=dict(h.highlights)))
        timings["total"] = _ms(t_total)
        return SearchResponse(query=req.query, profile=profile.name, page=req.page, size=req.size,
                              total=max(page.total, len(fused)), hits=hits, facets=page.facets, timings_ms=timings,
                              degraded=degraded, notes=tuple(notes))

    def similar(self, product_id: str, size: int = 10, filters: Filters = Filters()) -> list[ScoredHit]:
        """Products nearest to ``product_id``'s stored vector, itself excluded, passing ``filters``.

        Args:
            product_id: an indexed product id.
            size: how many (1..``settings.max_size``).
            filters: applied inside the k-NN search.

        Returns:
            ScoredHits ranked by cosine similarity (``stages`` holds ``knn`` and ``knn_rank``).

        Raises:
            ValueError: bad ``size``.
            ProductNotFound: no product ``product_id`` (a KeyError).
            IndexNotFound, EngineUnavailable: from the engine.

        >>> [h.id for h in searcher.similar("cf00153", size=3)]  # doctest: +SKIP
        ['cf00425', 'cf00466', 'cf01207']
        """
        _check_int("size", size, 1, self.settings.max_size)
        doc = self.engine.get(self.index, product_id, with_vector=True)
        if doc is None:
            raise ProductNotFound(product_id)
        vector = doc.get("vector") or doc.get(VECTOR_FIELD)
        if not vector:
            raise ProductNotFound(product_id)
        leg = KnnLeg(vector=[float(x) for x in vector], k=size,
                     filters=replace(filters, exclude_ids=tuple(filters.exclude_ids) + (str(product_id),)))
        (hits,) = self.engine.search(self.index, [leg])
        hits = [h for h in hits if h.id != str(product_id)][:size]  # belt and braces if an engine ignores the filter
        return [ScoredHit(id=h.id, rank=i, score=float(h.score), source=public_source(h.source),
                          stages={"knn": float(h.score), "knn_rank": i}) for i, h in enumerate(hits, start=1)]

    def get(self, product_id: str) -> dict[str, Any] | None:
        """The stored product (public fields only), or None when there is no such id.

        Raises:
            IndexNotFound, EngineUnavailable: from the engine.
        """
        doc = self.engine.get(self.index, product_id)
        return public_source(doc) if doc is not None else None

    def suggest(self, prefix: str, size: int = 8) -> list[str]:
        """Autocomplete: up to ``size`` product titles whose words start with every word typed so far.

        Raises:
            ValueError: ``size`` outside 1..``settings.max_size`` or ``prefix`` longer than
                ``settings.max_query_length`` characters.
            IndexNotFound, EngineUnavailable: from the engine.

        >>> searcher.suggest("red la", 5)  # doctest: +SKIP
        ['Red lamp', 'Red lamp shade']
        """
        most = self.settings.max_query_length
        if not isinstance(prefix, str) or len(prefix) > most:
            raise ValueError(f"query must be a string of at most {most} characters, got {prefix!r:.60}")
        _check_int("size", size, 1, self.settings.max_size)
        return self.engine.suggest(self.index, prefix, size)


def vector_threshold(profile: Profile, knn_hits: list[Hit]) -> float:
    """The vector score a product needs to match: the profile's ``knn.min_score``, raised to ``knn.relative_score``
    of the best vector hit's score (the hits best first).

    >>> from shopsearch.plugin.profiles import parse_profile
    >>> vector_threshold(parse_profile({"knn": {"min_score": 0.6, "relative_score": 0.9}}, "p"), [Hit("a", 0.8)])
    0.72
    """
    best = knn_hits[0].score if knn_hits else 0.0
    return max(profile.knn.min_score, round(profile.knn.relative_score * best, 6))


def _scored(f: Fused, rank: int, found: Hit | None) -> ScoredHit:
    """A fused record as a ScoredHit with every leg's score and rank and the fused score in ``stages``, and the
    product's source and highlights from ``found``."""
    stages: dict[str, float] = {}
    for leg, score in f.leg_scores.items():
        stages[leg] = score
        stages[f"{leg}_rank"] = f.leg_ranks[leg]
    stages["fused"] = f.score
    source, marks = (public_source(found.source), dict(found.highlights)) if found is not None else ({}, {})
    return ScoredHit(id=f.id, rank=rank, score=f.score, source=source, stages=stages, highlights=marks)
