"""The engine contract: what both the OpenSearch adapter and the embedded engine provide.

The writing half (indices, aliases, bulk) is ``shopsearch.indexer.sink.IndexSink``; this adds reads and search.
One contract test suite (tests/plugin/test_engine_contract.py) runs against both implementations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any, Protocol, Sequence

from shopsearch.deadline import Deadline, DeadlineExceeded
from shopsearch.indexer.records import Product
from shopsearch.indexer.sink import IndexSink
from shopsearch.settings import Settings

from .documents import ATTR_PREFIX, FACET_FIELDS, PATH_SEPARATOR, attribute_facet, is_facet
from .text_analysis import SynonymMap
from .vocabulary import Vocabulary


class EngineUnavailable(RuntimeError):
    """The engine cannot be reached or timed out (the API answers 503)."""


class EngineBusy(EngineUnavailable):
    """The engine is saturated and rejected the request (OpenSearch 429, rejected execution): the API sheds the
    request at once (503 with Retry-After) instead of queueing it."""


class EngineRejected(ValueError):
    """The engine refused a request whose parameters passed every check here (OpenSearch's 4xx: a regex past
    ``index.max_regex_length``, too many clauses...). A ValueError, whose text is for operators and logs: the API
    answers without it, 400 where the caller's query or filters reached the engine, else 500 (api/errors.py)."""


class LegsCutShort(DeadlineExceeded):
    """The deadline passed between the legs of :meth:`Engine.search`: ``done`` holds the hit lists of the legs
    that ran, a prefix of the legs asked for (empty when none ran)."""

    def __init__(self, done: list[list["Hit"]]) -> None:
        super().__init__("search", f"the request's deadline passed after {len(done)} leg(s) of the search")
        self.done = done


class IndexNotFound(KeyError):
    """The named index or alias does not exist."""


@dataclass(frozen=True)
class Filters:
    """Filters applied inside every retrieval leg (never as a post-filter).

    ``brand``/``category`` match any of the given values (category matches any level of the path);
    ``category_path`` any of the given paths' subtrees (``"Home > Furniture"``: that path and every path under it);
    ``attributes``: ``((name, (value, ...)), ...)``, sorted by name: a product has one of the values of every
    named attribute (a facet attribute, stored as ``attr.<name>``).
    ``ids``: only these products (empty: any). ``required``: more filters that every hit and every facet count
    obeys; unlike the facet-owned filters (:data:`FACETED`) here they are never left out of a facet's count (a
    merchandising rule's filter, which the shopper cannot undo by picking another brand).
    """

    brand: tuple[str, ...] = ()
    category: tuple[str, ...] = ()
    category_path: tuple[str, ...] = ()
    attributes: tuple[tuple[str, tuple[str, ...]], ...] = ()
    price_min: float | None = None
    price_max: float | None = None
    in_stock: bool | None = None
    rating_min: float | None = None
    exclude_ids: tuple[str, ...] = ()
    ids: tuple[str, ...] = ()
    required: Filters | None = None

    def __post_init__(self) -> None:
        for entry in self.attributes:
            ok = isinstance(entry, tuple) and len(entry) == 2 and isinstance(entry[1], tuple)
            if not ok or attribute_facet(ATTR_PREFIX + str(entry[0])) is None or \
                    not all(isinstance(v, str) for v in entry[1]):
                raise ValueError(f"attributes has {entry!r}; each entry is (name, (value, ...)) with a name of "
                                 "letters, digits, '_' and '-'")

    def is_empty(self) -> bool:
        return self == Filters()


@dataclass(frozen=True)
class Hit:
    """One search result: product id, the leg's raw score and the stored product fields.

    ``highlights`` maps ``title``/``description`` to the field's text, HTML-escaped, with ``<em>``...``</em>``
    around the words the query matched (only fields with a match; only when highlighting was asked for).
    ``fields`` (BM25 legs asked for ``field_scores`` only) maps each of the leg's text fields to its own BM25 score
    of the product, before the field's boost (0.0: the field did not match); ``score`` is their best_fields
    combination.
    """

    id: str
    score: float
    source: dict[str, Any] = field(default_factory=dict, compare=False)
    highlights: dict[str, str] = field(default_factory=dict, compare=False)
    fields: dict[str, float] = field(default_factory=dict, compare=False)

    @property
    def product(self) -> Product:
        return Product.from_source(self.source)


@dataclass(frozen=True)
class BM25Leg:
    """A lexical query: multi-field BM25 with boosts and typo tolerance."""

    query: str
    fields: dict[str, float]  # field name -> boost, e.g. {"title": 3.0, "description": 1.0}
    size: int = 100
    fuzziness: str | None = "AUTO"  # None disables typo tolerance
    tie_breaker: float = 0.3  # best_fields: max field score + tie_breaker * the others
    filters: Filters = Filters()
    # Search-time synonyms (shopsearch.plugin.synonyms): both engines expand the query with them; None: none.
    synonyms: SynonymMap | None = field(default=None, compare=False)
    # Also return each field's own score (Hit.fields), for a learned ranker's features; on OpenSearch the leg
    # becomes a request of its own, sent beside the others (named clause scores are a _search option that
    # _msearch does not take), and the named clauses are scored again for the hits returned (bench/field_scores.py).
    field_scores: bool = False


@dataclass(frozen=True)
class KnnLeg:
    """A vector query: the k nearest products to ``vector`` among those passing the filters.

    ``min_score`` (radial search): only products whose score, lucene cosinesimil's ``(1 + cos) / 2``, is at least
    this; 0 keeps the plain k nearest however far they are.
    """

    vector: Sequence[float]
    k: int = 100
    filters: Filters = Filters()
    min_score: float = 0.0


Leg = BM25Leg | KnnLeg

# Orders of a matching set: relevance (the hybrid ranking), then field sorts; ties go by product id, ascending.
SORTS = ("relevance", "price_asc", "price_desc", "rating")
# Orders a shopper may expect that no index can serve, and why: refused by name rather than served in id order.
UNAVAILABLE_SORTS = {"newest": "products carry no listing date (the catalog schema and the index mapping have no "
                               "such field)"}
# The deepest result a matching set can be paged to, and the most a leg may fetch (OpenSearch's
# index.max_result_window and the lucene k-NN limit); both engines hold to it.
MATCH_WINDOW = 10_000


def check_leg_size(name: str, value: int) -> None:
    """Raise ValueError unless a leg's ``size`` or ``k`` is an integer in 1..MATCH_WINDOW."""
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MATCH_WINDOW:
        raise ValueError(f"{name}={value!r} must be an integer in 1..{MATCH_WINDOW}")
# Fields highlighted in a hit.
HIGHLIGHT_FIELDS = ("title", "description")
# Facet -> the filters it ignores when counted (disjunctive faceting: a shopper can pick a second brand); an
# attribute facet ``attr.<name>`` ignores that attribute's entry of ``Filters.attributes``.
FACET_FILTER = {"brand": ("brand",), "category_lvl0": ("category",), "category_lvl1": ("category",),
                "category_lvl2": ("category",), "category_path": ("category_path",),
                "price": ("price_min", "price_max"), "rating": ("rating_min",)}
# The facet-owned filters: hits obey them all, each facet's counts all but its own.
FACETED = ("brand", "category", "category_path", "price_min", "price_max", "rating_min", "attributes")
# Price facet buckets: [0, 25], [25, 50], ..., [250, +inf), labelled "0-25" ... "250+", each counting what its link
# (price_min=from&price_max=to, both inclusive) selects, so a product priced at an edge counts in both buckets that
# share it; rating facet: "4+" ... "1+" (a product counts in every threshold its rating reaches).
PRICE_EDGES: tuple[float, ...] = Settings.model_fields["facet_price_edges"].default  # settings' default
RATING_STEPS = (4.0, 3.0, 2.0, 1.0)


def split_faceted(filters: Filters) -> tuple[Filters, Filters]:
    """``(base, faceted)``: ``filters`` without the facet-owned ones, and only those (their AND is ``filters``).

    >>> base, owned = split_faceted(Filters(brand=("A",), in_stock=True))
    >>> base == Filters(in_stock=True), owned == Filters(brand=("A",))
    (True, True)
    """
    base = replace(filters, **{k: (None if k.endswith(("_min", "_max")) else ()) for k in FACETED})
    owned = Filters(**{k: getattr(filters, k) for k in FACETED})
    return base, owned


def facet_filters(owned: Filters, facet: str) -> Filters:
    """The facet-owned filters ``facet`` is counted under: ``owned`` without the facet's own.

    >>> facet_filters(Filters(brand=("A",), attributes=(("color", ("red",)),)), "attr.color") == Filters(brand=("A",))
    True
    """
    attr = attribute_facet(facet)
    if attr is not None:
        return replace(owned, attributes=tuple((n, v) for n, v in owned.attributes if n != attr))
    return replace(owned, **{k: (None if k.endswith(("_min", "_max")) else ()) for k in FACET_FILTER[facet]})


def range_buckets(facet: str, price_edges: Sequence[float] = PRICE_EDGES) -> list[tuple[str, float, float | None]]:
    """The buckets of a range facet: ``(label, from, to)`` (``to`` None: open). The engines count a price bucket
    with both edges inclusive, as its link's filter selects; a rating threshold from ``from`` up.

    >>> range_buckets("price", (25.0, 50.0))
    [('0-25', 0.0, 25.0), ('25-50', 25.0, 50.0), ('50+', 50.0, None)]
    >>> range_buckets("rating")[0]
    ('4+', 4.0, None)
    """
    if facet == "rating":
        return [(f"{s:g}+", s, None) for s in RATING_STEPS]
    edges = [0.0, *price_edges]
    return ([(f"{edge_label(lo)}-{edge_label(hi)}", lo, hi) for lo, hi in zip(edges, edges[1:])]
            + [(f"{edge_label(edges[-1])}+", edges[-1], None)])


def edge_label(x: float) -> str:
    """A facet edge as its bucket's label writes it: exactly (the storefront turns it back into the price filter),
    without an exponent or a trailing ".0".

    >>> edge_label(25.0), edge_label(19999.99), edge_label(1234567.0), edge_label(1e16)
    ('25', '19999.99', '1234567', '10000000000000000')
    """
    text = repr(float(x))
    if "e" in text:
        text = format(Decimal(text), "f")
    return text[:-2] if text.endswith(".0") else text


def check_price_edges(edges: Sequence[float]) -> None:
    """Raises ValueError unless ``edges`` are finite numbers > 0, strictly increasing (at least one, at most 20)."""
    ok = 1 <= len(edges) <= 20 and all(isinstance(e, (int, float)) and not isinstance(e, bool) and math.isfinite(e)
                                       and e > 0 for e in edges)
    if not ok or any(b <= a for a, b in zip(edges, edges[1:])):
        raise ValueError(f"price_edges={list(edges)!r} must be 1..20 finite numbers > 0, strictly increasing")


def path_parents(selected: Sequence[str]) -> list[str | None]:
    """Whose children the ``category_path`` facet lists: the roots (None), then every prefix of each selected path,
    shallowest first (a hierarchical menu: the roots, and each level down the chosen paths).

    >>> path_parents(["Home > Furniture"])
    [None, 'Home', 'Home > Furniture']
    """
    out: dict[str | None, None] = {None: None}
    for path in selected:
        parts = path.split(PATH_SEPARATOR)
        for i in range(len(parts)):
            out.setdefault(PATH_SEPARATOR.join(parts[:i + 1]))
    return sorted(out, key=lambda p: (0 if p is None else p.count(PATH_SEPARATOR) + 1, p or ""))


def is_child_path(path: str, parent: str | None) -> bool:
    """Whether ``path`` is one level under ``parent`` (None: a root). A level holding ``>`` never counts as one
    (OpenSearch selects children with the regular expression ``<parent> > [^>]*``; the embedded engine the same).

    >>> is_child_path("Home > Furniture", "Home"), is_child_path("Home > Furniture > Sofas", "Home")
    (True, False)
    """
    if parent is None:
        return ">" not in path
    head = parent + PATH_SEPARATOR
    return path.startswith(head) and ">" not in path[len(head):]


@dataclass(frozen=True)
class MatchRule:
    """Which products a query matches: those the lexical query matches, or whose vector score clears ``min_score``.

    ``lexical`` is a BM25 leg whose query, fields, fuzziness and tie_breaker decide the lexical match (its size and
    filters are not used); ``vector`` with ``min_score`` (on the ``(1 + cos) / 2`` scale, > 0) the vector match.
    Neither given: every product passing ``filters`` (browse). The relevance order of the set is the lexical score
    plus the vector score of the products that clear ``min_score`` (what OpenSearch's bool ``should`` sums).
    ``also``: ids matched besides, scoring nothing (a pinned product the query does not match), so the count and
    the facets are of the whole result set the shopper is shown.
    """

    lexical: BM25Leg | None = None
    vector: Sequence[float] | None = None
    min_score: float = 1.0
    filters: Filters = Filters()
    also: tuple[str, ...] = ()


def unavailable_sort(sort: str) -> str:
    """The error message refusing a sort of :data:`UNAVAILABLE_SORTS`.

    >>> unavailable_sort("newest")[:40]
    "sort='newest' is not available: products"
    """
    return f"sort={sort!r} is not available: {UNAVAILABLE_SORTS[sort]}; allowed: {', '.join(SORTS)}"


def check_sort(sort: str) -> None:
    """Check a requested sort against :data:`SORTS` (the one sort check of the engines and the searcher).

    Raises:
        ValueError: naming ``sort``: a sort of :data:`UNAVAILABLE_SORTS` with why it cannot be served
            (:func:`unavailable_sort`), or an unknown sort; both end with the allowed sorts.

    >>> check_sort("cheapest")
    Traceback (most recent call last):
    ...
    ValueError: sort='cheapest' is unknown; allowed: relevance, price_asc, price_desc, rating
    """
    if isinstance(sort, str) and sort in UNAVAILABLE_SORTS:
        raise ValueError(unavailable_sort(sort))
    if sort not in SORTS:
        raise ValueError(f"sort={sort!r} is unknown; allowed: {', '.join(SORTS)}")


def check_match(sort: str, offset: int, size: int, facets: Sequence[str], facet_size: int) -> None:
    """Check the arguments of :meth:`Engine.match` (both engines take the same).

    Raises:
        ValueError: an unknown sort or facet field, offset/size outside the 10,000-result window, a bad facet_size.

    >>> check_match("cheapest", 0, 10, (), 10)
    Traceback (most recent call last):
    ...
    ValueError: sort='cheapest' is unknown; allowed: relevance, price_asc, price_desc, rating
    """
    check_sort(sort)
    ints = all(isinstance(v, int) and not isinstance(v, bool) for v in (offset, size, facet_size))
    if not ints or offset < 0 or size < 0 or offset + size > MATCH_WINDOW:
        raise ValueError(f"offset={offset!r} and size={size!r} must be integers >= 0 with offset + size <= "
                         f"{MATCH_WINDOW}")
    if not 1 <= facet_size <= MATCH_WINDOW:
        raise ValueError(f"facet_size={facet_size!r} must be an integer in 1..{MATCH_WINDOW}")
    for name in facets:
        if not is_facet(name):
            raise ValueError(f"facets has {name!r}; facet fields are {', '.join(FACET_FIELDS)} and "
                             "attr.<attribute> (letters, digits, '_', '-')")


def check_min_score(value: float, *, allow_zero: bool = False) -> None:
    """Check a vector score threshold on lucene cosinesimil's ``(1 + cos) / 2`` scale (both engines take the same).

    Raises:
        ValueError: not a number in (0, 1], or [0, 1] with ``allow_zero`` (0: no threshold).

    >>> check_min_score(0.0)
    Traceback (most recent call last):
    ...
    ValueError: min_score=0.0 must be a number in (0, 1] (lucene cosinesimil's (1 + cos) / 2)
    """
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (0.0 <= value <= 1.0)
    if not ok or (value == 0.0 and not allow_zero):
        raise ValueError(f"min_score={value!r} must be a number in {'[0' if allow_zero else '(0'}, 1] "
                         "(lucene cosinesimil's (1 + cos) / 2)")


@dataclass(frozen=True)
class MatchPage:
    """A slice of a sorted matching set, its exact size and its disjunctive facet counts."""

    total: int
    hits: list[Hit]
    facets: dict[str, list[tuple[str, int]]] = field(default_factory=dict)


class Engine(IndexSink, Protocol):
    """Reads and search, on top of the writing half."""

    def get(self, index: str, id: str, with_vector: bool = False) -> dict[str, Any] | None:
        """The stored source of product ``id`` (with ``"vector"`` when asked), or None."""

    def search(self, index: str, legs: Sequence[Leg], *, with_source: bool = True,
               deadline: Deadline | None = None) -> list[list[Hit]]:
        """Run every leg (in one round trip where the engine allows) and return one hit list per leg.

        ``deadline``: OpenSearch gets the time left as the request's timeout (a timeout past the deadline raises
        DeadlineExceeded); the embedded engine checks it before each leg and raises :class:`LegsCutShort` with
        the legs that ran."""

    def match(self, index: str, rule: MatchRule, *, sort: str = "relevance", offset: int = 0, size: int = 0,
              exclude: Sequence[str] = (), facets: Sequence[str] = (), facet_size: int = 10,
              highlight: str | None = None, deadline: Deadline | None = None,
              price_edges: Sequence[float] = PRICE_EDGES) -> MatchPage:
        """The products matching ``rule``: their exact count, the slice ``offset:offset+size`` in ``sort`` order
        (ids in ``exclude`` left out of the slice, not of the count) and each facet's counts over the matching set
        with every filter but the facet's own (:data:`FACET_FILTER`); ``highlight``: the query to highlight.

        Facets: keyword facets (brand, category levels, ``attr.<name>``) list their top ``facet_size`` values,
        count descending then value ascending; ``category_path`` lists, for each parent of :func:`path_parents`,
        its top ``facet_size`` children so ordered; ``price`` (buckets between ``price_edges``) and ``rating``
        list their buckets of :func:`range_buckets` in order, empty ones left out. An index without a facet's
        field (built before it existed) gives it no values.
        Past the ``deadline``: DeadlineExceeded."""

    def sources(self, index: str, ids: Sequence[str], highlight: str | None = None,
                deadline: Deadline | None = None) -> dict[str, Hit]:
        """The stored products of ``ids`` as Hits (score 0), highlighted for the query ``highlight`` when given.
        Past the ``deadline``: DeadlineExceeded."""

    def filtered_count(self, index: str, filters: Filters) -> int: ...

    def suggest(self, index: str, prefix: str, size: int = 8) -> list[str]:
        """Autocomplete: up to ``size`` distinct titles whose words start with every typed word."""

    def vocabulary(self, index: str) -> Vocabulary:
        """The spelling vocabulary of ``index``'s current version (:mod:`.vocabulary`): built once per version and
        kept beside the index, so a call is cheap while the index is unchanged."""

    def close(self) -> None: ...
