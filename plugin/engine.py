"""The engine contract: what both the OpenSearch adapter and the embedded engine provide.

The writing half (indices, aliases, bulk) is ``shopsearch.indexer.sink.IndexSink``; this adds reads and search.
One contract test suite (tests/plugin/test_engine_contract.py) runs against both implementations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

from shopsearch.indexer.records import Product
from shopsearch.indexer.sink import IndexSink


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
    """One search result: product id, the leg's raw score and the stored product fields."""

    id: str
    score: float
    source: dict[str, Any] = field(default_factory=dict, compare=False)

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
    """A vector query: the k nearest products to ``vector`` among those passing the filters."""

    vector: Sequence[float]
    k: int = 100
    filters: Filters = Filters()


Leg = BM25Leg | KnnLeg


class Engine(IndexSink, Protocol):
    """Reads and search, on top of the writing half."""

    def get(self, index: str, id: str, with_vector: bool = False) -> dict[str, Any] | None:
        """The stored source of product ``id`` (with ``"vector"`` when asked), or None."""

    def search(self, index: str, legs: Sequence[Leg]) -> list[list[Hit]]:
        """Run every leg (in one round trip where the engine allows) and return one hit list per leg."""

    def facets(self, index: str, query: str | None, filters: Filters, fields: Sequence[str],
               size: int = 10) -> dict[str, list[tuple[str, int]]]:
        """Value counts of each facet field over the products matching ``query`` (lexically) and ``filters``."""

    def filtered_count(self, index: str, filters: Filters) -> int: ...

    def suggest(self, index: str, prefix: str, size: int = 8) -> list[str]:
        """Autocomplete: up to ``size`` distinct titles whose words start with every typed word."""

    def close(self) -> None: ...
