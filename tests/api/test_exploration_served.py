"""A profile's exploration through /search: the served first page carries the FairPairs swaps seeded by its
query_id, the query log records them with the served order, and pages, sorts and interleaved lists stay as ranked."""

from __future__ import annotations

import pytest

from shopsearch.api.app import create_app
from shopsearch.plugin.hybrid import HybridSearcher
from shopsearch.plugin.profiles import PACKAGED_DIR, ProfileStore
from shopsearch.reranker.exploration import METHOD, fair_pairs, swap

from .conftest import ALIAS
from .test_ubi_logging import stored
from tests.ubi_schemas import ubi_errors

EXPLORING = (PACKAGED_DIR / "default.toml").read_text(encoding="utf-8").replace(
    "\nshare = 0.0\n", "\nshare = 1.0\n").replace("\ndepth = 10\n", "\ndepth = 4\n")


@pytest.fixture
def app(tmp_path, catalog_engine, tiny_encoder):
    folder = tmp_path / "profiles"
    folder.mkdir()
    (folder / "explore.toml").write_text(EXPLORING, encoding="utf-8")
    (tmp_path / "experiments.toml").write_text(
        '[experiments.il]\nmode = "interleave"\narms = [{ profile = "explore" }, { profile = "bm25" }]\n')
    searcher = HybridSearcher(catalog_engine, ALIAS, tiny_encoder, ProfileStore([PACKAGED_DIR, folder]))
    app = create_app({"TESTING": True, "searcher": searcher, "engine_instance": catalog_engine, "index": ALIAS,
                      "engine": "embedded", "home": str(tmp_path), "profiles_dir": str(folder),
                      "experiments_file": str(tmp_path / "experiments.toml")})
    yield app
    app.extensions["shopsearch"].ubi_drainer.stop()


def _ids(body: dict) -> list[str]:
    return [h["id"] for h in body["hits"]]


def test_an_exploring_profile_serves_and_logs_fairpairs_swaps(app):
    client = app.test_client()
    explained = client.get("/search?q=lamp&size=6&profile=explore&explain=true").get_json()
    ranked = _ids(explained)  # explain shows the ranking itself, unexplored
    assert ranked == _ids(client.get("/search?q=lamp&size=6&profile=default").get_json())
    bodies = [client.get("/search?q=lamp&size=6&profile=explore").get_json() for _ in range(8)]
    queries, _ = stored(app)
    logged = {q.query_id: q for q in queries}
    stages = {h["id"]: h["stages"] for h in explained["hits"]}
    swapped = 0
    for body in bodies:
        draw = fair_pairs(4, seed=body["query_id"], share=1.0)
        assert _ids(body) == swap(ranked, draw.swapped) and [h["rank"] for h in body["hits"]] == list(range(1, 7))
        record = logged[body["query_id"]]
        assert ubi_errors("query", record) == []
        assert record.query_response_hit_ids == _ids(body)  # the order the shopper saw
        assert record.query_attributes["explore"] == {"method": METHOD, "share": 1.0, "depth": 4,
                                                      "offset": draw.offset, "pairs": list(draw.formed),
                                                      "swapped": list(draw.swapped)}
        assert record.query_attributes["features"] == stages  # each product's features, wherever it was shown
        swapped += bool(draw.swapped)
    assert swapped  # eight query ids: some list swapped (each does with probability 3/4)
    served = {b["query_id"] for b in bodies}
    assert all("explore" not in q.query_attributes for q in queries if q.query_id not in served)


@pytest.mark.parametrize("params", ["profile=explore&page=2&size=3", "profile=explore&size=6&sort=price_asc",
                                    "size=6&session_id=s-1"])
def test_pages_sorts_and_interleaved_lists_do_not_explore(app, params):
    # a session_id without profile= puts the client in the interleaving experiment: its list is already randomised
    body = app.test_client().get(f"/search?q=lamp&{params}").get_json()
    (record,), _ = stored(app)
    assert record.query_id == body["query_id"] and "explore" not in record.query_attributes
    if "session_id" in params:
        assert record.query_attributes["experiment"] == "il"


def test_a_profile_without_exploration_logs_none(app):
    app.test_client().get("/search?q=lamp&size=6&profile=default")
    (record,), _ = stored(app)
    assert "explore" not in record.query_attributes
