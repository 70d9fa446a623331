"""Indexing locks in OpenSearch when the client resends a write whose answer was lost (plugin/opensearch_locks.py):
a conflict with this run's own lock is this run's lock, not another run's. The real cluster's locks are tested in
tests/indexer/test_catalog_safety.py; here a fake client applies each write, then applies its resend."""

from __future__ import annotations

from opensearchpy.exceptions import ConflictError, NotFoundError

from shopsearch.indexer.rebuild_lock import rebuild_lock
from shopsearch.indexer.sink import LockHolder
from shopsearch.plugin import opensearch_locks


class _Indices:
    def exists(self, index):
        return True


class ResendingClient:
    """One lock document; every write lands, and then, its answer lost, is sent once more (as the transport does)."""

    def __init__(self):
        self.indices, self.doc, self.seq, self.resend = _Indices(), None, 0, True

    def get(self, index, id):
        if self.doc is None:
            raise NotFoundError(404, "not_found", {})
        return {"_source": self.doc, "_seq_no": self.seq, "_primary_term": 1}

    def _index(self, body, op_type, if_seq_no):
        if (op_type == "create" and self.doc is not None) or (if_seq_no is not None and if_seq_no != self.seq):
            raise ConflictError(409, "version_conflict_engine_exception", {})
        self.doc, self.seq = dict(body), self.seq + 1

    def index(self, index, id, body, op_type=None, if_seq_no=None, if_primary_term=None, refresh=None):
        self._index(body, op_type, if_seq_no)
        if self.resend:
            self._index(body, op_type, if_seq_no)

    def delete(self, index, id, if_seq_no=None, if_primary_term=None, refresh=None):
        if self.doc is None or if_seq_no != self.seq:
            raise NotFoundError(404, "not_found", {}) if self.doc is None else ConflictError(409, "conflict", {})
        self.doc = None
        if self.resend:
            raise NotFoundError(404, "not_found", {})


class Sink:
    def __init__(self, client):
        self.client = client

    def create_lock(self, name, holder):
        return opensearch_locks.create_lock(self.client, name, holder)

    def touch_lock(self, name, holder):
        return opensearch_locks.touch_lock(self.client, name, holder)

    def delete_lock(self, name, holder):
        return opensearch_locks.delete_lock(self.client, name, holder)


def test_a_resent_lock_write_that_landed_is_this_runs_lock():
    client, now = ResendingClient(), [1000.0]
    with rebuild_lock(Sink(client), "products", stale_after_s=600, clock=lambda: now[0]) as lock:
        assert client.doc["token"] == lock.holder.token  # taken, though the resend of the create answered 409
        now[0] += 200  # past stale_after_s / 4: this chunk writes a heartbeat, whose resend conflicts too
        lock.heartbeat()
        assert client.doc["heartbeat"] == 1200.0
    assert client.doc is None  # released, though the resend of the delete found nothing


def test_another_runs_lock_still_refuses():
    client = ResendingClient()
    client.resend = False
    theirs = LockHolder("elsewhere", 7, 0.0, 0.0, "their-token")
    assert opensearch_locks.create_lock(client, "products", theirs) is None
    mine = LockHolder("here", 8, 0.0, 0.0, "my-token")
    assert opensearch_locks.create_lock(client, "products", mine).token == "their-token"
    assert not opensearch_locks.touch_lock(client, "products", mine)
    assert not opensearch_locks.delete_lock(client, "products", mine) and client.doc["token"] == "their-token"
