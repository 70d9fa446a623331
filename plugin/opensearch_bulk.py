"""Bulk writes in layers, like opensearch-py's helpers: expand -> (chunk + send + retry 429s) -> ordered BulkItems.

``opensearch.helpers.streaming_bulk`` chunks by count and bytes and retries documents rejected with 429 with
exponential backoff, yielding retried documents after the rest of their chunk; :func:`ordered_bulk` restores the
caller's order so the n-th BulkItem always answers the n-th action.

Sources go to ``streaming_bulk`` already serialised (:func:`source_json`; the client passes strings through):
the vector is written as float32 with 9 significant digits, which round-trips exactly and is about half the
bytes and half the CPU of ``json.dumps`` on Python floats (on a 2-core box, serialising and gzipping vectors
was the largest cost of a bulk load after the encoder itself).
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from shopsearch.indexer.sink import Action, BulkItem, Delete, IndexDoc

from .documents import VECTOR_FIELD, to_engine_doc
from .engine import EngineUnavailable
from .opensearch_errors import error_reason


def expand_action(index: str, action: Action) -> dict[str, Any]:
    """One IndexDoc/Delete as an opensearch-py bulk action dict (``_op_type``, ``_index``, ``_id``, ``_source``).

    Raises:
        ValueError: ``action`` is neither an IndexDoc nor a Delete.

    >>> expand_action("products", Delete("42"))
    {'_op_type': 'delete', '_index': 'products', '_id': '42'}
    """
    if isinstance(action, IndexDoc):
        return {"_op_type": "index", "_index": index, "_id": str(action.product.id), "_source": to_engine_doc(action)}
    if isinstance(action, Delete):
        return {"_op_type": "delete", "_index": index, "_id": str(action.id)}
    raise ValueError(f"actions must hold IndexDoc or Delete; got {type(action).__name__}")


def local_rejection(action: Action) -> str | None:
    """Why ``action`` cannot be sent at all (a non-finite vector would make the whole request invalid JSON)."""
    if isinstance(action, IndexDoc) and not np.isfinite(np.asarray(action.vector, dtype=np.float32)).all():
        return "vector holds NaN or infinite values"
    return None


def vector_json(vector: Sequence[float] | np.ndarray) -> str:
    """A vector as a JSON array of float32 values with 9 significant digits (exact float32 round trip).

    >>> vector_json([0.5, -1.0, 1e-10])
    '[0.5,-1,1.00000001e-10]'
    """
    return "[" + ",".join(map("%.9g".__mod__, np.asarray(vector, dtype=np.float32).tolist())) + "]"


def source_json(doc: IndexDoc) -> str:
    """The stored source of ``doc`` (:func:`~.documents.to_engine_doc`) as a compact JSON string.

    >>> import json; from shopsearch.indexer.records import Product
    >>> json.loads(source_json(IndexDoc(Product(id="1", title="t"), [1.0, 0.0], "h")))["embedding"]
    [1, 0]
    """
    # to_engine_doc without the vector (it would turn it into a list of Python floats), then splice it in.
    src = to_engine_doc(IndexDoc(doc.product, (), doc.content_hash))
    src.pop(VECTOR_FIELD, None)
    head = json.dumps(src, ensure_ascii=False, separators=(",", ":"))
    return f'{head[:-1]},"{VECTOR_FIELD}":{vector_json(doc.vector)}}}' if src else \
        f'{{"{VECTOR_FIELD}":{vector_json(doc.vector)}}}'


def item_result(op_type: str, info: dict[str, Any], *, url: str) -> BulkItem:
    """A BulkItem from one failed streaming_bulk item; whole-request failures raise EngineUnavailable.

    A delete of an id that is not stored counts as success: the document is gone either way.
    """
    status = info.get("status")
    exc = info.get("exception")
    if exc is not None and (not isinstance(status, int) or status >= 500):
        # The whole chunk failed (connection lost, timeout, 5xx after the client's retries).
        raise EngineUnavailable(f"OpenSearch at {url} failed during bulk ({status}): {info.get('error')}")
    doc_id = str(info.get("_id", ""))
    if op_type == "delete" and status == 404 and info.get("result") == "not_found":
        return BulkItem(id=doc_id, ok=True)
    error = info.get("error")
    reason = error_reason(error) if error is not None else f"status {status}"
    return BulkItem(id=doc_id, ok=False, error=f"{status}: {reason}" if status else reason)


@dataclass
class _Slot:
    """One action awaiting its result, in input order."""

    key: tuple[str, str]
    result: BulkItem | None = None


def ordered_bulk(index: str, actions: Iterable[Action], send: Callable[[Iterable[dict[str, Any]]], Iterator[Any]],
                 *, url: str) -> Iterator[BulkItem]:
    """Yield one BulkItem per action, in input order, from ``send`` (streaming_bulk with the client bound).

    ``send`` yields ``(ok, {op_type: item})`` pairs in any order; they are matched back to actions by
    (op_type, _id), first come first served.
    """
    pending: deque[_Slot] = deque()
    waiting: dict[tuple[str, str], deque[_Slot]] = {}

    def feed() -> Iterator[dict[str, Any]]:
        for action in actions:
            reason = local_rejection(action)
            if reason is not None:
                doc_id = action.product.id if isinstance(action, IndexDoc) else action.id
                pending.append(_Slot(("", ""), BulkItem(id=str(doc_id), ok=False, error=reason)))
                continue
            if isinstance(action, IndexDoc):
                body = {"_op_type": "index", "_index": index, "_id": str(action.product.id),
                        "_source": source_json(action)}
            else:
                body = expand_action(index, action)
            slot = _Slot((body["_op_type"], body["_id"]))
            pending.append(slot)
            waiting.setdefault(slot.key, deque()).append(slot)
            yield body

    def drain() -> Iterator[BulkItem]:
        while pending and pending[0].result is not None:
            yield pending.popleft().result  # type: ignore[misc]

    for ok, item in send(feed()):
        op_type, info = next(iter(item.items()))
        key = (op_type, str(info.get("_id", "")))
        queue = waiting.get(key)
        if not queue:
            raise RuntimeError(f"bulk returned a result for {key} that matches no action sent")
        slot = queue.popleft()
        if not queue:
            del waiting[key]
        slot.result = BulkItem(id=key[1], ok=True) if ok else item_result(op_type, info, url=url)
        yield from drain()
    yield from drain()
    if pending:
        # Locally rejected actions at the very end have results; anything else means a lost response.
        missing = [s.key[1] for s in pending if s.result is None]
        raise RuntimeError(f"bulk finished without results for ids {missing[:5]}")
