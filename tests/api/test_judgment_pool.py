"""Judgment pooling: the unjudged products of the profiles' top k, as a worklist compare and merge read back."""

from __future__ import annotations

import argparse
import csv

import pytest

from shopsearch.api import cmd_judgments
from shopsearch.api.cli import main as cmd_main
from shopsearch.api.judgment_pool import Hole, pool_holes, unjudged_counts, write_worklist
from shopsearch.judgments import read_judgments

from .test_compare import CATALOG
from .test_compare import tiny_index  # noqa: F401  (the tiny catalog indexed, and its CSV judgments)


def test_pool_holes_lists_each_unjudged_product_once_at_its_best_rank():
    judged = {"q1": {"a", "z"}, "q2": set()}
    runs = {"x": {"q1": ["a", "b", "c", "d"], "q2": ["e"]}, "y": {"q1": ["c", "z", "b"]}}
    holes = pool_holes(judged, {"q2": "hose", "q1": "lamp", "q3": "drill"}, runs, depth=3)
    assert holes == [Hole("q2", "hose", "e", 1, ("x",)), Hole("q1", "lamp", "c", 1, ("x", "y")),
                     Hole("q1", "lamp", "b", 2, ("x", "y"))]  # d is below x's top 3; q3 was not ranked
    assert unjudged_counts(holes, ["x", "y"]) == {"x": 3, "y": 2}
    with pytest.raises(ValueError, match="depth must be >= 1"):
        pool_holes(judged, {}, runs, depth=0)


def test_the_worklist_is_read_back_as_judgments_once_rated(tmp_path):
    path = tmp_path / "worklist.csv"
    # a query judged from shoppers' logs holds what anyone typed: this one is shaped like a formula too
    holes = [Hole("q1", "red lamp", "p2", 1, ("bm25",)), Hole("q1", "red lamp", "p9", 4, ("bm25", "dense")),
             Hole("q2", "=cmd|' /C calc'!A0", "p3", 2, ("dense",))]
    write_worklist(path, holes, {"p2": "=HYPERLINK(\"http://evil\")", "p9": "Lamp, red"}, "http://shop:8000",
                   ["bm25", "dense"])
    rows = list(csv.reader(path.read_text().splitlines()))
    assert rows[0] == ["Query Text", "Doc ID", "Title", "Rating", "Best Rank", "Shown By", "Console"]
    assert rows[1] == ["red lamp", "p2", "'=HYPERLINK(\"http://evil\")", "", "1", "bm25",
                       "http://shop:8000/console?q=red+lamp&a=bm25&b=dense"]
    assert rows[2][2] == "Lamp, red" and rows[2][5] == "bm25 dense"
    assert rows[3][0] == "'=cmd|' /C calc'!A0"  # shown as text, and read back as typed below
    assert read_judgments(path).qrels == ()  # nothing rated yet: nothing judged, no error
    rows[2][3], rows[3][3] = "2", "1"  # a grader fills in two Ratings
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)
    read = read_judgments(path)
    assert read.format == "quepid" and [(q.doc_id, q.relevance) for q in read.qrels] == [("p9", 2), ("p3", 1)]
    assert sorted(read.queries.values()) == ["=cmd|' /C calc'!A0", "red lamp"]


def test_a_text_holding_a_bare_carriage_return_stays_in_its_row(tmp_path):
    path = tmp_path / "worklist.csv"
    write_worklist(path, [Hole("q1", "desk\rlamp", "p2", 1, ("bm25",))], {"p2": "Lamp\rshade"}, "http://shop",
                   ["bm25", "dense"])
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert len(rows) == 2 and rows[1][:3] == ["desk\rlamp", "p2", "Lamp\rshade"]


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="shopsearch")
    cmd_judgments.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.run(args)


def test_pool_command_writes_the_worklist_of_what_the_profiles_show_unjudged(
        tiny_index, tiny_bi_encoder_dir, tmp_path, capsys):  # noqa: F811
    d, root = tiny_index
    out = tmp_path / "worklist.csv"

    def pool(qrels, depth="3", queries=None):
        return _run(["judgments", "pool", "--index", "tiny", "--engine", "embedded", "--root", str(root), "--model",
                     str(tiny_bi_encoder_dir), "--qrels", str(qrels), "--no-progress", "--depth", depth, "--out",
                     str(out), *(["--queries", str(queries)] if queries else []), "bm25", "dense"])

    assert pool(d / "judgments.csv") == 0
    printed = capsys.readouterr().out
    with out.open() as f:
        rows = list(csv.DictReader(f))
    judged = {("red lamp", "p1"), ("red lamp", "p2"), ("oak table", "p2"), ("kettle", "p3")}
    assert rows and all((r["Query Text"], r["Doc ID"]) not in judged for r in rows)
    assert all(r["Rating"] == "" and 1 <= int(r["Best Rank"]) <= 3 for r in rows)
    titles = {p["id"]: p["title"] for p in CATALOG}
    assert all(r["Title"] == titles[r["Doc ID"]] for r in rows)
    assert f"{len(rows)} products to grade" in printed and "0 searches degraded" in printed
    for profile in ("bm25", "dense"):
        n = sum(1 for r in rows if profile in r["Shown By"].split())
        assert f"  {profile}: {n} of the " in printed
    # the worklist rated in a spreadsheet, merged into a copy of the list: pooling again finds nothing to grade
    with out.open() as f:
        cells = list(csv.reader(f))
    for row in cells[1:]:
        row[3] = "1"
    with open(out, "w", newline="") as f:
        csv.writer(f).writerows(cells)
    merged = tmp_path / "merged.txt"
    assert cmd_main(["judgments", "merge", str(d / "judgments.csv"), str(out), "--out", str(merged)]) == 0
    capsys.readouterr()
    assert pool(merged, queries=tmp_path / "merged-queries.tsv") == 0
    assert "0 products to grade" in capsys.readouterr().out
    with pytest.raises(ValueError, match="--depth must be between 1 and 100"):
        pool(merged, depth="101")
