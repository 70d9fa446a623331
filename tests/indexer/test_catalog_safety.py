"""Catalog safety on both engines: truncated catalogs refused (alias and live catalog unchanged), --allow-shrink,
one run per alias (the second refuses; stale locks are broken), a crashed run's partial index dropped by the next
run of any kind."""

from __future__ import annotations

import os

import pytest

from shopsearch.indexer.catalog_guard import CatalogShrinkRefused, ShrinkLimits
from shopsearch.indexer.job import run_index
from shopsearch.indexer.rebuild_lock import IndexLocked, rebuild_lock, stale_reason
from shopsearch.indexer.sink import LockHolder

from .catalogs import good_rows, write_jsonl
from .fakeenc import HashEncoder
from .memsink import MemorySink

ALLOW = ShrinkLimits(allow_shrink=True)


def _run(path, engine, alias, tmp_path, **kw):
    return run_index(path, engine, HashEncoder(), alias=alias, progress=False, chunk_size=16,
                     quarantine_path=tmp_path / "q.jsonl", **kw)


def _catalogs(tmp_path):
    rows = good_rows(100)
    return write_jsonl(tmp_path / "full.jsonl", rows), write_jsonl(tmp_path / "half.jsonl", rows[:50])


def test_truncated_catalog_is_refused_in_both_modes_until_allow_shrink(engine, alias, tmp_path):
    full, half = _catalogs(tmp_path)
    live = _run(full, engine, alias, tmp_path).index

    with pytest.raises(CatalogShrinkRefused, match=r"refusing to delete 50 of the 100 products .* 50\.00% .*"
                                                   r"--allow-shrink"):
        _run(half, engine, alias, tmp_path, mode="incremental")
    with pytest.raises(CatalogShrinkRefused, match=r"rebuild .* with 50 products: 50 of the 100 products .* "
                                                   r"would disappear"):
        _run(half, engine, alias, tmp_path, mode="full")
    assert engine.resolve_alias(alias) == live and engine.count(alias) == 100
    assert engine.list_indices(f"{alias}-v") == [live]  # the refused rebuild wrote nothing

    inc = _run(half, engine, alias, tmp_path, mode="incremental", limits=ALLOW)
    assert (inc.deleted, inc.read, inc.unchanged) == (50, 50, 50)
    assert inc.read == inc.indexed + inc.quarantined + inc.unchanged
    engine.refresh(alias)
    assert engine.count(alias) == 50

    grown = _run(full, engine, alias, tmp_path, mode="full")  # growing is always fine
    shrunk = _run(half, engine, alias, tmp_path, mode="full", limits=ALLOW)
    assert engine.resolve_alias(alias) == shrunk.index and engine.count(alias) == 50
    assert "; the version it replaced held 100 (-50)" in shrunk.summary_line()  # "deleted 0" said nothing of it
    assert grown.index in engine.list_indices(f"{alias}-v")  # kept for rollback


def test_small_losses_stay_within_the_shares(engine, alias, tmp_path):
    rows = good_rows(100)
    _run(write_jsonl(tmp_path / "a.jsonl", rows), engine, alias, tmp_path)
    inc = _run(write_jsonl(tmp_path / "b.jsonl", rows[:95]), engine, alias, tmp_path)  # 5%: allowed
    full = _run(write_jsonl(tmp_path / "c.jsonl", rows[:86]), engine, alias, tmp_path, mode="full")  # ~9.5%
    assert (inc.deleted, full.indexed) == (5, 86)


@pytest.mark.parametrize("share", [0.29, 0.35, 0.41, 0.47, 0.05, 0.1])
def test_a_loss_of_exactly_the_share_is_allowed_and_one_more_is_not(share):
    from shopsearch.indexer.catalog_guard import check_deletes

    for live in (100, 300, 1000):
        exact = round(share * live)
        check_deletes("shop", "shop-v1", live, exact, ShrinkLimits(share))  # 29 of 100 at 0.29: allowed
        with pytest.raises(CatalogShrinkRefused):
            check_deletes("shop", "shop-v1", live, exact + 1, ShrinkLimits(share))


def test_a_second_run_on_the_same_alias_refuses_while_the_first_holds_the_lock(engine, alias, tmp_path):
    full, _ = _catalogs(tmp_path)
    _run(full, engine, alias, tmp_path)
    refused: list[str] = []

    def second_run(queued: int) -> None:
        if not refused:
            with pytest.raises(IndexLocked) as exc:
                _run(full, engine, alias, tmp_path, mode="full")
            refused.append(str(exc.value))
            with pytest.raises(IndexLocked, match="still running on this host"):
                _run(full, engine, alias, tmp_path, mode="full", break_lock=True)

    first = _run(full, engine, alias, tmp_path, mode="full", on_chunk=second_run)
    # the holder runs on this host (this very process): never broken, not even with --break-lock, which would
    # delete the version it is building under it
    assert refused and "another indexing run holds the lock" in refused[0]
    assert f"still running on this host. Wait for it to finish, or stop it (kill {os.getpid()})" in refused[0]
    assert engine.resolve_alias(alias) == first.index
    _run(full, engine, alias, tmp_path)  # released: the next run goes through


def test_a_stale_lock_is_broken_and_a_live_one_only_with_break_lock(engine, alias, tmp_path):
    import socket
    import time

    full, _ = _catalogs(tmp_path)
    now = time.time()
    dead = LockHolder(socket.gethostname(), 2**22 + 7, now, now, "dead-run")  # above pid_max: never running
    assert engine.create_lock(alias, dead) is None
    assert stale_reason(dead, now, 600) == f"pid {dead.pid} is not running on this host"
    _run(full, engine, alias, tmp_path)  # broken with a warning

    other = LockHolder("another-host", 1, now, now, "live-run")
    assert engine.create_lock(alias, other) is None
    with pytest.raises(IndexLocked, match="pid 1 on host another-host"):
        _run(full, engine, alias, tmp_path)
    _run(full, engine, alias, tmp_path, break_lock=True)
    assert engine.create_lock(alias, other) is None  # the run released the lock it took
    assert engine.delete_lock(alias, other)


def test_an_emptied_lock_file_is_a_stale_lock_not_a_json_error(tmp_path, caplog):
    """A power cut can leave the (unflushed) holder empty: the next run breaks it with a warning."""
    from shopsearch.plugin.embedded_engine import EmbeddedEngine

    full, _ = _catalogs(tmp_path)
    engine = EmbeddedEngine(tmp_path / "e")
    _run(full, engine, "shop", tmp_path)
    (tmp_path / "e" / ".locks").mkdir(exist_ok=True)
    for text in ("", "not json", "[1, 2]"):
        (tmp_path / "e" / ".locks" / "shop.lock").write_text(text)
        assert _run(full, engine, "shop", tmp_path).read == 100
        assert "is unreadable; reading it as a lock with no heartbeat" in caplog.text

def test_a_crashed_full_rebuild_is_cleaned_up_by_the_next_incremental_run(engine, alias, tmp_path):
    full, _ = _catalogs(tmp_path)
    live = _run(full, engine, alias, tmp_path).index

    def crash(queued: int) -> None:
        if queued >= 32:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run(full, engine, alias, tmp_path, mode="full", on_chunk=crash)
    (partial,) = [n for n in engine.list_indices(f"{alias}-v") if n != live]
    inc = _run(full, engine, alias, tmp_path, mode="incremental")
    assert inc.unfinished_dropped == (partial,) and engine.list_indices(f"{alias}-v") == [live]
    assert inc.read == inc.indexed + inc.quarantined + inc.unchanged == 100


def test_a_lock_here_is_stale_only_when_its_process_is_gone_or_another_one():
    """On this host the process is asked, not the heartbeat's age (a long scan writes none); a pid that another
    process took since the lock was taken (a reboot, a new container's pid 1) does not hold it."""
    import socket
    import time

    here, now = socket.gethostname(), time.time()
    running = LockHolder(here, os.getpid(), now, now - 10_000, "mine")  # alive, its heartbeat long past
    assert stale_reason(running, now, stale_after_s=600) is None
    reused = LockHolder(here, os.getpid(), 1.0, 1.0, "an earlier boot's")  # taken before this process started
    assert stale_reason(reused, now, stale_after_s=600) == f"pid {os.getpid()} is another process now (started " \
                                                           "after the lock was taken)"
    elsewhere = LockHolder("another-host", 1, now, now - 10_000, "theirs")
    assert "stale after 600 s" in stale_reason(elsewhere, now, stale_after_s=600)


def test_heartbeats_refresh_the_lock_and_a_broken_lock_stops_the_run():
    sink, t = MemorySink(), [1000.0]
    with rebuild_lock(sink, "shop", stale_after_s=40, clock=lambda: t[0]) as lock:
        t[0] += 5
        lock.heartbeat()  # within stale_after/4: nothing written
        assert sink.locks["shop"].heartbeat == 1000.0
        t[0] += 10
        lock.heartbeat()
        assert sink.locks["shop"].heartbeat == 1015.0
        sink.locks["shop"] = LockHolder("x", 1, 0.0, 0.0, "thief")
        t[0] += 20
        with pytest.raises(IndexLocked, match="broken by another run"):
            lock.heartbeat()
    assert sink.locks["shop"].token == "thief"  # never deletes a lock it no longer holds
    with pytest.raises(ValueError, match="stale_after_s=0"):
        with rebuild_lock(sink, "other", stale_after_s=0):
            pass


def test_shrink_limits_are_checked():
    with pytest.raises(ValueError, match="max_delete_share=1.5 must be a share between 0 and 1"):
        ShrinkLimits(max_delete_share=1.5)


def test_cli_refuses_a_truncated_catalog_and_takes_layout_overrides(engine_kind, engine, alias, tiny_bi_encoder_dir,
                                                                    tmp_path, capsys, request):
    from shopsearch.api.cli import main

    full, half = _catalogs(tmp_path)
    where = (["--url", request.getfixturevalue("opensearch_url")] if engine_kind == "opensearch"
             else ["--root", str(tmp_path / "embedded")])
    common = ["--index", alias, "--engine", engine_kind, *where, "--model", str(tiny_bi_encoder_dir),
              "--cache", "none", "--quarantine", str(tmp_path / "q.jsonl"), "--no-progress", "--max-length", "16"]
    assert main(["index", str(full), *common, "--shards", "2", "--replicas", "0"]) == 0
    live = engine.resolve_alias(alias)
    if engine_kind == "opensearch":
        settings = engine.client.indices.get_settings(index=live)[live]["settings"]["index"]
        assert (settings["number_of_shards"], settings["number_of_replicas"]) == ("2", "0")
    assert "index green" in capsys.readouterr().out
    assert main(["index", str(half), *common, "--incremental"]) == 1
    assert "refused: refusing to delete 50 of the 100 products" in capsys.readouterr().err
    assert engine.resolve_alias(alias) == live and engine.count(alias) == 100
    assert main(["index", str(half), *common, "--incremental", "--allow-shrink"]) == 0
    assert "deleted 50" in capsys.readouterr().out
    assert main(["index", str(half), *common, "--shards", "0"]) == 2


def test_a_refusal_never_reads_as_equal_to_its_limit():
    """148 of 2940 is over 5%; rounded to one decimal it read "5.0% ... above 5%"."""
    from shopsearch.indexer.catalog_guard import check_deletes

    with pytest.raises(CatalogShrinkRefused, match=r"5\.03% of the live catalog, above index_max_delete_share=5%\."):
        check_deletes("shop", "shop-v1", 2940, 148, ShrinkLimits())
    check_deletes("shop", "shop-v1", 2940, 147, ShrinkLimits())  # exactly 5%: allowed
    with pytest.raises(CatalogShrinkRefused, match=r"above index_max_delete_share=2\.5%"):
        check_deletes("shop", "shop-v1", 1000, 26, ShrinkLimits(max_delete_share=0.025))
