"""Rolling an alias back to the version its last full run replaced (indexer/rollback.py, `shopsearch versions`)."""

from __future__ import annotations

import pytest

from shopsearch.api.cli import main
from shopsearch.indexer.job import run_index
from shopsearch.indexer.rebuild_lock import IndexLocked, rebuild_lock
from shopsearch.indexer.rollback import alias_versions, roll_back
from shopsearch.indexer.sink import IndexHealth

from .catalogs import good_rows, write_jsonl
from .fakeenc import HashEncoder
from .memsink import MemorySink


def _full(path, sink, tmp_path):
    return run_index(path, sink, HashEncoder(), alias="shop", mode="full", progress=False,
                     quarantine_path=tmp_path / "q.jsonl").index


def test_a_rebuild_that_went_live_with_a_bad_catalog_is_one_rollback_from_undone(tmp_path):
    sink = MemorySink()
    good = _full(write_jsonl(tmp_path / "good.jsonl", good_rows(100)), sink, tmp_path)
    bad = _full(write_jsonl(tmp_path / "bad.jsonl", good_rows(95)), sink, tmp_path)  # within the shrink share
    assert [(v.name, v.products, v.live) for v in alias_versions(sink, "shop")] == [(bad, 95, True),
                                                                                    (good, 100, False)]
    assert roll_back(sink, "shop") == ("shop", bad, good, 95, 100)
    assert sink.resolve_alias("shop") == good and sink.count("shop") == 100
    with pytest.raises(ValueError, match=f"no version of 'shop' older than the live {good} is kept"):
        roll_back(sink, "shop")
    assert roll_back(sink, "shop", to=bad).live == bad  # forward again, before a run drops it
    roll_back(sink, "shop")
    _full(write_jsonl(tmp_path / "fixed.jsonl", good_rows(101)), sink, tmp_path)
    assert bad not in sink.list_indices("shop-v")  # the next run dropped what was rolled back from


def test_a_refused_run_keeps_the_version_rolled_back_from_and_a_run_that_passes_says_what_it_drops(tmp_path,
                                                                                                 caplog):
    from shopsearch.indexer.catalog_guard import CatalogShrinkRefused

    sink = MemorySink()
    good = _full(write_jsonl(tmp_path / "good.jsonl", good_rows(100)), sink, tmp_path)
    bad = _full(write_jsonl(tmp_path / "bad.jsonl", good_rows(95)), sink, tmp_path)
    roll_back(sink, "shop")
    assert [v.newer for v in alias_versions(sink, "shop")] == ["rolled back", None]
    with pytest.raises(CatalogShrinkRefused):  # tonight's export is truncated
        run_index(write_jsonl(tmp_path / "cut.jsonl", good_rows(30)), sink, HashEncoder(), alias="shop",
                  progress=False, quarantine_path=tmp_path / "q.jsonl")
    assert [v.name for v in alias_versions(sink, "shop")] == [bad, good]  # "nothing was written", nor deleted
    report = run_index(write_jsonl(tmp_path / "fixed.jsonl", good_rows(101)), sink, HashEncoder(), alias="shop",
                       mode="full", progress=False, quarantine_path=tmp_path / "q.jsonl")
    assert bad not in sink.list_indices("shop-v")
    assert f"dropping {bad}: the version of 'shop' a rollback moved off" in caplog.text
    assert (report.rolled_back_dropped, report.unfinished_dropped) == ((bad,), ())
    assert f"; dropped rolled-back {bad}" in report.summary_line() and "unfinished" not in report.summary_line()

def test_a_rollback_waits_for_no_run_and_for_a_version_that_can_take_traffic(tmp_path):
    sink = MemorySink()
    good = _full(write_jsonl(tmp_path / "a.jsonl", good_rows(50)), sink, tmp_path)
    bad = _full(write_jsonl(tmp_path / "b.jsonl", good_rows(50, start=1)), sink, tmp_path)
    with pytest.raises(ValueError, match="'shop-v1' is not a kept version of 'shop'"):
        roll_back(sink, "shop", to="shop-v1")
    with pytest.raises(ValueError, match="is already the live version"):
        roll_back(sink, "shop", to=bad)
    with rebuild_lock(sink, "shop"), pytest.raises(IndexLocked):
        roll_back(sink, "shop")
    sink.health = IndexHealth("red", 1, False, "a primary shard is unassigned")
    with pytest.raises(ValueError, match=f"{good} cannot take traffic \\(red: a primary shard is unassigned\\)"):
        roll_back(sink, "shop")
    assert sink.resolve_alias("shop") == bad
    with pytest.raises(ValueError, match="'nope' is not an alias"):
        alias_versions(sink, "nope")


def test_a_version_a_crashed_run_left_is_never_rolled_forward_onto(tmp_path):
    sink = MemorySink()
    path = write_jsonl(tmp_path / "a.jsonl", good_rows(64))
    live = _full(path, sink, tmp_path)

    def crash(queued: int) -> None:
        if queued >= 32:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_index(path, sink, HashEncoder(), alias="shop", mode="full", progress=False, chunk_size=16,
                  quarantine_path=tmp_path / "q.jsonl", on_chunk=crash)
    (partial,) = [n for n in sink.list_indices("shop-v") if n != live]
    assert [(v.name, v.newer) for v in alias_versions(sink, "shop")] == [(partial, "unfinished"), (live, None)]
    with pytest.raises(ValueError, match=f"{partial} is not marked as having gone live"):
        roll_back(sink, "shop", to=partial)
    assert sink.resolve_alias("shop") == live


def test_the_versions_command_on_the_embedded_engine(tmp_path, tiny_bi_encoder_dir, capsys):
    root = tmp_path / "engine"
    common = ["--engine", "embedded", "--root", str(root)]
    for name, n in (("a", 20), ("b", 19)):
        assert main(["index", str(write_jsonl(tmp_path / f"{name}.jsonl", good_rows(n))), "--index", "shop", "--full",
                     *common, "--model", str(tiny_bi_encoder_dir), "--cache", "none", "--no-progress",
                     "--allow-shrink", "--quarantine", str(tmp_path / "q.jsonl")]) == 0
    capsys.readouterr()
    assert main(["versions", "list", "--index", "shop", *common]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert len(listed) == 2 and listed[0].startswith("* shop-v") and "19 products" in listed[0]
    assert "(live)" not in listed[1] and "20 products" in listed[1]
    assert main(["versions", "rollback", "--index", "shop", *common]) == 0
    out = capsys.readouterr().out
    assert out.startswith("shop: now on shop-v") and "(20 products)" in out and "the next indexing run drops" in out
    assert main(["versions", "rollback", "--index", "shop", *common]) == 2
    assert "no version of 'shop' older than the live" in capsys.readouterr().err
    assert main(["versions", "list", "--index", "shop", *common]) == 0
    assert "(rolled back: the next indexing run drops it)" in capsys.readouterr().out.splitlines()[0]
    assert main(["versions"]) == 2


def test_a_rollback_on_both_engines(engine, alias, tmp_path):
    """The real engines: the alias moves back, searches read the older version, the next run drops the newer."""
    first = run_index(write_jsonl(tmp_path / "a.jsonl", good_rows(40)), engine, HashEncoder(), alias=alias,
                      mode="full", progress=False, quarantine_path=tmp_path / "q.jsonl").index
    second = run_index(write_jsonl(tmp_path / "b.jsonl", good_rows(38)), engine, HashEncoder(), alias=alias,
                       mode="full", progress=False, quarantine_path=tmp_path / "q.jsonl").index
    assert [v.name for v in alias_versions(engine, alias)] == [second, first]
    assert roll_back(engine, alias) == (alias, second, first, 38, 40)
    assert engine.resolve_alias(alias) == first and engine.count(alias) == 40
    assert [v.live for v in alias_versions(engine, alias)] == [False, True]
