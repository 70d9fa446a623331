"""/search through an experiments file (Flask test client, tiny catalog): ab arms, interleaving, overrides."""

from __future__ import annotations

import os

import pytest
from flask import g

from shopsearch.api.app import create_app
from shopsearch.api.experiment_report import experiment_report
from shopsearch.api.report import render_experiment_markdown
from shopsearch.plugin.hybrid import HybridSearcher
from shopsearch.plugin.profiles import PACKAGED_DIR, ProfileStore
from shopsearch.plugin.search_types import SearchRequest
from shopsearch.reranker.experiments import INTERLEAVED, bucket
from shopsearch.reranker.interleaving import list_seed, team_draft
from shopsearch.ubi import UbiEvent

from .conftest import ALIAS
from .test_ubi_logging import stored

AB = """
[experiments.lexical-vs-dense]
mode = "ab"
arms = [{ profile = "bm25", share = 0.5 }, { profile = "dense", share = 0.5 }]
"""
INTERLEAVE = """
[experiments.il]
mode = "interleave"
arms = [{ profile = "bm25" }, { profile = "dense" }]
"""


def _client(tmp_path, searcher, catalog_engine, text: str):
    (tmp_path / "experiments.toml").write_text(text)
    app = create_app({"TESTING": True, "searcher": searcher, "engine_instance": catalog_engine, "index": ALIAS,
                      "engine": "embedded", "events_dir": str(tmp_path / "events"), "home": str(tmp_path),
                      "experiments_file": str(tmp_path / "experiments.toml")})
    return app.test_client()


def _session_in(arm_low: bool, name: str = "lexical-vs-dense") -> str:
    """A session id whose bucket lands in the first (bm25) or second (dense) half."""
    return next(f"s{i}" for i in range(1000) if (bucket(name, f"s{i}") < 0.5) == arm_low)


@pytest.mark.parametrize("first_half, profile", [(True, "bm25"), (False, "dense")])
def test_ab_arm_decides_the_profile_and_is_recorded(tmp_path, searcher, catalog_engine, first_half, profile):
    client = _client(tmp_path, searcher, catalog_engine, AB)
    session = _session_in(first_half)
    with client:
        body = client.get(f"/search?q=lamp&size=3&session_id={session}").get_json()
        assert g.experiment_attributes == {"experiment": "lexical-vs-dense", "arm": profile}
    assert body["profile"] == profile
    again = client.get(f"/search?q=lamp&size=3&session_id={session}").get_json()
    assert again["profile"] == profile  # the same client keeps its arm


def test_no_client_or_an_explicit_profile_bypasses_the_experiment(tmp_path, searcher, catalog_engine):
    client = _client(tmp_path, searcher, catalog_engine, AB)
    with client:
        assert client.get("/search?q=lamp").get_json()["profile"] == "default"
        assert g.experiment_attributes == {}
    with client:
        body = client.get(f"/search?q=lamp&profile=default&session_id={_session_in(True)}").get_json()
        assert body["profile"] == "default" and g.experiment_attributes == {}


def test_interleave_serves_the_team_draft_of_both_profiles(tmp_path, searcher, catalog_engine):
    client = _client(tmp_path, searcher, catalog_engine, INTERLEAVE)
    lexical = [h["id"] for h in client.get("/search?q=lamp light&size=8&profile=bm25").get_json()["hits"]]
    dense = [h["id"] for h in client.get("/search?q=lamp light&size=8&profile=dense").get_json()["hits"]]
    assert lexical != dense
    with client:
        body = client.get("/search?q=lamp light&size=4&session_id=s1").get_json()
        attrs = dict(g.experiment_attributes)
    expected = _merged(lexical, dense, "s1", 4)
    assert [h["id"] for h in body["hits"]] == list(expected.ids)
    assert attrs == {"experiment": "il", "arm": INTERLEAVED, "teams": list(expected.teams)}
    assert body["profile"] == "bm25+dense" and [h["rank"] for h in body["hits"]] == [1, 2, 3, 4]
    assert "interleave" in body["timings_ms"]


def _merged(lexical: list[str], dense: list[str], client: str, length: int, query: str = "lamp light"):
    """The merged list the API serves ``client`` for ``query`` (one draw per result list, not per request)."""
    return team_draft(lexical, dense, seed=list_seed("il", client, SearchRequest(query)), teams=("bm25", "dense"),
                      length=length)


@pytest.mark.parametrize("client_id", ["s1", "s2", "s3", "s4", "s5", "s6"])
def test_interleaved_pages_are_slices_of_one_merged_list(tmp_path, searcher, catalog_engine, client_id):
    client = _client(tmp_path, searcher, catalog_engine, INTERLEAVE)
    lexical = [h["id"] for h in client.get("/search?q=lamp light&size=8&profile=bm25").get_json()["hits"]]
    dense = [h["id"] for h in client.get("/search?q=lamp light&size=8&profile=dense").get_json()["hits"]]
    pages, teams = [], []
    for page in (1, 2):  # each request has its own query_id; the coin flips must not follow it
        with client:
            body = client.get(f"/search?q=lamp light&size=2&page={page}&session_id={client_id}").get_json()
            teams.append(g.experiment_attributes["teams"])
        pages.append([h["id"] for h in body["hits"]])
        assert [h["rank"] for h in body["hits"]] == [2 * page - 1, 2 * page]
    whole = _merged(lexical, dense, client_id, 4)
    assert not set(pages[0]) & set(pages[1])
    assert pages[0] + pages[1] == list(whole.ids)
    assert teams[0] + teams[1] == list(whole.teams)  # each served product's team, as clicks are credited


def test_an_interleaved_client_sorting_by_price_gets_the_baseline_and_is_left_out(tmp_path, searcher,
                                                                                 catalog_engine):
    client = _client(tmp_path, searcher, catalog_engine, INTERLEAVE)
    baseline = client.get("/search?q=lamp light&size=8&sort=price_asc&profile=bm25").get_json()
    with client:
        body = client.get("/search?q=lamp light&size=8&sort=price_asc&client_id=c1").get_json()
        attrs = dict(g.experiment_attributes)
    assert body["profile"] == "bm25" and [h["id"] for h in body["hits"]] == [h["id"] for h in baseline["hits"]]
    prices = [h["price"] for h in body["hits"]]
    assert prices == sorted(prices)
    assert attrs == {"experiment": "il", "arm": INTERLEAVED, "not_interleaved": "sort=price_asc"}
    relevance = client.get("/search?q=lamp light&size=4&client_id=c1").get_json()
    queries, _ = stored(client.application)
    click = UbiEvent(action_name="click", query_id=body["query_id"], timestamp="2025-03-01T10:00:00Z",
                     event_attributes={"object": {"object_id": body["hits"][0]["id"]}})
    report = experiment_report("il", queries, [click], arms=["bm25", "dense"])
    assert report.searches == 2 and report.not_interleaved == 1
    assert report.preference.searches == 1 and report.preference.ties == 1  # the sorted search's click: not counted
    assert relevance["profile"] == "bm25+dense"
    assert "1 searches sorted by other than relevance were served by the baseline" in \
        render_experiment_markdown(report)


def test_the_query_log_records_the_arm_and_the_report_reads_it_back(tmp_path, searcher, catalog_engine):
    client = _client(tmp_path, searcher, catalog_engine, INTERLEAVE)
    served = [client.get(f"/search?q=lamp light&size=4&client_id=c{i}").get_json() for i in range(6)]
    client.get("/search?q=lamp light&client_id=c0&profile=bm25")  # an explicit profile: not in the experiment
    queries, _ = stored(client.application)
    logged = {q.query_id: q.query_attributes for q in queries}
    clicks = []
    for body in served[:5]:  # five searches click a product the dense profile placed; the sixth has no click
        attrs = logged[body["query_id"]]
        assert (attrs["experiment"], attrs["arm"]) == ("il", INTERLEAVED)
        pick = next(h["id"] for h, team in zip(body["hits"], attrs["teams"]) if team == "dense")
        clicks.append(UbiEvent(action_name="click", query_id=body["query_id"], timestamp="2025-03-01T10:00:00Z",
                               event_attributes={"object": {"object_id": pick}}))
    report = experiment_report("il", queries, clicks, arms=["bm25", "dense"])
    assert report.searches == 6
    p = report.preference
    assert (p.wins, p.losses, p.ties) == (5, 0, 1) and p.p == pytest.approx(2 / 2 ** 5)


def test_an_invalid_file_runs_no_experiment(tmp_path, searcher, catalog_engine):
    client = _client(tmp_path, searcher, catalog_engine, AB.replace("0.5 }]", "0.4 }]"))
    with client:
        assert client.get(f"/search?q=lamp&session_id={_session_in(False)}").get_json()["profile"] == "default"
        assert g.experiment_attributes == {}


def test_an_arm_whose_profile_was_removed_serves_as_if_no_experiment_ran(tmp_path, catalog_engine, tiny_encoder,
                                                                         caplog):
    """The file was checked against the profiles when it was read; a profile removed since must not turn that arm's
    searches into a 400 blaming a ``profile`` the shopper never sent."""
    folder = tmp_path / "profiles"
    folder.mkdir()
    (folder / "mine.toml").write_text((PACKAGED_DIR / "bm25.toml").read_text())
    (tmp_path / "experiments.toml").write_text(AB.replace('"bm25"', '"mine"'))
    searcher = HybridSearcher(catalog_engine, ALIAS, tiny_encoder, ProfileStore([PACKAGED_DIR, folder]))
    app = create_app({"TESTING": True, "searcher": searcher, "engine_instance": catalog_engine, "index": ALIAS,
                      "engine": "embedded", "home": str(tmp_path), "profiles_dir": str(folder),
                      "experiments_file": str(tmp_path / "experiments.toml")})
    client, session = app.test_client(), _session_in(True)
    assert client.get(f"/search?q=lamp&session_id={session}").get_json()["profile"] == "mine"
    (folder / "mine.toml").unlink()
    for _ in range(2):
        with client:
            resp = client.get(f"/search?q=lamp&session_id={session}")
            assert resp.status_code == 200 and resp.get_json()["profile"] == "default"
            assert g.experiment_attributes == {}
    assert caplog.text.count("experiment 'lexical-vs-dense': profile 'mine'") == 1  # once, not every search
    app.extensions["shopsearch"].ubi_drainer.stop()


def test_a_file_saved_in_another_encoding_keeps_the_last_version_and_says_so(tmp_path, searcher, catalog_engine,
                                                                             caplog):
    client, session = _client(tmp_path, searcher, catalog_engine, AB), _session_in(False)
    assert client.get(f"/search?q=lamp&session_id={session}").get_json()["profile"] == "dense"
    (tmp_path / "experiments.toml").write_bytes(AB.replace("[experiments", '# caf\xe9\n[experiments').encode("latin-1"))
    os.utime(tmp_path / "experiments.toml", (1, 1))  # a new mtime, however fast the test runs
    resp = client.get(f"/search?q=lamp&session_id={session}")
    assert resp.status_code == 200 and resp.get_json()["profile"] == "dense"
    assert f"{tmp_path / 'experiments.toml'}: not UTF-8 text (byte b'\\xe9' at offset 6)" in caplog.text
