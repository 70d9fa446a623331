"""``shopsearch train ranker --judgments``: judged queries through the served pipeline of a real embedded index."""

from __future__ import annotations

import argparse
import json

import pytest

from shopsearch.judgments import read_queries

from .conftest import build_catalog

JUDGMENTS = """query,product_id,grade
lamp,p1,3
lamp,p7,1
desk lamp,p1,3
desk lamp,p8,1
drill,p4,3
hammer,p5,3
garden hose,p6,3
ceiling light,p3,3
"""


def test_train_ranker_from_judgments_holds_a_fold_out(tmp_path, tiny_encoder, tiny_bi_encoder_dir, capsys):
    from shopsearch.api import cmd_train_ranker
    from shopsearch.plugin.engines import open_engine

    engine = open_engine("embedded", root=tmp_path / "embedded")
    build_catalog(engine, tiny_encoder)
    engine.close()
    (tmp_path / "j.csv").write_text(JUDGMENTS)
    parser = argparse.ArgumentParser()
    cmd_train_ranker.register(parser.add_subparsers())
    out = tmp_path / "models" / "ltr"
    argv = ["ranker", "--judgments", str(tmp_path / "j.csv"), "--index", "catalog", "--engine", "embedded", "--root",
            str(tmp_path / "embedded"), "--model", str(tiny_bi_encoder_dir), "--profile", "ltr", "--folds", "3",
            "--fold", "0", "--out", str(out), "--no-progress"]
    args = parser.parse_args(argv)
    assert args.run(args) == 0
    card = json.loads((out / "model_card.json").read_text())
    assert card["target"] == "relevance" and card["data"]["profile"] == "ltr" and card["data"]["depth"] == 50
    held = {q.qid for q in read_queries(out / "heldout-queries.tsv")}
    assert held == set(card["data"]["heldout_queries"]) and card["heldout"]["queries"] == len(held) == 2
    assert card["data"]["queries"] == 4 and len(card["cv"]["folds"]) == 2
    assert len(card["data"]["judgments_sha256"]) == 64 and "ndcg@10" in card["heldout"]["model"]
    # --rows-cache: the first run writes the rows, a second run with other folds reads them back unchanged; other
    # judgments rebuild them.
    cached = [*argv, "--rows-cache", str(tmp_path / "rows.npz")]
    first = parser.parse_args(cached)
    assert first.run(first) == 0 and (tmp_path / "rows.npz").is_file()
    capsys.readouterr()
    again = parser.parse_args([*argv[:-7], "--folds", "3", "--fold", "1", "--out", str(out), "--no-progress",
                               "--rows-cache", str(tmp_path / "rows.npz")])
    assert again.run(again) == 0
    assert "rows from" in capsys.readouterr().out
    assert json.loads((out / "model_card.json").read_text())["heldout"]["fold"] == 1
    tuned = parser.parse_args([*argv[:-7], "--folds", "3", "--fold", "1", "--out", str(out), "--no-progress",
                               "--rows-cache", str(tmp_path / "rows.npz"), "--tune"])
    assert tuned.run(tuned) == 0
    assert "CV by query: tuned num_leaves " in capsys.readouterr().out
    assert json.loads((out / "model_card.json").read_text())["tuning"]["metric"] == "ndcg@10"
    (tmp_path / "j.csv").write_text(JUDGMENTS + "hammer,p4,1\n")
    assert again.run(again) == 0
    assert "rows from" not in capsys.readouterr().out
    # --unjudged skip: rows of judged products only, and not the cached rows with unjudged ones labelled 0
    fold1 = json.loads((out / "model_card.json").read_text())["data"]["heldout_queries"]
    skip = parser.parse_args([*argv[:-7], "--folds", "3", "--fold", "1", "--out", str(out), "--no-progress",
                              "--rows-cache", str(tmp_path / "rows.npz"), "--unjudged", "skip"])
    assert skip.run(skip) == 0
    assert "rows from" not in capsys.readouterr().out
    card = json.loads((out / "model_card.json").read_text())
    # the same held-out fold as without it: the folds are cut from every judged query
    assert card["data"]["unjudged"] == "skip" and card["data"]["heldout_queries"] == fold1
    assert card["data"]["rows"] <= (JUDGMENTS + "hammer,p4,1\n").count("\n") - 1  # judged pairs
    # a run on every query leaves no held-out list naming queries it trained on
    whole = parser.parse_args([*argv[:-7], "--folds", "3", "--out", str(out), "--no-progress"])
    assert whole.run(whole) == 0 and not (out / "heldout-queries.tsv").exists()
    bad = parser.parse_args(["ranker", "--logs", "--out", str(out), "--rows-cache", "r.npz"])
    with pytest.raises(ValueError, match="--rows-cache is for --judgments"):
        bad.run(bad)
    bad = parser.parse_args(["ranker", "--judgments", "j.csv", "--out", str(out), "--bi-encoder", "x"])
    with pytest.raises(ValueError, match="--cross-encoder / --bi-encoder are for --events"):
        bad.run(bad)
    # a flag that does not apply to the source is an error, not silently ignored
    for argv, message in ((["--logs", "--cross-encoder", "ce"], "--cross-encoder / --bi-encoder are for --events"),
                          (["--logs", "--queries", "q.tsv"], "--queries is for --judgments"),
                          (["--logs", "--unjudged", "skip"], "--unjudged is for --judgments"),
                          (["--events", "home/ubi/ubi_events.jsonl", "--data", "d"], "a UBI log; read the UBI logs"),
                          (["--judgments", "j.csv", "--ubi-dir", "ubi"], "--ubi-dir is for --logs"),
                          (["--logs", "--profile", "nope"], "--profile is for --judgments"),
                          (["--logs", "--data", "d"], "--data is for --events"),
                          (["--logs", "--objective", "binary", "--label-gain", "linear"],
                           "--label-gain and --position-debias are for --objective lambdarank"),
                          (["--logs", "--objective", "binary", "--position-debias"],
                           "--label-gain and --position-debias are for --objective lambdarank"),
                          (["--judgments", "j.csv", "--members", "0"], r"--members 0: must be in 1\.\.32")):
        bad = parser.parse_args(["ranker", *argv, "--out", str(out)])
        with pytest.raises(ValueError, match=message):
            bad.run(bad)
