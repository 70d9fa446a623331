"""The console's grade list: stored before acknowledged, one row per (query, product), a judgment list compare reads."""

from __future__ import annotations

import threading

import pytest

from shopsearch.api import console_grades
from shopsearch.api.console_grades import HEADER, ConsoleGrades, GradesFull
from shopsearch.judgments import query_id_for, read_judgments


@pytest.fixture
def store(tmp_path):
    return ConsoleGrades(tmp_path / "judgments" / "console-grades.csv")


def test_a_grade_is_on_disk_when_given_and_a_new_store_reads_it(store):
    assert store.read() == [] and not store.path.exists()
    row, count = store.give("Red Lamp", "p6", 3, graded_by="alice")
    assert count == 1
    assert (row.query, row.product_id, row.grade, row.graded_by) == ("Red Lamp", "p6", 3, "alice")
    assert row.graded_at.endswith("Z")
    again = ConsoleGrades(store.path)  # another worker, or the app after a restart
    assert again.read() == [row]
    assert again.for_query("  red   LAMP ") == {"p6": 3}
    assert store.path.read_text().splitlines()[0] == ",".join(HEADER)


def test_regrade_replaces_in_place_withdraw_removes_and_the_first_text_wins(store):
    store.give("lamp", "p1", 1, graded_by="a")
    store.give("hose", "p9", 2, graded_by="a")
    row, count = store.give("LAMP", "p1", 3, graded_by="b")  # the same query, typed another way: a regrade
    assert count == 2
    assert (row.query, row.grade, row.graded_by) == ("lamp", 3, "b")
    assert store.give("Lamp", "p2", 0, graded_by="b")[0].query == "lamp"
    assert [(g.query, g.product_id, g.grade) for g in store.read()] == [
        ("lamp", "p1", 3), ("hose", "p9", 2), ("lamp", "p2", 0)]
    assert store.give("lamp", "p1", None, graded_by="b") == (None, 2)
    assert store.give("lamp", "p404", None, graded_by="b") == (None, 2)  # nothing to withdraw: nothing changes
    assert store.for_query("lamp") == {"p2": 0}


def test_the_list_is_a_csv_judgment_list_with_one_query_id_per_query(store):
    store.give("Lamp, red", "p1", 3, graded_by="a")
    store.give('16" "monitor"', "p2", 2, graded_by="a")
    store.give("lamp, RED", "p3", 1, graded_by="a")
    store.give("desk\rlamp", "p4", 2, graded_by="a")  # a bare carriage return is quoted, not a row break
    read = read_judgments(store.path)
    assert read.format == "csv"
    assert [(q.query_id, q.doc_id, q.relevance) for q in read.qrels] == [
        (query_id_for("Lamp, red"), "p1", 3), (query_id_for('16" "monitor"'), "p2", 2),
        (query_id_for("Lamp, red"), "p3", 1), (query_id_for("desk\rlamp"), "p4", 2)]
    assert [g.query for g in ConsoleGrades(store.path).read()][-1] == "desk\rlamp"


def test_a_query_shaped_like_a_formula_is_kept_as_a_text_cell_and_read_back_as_typed(store):
    """The list is downloaded and opened in spreadsheets; a graded query may be anything a shopper typed."""
    store.give("=HYPERLINK(\"http://evil\")", "p1", 3, graded_by="a")
    assert "\n\"'=HYPERLINK(\"\"http://evil\"\")\",p1,3," in store.path.read_text()
    assert ConsoleGrades(store.path).for_query("=hyperlink(\"http://evil\")") == {"p1": 3}
    assert list(read_judgments(store.path).queries.values()) == ["=HYPERLINK(\"http://evil\")"]


def test_concurrent_graders_lose_nothing(store):
    def grade(worker: int) -> None:
        own = ConsoleGrades(store.path)  # each thread its own object and lock descriptor, as two workers have
        for i in range(10):
            own.give(f"query {i % 3}", f"w{worker}-p{i}", i % 4, graded_by=f"w{worker}")

    threads = [threading.Thread(target=grade, args=(w,)) for w in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(g.product_id for g in store.read()) == sorted(f"w{w}-p{i}" for w in range(6) for i in range(10))


def test_a_failed_write_leaves_the_list_as_it_was(store, monkeypatch):
    store.give("lamp", "p1", 3, graded_by="a")
    before = store.path.read_bytes()

    def refuse(*_):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(console_grades.os, "replace", refuse)
    with pytest.raises(OSError):
        store.give("lamp", "p2", 1, graded_by="a")
    assert store.path.read_bytes() == before
    assert [p.name for p in store.path.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_a_full_list_refuses_new_rows_but_takes_regrades(store, monkeypatch):
    monkeypatch.setattr(console_grades, "MAX_GRADES", 2)
    store.give("lamp", "p1", 3, graded_by="a")
    store.give("lamp", "p2", 3, graded_by="a")
    with pytest.raises(GradesFull):
        store.give("lamp", "p3", 3, graded_by="a")
    assert store.give("lamp", "p2", 1, graded_by="a")[0].grade == 1


@pytest.mark.parametrize(("text", "message"), [
    ("query,product_id\nlamp,p1\n", r"^console-grades.csv:1: needs the columns .* missing grade"),
    ("query,product_id,grade\nlamp,p1,high\n", r"^console-grades.csv:2: grade must be an integer, got 'high'"),
    ("query,product_id,grade\nlamp,,1\n", r"^console-grades.csv:2: empty product_id"),
    ("query,product_id,grade\nlamp,p1,101\n", r"^console-grades.csv:2: grade must be from 0 to 100, got 101"),
    ("query,product_id,grade\nlamp,p1,-1.0\n", r"^console-grades.csv:2: grade must be from 0 to 100, got -1"),
    ("query,product_id,grade\nlamp,p1\n", r"^console-grades.csv:2: expected 3 columns"),
    ("query,product_id,grade\nlamp,p1,2\nLAMP,p1,3\n", r"^console-grades.csv:3: 'p1' is graded twice for 'LAMP'"),
    # a stray quote: the csv module reads on to the end of the file and refuses a field that large
    ('query,product_id,grade\n"lamp,p1,2\n' + "x,p2,1\n" * 30000, r"^console-grades.csv:\d+: .*unclosed quote"),
])
def test_a_malformed_list_names_its_line(store, text, message):
    store.path.parent.mkdir(parents=True)
    store.path.write_text(text)
    with pytest.raises(ValueError, match=message):
        store.read()
    with pytest.raises(ValueError, match=message):
        store.give("lamp", "p9", 1, graded_by="a")
    assert store.path.read_text() == text  # never overwritten by a list it could not read


def test_a_hand_written_list_without_the_audit_columns_is_read(store):
    store.path.parent.mkdir(parents=True)
    store.path.write_text("query,product_id,grade\nlamp,p1,2\n")
    assert store.for_query("Lamp") == {"p1": 2}
    store.give("lamp", "p2", 1, graded_by="a")
    assert [(g.product_id, g.graded_by) for g in store.read()] == [("p1", ""), ("p2", "a")]


def test_a_regrade_by_another_worker_is_seen_even_when_the_file_keeps_its_size(store):
    store.give("lamp", "p1", 2, graded_by="a")
    assert store.for_query("lamp") == {"p1": 2}  # read and cached here
    for grade in (3, 1, 0):  # the same size each time, within one clock tick or not
        ConsoleGrades(store.path).give("lamp", "p1", grade, graded_by="b")
        assert store.for_query("lamp") == {"p1": grade}


def test_a_worker_killed_while_grading_loses_no_acknowledged_grade(store):
    """SIGKILL mid-stream: the list still parses and holds every grade the worker had acknowledged. (The kernel
    keeps what was written, so this shows the rename never leaves a half list; the fsyncs are for a power cut.)"""
    import os
    import signal
    import subprocess
    import sys

    script = ("import sys\nfrom shopsearch.api.console_grades import ConsoleGrades\n"
              f"s = ConsoleGrades({str(store.path)!r})\n"
              "for i in range(100000):\n"
              "    s.give(f'query {i % 7}', f'p{i}', i % 4, graded_by='w')\n"
              "    print(f'p{i}', flush=True)\n")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    acked = [proc.stdout.readline().strip() for _ in range(40)]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    stored = {g.product_id for g in ConsoleGrades(store.path).read()}
    assert set(acked) <= stored
