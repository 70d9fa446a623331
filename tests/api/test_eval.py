"""Evaluation: readers and metrics against hand-computed values; ``shopsearch eval`` end to end on tiny and real data."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
from ir_measures import Qrel

from shopsearch.api.cli import main
from shopsearch.api.evaluation import evaluate, read_qrels, read_queries, to_run

LOG2_3 = math.log2(3)


# --- pure metrics ------------------------------------------------------------------------------------------------

QRELS = [Qrel("q1", "a", 2), Qrel("q1", "b", 0), Qrel("q1", "c", 1), Qrel("q2", "x", 1)]


def test_metrics_by_hand_and_missing_query_counts_zero():
    report = evaluate(QRELS, {"q1": ["b", "a"]})  # q2 has no results at all
    # q1: DCG = 0/log2(2) + 2/log2(3); ideal = 2/1 + 1/log2(3)
    ndcg_q1 = (2 / LOG2_3) / (2 + 1 / LOG2_3)
    assert report.per_query["q1"] == pytest.approx({"ndcg@10": ndcg_q1, "recall@100": 0.5, "mrr@10": 0.5})
    assert report.per_query["q2"] == {"ndcg@10": 0.0, "recall@100": 0.0, "mrr@10": 0.0}
    assert report.metrics == pytest.approx({"ndcg@10": ndcg_q1 / 2, "recall@100": 0.25, "mrr@10": 0.25})
    assert report.queries == 2


def test_given_order_is_evaluated_not_resorted():
    # Equal engine scores would be re-sorted by doc id by trec_eval; the ranking as shown must count.
    ideal = evaluate(QRELS, {"q1": ["a", "c"]}, qids=["q1"])
    swapped = evaluate(QRELS, {"q1": ["c", "a"]}, qids=["q1"])
    assert ideal.metrics["ndcg@10"] == pytest.approx(1.0)
    assert swapped.metrics["ndcg@10"] == pytest.approx((1 + 2 / LOG2_3) / (2 + 1 / LOG2_3))
    assert [d.doc_id for d in to_run({"q": ["c", "a", "c"]})] == ["c", "a"]


def test_grade_one_is_relevant_for_recall_and_mrr():
    report = evaluate(QRELS, {"q1": ["b", "c"]}, qids=["q1"])
    assert report.per_query["q1"]["mrr@10"] == 0.5  # c (grade 1) at rank 2; b (grade 0) is not relevant
    assert report.per_query["q1"]["recall@100"] == 0.5


def test_rank_cutoffs():
    ranking = [f"junk{i}" for i in range(10)] + ["a"]  # a at rank 11: outside @10, inside @100
    report = evaluate(QRELS, {"q1": ranking}, qids=["q1"])
    assert report.per_query["q1"] == {"ndcg@10": 0.0, "recall@100": 0.5, "mrr@10": 0.0}


def test_unjudged_queries_are_left_out_and_listed():
    report = evaluate(QRELS, {"q1": ["a", "c"]}, qids=["q1", "q9"])
    assert report.queries == 1 and report.unjudged == ("q9",)
    with pytest.raises(ValueError, match="none of the 1 queries has judgements"):
        evaluate(QRELS, {}, qids=["q9"])


# --- readers -----------------------------------------------------------------------------------------------------

def test_readers(tmp_path):
    q = tmp_path / "q.tsv"
    q.write_text("q1\tred lamp\n\nq2\t  oak table \n")
    assert read_queries(q) == [("q1", "red lamp"), ("q2", "oak table")]
    r = tmp_path / "qrels.txt"
    r.write_text("q1 0 a 2\n\nq1 0 b 0\n")
    assert read_qrels(r) == [Qrel("q1", "a", 2, "0"), Qrel("q1", "b", 0, "0")]


@pytest.mark.parametrize("reader, text, message", [
    (read_queries, "q1\tok\nq2 no tab\n", r"q\.txt:2: expected 'qid<TAB>query text', found no tab"),
    (read_queries, "q1\tok\n\nq1\tagain\n", r"q\.txt:3: qid 'q1' appears twice"),
    (read_queries, "q1\t \n", r"q\.txt:1: empty query text"),
    (read_qrels, "q1 0 a 2\nq1 0 b\n", r"q\.txt:2: expected 4 fields 'qid iteration doc_id grade', got 3"),
    (read_qrels, "q1 0 a high\n", r"q\.txt:1: grade must be an integer, got 'high'"),
    (read_qrels, "q1 0 a 1\nq1 0 a 2\n", r"q\.txt:2: judgement for \(q1, a\) appears twice"),
])
def test_reader_errors_name_the_line(tmp_path, reader, text, message):
    path = tmp_path / "q.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        reader(path)


# --- the command, on a tiny index --------------------------------------------------------------------------------

CATALOG = [
    {"id": "p1", "title": "Red table lamp", "description": "A bedside lamp with a red shade."},
    {"id": "p2", "title": "Oak dining table", "description": "Solid oak, seats six."},
    {"id": "p3", "title": "Stainless steel kettle", "description": "Electric kettle, 1.7 litres."},
    {"id": "p4", "title": "Wool winter scarf", "description": ""},
    {"id": "p5", "title": "Ceramic coffee mug", "description": "Dishwasher safe."},
    {"id": "p6", "title": "Cotton bath towel", "description": "Soft and absorbent."},
]


@pytest.fixture(scope="module")
def tiny_index(tmp_path_factory, tiny_bi_encoder_dir):
    """An embedded index 'tiny' of CATALOG built with the tiny model, plus queries and qrels files."""
    d = tmp_path_factory.mktemp("eval")
    catalog = d / "products.jsonl"
    catalog.write_text("".join(json.dumps(p) + "\n" for p in CATALOG))
    (d / "queries.tsv").write_text("t1\tred lamp\nt2\toak table\nt3\tkettle\nt4\tno judgements here\n")
    (d / "qrels.txt").write_text("t1 0 p1 3\nt1 0 p2 0\nt2 0 p2 3\nt2 0 p1 1\nt3 0 p3 2\n")
    root = d / "engine"
    rc = main(["index", str(catalog), "--index", "tiny", "--engine", "embedded", "--root", str(root), "--full",
               "--model", str(tiny_bi_encoder_dir), "--cache", "none", "--quarantine", str(d / "q.jsonl"),
               "--no-progress"])
    assert rc == 0
    return d, root


def eval_argv(d, root, model, *extra):
    return ["eval", "--index", "tiny", "--engine", "embedded", "--root", str(root), "--model", str(model),
            "--queries", str(d / "queries.tsv"), "--qrels", str(d / "qrels.txt"), "--no-progress", *extra]


def test_eval_json_on_tiny_index(tiny_index, tiny_bi_encoder_dir, capsys):
    d, root = tiny_index
    assert main(eval_argv(d, root, tiny_bi_encoder_dir, "--json", "--per-query")) == 0
    out = json.loads(capsys.readouterr().out)  # exactly one JSON object on stdout
    assert set(out) == {"ndcg@10", "recall@100", "mrr@10", "queries", "degraded", "per_query"}
    assert out["queries"] == 3 and set(out["per_query"]) == {"t1", "t2", "t3"}
    for name in ("ndcg@10", "recall@100", "mrr@10"):
        assert 0.0 <= out[name] <= 1.0
        assert all(0.0 <= s[name] <= 1.0 for s in out["per_query"].values())
    # Every relevant product is among 6 candidates: recall@100 is 1 whatever the (random) dense leg does.
    assert out["recall@100"] == pytest.approx(1.0)


def test_eval_bm25_profile_finds_exact_matches_first(tiny_index, tiny_bi_encoder_dir, capsys):
    d, root = tiny_index
    assert main(eval_argv(d, root, tiny_bi_encoder_dir, "--json", "--profile", "bm25")) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"ndcg@10", "recall@100", "mrr@10", "queries", "degraded"}
    # BM25 puts the title match first for each query: MRR 1; t2's second product (p1, grade 1) also matches
    # "table", so nDCG is 1 too.
    assert out["mrr@10"] == pytest.approx(1.0)
    assert out["ndcg@10"] == pytest.approx(1.0)


def test_eval_goes_through_the_ranking_pipeline(tiny_index, tiny_bi_encoder_dir, tmp_path, monkeypatch, capsys):
    from shopsearch.reranker.pipeline import RankingPipeline
    from tests.reranker.tiny_ce import build_tiny_cross_encoder
    from tests.reranker.tiny_lgbm import build_tiny_conversion_model

    d, root = tiny_index
    monkeypatch.setenv("SHOPSEARCH_MODELS", str(tmp_path))
    monkeypatch.chdir(tmp_path)  # no ./models to fall back on
    assert main(eval_argv(d, root, tiny_bi_encoder_dir, "--profile", "rerank")) == 2  # before any search
    assert f"profile 'rerank' (cross_encoder stage): model 'ce-minilm' not found; looked in: {tmp_path}" in \
        capsys.readouterr().err
    build_tiny_cross_encoder(tmp_path / "ce-minilm")
    build_tiny_conversion_model(tmp_path / "lgbm-sim")
    seen = []
    original = RankingPipeline.search

    def spy(self, req, **kw):
        resp = original(self, req, **kw)
        seen.append((req.profile, resp.timings_ms.keys() >= {"rerank", "conversion"}))
        return resp

    monkeypatch.setattr(RankingPipeline, "search", spy)
    assert main(eval_argv(d, root, tiny_bi_encoder_dir, "--profile", "rerank", "--json")) == 0
    out = json.loads(capsys.readouterr().out)
    assert seen == [("rerank", True)] * 3 and out["queries"] == 3 and out["recall@100"] == pytest.approx(1.0)


def test_eval_table_and_errors(tiny_index, tiny_bi_encoder_dir, capsys):
    d, root = tiny_index
    assert main(eval_argv(d, root, tiny_bi_encoder_dir, "--per-query")) == 0
    text = capsys.readouterr().out
    assert "ndcg@10" in text and "t3" in text and "3 queries (1 unjudged skipped)" in text
    assert main(eval_argv(d, root, tiny_bi_encoder_dir, "--profile", "nope")) == 2
    assert "profile 'nope' does not exist" in capsys.readouterr().err
    argv = eval_argv(d, root, tiny_bi_encoder_dir)
    argv[argv.index("tiny")] = "missing"
    assert main(argv) == 1
    assert "index 'missing' does not exist" in capsys.readouterr().err
    argv = eval_argv(d, root, tiny_bi_encoder_dir)
    argv[argv.index("--qrels") + 1] = str(d / "queries.tsv")  # wrong file: clear error, exit 2
    assert main(argv) == 2
    assert "queries.tsv:1: expected 4 fields 'qid iteration doc_id grade'" in capsys.readouterr().err


# --- acceptance on the real crowdflower catalog ------------------------------------------------------------------

ACCEPT_NDCG = 0.80


def _ensure_index(shared_data: Path, engine: str, engine_args: list[str]) -> None:
    """Rebuild the 'crowdflower' index with the real model (--full; the vector cache makes re-runs cheap)."""
    q = Path(os.environ.get("TMPDIR", "/tmp")) / "crowdflower.quarantine.jsonl"
    assert main(["index", str(shared_data / "crowdflower" / "products.jsonl"), "--index", "crowdflower",
                 "--engine", engine, *engine_args, "--full", "--quarantine", str(q), "--no-progress"]) == 0


def _eval(shared_data: Path, engine: str, engine_args: list[str], profile: str, capsys) -> dict:
    cf = shared_data / "crowdflower"
    assert main(["eval", "--index", "crowdflower", "--engine", engine, *engine_args, "--profile", profile,
                 "--queries", str(cf / "queries-dev.tsv"), "--qrels", str(cf / "qrels-dev.txt"),
                 "--json", "--no-progress"]) == 0
    return json.loads(capsys.readouterr().out)


def _acceptance(shared_data, engine, engine_args, capsys):
    _ensure_index(shared_data, engine, engine_args)
    capsys.readouterr()
    scores = {p: _eval(shared_data, engine, engine_args, p, capsys) for p in ("default", "bm25", "dense")}
    assert scores["default"]["queries"] == 168
    hybrid = scores["default"]["ndcg@10"]
    assert hybrid >= ACCEPT_NDCG, scores
    assert hybrid > scores["bm25"]["ndcg@10"] and hybrid > scores["dense"]["ndcg@10"], scores


@pytest.mark.slow
def test_crowdflower_acceptance_embedded(shared_data, capsys):
    _acceptance(shared_data, "embedded", [], capsys)


@pytest.mark.slow
@pytest.mark.opensearch
def test_crowdflower_acceptance_opensearch(shared_data, opensearch_url, capsys):
    _acceptance(shared_data, "opensearch", ["--url", opensearch_url], capsys)
