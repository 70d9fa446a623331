"""``shopsearch judgments from-logs``: UBI logs in, TREC qrels + queries + evidence out, readable by eval/compare;
``shopsearch judgments merge``: a judgment list and the grades added to it, one TREC qrels file out."""

from __future__ import annotations

import csv

import pytest

from shopsearch.api.cli import main
from shopsearch.api.console_grades import ConsoleGrades
from shopsearch.api.console_judgments import load_judgments
from shopsearch.judgments import query_id_for, read_judgments, read_qrels, read_queries
from shopsearch.plugin.ubi_store import JsonlUbiStore
from shopsearch.reranker.click_models import fit_click_model, serp_sessions
from shopsearch.reranker.sim_catalog import load_judged
from shopsearch.reranker.simulate import SimParams
from tests.reranker.simdata import write_tiny_data
from tests.reranker.test_click_models import simulated_ubi_logs


@pytest.fixture(scope="module")
def tiny_logs(tmp_path_factory):
    """Simulated UBI logs of the tiny judged data (4 queries, 2-3 products each) and the true grades."""
    data = load_judged(write_tiny_data(tmp_path_factory.mktemp("tiny-data")))
    queries, events = simulated_ubi_logs(data, SimParams(sessions=600, users=10, seed=3, order="random"))
    truth = {(query_id_for(data.queries[q]), pid): g for q, pool in data.qrels.items() for pid, g in pool.items()}
    return queries, events, truth


@pytest.mark.parametrize("model", ["coec", "pbm", "dbn"])
def test_from_logs_writes_qrels_queries_and_evidence(tmp_path, tiny_logs, model, capsys):
    queries, events, truth = tiny_logs
    JsonlUbiStore(tmp_path / "ubi").write(queries, events)
    out = tmp_path / "qrels-clicks.txt"
    rc = main(["judgments", "from-logs", "--model", model, "--out", str(out), "--ubi-dir", str(tmp_path / "ubi"),
               "--min-impressions", "20"])
    printed = capsys.readouterr().out
    assert rc == 0 and "wrote" in printed and f"SIMULATED: {len(queries)} of the {len(queries)}" in printed
    qrels = read_qrels(out)
    assert {(q.query_id, q.doc_id) for q in qrels} == set(truth)  # every tiny pair is shown > 20 times
    assert read_judgments(out).format == "trec" and all(0 <= q.relevance <= 3 for q in qrels)
    texts = {q.qid: q.text for q in read_queries(tmp_path / "qrels-clicks-queries.tsv")}
    assert texts[query_id_for("red lamp")] == "red lamp" and set(texts) == {q.query_id for q in qrels}
    # each query's top-graded product is its true grade-3 product
    for qid in texts:
        graded = {q.doc_id: q.relevance for q in qrels if q.query_id == qid}
        assert truth[(qid, max(graded, key=graded.get))] == 3
    with (tmp_path / "qrels-clicks-evidence.tsv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert list(rows[0]) == ["qid", "query", "doc_id", "grade", "estimate", "stderr", "impressions", "clicks",
                             "examinations"]
    assert all((r["examinations"] == "") == (model == "coec") for r in rows)  # COEC models no examination
    assert {(r["qid"], r["doc_id"], int(r["grade"])) for r in rows} == {(q.query_id, q.doc_id, q.relevance)
                                                                         for q in qrels}
    assert all(int(r["impressions"]) >= 20 and float(r["stderr"]) >= 0 for r in rows)


def test_from_logs_refuses_logs_without_a_click(tmp_path, tiny_logs, capsys):
    queries, _, _ = tiny_logs  # searches logged, no click yet: PBM graded every shown pair 3, COEC every pair 0
    JsonlUbiStore(tmp_path / "ubi").write(queries, [])
    for model in ("coec", "pbm"):
        assert main(["judgments", "from-logs", "--model", model, "--out", str(tmp_path / "q.txt"), "--ubi-dir",
                     str(tmp_path / "ubi"), "--min-impressions", "20"]) == 1
        assert "was clicked" in capsys.readouterr().err
    assert not (tmp_path / "q.txt").exists()


def test_from_logs_reads_the_engine_store_and_names_its_outputs(tmp_path, tiny_logs, monkeypatch, capsys):
    monkeypatch.setenv("SHOPSEARCH_HOME", str(tmp_path / "home"))
    queries, events, _ = tiny_logs
    JsonlUbiStore(tmp_path / "home" / "ubi").write(queries, events)
    out, qs, ev = tmp_path / "q.txt", tmp_path / "queries.tsv", tmp_path / "evidence.tsv"
    assert main(["judgments", "from-logs", "--model", "coec", "--out", str(out), "--queries-out", str(qs),
                 "--evidence-out", str(ev), "--engine", "embedded"]) == 0
    assert read_qrels(out) and read_queries(qs) and ev.is_file()
    # nothing shown often enough: exit 1 with a message saying what to do
    assert main(["judgments", "from-logs", "--model", "coec", "--out", str(out), "--engine", "embedded",
                 "--min-impressions", "100000"]) == 1
    assert "lower --min-impressions" in capsys.readouterr().err


@pytest.mark.parametrize("model", ["pbm", "dbn"])
def test_the_non_convergence_warning_fires_only_when_em_stopped_short(tmp_path, tiny_logs, model, capsys):
    queries, events, _ = tiny_logs
    JsonlUbiStore(tmp_path / "ubi").write(queries, events)
    sessions = serp_sessions(queries, events)
    n = fit_click_model(model, sessions, iterations=1000).iterations  # EM converges on its n-th iteration
    assert 1 < n < 1000

    def warned(iterations):
        assert main(["judgments", "from-logs", "--model", model, "--out", str(tmp_path / "q.txt"), "--ubi-dir",
                     str(tmp_path / "ubi"), "--min-impressions", "20", "--iterations", str(iterations)]) == 0
        return "before converging" in capsys.readouterr().err

    assert not warned(n)  # converged exactly on the last allowed iteration
    assert warned(n - 1)  # stopped with the last change still above the tolerance
    assert not warned(n + 1)


def test_from_logs_bad_input(tmp_path, capsys):
    assert main(["judgments", "from-logs", "--model", "pbm", "--out", str(tmp_path / "q.txt"),
                 "--ubi-dir", str(tmp_path / "missing")]) == 2
    assert "--ubi-dir" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()  # the home, say, instead of <home>/ubi
    assert main(["judgments", "from-logs", "--model", "pbm", "--out", str(tmp_path / "q.txt"),
                 "--ubi-dir", str(tmp_path / "empty")]) == 2
    assert "holds no ubi_queries.jsonl or ubi_events.jsonl" in capsys.readouterr().err
    (tmp_path / "empty" / "ubi_queries.jsonl").write_text("")
    assert main(["judgments", "from-logs", "--model", "pbm", "--out", str(tmp_path / "q.txt"),
                 "--ubi-dir", str(tmp_path / "empty")]) == 1
    assert "no first-page result list" in capsys.readouterr().err
    assert main(["judgments", "from-logs", "--model", "pbm", "--out", str(tmp_path / "q.txt"),
                 "--ubi-dir", str(tmp_path / "empty"), "--min-impressions", "0"]) == 2
    assert main(["judgments", "from-logs", "--model", "pbm", "--out", str(tmp_path / "q.txt"),
                 "--evidence-out", str(tmp_path / "q.txt"), "--ubi-dir", str(tmp_path / "empty")]) == 2
    assert "must be three files" in capsys.readouterr().err  # the evidence would have replaced the qrels
    assert main(["judgments"]) == 2



def test_an_unwritable_output_or_an_unreachable_engine_is_one_line_not_a_traceback(tmp_path, tiny_logs, capsys):
    queries, events, _ = tiny_logs
    JsonlUbiStore(tmp_path / "ubi").write(queries, events)
    (tmp_path / "out").mkdir()
    assert main(["judgments", "from-logs", "--model", "coec", "--out", str(tmp_path / "out"), "--ubi-dir",
                 str(tmp_path / "ubi"), "--min-impressions", "20"]) == 2
    err = capsys.readouterr().err
    assert "Is a directory" in err and "Traceback" not in err
    assert main(["judgments", "from-logs", "--model", "coec", "--out", str(tmp_path / "q.txt"), "--engine",
                 "opensearch", "--url", "http://127.0.0.1:1"]) == 1  # nothing listens there
    err = capsys.readouterr().err
    assert "unreachable" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_simulated_events_are_counted_and_a_false_flag_written_as_text_is_not(tmp_path, tiny_logs, capsys):
    queries, events, _ = tiny_logs
    args = ["judgments", "from-logs", "--model", "pbm", "--out", str(tmp_path / "q.txt"), "--ubi-dir",
            str(tmp_path / "ubi"), "--min-impressions", "20"]
    # searches not marked (an API that took no `simulated`), their events marked: still SIMULATED
    unmarked = [q.model_copy(update={"query_attributes": {}}) for q in queries]
    JsonlUbiStore(tmp_path / "ubi").write(unmarked, events)
    assert main(args) == 0
    assert f"SIMULATED: 0 of the {len(queries)} logged searches and {len(events)} of the {len(events)} events" \
        in capsys.readouterr().out
    # "false" as a UBI client storing attributes as strings writes it: not simulated
    written_as_text = [q.model_copy(update={"query_attributes": {"simulated": "false"}}) for q in queries]
    real = [e.model_copy(update={"event_attributes": e.event_attributes.model_copy(update={"simulated": False})})
            for e in events]
    (tmp_path / "ubi").rename(tmp_path / "old")
    JsonlUbiStore(tmp_path / "ubi").write(written_as_text, real)
    assert main(args) == 0
    assert "SIMULATED" not in capsys.readouterr().out


def test_a_product_id_with_whitespace_is_left_out_not_every_grade(tmp_path, tiny_logs, capsys):
    queries, events, truth = tiny_logs
    odd = sorted(pid for _, pid in truth)[0]
    rename = lambda pid: "SKU 1" if pid == odd else pid  # noqa: E731
    queries = [q.model_copy(update={"query_response_hit_ids": [rename(p) for p in q.query_response_hit_ids]})
               for q in queries]
    events = [e.model_copy(update={"event_attributes": e.event_attributes.model_copy(update={
        "object": e.event_attributes.object.model_copy(
            update={"object_id": rename(e.event_attributes.object.object_id)})})}) for e in events]
    JsonlUbiStore(tmp_path / "ubi").write(queries, events)
    out = tmp_path / "q.txt"
    assert main(["judgments", "from-logs", "--model", "coec", "--out", str(out), "--ubi-dir", str(tmp_path / "ubi"),
                 "--min-impressions", "20"]) == 0
    assert "ids with whitespace cannot be written as TREC qrels ('SKU 1')" in capsys.readouterr().err
    written = {q.doc_id for q in read_qrels(out)}
    assert "SKU 1" not in written and written == {pid for _, pid in truth} - {odd}


def test_merge_puts_the_consoles_grades_into_a_trec_list(tmp_path, capsys):
    (tmp_path / "qrels.txt").write_text("q1 Q0 p1 3\nq1 Q0 p2 0\nq2 0 p4 3\n")
    (tmp_path / "queries.tsv").write_text("q1\tRed Lamp\nq2\tdrill\n")
    # the console's grade list (by query text, who and when): "red  lamp" is q1's query, "kettle" a new one
    grades = ConsoleGrades(tmp_path / "console-grades.csv")
    grades.give("red  lamp", "p6", 3, graded_by="alice")
    grades.give("red lamp", "p2", 1, graded_by="alice")
    grades.give("kettle", "p3", 2, graded_by="bob")
    out = tmp_path / "merged.txt"
    assert main(["judgments", "merge", str(tmp_path / "qrels.txt"), str(tmp_path / "console-grades.csv"),
                 "--queries", str(tmp_path / "queries.tsv"), "--out", str(out)]) == 0
    assert "2 grades added, 1 changed, 1 new queries" in capsys.readouterr().out
    kettle = query_id_for("kettle")
    assert [(q.query_id, q.doc_id, q.relevance) for q in read_qrels(out)] == [
        ("q1", "p1", 3), ("q1", "p2", 1), ("q2", "p4", 3), ("q1", "p6", 3), (kettle, "p3", 2)]
    assert [(q.qid, q.text) for q in read_queries(tmp_path / "merged-queries.tsv")] == [
        ("q1", "Red Lamp"), ("q2", "drill"), (kettle, "kettle")]
    assert out.read_text().splitlines()[:2] == ["q1 Q0 p1 3", "q1 Q0 p2 1"]  # the base's iteration field kept
    # every grade withdrawn: a header alone adds nothing, and is no error
    for text, doc in (("red  lamp", "p6"), ("red  lamp", "p2"), ("kettle", "p3")):
        grades.give(text, doc, None, graded_by="alice")
    assert main(["judgments", "merge", str(tmp_path / "qrels.txt"), str(tmp_path / "console-grades.csv"),
                 "--queries", str(tmp_path / "queries.tsv"), "--out", str(out)]) == 0
    assert "0 grades added, 0 changed, 0 new queries" in capsys.readouterr().out


def test_merge_files_a_grade_under_a_judged_query_of_the_same_normalised_text(tmp_path, capsys):
    (tmp_path / "qrels.txt").write_text("cf2 0 p1 3\n")
    # the queries file lists "Red Lamp" (never judged) before "red lamp" (judged): both normalise to "red lamp"
    (tmp_path / "queries.tsv").write_text("cf1\tRed Lamp\ncf2\tred lamp\ncf3\tRED  LAMP\n")
    (tmp_path / "added.csv").write_text("query,product_id,grade\nred lamp,p2,2\nred LAMP,p3,1\nRED  LAMP,p4,0\n")
    out = tmp_path / "merged.txt"
    assert main(["judgments", "merge", str(tmp_path / "qrels.txt"), str(tmp_path / "added.csv"),
                 "--queries", str(tmp_path / "queries.tsv"), "--out", str(out)]) == 0
    # all three are one query, as the console has them: the judged cf2, never its unjudged twins cf1 and cf3
    assert [(q.query_id, q.doc_id) for q in read_qrels(out)] == [("cf2", "p1"), ("cf2", "p2"), ("cf2", "p3"),
                                                                  ("cf2", "p4")]
    # with no judged twin, the first: one query, as the console then shows it (not split by case)
    (tmp_path / "qrels.txt").write_text("cf9 0 p1 3\n")
    (tmp_path / "queries.tsv").write_text("cf1\tRed Lamp\ncf3\tRED  LAMP\ncf9\tdrill\n")
    assert main(["judgments", "merge", str(tmp_path / "qrels.txt"), str(tmp_path / "added.csv"),
                 "--queries", str(tmp_path / "queries.tsv"), "--out", str(out)]) == 0
    assert [q.query_id for q in read_qrels(out)] == ["cf9", "cf1", "cf1", "cf1"]
    assert load_judgments(out, tmp_path / "merged-queries.tsv").lookup("RED  LAMP") == ("cf1", {"p2": 2, "p3": 1,
                                                                                               "p4": 0})


def test_merge_needs_query_text_on_both_sides(tmp_path, capsys):
    (tmp_path / "qrels.txt").write_text("q1 0 p1 3\n")
    (tmp_path / "more.txt").write_text("q1 0 p2 1\n")
    base = ["judgments", "merge", str(tmp_path / "qrels.txt"), str(tmp_path / "more.txt"), "--out",
            str(tmp_path / "x.txt")]
    assert main(base) == 2 and "carry no query text; give --queries" in capsys.readouterr().err
    (tmp_path / "queries.tsv").write_text("q1\tlamp\n")
    assert main([*base, "--queries", str(tmp_path / "queries.tsv")]) == 2
    assert "more.txt: trec judgments carry no query text to match" in capsys.readouterr().err
    assert not (tmp_path / "x.txt").exists()
    # a base query without text, or the two outputs on one file: nothing is written
    (tmp_path / "qrels.txt").write_text("q1 0 p1 3\nq9 0 p2 1\n")
    (tmp_path / "csv.csv").write_text("query,product_id,grade\nlamp,p3,2\n")
    merge = ["judgments", "merge", str(tmp_path / "qrels.txt"), str(tmp_path / "csv.csv"), "--queries",
             str(tmp_path / "queries.tsv"), "--out", str(tmp_path / "x.txt")]
    assert main(merge) == 2 and "query 'q9' has no text in" in capsys.readouterr().err
    (tmp_path / "qrels.txt").write_text("q1 0 p1 3\n")
    assert main([*merge, "--queries-out", str(tmp_path / "x.txt")]) == 2
    assert "--out and --queries-out are the same file" in capsys.readouterr().err
    assert not (tmp_path / "x.txt").exists()


def test_the_evidence_tsv_writes_a_query_shaped_like_a_formula_as_a_text_cell(tmp_path):
    """Shoppers type anything; the evidence is meant to be read in a spreadsheet, which must not run it."""
    from types import SimpleNamespace

    from shopsearch.api.cmd_judgments import _write_evidence

    graded = [SimpleNamespace(qid="q1", query="=HYPERLINK(\"http://evil\")", doc_id="p1", grade=2, estimate=0.5,
                              stderr=0.1, impressions=30, clicks=9, examinations=float("nan"))]
    _write_evidence(tmp_path / "evidence.tsv", graded)
    with (tmp_path / "evidence.tsv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert rows[0]["query"] == "'=HYPERLINK(\"http://evil\")" and rows[0]["examinations"] == ""
