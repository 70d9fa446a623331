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
    from shopsearch.plugin.engines import open_engine
    from shopsearch.settings import load_settings

    engine = open_engine("embedded", root=load_settings().embedded_dir)  # the generated colours are a facet
    try:
        assert engine.index_meta("demo")["facet_attributes"] == "colour"
    finally:
        engine.close()


def test_demo_storefront_key_is_created_once_and_replaced_when_revoked(tmp_path):
    from shopsearch.api.cmd_demo import demo_storefront_key
    from shopsearch.api.keys import KeyStore
    from shopsearch.settings import load_settings

    settings = load_settings({"home": str(tmp_path)}, environ={})
    assert demo_storefront_key(settings) is None  # no keys: local mode, nothing to send
    store = KeyStore(settings.keys_file)
    store.create("admin")
    first = demo_storefront_key(settings)
    assert store.verify(first).role == "search" and demo_storefront_key(settings) == first
    assert (tmp_path / "demo" / "storefront.key").stat().st_mode & 0o777 == 0o600
    store.revoke(store.verify(first).id)
    second = demo_storefront_key(settings)
    assert second != first and store.verify(second).name == "demo-storefront"


@pytest.mark.slow
def test_demo_runs_when_api_keys_exist(tmp_path, monkeypatch, capsys):
    from shopsearch.api.keys import KeyStore

    monkeypatch.setenv("SHOPSEARCH_HOME", str(tmp_path))
    monkeypatch.setenv("SHOPSEARCH_PROFILES", str(tmp_path / "profiles"))
    monkeypatch.delenv("OPENSEARCH_URL", raising=False)
    monkeypatch.delenv("SHOPSEARCH_STOREFRONT_KEY", raising=False)
    KeyStore(tmp_path / "keys.json").create("admin", name="ops")  # before this fix the examples got 401
    assert main(["demo", "--engine", "embedded", "--no-models", "--products", "60", "--port", str(_free_port()),
                 "--exit"]) == 0
    out = capsys.readouterr().out
    assert "the demo's storefront sends the search key" in out and "GET /suggest?q='wire'" in out
    assert "(asks for an admin key)" in out


@pytest.mark.slow
def test_demo_whose_api_never_gets_ready_says_so_and_stops_its_server(tmp_path, monkeypatch, capsys):
    from shopsearch.api import cmd_demo

    monkeypatch.setenv("SHOPSEARCH_HOME", str(tmp_path))
    monkeypatch.setenv("SHOPSEARCH_PROFILES", str(tmp_path / "profiles"))
    monkeypatch.delenv("OPENSEARCH_URL", raising=False)
    started = []

    def never_ready(base, proc, timeout=180.0):  # a box too loaded to boot the worker in time
        started.append(proc)
        raise RuntimeError(f"the API did not become ready at {base} within 0 s")

    monkeypatch.setattr(cmd_demo, "_wait_ready", never_ready)
    assert main(["demo", "--engine", "embedded", "--no-models", "--products", "20", "--port", str(_free_port()),
                 "--exit"]) == 1
    err = capsys.readouterr().err
    assert "shopsearch demo: the API did not become ready at http://" in err and "Traceback" not in err
    assert started[0].returncode is not None  # stopped and reaped, no zombie left behind
