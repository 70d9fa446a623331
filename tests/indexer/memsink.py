"""An in-memory IndexSink for unit tests of the job (the real engines are tested end to end elsewhere)."""

from __future__ import annotations

from typing import Iterable, Iterator

from shopsearch.indexer.sink import Action, BulkItem, Delete, IndexDoc, IndexHealth, LockHolder


class MemorySink:
    """Indices are dicts id -> IndexDoc; ``reject`` holds ids whose writes fail (like a mapping error)."""

    def __init__(self, reject: set[str] | None = None):
        self.indices: dict[str, dict[str, IndexDoc]] = {}
        self.dims: dict[str, int] = {}
        self.aliases: dict[str, str] = {}
        self.bulk_mode: dict[str, bool] = {}
        self.reject = reject or set()
        self.health = IndexHealth("green", 1, True)
        self.locks: dict[str, LockHolder] = {}
        self.meta: dict[str, dict[str, str]] = {}

    def create_index(self, name: str, dims: int) -> None:
        if name in self.indices:
            raise ValueError(f"index {name} exists")
        self.indices[name], self.dims[name] = {}, dims

    def delete_index(self, name: str) -> None:
        self.indices.pop(name, None)
        self.aliases = {a: i for a, i in self.aliases.items() if i != name}

    def index_exists(self, name: str) -> bool:
        return name in self.indices or name in self.aliases

    def list_indices(self, prefix: str) -> list[str]:
        return sorted(n for n in self.indices if n.startswith(prefix))

    def resolve_alias(self, alias: str) -> str | None:
        return self.aliases.get(alias)

    def swap_alias(self, alias: str, index: str) -> None:
        self.aliases[alias] = index

    def _name(self, index: str) -> str:
        return self.aliases.get(index, index)

    def bulk(self, index: str, actions: Iterable[Action]) -> Iterator[BulkItem]:
        docs = self.indices[self._name(index)]
        for a in actions:
            if isinstance(a, Delete):
                ok = docs.pop(a.id, None) is not None
                yield BulkItem(a.id, ok, None if ok else "not_found")
            elif a.product.id in self.reject:
                yield BulkItem(a.product.id, False, "mapper_parsing_exception")
            else:
                if len(a.vector) != self.dims[self._name(index)]:
                    yield BulkItem(a.product.id, False, "dims mismatch")
                    continue
                docs[a.product.id] = a
                yield BulkItem(a.product.id, True)

    def refresh(self, index: str) -> None:
        pass

    def count(self, index: str) -> int:
        return len(self.indices[self._name(index)])

    def scan_hashes(self, index: str) -> Iterator[tuple[str, str]]:
        for pid, doc in self.indices[self._name(index)].items():
            yield pid, doc.content_hash

    def set_bulk_mode(self, index: str, on: bool) -> None:
        self.bulk_mode[index] = on

    def set_index_meta(self, index: str, meta: dict[str, str]) -> None:
        self.meta.setdefault(self._name(index), {}).update(meta)

    def index_meta(self, index: str) -> dict[str, str]:
        return dict(self.meta.get(self._name(index), {}))

    def wait_ready(self, index: str) -> IndexHealth:
        return self.health

    def create_lock(self, name: str, holder: LockHolder) -> LockHolder | None:
        if name in self.locks:
            return self.locks[name]
        self.locks[name] = holder
        return None

    def touch_lock(self, name: str, holder: LockHolder) -> bool:
        if name not in self.locks or self.locks[name].token != holder.token:
            return False
        self.locks[name] = holder
        return True

    def delete_lock(self, name: str, holder: LockHolder) -> bool:
        if name not in self.locks or self.locks[name].token != holder.token:
            return False
        del self.locks[name]
        return True

    def get(self, index: str, id: str, with_vector: bool = False):
        doc = self.indices[self._name(index)].get(id)
        return None if doc is None else doc.product.to_source()

    def close(self) -> None:
        pass
