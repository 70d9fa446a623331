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
  vector scores. Other sorts (price, rating) order the whole set by the field, missing values last.
- Spelling (:mod:`.speller`, one speller per index version over the catalog's vocabulary): the query is corrected
  before it is embedded, so the vector leg sees what the shopper meant; the lexical leg searches the query as
  typed plus the corrected words (:data:`LEXICAL_SPELLING`); the response names the correction. A query that
  matches nothing gets "did you mean" suggestions and, when its known words alone find products, those
  (``relaxed``).
- Ties (fused score, match score, sort field) are broken by product id, so the order is deterministic.
- An empty (blank) query is a *browse*: every product passing the filters matches; it ranks nothing (no hits)
  unless sorted by a field; the facets count it, for a storefront's landing page; the notes say so.
- If the query embedder fails (e.g. the GPU runs out of memory) and the profile has a BM25 leg, the search is
  served lexically with ``degraded=True`` and a note; a dense-only profile re-raises.
- A ``deadline`` (shopsearch.deadline) bounds every engine call. Past it the search serves what it has, with
  ``degraded=True`` and the reason codes of :data:`~.search_types.DEGRADED_REASONS`: the legs that ran (the
  embedded engine checks between legs), the page's hits without their products when the fetch is cut, the fused
  hits without the exact total and facets when counting is cut. With nothing to serve it raises DeadlineExceeded.
  Retrieval must end :data:`FETCH_RESERVE` of the budget early, so a slow engine leaves time to fetch the
  products of what it found; the page's products (with those of the first page when asked for,
  ``SearchRequest.reference``) are fetched before the matching set is counted (a page is worth more than its
  facets); a page past the fused hits is read from the matching set first, and the first page's products after.
- A request is checked against the same limits as the API's (:class:`~shopsearch.settings.Settings`:
  ``max_query_length``, ``max_size``, ``max_depth``), so a caller past the API gets a ValueError, not a deep scan.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Any, Sequence

from shopsearch.deadline import Deadline, DeadlineExceeded
from shopsearch.settings import Settings
from shopsearch.text import normalise_query

from shopsearch.indexer.sink import FACET_ATTRIBUTES_META

from .documents import ALL_ATTRIBUTES, ATTR_PREFIX, FACET_FIELDS, VECTOR_FIELD, is_facet, public_source
from .engine import BM25Leg, Engine, Filters, Hit, KnnLeg, LegsCutShort, MatchPage, MatchRule, check_sort
from .fusion import Fused, fuse
from .merchandising import Arranged, Merchandising, arrange_head
from .profiles import Profile, ProfileStore
from .query_cache import Embedder, QueryEmbeddingCache
from .search_types import BM25_FIELD_STAGES, ScoredHit, SearchRequest, SearchResponse
from .speller import Correction, Speller, SpellerCache

log = logging.getLogger(__name__)
# Share of a request's deadline that retrieval leaves for fetching the page's products (and counting the set).
FETCH_RESERVE = 0.2
# How long (seconds) the index's list of attribute facets (its index meta) is kept before it is read again.
FACET_META_TTL_S = 30.0


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

    Each parameter is checked alone (query length, ``page`` in 1..max_depth, ``size`` in 1..max_size, ``reference``
    in 0..max_depth); the API also rejects ``page * size`` past ``max_depth`` (422), which is not checked here
    because the ranking pipeline pages through a profile's rerank head, which may reach deeper than a shopper may
    page.

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
    _check_int("reference", req.reference, 0, limits.max_depth)  # the first page a deeper one is ranked against
    check_sort(req.sort)
    for name in req.facets:
        if name != ALL_ATTRIBUTES and not is_facet(name):
            raise ValueError(f"facets has {name!r}; allowed: {', '.join(FACET_FIELDS)}, attr.<attribute> or "
                             f"{ALL_ATTRIBUTES} (every attribute facet of the index)")
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
        merchandising: the index's rules and synonyms (default: the ``merchandising_dir`` of ``settings``).

    Raises:
        ValueError: an empty ``index`` or a bad ``embed_cache_size``.

    >>> searcher = HybridSearcher(engine, "products", BiEncoder())  # doctest: +SKIP
    >>> searcher.search(SearchRequest("red lamp", size=5)).hits[0].stages  # doctest: +SKIP
    {'bm25': 12.1, 'bm25_rank': 1, 'knn': 0.71, 'knn_rank': 3, 'fused': 0.032}
    """

    def __init__(self, engine: Engine, index: str, embedder: Embedder, profiles: ProfileStore | None = None, *,
                 embed_cache_size: int = 2048, settings: Settings | None = None,
                 merchandising: Merchandising | None = None):
        if not isinstance(index, str) or not index.strip():
            raise ValueError(f"index must be a non-empty string, got {index!r}")
        self.settings = settings if settings is not None else Settings()
        self.engine = engine
        self.index = index
        self.profiles = profiles if profiles is not None else ProfileStore()
        self.embeddings = QueryEmbeddingCache(embedder, embed_cache_size)
        self.merchandising = merchandising if merchandising is not None else Merchandising.from_settings(self.settings)
        self.spellers = SpellerCache(lambda: engine.vocabulary(index))
        self._attribute_facets: tuple[float, tuple[str, ...]] | None = None

    def attribute_facets(self) -> tuple[str, ...]:
        """The index's attribute facets (``attr.<name>``, from the ``facet_attributes`` its indexing run recorded
        in the index meta; none for an index built before them), re-read every FACET_META_TTL_S seconds."""
        now = time.monotonic()
        cached = self._attribute_facets
        if cached is None or now - cached[0] > FACET_META_TTL_S:
            names = self.engine.index_meta(self.index).get(FACET_ATTRIBUTES_META, "")
            found = tuple(ATTR_PREFIX + n for n in names.split(",") if is_facet(ATTR_PREFIX + n))
            cached = self._attribute_facets = (now, found)
        return cached[1]

    def _facets(self, facets: tuple[str, ...]) -> tuple[str, ...]:
        """``facets`` with ALL_ATTRIBUTES replaced by the index's attribute facets."""
        if ALL_ATTRIBUTES not in facets:
            return facets
        out: list[str] = []
        for name in facets:
            out += self.attribute_facets() if name == ALL_ATTRIBUTES else [name]
        return tuple(dict.fromkeys(out))

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
                                   tie_breaker=b.tie_breaker, filters=filters,
                                   synonyms=self.merchandising.synonyms(self.index))
        if profile.knn.enabled and vector is not None:
            legs["knn"] = KnnLeg(vector=[float(x) for x in vector], k=profile.knn.k, filters=filters)
        return legs

    def search(self, req: SearchRequest, *, deadline: Deadline | None = None, relax: bool = True,
               typed: str | None = None) -> SearchResponse:
        """Run one search request.

        Args:
            req: query, filters, 1-based page, page size, profile name, facet fields, sort, highlight
                (limits: ``settings``).
            deadline: when the answer is due; every engine call gets the time left, and what ran out of time is
                left out (``degraded_reasons`` say what; see the module notes). None: no deadline.
            relax: when the query matches nothing, search its relaxed form (see :meth:`_nothing_found`).
            typed: the query the shopper typed when ``req.query`` is a form of it the searcher serves instead (the
                relaxed query); None: ``req.query``. Merchandising rules fire for the typed query or the served
                one (``req.query``, or its spelling correction), the typed one's first (plugin/merchandising.py).

        Returns:
            A SearchResponse over the products the query matches (lexically, or by a vector score over the
            profile's thresholds): ``total`` is their exact number, the facets count them (each facet ignoring its
            own filter) and the pages walk them all in ``req.sort`` order. In relevance order the fused legs come
            first (``rank`` is the position in the whole ranking; ``stages`` holds ``bm25``/``bm25_rank``/``knn``/
            ``knn_rank`` for the legs that found the product and ``fused``, and, on a page in the head a
            profile's ranker orders, ``bm25_<field>`` per text field), then the other matches by their
            summed lexical and vector scores (``stages["match"]``). ``timings_ms``: embed, retrieve, fusion, match
            (count, facets and any page past the fused list), fetch (the page's products, and the first page's
            when asked for), total. With ``req.reference`` on a page that does not hold the first ``reference``
            fused hits, ``first_page`` holds them (legs' scores and sources), fetched with the page's products.
            Spelling: the query is corrected against the catalog's vocabulary before it is embedded
            (``correction``; the lexical leg searches :func:`lexical_text`); a query that matches nothing gets
            ``did_you_mean`` and, when its relaxed form finds products, those (``relaxed``).

        Raises:
            ValueError: a bad parameter (message names it), including an unknown profile
                (:class:`~shopsearch.plugin.profiles.UnknownProfile`, a ValueError subclass).
            IndexNotFound, EngineUnavailable: from the engine.
            DeadlineExceeded: the deadline passed before anything could be served (no leg ran in time, or a
                browse/field-sorted page could not be read in time).
        """
        t_total = time.perf_counter()
        validate_request(req, self.settings)
        profile = self.profiles.get(req.profile)
        given = req  # before the rules narrow its filters (a relaxed search narrows them with its own plan)
        query = req.query.strip()
        timings: dict[str, float] = {}
        speller: Speller | None = None
        correction = Correction(query, query)
        if query:
            t = time.perf_counter()
            speller = self.spellers.get()
            correction = speller.correct(query, keep=self.merchandising.synonyms(self.index).words)
            timings["spell"] = _ms(t)
        # Rules fire for the query as typed, and for the one served instead of it: the relaxed query, or a
        # correction of words the catalog does not hold (a rare catalog word it also serves keeps its own rules
        # alone). The typed query's rules come first (plugin/merchandising.py).
        if typed is not None:
            plan = self.merchandising.plan(self.index, typed, served=correction.corrected)
        else:
            replaced = speller is not None and speller.replaces(correction)
            plan = self.merchandising.plan(self.index, req.query, served=correction.corrected if replaced else None)
        if plan.rules:  # hide and filter rules narrow the filters: every leg, the total and the facets obey them
            req = replace(req, filters=plan.narrow(req.filters))
        arranged = Arranged([])
        notes: list[str] = []
        reasons: list[str] = []
        fused: list[Fused] = []
        field_scores: dict[str, dict[str, float]] = {}  # product id -> the BM25 leg's score per field
        rule = MatchRule(filters=req.filters)
        if not query:
            notes.append("empty query: browse mode, facets over the filtered products"
                         + (", no ranked hits" if req.sort == "relevance" else f", sorted by {req.sort}"))
        else:
            vector = None
            if profile.knn.enabled:
                t = time.perf_counter()
                try:
                    vector = self.embeddings.embed(correction.corrected)  # what the shopper meant
                except RuntimeError as exc:
                    if not profile.bm25.enabled:
                        raise
                    log.warning("query embedding failed, serving BM25 only: %s", exc)
                    reasons.append("embed:failed")
                    notes.append(f"query embedding failed ({type(exc).__name__}); served by BM25 only")
                timings["embed"] = _ms(t)
            legs = self.legs_for(profile, lexical_text(correction), vector, req.filters)
            lexical = legs.get("bm25")  # its query decides the lexical match (kept: the legs may be cut below)
            # a page in the head a learned ranker orders: its per-field BM25 features
            per_field = lexical is not None and req.sort == "relevance" and \
                (req.page - 1) * req.size < profile.conversion.depth
            if per_field:
                legs["bm25"] = replace(lexical, field_scores=True)
            if req.sort != "relevance" and "knn" in legs:
                # Only the vector leg's best score is needed (for the relative cut-off); the order is the field's.
                legs = {"knn": replace(legs["knn"], k=1)} if profile.knn.relative_score else {}
            t = time.perf_counter()
            try:
                results = self.engine.search(self.index, list(legs.values()), with_source=False,
                                             deadline=deadline and deadline.leaving(deadline.budget_s * FETCH_RESERVE))
            except LegsCutShort as cut:
                if not cut.done:
                    raise
                results = cut.done  # the legs that ran, in order
                skipped = list(legs)[len(cut.done):]
                reasons.append("retrieve:deadline")
                notes.append(f"deadline: the {' and '.join(skipped)} leg did not run in time; served by "
                             f"{' and '.join(list(legs)[:len(cut.done)])}")
            by_leg = dict(zip(legs, results))
            if per_field:
                field_scores = {h.id: h.fields for h in by_leg.get("bm25", ())}
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
            if plan.arranges and req.sort == "relevance":  # pins, boosts, bury: plugin/merchandising.py
                t = time.perf_counter()
                try:
                    arranged = arrange_head(self.engine, self.index, plan, fused, rule, deadline)
                    fused = arranged.fused
                    rule = replace(rule, also=arranged.extra)
                except DeadlineExceeded:
                    reasons.append("merchandise:deadline")
                    notes.append("deadline: the pin, boost and bury rules were not applied in time")
                timings["merchandise"] = _ms(t)
        start = (req.page - 1) * req.size
        head = fused[start:start + req.size]
        # the ranking's first page when asked for and the page does not hold it (a shorter ranking continues
        # into the matching set, which only a search from the top reads)
        reference = fused[:req.reference] if req.reference and len(fused) >= req.reference and \
            (start or req.size < req.reference) else []
        ranked = req.sort == "relevance"
        # The page continues past the fused list into the rest of the matching set (relevance), or is a slice of
        # the whole set in the field's order; a blank query ranks nothing unless sorted by a field.
        want = req.size - len(head) if (query or not ranked) else 0
        mark = query if req.highlight and query else None
        hits: list[ScoredHit] = []
        first_page: tuple[ScoredHit, ...] = ()
        if head:  # with the first page's products, in one fetch
            t = time.perf_counter()
            wanted = list(dict.fromkeys(f.id for f in [*head, *reference]))
            try:
                found = self.engine.sources(self.index, wanted, highlight=mark, deadline=deadline)
            except DeadlineExceeded:
                found = {}
                reasons.append("fetch:deadline")
                notes.append("deadline: the page's products were not fetched in time; hits carry ids and scores")
            timings["fetch"] = _ms(t)
            hits = [_scored(f, start + i + 1, found.get(f.id), field_scores.get(f.id)) for i, f in enumerate(head)]
            first_page = _first_page(reference, found)
        t = time.perf_counter()
        try:
            page = self.engine.match(self.index, rule, sort=req.sort, offset=max(0, start - len(fused)), size=want,
                                     exclude=[f.id for f in fused] + [h.id for h in arranged.buried]
                                     if want and (fused or arranged.buried) else (), facets=self._facets(req.facets),
                                     highlight=mark, deadline=deadline, price_edges=self.settings.facet_price_edges)
        except DeadlineExceeded:
            if not hits:
                raise  # a browse, a field sort or a page past the fused hits: nothing else to serve
            page = MatchPage(total=len(fused), hits=[])
            reasons.append("match:deadline")
            notes.append("deadline: the matching set was not counted in time; total counts the fused hits only, "
                         "no facets")
        timings["match"] = _ms(t)
        if reference and not head and page.hits:
            # a page past the fused list, found: the first page's products only now (the page came first)
            t = time.perf_counter()
            try:
                found = self.engine.sources(self.index, [f.id for f in reference], deadline=deadline)
                first_page = _first_page(reference, found)
            except DeadlineExceeded:
                pass  # only what the page is logged against is lost: it is served without
            timings["fetch"] = _ms(t)
        total = max(page.total, len(fused))
        tail = list(page.hits)  # then the buried products, which hold the last places
        tail += arranged.buried_page(start + len(hits) + len(tail), req.size - len(hits) - len(tail), total)
        for h in tail:
            stages = {"match": h.score} if ranked else {}
            hits.append(ScoredHit(id=h.id, rank=start + len(hits) + 1, score=h.score if ranked else 0.0,
                                  source=public_source(h.source), stages=stages, highlights=dict(h.highlights)))
        timings["total"] = _ms(t_total)
        resp = SearchResponse(query=req.query, profile=profile.name, page=req.page, size=req.size,
                              total=total, hits=arranged.marked(hits), facets=page.facets, timings_ms=timings,
                              rules_applied=plan.rules, redirect=plan.redirect,
                              degraded=bool(reasons), notes=tuple(notes), degraded_reasons=tuple(reasons),
                              correction=correction.corrected if correction.changed else None,
                              first_page=first_page)
        if resp.total or speller is None:
            return resp
        return self._nothing_found(given, resp, speller, correction, deadline, relax)

    def _nothing_found(self, req: SearchRequest, resp: SearchResponse, speller: Speller, correction: Correction,
                       deadline: Deadline | None, relax: bool) -> SearchResponse:
        """A query that matched nothing: ``resp`` with the speller's ``did_you_mean``, or, when ``relax`` and the
        relaxed query (the corrected query without the words the catalog does not hold) differs and finds
        products, that search's response labelled ``relaxed`` (``correction`` = the relaxed query)."""
        # the correction was searched already and found nothing: offering it again is a dead end
        searched = normalise_query(correction.corrected) if correction.changed else None
        suggestions = tuple(s for s in speller.did_you_mean(req.query) if normalise_query(s) != searched)
        relaxed = speller.known_words(correction.corrected) if relax else ""
        if relaxed and relaxed != normalise_query(correction.corrected):
            found = self.search(replace(req, query=relaxed), deadline=deadline, relax=False, typed=req.query)
            if found.total:
                note = f"no product matches {req.query.strip()!r}; showing results for {relaxed!r}"
                return replace(found, query=req.query, correction=relaxed, relaxed=True, did_you_mean=suggestions,
                               notes=(*found.notes, note))
        return replace(resp, did_you_mean=suggestions)

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


# What the lexical leg searches for a corrected query: "original" (as typed; its fuzziness forgives typos),
# "corrected" (the speller's words) or "both" (as typed, plus the corrected words). Measured on crowdflower dev
# with seeded typos (bench/typos.py; bench/RESULTS.md).
LEXICAL_SPELLING = "both"


def lexical_text(correction: Correction, mode: str | None = None) -> str:
    """The lexical leg's query for ``correction`` under ``mode`` (default :data:`LEXICAL_SPELLING`).

    >>> c = Correction("canle holders", "candle holders", (("canle", "candle"),))
    >>> [lexical_text(c, m) for m in ("original", "corrected", "both")]
    ['canle holders', 'candle holders', 'canle holders candle']
    """
    mode = mode or LEXICAL_SPELLING
    if mode == "original" or not correction.changed:
        return correction.original
    if mode == "corrected":
        return correction.corrected
    return " ".join([correction.original, *(new for _, new in correction.changes)])


def vector_threshold(profile: Profile, knn_hits: list[Hit]) -> float:
    """The vector score a product needs to match: the profile's ``knn.min_score``, raised to ``knn.relative_score``
    of the best vector hit's score (the hits best first).

    >>> from shopsearch.plugin.profiles import parse_profile
    >>> vector_threshold(parse_profile({"knn": {"min_score": 0.6, "relative_score": 0.9}}, "p"), [Hit("a", 0.8)])
    0.72
    """
    best = knn_hits[0].score if knn_hits else 0.0
    return max(profile.knn.min_score, round(profile.knn.relative_score * best, 6))


def _first_page(reference: Sequence[Fused], found: dict[str, Hit]) -> tuple[ScoredHit, ...]:
    """``SearchResponse.first_page``: the ranking's first fused hits, ranked from 1, with their products from
    ``found`` (no per-field BM25 or merchandising marks)."""
    return tuple(_scored(f, i + 1, found.get(f.id)) for i, f in enumerate(reference))


def _scored(f: Fused, rank: int, found: Hit | None, fields: dict[str, float] | None = None) -> ScoredHit:
    """A fused record as a ScoredHit with every leg's score and rank, the BM25 leg's score per field
    (``bm25_<field>``, from ``fields``) and the fused score in ``stages``, and the product's source and
    highlights from ``found``."""
    stages: dict[str, float] = {}
    for leg, score in f.leg_scores.items():
        stages[leg] = score
        stages[f"{leg}_rank"] = f.leg_ranks[leg]
    for name, score in (fields or {}).items():
        stages[BM25_FIELD_STAGES[name]] = score
    stages["fused"] = f.score
    source, marks = (public_source(found.source), dict(found.highlights)) if found is not None else ({}, {})
    return ScoredHit(id=f.id, rank=rank, score=f.score, source=source, stages=stages, highlights=marks)
