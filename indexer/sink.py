"""What an indexing job writes into. Engines in shopsearch.plugin implement this; the indexer never imports them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator, Protocol, Sequence, Union

from .records import Product


@dataclass(frozen=True)
class IndexDoc:
    """A product ready to store: the product, its embedding and the hash that detects changes."""

    product: Product
    vector: Sequence[float]
    content_hash: str


@dataclass(frozen=True)
class Delete:
    """Remove a product by id."""

    id: str


Action = Union[IndexDoc, Delete]


@dataclass(frozen=True)
class BulkItem:
    """Outcome of one bulk action (like opensearch-py's ``streaming_bulk`` ``(ok, item)``)."""

    id: str
    ok: bool
    error: str | None = None


class IndexSink(Protocol):
    """The writing half of an engine: indices, aliases and bulk writes."""

    def create_index(self, name: str, dims: int) -> None:
        """Create an empty index from the project's mapping with ``dims``-dimensional vectors."""

    def delete_index(self, name: str) -> None:
        """Delete an index; no error if it does not exist."""

    def index_exists(self, name: str) -> bool: ...

    def list_indices(self, prefix: str) -> list[str]:
        """Concrete index names starting with ``prefix``, sorted."""

    def resolve_alias(self, alias: str) -> str | None:
        """The concrete index ``alias`` points to, or None when the alias does not exist."""

    def swap_alias(self, alias: str, index: str) -> None:
        """Point ``alias`` at ``index`` atomically (removing it from every other index)."""

    def bulk(self, index: str, actions: Iterable[Action]) -> Iterator[BulkItem]:
        """Write actions in chunks with retry/backoff; yield one BulkItem per action, in order."""

    def refresh(self, index: str) -> None:
        """Make every write so far visible to searches and counts."""

    def count(self, index: str) -> int: ...

    def scan_hashes(self, index: str) -> Iterator[tuple[str, str]]:
        """Yield ``(id, content_hash)`` for every stored product (order unspecified)."""

    def set_bulk_mode(self, index: str, on: bool) -> None:
        """Tune an index for bulk loading (no refresh, no replicas) or back to serving."""
