"""Judgment and query readers (shopsearch.judgments) on tiny hand-made files of each format."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from shopsearch.judgments import (Qrel, Query, as_text_cell, detect_format, from_text_cell, query_id_for,
                                   read_judgments, read_qrels, read_queries, write_qrels, write_queries)


def _write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_trec_qrels(tmp_path):
    p = _write(tmp_path, "qrels.txt", "q1 0 d1 3\nq1 0 d2 0\n\nq2 0 d1 1\n")
    j = read_judgments(p)
    assert j.format == "trec"
    assert j.qrels == (Qrel("q1", "d1", 3), Qrel("q1", "d2", 0), Qrel("q2", "d1", 1))
    assert j.queries == {} and j.query_ids == ["q1", "q2"]


def test_the_record_is_ir_measures_qrel(tmp_path):
    import ir_measures

    assert Qrel is ir_measures.Qrel  # one record type: what the readers return goes straight into ir-measures
    p = _write(tmp_path, "qrels.txt", "q1 Q0 d1 2\n")
    assert read_judgments(p).qrels == (Qrel("q1", "d1", 2, "Q0"),)  # the iteration field is kept as written


@pytest.mark.parametrize("name, fmt, text, message", [
    ("qrels.txt", "trec", "q1 0 d1 3\nq1 0 d2 x\n", r"qrels.txt:2: grade must be an integer, got 'x'"),
    ("dup.txt", None, "q1 0 d1 3\nq1 0 d1 2\n", r"dup.txt:2: judgment for \(q1, d1\) appears twice"),
    ("j.csv", None, "query,product_id,grade\nlamp,p1,2\nlamp,p2,1.5\n",
     r"j.csv:3: grade must be an integer, got '1.5'"),
    ("w.csv", None, "query,product_id,grade\nlamp,p1\n", r"w.csv:2: expected 3 columns"),
    ("bad.csv", None, "query_id,query,product_id,esci_label\n7,lamp,B01,X\n",
     r"bad.csv:2: esci label must be one of .*got 'X'"),
    ("clash.csv", None, "query_id,query,product_id,esci_label\n7,lamp,B01,E\n7,desk,B02,E\n",
     r"clash.csv:3: query id '7' has text 'desk' here but 'lamp' earlier"),
    ("blank.csv", None, "query_id,query,product_id,esci_label\n7,  ,B01,E\n", r"blank.csv:2: empty query"),
    # a stray quote that pairs with a later one: two rows read as one, the second lost without a word
    ("stray.csv", None, 'query,product_id,grade\na,"p1,2\nb,"p2",3\n', r"stray.csv:\d: doc id .* spans lines"),
])
def test_judgment_file_errors_name_the_line(tmp_path, name, fmt, text, message):
    with pytest.raises(ValueError, match=message):
        read_judgments(_write(tmp_path, name, text), fmt)


def test_csv_generates_stable_query_ids(tmp_path):
    p = _write(tmp_path, "j.csv", "query,product_id,grade\nred lamp,p1,2\nred lamp,p2,0\n\"desk, oak\",p1,1\n")
    j = read_judgments(p)
    assert j.format == "csv"
    qid = query_id_for("red lamp")
    assert qid == "q" + __import__("hashlib").sha1(b"red lamp").hexdigest()[:12]
    assert j.qrels[:2] == (Qrel(qid, "p1", 2), Qrel(qid, "p2", 0))
    assert j.queries == {qid: "red lamp", query_id_for("desk, oak"): "desk, oak"}
    # the same text in another file gets the same id
    p2 = _write(tmp_path, "k.csv", "product_id,grade,query\np9,3,red lamp\n")
    assert read_judgments(p2).qrels == (Qrel(qid, "p9", 3),)


def test_esci_mapping(tmp_path):
    p = _write(tmp_path, "esci.csv",
               "example_id,query,query_id,product_id,product_locale,esci_label,small_version\n"
               "0,lamp,7,B01,us,E,1\n1,lamp,7,B02,us,S,1\n2,lamp,7,B03,us,C,1\n3,lamp,7,B04,us,I,1\n"
               "4,desk,8,B01,us,Exact,0\n")
    j = read_judgments(p)
    assert j.format == "esci"
    assert [q.relevance for q in j.qrels] == [3, 2, 1, 0, 3]
    assert j.queries == {"7": "lamp", "8": "desk"}


def test_esci_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = tmp_path / "examples.parquet"
    pq.write_table(pa.table({"query_id": [1, 1], "query": ["lamp", "lamp"], "product_id": ["B1", "B2"],
                             "esci_label": ["E", "I"]}), p)
    j = read_judgments(p)
    assert j.format == "esci" and j.qrels == (Qrel("1", "B1", 3), Qrel("1", "B2", 0))


def test_wands_tab_separated_with_query_file(tmp_path):
    _write(tmp_path, "query.csv", "query_id\tquery\tquery_class\n0\tsalon chair\tMassage Chairs\n")
    p = _write(tmp_path, "label.csv", "id\tquery_id\tproduct_id\tlabel\n0\t0\t25434\tExact\n1\t0\t12088\tIrrelevant\n"
                                      "2\t0\t42931\tPartial\n")
    j = read_judgments(p)
    assert j.format == "wands"
    assert j.qrels == (Qrel("0", "25434", 2), Qrel("0", "12088", 0), Qrel("0", "42931", 1))
    assert j.queries == {"0": "salon chair"}


def test_quepid_export_skips_unrated(tmp_path):
    p = _write(tmp_path, "quepid.csv",
               "Team Name,Owner Name,Owner Email,Query Text,Doc ID,Rating\n"
               "t,o,o@x,red lamp,d1,3\nt,o,o@x,red lamp,d2,\nt,o,o@x,desk,d1,1.0\n")
    j = read_judgments(p)
    assert j.format == "quepid"
    assert j.qrels == (Qrel(query_id_for("red lamp"), "d1", 3), Qrel(query_id_for("desk"), "d1", 1))


@given(st.text(alphabet=st.sampled_from("'=+-@\t\rab ,\""), max_size=8) | st.text(max_size=20))
def test_a_text_cell_mark_is_taken_off_exactly(text):
    cell = as_text_cell(text)
    assert from_text_cell(cell) == text
    assert cell[:1] not in ("=", "+", "-", "@", "\t", "\r")  # no spreadsheet runs it


def test_csv_and_quepid_lists_read_a_query_text_without_its_text_cell_mark(tmp_path):
    csv_list = _write(tmp_path, "grades.csv", "query,product_id,grade\n'=1+1,d1,2\n''-x,d2,1\n'plain',d3,0\n")
    quepid = _write(tmp_path, "worklist.csv", "Query Text,Doc ID,Rating\n'@SUM(A1),d1,3\n")
    assert sorted(read_judgments(csv_list).queries.values()) == ["'-x", "'plain'", "=1+1"]
    assert list(read_judgments(quepid).queries.values()) == ["@SUM(A1)"]


def test_detect_and_override(tmp_path):
    assert detect_format(_write(tmp_path, "float.txt", "q1 0 d1 3.0\nq1 0 d2 -2\n")) == "trec"  # as read_qrels reads
    p = _write(tmp_path, "weird.txt", "hello world\n")
    with pytest.raises(ValueError, match=r"weird.txt:1: cannot tell the judgment format"):
        detect_format(p)
    with pytest.raises(ValueError, match=r"empty.txt: the file is empty: no judgments to read"):
        detect_format(_write(tmp_path, "empty.txt", "\n"))
    with pytest.raises(ValueError, match=r"fmt must be one of trec, csv, esci, wands, quepid; got 'xml'"):
        read_judgments(p, "xml")
    # forcing a format whose columns are absent names them
    c = _write(tmp_path, "j.csv", "query,product_id,grade\nlamp,p1,1\n")
    with pytest.raises(ValueError, match=r"j.csv:1: quepid judgments need columns .*missing query_text"):
        read_judgments(c, "quepid")
    with pytest.raises(FileNotFoundError):
        read_judgments(tmp_path / "nope.txt")


def test_real_crowdflower_qrels(shared_data):
    j = read_judgments(shared_data / "crowdflower" / "qrels-dev.txt")
    assert j.format == "trec" and len(j.qrels) == 6397 and len(j.query_ids) == 168


def test_read_queries_and_qrels(tmp_path):
    q = _write(tmp_path, "q.tsv", "q1\tred lamp\n\nq2\t  oak table \n")
    assert read_queries(q) == [Query("q1", "red lamp"), Query("q2", "oak table")]
    r = _write(tmp_path, "qrels.txt", "q1 0 a 2\n\nq1 0 b 0\n")
    assert read_qrels(r) == [Qrel("q1", "a", 2, "0"), Qrel("q1", "b", 0, "0")]


@pytest.mark.parametrize("reader, text, message", [
    (read_queries, "q1\tok\nq2 no tab\n", r"q\.txt:2: expected 'qid<TAB>query text', found no tab"),
    (read_queries, "q1\tok\n\nq1\tagain\n", r"q\.txt:3: qid 'q1' appears twice"),
    (read_queries, "q1\t \n", r"q\.txt:1: empty query text"),
    (read_qrels, "q1 0 a 2\nq1 0 b\n", r"q\.txt:2: expected 4 fields 'qid iteration doc_id grade', got 3"),
    (read_qrels, "q1 0 a high\n", r"q\.txt:1: grade must be an integer, got 'high'"),
    (read_qrels, "q1 0 a 1\nq1 0 a 2\n", r"q\.txt:2: judgment for \(q1, a\) appears twice"),
])
def test_reader_errors_name_the_line(tmp_path, reader, text, message):
    path = _write(tmp_path, "q.txt", text)
    with pytest.raises(ValueError, match=message):
        reader(path)


def test_trec_writers_round_trip_and_refuse_what_would_not_read_back(tmp_path):
    qrels = [Qrel("q1", "p9", 3), Qrel("q1", "p2", 0), Qrel("q2", "p9", 1)]
    assert write_qrels(tmp_path / "q.txt", qrels) == 3 and read_qrels(tmp_path / "q.txt") == qrels
    queries = [Query("q1", "red lamp"), Query("q2", "mug")]
    assert write_queries(tmp_path / "q.tsv", queries) == 2 and read_queries(tmp_path / "q.tsv") == queries
    with pytest.raises(ValueError, match="doc_id must be non-empty without whitespace; got 'p 9'"):
        write_qrels(tmp_path / "x.txt", [Qrel("q1", "p 9", 1)])
    with pytest.raises(ValueError, match=r"judgment for \(q1, p9\) appears twice"):
        write_qrels(tmp_path / "x.txt", [Qrel("q1", "p9", 1), Qrel("q1", "p9", 2)])
    with pytest.raises(ValueError, match="query text must be non-blank"):
        write_queries(tmp_path / "x.tsv", [Query("q1", "red\tlamp")])
    with pytest.raises(ValueError, match="qid must be non-empty, without whitespace and unique; got 'q1'"):
        write_queries(tmp_path / "x.tsv", [Query("q1", "a"), Query("q1", "b")])
