"""`shopsearch simulate-traffic` against the real API served over HTTP in a thread (tiny catalog, tiny models), and
the one shopper model (`decide`) it shares with the offline simulator."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest

from shopsearch.api.cli import main
from shopsearch.events import EventLog, write_events
from shopsearch.reranker.sim_catalog import load_judged, with_simulated_attributes
from shopsearch.reranker.simulate import ShownProduct, SimParams, decide, make_users, result_list, simulate
from shopsearch.ubi import UbiEvent, from_ubi_event
from tests.reranker.simdata import write_tiny_data

from .conftest import CATALOG
from .pages_support import QRELS, QUERIES, serve

SUMMARY = re.compile(r"(\d+) sessions, (\d+) impressions, (\d+) clicks, (\d+) add_to_carts, (\d+) purchases, "
                     r"CTR [\d.]+, CVR [\d.]+ \(SIMULATED\); (\d+) searches, (\d+) events posted, (\d+) errors, "
                     r"(\d+) retries; [\d.]+ searches/s")


@pytest.fixture
def data_dir(tmp_path) -> Path:
    """The tiny catalog with the page tests' judgments, in the shared data layout."""
    d = tmp_path / "data"
    d.mkdir()
    (d / "products.jsonl").write_text("".join(json.dumps(p.to_source()) + "\n" for p in CATALOG), encoding="utf-8")
    (d / "queries-dev.tsv").write_text(QUERIES, encoding="utf-8")
    (d / "qrels-dev.txt").write_text(QRELS, encoding="utf-8")
    return d


def simulate_traffic(capsys, url: str, data: Path, *extra: str) -> tuple[int, dict[str, int], str]:
    """Run the command; (exit code, the summary's counts, stderr)."""
    rc = main(["simulate-traffic", "--url", url, "--data", str(data), "--backoff", "0", *extra])
    out, err = capsys.readouterr()
    m = SUMMARY.search(out)
    assert m, out + err
    names = ("sessions", "impressions", "clicks", "add_to_carts", "purchases", "searches", "events", "errors",
             "retries")
    return rc, dict(zip(names, map(int, m.groups()))), err


def test_short_run_posts_simulated_events_the_api_stores(app, data_dir, tmp_path, capsys):
    with serve(app) as url:
        rc, n, err = simulate_traffic(capsys, url, data_dir, "--sessions", "20", "--seed", "3", "--concurrency", "4",
                                      "--users", "5")
    assert "Traceback" not in err
    assert rc == 0 and n["sessions"] == n["searches"] == 20 and n["errors"] == n["retries"] == 0
    stored = list(EventLog(tmp_path / "events").read())  # every POST answered 202, else rc would be 1
    assert len(stored) == n["events"]
    kinds = [e.type for e in stored]
    assert (kinds.count("click"), kinds.count("add_to_cart"), kinds.count("purchase")) == \
        (n["clicks"], n["add_to_carts"], n["purchases"])
    assert kinds.count("impression") == n["impressions"] > 0 and n["clicks"] > 0
    assert len({e.session_id for e in stored}) == 20
    assert all(e.simulated and e.session_id.startswith("simt-") and e.user_id.startswith("simu-") for e in stored)
    assert {e.query for e in stored} <= {"lamp", "Cordless Drill"}  # judged queries only (q3 has no grades)
    # Events name the list they came from: the query_id of a served search, the same for a whole session.
    assert all(len({e.query_id for e in stored if e.session_id == s}) == 1 for s in {e.session_id for e in stored})


def test_a_keyed_api_is_searched_with_the_search_key(app, data_dir, capsys):
    from shopsearch.api.keys import KeyStore

    secret = KeyStore(app.extensions["shopsearch"].config.keys_file).create("search").secret
    with serve(app) as url:
        rc, n, _ = simulate_traffic(capsys, url, data_dir, "--sessions", "6", "--users", "3", "--key", secret)
        assert rc == 0 and n["searches"] == 6 and n["errors"] == 0 and n["events"] > 0
        rc = main(["simulate-traffic", "--url", url, "--data", str(data_dir), "--sessions", "2", "--backoff", "0"])
        out, err = capsys.readouterr()
    assert rc == 1 and "401" in out + err  # no key: refused and said so, not retried
    assert "Traceback" not in err


def test_events_are_ubi_events_marked_simulated(data_dir):
    from shopsearch.api.cmd_simulate_traffic import ApiFeatures, PlannedSession, Traffic, ubi_bodies
    from shopsearch.reranker.simulate import Action

    data = load_judged(data_dir)
    user = make_users(SimParams(users=1), np.random.default_rng(0))[0]
    shown = [ShownProduct(1, data.products["p1"], 3), ShownProduct(2, data.products["p2"], 2)]
    actions = [Action("click", 2, "p2", 4.0), Action("add_to_cart", 2, "p2", 9.0)]
    traffic = Traffic(None, ApiFeatures(frozenset(), 100), data, SimParams(), 0)
    bodies = ubi_bodies(traffic._events(PlannedSession(0, user, "q1", "lamp"), "simt-x-000000", "served-qid",
                                        shown, actions), user.id, {"p1": "t1", "p2": "t2"})
    assert [b["event_attributes"].pop("token") for b in bodies] == ["t1", "t2", "t2", "t2"]  # each hit's own
    assert len({b["event_attributes"]["event_id"] for b in bodies}) == 4  # retry keys
    events = [from_ubi_event(UbiEvent.model_validate(b)) for b in bodies]
    assert all(b["event_attributes"]["simulated"] is True and b["client_id"] == user.id for b in bodies)
    assert [(e.type, e.product_id, e.position) for e in events] == \
        [("impression", "p1", 1), ("impression", "p2", 2), ("click", "p2", 2), ("add_to_cart", "p2", 2)]
    assert all(e.query_id == "served-qid" and e.session_id == "simt-x-000000" and e.simulated for e in events)


def test_a_shopper_proves_who_they_are_when_the_signing_key_is_at_hand(data_dir):
    """The API ranks by a user's affinity only with their client_token (docs/security.md), as a shop's backend
    renders it; simulated shoppers send one when this machine holds the API's key, none otherwise."""
    from shopsearch.api.cmd_simulate_traffic import ApiFeatures, PlannedSession, Traffic, TrafficSummary
    from shopsearch.api.hit_tokens import client_token

    class Client:
        def request(self, method, path, tally, params=None, **kw):
            self.params = params
            raise RuntimeError("stop")

    user = make_users(SimParams(users=1), np.random.default_rng(0))[0]
    plan, features = PlannedSession(0, user, "q1", "lamp"), ApiFeatures(frozenset({"client_token"}), 100)
    for key, expected in ((b"k" * 32, client_token(b"k" * 32, user.id)), (None, None)):
        client = Client()
        with pytest.raises(RuntimeError):
            Traffic(client, features, load_judged(data_dir), SimParams(), 0, key)._search(plan, "s", TrafficSummary())
        assert client.params.get("client_token") == expected and client.params["user_id"] == user.id

def test_queries_file_limits_the_searches_to_its_judged_queries(app, data_dir, tmp_path, capsys):
    (tmp_path / "train.tsv").write_text("q1\tlamp\nq3\tgarden hose\n", encoding="utf-8")
    (tmp_path / "none.tsv").write_text("q3\tgarden hose\n", encoding="utf-8")
    with serve(app) as url:
        rc, n, err = simulate_traffic(capsys, url, data_dir, "--sessions", "6", "--queries",
                                      str(tmp_path / "train.tsv"))
        assert main(["simulate-traffic", "--url", url, "--data", str(data_dir), "--sessions", "2", "--queries",
                     str(tmp_path / "none.tsv")]) == 2
    assert rc == 0 and n["searches"] == 6 and "1 of 2 queries" in err
    assert {e.query for e in EventLog(tmp_path / "events").read()} == {"lamp"}
    assert "none of its 1 queries is judged" in capsys.readouterr().err


def test_retries_on_503_429_and_409_are_bounded_and_counted(app, data_dir, capsys):
    # 409: a retried POST that reached another worker while the first copy was still being stored
    failures = {"/search": [429], "/events": [503, 409]}  # answered before the real app, in this order

    def flaky(environ, start_response):
        pending = failures.get(environ["PATH_INFO"])
        if pending:
            status = pending.pop(0)
            start_response(f"{status} Busy", [("Content-Type", "application/json"), ("Retry-After", "0")])
            return [b'{"error": {"code": "busy", "message": "try again", "parameter": null}}']
        return app(environ, start_response)

    with serve(flaky) as url:
        rc, n, _ = simulate_traffic(capsys, url, data_dir, "--sessions", "3", "--concurrency", "1")
        assert rc == 0 and n["retries"] == 3 and n["errors"] == 0 and n["searches"] == 3
        failures["/events"] = [503] * 100  # an outage longer than the retries: each session an error, run goes on
        rc, n, err = simulate_traffic(capsys, url, data_dir, "--sessions", "3", "--concurrency", "1", "--retries",
                                      "1")
    assert rc == 1 and n["errors"] == 3 and n["retries"] == 3 and n["sessions"] == 0 and n["searches"] == 3
    assert "Traceback" not in err


def test_bad_input_gives_a_clear_error(app, data_dir, tmp_path, capsys):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    rc, n, err = simulate_traffic(capsys, closed, data_dir, "--sessions", "2")
    assert rc == 1 and "cannot reach GET" in err and "Traceback" not in err and n["searches"] == 0

    assert main(["simulate-traffic", "--url", closed, "--data", str(tmp_path / "nope"), "--sessions", "2"]) == 2
    assert "lacks products.jsonl" in capsys.readouterr().err
    assert main(["simulate-traffic", "--url", "localhost:8000", "--data", str(data_dir), "--sessions", "2"]) == 2
    assert "--url must start with http://" in capsys.readouterr().err

    with serve(app) as url:  # a 4xx from the API (size over its max_size) stops the run with the API's message
        rc, n, err = simulate_traffic(capsys, url, data_dir, "--sessions", "4", "--page-size", "1000")
    assert rc == 1 and "GET /search" in err and "400 invalid_parameter" in err and "size" in err
    assert "Traceback" not in err


def test_decide_reproduces_the_offline_simulator(tmp_path):
    data = load_judged(write_tiny_data(tmp_path / "d"))
    params = SimParams(sessions=200, users=7, seed=11)
    # The offline simulator's draws, replayed: gap, user, query, shown list, then decide() on the same generator.
    rng = np.random.default_rng(params.seed)
    users = make_users(params, rng)
    qids = sorted(q for q, pool in data.qrels.items() if len(pool) >= 2)
    acted = 0
    for _, events in simulate(data, params):
        rng.exponential(params.mean_gap_s)
        user = users[int(rng.integers(len(users)))]
        qid = qids[int(rng.integers(len(qids)))]
        shown = result_list(qid, data, params, rng, None)
        items = [ShownProduct(r, data.products[p], data.qrels[qid][p]) for r, p in enumerate(shown, 1)]
        actions = decide(params, items, user, data.max_grade, rng)
        assert [(e.type, e.product_id, e.position) for e in events if e.type != "impression"] == \
            [(a.type, a.product_id, a.position) for a in actions]
        acted += bool(actions)
    assert acted > 20


def test_offline_simulator_output_is_byte_identical_to_before_decide(tmp_path):
    # Simulated event files are hashed into model cards: pinned from the simulator before decide() was factored out.
    data = load_judged(write_tiny_data(tmp_path / "d"))
    out = tmp_path / "e.jsonl"
    write_events(out, (e for _, evs in simulate(data, SimParams(sessions=300, users=7, seed=11)) for e in evs))
    assert hashlib.sha256(out.read_bytes()).hexdigest() == \
        "c8293978ee5990cb3659596863132078a7b4f16b9bc15b9a8130ace7c1e5a19b"


def test_the_served_list_is_judged_as_the_offline_one(app, data_dir):
    """A list read from /search gives the shopper model the same products, grades and decisions as the judged
    folder gives the offline simulator (missing price/rating/brand/category: the same SIMULATED values)."""
    from shopsearch.api.cmd_simulate_traffic import ApiFeatures, Traffic

    data = load_judged(data_dir)
    hits = app.test_client().get("/search?q=lamp&size=8").get_json()["hits"]
    online = Traffic(None, ApiFeatures(frozenset(), 100), data, SimParams(), 0)._shown("q1", hits)
    by_id = {p.id: p for p in CATALOG}
    offline = [ShownProduct(h["rank"], data.products.get(h["id"]) or with_simulated_attributes(by_id[h["id"]]),
                            data.qrels["q1"].get(h["id"], 0)) for h in hits]
    keys = ("id", "price", "rating", "brand", "category")
    assert [(s.position, s.grade, *(getattr(s.product, k) for k in keys)) for s in online] == \
        [(s.position, s.grade, *(getattr(s.product, k) for k in keys)) for s in offline]
    users = make_users(SimParams(), np.random.default_rng(0))
    for seed in range(30):
        user = users[seed]
        assert decide(SimParams(), online, user, data.max_grade, np.random.default_rng(seed)) == \
            decide(SimParams(), offline, user, data.max_grade, np.random.default_rng(seed))


def test_a_ranker_learns_from_the_logs_the_simulated_traffic_left(app, data_dir, catalog_engine, tiny_bi_encoder_dir,
                                                                  tmp_path, capsys):
    """serve → simulate traffic → train ranker --logs: the logged features and the index's stored products."""
    with serve(app) as url:
        rc, n, _ = simulate_traffic(capsys, url, data_dir, "--sessions", "60", "--users", "10", "--seed", "5")
    assert rc == 0 and n["clicks"] > 0
    app.extensions["shopsearch"].ubi_drainer.drain_once()  # what a worker's shutdown does
    out = tmp_path / "models" / "ltr"
    rc = main(["train", "ranker", "--logs", "--ubi-dir", str(tmp_path / "ubi"), "--index", "catalog", "--engine",
               "embedded", "--root", str(catalog_engine.root), "--target", "click", "--folds", "2", "--out", str(out),
               "--no-progress"])
    printed = capsys.readouterr()
    assert rc == 0, printed.err
    card = json.loads((out / "model_card.json").read_text())
    assert card["data"]["simulated"] and card["data"]["index"] == "catalog" and card["params"]["position_debias"]
    assert card["data"]["clicks"] > 0 and card["data"]["rows"] <= n["impressions"]
    assert "SIMULATED" in (out / "README.md").read_text() and "rows (SIMULATED events)" in printed.out
    assert card["importance_gain"] and "title_overlap" in card["features"]


def test_a_degraded_page_with_ids_only_is_still_judged(data_dir):
    """Past the deadline the API serves ids and scores without the products: the shopper still judges them."""
    from types import SimpleNamespace

    from shopsearch.api.cmd_simulate_traffic import Traffic

    data = load_judged(data_dir)
    qid, pool = next(iter(data.qrels.items()))
    pid = next(iter(pool))
    shown = Traffic._shown(SimpleNamespace(data=data), qid, [{"id": pid, "rank": 1, "score": 0.5}])
    assert shown[0].position == 1 and shown[0].grade == pool[pid] and shown[0].product.id == pid
