"""Readers stream JSONL/CSV/Parquet rows with 1-based line numbers and report unreadable rows, not raise."""

from __future__ import annotations

import json

import pytest

from shopsearch.indexer.readers import detect_format, read_rows


def test_jsonl_rows_errors_and_line_numbers(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_bytes(
        b'{"id": "1", "title": "Lamp"}\n'
        b"\n"  # blank: not a row
        b'{"id": "2", "title": "Caf\xe9 table"}\n'  # latin-1 byte: not UTF-8
        b'["not", "an", "object"]\n'
        b'{"id": "4", "title": "Chair"}\r\n'
        b'{"id": "5", "title": "Trunc')  # truncated last line, no newline
    rows = list(read_rows(path))
    assert [r.line for r in rows] == [1, 3, 4, 5, 6]
    assert rows[0].data == {"id": "1", "title": "Lamp"} and rows[0].error is None
    assert rows[1].data is None and rows[1].error.startswith("undecodable:")
    assert rows[1].raw == '{"id": "2", "title": "Caf\ufffd table"}'
    assert rows[2].error.startswith("unparsable_json: expected an object")
    assert rows[3].data == {"id": "4", "title": "Chair"}
    assert rows[4].error.startswith("unparsable_json:") and rows[4].raw == '{"id": "5", "title": "Trunc'
    assert all(r.source == str(path) for r in rows)


def test_csv_multiline_cells_bad_bytes_and_ragged_rows(tmp_path):
    path = tmp_path / "c.csv"
    path.write_bytes(
        b"\xef\xbb\xbfid,title,description\n"  # BOM on the header
        b'1,Lamp,"two\nlines"\n'
        b"2,Caf\xe9,x\n"
        b"3,Chair\n"
        b'4,"Desk, oak",y\n')
    rows = list(read_rows(path))
    assert [r.line for r in rows] == [2, 4, 5, 6]
    assert rows[0].data == {"id": "1", "title": "Lamp", "description": "two\nlines"}
    assert rows[1].error.startswith("undecodable") and "\ufffd" in rows[1].raw
    assert rows[2].error == "bad_csv_row: 2 cells, header has 3"
    assert rows[3].data["title"] == "Desk, oak"


def test_tsv_is_tab_separated(tmp_path):
    path = tmp_path / "c.tsv"
    path.write_text("id\ttitle\n1\tLamp, red\n", encoding="utf-8")
    assert [r.data for r in read_rows(path)] == [{"id": "1", "title": "Lamp, red"}]


def test_parquet_streams_in_record_batches(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    table = pa.table({"id": [str(i) for i in range(10)], "title": [f"t{i}" for i in range(10)],
                      "price": [float(i) for i in range(10)]})
    path = tmp_path / "c.parquet"
    pq.write_table(table, path, row_group_size=4)
    rows = list(read_rows(path, parquet_batch_rows=3))
    assert [r.line for r in rows] == list(range(1, 11))
    assert rows[9].data == {"id": "9", "title": "t9", "price": 9.0}
    assert json.loads(rows[0].raw) == {"id": "0", "title": "t0", "price": 0.0}


def test_reader_is_lazy(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"id": "1", "title": "a"}\n' * 3)
    it = read_rows(path)
    assert next(it).line == 1  # a generator: rows come one at a time


def test_bad_format_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match="unknown format '.xml'"):
        detect_format("c.xml")
    with pytest.raises(FileNotFoundError):
        read_rows(tmp_path / "nope.jsonl")
    with pytest.raises(ValueError, match="fmt must be one of"):
        read_rows(tmp_path / "x.jsonl", "xml")
