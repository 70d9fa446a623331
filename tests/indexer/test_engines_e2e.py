"""End to end on both real engines with the tiny bi-encoder: quarantine, crash safety, incremental, CLI."""

from __future__ import annotations

import pytest

from shopsearch.indexer.job import run_index
from shopsearch.indexer.quarantine import read_quarantine
from shopsearch.indexer.validate import reason_code
from shopsearch.indexer.vector_cache import VectorCache
from shopsearch.plugin.engine import BM25Leg, KnnLeg

from .catalogs import BAD_LINES, TRUNCATED_LINE, good_rows, write_corrupted, write_jsonl


def _titles(engine, alias, query, size=5):
    return [h.source["title"] for h in engine.search(alias, [BM25Leg(query, {"title": 1.0}, size=size)])[0]]


def test_corrupted_catalog_end_to_end(engine, alias, tiny_encoder, tmp_path):
    path, good = write_corrupted(tmp_path / "c.jsonl")
    report = run_index(path, engine, tiny_encoder, alias=alias, quarantine_path=tmp_path / "q.jsonl",
                       chunk_size=16, progress=False)
    got = {r.line: reason_code(r.reason) for r in read_quarantine(tmp_path / "q.jsonl")}
    assert got == {line: code for line, (_, code) in BAD_LINES.items()} | {TRUNCATED_LINE: "unparsable_json"}
    assert (report.indexed, report.quarantined) == (len(good), len(BAD_LINES) + 1)
    assert engine.count(alias) == len(good)
    for row in good:
        assert engine.get(alias, row["id"])["title"] == row["title"]
    assert engine.get(alias, "bad1") is None
    assert _titles(engine, alias, "Product 17")[0] == "Product 17 lamp"
    vec = engine.get(alias, "p00005", with_vector=True)["vector"]
    assert engine.search(alias, [KnnLeg(vec, k=1)])[0][0].id == "p00005"


def test_interrupted_rebuild_keeps_serving_old_index_and_rerun_completes(engine, alias, tiny_encoder, tmp_path):
    old_path = write_jsonl(tmp_path / "old.jsonl", [dict(r, title=r["title"] + " vintage") for r in good_rows(50)])
    old = run_index(old_path, engine, tiny_encoder, alias=alias, progress=False, chunk_size=16).index
    new_path = write_jsonl(tmp_path / "new.jsonl", good_rows(120))

    def crash(queued: int) -> None:
        if queued >= 48:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_index(new_path, engine, tiny_encoder, alias=alias, mode="full", progress=False, chunk_size=16,
                  on_chunk=crash)
    assert engine.resolve_alias(alias) == old and engine.count(alias) == 50
    assert _titles(engine, alias, "vintage", size=100) and all(
        t.endswith("vintage") for t in _titles(engine, alias, "vintage", size=100))
    partial = [n for n in engine.list_indices(f"{alias}-v") if n != old]
    assert len(partial) == 1

    again = run_index(new_path, engine, tiny_encoder, alias=alias, mode="full", progress=False, chunk_size=16)
    assert engine.resolve_alias(alias) == again.index and engine.count(alias) == 120
    assert set(engine.list_indices(f"{alias}-v")) == {old, again.index} and again.unfinished_dropped == (partial[0],)
    assert not any(t.endswith("vintage") for t in _titles(engine, alias, "Product lamp", size=50))


def test_incremental_one_percent_changed(engine, alias, tiny_encoder, tmp_path):
    rows = good_rows(300)
    path = write_jsonl(tmp_path / "c.jsonl", rows)
    with VectorCache(tmp_path / "v.sqlite") as cache:
        full = run_index(path, engine, tiny_encoder, alias=alias, cache=cache, progress=False, chunk_size=64)
        for i in (10, 150, 299):  # 1% of titles
            rows[i]["title"] = f"Renamed gadget {i}"
        del rows[200:202]
        write_jsonl(path, rows)
        inc = run_index(path, engine, tiny_encoder, alias=alias, cache=cache, progress=False, chunk_size=64)
    assert (inc.mode, inc.index) == ("incremental", full.index)
    assert (inc.embedded, inc.indexed, inc.deleted, inc.unchanged) == (3, 3, 2, 295)
    assert engine.count(alias) == 298 and engine.get(alias, "p00200") is None
    assert engine.get(alias, "p00150")["title"] == "Renamed gadget 150"
    assert "Renamed gadget 150" in _titles(engine, alias, "renamed gadget")


def test_cli_index_command(engine_kind, alias, tiny_bi_encoder_dir, tmp_path, capsys, request, engine):
    from shopsearch.api.cli import main

    path, good = write_corrupted(tmp_path / "c.jsonl")
    where = (["--url", request.getfixturevalue("opensearch_url")] if engine_kind == "opensearch"
             else ["--root", str(tmp_path / "embedded")])
    argv = ["index", str(path), "--index", alias, "--engine", engine_kind, *where, "--model",
            str(tiny_bi_encoder_dir), "--cache", str(tmp_path / "v.sqlite"), "--quarantine",
            str(tmp_path / "q.jsonl"), "--no-progress", "--max-length", "64"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"indexed {len(good)}, quarantined {len(BAD_LINES) + 1}" in out
    assert f"{len(BAD_LINES) + 1} quarantined (" in out and f") -> {tmp_path / 'q.jsonl'} (rows of run " in out
    assert main(argv + ["--incremental"]) == 0
    assert f"indexed 0, quarantined {len(BAD_LINES) + 1}, unchanged {len(good)}" in capsys.readouterr().out
    assert engine.count(alias) == len(good)
    assert main(["index", str(tmp_path / "none.jsonl"), "--engine", engine_kind, *where]) == 2


@pytest.mark.slow
def test_whole_crowdflower_catalog(engine, alias, tiny_encoder, shared_data, tmp_path):
    path = shared_data / "crowdflower" / "products.jsonl"
    with path.open("rb") as f:
        lines = sum(1 for line in f if line.strip())
    report = run_index(path, engine, tiny_encoder, alias=alias, quarantine_path=tmp_path / "q.jsonl",
                       progress=False)
    assert lines == 9913
    assert (report.read, report.indexed, report.quarantined) == (9913, 9913, 0)
    assert engine.count(alias) == 9913
