"""The indexing job against an in-memory sink: quarantine, full rebuild + alias swap, crash safety, incremental."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest

from shopsearch.indexer.job import IndexVerificationError, doc_hash, run_index
from shopsearch.indexer.quarantine import read_quarantine
from shopsearch.indexer.validate import reason_code
from shopsearch.indexer.vector_cache import VectorCache
from shopsearch.indexer.versions import is_version_of

from .catalogs import BAD_LINES, TRUNCATED_LINE, good_rows, write_corrupted, write_jsonl
from .fakeenc import HashEncoder
from .memsink import MemorySink


def _run(catalog, sink, enc, tmp_path, **kw):
    kw.setdefault("quarantine_path", tmp_path / "q.jsonl")
    return run_index(catalog, sink, enc, alias="shop", progress=False, chunk_size=16, **kw)


def test_corrupted_catalog_quarantines_every_bad_row_with_reason_and_line(tmp_path):
    path, good = write_corrupted(tmp_path / "c.jsonl")
    sink, enc = MemorySink(), HashEncoder()
    report = _run(path, sink, enc, tmp_path)
    rows = read_quarantine(tmp_path / "q.jsonl")
    got = {r.line: reason_code(r.reason) for r in rows}
    expected = {line: code for line, (_, code) in BAD_LINES.items()} | {TRUNCATED_LINE: "unparsable_json"}
    assert got == expected
    assert all(r.source == str(path) for r in rows)
    assert len({r.run for r in rows}) == 1 and rows[0].run.endswith("Z")  # the run that quarantined them
    assert next(r for r in rows if r.line == 8).raw == '{"id": "bad4", "title": "Caf\ufffd latin-1"}'
    assert report.read == len(good) + len(BAD_LINES) + 1
    assert (report.indexed, report.quarantined, report.unchanged) == (len(good), len(BAD_LINES) + 1, 0)
    assert report.read == report.indexed + report.quarantined + report.unchanged
    assert report.quarantine_path == str(tmp_path / "q.jsonl")
    live = sink.resolve_alias("shop")
    assert is_version_of("shop", live) and sink.count("shop") == len(good)
    assert sink.get("shop", "p00001")["title"] == "Product 1 lamp"  # the first row with the id won
    assert sink.bulk_mode[live] is False  # switched back to serving settings


def test_engine_rejections_are_quarantined_and_counted(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", good_rows(10))
    report = _run(path, MemorySink(reject={"p00003"}), HashEncoder(), tmp_path)
    assert (report.indexed, report.quarantined) == (9, 1)
    (row,) = read_quarantine(tmp_path / "q.jsonl")
    assert row.line == 4 and row.reason == "rejected: mapper_parsing_exception" and json.loads(row.raw)["id"] == "p00003"


def test_full_rebuild_swaps_alias_and_keeps_one_previous_version(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", good_rows(20))
    sink, enc = MemorySink(), HashEncoder()
    first = _run(path, sink, enc, tmp_path, mode="full").index
    second = _run(path, sink, enc, tmp_path, mode="full").index
    third = _run(path, sink, enc, tmp_path, mode="full")
    assert sink.resolve_alias("shop") == third.index
    assert sink.list_indices("shop-v") == sorted([second, third.index])  # previous kept for rollback
    assert third.dropped_indices == (first,)


def test_interrupted_full_rebuild_leaves_alias_on_old_index_and_rerun_cleans_up(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", good_rows(100))
    sink, enc = MemorySink(), HashEncoder()
    old = _run(path, sink, enc, tmp_path).index
    bigger = write_jsonl(tmp_path / "c2.jsonl", good_rows(200))

    def crash(queued: int) -> None:
        if queued >= 64:
            raise KeyboardInterrupt  # Ctrl-C after 4 chunks

    with pytest.raises(KeyboardInterrupt):
        _run(bigger, sink, enc, tmp_path, mode="full", on_chunk=crash)
    assert sink.resolve_alias("shop") == old and sink.count("shop") == 100  # searches still hit the old index
    partial = [n for n in sink.list_indices("shop-v") if n != old]
    assert len(partial) == 1 and sink.count(partial[0]) < 200

    again = _run(bigger, sink, enc, tmp_path, mode="full")
    assert sink.resolve_alias("shop") == again.index and sink.count("shop") == 200
    assert again.unfinished_dropped == (partial[0],) and sink.list_indices("shop-v") == sorted([old, again.index])


def test_count_mismatch_does_not_move_the_alias(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", good_rows(10))
    sink, enc = MemorySink(), HashEncoder()
    old = _run(path, sink, enc, tmp_path).index
    sink.count = lambda index: 3  # an engine that lost documents
    with pytest.raises(IndexVerificationError, match="holds 3 products, expected 10"):
        _run(path, sink, enc, tmp_path, mode="full")
    assert sink.resolve_alias("shop") == old


def test_incremental_reembeds_exactly_the_changed_titles_and_deletes_vanished(tmp_path):
    rows = good_rows(500)
    path = write_jsonl(tmp_path / "c.jsonl", rows)
    sink, enc = MemorySink(), HashEncoder()
    with VectorCache(tmp_path / "v.sqlite") as cache:
        full = _run(path, sink, enc, tmp_path, cache=cache)
        assert (full.mode, full.embedded, full.indexed) == ("full", 500, 500)
        changed = list(range(0, 500, 100))  # 1% of titles
        for i in changed:
            rows[i]["title"] += " v2"
        rows[7]["price"] = 999  # a price change: rewritten, but its text (and vector) is cached
        del rows[401:404]  # 3 products left the catalog
        rows.append(good_rows(1, start=900)[0])  # 1 new product
        write_jsonl(path, rows)
        enc.calls.clear()
        inc = _run(path, sink, enc, tmp_path, cache=cache)
    assert inc.mode == "incremental" and inc.index == full.index
    assert inc.embedded == len(changed) + 1 == len(enc.calls)
    assert inc.indexed == len(changed) + 2 and inc.cache_hits == 1
    assert inc.deleted == 3 and inc.unchanged == 500 - 3 - len(changed) - 1
    assert inc.read == inc.indexed + inc.quarantined + inc.unchanged
    assert sink.count("shop") == 498 and sink.get("shop", "p00401") is None
    assert sink.get("shop", "p00100")["title"].endswith(" v2") and sink.get("shop", "p00007")["price"] == 999


def test_incremental_keeps_stored_version_of_a_row_that_now_fails_validation(tmp_path):
    rows = good_rows(5)
    path = write_jsonl(tmp_path / "c.jsonl", rows)
    sink, enc = MemorySink(), HashEncoder()
    _run(path, sink, enc, tmp_path)
    rows[2]["price"] = "broken"
    write_jsonl(path, rows)
    inc = _run(path, sink, enc, tmp_path)
    assert (inc.quarantined, inc.deleted, inc.unchanged) == (1, 0, 4)
    assert sink.get("shop", "p00002")["price"] == 7


def test_incremental_keeps_stored_version_of_a_row_that_can_no_longer_be_read(tmp_path):
    """Bytes that are not UTF-8, a JSON line cut short, a CSV row with a cell too many: each is quarantined, and
    the product it names keeps its stored version rather than being deleted as gone from the catalog."""
    rows = good_rows(6)
    path = write_jsonl(tmp_path / "c.jsonl", rows)
    sink, enc = MemorySink(), HashEncoder()
    _run(path, sink, enc, tmp_path)
    lines = path.read_bytes().splitlines(keepends=True)
    lines[1] = lines[1].replace(b"Description", b"Descripci\xf3n")  # cp1252, not UTF-8
    lines[3] = lines[3][:40] + b"\n"
    path.write_bytes(b"".join(lines))
    inc = _run(path, sink, enc, tmp_path)
    assert (inc.quarantined, inc.deleted, inc.unchanged) == (2, 0, 4)
    assert sink.get("shop", "p00001") is not None and sink.get("shop", "p00003") is not None

    csv_path = tmp_path / "c.csv"
    csv_path.write_text("id,title,price\n" + "".join(f"{r['id']},{r['title']},{r['price']}\n" for r in rows))
    sink = MemorySink()
    _run(csv_path, sink, enc, tmp_path)
    csv_path.write_text(csv_path.read_text().replace("p00002,Product 2 lamp,7", "p00002,Product 2 lamp,7,extra"))
    inc = _run(csv_path, sink, enc, tmp_path)
    assert (inc.quarantined, inc.deleted) == (1, 0) and sink.get("shop", "p00002")["price"] == 7


def test_a_quarantine_path_that_cannot_be_written_fails_before_anything_is_written(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", good_rows(5))
    (tmp_path / "notdir").write_text("x")
    sink = MemorySink()
    with pytest.raises(FileExistsError):
        _run(path, sink, HashEncoder(), tmp_path, quarantine_path=tmp_path / "notdir" / "q.jsonl")
    assert sink.resolve_alias("shop") is None and not sink.list_indices("shop")


def test_a_read_only_quarantine_folder_fails_before_anything_is_written(tmp_path, monkeypatch, capsys,
                                                                        tiny_bi_encoder_dir):
    """A container's working folder may be read-only: the quarantine file is opened before the job writes, and the
    command names it in one line (the file system refuses root too, so the refusal is simulated at open)."""
    from shopsearch.api.cli import main

    path = write_jsonl(tmp_path / "c.jsonl", good_rows(3))
    real_open = Path.open

    def read_only(self, *args, **kwargs):
        if self.name.endswith(".quarantine.jsonl"):
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", read_only)
    monkeypatch.chdir(tmp_path)
    assert main(["index", str(path), "--index", "shop", "--engine", "embedded", "--root", str(tmp_path / "e"),
                 "--no-progress", "--cache", "none", "--model", str(tiny_bi_encoder_dir), "--max-length", "64"]) == 2
    err = capsys.readouterr().err
    assert f"shopsearch index: error: Read-only file system: {tmp_path / 'shop.quarantine.jsonl'}" in err
    assert "Traceback" not in err and not list((tmp_path / "e").rglob("*.jsonl"))


def test_a_run_without_bad_rows_leaves_no_quarantine_file_and_keeps_an_old_one(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", good_rows(3))
    _run(path, MemorySink(), HashEncoder(), tmp_path)
    assert not (tmp_path / "q.jsonl").exists()
    (tmp_path / "q.jsonl").write_text('{"earlier": "run"}\n')
    _run(path, MemorySink(), HashEncoder(), tmp_path)
    assert (tmp_path / "q.jsonl").read_text() == '{"earlier": "run"}\n'


def test_cache_is_shared_across_runs_and_sinks(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", good_rows(30))
    enc = HashEncoder()
    with VectorCache(tmp_path / "v.sqlite") as cache:
        a = _run(path, MemorySink(), enc, tmp_path, cache=cache)
        b = _run(path, MemorySink(), enc, tmp_path, cache=cache)
    assert (a.embedded, a.cache_hits, b.embedded, b.cache_hits) == (30, 0, 0, 30)


def test_a_new_model_changes_every_hash():
    from shopsearch.indexer.records import Product

    p = Product(id="1", title="t")
    assert doc_hash(p, "model-a") != doc_hash(p, "model-b")


def test_an_incremental_run_replaces_int8_vectors_of_an_older_epoch(tmp_path, monkeypatch):
    import shopsearch.indexer.job as job

    path = write_jsonl(tmp_path / "c.jsonl", good_rows(20))
    sink, enc = MemorySink(), HashEncoder()
    enc.fingerprint += "|onnx-int8"  # int8 vectors: the ones whose cache epoch moved
    monkeypatch.setattr(job, "cache_fingerprint", lambda fp: fp)  # as indexed before the epoch was keyed
    _run(path, sink, enc, tmp_path)
    monkeypatch.undo()
    assert _run(path, sink, enc, tmp_path, mode="incremental").embedded == 20
    assert _run(path, sink, enc, tmp_path, mode="incremental").embedded == 0  # and only once


def test_bad_arguments(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", good_rows(1))
    sink, enc = MemorySink(), HashEncoder()
    with pytest.raises(ValueError, match="mode must be one of"):
        run_index(path, sink, enc, mode="partial")
    with pytest.raises(ValueError, match="alias must be a lowercase"):
        run_index(path, sink, enc, alias="Shop")
    with pytest.raises(ValueError, match="does not exist yet"):
        run_index(path, sink, enc, alias="shop", mode="incremental")
    with pytest.raises(FileNotFoundError):
        run_index(tmp_path / "none.jsonl", sink, enc)
    sink.create_index("plain", 8)
    with pytest.raises(ValueError, match="is a concrete index"):
        run_index(path, sink, enc, alias="plain")


def test_csv_catalog_with_field_mapping_and_progress_bar(tmp_path, capsys):
    from shopsearch.indexer.fields import load_field_mapping

    (tmp_path / "f.toml").write_text('id = "sku"\ntitle = "name"\ncategory = "crumbs"\ncategory_separator = "/"\n'
                                     'price = "cost"\nattributes = ["color"]\n')
    (tmp_path / "c.csv").write_text("sku,name,crumbs,cost,color,junk\n1,Oak desk,Home/Office,$120,brown,x\n"
                                    "2,Lamp,Home/Lighting,cheap,white,y\n", encoding="utf-8")
    sink = MemorySink()
    report = run_index(tmp_path / "c.csv", sink, HashEncoder(), alias="shop", mapping=load_field_mapping(
        tmp_path / "f.toml"), quarantine_path=tmp_path / "q.jsonl", progress=True)
    assert (report.indexed, report.quarantined) == (1, 1)
    assert sink.get("shop", "1") == {"id": "1", "title": "Oak desk", "description": "", "brand": None,
                                     "category": ["Home", "Office"], "price": 120.0, "rating": None,
                                     "review_count": None, "popularity": None, "in_stock": None,
                                     "attributes": {"color": "brown"}}
    (row,) = read_quarantine(tmp_path / "q.jsonl")
    assert (row.line, reason_code(row.reason)) == (3, "bad_price")
    out = capsys.readouterr()
    assert "rows" in out.err  # the progress bar
    assert "read 2, indexed 1, quarantined 1" in out.out and "bad_price 1" in out.out


def test_facet_attributes_reach_the_documents_and_the_index_meta(tmp_path):
    from shopsearch.indexer.fields import FieldMapping

    (tmp_path / "c.jsonl").write_text('{"id": "1", "title": "Oak desk", "color": "brown", "size": "L"}\n'
                                      '{"id": "2", "title": "Lamp", "color": "white"}\n', encoding="utf-8")
    sink = MemorySink()
    _run(tmp_path / "c.jsonl", sink, HashEncoder(), tmp_path, mapping=FieldMapping(facet_attributes=("color",)))
    index = sink.resolve_alias("shop")
    assert sink.index_meta(index)["facet_attributes"] == "color"
    assert {d.facet_attributes for d in sink.indices[index].values()} == {("color",)}
    # Declaring another facet attribute changes every hash, so an incremental run rewrites the products.
    before = dict(sink.scan_hashes(index))
    report = _run(tmp_path / "c.jsonl", sink, HashEncoder(), tmp_path, mode="incremental",
                  mapping=FieldMapping(facet_attributes=("color", "size")))
    assert report.unchanged == 0 and report.indexed == 2
    assert dict(sink.scan_hashes(index)).keys() == before.keys() != {}
    assert sink.index_meta(index)["facet_attributes"] == "color,size"


@pytest.mark.parametrize("value", [["a.b"], ["x"] * 2, "color", [""]])
def test_bad_facet_attributes_are_rejected(value):
    from shopsearch.indexer.fields import mapping_from_dict

    with pytest.raises(ValueError, match="facet_attributes"):
        mapping_from_dict({"facet_attributes": value})
