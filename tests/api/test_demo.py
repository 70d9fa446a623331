"""`shopsearch demo` end to end: generated catalog, embedded engine, served API, example searches (real model)."""

from __future__ import annotations

import json
import socket

import pytest

from shopsearch.api.cli import main
from shopsearch.api.demo_catalog import generate_catalog


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_generated_catalog_is_seeded_and_consistent():
    rows = generate_catalog(60, seed=3)
    assert rows == generate_catalog(60, seed=3)
    assert len({r["id"] for r in rows}) == 60
    for r in rows:
        assert r["brand"] in r["title"] and r["attributes"]["generated"] == "true"
        assert r["price"] > 0 and 1.0 <= r["rating"] <= 5.0 and " > " in r["category"]
    with pytest.raises(ValueError, match="n must be > 0"):
        generate_catalog(0)


@pytest.mark.slow
def test_demo_indexes_serves_and_prints_real_results(tmp_path, monkeypatch, capsys):
    # The demo sets these for the server it starts; monkeypatch restores them so later tests see a clean env.
    monkeypatch.setenv("SHOPSEARCH_HOME", str(tmp_path))
    monkeypatch.setenv("SHOPSEARCH_PROFILES", str(tmp_path / "profiles"))
    monkeypatch.delenv("OPENSEARCH_URL", raising=False)
    port = _free_port()
    assert main(["demo", "--engine", "embedded", "--no-models", "--products", "60", "--port", str(port),
                 "--exit"]) == 0
    out = capsys.readouterr().out
    assert "GET /search?q='wireless earbuds'" in out
    # the generated catalog has earbuds: the top hit for the query must be one
    first = out.split("GET /search?q='wireless earbuds'")[1].splitlines()[1]
    assert "Earbuds" in first
    assert "GET /suggest?q='wire'" in out and "Wireless" in out.split("GET /suggest?q='wire'")[1]
    assert f"storefront http://127.0.0.1:{port}/" in out
    lines = (tmp_path / "demo" / "catalog.jsonl").read_text().splitlines()
    assert len(lines) == 60 and json.loads(lines[0])["id"] == "demo0001"
