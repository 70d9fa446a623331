"""bench/pool_compare.py: fold reports pooled into one comparison over all their queries."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.bench_modules import load_bench


@pytest.fixture(scope="module")
def module():
    return load_bench("pool_compare")


@pytest.fixture(scope="module")
def pool_compare(module):
    return module.main


def _report(path: Path, scores: dict[str, tuple[float, float]], a: str = "default", b: str = "rerank-ce") -> str:
    per_query = {q: {"text": q, "a": {"ndcg@10": x}, "b": {"ndcg@10": y}} for q, (x, y) in scores.items()}
    path.write_text(json.dumps({"a": a, "b": b, "per_query": per_query}), encoding="utf-8")
    return str(path)


def test_folds_pool_into_one_comparison_over_every_query(pool_compare, tmp_path, capsys):
    f0 = _report(tmp_path / "f0.json", {"q1": (0.5, 0.7), "q2": (0.4, 0.4)})
    f1 = _report(tmp_path / "f1.json", {"q3": (0.9, 0.6), "q4": (0.2, 0.5)})
    assert pool_compare([f0, f1]) == 0
    out = capsys.readouterr().out
    assert "4 queries pooled from 2 reports" in out
    row = next(line for line in out.splitlines() if line.startswith("| ndcg@10"))
    assert "| 0.5000 | 0.5500 | +0.0500 |" in row and "| 2 / 1 / 1 |" in row


def test_overlapping_or_mismatched_reports_are_refused(pool_compare, tmp_path, capsys):
    f0 = _report(tmp_path / "f0.json", {"q1": (0.5, 0.7)})
    again = _report(tmp_path / "again.json", {"q1": (0.5, 0.7)})
    other = _report(tmp_path / "other.json", {"q9": (0.5, 0.7)}, b="rerank")
    assert pool_compare([f0, again]) == 2 and "folds must be disjoint" in capsys.readouterr().err
    assert pool_compare([f0, other]) == 2 and "has rerank as profile B, not rerank-ce" in capsys.readouterr().err
    judged = tmp_path / "judged.json"
    judged.write_text(json.dumps({**json.loads(Path(_report(judged, {"q8": (0.5, 0.7)})).read_text()),
                                  "judged_only": True}), encoding="utf-8")
    assert pool_compare([f0, str(judged)]) == 2
    assert "judged.json is scored on judged products only, the reports before it on every product" in \
        capsys.readouterr().err


def test_sides_of_two_runs_pair_over_their_shared_queries(module, tmp_path):
    # a fine-tuned index's default (B of one run) against a learnt ranker (B of another), query by query
    ft = [_report(tmp_path / "ft0.json", {"q1": (0.1, 0.6), "q2": (0.1, 0.2)}, a="bm25", b="default")]
    ltr = [_report(tmp_path / "ltr0.json", {"q1": (0.1, 0.5), "q2": (0.1, 0.4), "q3": (0.1, 0.9)}, a="bm25", b="ltr")]
    lines = module.paired_table(*module.side_scores(ft, "b"), *module.side_scores(ltr, "b"), "paired")
    assert lines[0] == "ltr vs default: 2 queries paired"
    assert lines[3].startswith("| ndcg@10 | 0.4000 | 0.4500 | +0.0500 |") and "| 1 / 1 / 0 |" in lines[3]
