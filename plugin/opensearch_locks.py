"""Indexing locks in OpenSearch: one document per alias in a small index, created with ``op_type=create``.

``create`` is atomic on the cluster (the primary shard refuses a second document with the same id: 409), so two
runs on different machines cannot both take the lock. Heartbeats and releases are conditional on the document's
``_seq_no``/``_primary_term`` and the holder's token, so a run never overwrites or deletes a lock another run
took after breaking its own stale one.

The client resends a request whose answer was lost (a timeout, a node gone: connection.py), so a lock write may
land and then answer 409 to its own resend: a conflict is read back, and a lock carrying this run's token is this
run's.
"""

from __future__ import annotations

from typing import Any

from shopsearch.indexer.sink import LockHolder

LOCK_INDEX = "shopsearch-locks"
# Tiny, and on every node of a small cluster (a lock must survive the loss of a node).
LOCK_INDEX_BODY = {"settings": {"index": {"number_of_shards": 1, "auto_expand_replicas": "0-2"}},
                   "mappings": {"dynamic": "false", "properties": {"host": {"type": "keyword"},
                                                                   "pid": {"type": "long"},
                                                                   "started": {"type": "double"},
                                                                   "heartbeat": {"type": "double"},
                                                                   "token": {"type": "keyword"}}}}


def _ensure_index(client: Any) -> None:
    from opensearchpy.exceptions import RequestError

    if client.indices.exists(index=LOCK_INDEX):
        return
    try:
        client.indices.create(index=LOCK_INDEX, body=LOCK_INDEX_BODY)
    except RequestError as exc:
        if "resource_already_exists" not in str(exc.error):
            raise


def _current(client: Any, name: str) -> tuple[LockHolder, int, int] | None:
    from opensearchpy.exceptions import NotFoundError

    try:
        doc = client.get(index=LOCK_INDEX, id=name)
    except NotFoundError:
        return None
    return LockHolder.from_json(doc["_source"]), int(doc["_seq_no"]), int(doc["_primary_term"])


def create_lock(client: Any, name: str, holder: LockHolder) -> LockHolder | None:
    """Take lock ``name`` for ``holder``; None when taken, else the current holder."""
    from opensearchpy.exceptions import ConflictError

    _ensure_index(client)
    try:
        client.index(index=LOCK_INDEX, id=name, body=holder.to_json(), op_type="create", refresh="true")
        return None
    except ConflictError:
        found = _current(client, name)
        if found is not None and found[0].token == holder.token:  # our first attempt landed; its answer was lost
            return None
        # Released between the two calls: report a holder that is gone at once, so the caller retries.
        return found[0] if found else LockHolder("?", 0, 0.0, 0.0, "")


def touch_lock(client: Any, name: str, holder: LockHolder) -> bool:
    """Write ``holder`` (a newer heartbeat) if the lock still carries its token."""
    from opensearchpy.exceptions import ConflictError, NotFoundError

    found = _current(client, name) if client.indices.exists(index=LOCK_INDEX) else None
    if found is None or found[0].token != holder.token:
        return False
    try:
        client.index(index=LOCK_INDEX, id=name, body=holder.to_json(), if_seq_no=found[1],
                     if_primary_term=found[2], refresh="true")
    except (ConflictError, NotFoundError):
        again = _current(client, name)
        return again is not None and again[0].token == holder.token  # still ours: a resend of a write that landed
    return True


def delete_lock(client: Any, name: str, holder: LockHolder) -> bool:
    """Delete lock ``name`` if it still carries ``holder``'s token."""
    from opensearchpy.exceptions import ConflictError, NotFoundError

    found = _current(client, name) if client.indices.exists(index=LOCK_INDEX) else None
    if found is None or found[0].token != holder.token:
        return False
    try:
        client.delete(index=LOCK_INDEX, id=name, if_seq_no=found[1], if_primary_term=found[2], refresh="true")
    except NotFoundError:  # a resend of a delete that landed
        return True
    except ConflictError:
        return False
    return True
