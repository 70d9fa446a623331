"""``shopsearch eval`` end to end on tiny and real data (the metrics and readers: tests/test_evaluation.py and
tests/test_judgments.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from shopsearch.api.cli import main


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
    assert set(out) == {"ndcg@10", "recall@100", "mrr@10", "judged@10", "queries", "degraded", "per_query",
                        "unjudged", "textless"}
    assert (out["unjudged"], out["textless"]) == (1, 0)  # t4 has no judgments
    assert out["queries"] == 3 and set(out["per_query"]) == {"t1", "t2", "t3"}
    for name in ("ndcg@10", "recall@100", "mrr@10", "judged@10"):
        assert 0.0 <= out[name] <= 1.0
        assert all(0.0 <= s[name] <= 1.0 for s in out["per_query"].values())
    # Every relevant product is among 6 candidates: recall@100 is 1 whatever the (random) dense leg does.
    assert out["recall@100"] == pytest.approx(1.0)


def test_the_index_and_model_settings_are_evals_defaults(tiny_index, tiny_bi_encoder_dir, monkeypatch, capsys):
    """One settings module: $SHOPSEARCH_INDEX and $SHOPSEARCH_MODEL (or a config file) name what eval searches, as
    they do for serve; a flag still wins."""
    d, root = tiny_index
    argv = [a for a in eval_argv(d, root, tiny_bi_encoder_dir, "--json") if a not in ("--index", "tiny", "--model",
                                                                                       str(tiny_bi_encoder_dir))]
    monkeypatch.setenv("SHOPSEARCH_INDEX", "tiny")
    monkeypatch.setenv("SHOPSEARCH_MODEL", str(tiny_bi_encoder_dir))
    assert main(argv) == 0 and json.loads(capsys.readouterr().out)["queries"] == 3
    assert main(argv + ["--index", "nope"]) != 0
    assert "nope" in capsys.readouterr().err


def test_eval_ranks_with_the_configured_merchandising_rules(tiny_index, tiny_bi_encoder_dir, tmp_path, monkeypatch,
                                                              capsys):
    """/search, eval and compare share one path: a pin in the configured rules folder moves eval's ranking as it
    moves the console's (eval read the default folder, whatever the settings said)."""
    d, root = tiny_index
    argv = eval_argv(d, root, tiny_bi_encoder_dir, "--json", "--per-query")
    assert main(argv) == 0
    before = json.loads(capsys.readouterr().out)["per_query"]["t1"]["ndcg@10"]
    (tmp_path / "merch").mkdir()
    (tmp_path / "merch" / "tiny.rules.toml").write_text(
        '[[rule]]\nname = "towel-first"\nqueries = ["red lamp"]\npin = [{ id = "p6", position = 1 }]\n')
    monkeypatch.setenv("SHOPSEARCH_MERCHANDISING_DIR", str(tmp_path / "merch"))
    assert main(argv) == 0
    after = json.loads(capsys.readouterr().out)["per_query"]["t1"]["ndcg@10"]
    assert after < before  # the unjudged towel now takes the first place


def test_judged_queries_without_text_are_named_not_dropped_silently(tiny_index, tiny_bi_encoder_dir, tmp_path,
                                                                     capsys):
    d, root = tiny_index
    (tmp_path / "q.tsv").write_text("t1\tred lamp\n")
    argv = eval_argv(d, root, tiny_bi_encoder_dir, "--json")
    argv[argv.index(str(d / "queries.tsv"))] = str(tmp_path / "q.tsv")
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["textless"] == 2
    assert "warning: 2 judged queries of" in captured.err and "left out (t2, t3)" in captured.err


def test_eval_bm25_profile_finds_exact_matches_first(tiny_index, tiny_bi_encoder_dir, capsys):
    d, root = tiny_index
    assert main(eval_argv(d, root, tiny_bi_encoder_dir, "--json", "--profile", "bm25")) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"ndcg@10", "recall@100", "mrr@10", "judged@10", "queries", "degraded", "unjudged", "textless"}
    # BM25 puts the title match first for each query: MRR 1; t2's second product (p1, grade 1) also matches
    # "table", so nDCG is 1 too.
    assert out["mrr@10"] == pytest.approx(1.0)
    assert out["ndcg@10"] == pytest.approx(1.0)


def test_eval_judged_only_takes_unjudged_products_out(tiny_index, tiny_bi_encoder_dir, tmp_path, capsys):
    d, root = tiny_index
    # t2 ("oak table") without its judgement of p2, the product BM25 puts first: p1 (grade 1) follows it
    (tmp_path / "queries.tsv").write_text((d / "queries.tsv").read_text())
    (tmp_path / "qrels.txt").write_text("t2 0 p1 1\n")
    argv = [*eval_argv(tmp_path, root, tiny_bi_encoder_dir, "--json", "--profile", "bm25", "--per-query")]
    assert main(argv) == 0
    every = json.loads(capsys.readouterr().out)["per_query"]["t2"]
    assert main([*argv, "--judged-only"]) == 0
    judged = json.loads(capsys.readouterr().out)["per_query"]["t2"]
    assert every["judged@10"] == pytest.approx(0.5) and every["mrr@10"] == pytest.approx(0.5)
    assert judged["mrr@10"] == pytest.approx(1.0)
    assert judged["judged@10"] == pytest.approx(0.5)  # still read from the list as shown


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
