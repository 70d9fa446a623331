"""Pure builders of OpenSearch query bodies from the engine's typed legs and filters (no I/O here)."""

from __future__ import annotations

import math
import struct
from typing import Any, Sequence

from .documents import ATTR_PREFIX, CATEGORY_LEVELS, CATEGORY_PATHS, PATH_SEPARATOR, TEXT_FIELDS, VECTOR_FIELD
from .engine import (HIGHLIGHT_FIELDS, PRICE_EDGES, BM25Leg, Filters, KnnLeg, MatchRule, check_leg_size, check_match,
                     check_min_score, check_price_edges, facet_filters, path_parents, range_buckets, split_faceted)
from .text_analysis import analyze_query

FLOAT32_MAX = 3.4028234663852886e38
# Field sorts (relevance is by score): the field, its order and the type to assume where an index lacks the field.
SORT_FIELDS = {"price_asc": ("price", "asc", "float"), "price_desc": ("price", "desc", "float"),
               "rating": ("rating", "desc", "float")}
# Derived/internal fields never leave the engine (public_source drops them too); not fetching them saves bytes.
SOURCE_EXCLUDES = [VECTOR_FIELD, "content_hash", "brand_text", "category_text", CATEGORY_PATHS, "attr"] + [
    f"category_lvl{i}" for i in range(CATEGORY_LEVELS)]


def filter_clauses(filters: Filters) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The ``(filter, must_not)`` clauses of a bool query for ``filters``.

    >>> filter_clauses(Filters(brand=("Acme",), exclude_ids=("7",)))
    ([{'terms': {'brand': ['Acme']}}], [{'ids': {'values': ['7']}}])
    """
    must: list[dict[str, Any]] = []
    if filters.brand:
        must.append({"terms": {"brand": list(filters.brand)}})
    if filters.category:
        # ``category`` is a keyword array holding every level of the path, so one terms query matches any level.
        must.append({"terms": {"category": list(filters.category)}})
    if filters.category_path:
        # ``category_paths`` holds every prefix of the product's path: a path's subtree is one terms query.
        must.append({"terms": {CATEGORY_PATHS: list(filters.category_path)}})
    for name, values in filters.attributes:
        must.append({"terms": {ATTR_PREFIX + name: list(values)}})
    if filters.price_min is not None or filters.price_max is not None:
        rng = {}
        if filters.price_min is not None:
            rng["gte"] = filters.price_min
        if filters.price_max is not None:
            rng["lte"] = filters.price_max
        must.append({"range": {"price": rng}})
    if filters.in_stock is not None:
        must.append({"term": {"in_stock": filters.in_stock}})
    if filters.rating_min is not None:
        must.append({"range": {"rating": {"gte": filters.rating_min}}})
    if filters.ids:
        must.append({"ids": {"values": list(filters.ids)}})
    must_not = [{"ids": {"values": list(filters.exclude_ids)}}] if filters.exclude_ids else []
    if filters.required is not None:
        more, more_not = filter_clauses(filters.required)
        must += more
        must_not += more_not
    return must, must_not


def filter_query(filters: Filters) -> dict[str, Any] | None:
    """A bool query that matches exactly the products passing ``filters``, or None when there are none.

    >>> filter_query(Filters()) is None
    True
    """
    must, must_not = filter_clauses(filters)
    if not must and not must_not:
        return None
    bool_q: dict[str, Any] = {"filter": must}
    if must_not:
        bool_q["must_not"] = must_not
    return {"bool": bool_q}



def field_query_name(field: str) -> str:
    """The ``_name`` of a BM25 leg's clause on ``field``: with ``include_named_queries_score`` each hit's
    ``matched_queries`` gives that field's own (boosted) score, the ranker's per-field BM25 feature."""
    return f"bm25_field:{field}"


def _fuzzy(fuzziness: str | None) -> dict[str, Any]:
    """A match's typo tolerance; the first letter must match, as the embedded engine's (embedded_bm25)."""
    return {"fuzziness": fuzziness, "prefix_length": 1, "max_expansions": 50} if fuzziness is not None else {}


def multi_match(query: str, fields: dict[str, float], *, fuzziness: str | None = "AUTO",
                tie_breaker: float = 0.3) -> dict[str, Any]:
    """A best_fields ``multi_match`` over ``fields`` (name -> boost) with optional typo tolerance.

    Raises:
        ValueError: no fields, a field outside TEXT_FIELDS, a boost <= 0, or tie_breaker outside 0..1.

    >>> multi_match("tv", {"title": 3.0}, fuzziness=None)["multi_match"]["fields"]
    ['title^3.0']
    """
    if not fields:
        raise ValueError("fields must name at least one of " + ", ".join(TEXT_FIELDS))
    for name, boost in fields.items():
        if name not in TEXT_FIELDS:
            raise ValueError(f"fields has {name!r}; allowed fields: {', '.join(TEXT_FIELDS)}")
        if not isinstance(boost, (int, float)) or not math.isfinite(boost) or boost <= 0:
            raise ValueError(f"boost for field {name!r} is {boost!r}; it must be a finite number > 0")
    if not 0.0 <= tie_breaker <= 1.0:
        raise ValueError(f"tie_breaker={tie_breaker!r} must be within 0..1")
    mm: dict[str, Any] = {
        "query": query,
        "type": "best_fields",
        "fields": [f"{name}^{float(boost)}" for name, boost in fields.items()],
        "tie_breaker": tie_breaker,
        "operator": "or",
    }
    return {"multi_match": {**mm, **_fuzzy(fuzziness)}}


def lexical_query(leg: BM25Leg) -> dict[str, Any]:
    """The scoring query of a BM25 leg: :func:`multi_match` on the text, or the same best_fields query spelled
    out: a ``dis_max`` with the tie_breaker over one boosted clause per field, what ``multi_match`` best_fields
    builds. Spelled out when one of the leg's synonyms fires in the text, and when the leg asks for
    ``field_scores``: then each field's clause is named (:func:`field_query_name`) to report its own score.

    A field's clause is a ``match`` on the text (fuzzy like the multi_match's), or, with synonyms, a bool of
    SHOULD clauses over the query's analyzed clauses (:mod:`.synonyms`), one per term or synonym alternative (a
    single term fuzzy, a phrase exact). Those terms are the ones shopsearch's analyzer mirror produced (stemmed),
    sent with the ``whitespace`` analyzer so the node does not analyze them again; the embedded engine scores
    the same clauses (embedded_bm25.score_field).

    Raises:
        ValueError: as :func:`multi_match` (fields, boosts, tie_breaker).

    >>> from shopsearch.plugin.text_analysis import SynonymMap
    >>> syn = SynonymMap.from_lines(["couch, sofa"])
    >>> q = lexical_query(BM25Leg("couch", {"title": 1.0}, fuzziness=None, synonyms=syn))
    >>> [c["match"]["title"]["query"] for c in q["dis_max"]["queries"][0]["bool"]["should"]]
    ['couch', 'sofa']
    >>> leg = BM25Leg("tv", {"title": 2.0}, fuzziness=None, field_scores=True)
    >>> lexical_query(leg)["dis_max"]["queries"][0]["match"]["title"]
    {'query': 'tv', 'operator': 'or', 'boost': 2.0, '_name': 'bm25_field:title'}
    """
    plain = multi_match(leg.query, leg.fields, fuzziness=leg.fuzziness, tie_breaker=leg.tie_breaker)
    clauses = analyze_query(leg.query, leg.synonyms) \
        if leg.synonyms is not None and leg.synonyms.fires(leg.query) else []
    if not clauses and not leg.field_scores:
        return plain  # (no synonym fires, or only stop words are left: it matches nothing, as embedded)
    fuzzy = _fuzzy(leg.fuzziness)

    def named(name: str) -> dict[str, str]:
        return {"_name": field_query_name(name)} if leg.field_scores else {}

    if not clauses:
        per_field = [{"match": {name: {"query": leg.query, "operator": "or", "boost": float(boost),
                                       **named(name), **fuzzy}}}
                     for name, boost in leg.fields.items()]
        return {"dis_max": {"queries": per_field, "tie_breaker": leg.tie_breaker}}
    per_field = []
    for name, boost in leg.fields.items():
        should = []
        for clause in clauses:
            for alt in clause.alternatives:
                if len(alt) == 1:
                    should.append({"match": {name: {"query": alt[0], "analyzer": "whitespace", **fuzzy}}})
                else:
                    should.append({"match_phrase": {name: {"query": " ".join(alt), "analyzer": "whitespace"}}})
        per_field.append({"bool": {"should": should, "boost": float(boost), **named(name)}})
    return {"dis_max": {"queries": per_field, "tie_breaker": leg.tie_breaker}}


def _bool_with_filters(clause: dict[str, Any], filters: Filters) -> dict[str, Any]:
    """``clause`` scored, ``filters`` as non-scoring filter/must_not clauses."""
    must, must_not = filter_clauses(filters)
    bool_q: dict[str, Any] = {"must": [clause], "filter": must}
    if must_not:
        bool_q["must_not"] = must_not
    return {"bool": bool_q}


def bm25_body(leg: BM25Leg) -> dict[str, Any]:
    """The search body for a BM25 leg.

    >>> bm25_body(BM25Leg("tv", {"title": 3.0}, size=5))["size"]
    5
    """
    check_leg_size("size", leg.size)
    if not isinstance(leg.query, str):
        raise ValueError(f"query={leg.query!r} must be a string")
    # Built first so the fields and boosts are checked even when the query text is empty.
    text = lexical_query(leg)
    if leg.query.strip():
        query = _bool_with_filters(text, leg.filters)
    else:
        # An empty lexical query matches nothing (like a query of only stop words), not everything.
        query = {"match_none": {}}
    return {"size": leg.size, "query": query, "_source": {"excludes": SOURCE_EXCLUDES}, "track_total_hits": False}


def knn_body(leg: KnnLeg) -> dict[str, Any]:
    """The search body for a k-NN leg; the filter sits inside the knn clause so lucene filters while searching.

    >>> knn_body(KnnLeg([0.1, 0.2], k=3, filters=Filters(in_stock=True)))["query"]["knn"]["embedding"]["filter"]
    {'bool': {'filter': [{'term': {'in_stock': True}}]}}
    """
    check_leg_size("k", leg.k)
    vector = [float(x) for x in leg.vector]
    if not vector or not all(math.isfinite(x) for x in vector):
        raise ValueError(f"vector must be a non-empty list of finite numbers; got {len(vector)} values")
    clause: dict[str, Any] = {"vector": vector, "k": leg.k}
    if leg.min_score:
        check_min_score(leg.min_score)
        # Radial search: every product at or above min_score, of which ``size`` (= k) come back, best first.
        clause = {"vector": vector, "min_score": float(leg.min_score)}
    flt = filter_query(leg.filters)
    if flt is not None:
        clause["filter"] = flt
    return {"size": leg.k, "query": {"knn": {VECTOR_FIELD: clause}}, "_source": {"excludes": SOURCE_EXCLUDES},
            "track_total_hits": False}


def leg_body(leg: BM25Leg | KnnLeg) -> dict[str, Any]:
    """The search body for either kind of leg."""
    if isinstance(leg, BM25Leg):
        return bm25_body(leg)
    if isinstance(leg, KnnLeg):
        return knn_body(leg)
    raise ValueError(f"legs must be BM25Leg or KnnLeg; got {type(leg).__name__}")


def match_clause(rule: MatchRule, filters: Filters) -> dict[str, Any]:
    """The bool query of ``rule``'s matching set under ``filters``: lexical OR radial k-NN (scores summed).

    >>> match_clause(MatchRule(), Filters())
    {'bool': {'filter': []}}
    """
    should: list[dict[str, Any]] = []
    lex = rule.lexical
    if lex is not None and lex.query.strip():
        should.append(lexical_query(lex))
    if rule.vector is not None:
        check_min_score(rule.min_score)
        knn = knn_body(KnnLeg(rule.vector, filters=filters, min_score=rule.min_score))["query"]
        should.append(knn)
    if rule.also and should:  # matched besides, scoring nothing
        should.append({"constant_score": {"filter": {"ids": {"values": list(rule.also)}}, "boost": 0.0}})
    must, must_not = filter_clauses(filters)
    bool_q: dict[str, Any] = {"filter": must}
    if must_not:
        bool_q["must_not"] = must_not
    if should:
        bool_q.update(should=should, minimum_should_match=1)
    elif lex is not None or rule.vector is not None:
        bool_q["must"] = [{"match_none": {}}]  # a blank query or one of stop words matches nothing
    return {"bool": bool_q}


def highlight_body(query: str) -> dict[str, Any]:
    """Highlight the whole title and description where ``query`` (fuzzy, best_fields) matches, HTML-escaped."""
    fields = dict.fromkeys(HIGHLIGHT_FIELDS, 1.0)
    return {"type": "unified", "encoder": "html", "pre_tags": ["<em>"], "post_tags": ["</em>"],
            "highlight_query": multi_match(query, fields), "require_field_match": False,
            "fields": {name: {"number_of_fragments": 0} for name in HIGHLIGHT_FIELDS}}


def match_bodies(rule: MatchRule, *, sort: str = "relevance", offset: int = 0, size: int = 0,
                 exclude: Sequence[str] = (), facets: Sequence[str] = (), facet_size: int = 10,
                 highlight: str | None = None, price_edges: Sequence[float] = PRICE_EDGES) -> list[dict[str, Any]]:
    """The searches for a slice of ``rule``'s matching set, its exact count and its disjunctive facets.

    The facet-owned filters (engine.FACETED) go in ``post_filter``, so each facet's aggregation applies every
    filter but its own while the hits and the total apply them all (:func:`facet_aggs`). One body answers
    everything, unless ``exclude`` must leave ids out of a non-empty slice but not out of the count: then the first
    body counts and facets and the second (``track_total_hits`` off) fetches the slice.

    Raises:
        ValueError: an unknown sort, a bad facet field, offset/size outside the result window, a bad min_score.

    >>> match_bodies(MatchRule(), sort="price_asc", size=2)[0]["sort"][0]
    {'price': {'order': 'asc', 'missing': '_last', 'unmapped_type': 'float'}}
    """
    check_match(sort, offset, size, facets, facet_size)
    check_price_edges(price_edges)
    rest, owned = split_faceted(rule.filters)
    post, _ = filter_clauses(owned)
    body: dict[str, Any] = {"size": size, "from": offset, "track_total_hits": True,
                            "query": match_clause(rule, rest),
                            "_source": {"excludes": SOURCE_EXCLUDES}}
    if post:
        body["post_filter"] = {"bool": {"filter": post}}
    if sort == "relevance":
        body["sort"] = [{"_score": "desc"}, {"id": "asc"}]
    else:
        name, order, kind = SORT_FIELDS[sort]
        body["sort"] = [{name: {"order": order, "missing": "_last", "unmapped_type": kind}}, {"id": "asc"}]
    if highlight and highlight.strip():
        body["highlight"] = highlight_body(highlight)
    aggs = {name: facet_aggs(name, owned, facet_size, price_edges) for name in dict.fromkeys(facets)}
    if not (exclude and size):
        return [{**body, "aggs": aggs} if aggs else body]
    counted = {**body, "size": 0, "from": 0, **({"aggs": aggs} if aggs else {})}
    for key in ("sort", "highlight", "_source"):
        counted.pop(key, None)
    sliced = {**body, "track_total_hits": False,
              "post_filter": {"bool": {"filter": post, "must_not": [{"ids": {"values": [str(i) for i in exclude]}}]}}}
    return [counted, sliced]


def regex_literal(text: str) -> str:
    """``text`` as a Lucene regular expression matching exactly it (every non-alphanumeric character escaped).

    >>> print(regex_literal("A > B.c"))
    A\\ \\>\\ B\\.c
    """
    return "".join(c if c.isalnum() else "\\" + c for c in text)


def facet_aggs(name: str, owned: Filters, facet_size: int, price_edges: Sequence[float]) -> dict[str, Any]:
    """The aggregation of facet ``name``: a filter (the facet-owned filters but its own) over its counting agg(s).

    Keyword facets: a ``terms`` agg ``values``. ``category_path``: one ``terms`` agg ``p<i>`` per parent of
    :func:`~.engine.path_parents`, keeping only its children (``include``: ``<parent> > [^>]*``, roots ``[^>]*``).
    ``price``/``rating``: a ``range`` agg over :func:`~.engine.range_buckets` (edges: :func:`range_edges`; a
    price bucket counts exactly the products its link ``price_min=from&price_max=to`` selects).

    >>> facet_aggs("rating", Filters(rating_min=4.0), 10, (25.0,))["filter"]
    {'bool': {'filter': []}}
    """
    kept, _ = filter_clauses(facet_filters(owned, name))
    sub: dict[str, Any]
    if name == "category_path":
        sub = {}
        for i, parent in enumerate(path_parents(owned.category_path)):
            include = "[^>]*" if parent is None else regex_literal(parent + PATH_SEPARATOR) + "[^>]*"
            sub[f"p{i}"] = {"terms": {"field": CATEGORY_PATHS, "size": facet_size, "include": include}}
    elif name in ("price", "rating"):
        ranges = [{"key": label, **range_edges(lo, hi, name == "price")}
                  for label, lo, hi in range_buckets(name, price_edges)]
        sub = {"values": {"range": {"field": name, "ranges": ranges}}}
    else:
        sub = {"values": {"terms": {"field": name, "size": facet_size}}}
    return {"filter": {"bool": {"filter": kept}}, "aggs": sub}


def _float32(x: float) -> float:
    """``x`` rounded to the nearest float32, as OpenSearch reads a bound of a ``float`` field (price, rating);
    past float32's range, ``x`` (no stored value reaches it)."""
    if not abs(x) < FLOAT32_MAX:
        return x
    return struct.unpack("<f", struct.pack("<f", x))[0]


def range_edges(lo: float, hi: float | None, upper_inclusive: bool = False) -> dict[str, float]:
    """A ``range`` agg bucket's ``from``/``to`` (OpenSearch: from <= value < to, compared as doubles) that counts
    the same stored values as the filter ``{"gte": lo, "lte": hi}`` (``upper_inclusive``) or ``lt: hi`` selects.

    The mapping's ``price`` and ``rating`` are ``float``: the filter rounds its bounds to float32 and compares
    float32 values, the agg compares those values as doubles with its bounds as given. So ``from`` is ``lo``
    rounded to float32 (a bucket from 19.99 would miss the 19.99 products a filter from 19.99 keeps) and an
    inclusive ``to`` the smallest double above ``hi`` rounded to float32 (the 25.0 products count in "0-25").

    >>> range_edges(25.0, 50.0, True)
    {'from': 25.0, 'to': 50.00000000000001}
    >>> range_edges(4.0, None)
    {'from': 4.0}
    """
    out = {"from": _float32(lo)}
    if hi is not None:
        out["to"] = math.nextafter(_float32(hi), math.inf) if upper_inclusive else _float32(hi)
    return out


def parse_facets(aggs: dict[str, Any], fields: Sequence[str],
                 price_edges: Sequence[float] = PRICE_EDGES) -> dict[str, list[tuple[str, int]]]:
    """``{field: [(value, count), ...]}`` from the aggregations of :func:`facet_aggs`: keyword facets count
    descending then value ascending; ``category_path`` parent by parent, each so ordered; range facets in bucket
    order without the empty buckets (an index without a facet's field gives it no values)."""
    out: dict[str, list[tuple[str, int]]] = {}
    for name in fields:
        agg = aggs.get(name, {})
        if name == "category_path":
            levels = sorted((k for k in agg if k.startswith("p") and k[1:].isdigit()), key=lambda k: int(k[1:]))
            pairs = []
            for key in levels:
                found = [(str(b["key"]), int(b["doc_count"])) for b in agg[key].get("buckets", [])]
                pairs += sorted(found, key=lambda p: (-p[1], p[0]))
            out[name] = pairs
            continue
        buckets = agg.get("values", {}).get("buckets", [])
        pairs = [(str(b["key"]), int(b["doc_count"])) for b in buckets]
        if name in ("price", "rating"):  # OpenSearch returns ranges by their start: put them in bucket order
            found = dict(pairs)
            out[name] = [(label, found[label]) for label, _, _ in range_buckets(name, price_edges)
                         if found.get(label, 0) > 0]
        else:
            out[name] = sorted(pairs, key=lambda p: (-p[1], p[0]))
    return out


def count_body(filters: Filters) -> dict[str, Any]:
    """The ``_count`` body for the products passing ``filters``."""
    return {"query": filter_query(filters) or {"match_all": {}}}
