"""Smoke test of bench/latency.py --quick against the real node: it runs, prints every column and both verdicts.

Needs the ``crowdflower`` alias (the full catalog with all-MiniLM-L6-v2 vectors) on the node, as the bench does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.opensearch
REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

from _latency_stats import COLUMNS, paired, percentile, summarise, verdicts  # noqa: E402


def test_quick_run_prints_every_column_and_verdict(opensearch_url, shared_data, tmp_path):
    out = tmp_path / "latency.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "latency.py"), "--quick", "--no-progress", "--opensearch-url",
         opensearch_url, "--queries", str(shared_data / "crowdflower" / "queries-dev.tsv"), "--json", str(out)],
        capture_output=True, text=True, cwd=str(REPO), timeout=120,
        # A smoke test of the bench's output, on a shared CI box: a slow search must not be cut short and fail it.
        env={**os.environ, "SHOPSEARCH_SEARCH_DEADLINE_MS": "30000"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    for _, label, _ in COLUMNS:
        if label == "facets took" or label == "page fetch":
            continue  # present only when the engine sends those requests; checked below from the JSON
        row = [ln for ln in lines if ln.startswith(label + " ")]
        assert row, f"no {label!r} row in:\n{proc.stdout}"
        n, p50, p95, p99 = row[0][len(label):].split()[:4]
        assert int(n) >= 20 and float(p50) <= float(p95) <= float(p99)
    assert any(ln.startswith("API overhead (embedding excluded) p50") for ln in lines)
    assert any(ln.startswith("total p95") for ln in lines)
    assert "load average at start" in proc.stdout and "command: python bench/latency.py --quick" in proc.stdout
    res = json.loads(out.read_text())
    assert res["queries"] == 20 and res["summary"]["total_cold"]["n"] == 20
    assert res["summary"]["facets_took"]["n"] == 20  # the storefront asks for facets: every query counted them
    assert res["summary"]["embed_warm"]["p50"] < res["summary"]["embed_cold"]["p50"]


def test_stats_helpers():
    assert percentile([5.0, 1.0, 3.0], 50) == 3.0
    assert percentile([1.0, 2.0], 100) == 2.0
    assert summarise([])["n"] == 0
    assert paired([10.0, 7.0], [2.0, 1.0], [1.0, 1.0]) == [7.0, 5.0]
    with pytest.raises(ValueError, match="aligned"):
        paired([1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="q must be"):
        percentile([1.0], 101)
    lines = verdicts({"overhead": summarise([4.0]), "total_cold": summarise([50.0]),
                      "total_warm": summarise([30.0])})
    assert lines[0].endswith("NOT met (target <= 3 ms)") and "-> met" in lines[1]
