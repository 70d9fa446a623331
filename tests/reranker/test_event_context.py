"""Serving-time feature context from the API's event log: stats, user/session affinity, incremental bounded reads."""

from __future__ import annotations

import json
import random
import threading
import time

import pytest

from shopsearch.indexer.records import Product
from shopsearch.reranker.event_context import EventLogHistory, affinity_key

CATALOG = {"p1": Product(id="p1", title="Red lamp", brand="Lumo", category=("Home", "Lamps")),
           "p2": Product(id="p2", title="Drill", brand="Torq", category=("Tools",))}


def line(kind, pid, session="s1", user=None, qid="q1", position=1):
    ev = {"event_id": f"e-{kind}-{pid}", "type": kind, "product_id": pid, "session_id": session,
          "timestamp": "2024-01-01T00:00:00Z", "query_id": qid, "position": position, "user_id": user,
          "query": "lamp", "price": None}  # the API's EventLog line shape
    return json.dumps(ev) + "\n"


def test_stats_and_affinity_from_the_log_incrementally(tmp_path):
    log = tmp_path / "events-2024-01-01.jsonl"
    log.write_text(line("impression", "p1") + line("impression", "p2") + line("click", "p1", user="u1")
                   + "not json\n" + line("purchase", "p1", user="u1", qid=None, position=None))
    lookups = []
    h = EventLogHistory(tmp_path, lambda pid: lookups.append(pid) or CATALOG.get(pid), refresh_s=0)
    assert h.context("u1", "s1", ["p1"]).stats["p1"].impressions == 0  # a search never reads the log itself
    assert h.refresh() == 4
    ctx = h.context("u1", "s1", ["p1", "p2", "p9"])
    assert (ctx.stats["p1"].impressions, ctx.stats["p1"].clicks, ctx.stats["p1"].purchases) == (1, 1, 1)
    assert ctx.stats["p9"].impressions == 0
    assert ctx.user.brands == {"Lumo": 4.0} and ctx.user.total == 4.0  # click 1 + purchase 3
    assert lookups == ["p1"]  # one lookup per distinct interacted product (cached)
    with log.open("a") as f:
        f.write(line("click", "p2", session="anon", position=2) + '{"type": "click", "prod')  # a partial line
    assert h.refresh() == 1
    ctx = h.context(None, "anon", ["p2"])
    assert ctx.stats["p2"].clicks == 1 and ctx.user.brands == {"Torq": 1.0}  # anonymous: the session's affinity
    assert h.context("nobody", None, []).user.total == 0.0


def test_refresh_applies_every_new_event_and_runs_in_the_background(tmp_path):
    log = tmp_path / "events-2024-01-01.jsonl"
    log.write_text("".join(line("impression", "p1") for _ in range(5)))
    h = EventLogHistory(tmp_path, CATALOG.get, refresh_s=0, max_events=3)  # 0: no thread, refresh() reads
    assert h.refresh() == 5 and h.context(None, None, ["p1"]).stats["p1"].impressions == 5  # all, in chunks of 3
    with log.open("a") as f:
        f.write(line("impression", "p1"))
    assert h.context(None, None, ["p1"]).stats["p1"].impressions == 5  # a search only reads memory
    assert h.refresh() == 1
    assert EventLogHistory(tmp_path / "none", CATALOG.get).refresh() == 0
    with pytest.raises(ValueError, match="refresh_s must be >= 0"):
        EventLogHistory(tmp_path, CATALOG.get, refresh_s=-1)
    # With refresh_s > 0 the first search starts a thread that reads the log (its first pass at once).
    background = EventLogHistory(tmp_path, CATALOG.get, refresh_s=0.05)
    try:
        background.context(None, None, ["p1"])
        deadline = time.monotonic() + 10
        while background.context(None, None, ["p1"]).stats["p1"].impressions < 6 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert background.context(None, None, ["p1"]).stats["p1"].impressions == 6
    finally:
        background.stop()


def test_lookups_never_hold_the_lock_a_search_reads_under(tmp_path):
    """A slow engine lookup (for affinity) happens outside the history's lock: searches keep answering."""
    (tmp_path / "events-2024-01-01.jsonl").write_text(line("click", "p1", user="u1"))
    started, release = threading.Event(), threading.Event()

    def slow_lookup(pid):
        started.set()
        release.wait(10)
        return CATALOG.get(pid)

    h = EventLogHistory(tmp_path, slow_lookup, refresh_s=0)
    refresher = threading.Thread(target=h.refresh)
    refresher.start()
    try:
        assert started.wait(10)
        t0 = time.perf_counter()
        assert h.context("u1", None, ["p1"]).stats["p1"].clicks == 0  # answered while the lookup hangs
        assert time.perf_counter() - t0 < 1.0
    finally:
        release.set()
        refresher.join()
    assert h.context("u1", None, ["p1"]).user.brands == {"Lumo": 1.0}


def test_history_size_is_bounded_whatever_ids_the_events_name(tmp_path):
    rng = random.Random(0)
    (tmp_path / "events-2024-01-01.jsonl").write_text("".join(
        line(rng.choice(["impression", "click", "purchase"]), f"rand-{rng.getrandbits(64):x}",
             user=f"u{rng.getrandbits(32)}") for _ in range(10_000)))
    h = EventLogHistory(tmp_path, CATALOG.get, refresh_s=0, max_products=500, max_users=200)
    assert h.refresh() == 10_000
    assert h.history.sizes() == (500, 0)  # random ids: no catalog product, so no affinity either
    assert len(h._products._cache) <= 500


def test_affinity_key():
    assert affinity_key("u1", "s1") == "u1" and affinity_key(None, "s1") == "session:s1"
    assert affinity_key(None, None) is None
