"""Bulk writes in layers, like opensearch-py's helpers: expand -> (chunk + send) -> retry -> ordered BulkItems.

``opensearch.helpers.streaming_bulk`` chunks by count and bytes and sends; :func:`ordered_bulk` retries what may
succeed later and restores the caller's order, so the n-th BulkItem always answers the n-th action:

- Retried, with exponential backoff and jitter (:class:`RetryPolicy`, bounded attempts): documents rejected with
  429 (the cluster's write queue is full) or a 5xx, and whole chunks lost to a timeout, a dropped connection or a
  5xx. Only the documents that failed are sent again.
- Not retried: a document the cluster refuses for what it is (400 mapping errors, a wrong vector dimension...):
  it comes back ``ok=False`` with the reason and the job quarantines it.
- Still failing after the last retry: :class:`~.engine.EngineUnavailable`, naming what failed. Every BulkItem
  yielded before it was acknowledged by the cluster (the job's counts stay exact); the run stops and can be run
  again: the vector cache keeps the embeddings, a full rebuild drops its unfinished version and starts over, an
  incremental run writes only what the index does not hold yet.

Sources go to ``streaming_bulk`` already serialised (:func:`source_json`; the client passes strings through):
the vector is written as float32 with 9 significant digits, which round-trips exactly and is about half the
bytes and half the CPU of ``json.dumps`` on Python floats (on a 2-core box, serialising and gzipping vectors
was the largest cost of a bulk load after the encoder itself).
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from shopsearch.indexer.sink import Action, BulkItem, Delete, IndexDoc

from .documents import VECTOR_FIELD, to_engine_doc
from .engine import EngineUnavailable
from .opensearch_errors import error_reason

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long :func:`ordered_bulk` retries: ``max_retries`` rounds after the first send, waiting
    ``initial_backoff`` seconds doubled each round (at most ``max_backoff``), half of it jittered.

    >>> RetryPolicy(initial_backoff=1.0).wait_s(3, random.Random(0)) <= 4.0
    True
    """

    max_retries: int = 5
    initial_backoff: float = 0.5
    max_backoff: float = 60.0

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError(f"max_retries={self.max_retries!r} must be >= 0")
        if self.initial_backoff < 0 or self.max_backoff < 0:
            raise ValueError(f"initial_backoff={self.initial_backoff!r} and max_backoff={self.max_backoff!r} must "
                             "be >= 0 seconds")

    def wait_s(self, attempt: int, rng: random.Random) -> float:
        """Seconds before retry ``attempt`` (1-based): half the capped exponential step, plus up to the other half
        at random, so writers that failed together do not all come back together."""
        step = min(self.max_backoff, self.initial_backoff * 2 ** (attempt - 1))
        return step / 2 + rng.uniform(0, step / 2)


def retryable(info: dict[str, Any]) -> bool:
    """Whether a failed bulk item may succeed if sent again: 429, a 5xx, or no status at all (the request was lost
    to a timeout or a connection error).

    >>> retryable({"status": 429}), retryable({"status": "N/A"}), retryable({"status": 400})
    (True, True, False)
    """
    status = info.get("status")
    return not isinstance(status, int) or status == 429 or status >= 500


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
    src = to_engine_doc(IndexDoc(doc.product, (), doc.content_hash, doc.facet_attributes))
    src.pop(VECTOR_FIELD, None)
    head = json.dumps(src, ensure_ascii=False, separators=(",", ":"))
    return f'{head[:-1]},"{VECTOR_FIELD}":{vector_json(doc.vector)}}}' if src else \
        f'{{"{VECTOR_FIELD}":{vector_json(doc.vector)}}}'


def item_result(op_type: str, info: dict[str, Any]) -> BulkItem:
    """A BulkItem from one failed streaming_bulk item that is not retried (:func:`retryable`).

    A delete of an id that is not stored counts as success: the document is gone either way.
    """
    status = info.get("status")
    doc_id = str(info.get("_id", ""))
    if op_type == "delete" and status == 404 and info.get("result") == "not_found":
        return BulkItem(id=doc_id, ok=True)
    reason = _reason(info)
    return BulkItem(id=doc_id, ok=False, error=f"{status}: {reason}" if status else reason)


def _reason(info: dict[str, Any]) -> str:
    """A failed item's reason, from its error body (or its status)."""
    error = info.get("error")
    return error_reason(error) if error is not None else f"status {info.get('status')}"


@dataclass
class _Slot:
    """One action awaiting its result, in input order (with its body while it may have to be sent again)."""

    key: tuple[str, str]
    result: BulkItem | None = None
    body: dict[str, Any] = field(default_factory=dict)
    seq: int = 0  # position in the input: retries go in input order
    last_error: str = ""


def ordered_bulk(index: str, actions: Iterable[Action], send: Callable[[Iterable[dict[str, Any]]], Iterator[Any]],
                 *, url: str, policy: RetryPolicy = RetryPolicy(), sleep: Callable[[float], None] = time.sleep,
                 rng: random.Random | None = None) -> Iterator[BulkItem]:
    """Yield one BulkItem per action, in input order, from ``send`` (streaming_bulk with the client bound, no
    retries of its own), retrying what :func:`retryable` says may succeed later.

    ``send`` yields ``(ok, {op_type: item})`` pairs in any order; they are matched back to actions by
    (op_type, _id), first come first served. After the first pass the retryable failures are sent again, up to
    ``policy.max_retries`` rounds, after ``policy.wait_s`` seconds each (``sleep`` and ``rng`` are a test's hooks).

    Raises:
        EngineUnavailable: documents still failing with a retryable error after the last round (the message
            names how many and the last error); the BulkItems yielded before were all acknowledged.
        RuntimeError: ``send`` answered for an action it was not sent.

    >>> items = ordered_bulk("products", [Delete("1")], lambda bodies: ((True, {"delete": {"_id": b["_id"]}})
    ...                                                                 for b in bodies), url="http://node:9200")
    >>> [i.ok for i in items]
    [True]
    """
    rng = rng if rng is not None else random.Random()
    pending: deque[_Slot] = deque()
    waiting: dict[tuple[str, str], deque[_Slot]] = {}
    again: list[_Slot] = []

    def feed() -> Iterator[dict[str, Any]]:
        for seq, action in enumerate(actions):
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
            slot = _Slot((body["_op_type"], body["_id"]), body=body, seq=seq)
            pending.append(slot)
            waiting.setdefault(slot.key, deque()).append(slot)
            yield body

    def resend(slots: list[_Slot]) -> Iterator[dict[str, Any]]:
        for slot in slots:
            waiting.setdefault(slot.key, deque()).append(slot)
            yield slot.body

    def drain() -> Iterator[BulkItem]:
        while pending and pending[0].result is not None:
            yield pending.popleft().result  # type: ignore[misc]

    def collect(results: Iterator[Any]) -> Iterator[BulkItem]:
        for ok, item in results:
            op_type, info = next(iter(item.items()))
            key = (op_type, str(info.get("_id", "")))
            queue = waiting.get(key)
            if not queue:
                raise RuntimeError(f"bulk returned a result for {key} that matches no action sent")
            slot = queue.popleft()
            if not queue:
                del waiting[key]
            if ok:
                slot.result = BulkItem(id=key[1], ok=True)
            elif retryable(info):
                slot.last_error = f"{info.get('status')}: {_reason(info)}"
                again.append(slot)
            else:
                slot.result = item_result(op_type, info)
            if slot.result is not None:
                slot.body = {}  # done: its source need not be kept for a retry
            yield from drain()

    yield from collect(send(feed()))
    for attempt in range(1, policy.max_retries + 1):
        if not again:
            break
        wait = policy.wait_s(attempt, rng)
        log.warning("bulk into %s: %d documents failed (e.g. %s); retry %d of %d in %.1f s", index, len(again),
                    again[0].last_error, attempt, policy.max_retries, wait)
        sleep(wait)
        slots, again[:] = sorted(again, key=lambda slot: slot.seq), []
        yield from collect(send(resend(slots)))
    if again:
        raise EngineUnavailable(
            f"OpenSearch at {url} failed during bulk into {index!r}: {len(again)} documents still failing after "
            f"{policy.max_retries} retries (last error {again[0].last_error}); the documents reported before were "
            "stored. Rerun to resume: the vector cache keeps the embeddings and an incremental run writes only what "
            "the index does not hold yet")
    yield from drain()
    if pending:
        # Locally rejected actions at the very end have results; anything else means a lost response.
        missing = [s.key[1] for s in pending if s.result is None]
        raise RuntimeError(f"bulk finished without results for ids {missing[:5]}")
