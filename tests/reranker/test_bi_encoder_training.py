"""Bi-encoder fine-tuning: pure mining/rows/batching, and a tiny end-to-end run with the tiny model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from shopsearch.reranker.bi_encoder_training import (BiTrainConfig, build_rows,
                                                     no_duplicate_batches, train_bi_encoder)
from shopsearch.reranker.hard_negatives import mine_hard_negatives
from shopsearch.reranker.training_data import load_judged_set, split_queries

WORDS = ["lamp", "table", "kettle", "scarf", "mug", "towel", "chair", "sofa", "rug", "clock"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """A tiny shared-layout folder: 10 queries, 30 products, graded judgments."""
    d = tmp_path_factory.mktemp("bi-data")
    products = [{"id": f"p{i:02d}", "title": f"{WORDS[i % 10]} model {i}", "description": f"a fine {WORDS[i % 10]}"}
                for i in range(30)]
    (d / "products.jsonl").write_text("".join(json.dumps(p) + "\n" for p in products))
    queries, qrels, scores = [], [], []
    for q, word in enumerate(WORDS):
        queries.append(f"q{q}\t{word}\n")
        for i in range(30):
            if i % 10 == q:
                grade = 3 if i < 10 else 2
            elif i % 10 == (q + 1) % 10 and i < 10:
                grade = 0
            else:
                continue
            qrels.append(f"q{q} 0 p{i:02d} {grade}\n")
            scores.append(f"q{q}\tp{i:02d}\t{grade + 1}.0\n")
    (d / "queries-dev.tsv").write_text("".join(queries))
    (d / "qrels-dev.txt").write_text("".join(qrels))
    (d / "scores-dev.tsv").write_text("".join(scores))
    return d


def test_mining_never_returns_judged_relevant():
    ranked = {"q": ["a", "b", "c", "a", "d", "e"]}
    grades = {"q": {"a": 3, "b": 0, "d": 1}}
    assert mine_hard_negatives(ranked, grades, depth=4) == {"q": ["b", "c"]}  # top 4 unique: a b c d


def test_rows_and_split(data_dir):
    data = load_judged_set(data_dir)
    split = split_queries({j.query_id for j in data.qrels}, valid_fraction=0.0, test_fraction=0.2, seed=42)
    assert len(split.test) == 2 and not split.train & split.test
    texts = {f"p{i:02d}": f"text {i}" for i in range(30)}
    negatives = {"q0": ["p01", "p00", "p05"]}  # p00 is relevant to q0: never used
    cfg = BiTrainConfig(str(data_dir), "unused", hard_negatives=2, max_positives_per_query=2, seed=1)
    rows = build_rows(data, ["q0", "q1"], negatives, texts, cfg)
    q0 = [r for q, r in rows if q == "q0"]
    assert len(rows) == 4 and len(q0) == 2
    assert all(len(r) == 4 for _, r in rows)  # query, positive, 2 negatives
    assert q0[0][:2] == ("lamp", "text 0")  # grade 3 before grade 2
    assert {n for r in q0 for n in r[2:]} == {"text 1", "text 5"}
    relevant_q1 = {"text 1", "text 11", "text 21"}
    assert not relevant_q1 & {n for q, r in rows if q == "q1" for n in r[2:]}  # random top-ups avoid relevant


def test_batches_have_no_duplicate_query():
    qids = ["a"] * 5 + ["b"] * 3 + ["c"]
    batches = no_duplicate_batches(qids, 2, np.random.default_rng(0))
    assert sorted(i for b in batches for i in b) == list(range(9))
    assert all(len({qids[i] for i in b}) == len(b) <= 2 for b in batches)


def test_config_validation(data_dir):
    with pytest.raises(ValueError, match=r"batch_size=1 must be >= 2"):
        BiTrainConfig(str(data_dir), "x", batch_size=1).validate()
    with pytest.raises(ValueError, match=r"test_fraction=0.0 must be in \(0, 1\)"):
        BiTrainConfig(str(data_dir), "x", test_fraction=0.0).validate()
    with pytest.raises(ValueError, match=r"fold=3 must be in 0 .. folds-1"):
        BiTrainConfig(str(data_dir), "x", folds=3, fold=3).validate()


def test_folds_hold_out_every_query_once(data_dir):
    qids = {j.query_id for j in load_judged_set(data_dir).qrels}
    splits = [BiTrainConfig(str(data_dir), "x", folds=5, fold=f, seed=0).split(qids) for f in range(5)]
    assert sorted(q for s in splits for q in s.test) == sorted(qids)
    assert all(s.train == qids - s.test and not s.valid for s in splits)
    # over the same queries these are the ranker's folds (train ranker --folds 5 --fold I, seed 0)
    assert splits[2].test == split_queries(qids, folds=5, fold=2, valid_fraction=0.0, seed=0).test


def test_tiny_end_to_end(data_dir, tiny_bi_encoder_dir, tmp_path):
    from shopsearch.indexer.embedder import BiEncoder

    out = tmp_path / "bi-tiny"
    cfg = BiTrainConfig(str(data_dir), str(out), base_model=str(tiny_bi_encoder_dir), epochs=2, batch_size=4,
                        lr=1e-3, hard_negatives=1, max_length=32, device="cpu")
    ranked = {f"q{q}": [f"p{i:02d}" for i in range(30)] for q in range(10)}
    result = train_bi_encoder(cfg, ranked)
    card = json.loads((out / "model_card.json").read_text())
    assert result.steps == card["metrics"]["steps"] >= 12 and result.train_queries == 8  # >= 24 rows / 4, x2
    assert card["data"]["rows"] == result.rows == 8 * 3  # each train query: 3 positives (grade >= 2)
    assert card["data"]["queries_with_mined_negatives"] == 8 and len(card["data"]["rows_sha256"]) == 64
    heldout = [line.split("\t")[0] for line in (out / "heldout-queries.tsv").read_text().splitlines()]
    assert sorted(heldout) == sorted(result.heldout_queries) and len(heldout) == 2
    assert "Held-out nDCG@10" in (out / "README.md").read_text()
    assert 0.0 <= result.heldout_ndcg_before <= 1.0 and 0.0 <= result.heldout_ndcg_after <= 1.0
    # the saved model loads through the indexer's resolution and differs from the base
    enc, base = BiEncoder(str(out), device="cpu"), BiEncoder(str(tiny_bi_encoder_dir), device="cpu")
    assert enc.dims == 32 and not np.allclose(enc.encode(["lamp"]), base.encode(["lamp"]))


def test_cli_mines_from_index(data_dir, tiny_bi_encoder_dir, tmp_path, capsys):
    from shopsearch.api import cmd_train_bi_encoder
    from shopsearch.api.cli import main

    root = tmp_path / "engine"
    assert main(["index", str(data_dir / "products.jsonl"), "--index", "tinybi", "--engine", "embedded", "--root",
                 str(root), "--full", "--model", str(tiny_bi_encoder_dir), "--cache", "none", "--quarantine",
                 str(tmp_path / "q.jsonl"), "--no-progress"]) == 0
    parser = argparse.ArgumentParser()
    cmd_train_bi_encoder.register(parser.add_subparsers())
    argv = ["bi-encoder", "--data", str(data_dir), "--index", "tinybi", "--engine", "embedded", "--root", str(root),
            "--model", str(tiny_bi_encoder_dir), "--out", str(tmp_path / "bi"), "--epochs", "1", "--batch-size", "4",
            "--device", "cpu", "--max-length", "32", "--no-progress"]
    args = parser.parse_args(argv)
    assert args.run(args) == 0
    card = json.loads((tmp_path / "bi" / "model_card.json").read_text())
    assert card["data"]["queries_with_mined_negatives"] == 8
    args = parser.parse_args([a if a != "tinybi" else "missing" for a in argv])
    assert args.run(args) == 1
    assert "index 'missing' does not exist" in capsys.readouterr().err
