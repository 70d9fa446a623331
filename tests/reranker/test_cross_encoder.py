"""The cross-encoder end to end with a tiny random model: train, card, calibration, reload offline, rerank."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from shopsearch.plugin.search_types import ScoredHit
from shopsearch.reranker.batch_cost import BatchCost
from shopsearch.reranker.ce_training import TrainConfig, train_cross_encoder
from shopsearch.reranker.cross_encoder import STAGE, CrossEncoderReranker
from shopsearch.reranker.model_card import REQUIRED_KEYS, read_model_card
from tests.reranker.tiny_ce import build_tiny_cross_encoder, write_tiny_judged_set


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("ce")
    base = build_tiny_cross_encoder(root / "tiny")
    data = write_tiny_judged_set(root / "data")
    config = TrainConfig(data_dirs=(str(data),), out=str(root / "ce-tiny"), base_model=str(base), epochs=3,
                         batch_size=16, lr=1e-3, max_length=32, valid_fraction=0.25, test_fraction=0.2,
                         eval_steps=4, patience=3)
    return train_cross_encoder(config), data


@pytest.fixture(scope="module")
def reranker(trained):
    return CrossEncoderReranker(trained[0].out, device="cpu", batch_size=4, max_length=32, fast_cpu=False)


def _hits(n: int) -> list[ScoredHit]:
    things = ["lamp", "chair", "table", "shoe"]
    return [ScoredHit(id=f"h{i}", rank=i + 1, score=1.0 / (i + 1), stages={"fused": 1.0 / (i + 1)},
                      source={"title": f"Red {things[i % 4]}", "description": f"item {i}"}) for i in range(n)]


def test_training_writes_model_card_and_calibration(trained):
    result, data = trained
    card = read_model_card(result.out)
    assert set(REQUIRED_KEYS) <= card.keys()
    assert card["data"]["dirs"][0]["path"] == str(data)
    assert len(card["data"]["pairs_sha256"]) == 64
    assert card["seed"] == 42 and card["parameters"]["lr"] == 1e-3
    m = card["metrics"]
    assert m["valid_ndcg@10_before"] == pytest.approx(result.valid_ndcg_before)
    assert m["valid_ndcg@10_after"] >= m["valid_ndcg@10_before"]  # the best checkpoint is kept
    assert 0 <= m["best_step"] <= m["steps"] == result.steps > 0
    cal = json.loads((result.out / "calibration.json").read_text())
    assert cal["default"] == data.name and cal["datasets"][data.name]["raw_max"] == 4.0
    assert "nDCG@10" in (result.out / "README.md").read_text()
    d = card["data"]["dirs"][0]
    assert d["train_queries"] + d["valid_queries"] + d["test_queries"] == 12


def test_training_is_reproducible_in_its_data_hash(trained, tmp_path):
    from shopsearch.reranker.ce_training import pairs_sha256, prepare_splits

    result, data = trained
    config = TrainConfig(data_dirs=(str(data),), out=str(tmp_path), valid_fraction=0.25, test_fraction=0.2)
    assert pairs_sha256(prepare_splits(config)) == read_model_card(result.out)["data"]["pairs_sha256"]


def test_training_rejects_bad_parameters(tmp_path):
    with pytest.raises(ValueError, match="warmup_ratio=1.5"):
        train_cross_encoder(TrainConfig(data_dirs=("x",), out=str(tmp_path), warmup_ratio=1.5))
    with pytest.raises(ValueError, match="data_dirs is empty"):
        train_cross_encoder(TrainConfig(data_dirs=(), out=str(tmp_path)))


def test_reloads_offline_and_scores_in_order(reranker):
    products = [{"title": "Red lamp"}, {"title": "Blue chair", "description": "<b>oak</b>"}, {"title": "x"}]
    scores = reranker.score("red lamp", products)
    assert scores.shape == (3,) and scores.dtype == np.float32
    assert np.all((scores > 0) & (scores < 1))
    reversed_scores = reranker.score("red lamp", products[::-1])
    assert np.allclose(scores, reversed_scores[::-1], atol=1e-5)
    assert reranker.precision == "fp32" and reranker.cost.ms_per_pair() > 0


def test_calibrated_maps_onto_the_raw_scale(reranker):
    cal = reranker.calibrated(np.array([0.0, 0.5, 1.0]))
    assert np.all((cal >= 1.0) & (cal <= 4.0)) and np.all(np.diff(cal) >= 0)
    with pytest.raises(ValueError, match="dataset='nope'"):
        reranker.calibrated([0.5], dataset="nope")


def test_onnx_int8_fast_path_scores_close_to_fp32(trained, reranker, tmp_path):
    products = [h.source for h in _hits(12)] + [{"title": "oak " * 60}]  # > max_length tokens: truncated alike
    ref = reranker.score("red lamp", products)
    for required in (True, False):
        fast = CrossEncoderReranker(trained[0].out, device="cpu", batch_size=4, max_length=32, fast_cpu=True,
                                    require_onnx=required, onnx_cache=tmp_path)
        assert fast.precision == "onnx-int8"
        got = fast.score("red lamp", products)
        assert got.dtype == np.float32 and got.shape == ref.shape
        assert np.max(np.abs(ref - got)) < 0.05
    assert reranker.precision == "fp32"


def test_onnx_export_is_cached_by_weights_and_reused(trained, tmp_path):
    from shopsearch.reranker.onnx_cross_encoder import export_path

    out = export_path(trained[0].out, tmp_path)
    assert not out.exists()
    CrossEncoderReranker(trained[0].out, device="cpu", fast_cpu=True, require_onnx=True, onnx_cache=tmp_path)
    stem = out.name.removesuffix(".onnx")  # the export, its tokenizer and manifest; no temporary files left
    assert out.is_file() and sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [out.name, f"{stem}.served.json", f"{stem}.tokenizer.json"])
    stamp = out.stat().st_mtime_ns
    CrossEncoderReranker(trained[0].out, device="cpu", fast_cpu=True, onnx_cache=tmp_path)
    assert out.stat().st_mtime_ns == stamp  # the second load reused the export
    assert export_path(trained[0].out, tmp_path / "x").name == out.name  # name depends on the weights only


def test_onnx_export_defaults_to_the_settings_onnx_dir(trained, tmp_path, monkeypatch):
    from shopsearch.reranker.onnx_cross_encoder import export_path

    monkeypatch.setenv("SHOPSEARCH_HOME", str(tmp_path))
    CrossEncoderReranker(trained[0].out, device="cpu", max_length=32, require_onnx=True)
    assert export_path(trained[0].out, tmp_path / "onnx").is_file()


def test_onnx_failure_falls_back_to_torch_fp32_unless_required(trained, tmp_path, monkeypatch, caplog):
    from shopsearch.reranker import onnx_cross_encoder

    def broken(*args, **kwargs):
        raise RuntimeError("exporter broke")

    monkeypatch.setattr(onnx_cross_encoder, "export_int8", broken)
    fast = CrossEncoderReranker(trained[0].out, device="cpu", fast_cpu=True, onnx_cache=tmp_path)
    assert fast.precision == "fp32" and "exporter broke" in caplog.text and "using torch fp32" in caplog.text
    with pytest.raises(RuntimeError, match="exporter broke"):
        CrossEncoderReranker(trained[0].out, device="cpu", fast_cpu=True, require_onnx=True, onnx_cache=tmp_path)


def test_rerank_keeps_all_hits_and_respects_depth(reranker):
    hits = _hits(10)
    out, why = reranker.rerank("red chair", hits, depth=6)
    assert why is None
    assert sorted(h.id for h in out) == sorted(h.id for h in hits)
    assert [h.rank for h in out] == list(range(1, 11))
    head, tail = out[:6], out[6:]
    assert {h.id for h in head} == {f"h{i}" for i in range(6)}
    assert all(STAGE in h.stages and h.score == h.stages[STAGE] and "fused" in h.stages for h in head)
    assert [h.score for h in head] == sorted((h.score for h in head), reverse=True)
    assert [h.id for h in tail] == ["h6", "h7", "h8", "h9"] and all(STAGE not in h.stages for h in tail)
    assert reranker.rerank("red chair", hits, depth=0) == (hits, None)


def test_rerank_degrades_on_failure(reranker, monkeypatch):
    hits = _hits(5)

    def boom(*args, **kwargs):
        raise RuntimeError("forced failure")

    monkeypatch.setattr(reranker.model, "predict", boom)
    assert reranker.rerank("red lamp", hits, depth=5) == (hits, "failed")


def test_rerank_degrades_on_a_too_small_budget(reranker, monkeypatch):
    hits = _hits(20)
    # Expected time over budget: skipped without scoring.
    slow = BatchCost()
    slow.observe(pairs=1, ms=10.0)
    monkeypatch.setattr(reranker, "cost", slow)
    assert reranker.rerank("red lamp", hits, depth=20, budget_ms=50) == (hits, "budget")
    # No time at all: nothing is scored (the per-batch checks are in tests/reranker/test_batch_cost.py).
    monkeypatch.setattr(reranker, "cost", BatchCost())
    assert reranker.rerank("red lamp", hits, depth=20, budget_ms=1e-6) == (hits, "budget")
    with pytest.raises(ValueError, match="budget_ms=0"):
        reranker.rerank("red lamp", hits, depth=5, budget_ms=0)
    with pytest.raises(ValueError, match="depth=-1"):
        reranker.rerank("red lamp", hits, depth=-1)


def _train_parser():
    from shopsearch.api import cmd_train

    parser = argparse.ArgumentParser(prog="shopsearch")
    cmd_train.register(parser.add_subparsers(dest="command"))
    return parser


def _cli_train(tmp_path, data_dir, out, *extra) -> int:
    """`shopsearch train cross-encoder` on the tiny data: one quick epoch from a fresh tiny model."""
    base = build_tiny_cross_encoder(tmp_path / "tiny")
    args = _train_parser().parse_args([
        "train", "cross-encoder", "--train", str(data_dir), "--out", str(out), "--base-model", str(base),
        "--epochs", "1", "--batch-size", "32", "--lr", "1e-3", "--max-length", "32", "--valid-fraction", "0.25",
        *extra])
    return args.run(args)


def test_a_run_that_fails_after_training_leaves_the_last_model_as_it_was(tmp_path, trained, monkeypatch):
    """New weights beside the old card and calibration would be served; the folder is swapped in whole."""
    from shopsearch.reranker import ce_training

    out = tmp_path / "ce"
    assert _cli_train(tmp_path, trained[1], out) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}

    def broken(*args, **kwargs):
        raise ValueError("need at least 2 scored ratings to calibrate, got 0")

    monkeypatch.setattr(ce_training, "_calibrate", broken)
    with pytest.raises(ValueError, match="to calibrate"):
        _cli_train(tmp_path, trained[1], out, "--seed", "7")
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # nothing half-built left


def test_a_data_folder_left_without_validation_pairs_is_refused_before_training(tmp_path, trained, monkeypatch):
    from shopsearch.reranker import ce_training

    small = write_tiny_judged_set(tmp_path / "small", n_queries=2)
    monkeypatch.setattr(ce_training, "resolve_base_model", lambda *a: pytest.fail("training started"))
    with pytest.raises(ValueError, match="leaves data folder 'small' fewer than 2 judged validation pairs"):
        train_cross_encoder(TrainConfig(data_dirs=(str(trained[1]), str(small)), out=str(tmp_path / "ce"),
                                        valid_fraction=0.25, test_fraction=0.2))


def test_a_flag_of_a_step_not_asked_for_is_refused(tmp_path, trained):
    for extra, message in ((["--teacher-weight", "0.5"], "--teacher-weight is for --teacher"),
                           (["--teacher", "all-MiniLM-L6-v2"], "--teacher needs --teacher-weight"),
                           (["--hard-negatives", "4"], "--hard-negatives is for --mine"),
                           (["--mine-profile", "bm25"], "--mine-profile is for --mine")):
        with pytest.raises(ValueError, match=message):
            _cli_train(tmp_path, trained[1], tmp_path / "ce", *extra)


def test_a_bi_encoders_folder_is_not_a_cross_encoder(tiny_bi_encoder_dir, tmp_path):
    from shopsearch.reranker.cross_encoder import is_model_dir
    from shopsearch.reranker.model_card import trained_on

    assert not is_model_dir(tiny_bi_encoder_dir)
    with pytest.raises(FileNotFoundError, match="not a trained cross-encoder .*a bi-encoder's folder"):
        CrossEncoderReranker(tiny_bi_encoder_dir, device="cpu")
    with pytest.raises(ValueError, match="names no data folders it trained on"):
        trained_on({"data": {"source": "judgments"}})


def test_cli_train_cross_encoder(tmp_path, trained, capsys):
    assert _cli_train(tmp_path, trained[1], tmp_path / "ce") == 0
    card = read_model_card(tmp_path / "ce")
    assert card["parameters"]["epochs"] == 1 and card["parameters"]["batch_size"] == 32
    assert "train cross-encoder" in capsys.readouterr().err
    # a job writing to a log asks for no bars at all; the summary line stays
    assert _cli_train(tmp_path, trained[1], tmp_path / "quiet", "--no-progress") == 0
    out = capsys.readouterr()
    assert "train cross-encoder:" not in out.err and "step/s" not in out.err
    bare = _train_parser().parse_args(["train"])
    assert bare.run(bare) == 2


def test_hard_negatives_join_train_and_valid_queries_only(trained, tmp_path):
    import math

    from shopsearch.reranker.ce_training import pairs_sha256, prepare_splits
    from shopsearch.reranker.training_data import load_judged_set, split_queries

    data_dir = trained[1]
    judged = load_judged_set(data_dir)
    every = [json.loads(line)["id"] for line in (data_dir / "products.jsonl").read_text().splitlines()]
    # every query (test ones too) "retrieves" the whole catalog: only train/valid queries may take negatives
    candidates = {data_dir.name: {q: list(reversed(every)) for q in judged.by_query()}}
    config = TrainConfig(data_dirs=(str(data_dir),), out=str(tmp_path), valid_fraction=0.25, test_fraction=0.2,
                         hard_negatives=2)
    [plain] = prepare_splits(config)
    [mined] = prepare_splits(config, candidates)
    split = split_queries(judged.by_query(), valid_fraction=0.25, test_fraction=0.2, seed=42)
    grades = {(j.query_id, j.doc_id) for j in judged.qrels}
    for part, base, n in (("train", plain.train, mined.train_negatives), ("valid", plain.valid, mined.valid_negatives)):
        extra = getattr(mined, part)[len(base):]
        assert getattr(mined, part)[:len(base)] == base and len(extra) == n > 0
        assert all(j.relevance == 0 and math.isnan(mined.data.raw_score(j)) and (j.query_id, j.doc_id) not in grades
                   for j in extra)
        assert {j.query_id for j in extra} <= {j.query_id for j in base} <= set(getattr(split, part))
        per_query = {q: sum(j.query_id == q for j in extra) for q in {j.query_id for j in extra}}
        assert set(per_query.values()) <= {1, 2}
        assert all(j.doc_id in mined.data.products for j in extra)
    assert pairs_sha256([mined]) != pairs_sha256([plain])
    assert prepare_splits(config, candidates)[0].train == mined.train  # seeded
    with pytest.raises(ValueError, match="hard_negatives=-1"):
        TrainConfig(data_dirs=("x",), out="y", hard_negatives=-1).validate()


def test_teacher_blends_bi_encoder_similarity_into_judged_labels_only(trained, tiny_bi_encoder_dir, tmp_path):
    from shopsearch.reranker.ce_training import prepare_splits, teacher_labels
    from shopsearch.reranker.training_data import load_judged_set

    data_dir = trained[1]
    every = [json.loads(line)["id"] for line in (data_dir / "products.jsonl").read_text().splitlines()]
    candidates = {data_dir.name: {q: every for q in load_judged_set(data_dir).by_query()}}
    config = TrainConfig(data_dirs=(str(data_dir),), out=str(tmp_path), valid_fraction=0.25, test_fraction=0.2,
                         hard_negatives=2)
    [split] = splits = prepare_splits(config, candidates)
    grades = np.array([split.data.normalised_grade(j) for j in split.train])
    judged = len(split.train) - split.train_negatives
    half, fits = teacher_labels(splits, str(tiny_bi_encoder_dir), 0.5)
    full, _ = teacher_labels(splits, str(tiny_bi_encoder_dir), 1.0)
    half, full = np.array(half), np.array(full)
    assert half.shape == grades.shape and ((0 <= half) & (half <= 1)).all()
    assert (half[judged:] == 0).all() and split.train_negatives > 0  # mined negatives keep label 0
    np.testing.assert_allclose(half[:judged], 0.5 * grades[:judged] + 0.5 * full[:judged], atol=1e-9)
    assert not np.allclose(full[:judged], grades[:judged])
    assert set(fits[split.data.name]) == {"slope", "intercept", "r"}
    with pytest.raises(ValueError, match="teacher_weight=0.5 needs a teacher"):
        TrainConfig(data_dirs=("x",), out="y", teacher_weight=0.5).validate()
    with pytest.raises(ValueError, match="teacher_weight"):
        TrainConfig(data_dirs=("x",), out="y", teacher="m", teacher_weight=1.5).validate()


def test_cli_mines_hard_negatives_from_index(trained, tiny_bi_encoder_dir, tmp_path, capsys):
    from shopsearch.api.cli import main

    data_dir = trained[1]
    root = tmp_path / "engine"
    assert main(["index", str(data_dir / "products.jsonl"), "--index", "tinyce", "--engine", "embedded", "--root",
                 str(root), "--full", "--model", str(tiny_bi_encoder_dir), "--cache", "none", "--quarantine",
                 str(tmp_path / "q.jsonl"), "--no-progress"]) == 0
    base = build_tiny_cross_encoder(tmp_path / "tiny")
    parser = _train_parser()
    argv = ["train", "cross-encoder", "--train", str(data_dir), "--out", str(tmp_path / "ce"), "--base-model",
            str(base), "--epochs", "1", "--batch-size", "32", "--lr", "1e-3", "--max-length", "32",
            "--valid-fraction", "0.25", "--mine", f"{data_dir.name}=tinyce", "--hard-negatives", "3", "--engine",
            "embedded", "--root", str(root), "--model", str(tiny_bi_encoder_dir), "--no-progress"]
    args = parser.parse_args(argv)
    assert args.run(args) == 0
    card = read_model_card(tmp_path / "ce")
    d = card["data"]["dirs"][0]
    assert d["train_hard_negatives"] > 0 and card["parameters"]["hard_negatives"] == 3
    assert "tinyce" in card["data"]["hard_negatives_from"]
    args = parser.parse_args([a.replace("=tinyce", "=missing") for a in argv])
    assert args.run(args) == 1
    assert "index 'missing' does not exist" in capsys.readouterr().err
    with pytest.raises(ValueError, match="--mine 'nope=x'"):
        args = parser.parse_args([a.replace(f"{data_dir.name}=tinyce", "nope=x") for a in argv])
        args.run(args)


def test_cli_trains_one_fold_of_a_cross_validation(tmp_path, trained):
    from shopsearch.judgments import read_queries
    from shopsearch.reranker.training_data import load_judged_set, split_queries

    assert _cli_train(tmp_path, trained[1], tmp_path / "f1", "--folds", "3", "--fold", "1") == 0
    card = read_model_card(tmp_path / "f1")
    assert (card["parameters"]["folds"], card["parameters"]["fold"]) == (3, 1)
    split = split_queries(load_judged_set(trained[1]).by_query(), valid_fraction=0.25, seed=42, folds=3, fold=1)
    heldout = read_queries(tmp_path / "f1" / f"heldout-queries-{trained[1].name}.tsv")
    assert {q.qid for q in heldout} == set(split.test) and len(heldout) == 4  # a third of the 12 queries
    assert "test fold 1 of 3" in (tmp_path / "f1" / "README.md").read_text()
    with pytest.raises(ValueError, match="fold=3"):
        TrainConfig(data_dirs=("x",), out="y", folds=3, fold=3).validate()
    with pytest.raises(ValueError, match="folds=1"):
        TrainConfig(data_dirs=("x",), out="y", folds=1).validate()


def test_model_card_sets_serving_max_length_and_heldout_queries_are_written(trained):
    from shopsearch.judgments import read_queries
    from shopsearch.reranker.training_data import load_judged_set, split_queries

    result, data_dir = trained
    assert CrossEncoderReranker(result.out, device="cpu", fast_cpu=False).model.max_seq_length == 32  # as trained
    judged = load_judged_set(data_dir)
    split = split_queries(judged.by_query(), valid_fraction=0.25, test_fraction=0.2, seed=42)
    heldout = read_queries(result.out / f"heldout-queries-{data_dir.name}.tsv")
    assert {q.qid for q in heldout} == set(split.test) and all(q.text for q in heldout)
    valid = read_queries(result.out / f"valid-queries-{data_dir.name}.tsv")
    assert {q.qid for q in valid} == set(split.valid) and all(q.text for q in valid)



def test_a_model_without_a_card_serves_within_its_own_positions(tmp_path):
    # a cross-encoder from elsewhere has no card saying its max_length: the default (256) must not overrun the
    # 128 positions this one has, or every product with a long description fails to score
    tiny = build_tiny_cross_encoder(tmp_path / "no-card")
    long = {"title": "red lamp", "description": "a lamp with a red shade " * 60}
    for fast_cpu in (False, True):
        rr = CrossEncoderReranker(tiny, device="cpu", fast_cpu=fast_cpu, onnx_cache=tmp_path / "onnx")
        assert rr.score("red lamp", [long, {"title": "blue chair"}]).shape == (2,)
    assert CrossEncoderReranker(tiny, device="cpu", fast_cpu=False).model.max_seq_length == 128

def test_cross_encoder_scorer_feeds_training_rows(trained, reranker):
    from shopsearch.indexer.records import Product
    from shopsearch.reranker.training_rows import CrossEncoderScorer, combine_stages

    products = {"a": Product(id="a", title="Red lamp"), "b": Product(id="b", title="Blue chair")}
    calls = []

    class Counting:
        def score(self, query, items):
            calls.append(len(items))
            return reranker.score(query, items)

    scorer = CrossEncoderScorer(Counting(), products)
    first = scorer("red lamp", ["a", "b", "zzz"])
    assert first[2] == {} and set(first[0]) == {"cross_encoder"}
    expected = reranker.score("red lamp", [p.to_source() for p in products.values()])
    assert [r["cross_encoder"] for r in first[:2]] == pytest.approx(expected.tolist(), abs=1e-6)
    assert scorer("red lamp", ["b", "a"])[0] == first[1] and calls == [2]  # cached per (query, product)
    both = combine_stages(lambda q, ids: [{"bm25": 1.0, "cross_encoder": -1.0} for _ in ids], scorer)
    assert both("red lamp", ["a"]) == [{"bm25": 1.0, "cross_encoder": first[0]["cross_encoder"]}]


def test_rerank_rejects_bad_combine(reranker):
    with pytest.raises(ValueError, match="combine='sum'"):
        reranker.rerank("red lamp", _hits(3), combine="sum")
    with pytest.raises(ValueError, match="rrf_k=0"):
        reranker.rerank("red lamp", _hits(3), combine="rrf", rrf_k=0)


def test_list_batches_keep_each_list_to_one_query_and_cover_every_pair_once():
    from shopsearch.reranker.ce_training import list_batches

    groups = ["a"] * 37 + ["b"] * 5 + ["c"] * 16
    batches = list_batches(groups, batch_size=32, list_size=16, rng=np.random.default_rng(1))
    lists = [ix for b in batches for ix in b]
    assert sorted(i for ix in lists for i in ix) == list(range(len(groups)))
    assert all(len({groups[i] for i in ix}) == 1 and len(ix) <= 16 for ix in lists)
    assert sorted(len(ix) for ix in lists if groups[ix[0]] == "a") == [12, 12, 13]  # near-equal, not 16+16+5
    assert all(sum(map(len, b)) <= 32 for b in batches)


def test_listwise_training_learns_the_order_within_queries(trained, tmp_path):
    from dataclasses import replace

    from sentence_transformers import CrossEncoder

    from shopsearch.reranker.ce_training import _evaluate, prepare_splits
    from tests.reranker.tiny_ce import build_tiny_cross_encoder

    _, data = trained
    base = build_tiny_cross_encoder(tmp_path / "tiny")
    config = TrainConfig(data_dirs=(str(data),), out=str(tmp_path / "ce-lambda"), base_model=str(base), epochs=6,
                         batch_size=16, lr=1e-3, max_length=32, valid_fraction=0.25, test_fraction=0.2,
                         eval_steps=2, patience=10, loss="lambda", list_size=8)
    result = train_cross_encoder(config)
    card = read_model_card(result.out)
    assert card["parameters"]["loss"] == "lambda" and card["parameters"]["list_size"] == 8
    assert result.steps > 0 and (result.out / "calibration.json").exists()
    # the training queries' own pools: ranked better than by the untrained model
    on_train = [replace(s, valid=s.train) for s in prepare_splits(config)]
    fit = {m: _evaluate(CrossEncoder(str(m), num_labels=1, max_length=32, device="cpu"), on_train)["ndcg@10"]
           for m in (base, result.out)}
    assert fit[result.out] > fit[base] + 0.02
    with pytest.raises(ValueError, match="loss='listnet' must be one of bce, lambda"):
        TrainConfig(data_dirs=("x",), out="y", loss="listnet").validate()
    with pytest.raises(ValueError, match="list_size=1"):
        TrainConfig(data_dirs=("x",), out="y", loss="lambda", list_size=1).validate()


def test_train_calibration_refits_on_validation_queries_as_served(trained, tmp_path, capsys):
    import shutil

    from shopsearch.api.cli import main
    from shopsearch.reranker.calibration import load_calibrations
    from shopsearch.reranker.training_data import load_judged_set, split_queries

    result, data_dir = trained
    model = tmp_path / "ce"
    shutil.copytree(result.out, model)
    (model / "calibration.json").unlink()
    assert main(["train", "calibration", "--model", str(model), "--data", str(data_dir), "--fp32"]) == 0
    out = capsys.readouterr().out
    judged = load_judged_set(data_dir)
    split = split_queries(judged.by_query(), valid_fraction=0.25, test_fraction=0.2, seed=42)
    pairs = sum(1 for j in judged.qrels if j.query_id in split.valid)
    assert f"{len(split.valid)} validation queries, {pairs} pairs" in out and "(fp32)" in out
    cals, default = load_calibrations(model)
    assert default == data_dir.name and cals[data_dir.name].raw_max == 4.0
    fit = read_model_card(model)["calibration"]
    assert fit["precision"] == "fp32" and fit["datasets"][data_dir.name]["pairs"] == pairs
    assert fit["datasets"][data_dir.name]["rmse_calibrated"] <= fit["datasets"][data_dir.name]["rmse_mean"]
    assert main(["train", "calibration", "--model", str(model), "--data", str(tmp_path / "other")]) == 2
    assert "is not one the model was trained on" in capsys.readouterr().err
