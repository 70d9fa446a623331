"""The seeded click/purchase simulator on a tiny hand-made data folder (the event record: tests/test_events.py)."""

from __future__ import annotations

import argparse
import json

import pytest

from shopsearch.events import Event, read_events
from shopsearch.reranker.sim_catalog import SIM_BRANDS, load_judged, simulated_attributes
from shopsearch.reranker.simulate import SimParams, SimSummary, read_ranking, result_list, simulate, summarize
from tests.reranker.simdata import write_tiny_data


def test_simulated_attributes_are_deterministic_and_in_range():
    a = simulated_attributes("cf00042")
    assert a == simulated_attributes("cf00042") and a != simulated_attributes("cf00043")
    assert a["price"] > 0 and 1 <= a["rating"] <= 5 and a["brand"] in SIM_BRANDS and len(a["category"]) == 1


def test_load_judged_fills_simulated_attributes(tmp_path):
    data = load_judged(write_tiny_data(tmp_path))
    assert data.max_grade == 3 and set(data.qrels["q1"]) == {"p1", "p2", "p3"}
    assert data.products["p1"].price == simulated_attributes("p1")["price"]


def test_load_judged_builds_products_as_the_indexer_does(tmp_path):
    """The simulator's lexical overlap and the rankers' BM25 read the served text, not the raw row."""
    d = write_tiny_data(tmp_path)
    rows = [json.loads(line) for line in (d / "products.jsonl").read_text().splitlines()]
    rows[0].update(title="Briggs &amp; Stratton  lamp", description="two\n  lines")
    rows.append({"id": "p9", "title": ""})  # quarantined by the indexer: never shown
    (d / "products.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (d / "qrels-dev.txt").write_text((d / "qrels-dev.txt").read_text() + "q1 0 p9 3\n")
    p = load_judged(d).products[rows[0]["id"]]
    assert (p.title, p.description) == ("Briggs & Stratton lamp", "two lines")
    assert "p9" not in load_judged(d).products and "p9" not in load_judged(d).qrels["q1"]

def test_same_seed_same_events_every_record_simulated(tmp_path):
    data = load_judged(write_tiny_data(tmp_path))
    params = SimParams(sessions=50, users=5, seed=7)
    a = [e for _, evs in simulate(data, params) for e in evs]
    b = [e for _, evs in simulate(data, params) for e in evs]
    c = [e for _, evs in simulate(data, SimParams(sessions=50, users=5, seed=8)) for e in evs]
    assert a == b and a != c
    assert all(e.simulated for e in a)
    imps = [e for e in a if e.type == "impression"]
    assert len({e.session_id for e in imps}) == 50
    assert all(e.product_id in data.qrels[e.query_id] for e in a)
    # a purchase ends the session: at most one per session, always after a click on the same product
    by_session: dict[str, list[Event]] = {}
    for e in a:
        by_session.setdefault(e.session_id, []).append(e)
    for evs in by_session.values():
        buys = [e for e in evs if e.type == "purchase"]
        assert len(buys) <= 1
        if buys:
            assert any(e.type == "click" and e.product_id == buys[0].product_id for e in evs)
        assert [e.timestamp for e in evs] == sorted(e.timestamp for e in evs)


def test_relevant_products_get_more_clicks(tmp_path):
    data = load_judged(write_tiny_data(tmp_path))
    events = [e for _, evs in simulate(data, SimParams(sessions=1500, users=20, seed=1, order="random"))
              for e in evs]
    clicks = {g: 0 for g in (0, 3)}
    imps = {g: 0 for g in (0, 3)}
    for e in events:
        g = data.qrels[e.query_id][e.product_id]
        if g in clicks:
            clicks[g] += e.type == "click"
            imps[g] += e.type == "impression"
    assert clicks[3] / imps[3] > 3 * clicks[0] / imps[0]


def test_ranking_file_sets_the_shown_order(tmp_path):
    data = load_judged(write_tiny_data(tmp_path / "d"))
    run = tmp_path / "run.txt"
    run.write_text("q1 Q0 p3 1 9.0 x\nq1 Q0 p2 2 5.0 x\nq1 Q0 zz 3 4.0 x\n")
    ranking = read_ranking(run)
    import numpy as np

    shown = result_list("q1", data, SimParams(), np.random.default_rng(0), ranking)
    assert shown == ["p3", "p2", "p1"]  # unjudged zz dropped, unranked p1 appended


def test_summary_counts(tmp_path):
    s = SimSummary()
    def ev(kind: str) -> Event:
        return Event(type=kind, query_id="q1", product_id="p1", position=2, session_id="s1",
                     timestamp="2024-01-01T00:00:05Z")

    summarize([ev("impression"), ev("click"), ev("purchase")], s)
    assert (s.sessions, s.impressions, s.clicks, s.purchases, s.ctr, s.cvr) == (1, 1, 1, 1, 1.0, 1.0)


def test_cli_writes_identical_files_for_same_seed(tmp_path, capsys):
    from shopsearch.api import cmd_simulate_events

    data = write_tiny_data(tmp_path / "d")
    parser = argparse.ArgumentParser()
    cmd_simulate_events.register(parser.add_subparsers())
    outs = []
    for name in ("a", "b"):
        args = parser.parse_args(["simulate-events", "--data", str(data), "--out", str(tmp_path / f"{name}.jsonl"),
                                  "--sessions", "20", "--users", "3", "--seed", "4"])
        assert args.run(args) == 0
        outs.append((tmp_path / f"{name}.jsonl").read_bytes())
    assert outs[0] == outs[1]
    assert "20 sessions" in capsys.readouterr().out


def test_params_validation():
    with pytest.raises(ValueError, match="sessions"):
        SimParams(sessions=0)
    with pytest.raises(ValueError, match="order"):
        SimParams(order="bm25")


def test_cli_exclude_queries_keeps_held_out_queries_out_of_the_events(tmp_path):
    from shopsearch.api import cmd_simulate_events

    data = write_tiny_data(tmp_path / "data")
    every = load_judged(data).queries
    dropped = sorted(every)[0]
    (tmp_path / "heldout.tsv").write_text(f"{dropped}\t{every[dropped]}\n", encoding="utf-8")
    parser = argparse.ArgumentParser()
    cmd_simulate_events.register(parser.add_subparsers())
    args = parser.parse_args(["simulate-events", "--data", str(data), "--out", str(tmp_path / "ev.jsonl"),
                              "--sessions", "60", "--users", "3", "--exclude-queries", str(tmp_path / "heldout.tsv")])
    assert args.run(args) == 0
    seen = {e.query_id for e in read_events(tmp_path / "ev.jsonl")}
    assert dropped not in seen and seen == set(every) - {dropped}


def test_related_purchase_adds_follow_up_sessions_in_the_bought_category(tmp_path):
    data = load_judged(write_tiny_data(tmp_path))
    plain = [e for _, evs in simulate(data, SimParams(sessions=60, users=5, seed=3)) for e in evs]
    off = [e for _, evs in simulate(data, SimParams(sessions=60, users=5, seed=3, related_purchase=0.0)) for e in evs]
    assert plain == off and not any(e.session_id.endswith("-r") for e in plain)  # off: what it always was
    on = [e for _, evs in simulate(data, SimParams(sessions=60, users=5, seed=3, related_purchase=1.0)) for e in evs]
    by_session: dict[str, list[Event]] = {}
    for e in on:
        by_session.setdefault(e.session_id, []).append(e)
    follow_ups = [s for s in by_session if s.endswith("-r")]
    assert follow_ups and all(e.simulated for e in on)
    for sid in follow_ups:
        bought = next(e for e in by_session[sid[:-2]] if e.type == "purchase")
        cats = set(data.products[bought.product_id].category)
        assert all(cats & set(data.products[e.product_id].category) and e.product_id != bought.product_id
                   and e.query_id == f"related:{bought.query_id}" and e.time > bought.time for e in by_session[sid])
    with pytest.raises(ValueError, match="related_purchase must be between 0 and 1; got 1.5"):
        SimParams(related_purchase=1.5)
