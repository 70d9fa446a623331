"""Readers stream JSONL/CSV/Parquet rows with 1-based line numbers and report unreadable rows, not raise."""

from __future__ import annotations

import csv
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
    assert rows[1].error.startswith("undecodable:") and rows[1].data["id"] == "2"  # read only to name the product
    assert rows[1].raw == '{"id": "2", "title": "Caf\ufffd table"}'
    assert rows[2].error.startswith("unparsable_json: expected an object") and rows[2].data is None
    assert rows[3].data == {"id": "4", "title": "Chair"}
    assert rows[4].error == "unparsable_json: Unterminated string starting at column 22"
    assert rows[4].raw == '{"id": "5", "title": "Trunc'
    assert rows[4].data == {"id": "5"}
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


def test_a_byte_order_mark_is_skipped_in_jsonl_and_before_a_quoted_csv_header(tmp_path):
    jsonl, csv_ = tmp_path / "c.jsonl", tmp_path / "c.csv"
    jsonl.write_bytes(b'\xef\xbb\xbf{"id": "1", "title": "Lamp"}\n')
    csv_.write_bytes(b'\xef\xbb\xbf"id","title"\n"1","Lamp"\n')  # R's write.csv, Excel's "CSV UTF-8"
    assert [r.data for r in read_rows(jsonl)] == [{"id": "1", "title": "Lamp"}]
    assert [r.data for r in read_rows(csv_)] == [{"id": "1", "title": "Lamp"}]


@pytest.mark.parametrize("suffix", [".tsv", ".csv"])
def test_a_field_that_only_starts_with_a_quote_swallows_no_rows(tmp_path, suffix):
    """The csv module reads a field opened by a quote up to the next quote, rows later; where every line between
    is a whole row by itself, they are those rows. A real multi-line cell stays one record."""
    sep = "\t" if suffix == ".tsv" else ","
    path = tmp_path / f"c{suffix}"
    text = ("id|title|price\n1|\"Frozen Anna doll|9\n2|Lamp|5\n3|Samsung 32\" TV|300\n"
            "4|\"Oak desk, two\nlines\"|7\n5|Rake|2\n").replace("|", sep)
    path.write_text(text, encoding="utf-8")
    rows = list(read_rows(path))
    assert [(r.line, r.error) for r in rows] == [(2, None), (3, None), (4, None), (5, None), (7, None)]
    assert [r.data["title"] for r in rows] == ['"Frozen Anna doll', "Lamp", 'Samsung 32" TV', "Oak desk, two\nlines",
                                               "Rake"]


def test_a_stray_quote_closed_by_an_inch_mark_before_a_comma_swallows_no_rows(tmp_path):
    path = tmp_path / "c.csv"  # well-formed by the strict rules, but each line is a row of its own
    path.write_text('id,title,price\np1,"Frozen doll,9\np2,Lamp,5\np3,TV 32",300\np4,Rake,2\n', encoding="utf-8")
    assert [(r.line, r.data["id"], r.data["title"]) for r in read_rows(path)] == [
        (2, "p1", '"Frozen doll'), (3, "p2", "Lamp"), (4, "p3", 'TV 32"'), (5, "p4", "Rake")]


def test_a_row_with_a_cell_too_many_names_only_its_first_column(tmp_path):
    path = tmp_path / "c.csv"  # which cell shifted is unknown: a later column's value would name another product
    path.write_text("title,id,price\nDesk, oak,p9,7\n", encoding="utf-8")
    (row,) = read_rows(path)
    assert row.error == "bad_csv_row: 4 cells, header has 3" and row.data == {"title": "Desk"}


def test_a_well_formed_multi_line_csv_cell_stays_one_record_whatever_commas_its_lines_hold(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text('id,title,price\n6,"Lamp, red\nwarm, dim",7\n7,Rake,2\n', encoding="utf-8")  # 3 cells a line
    assert [(r.line, r.data) for r in read_rows(path)] == [(2, {"id": "6", "title": "Lamp, red\nwarm, dim", "price": "7"}),
                                                         (4, {"id": "7", "title": "Rake", "price": "2"})]


def test_tsv_is_tab_separated(tmp_path):
    path = tmp_path / "c.tsv"
    path.write_text("id\ttitle\n1\tLamp, red\n", encoding="utf-8")
    assert [r.data for r in read_rows(path)] == [{"id": "1", "title": "Lamp, red"}]


def test_an_unquoted_tsv_keeps_the_quotes_its_text_holds(tmp_path):
    """An unquoted export (jq @tsv, a database's) writes a title that starts with a quote as it is; the csv module
    would read ``"Frozen" doll`` as ``Frozen doll``. A cell quoted whole (``"32"" TV"``, or ``"Lamp, red"`` by a
    writer that quotes more than it must) still reads as one quoted cell, and so does every cell of a file whose
    header is quoted."""
    path = tmp_path / "c.tsv"
    path.write_text('id\ttitle\tnote\n1\t"Frozen" doll\t"Lamp, red"\n2\t"32"" TV"\t""\n3\t"a\tb"\tx\n',
                    encoding="utf-8")
    assert [r.data for r in read_rows(path)] == [{"id": "1", "title": '"Frozen" doll', "note": "Lamp, red"},
                                                 {"id": "2", "title": '32" TV', "note": ""},
                                                 {"id": "3", "title": "a\tb", "note": "x"}]
    path.write_text('"id"\t"title"\n"1"\t"Frozen doll"\n', encoding="utf-8")
    assert [r.data for r in read_rows(path)] == [{"id": "1", "title": "Frozen doll"}]
    written = [["id", "title"], ["1", '"Frozen" doll'], ["2", '32" TV'], ["3", "plain"]]
    with (tmp_path / "w.tsv").open("w", newline="", encoding="utf-8") as f:  # the csv module's own TSV writer
        csv.writer(f, csv.excel_tab).writerows(written)
    assert [list(r.data.values()) for r in read_rows(tmp_path / "w.tsv")] == written[1:]


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
