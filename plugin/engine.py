"""The engine contract: what both the OpenSearch adapter and the embedded engine provide.

The writing half (indices, aliases, bulk) is ``shopsearch.indexer.sink.IndexSink``; this adds reads and search.
One contract test suite (tests/plugin/test_engine_contract.py) runs against both implementations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

from shopsearch.indexer.records import Product
from shopsearch.indexer.sink import IndexSink

from .documents import FACET_FIELDS


class EngineUnavailable(RuntimeError):
    """The engine cannot be reached or timed out (the API answers 503)."""


class IndexNotFound(KeyError):
    """The named index or alias does not exist."""


@dataclass(frozen=True)
class Filters:
    """Filters applied inside every retrieval leg (never as a post-filter).

    ``brand``/``category`` match any of the given values (category matches any level of the path).
    """

    brand: tuple[str, ...] = ()
    category: tuple[str, ...] = ()
    price_min: float | None = None
    price_max: float | None = None
    in_stock: bool | None = None
    rating_min: float | None = None
    exclude_ids: tuple[str, ...] = ()

    def is_empty(self) -> bool:
        return self == Filters()


@dataclass(frozen=True)
class Hit:
    """One search result: product id, the leg's raw score and the stored product fields.

    ``highlights`` maps ``title``/``description`` to the field's text, HTML-escaped, with ``<em>``...``</em>``
    around the words the query matched (only fields with a match; only when highlighting was asked for).
    """

    id: str
    score: float
    source: dict[str, Any] = field(default_factory=dict, compare=False)
    highlights: dict[str, str] = field(default_factory=dict, compare=False)

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
SORTS = ("relevance", "price_asc", "price_desc", "rating", "newest")
# The date field ``newest`` sorts on (descending; products without it come last).
NEWEST_FIELD = "listed_at"
# The deepest result a matching set can be paged to (OpenSearch's index.max_result_window).
MATCH_WINDOW = 10_000
# Fields highlighted in a hit.
HIGHLIGHT_FIELDS = ("title", "description")
# Facet field -> the filter it ignores when counted (disjunctive faceting: a shopper can pick a second brand).
FACET_FILTER = {"brand": "brand", "category_lvl0": "category", "category_lvl1": "category",
                "category_lvl2": "category"}


@dataclass(frozen=True)
class MatchRule:
    """Which products a query matches: those the lexical query matches, or whose vector score clears ``min_score``.

    ``lexical`` is a BM25 leg whose query, fields, fuzziness and tie_breaker decide the lexical match (its size and
    filters are not used); ``vector`` with ``min_score`` (on the ``(1 + cos) / 2`` scale, > 0) the vector match.
    Neither given: every product passing ``filters`` (browse). The relevance order of the set is the lexical score
    plus the vector score of the products that clear ``min_score`` (what OpenSearch's bool ``should`` sums).
    """

    lexical: BM25Leg | None = None
    vector: Sequence[float] | None = None
    min_score: float = 1.0
    filters: Filters = Filters()


def check_match(sort: str, offset: int, size: int, facets: Sequence[str], facet_size: int) -> None:
    """Check the arguments of :meth:`Engine.match` (both engines take the same).

    Raises:
        ValueError: an unknown sort or facet field, offset/size outside the 10,000-result window, a bad facet_size.

    >>> check_match("cheapest", 0, 10, (), 10)
    Traceback (most recent call last):
    ...
    ValueError: sort='cheapest'; allowed: relevance, price_asc, price_desc, rating, newest
    """
    if sort not in SORTS:
        raise ValueError(f"sort={sort!r}; allowed: {', '.join(SORTS)}")
    ints = all(isinstance(v, int) and not isinstance(v, bool) for v in (offset, size, facet_size))
    if not ints or offset < 0 or size < 0 or offset + size > MATCH_WINDOW:
        raise ValueError(f"offset={offset!r} and size={size!r} must be integers >= 0 with offset + size <= "
                         f"{MATCH_WINDOW}")
    if not 1 <= facet_size <= MATCH_WINDOW:
        raise ValueError(f"facet_size={facet_size!r} must be an integer in 1..{MATCH_WINDOW}")
    for name in facets:
        if name not in FACET_FIELDS:
            raise ValueError(f"facets has {name!r}; facet fields are {', '.join(FACET_FIELDS)}")


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

    def search(self, index: str, legs: Sequence[Leg]) -> list[list[Hit]]:
        """Run every leg (in one round trip where the engine allows) and return one hit list per leg."""

    def match(self, index: str, rule: MatchRule, *, sort: str = "relevance", offset: int = 0, size: int = 0,
              exclude: Sequence[str] = (), facets: Sequence[str] = (), facet_size: int = 10,
              highlight: str | None = None) -> MatchPage:
        """The products matching ``rule``: their exact count, the slice ``offset:offset+size`` in ``sort`` order
        (ids in ``exclude`` left out of the slice, not of the count) and each facet's counts over the matching set
        with every filter but the facet's own (:data:`FACET_FILTER`); ``highlight``: the query to highlight."""

    def sources(self, index: str, ids: Sequence[str], highlight: str | None = None) -> dict[str, Hit]:
        """The stored products of ``ids`` as Hits (score 0), highlighted for the query ``highlight`` when given."""

    def filtered_count(self, index: str, filters: Filters) -> int: ...

    def suggest(self, index: str, prefix: str, size: int = 8) -> list[str]:
        """Autocomplete: up to ``size`` distinct titles whose words start with every typed word."""

    def close(self) -> None: ...
