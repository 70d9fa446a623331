"""Suggestions from what shoppers search: /suggest mixes popular logged queries with product titles (typos
forgiven, zero-result queries left out), and `shopsearch report queries` lists top, zero-result and low-CTR
queries; through the app's real /search + POST /events path (embedded) and the UBI store API (both engines)."""

from __future__ import annotations

import json

import pytest

from shopsearch.api.cli import main
from shopsearch.api.query_report import queries_report
from shopsearch.events import event_from_dict
from shopsearch.plugin.popular_queries import PopularQueryCache
from shopsearch.ubi import UbiQuery, to_ubi_event
from tests.plugin.test_ubi_store import store  # noqa: F401 - the fixture: each engine's UBI store

from .conftest import ALIAS


def search(client, q: str, who: str, **params) -> dict:
    body = client.get("/search", query_string={"q": q, "client_id": who, "size": 3, **params}).get_json()
    assert "hits" in body, body
    return body


def click(client, body: dict, who: str) -> None:
    hit = body["hits"][0]
    event = {"type": "click", "query_id": body["query_id"], "product_id": hit["id"], "position": hit["rank"],
             "session_id": who, "query": body["query"], "token": hit["token"]}
    resp = client.post("/events", json=event)
    assert resp.status_code == 202, resp.get_json()


def kinds(client, q: str, size: int = 8) -> list[tuple[str, str]]:
    resp = client.get("/suggest", query_string={"q": q, "size": size})
    assert resp.status_code == 200, resp.get_json()
    return [(s["text"], s["kind"]) for s in resp.get_json()["suggestions"]]


@pytest.fixture
def logged(app, client):
    """Searches from two shoppers (one from one only, one finding nothing, one simulated), a click; drained into
    the store, popular queries refreshed. Returns the app's service."""
    drills = [search(client, q, who) for q, who in (("Cordless Drill", "a"), ("cordless  drill", "b"))]
    click(client, drills[0], "a")
    for who in ("a", "b"):
        click(client, search(client, "garden hose", who), who)
        search(client, "lamps", who)
        assert search(client, "hammer", who, price_min=10000)["total"] == 0  # no hammer costs that much
    search(client, "desk organizer", "a")  # one shopper only: never shown to others
    search(client, "garden hose", "c", simulated="true")
    svc = app.extensions["shopsearch"]
    svc.ubi_drainer.drain_once()
    assert len(svc.popular_queries.refresh()) == 3
    return svc


def test_suggest_mixes_popular_queries_with_titles(client, logged):
    assert kinds(client, "cord") == [("cordless drill", "query")]  # the equal title is not repeated
    assert kinds(client, "lam", 3) == [("lamps", "query"), ("Lamp shade", "product"), ("Blue floor lamp", "product")]
    assert kinds(client, "gard")[0] == ("garden hose", "query")
    assert kinds(client, "cordles dr") == [("cordless drill", "query")]  # typos forgiven in popular queries
    assert kinds(client, "gardn")[0] == ("garden hose", "query")
    assert kinds(client, "ham") == [("Hammer", "product")]  # "hammer" found nothing: not suggested
    assert kinds(client, "desk") == [("Desk organizer", "product"), ("Red desk lamp", "product")]  # one client


def test_a_zero_hit_search_offers_popular_queries_a_few_edits_away(client, logged):
    for who in ("a", "b"):
        assert search(client, "organiser desk", who)["total"] > 0  # a spelling the catalog lacks, finding products
    logged.ubi_drainer.drain_once()
    logged.popular_queries.refresh()
    body = search(client, "organiser dezk", "c", price_min=10000)  # the filter leaves nothing
    assert body["total"] == 0 and "organiser desk" in body["did_you_mean"] and len(body["did_you_mean"]) <= 3
    assert search(client, "hammer", "c", price_min=10000)["did_you_mean"] == []  # "hammer" itself found nothing


def test_the_query_log_records_the_index(client, logged):
    (record, *_) = logged.popular_queries.load()
    assert record.query_attributes["index"] == ALIAS


def test_report_queries_lists_top_zero_and_low_ctr(tmp_path, logged, capsys):
    ubi = str(tmp_path / "ubi")
    assert main(["report", "queries", "--ubi-dir", ubi, "--min-impressions", "2", "--json",
                 "--html", str(tmp_path / "q.html"), "--index", ALIAS]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [(s["query"], s["searches"], s["clients"]) for s in report["top"][:4]] == [
        ("garden hose", 3, 3), ("cordless drill", 2, 2), ("hammer", 2, 2), ("lamps", 2, 2)]
    assert [(s["query"], s["zero_results"]) for s in report["zero_results"]] == [("hammer", 2)]
    assert [(c["query"], c["impressions"], c["clicked"]) for c in report["low_ctr"]] == [
        ("lamps", 2, 0), ("cordless drill", 2, 1), ("garden hose", 3, 2)]
    assert (report["searches"], report["simulated"]) == (10, 1)
    html = (tmp_path / "q.html").read_text()
    assert "SIMULATED: 1 of 10 searches" in html and "Zero-result queries" in html
    assert main(["report", "queries", "--ubi-dir", ubi, "--since", "2999-01-01"]) == 0
    assert "0 searches" in capsys.readouterr().out
    assert main(["report", "queries", "--ubi-dir", ubi, "--since", "last week"]) == 2
    assert "since='last week'" in capsys.readouterr().err


# --- both engines' stores, through the UBI store API ----------------------------------------------------------

def record(n: int, text: str, who: str, total: int, *, index: str = "products") -> UbiQuery:
    return UbiQuery(query_id=f"q{n}", client_id=who, user_query=text, query_response_id=f"r{n}",
                    query_response_hit_ids=["p1", "p2"][: min(total, 2)], timestamp=f"2030-01-01T00:00:{n:02d}Z",
                    query_attributes={"page": 1, "total": total, "index": index})


def test_popular_queries_and_report_from_either_store(store):
    queries = [record(1, "Wireless Mouse", "a", 5), record(2, "wireless mouse", "b", 5),
               record(3, "wireless mouse", "c", 5), record(4, "zzqx", "a", 0), record(5, "zzqx", "b", 0),
               record(6, "wifi router", "a", 2), record(7, "wifi router", "b", 2),
               record(8, "wifi router", "c", 2, index="other")]
    clicks = [to_ubi_event(event_from_dict({"type": "click", "query_id": f"q{n}", "product_id": "p1", "position": 1,
                                            "session_id": "s", "timestamp": f"2030-01-01T00:01:{n:02d}Z",
                                            "event_id": f"e{n}"})) for n in (1, 2, 6)]
    store.write(queries, clicks)
    popular = PopularQueryCache(store.iter_queries, index="products", window_days=36500).refresh()
    assert popular.lookup("wi", 5) == ["wireless mouse", "wifi router"]  # 3 clients before 2 (one on "other")
    assert popular.lookup("wireles", 5) == ["wireless mouse"]
    assert popular.lookup("wirelss mo", 5) == ["wireless mouse"]  # a dropped letter
    assert popular.lookup("zzq", 5) == [] and popular.lookup("zzqx", 5) == []  # found nothing
    report = queries_report(store.iter_queries(), store.iter_events(), index="products", min_impressions=2)
    assert [s.query for s in report.top] == ["wireless mouse", "wifi router", "zzqx"]
    assert [s.query for s in report.zero_results] == ["zzqx"]
    assert [(c.query, c.impressions, c.clicked) for c in report.low_ctr] == [("wifi router", 2, 1),
                                                                              ("wireless mouse", 3, 2)]
    assert report.simulated == 0 and report.searches == 7


def test_report_counts_shoppers_searches_not_the_consoles():
    console = record(9, "lamp", "eng", 3).model_copy(update={"query_attributes": {"explain": True, "total": 3,
                                                                                  "page": 1}})
    report = queries_report([record(1, "lamp", "a", 3), record(2, "sofa", "b", 0), console], [])
    assert report.searches == 2 and report.last == record(2, "sofa", "b", 0).timestamp


def test_report_html_escapes_query_text(tmp_path):
    from shopsearch.api.report import render_queries_html, render_queries_markdown

    hostile = [record(n, "<script>alert(1)</script> | x", who, 0) for n, who in ((1, "a"), (2, "b"))]
    report = queries_report(hostile, [])
    html = render_queries_html(report)
    assert "<script>" not in html and "&lt;script&gt;" in html
    markdown = render_queries_markdown(report)
    assert "\\|" in markdown and "<script>" not in markdown  # nor can a pipe break a table, or markup run
    with pytest.raises(ValueError, match="top=0"):
        queries_report([], [], top=0)
