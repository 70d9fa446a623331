"""plugin/ubi_store.py and plugin/ubi_spool.py: UBI records through the spool into both stores."""

from __future__ import annotations

import fcntl
import json
import os
import time
import uuid

import pytest

from shopsearch.events import event_from_dict
from shopsearch.plugin.engine import EngineUnavailable
from shopsearch.plugin.ubi_spool import SpoolDrainer, SpoolFull, UbiSpool
from shopsearch.plugin.ubi_store import JsonlUbiStore, OpenSearchUbiStore, open_ubi_store, record_json
from shopsearch.settings import load_settings
from shopsearch.ubi import UbiQuery, to_ubi_event
from tests.ubi_schemas import ubi_errors


def query(n: int, second: int = 0) -> UbiQuery:
    return UbiQuery(query_id=f"q{n}", client_id="c1", user_query=f"lamp {n}", query_response_id=f"r{n}",
                    query_response_hit_ids=["p1", "p.2"], timestamp=f"2024-01-01T00:00:{second:02d}Z",
                    query_attributes={"profile": "default", "page": 1, "filters": {"brand": ["Lumo"]},
                                      "features": {"p1": {"bm25": 1.5, "fused": 0.03}, "p.2": {"knn": 0.25}}})


def event(n: int, second: int = 0, kind: str = "click"):
    position = {"position": 1 + n % 3, "query_id": f"q{n}"} if kind == "click" else {}
    return to_ubi_event(event_from_dict({"type": kind, "product_id": f"p{n}", "session_id": "s1",
                                         "timestamp": f"2024-01-01T00:00:{second:02d}.5Z", "event_id": f"e{n}",
                                         **position}))


@pytest.fixture(params=["embedded", "opensearch"])
def store(request, tmp_path):
    """Each engine's store: JSONL files, or the two indices (under a unique prefix) on the real node."""
    if request.param == "embedded":
        yield open_ubi_store(load_settings({"engine": "embedded", "home": str(tmp_path)}, environ={}))
        return
    url = request.getfixturevalue("opensearch_url")
    from shopsearch.plugin.connection import make_client

    s = OpenSearchUbiStore(make_client(url, timeout=30), url, prefix=f"test-{uuid.uuid4().hex[:8]}-")
    yield s
    s.delete()


def test_open_ubi_store_follows_the_engine(tmp_path):
    assert isinstance(open_ubi_store(load_settings({"home": str(tmp_path)}, environ={})), JsonlUbiStore)
    os_store = open_ubi_store(load_settings({"engine": "opensearch"}, environ={}))
    assert isinstance(os_store, OpenSearchUbiStore) and os_store.indices["queries"] == "ubi_queries"
    assert os_store.client.transport.max_retries == 0  # one node: the drainer's backoff is the retry


def test_the_drainers_store_moves_a_refused_write_on_to_the_next_node_and_readers_do_not():
    """A node killed under a cluster refuses the bulk write: the next node takes it at once, rather than the
    drainer waiting its backoff (a timeout stays the drainer's to retry). A reader's scroll page sent again
    elsewhere could skip a page, so readers keep a client without retries."""
    urls = "http://127.0.0.1:9231,http://127.0.0.1:9232,http://127.0.0.1:9233"
    settings = load_settings({"engine": "opensearch", "opensearch_url": urls}, environ={})
    writer = open_ubi_store(settings, writer=True).client.transport
    assert (writer.max_retries, writer.retry_on_timeout) == (2, False)
    assert open_ubi_store(settings).client.transport.max_retries == 0


def test_store_round_trip_oldest_first_and_idempotent(store):
    queries, events = [query(2, 7), query(1, 3)], [event(1, 4), event(2, 2, "purchase")]
    store.write(queries, events)
    store.write(queries[:1], events[:1])  # a batch drained twice (crash between store write and spool delete)
    assert list(store.iter_queries()) == [queries[1], queries[0]]
    assert list(store.iter_events()) == [events[1], events[0]]
    assert all(ubi_errors("query", q) == [] for q in store.iter_queries())
    assert all(ubi_errors("event", e) == [] for e in store.iter_events())


def test_spool_drains_into_the_store_in_order(store, tmp_path):
    spool = UbiSpool(tmp_path / "spool", max_bytes=1 << 20)
    spool.append([query(1)], [event(1, 1)])
    spool.append([], [event(2, 2), event(3, 3)])
    assert spool.size() > 0 and len(spool.segments()) == 1
    assert spool.drain(store, batch=2) == (4, 1, 0)
    assert spool.segments() == [] and spool.size() == 0
    assert [q.query_id for q in store.iter_queries()] == ["q1"]
    assert [e.event_id for e in store.iter_events()] == ["e1", "e2", "e3"]


def test_a_full_spool_writes_nothing(tmp_path):
    spool = UbiSpool(tmp_path / "spool", max_bytes=600)
    spool.append([], [event(1)])
    before = spool.size()
    with pytest.raises(SpoolFull):
        spool.append([], [event(2), event(3), event(4)])
    assert spool.size() == before
    store = JsonlUbiStore(tmp_path / "ubi")
    spool.drain(store)
    assert [e.event_id for e in store.iter_events()] == ["e1"]
    spool.append([], [event(2), event(3)])  # room again once drained


def test_appends_list_the_spool_at_most_once_a_second(tmp_path, monkeypatch):
    # A store outage leaves segments behind; a /search must not list them all each time.
    spool = UbiSpool(tmp_path / "spool", max_bytes=1 << 30)
    for n in range(300):  # segments other processes closed and cannot drain yet
        (tmp_path / "spool").mkdir(exist_ok=True)
        (tmp_path / "spool" / f"{n:020d}-1-other.jsonl").write_text(f'{{"event":{{"n":{n}}}}}\n')
    listings = []
    real = UbiSpool.size
    monkeypatch.setattr(UbiSpool, "size", lambda self: listings.append(1) or real(self))
    start = time.monotonic()
    for n in range(200):
        spool.append([query(n)], [])
    assert len(listings) <= 2 + (time.monotonic() - start) / 1.0  # SIZE_TTL_S


def test_another_process_draining_makes_room_within_a_second(tmp_path, monkeypatch):
    clock = [100.0]
    monkeypatch.setattr("shopsearch.plugin.ubi_spool.time.monotonic", lambda: clock[0])
    mine, theirs = UbiSpool(tmp_path / "spool", 600), UbiSpool(tmp_path / "spool", 600)
    theirs.append([], [event(1), event(2)])
    theirs.rotate()
    with pytest.raises(SpoolFull):
        mine.append([], [event(3), event(4)])
    theirs.drain(JsonlUbiStore(tmp_path / "ubi"))
    with pytest.raises(SpoolFull):  # this process listed the spool less than a second ago
        mine.append([], [event(3), event(4)])
    clock[0] += 1.0
    mine.append([], [event(3), event(4)])
    mine.close()
    assert mine.size() > 0


def test_the_bound_counts_this_process_appends_between_listings(tmp_path, monkeypatch):
    monkeypatch.setattr("shopsearch.plugin.ubi_spool.time.monotonic", lambda: 5.0)  # one listing only
    spool = UbiSpool(tmp_path / "spool", max_bytes=900)
    with pytest.raises(SpoolFull):
        for n in range(10):
            spool.append([], [event(n)])
    assert 0 < spool.size() <= 900


def test_processes_sharing_a_spool_pass_its_bound_by_a_64th_each_at_most(tmp_path, monkeypatch):
    monkeypatch.setattr("shopsearch.plugin.ubi_spool.time.monotonic", lambda: 5.0)  # never listed again by time
    bound = 64_000
    workers = [UbiSpool(tmp_path / "spool", bound) for _ in range(4)]
    open_workers, n = list(workers), 0
    while open_workers:
        for spool in list(open_workers):
            try:
                spool.append([], [event(n)])
                n += 1
            except SpoolFull:
                open_workers.remove(spool)
    batch = len(f'{{"event":{record_json(event(n))}}}\n')
    assert bound < workers[0].size() <= bound + 4 * (bound // 64 + batch)


def test_records_an_older_version_stored_are_read_with_what_can_be_read(tmp_path):
    # Before extras were typed, a price "12.99" or an xy beside the ordinal was stored as sent (and OpenSearch coerces
    # numeric strings): reading keeps each record, coerced where it can be, without the value where it cannot.
    old = [{"action_name": "purchase", "session_id": "s1", "timestamp": "2024-01-01T00:00:01Z",
            "event_attributes": {"event_id": "a", "price": "12.99", "simulated": "false",
                                 "object": {"object_id": "p1"}, "position": {"ordinal": {"index": 0}}}},
           {"action_name": "click", "session_id": "s1", "timestamp": "2024-01-01T00:00:02Z",
            "event_attributes": {"event_id": "b", "price": "cheap", "object": {"object_id": "p1", "internal_id": {}},
                                 "position": {"ordinal": {"index": 2}, "xy": {"x": 1, "y": 2}}}},
           {"action_name": "hover", "session_id": "s1", "timestamp": "2024-01-01T00:00:03Z",  # another UBI client's
            "event_attributes": {"event_id": 3, "object": {"object_id": "p1"},
                                 "position": {"ordinal": {"index": 20_000}}}}]
    store = JsonlUbiStore(tmp_path / "ubi")
    store.events_path.parent.mkdir(parents=True)
    store.events_path.write_text("".join(json.dumps(r) + "\n" for r in old))
    a, b, c = store.iter_events()
    assert (a.event_id, a.event_attributes.price, a.event_attributes.simulated) == ("a", 12.99, False)
    assert (b.event_id, b.event_attributes.price, b.position, b.event_attributes.position.xy) == ("b", None, 2, None)
    assert (c.event_id, c.position) == ("3", None)
    assert all(ubi_errors("event", e) == [] for e in (a, b))
    spool = UbiSpool(tmp_path / "spool", max_bytes=1 << 20)  # a spool an older version left behind
    (tmp_path / "spool").mkdir()
    (tmp_path / "spool" / "0-1-old.jsonl").write_text("".join(json.dumps({"event": r}) + "\n" for r in old))
    other = JsonlUbiStore(tmp_path / "other")
    assert spool.drain(other) == (3, 1, 0) and [e.event_id for e in other.iter_events()] == ["a", "b", "3"]


def test_an_unreadable_record_in_the_ubi_index_is_skipped_not_the_scan(opensearch_url):
    from shopsearch.plugin.connection import make_client

    store = OpenSearchUbiStore(make_client(opensearch_url, timeout=30), opensearch_url,
                               prefix=f"test-{uuid.uuid4().hex[:8]}-")
    try:
        store.write([], [event(1, 1), event(3, 3)])
        store.client.index(index=store.indices["events"], id="foreign", refresh=True,  # another client's record
                           body={"action_name": "view", "timestamp": "2024-01-01T00:00:02Z",
                                 "event_attributes": {"object": {"object_id": ["not", "an", "id"]}}})
        assert [e.event_id for e in store.iter_events()] == ["e1", "e3"]
    finally:
        store.delete()


class FailingStore:
    def __init__(self):
        self.calls = 0

    def write(self, queries, events):
        self.calls += 1
        raise EngineUnavailable("down")


def test_a_store_outage_keeps_the_records_spooled(tmp_path):
    spool = UbiSpool(tmp_path / "spool", max_bytes=1 << 20)
    spool.append([], [event(1)])
    with pytest.raises(EngineUnavailable):
        spool.drain(FailingStore())
    assert len(spool.segments()) == 1
    store = JsonlUbiStore(tmp_path / "ubi")
    assert spool.drain(store).records == 1 and [e.event_id for e in store.iter_events()] == ["e1"]


def test_a_long_store_outage_leaves_few_segments_and_loses_nothing(tmp_path):
    spool = UbiSpool(tmp_path / "spool", max_bytes=1 << 30)
    drainer = SpoolDrainer(spool, FailingStore, interval_s=1)
    for n in range(50):  # a search, then a drain pass that fails, as the drainer's thread runs them
        spool.append([query(n)], [])
        with pytest.raises(EngineUnavailable):
            drainer.drain_once()
        drainer.failures += 1
    spool.close()
    assert len(spool.segments()) <= 2  # the first pass closed one; the rest went to a single segment
    store = JsonlUbiStore(tmp_path / "ubi")
    assert spool.drain(store).records == 50
    assert sorted(q.query_id for q in store.iter_queries()) == sorted(f"q{n}" for n in range(50))


def test_a_drainer_that_could_not_start_starts_at_the_next_call_and_stops_cleanly(tmp_path, monkeypatch):
    import threading

    spool, store = UbiSpool(tmp_path / "spool", max_bytes=1 << 20), JsonlUbiStore(tmp_path / "ubi")
    drainer = SpoolDrainer(spool, lambda: store, interval_s=3600)
    start = threading.Thread.start

    def no_thread(self):
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", no_thread)
    spool.append([query(1)], [])
    with pytest.raises(RuntimeError):
        drainer.start()
    monkeypatch.setattr(threading.Thread, "start", start)
    drainer.start()  # the next request's call
    drainer.stop()
    assert [q.query_id for q in store.iter_queries()] == ["q1"]
    SpoolDrainer(spool, lambda: store, interval_s=1).stop()  # never started: stops without a join error


def test_a_graceful_stop_after_an_outage_drains_this_process_segment_too(tmp_path):
    spool, down = UbiSpool(tmp_path / "spool", max_bytes=1 << 20), [True]
    store = JsonlUbiStore(tmp_path / "ubi")

    def open_store():
        return FailingStore() if down[0] else store

    drainer = SpoolDrainer(spool, open_store, interval_s=1)
    spool.append([query(1)], [])
    with pytest.raises(EngineUnavailable):
        drainer.drain_once()
    drainer.failures, drainer._store, down[0] = 1, None, False  # the store is back; no pass has run since
    spool.append([query(2)], [])  # acknowledged into this process's open segment
    drainer.stop()
    assert sorted(q.query_id for q in store.iter_queries()) == ["q1", "q2"] and spool.segments() == []


def test_drainer_backs_off_then_delivers(tmp_path):
    spool = UbiSpool(tmp_path / "spool", max_bytes=1 << 20)
    failing = FailingStore()
    drainer = SpoolDrainer(spool, lambda: failing, interval_s=0.01)
    spool.append([], [event(1)])
    drainer.start()
    try:
        deadline = time.monotonic() + 10
        while drainer.failures < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert drainer.failures >= 2 and len(spool.segments()) == 1
    finally:
        drainer.stop(drain=False)
    store = JsonlUbiStore(tmp_path / "ubi")
    SpoolDrainer(spool, lambda: store, interval_s=1).stop()  # the final drain of a clean shutdown
    assert [e.event_id for e in store.iter_events()] == ["e1"] and spool.segments() == []


def test_locked_segments_are_left_and_torn_lines_skipped(tmp_path):
    spool = UbiSpool(tmp_path / "spool", max_bytes=1 << 20)
    spool.append([], [event(1)])
    spool.rotate()
    (first,) = spool.segments()
    with first.open("ab") as f:
        f.write(b'{"event": {"action_name": "cli')  # a write cut by a crash: never acknowledged
    spool.append([], [event(2)])
    spool.rotate()
    second = next(p for p in spool.segments() if p != first)
    fd = os.open(second, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)  # being drained (or written) by another process
    store = JsonlUbiStore(tmp_path / "ubi")
    try:
        assert spool.drain(store) == (1, 1, 1)
    finally:
        os.close(fd)
    assert spool.segments() == [second]
    assert spool.drain(store).records == 1
    assert [e.event_id for e in store.iter_events()] == ["e1", "e2"]


def test_a_segment_drained_before_its_writer_locks_it_is_replaced(tmp_path, monkeypatch):
    # Another worker's drain can lock a new segment between its writer's open and flock, find it empty and delete
    # it; the writer must not go on acknowledging records written to a file with no name.
    from shopsearch.plugin import ubi_spool

    spool, other = UbiSpool(tmp_path / "spool", 1 << 20), UbiSpool(tmp_path / "spool", 1 << 20)
    store = JsonlUbiStore(tmp_path / "ubi")
    real_flock, raced = fcntl.flock, []

    def flock(fd, op):
        if op == fcntl.LOCK_EX and not raced:  # the writer, before its lock: another worker drains now
            raced.append(other.drain(store))
        return real_flock(fd, op)

    monkeypatch.setattr(ubi_spool.fcntl, "flock", flock)
    spool.append([query(1)], [])
    spool.append([query(2)], [])
    monkeypatch.setattr(ubi_spool.fcntl, "flock", real_flock)
    assert raced == [(0, 1, 0)]  # the race happened: the empty segment was deleted
    assert spool.drain(store).records == 2
    assert [q.query_id for q in store.iter_queries()] == ["q1", "q2"]


def test_a_line_torn_in_the_store_is_ended_and_skipped(tmp_path, caplog):
    store = JsonlUbiStore(tmp_path / "ubi")
    store.write([query(1)], [])
    with store.queries_path.open("ab") as f:
        f.write(b'{"application": "shopsearch", "query_id": "q2", "us')  # a drain killed mid-write
    store.write([query(2), query(3)], [])  # the spool's retry of the same segment
    assert [q.query_id for q in store.iter_queries()] == ["q1", "q2", "q3"]
    assert "skipped 1 torn" in caplog.text


def test_a_record_whose_time_cannot_be_read_is_skipped_not_the_log(tmp_path, caplog):
    store = JsonlUbiStore(tmp_path / "ubi")
    store.write([query(1)], [])
    bad = query(2).model_dump() | {"timestamp": "yesterday"}  # another writer's record: nothing can order it
    with store.queries_path.open("a") as f:
        f.write(json.dumps(bad) + "\n")
    store.write([query(3)], [])
    assert [q.query_id for q in store.iter_queries()] == ["q1", "q3"]
    assert "skipped 1 torn or invalid" in caplog.text


def test_a_failed_store_write_leaves_nothing_half_written(tmp_path, monkeypatch):
    store = JsonlUbiStore(tmp_path / "ubi")
    store.write([query(1)], [])
    before = store.queries_path.read_bytes()
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, data[:10]))  # the disk fills up
    with pytest.raises(OSError):
        store.write([query(2)], [])
    monkeypatch.setattr(os, "write", real_write)
    assert store.queries_path.read_bytes() == before
