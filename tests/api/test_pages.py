"""The storefront and console pages and the console's JSON endpoints, through the Flask test client."""

from __future__ import annotations

import math
import re

import pytest

from shopsearch.plugin.profiles import ProfileStore

from .pages_support import make_pages_app, write_judgments


def _ndcg(grades: list[int], all_grades: list[int], k: int = 10) -> float:
    """Independent nDCG@k with linear gains (what trec_eval's ndcg_cut computes)."""
    dcg = sum(g / math.log2(i + 2) for i, g in enumerate(grades[:k]))
    ideal = sum(g / math.log2(i + 2) for i, g in enumerate(sorted(all_grades, reverse=True)[:k]))
    return dcg / ideal


@pytest.fixture
def judged_client(tmp_path, searcher, catalog_engine):
    qrels, queries = write_judgments(tmp_path / "judgments")
    app = make_pages_app(searcher, catalog_engine, tmp_path,
                         console_qrels=str(qrels), console_queries=str(queries))
    return app.test_client()


@pytest.fixture
def plain_client(tmp_path, searcher, catalog_engine, monkeypatch):
    monkeypatch.delenv("SHOPSEARCH_CONSOLE_QRELS", raising=False)
    monkeypatch.delenv("SHOPSEARCH_CONSOLE_QUERIES", raising=False)
    return make_pages_app(searcher, catalog_engine, tmp_path).test_client()


def _error(resp, status: int, parameter: str | None) -> dict:
    assert resp.status_code == status, resp.get_json()
    err = resp.get_json()["error"]
    assert err["parameter"] == parameter
    return err


# --- pages and assets ------------------------------------------------------------------------------------------

def test_storefront_page_renders_with_local_assets(plain_client):
    resp = plain_client.get("/")
    assert resp.status_code == 200 and resp.mimetype == "text/html"
    html = resp.get_data(as_text=True)
    for needle in ('id="q"', 'role="combobox"', 'id="suggestions"', 'id="facets"', 'id="price-form"',
                   'id="in-stock"', 'id="results"', 'id="pager"', 'id="similar-panel"',
                   'data-max-depth="1000"'):  # the pager stops where the API's max_depth does
        assert needle in html, needle
    assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', html)
    assert assets == ["/static/style.css", "/static/common.js", "/static/storefront.js"]
    assert not re.search(r'(?:src|href)="(?:https?:)?//', html)  # no CDN: everything is served by the app


def test_console_page_renders_with_local_assets(plain_client):
    html = plain_client.get("/console").get_data(as_text=True)
    for needle in ('id="cq"', 'id="profile-a"', 'id="profile-b"', 'id="qrels-file"', 'id="queries-file"',
                   'id="metric-delta"', 'id="col-a"', 'id="col-b"'):
        assert needle in html, needle
    assert re.findall(r'(?:src|href)="(/static/[^"]+)"', html) == [
        "/static/style.css", "/static/common.js", "/static/console.js"]
    assert not re.search(r'(?:src|href)="(?:https?:)?//', html)


@pytest.mark.parametrize(("name", "mimetype", "needles"), [
    ("style.css", "text/css", (".card", ".row", "--grade-color")),
    ("common.js", "text/javascript", ("Retry-After", "ApiProblem")),
    ("storefront.js", "text/javascript", ("/suggest?", "/search?", "/events", "/similar?", "query_id")),
    ("console.js", "text/javascript", ("/console/api/profiles", "/console/api/judge", "explain")),
])
def test_static_assets_are_served(plain_client, name, mimetype, needles):
    with plain_client.get(f"/static/{name}") as resp:  # a file response: close it (warnings are errors)
        assert resp.status_code == 200 and resp.mimetype == mimetype
        text = resp.get_data(as_text=True)
    assert all(n in text for n in needles)
    assert "http://" not in text and "https://" not in text


# --- console API -------------------------------------------------------------------------------------------------

def test_profiles_lists_every_profile_with_its_legs(plain_client):
    body = plain_client.get("/console/api/profiles").get_json()
    by_name = {p["name"]: p for p in body["profiles"]}
    assert list(by_name) == ProfileStore().names()
    assert {"bm25", "default", "dense"} <= set(by_name)
    assert by_name["bm25"]["legs"] == ["bm25"] and by_name["dense"]["legs"] == ["knn"]
    assert by_name["default"]["legs"] == ["bm25", "knn"] and by_name["default"]["fusion"] == "rrf"
    assert by_name["default"]["rerank"] is False and by_name["default"]["description"].startswith("Hybrid")
    assert body["pair"] == ["bm25", "default"]


def test_profiles_lists_an_invalid_file_with_its_error(tmp_path, catalog_engine, monkeypatch):
    extra = tmp_path / "profiles"
    extra.mkdir()
    (extra / "broken.toml").write_text("[knn]\nk = 0\n")
    monkeypatch.setenv("SHOPSEARCH_PROFILES", str(extra))

    class NoProfiles:  # a searcher without a profile store: the default folders (+ $SHOPSEARCH_PROFILES) are read
        pass

    body = make_pages_app(NoProfiles(), catalog_engine, tmp_path).test_client().get(
        "/console/api/profiles").get_json()
    broken = [p for p in body["profiles"] if p["name"] == "broken"]
    assert len(broken) == 1 and "knn.k = 0" in broken[0]["error"]
    assert "broken" not in body["pair"]


def test_judgments_summary_configured(judged_client):
    assert judged_client.get("/console/api/judgments").get_json() == {
        "configured": True, "source": "qrels.txt", "queries": 3, "judged_queries": 2}


def test_judgments_summary_not_configured(plain_client):
    assert plain_client.get("/console/api/judgments").get_json() == {
        "configured": False, "source": None, "queries": 0, "judged_queries": 0}


def test_judgments_queries_without_qrels_is_an_error(tmp_path, searcher, catalog_engine):
    _, queries = write_judgments(tmp_path / "j")
    c = make_pages_app(searcher, catalog_engine, tmp_path, console_queries=str(queries)).test_client()
    err = _error(c.get("/console/api/judgments"), 500, None)
    assert err["code"] == "console_misconfigured" and "console_qrels" in err["message"]


def test_trec_qrels_without_queries_says_what_is_missing(tmp_path, searcher, catalog_engine):
    qrels, _ = write_judgments(tmp_path / "j")
    c = make_pages_app(searcher, catalog_engine, tmp_path, console_qrels=str(qrels)).test_client()
    err = _error(c.get("/console/api/judgments"), 500, None)
    assert err["code"] == "judgments_unreadable" and "CONSOLE_QUERIES" in err["message"]


def test_csv_judgments_need_no_queries_file(tmp_path, searcher, catalog_engine):
    path = tmp_path / "judgments.csv"
    path.write_text("query,product_id,grade\nlamp,p1,2\nlamp,p2,0\n")
    c = make_pages_app(searcher, catalog_engine, tmp_path, console_qrels=str(path)).test_client()
    assert c.get("/console/api/judgments").get_json()["judged_queries"] == 1
    body = c.post("/console/api/judge", json={"query": "Lamp", "rankings": [["p2", "p1"]]}).get_json()
    assert body["grades"] == {"p2": 0, "p1": 2} and body["scores"] == [pytest.approx(1 / math.log2(3))]


def test_judge_scores_each_ranking_with_the_configured_list(judged_client):
    left, right = ["p3", "p1", "p2"], ["p1", "p2", "p7", "p6"]
    body = judged_client.post("/console/api/judge", json={"query": "  LAMP ", "rankings": [left, right]}).get_json()
    assert body["qid"] == "q1" and body["judged"] is True and body["source"] == "qrels.txt"
    assert body["grades"] == {"p3": 0, "p1": 3, "p2": 2, "p7": 1}  # shown and judged only (p6 unjudged)
    assert (body["judged_count"], body["relevant_count"], body["max_grade"]) == (5, 3, 3)
    all_grades = [3, 2, 0, 1, 0]
    expected = [_ndcg([0, 3, 2], all_grades), _ndcg([3, 2, 1, 0], all_grades)]
    assert body["metric"] == "ndcg@10"
    assert body["scores"] == pytest.approx(expected, abs=1e-6)
    assert body["scores"][1] == pytest.approx(1.0)
    assert body["delta"] == pytest.approx(expected[1] - expected[0], abs=1e-6)
    assert body["judged_at_10"] == [1.0, pytest.approx(0.75)]  # p6, on the right, was never judged


def test_judge_agrees_with_offline_evaluation(judged_client):
    from shopsearch.evaluation import evaluate
    from shopsearch.judgments import read_qrels

    client = judged_client
    ranking = ["p7", "p2", "p1"]
    body = client.post("/console/api/judge", json={"query": "lamp", "rankings": [ranking]}).get_json()
    qrels_path = client.application.extensions["shopsearch"].config.console_qrels
    offline = evaluate(read_qrels(qrels_path), {"q1": ranking}, qids=["q1"]).per_query["q1"]["ndcg@10"]
    assert body["scores"] == [pytest.approx(offline, abs=1e-6)] and body["delta"] is None


def test_judge_known_query_without_grades_and_unknown_query(judged_client):
    hose = judged_client.post("/console/api/judge", json={"query": "garden hose", "rankings": [["p6"], []]})
    assert hose.get_json()["qid"] == "q3" and hose.get_json()["judged"] is False
    assert hose.get_json()["scores"] is None and hose.get_json()["grades"] == {}
    other = judged_client.post("/console/api/judge", json={"query": "hammer", "rankings": [["p5"]]}).get_json()
    assert other["qid"] is None and other["judged"] is False and other["source"] == "qrels.txt"


def test_judge_with_uploaded_grades(plain_client):
    body = plain_client.post("/console/api/judge", json={
        "query": "drill", "qid": "hd7", "rankings": [["p5", "p4"], ["p4"]], "judgments": {"p4": 2, "p5": 0}},
    ).get_json()
    assert (body["source"], body["qid"], body["grades"]) == ("uploaded", "hd7", {"p5": 0, "p4": 2})
    assert body["scores"] == pytest.approx([1 / math.log2(3), 1.0])


def test_judge_adds_the_grades_given_in_the_console(judged_client, plain_client):
    # p6 was never judged for "lamp": graded 3 in the console, it counts, over the configured list
    right = ["p1", "p2", "p7", "p6"]
    before = judged_client.post("/console/api/judge", json={"query": "lamp", "rankings": [right]}).get_json()
    after = judged_client.post("/console/api/judge", json={"query": "lamp", "rankings": [right],
                                                           "added": {"p6": 3, "p3": 1}}).get_json()
    assert "p6" not in before["grades"] and after["grades"]["p6"] == 3
    assert before["judged_at_10"] == [pytest.approx(0.75)] and after["judged_at_10"] == [1.0]
    assert after["judged_count"] == before["judged_count"] + 1  # p3 was judged already: regraded, not added
    assert after["scores"][0] < before["scores"][0]  # a grade-3 product at rank 4 raises the ideal above this list
    # over an uploaded list, and with no list at all
    up = plain_client.post("/console/api/judge", json={"query": "drill", "rankings": [["p5"]], "judgments": {"p5": 0},
                                                       "added": {"p5": 2}}).get_json()
    assert up["grades"] == {"p5": 2} and up["scores"] == [1.0]
    alone = plain_client.post("/console/api/judge", json={"query": "x", "rankings": [["p9"]], "added": {"p9": 1}})
    assert alone.get_json()["scores"] == [1.0] and alone.get_json()["source"] is None


def test_judge_without_any_judgments(plain_client):
    body = plain_client.post("/console/api/judge", json={"query": "lamp", "rankings": [["p1"], ["p2"]]}).get_json()
    assert (body["source"], body["qid"], body["judged"], body["scores"], body["delta"]) == (
        None, None, False, None, None)


@pytest.mark.parametrize(("payload", "parameter"), [
    ({"rankings": [["p1"]]}, "query"),
    ({"query": " ", "rankings": [["p1"]]}, "query"),
    ({"query": "lamp", "rankings": []}, "rankings"),
    ({"query": "lamp", "rankings": [["p1"]] * 5}, "rankings"),
    ({"query": "lamp", "rankings": [["p1", 7]]}, "rankings[0]"),
    ({"query": "lamp", "rankings": [["p1"], ["x"] * 101]}, "rankings[1]"),
    ({"query": "lamp", "rankings": [["p1"]], "judgments": {"p1": "high"}}, "judgments"),
    ({"query": "lamp", "rankings": [["p1"]], "judgments": {"p1": True}}, "judgments"),
    ({"query": "lamp", "rankings": [["p1"]], "judgments": [["p1", 3]]}, "judgments"),
    ({"query": "lamp", "rankings": [["p1"]], "added": {"p1": 2.5}}, "added"),
    ({"query": "lamp", "rankings": [["p1"]], "added": {"": 2}}, "added"),
    ({"query": "lamp", "rankings": [["p1"]], "profile": "x"}, "profile"),
    # a lone surrogate (JSON "\\ud800") is no text: it crashed ir-measures' C backend, and the whole process
    ({"query": "lamp", "rankings": [["cf\ud800"]], "judgments": {"cf1": 1}}, "rankings"),
    ({"query": "lamp", "rankings": [["cf1"]], "judgments": {"cf\udfff": 1}}, "judgments"),
])
def test_judge_rejects_bad_bodies(plain_client, payload, parameter):
    err = _error(plain_client.post("/console/api/judge", json=payload), 400, parameter)
    assert err["code"] == "invalid_parameter"


def test_judge_requires_json(plain_client):
    err = _error(plain_client.post("/console/api/judge", data="query=lamp"), 400, "body")
    assert err["code"] == "invalid_json"


def test_judge_reports_an_unreadable_configured_file(tmp_path, searcher, catalog_engine):
    qrels, queries = write_judgments(tmp_path / "j")
    qrels.write_text("q1 0 p1 3\nq1 0 p2\n")
    c = make_pages_app(searcher, catalog_engine, tmp_path, console_qrels=str(qrels),
                       console_queries=str(queries)).test_client()
    err = _error(c.post("/console/api/judge", json={"query": "lamp", "rankings": [["p1"]]}), 500, None)
    assert err["code"] == "judgments_unreadable" and "qrels.txt:2" in err["message"]
    assert str(tmp_path) not in err["message"]  # the file and line to mend, not where the server keeps it
    qrels.unlink()
    err = _error(c.post("/console/api/judge", json={"query": "lamp", "rankings": [["p1"]]}), 500, None)
    assert err["message"] == "cannot read the configured judgments: No such file or directory: qrels.txt"


# --- grades given in the console -------------------------------------------------------------------------------

def _grade(client, query, product_id, grade):
    return client.post("/console/api/grades", json={"query": query, "product_id": product_id, "grade": grade})


def test_a_grade_given_in_the_console_is_stored_and_counts_over_the_list(judged_client, tmp_path):
    right = ["p1", "p2", "p7", "p6"]
    before = judged_client.post("/console/api/judge", json={"query": "lamp", "rankings": [right]}).get_json()
    assert before["given"] == {}
    resp = _grade(judged_client, "Lamp", "p6", 3)
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert (body["query"], body["product_id"], body["grade"], body["graded_by"], body["count"]) == (
        "Lamp", "p6", 3, "local", 1)
    stored = tmp_path / "judgments" / "console-grades.csv"  # <home>/judgments/console-grades.csv
    assert stored.read_text().splitlines()[1].startswith("Lamp,p6,3,local,")
    after = judged_client.post("/console/api/judge", json={"query": " LAMP", "rankings": [right]}).get_json()
    assert after["given"] == {"p6": 3} and after["grades"]["p6"] == 3
    assert after["judged_at_10"] == [1.0] and after["scores"][0] < before["scores"][0]
    # a grade given over a configured one wins; "added" (not stored) wins over both
    _grade(judged_client, "lamp", "p1", 0)
    judged = judged_client.post("/console/api/judge", json={"query": "lamp", "rankings": [right],
                                                            "added": {"p6": 1}}).get_json()
    assert judged["grades"]["p1"] == 0 and judged["grades"]["p6"] == 1
    assert _grade(judged_client, "lamp", "p1", None).get_json() == {
        "query": "lamp", "product_id": "p1", "grade": None, "graded_by": None, "graded_at": None, "count": 1}
    summary = judged_client.get("/console/api/grades").get_json()
    assert summary == {"count": 1, "queries": 1, "source": "console-grades.csv"}
    csv_resp = judged_client.get("/console/api/grades.csv")
    assert csv_resp.mimetype == "text/csv" and "attachment" in csv_resp.headers["Content-Disposition"]
    assert csv_resp.get_data() == stored.read_bytes()


def test_grades_given_count_over_an_uploaded_list_and_with_no_list(plain_client):
    _grade(plain_client, "drill", "p5", 2)
    up = plain_client.post("/console/api/judge", json={"query": "drill", "rankings": [["p5"]],
                                                       "judgments": {"p5": 0}}).get_json()
    assert up["grades"] == {"p5": 2} and up["given"] == {"p5": 2}
    alone = plain_client.post("/console/api/judge", json={"query": "Drill", "rankings": [["p5", "p9"]]}).get_json()
    assert alone["scores"] == [1.0] and alone["source"] is None
    assert plain_client.get("/console/api/grades.csv").get_data(as_text=True).startswith(
        "query,product_id,grade,graded_by,graded_at\r\ndrill,p5,2,local,")


@pytest.mark.parametrize(("payload", "parameter"), [
    ({"product_id": "p1", "grade": 1}, "query"),
    ({"query": "la\nmp", "product_id": "p1", "grade": 1}, "query"),
    ({"query": "la\u2028mp", "product_id": "p1", "grade": 1}, "query"),
    ({"query": "lamp", "grade": 1}, "product_id"),
    ({"query": "lamp", "product_id": " p1", "grade": 1}, "product_id"),
    ({"query": "lamp", "product_id": "p\t1", "grade": 1}, "product_id"),
    ({"query": "lamp", "product_id": "p" * 600, "grade": 1}, "product_id"),
    ({"query": "lamp", "product_id": "p1"}, "grade"),
    ({"query": "lamp", "product_id": "p1", "grade": 2.5}, "grade"),
    ({"query": "lamp", "product_id": "p1", "grade": True}, "grade"),
    ({"query": "lamp", "product_id": "p1", "grade": -1}, "grade"),
    ({"query": "lamp", "product_id": "p1", "grade": 101}, "grade"),
    ({"query": "lamp", "product_id": "p1", "grade": 1, "by": "me"}, "by"),
    ({"query": "lamp\ud800", "product_id": "p1", "grade": 2}, "query"),  # not "cannot read the grades"
    ({"query": "lamp", "product_id": "p\ud800", "grade": 2}, "product_id"),
])
def test_a_bad_grade_is_refused_and_nothing_is_stored(plain_client, payload, parameter):
    err = _error(plain_client.post("/console/api/grades", json=payload), 400, parameter)
    assert err["code"] == "invalid_parameter"
    assert plain_client.get("/console/api/grades").get_json()["count"] == 0


def test_an_unreadable_or_unwritable_grade_list_answers_without_its_folder(plain_client, tmp_path, monkeypatch):
    from shopsearch.api import console_grades

    stored = tmp_path / "judgments" / "console-grades.csv"
    stored.parent.mkdir(parents=True)
    stored.write_text("query,product_id,grade\nlamp,p1,high\n")
    for resp in (plain_client.get("/console/api/grades"), _grade(plain_client, "lamp", "p2", 1),
                 plain_client.post("/console/api/judge", json={"query": "lamp", "rankings": [["p1"]]})):
        err = _error(resp, 500, None)
        assert err["code"] == "grades_unreadable" and "console-grades.csv:2" in err["message"]
        assert str(tmp_path) not in err["message"]
    stored.unlink()

    def refuse(*_):
        raise OSError(28, f"No space left on device: {stored}")

    monkeypatch.setattr(console_grades.os, "replace", refuse)
    resp = _grade(plain_client, "lamp", "p2", 1)
    err = _error(resp, 503, None)
    assert err["code"] == "grades_unavailable" and str(tmp_path) not in resp.get_data(as_text=True)
    assert resp.headers["Retry-After"]
    monkeypatch.undo()
    assert plain_client.get("/console/api/grades").get_json()["count"] == 0
    # a disk that fails a read is an outage: 503, and judging says so rather than scoring without the grades
    stored.write_text("query,product_id,grade\nlamp,p1,2\n")

    def unreadable(*_, **__):
        raise OSError(5, f"Input/output error: {stored}")

    monkeypatch.setattr(console_grades, "open", unreadable, raising=False)
    for resp in (plain_client.get("/console/api/grades"),
                 plain_client.post("/console/api/judge", json={"query": "lamp", "rankings": [["p1"]]})):
        err = _error(resp, 503, None)
        assert err["code"] == "grades_unavailable" and str(tmp_path) not in resp.get_data(as_text=True)


def test_explain_search_gives_the_console_what_it_renders(judged_client):
    """The console reads hits[].id/title/rank and hits[].stages from /search?explain=true for each profile."""
    for profile, legs in (("bm25", {"bm25"}), ("default", {"bm25", "knn"})):
        body = judged_client.get(f"/search?q=lamp&profile={profile}&explain=true&size=10&facets=none").get_json()
        assert body["profile"] == profile and body["facets"] == {}
        assert body["hits"] and all({"id", "title", "rank", "stages"} <= set(h) for h in body["hits"])
        seen = {k for h in body["hits"] for k in h["stages"] if not k.endswith(("_rank", "_rel"))}  # as it shows
        assert seen == legs | {"fused"}
        # and the list-relative features a ranker would compute, as the query log records them
        assert all(h["stages"]["retrieval_rank"] == h["rank"] for h in body["hits"])
        assert all("bm25_rel" in h["stages"] for h in body["hits"] if "bm25" in h["stages"])


def test_the_storefront_sends_its_session_with_every_search(plain_client):
    """/search enrols the shopper in an experiment by the session its events carry; without it nobody is enrolled."""
    with plain_client.get("/static/storefront.js") as resp:
        text = resp.get_data(as_text=True)
    search = text[text.index("async function runSearch"):text.index('getJson("/search?"')]
    assert re.search(r"session_id: sessionId\b", search)
    assert re.search(r"session_id: sessionId\b", text[text.index("const ev = {"):])  # the events' id: the same one
