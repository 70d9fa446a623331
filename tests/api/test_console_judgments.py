"""Judgment lookup and per-query nDCG for the relevance console (pure functions, tiny inputs)."""

from __future__ import annotations

import math

import pytest

from shopsearch.api.console_judgments import (METRIC, JudgmentList, build_judgments, load_judgments,
                                              scores_per_ranking)
from shopsearch.judgments import Qrel

from .pages_support import write_judgments


def test_build_judgments_first_qid_of_a_repeated_text_wins():
    jl = build_judgments([("a", "Lamp"), ("b", "lamp "), ("c", "hose")], [Qrel("b", "p1", 1), Qrel("a", "p2", 2)])
    assert jl.lookup("LAMP") == ("a", {"p2": 2})
    assert jl.lookup("hose") == ("c", {})
    assert jl.lookup("drill") == (None, {})
    assert jl.judged_queries == 1  # "b" is judged but no text maps to it


def test_load_judgments_reads_files_and_rereads_after_a_change(tmp_path):
    qrels, queries = write_judgments(tmp_path)
    jl = load_judgments(qrels, queries)
    assert isinstance(jl, JudgmentList) and jl.source == str(qrels)
    assert jl.lookup("cordless drill") == ("q2", {"p4": 3})
    assert load_judgments(qrels, queries) is jl  # cached while unchanged
    qrels.write_text("q2 0 p4 1\n")
    import os
    os.utime(qrels, (1, 1))  # a different mtime even within the filesystem's timestamp resolution
    assert load_judgments(qrels, queries).lookup("cordless drill") == ("q2", {"p4": 1})


def test_load_judgments_names_the_bad_line(tmp_path):
    qrels, queries = write_judgments(tmp_path)
    queries.write_text("q1\tlamp\nq2 no tab\n")
    with pytest.raises(ValueError, match=r"queries.tsv:2: expected 'qid<TAB>query text'"):
        load_judgments(qrels, queries)


def test_scores_per_ranking_linear_gains_and_empty_rankings():
    grades = {"a": 3, "b": 1, "c": 0}
    ideal = 3 + 1 / math.log2(3)
    scores = [s[METRIC] for s in scores_per_ranking(grades, [["a", "b"], ["b", "a"], [], ["x", "c"]])]
    assert scores == pytest.approx([1.0, (1 + 3 / math.log2(3)) / ideal, 0.0, 0.0])
    assert scores_per_ranking({}, [["a"]]) is None


def test_load_judgments_takes_query_text_from_a_csv_list(tmp_path):
    path = tmp_path / "judgments.csv"
    path.write_text("query,product_id,grade\nRed Lamp,p1,3\nred lamp,p2,1\n")
    jl = load_judgments(path)
    qid, grades = jl.lookup("red lamp")
    assert grades == {"p1": 3} and qid.startswith("q")  # "Red Lamp" came first; the other text is its own query
    assert jl.judged_queries == 1  # judged queries a typed text can reach (both texts fold to "red lamp")


def test_load_judgments_trec_without_queries_names_the_fix(tmp_path):
    qrels, _ = write_judgments(tmp_path)
    with pytest.raises(ValueError, match="carry no query text.*CONSOLE_QUERIES"):
        load_judgments(qrels)
