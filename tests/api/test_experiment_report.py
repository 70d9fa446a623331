"""``shopsearch experiment report`` / ``check`` and the statistics behind the report, on hand-made UBI logs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.stats import binomtest, ttest_ind

from shopsearch.api.cli import main
from shopsearch.api.experiment_report import (CLUSTERED_TEST, clustered_ratio, clustered_welch, experiment_report,
                                              searches_needed, wilson)
from shopsearch.api.report import render_experiment_html, render_experiment_markdown
from shopsearch.reranker.experiments import EXAMPLE_FILE, INTERLEAVED
from shopsearch.ubi import UbiEvent, UbiQuery


def _q(qid: str, arm: str, client: str, minute: int, hits: list[str], experiment: str = "x", **attrs) -> UbiQuery:
    return UbiQuery(query_id=qid, client_id=client, user_query="lamp", query_response_id=f"r-{qid}",
                    query_response_hit_ids=hits, timestamp=f"2025-03-01T10:{minute:02d}:00Z",
                    query_attributes={"experiment": experiment, "arm": arm, **attrs})


def _e(action: str, pid: str, minute: int, qid: str | None = None, client: str | None = None,
       price: float | None = None, position: int | None = None) -> UbiEvent:
    attrs: dict = {"object": {"object_id": pid}}
    if price is not None:
        attrs["price"] = price
    if position is not None:
        attrs["position"] = {"ordinal": {"index": position}}
    return UbiEvent.model_validate({"action_name": action, "query_id": qid, "client_id": client,
                                    "timestamp": f"2025-03-01T10:{minute:02d}:30Z", "event_attributes": attrs})


AB_QUERIES = [
    _q("d1", "default", "cd1", 1, ["p1", "p2"]), _q("d2", "default", "cd2", 1, ["p1"]),
    _q("d3", "default", "cd3", 1, ["p3"]), _q("d4", "default", "cd3", 2, ["p3"]),
    _q("r1", "rerank", "cr1", 1, ["p1"]), _q("r2", "rerank", "cr2", 2, ["pX", "p1"]),
    _q("r3", "rerank", "cr2", 3, ["p1"]), _q("r4", "rerank", "cr2", 6, ["pX"]),
    _q("o1", "default", "co", 1, ["p1"], experiment="other"),
]
AB_EVENTS = [
    _e("impression", "p1", 1, "d1", position=1),
    _e("click", "p1", 1, "d1", position=1), _e("add_to_cart", "p1", 1, "d1"), _e("purchase", "p1", 2, "d1", price=10),
    _e("click", "p1", 1, "d2", position=1),
    _e("click", "p1", 1, "r1", position=1), _e("add_to_cart", "p1", 1, "r1"),
    _e("click", "pX", 2, "r2", position=1), _e("add_to_cart", "pX", 2, "r2"),
    _e("click", "p1", 3, "r3", position=1),
    _e("purchase", "pX", 5, client="cr2", price=20.0),  # no query_id: last touch = r2 (r3 did not show pX)
    _e("click", "p1", 1, "o1", position=1), _e("purchase", "p1", 1, "o1", price=99.0),  # another experiment
    _e("purchase", "p7", 5, client="nobody", price=50.0),  # attributable to no search
]


def test_wilson_and_the_clustered_statistics_against_independent_computations():
    e = wilson(5, 10)
    assert (e.value, round(e.low, 4), round(e.high, 4)) == (0.5, 0.2366, 0.7634)
    assert math.isnan(wilson(0, 0).value)
    # one search a client: the delta method's variance is the binomial's, and the test is Welch's on 0/1 values
    a, b = [0.0, 1.0, 0.0, 1.0, 0.0], [1.0, 1.0, 0.0, 1.0, 1.0, 1.0]
    ratio, var, k = clustered_ratio([(y, 1) for y in a])
    assert (ratio, k) == (0.4, 5) and var == pytest.approx(np.var(a, ddof=1) / len(a))
    delta, low, high, p = clustered_welch([(y, 1) for y in a], [(y, 1) for y in b])
    assert delta == pytest.approx(5 / 6 - 0.4) and low < delta < high
    assert p == pytest.approx(ttest_ind(b, a, equal_var=False).pvalue)
    # a client's many searches are one draw: repeating each client's searches ten times changes nothing
    many = lambda xs: [(10 * y, 10) for y in xs]  # noqa: E731
    assert clustered_welch(many(a), many(b)) == pytest.approx((delta, low, high, p))
    # no test possible: one client in an arm, or no variation within either arm (p would be 0 over se 0)
    assert math.isnan(clustered_ratio([(1, 3)])[1]) and math.isnan(clustered_welch([(1, 3)], [(0, 2), (1, 2)])[3])
    assert all(math.isnan(x) for x in clustered_welch([(0, 1), (0, 1)], [(1, 1), (1, 1)])[1:])
    # the interval's level is the confidence asked for
    narrow, wide = clustered_welch([(y, 1) for y in a], [(y, 1) for y in b], 0.8), (low, high)
    assert wide[0] < narrow[1] < narrow[2] < wide[1] and narrow[3] == pytest.approx(p)


def test_ab_report_per_arm_and_against_the_baseline():
    report = experiment_report("x", AB_QUERIES, AB_EVENTS, arms=["default", "rerank"])
    assert report.mode == "ab" and report.searches == 8 and not report.simulated
    base, cand = report.arms
    assert (base.arm, base.searches, base.clients, cand.clients) == ("default", 4, 3, 2)
    assert {m: e.value for m, e in base.metrics.items()} == {"ctr": 0.5, "add_to_cart_rate": 0.25,
                                                             "purchase_rate": 0.25, "revenue_per_search": 2.5}
    assert {m: e.value for m, e in cand.metrics.items()} == {"ctr": 0.75, "add_to_cart_rate": 0.5,
                                                             "purchase_rate": 0.25, "revenue_per_search": 5.0}
    # clients: default cd1 (1 of 1 searches clicked), cd2 (1 of 1), cd3 (0 of 2); rerank cr1 (1 of 1), cr2 (2 of 3)
    ctr = next(d for d in report.deltas if d.metric == "ctr")
    assert (ctr.arm, ctr.delta, ctr.test, ctr.significant) == ("rerank", 0.25, CLUSTERED_TEST, False)
    assert ctr.p == pytest.approx(clustered_welch([(1, 1), (1, 1), (0, 2)], [(1, 1), (2, 3)])[3])
    var = 3 / 2 * ((1 - 0.5) ** 2 + (1 - 0.5) ** 2 + (0 - 1.0) ** 2) / 4 ** 2  # the delta method, by hand
    assert clustered_ratio([(1, 1), (1, 1), (0, 2)]) == pytest.approx((0.5, var, 3))
    design_effect = var / (0.5 * 0.5 / 4)
    assert base.metrics["ctr"].low == pytest.approx(wilson(0.5 * 4 / design_effect, 4 / design_effect).low)
    revenue = next(d for d in report.deltas if d.metric == "revenue_per_search")
    assert revenue.test == CLUSTERED_TEST and revenue.delta == 2.5  # purchases: cd1 10.0 (d1), cr2 20.0 (r2)
    assert revenue.p == pytest.approx(clustered_welch([(10, 1), (0, 1), (0, 2)], [(0, 1), (20, 3)])[3])
    md = render_experiment_markdown(report)
    assert "### Experiment x (A/B): 8 searches" in md and "SIMULATED" not in md
    assert "| rerank | CTR | 0.5000 | 0.7500 | +0.2500 |" in md and "clients as units" in md
    html = render_experiment_html(report)
    assert html.startswith("<!doctype html>") and "Against the baseline" in html


def test_a_null_difference_with_many_searches_a_client_is_rarely_significant():
    # 60 clients an arm, 20 searches each, each client with its own click propensity, no difference between arms:
    # counting searches as independent trials called such a difference significant in most runs.
    rng = np.random.default_rng(15)
    significant = 0
    for run in range(30):
        queries, events = [], []
        for c in range(120):
            p = rng.beta(0.5, 1.5)
            for k in range(20):
                qid = f"{run}-{c}-{k}"
                queries.append(_q(qid, "a" if c % 2 else "b", f"c{c}", 1, ["p1"]))
                if rng.random() < p:
                    events.append(_e("click", "p1", 1, qid))
        ctr = next(d for d in experiment_report("x", queries, events, arms=["a", "b"]).deltas if d.metric == "ctr")
        significant += ctr.significant
    assert significant <= 4  # 1.5 expected at alpha 0.05


def test_a_purchase_carrying_another_searchs_id_is_not_credited_by_last_touch():
    queries = [_q("o1", "a", "c1", 1, ["p1"], experiment="old"), _q("n1", "a", "c1", 5, ["p1"], experiment="new")]
    events = [_e("purchase", "p1", 6, "n1", client="c1", price=100.0)]
    old = experiment_report("old", queries, events)
    assert old.arms[0].metrics["purchase_rate"].value == 0.0
    assert experiment_report("new", queries, events).arms[0].metrics["purchase_rate"].value == 1.0


def test_a_checkout_purchase_naming_only_the_session_finds_a_search_that_passed_a_client_id():
    """A search with the storefront's client_id logs its session too; a purchase in shopsearch's own event format
    carries only the session (stored as UBI's client_id): last touch finds the search by either."""
    queries = [_q("s1", "a", "cookie-1", 1, ["p1"], session_id="sess-1"),
               _q("s2", "a", "cookie-2", 1, ["p1"], session_id="sess-2"),
               UbiQuery(query_id="s3", user_query="lamp", query_response_id="r-s3", query_response_hit_ids=["p1"],
                        timestamp="2025-03-01T10:01:00", query_attributes={"experiment": "x", "arm": "b"})]
    events = [_e("purchase", "p1", 2, client="sess-1", price=10.0), _e("purchase", "p1", 2, client="cookie-2", price=5.0)]
    a, b = experiment_report("x", queries, events, arms=["a", "b"]).arms  # s3's time has no offset: read as UTC
    assert a.metrics["purchase_rate"].value == 1.0 and a.metrics["revenue_per_search"].value == 7.5
    assert (a.clients, b.clients) == (2, 1)  # a search without client or session is a client of its own


def test_default_arm_order_is_sorted_and_unknown_arms_are_errors():
    assert [a.arm for a in experiment_report("x", AB_QUERIES, AB_EVENTS).arms] == ["default", "rerank"]
    with pytest.raises(ValueError, match=r"arms: the logs have arms \['default', 'rerank'\]"):
        experiment_report("x", AB_QUERIES, AB_EVENTS, arms=["default", "bm25"])
    with pytest.raises(ValueError, match="experiment 'nope': no search in the logs"):
        experiment_report("nope", AB_QUERIES, AB_EVENTS)
    with pytest.raises(ValueError, match=r"alpha must be in \(0, 1\)"):
        experiment_report("x", AB_QUERIES, AB_EVENTS, alpha=1.5)


def _iq(qid: str, hits: list[str], teams: list[str], simulated: bool = False) -> UbiQuery:
    return _q(qid, INTERLEAVED, f"c-{qid}", 1, hits, experiment="il", teams=teams, simulated=simulated)


def test_interleaving_preference_wins_losses_ties_and_sign_test():
    queries = [_iq("s1", ["a1", "b1"], ["A", "B"]), _iq("s2", ["b2", "a2"], ["B", "A"]),
               _iq("s3", ["a3", "b3", "b4"], ["A", "B", "B"]), _iq("s4", ["a4", "b5"], ["A", "B"]),
               _iq("s5", ["a5", "b6"], ["A", "B"], simulated=True)]
    events = [_e("click", "b1", 1, "s1"), _e("click", "a2", 1, "s2"), _e("click", "b3", 1, "s3"),
              _e("click", "b4", 1, "s3"), _e("click", "a3", 1, "s3"), _e("click", "a5", 1, "s5"),
              _e("click", "b6", 1, "s5"), _e("click", "zz", 1, "s4")]
    report = experiment_report("il", queries, events, arms=["A", "B"])
    p = report.preference
    assert report.mode == "interleave" and report.arms == () and report.simulated_searches == 1
    assert (p.baseline, p.candidate, p.wins, p.losses, p.ties) == ("A", "B", 2, 1, 2)
    assert p.clicks == {"A": 3, "B": 4} and p.p == 1.0 and p.share.value == pytest.approx(2 / 3)
    md = render_experiment_markdown(report)
    assert "**SIMULATED: 1 of 5 searches are simulated traffic" in md and "| A | B | 2 | 1 | 2 |" in md
    assert "SIMULATED" in render_experiment_html(report)
    # Ten decided searches, all won by B: two-sided exact binomial p = 2 / 2**10.
    many = [_iq(f"t{i}", ["a", "b"], ["A", "B"]) for i in range(10)]
    won_report = experiment_report("il", many, [_e("click", "b", 1, f"t{i}") for i in range(10)])
    won = won_report.preference
    assert (won.wins, won.losses) == (10, 0) and won.p == pytest.approx(2 / 2 ** 10) and won.significant
    assert "power" not in render_experiment_markdown(won_report)  # significant: nothing left to plan
    # Not significant: the report says how many searches the observed lean would need.
    assert p.searches_needed == searches_needed(2, 1, 5, 0.05)
    assert f"about {p.searches_needed} searches in all would give 80% power at α = 0.05" in md


def test_searches_needed_plans_for_the_power_it_names():
    assert searches_needed(60, 40, 200, 0.05) == 388
    assert searches_needed(0, 0, 50, 0.05) is None and searches_needed(7, 7, 30, 0.05) is None
    assert searches_needed(40, 60, 200, 0.05) == 388  # a lean either way
    # At share 0.6 with half the searches decided, 388 searches reach p < 0.05 about 80% of the time.
    rng = np.random.default_rng(0)
    decided = rng.binomial(388, 0.5, 2000)
    wins = rng.binomial(decided, 0.6)
    power = np.mean([binomtest(int(w), int(d), 0.5).pvalue < 0.05 for w, d in zip(wins, decided)])
    assert 0.72 < power < 0.88, power


def _write_logs(folder, queries, events) -> None:
    folder.mkdir()
    (folder / "ubi_queries.jsonl").write_text("".join(q.model_dump_json() + "\n" for q in queries))
    (folder / "ubi_events.jsonl").write_text("".join(e.model_dump_json() + "\n" for e in events))


def test_cli_report_from_a_ubi_dir(tmp_path, capsys, caplog):
    logs = tmp_path / "ubi"
    _write_logs(logs, [q.model_copy(update={"query_attributes": {**q.query_attributes, "simulated": True}})
                       for q in AB_QUERIES], AB_EVENTS)
    html = tmp_path / "out" / "x.html"
    assert main(["experiment", "report", "x", "--ubi-dir", str(logs), "--arms", "default,rerank", "--json",
                 "--html", str(html)]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["simulated"] is True and body["searches"] == 8 and body["arms"][1]["arm"] == "rerank"
    assert "SIMULATED" in html.read_text()
    assert main(["experiment", "report", "x", "--ubi-dir", str(logs)]) == 0
    printed = capsys.readouterr()
    assert "**SIMULATED: 8 of 8 searches" in printed.out
    assert "arms in name order, the first taken as the baseline" in printed.err  # no file said which is which
    with (logs / "ubi_events.jsonl").open("a") as f:
        f.write("[1]\n")  # not a record (a line torn by a crash reads the same): skipped and logged, not fatal
    assert main(["experiment", "report", "x", "--ubi-dir", str(logs)]) == 0
    assert "ubi_events.jsonl: skipped 1 torn or invalid lines" in caplog.text
    assert main(["experiment", "report", "x", "--ubi-dir", str(tmp_path / "missing")]) == 2
    assert main(["experiment"]) == 2
    with pytest.raises(SystemExit) as refused:  # a folder as the report file: refused before any work
        main(["experiment", "report", "x", "--ubi-dir", str(logs), "--html", str(tmp_path)])
    assert refused.value.code == 2 and "is a folder; name the file to write" in capsys.readouterr().err


def test_cli_report_of_an_experiment_the_file_no_longer_has_says_how_it_orders_the_arms(tmp_path, capsys,
                                                                                         monkeypatch):
    logs = tmp_path / "ubi"
    _write_logs(logs, AB_QUERIES, AB_EVENTS)
    monkeypatch.setenv("SHOPSEARCH_EXPERIMENTS_FILE", str(EXAMPLE_FILE))
    assert main(["experiment", "report", "x", "--ubi-dir", str(logs)]) == 0  # ran, then removed from the file
    err = capsys.readouterr().err
    assert f"no experiment 'x' in {EXAMPLE_FILE} (it has: " in err and "arms in name order" in err
    assert main(["experiment", "report", "no-such", "--ubi-dir", str(logs)]) == 2  # and not in the logs either
    assert "no search in the logs was assigned to it" in capsys.readouterr().err


def test_cli_report_with_a_file_broken_since_reads_the_logs(tmp_path, capsys, monkeypatch):
    logs = tmp_path / "ubi"
    _write_logs(logs, AB_QUERIES, AB_EVENTS)
    broken = tmp_path / "e.toml"
    broken.write_text("[experiments.x\n")
    monkeypatch.setenv("SHOPSEARCH_EXPERIMENTS_FILE", str(broken))
    assert main(["experiment", "report", "x", "--ubi-dir", str(logs)]) == 0
    err = capsys.readouterr().err
    assert f"experiments file unreadable ({broken}: not valid TOML" in err and "arms in name order" in err


def test_an_arm_named_twice_is_an_error_not_a_comparison_with_itself():
    with pytest.raises(ValueError, match=r"arms: \['default', 'default', 'rerank'\] names an arm twice"):
        experiment_report("x", AB_QUERIES, AB_EVENTS, arms=["default", "default", "rerank"])


def test_one_client_in_an_arm_gives_rates_no_interval():
    """Its twenty searches are one draw, not twenty: a Wilson interval over them would be falsely narrow."""
    queries = [_q(f"a{i}", "default", "ca", i, ["p1"]) for i in range(20)] + [
        _q(f"b{i}", "rerank", f"cb{i % 5}", i, ["p1"]) for i in range(20)]
    events = [_e("click", "p1", i, f"a{i}", position=1) for i in range(10)] + [
        _e("click", "p1", i, f"b{i}", position=1) for i in range(4)]
    one, five = experiment_report("x", queries, events).arms
    assert one.clients == 1 and one.metrics["ctr"].value == 0.5
    assert math.isnan(one.metrics["ctr"].low) and math.isnan(one.metrics["ctr"].high)
    assert five.clients == 5 and five.metrics["ctr"].low < 0.2 < five.metrics["ctr"].high


def test_cli_check(tmp_path, capsys):
    assert main(["experiment", "check", str(EXAMPLE_FILE)]) == 0
    out = capsys.readouterr().out
    assert "2 experiments, valid" in out and "ce-rerank: ab [default 0.5, rerank-ce 0.5]" in out
    bad = tmp_path / "e.toml"
    bad.write_text('[experiments.x]\nmode = "ab"\narms = [{ profile = "default", share = 0.5 }, '
                   '{ profile = "nope", share = 0.5 }]\n')
    assert main(["experiment", "check", str(bad)]) == 2
    assert f"{bad}: experiments.x.arms.1.profile = 'nope': must name a profile" in capsys.readouterr().err


def test_degraded_searches_are_counted_per_arm_and_reason_and_flagged():
    queries = [_q("d1", "default", "c1", 1, ["p1"]), _q("d2", "default", "c2", 1, ["p1"]),
               _q("r1", "rerank", "c3", 1, ["p1"], degraded=["rerank:budget"]),
               _q("r2", "rerank", "c4", 2, ["p1"], degraded=["rerank:budget", "deadline:search"]),
               _q("r3", "rerank", "c5", 3, ["p1"])]
    report = experiment_report("x", queries, [], arms=["default", "rerank"])
    assert report.degraded_searches == 2 and report.degraded_reasons == {"rerank:budget": 2, "deadline:search": 1}
    assert [(a.arm, a.degraded) for a in report.arms] == [("default", 0), ("rerank", 2)]
    md = render_experiment_markdown(report)
    assert ("**DEGRADED: 2 of 5 searches were served with a stage cut short (rerank:budget 2, deadline:search 1; "
            "per arm: default 0, rerank 2)") in md
    assert 'class="neg sig">DEGRADED: 2 of 5' in render_experiment_html(report)
    assert report.to_dict()["degraded_reasons"] == {"rerank:budget": 2, "deadline:search": 1}
    interleaved = experiment_report("il", [_iq("s1", ["a", "b"], ["A", "B"]),
                                           _q("s2", INTERLEAVED, "c", 1, ["a"], experiment="il", teams=["A"],
                                              degraded=["rerank:budget"])], [])
    assert interleaved.degraded_searches == 1 and "DEGRADED: 1 of 2" in render_experiment_markdown(interleaved)
    clean = experiment_report("x", queries[:2], [])
    assert clean.degraded_searches == 0 and "DEGRADED" not in render_experiment_markdown(clean)


def _all_or_nothing() -> tuple[list[UbiQuery], list[UbiEvent]]:
    """Two clients an arm, every search of arm b clicked, none of arm a: no variation within either arm."""
    queries = [_q("a1", "a", "c1", 1, ["p1"]), _q("a2", "a", "c2", 1, ["p1"]),
               _q("b1", "b", "c3", 1, ["p1"]), _q("b2", "b", "c4", 1, ["p1"])]
    return queries, [_e("click", "p1", 1, "b1"), _e("click", "p1", 1, "b2")]


def test_no_variation_within_the_arms_gives_no_p_and_never_significant():
    report = experiment_report("x", *_all_or_nothing(), arms=["a", "b"])
    ctr = next(d for d in report.deltas if d.metric == "ctr")
    assert ctr.delta == 1.0 and math.isnan(ctr.p) and not ctr.significant
    assert math.isnan(ctr.ci_low) and math.isnan(ctr.ci_high)
    assert report.to_dict()["deltas"][0]["p"] is None
    md, html = render_experiment_markdown(report), render_experiment_html(report)
    assert "| b | CTR | 0.0000 | 1.0000 | +1.0000 | n/a | n/a | n/a |" in md  # no † either
    for text in (md, html):
        assert "p n/a (CTR, add-to-cart rate, purchase rate, revenue / search): no test is possible" in text
        assert "nan" not in text.replace("Welch", "")


def test_alpha_sets_the_level_of_every_interval_and_its_label():
    queries = [_q(f"a{i}", "a", f"ca{i}", 1, ["p1"]) for i in range(40)] + \
              [_q(f"b{i}", "b", f"cb{i}", 1, ["p1"]) for i in range(40)]
    events = [_e("click", "p1", 1, f"a{i}") for i in range(12)] + [_e("click", "p1", 1, f"b{i}") for i in range(19)]
    at95, at80 = (experiment_report("x", queries, events, arms=["a", "b"], alpha=a) for a in (0.05, 0.2))
    d95, d80 = at95.deltas[0], at80.deltas[0]
    assert d80.p == pytest.approx(d95.p) and 0.05 < d80.p < 0.2 and d80.significant and not d95.significant
    # a significant delta's interval at the same level excludes 0, as the test says
    assert d95.ci_low < 0 < d80.ci_low < d80.ci_high < d95.ci_high
    assert (d80.ci_low, d80.ci_high) == pytest.approx(clustered_welch([(0, 1)] * 28 + [(1, 1)] * 12,
                                                                      [(0, 1)] * 21 + [(1, 1)] * 19, 0.8)[1:3])
    assert at80.arms[0].metrics["ctr"].high < at95.arms[0].metrics["ctr"].high
    assert at80.confidence == pytest.approx(0.8)
    md, html = render_experiment_markdown(at80), render_experiment_html(at80)
    assert "| Δ 80% CI |" in md and "Wilson 80% intervals" in md and "95%" not in md
    assert "<th>Δ 80% CI</th>" in html and "95%" not in html
    assert "| Δ 97.5% CI |" in render_experiment_markdown(experiment_report("x", queries, events, alpha=0.025))
    il = experiment_report("il", [_iq("s1", ["a", "b"], ["A", "B"])], [_e("click", "b", 1, "s1")], alpha=0.1)
    assert "candidate share [90% CI]" in render_experiment_markdown(il)


def test_an_empty_arm_prints_n_a_not_nan():
    queries = [_q("q1", "b", "c1", 1, ["p1"]), _q("q2", "b", "c2", 1, ["p1"])]
    report = experiment_report("x", queries, [_e("click", "p1", 1, "q1")], arms=["a", "b", "c"])
    assert report.arms[0].searches == 0 and all(math.isnan(d.p) and not d.significant for d in report.deltas)
    for text in (render_experiment_markdown(report), render_experiment_html(report)):
        assert "nan" not in text and "1.0000 | Welch" not in text
    assert "| c | CTR | n/a | n/a | n/a | n/a | n/a | n/a |" in render_experiment_markdown(report)


def test_a_purchase_of_several_units_is_price_times_quantity():
    queries = [_q("q1", "a", "c1", 1, ["p1"]), _q("q2", "b", "c2", 1, ["p1"])]
    three = _e("purchase", "p1", 2, "q1", price=10.0)
    three = three.model_copy(update={"event_attributes": three.event_attributes.model_copy(update={"quantity": 3})})
    a, b = experiment_report("x", queries, [three, _e("purchase", "p1", 2, "q2", price=10.0)], arms=["a", "b"]).arms
    assert (a.metrics["revenue_per_search"].value, b.metrics["revenue_per_search"].value) == (30.0, 10.0)
