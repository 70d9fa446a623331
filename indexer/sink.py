"""What an indexing job writes into. Engines in shopsearch.plugin implement this; the indexer never imports them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Protocol, Sequence, Union

from .records import Product


# The index meta key (:meth:`IndexSink.set_index_meta`) listing the index's facet attributes, comma-separated.
FACET_ATTRIBUTES_META = "facet_attributes"


@dataclass(frozen=True)
class IndexDoc:
    """A product ready to store: the product, its embedding and the hash that detects changes.

    ``facet_attributes``: the attributes the field mapping declares facetable (``facet_attributes``); the engine
    stores them as aggregatable keyword fields beside the product.
    """

    product: Product
    vector: Sequence[float]
    content_hash: str
    facet_attributes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Delete:
    """Remove a product by id."""

    id: str


Action = Union[IndexDoc, Delete]


@dataclass(frozen=True)
class IndexHealth:
    """Whether an index may take traffic: ``status`` (green/yellow/red), the data nodes seen and why it may.

    ``ready`` is True when green, or yellow on a one-node cluster (no other node to hold the replicas; ``note``
    says so); the job moves an alias only onto a ready index.
    """

    status: str
    nodes: int
    ready: bool
    note: str = ""


@dataclass(frozen=True)
class LockHolder:
    """Who holds an alias's rebuild lock: host and pid, when it started, its last heartbeat (UNIX seconds) and
    a random token that tells this holding apart from a later one by the same process."""

    host: str
    pid: int
    started: float
    heartbeat: float
    token: str

    def to_json(self) -> dict[str, Any]:
        return {"host": self.host, "pid": self.pid, "started": self.started, "heartbeat": self.heartbeat,
                "token": self.token}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "LockHolder":
        return cls(host=str(data.get("host", "?")), pid=int(data.get("pid", 0)),
                   started=float(data.get("started", 0.0)), heartbeat=float(data.get("heartbeat", 0.0)),
                   token=str(data.get("token", "")))


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

    def set_index_meta(self, index: str, meta: dict[str, str]) -> None:
        """Record ``meta`` on ``index`` (merged over what it holds): which encoder embedded its vectors."""

    def index_meta(self, index: str) -> dict[str, str]:
        """What :meth:`set_index_meta` recorded on ``index`` (an index or alias); {} when nothing was."""

    def wait_ready(self, index: str) -> IndexHealth:
        """Wait (up to the engine's configured timeout) until ``index`` is green; its health then or at timeout."""

    def create_lock(self, name: str, holder: LockHolder) -> LockHolder | None:
        """Record ``holder`` as lock ``name`` unless it exists (atomically); None when taken, else the holder
        that has it."""

    def touch_lock(self, name: str, holder: LockHolder) -> bool:
        """Store ``holder`` (a newer heartbeat) if the lock still has its token; False when it lost the lock."""

    def delete_lock(self, name: str, holder: LockHolder) -> bool:
        """Remove lock ``name`` if it still has ``holder``'s token; False when another holder has it (or none)."""
