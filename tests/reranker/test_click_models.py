"""Click models (COEC, PBM, DBN): hand-worked examples, an independent brute-force EM, recovery of known
parameters, and Kendall tau against the human labels on logs simulated from them (crowdflower)."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction as F

import numpy as np
import pytest
from scipy.stats import kendalltau

from shopsearch.judgments import query_id_for
from shopsearch.reranker.click_models import (GRADE_CUTS, MODELS, PairEstimate, SerpSession, encode_sessions,
                                              fit_click_model, fit_coec, fit_dbn, fit_pbm, grade_for, grade_pairs,
                                              serp_sessions)
from shopsearch.reranker.sim_catalog import load_judged
from shopsearch.reranker.simulate import SimParams, simulate
from shopsearch.text import normalise_query
from shopsearch.ubi import UbiEvent, UbiEventAttributes, UbiObject, UbiOrdinal, UbiPosition, UbiQuery, to_ubi_event

S = SerpSession


def _approx(values, expected):
    return np.allclose(np.asarray(values, dtype=float), [float(x) for x in expected], atol=1e-9)


# --- hand-worked examples -------------------------------------------------------------------------------------

def test_coec_by_hand():
    # rank 1: 4 lists, 2 clicks -> CTR 1/2; rank 2: 4 lists, 1 click -> 1/4.
    # x: shown at ranks 1,1,1,2 -> expected 3/2 + 1/4 = 7/4, 1 click -> 4/7; y: ranks 2,2,2,1 -> 5/4, 2 clicks -> 8/5
    sessions = [S("q", ("x", "y"), (True, False)), S("q", ("x", "y"), (False, True)),
                S("q", ("x", "y"), (False, False)), S("q", ("y", "x"), (True, False))]
    m = encode_sessions(sessions)
    coec, stderr, ctr = fit_coec(m)
    assert _approx(ctr, [F(1, 2), F(1, 4)])
    assert _approx(coec, [F(4, 7), F(8, 5)])
    assert _approx(stderr, [1 / F(7, 4), 2**0.5 / 1.25])  # sqrt(max(clicks, 1)) / expected
    fit = fit_click_model("coec", sessions)
    assert [(p.doc_id, p.impressions, p.clicks) for p in fit.pairs] == [("y", 4, 2), ("x", 4, 1)]


def test_pbm_one_em_step_by_hand():
    # From a = e = 1/2 a non-click has P(attractive) = P(examined) = (1/4) / (3/4) = 1/3; a click is both.
    # x: clicks 1,1,0 -> (1 + 1 + 1/3) / 3 = 7/9 = e(rank 1); y: 0,1,0 -> (1/3 + 1 + 1/3) / 3 = 5/9 = e(rank 2).
    m = encode_sessions([S("q", ("x", "y"), (True, False)), S("q", ("x", "y"), (True, True)),
                         S("q", ("x", "y"), (False, False))])
    p = fit_pbm(m, iterations=1)
    assert _approx(p.attractiveness, [F(7, 9), F(5, 9)]) and _approx(p.examination, [F(7, 9), F(5, 9)])


def test_dbn_one_em_step_by_hand():
    # a = s = gamma = 1/2. List (x, y).
    # Session A, clicks (1, 0): forward alpha_2(E=1) = 1/2 * gamma(1 - s) = 1/8, alpha_2(E=0) = 3/8;
    #   backward beta_2(1) = 1 - a = 1/2, beta_2(0) = 1; Z = 1/2 * (1/4 * 1/2 + 3/4 * 1) = 7/16.
    #   P(E_y = 0) = (3/8) / (7/16) = 6/7 -> P(A_y) = 3/7; P(S_x) = (1/4 * beta_2(0)) / Z = 4/7;
    #   continued: 1/4 * gamma * beta_2(1) / Z = 1/7 of could-continue 1/4 * (1/4 + 1/2) / Z = 3/7.
    # Session B, clicks (0, 0): x surely examined -> P(A_x) = 0; Z = 1/2 * (1/2 * 1/2 + 1/2) = 3/8;
    #   P(E_y = 0) = (1/4) / (3/8) = 2/3 -> P(A_y) = 1/3; continued 1/3 of could 1.
    # M-step: a_x = (1 + 0)/2 = 1/2, a_y = (3/7 + 1/3)/2 = 8/21, s_x = 4/7, s_y unseen (stays 1/2),
    #   gamma = (1/7 + 1/3) / (3/7 + 1) = 1/3.
    m = encode_sessions([S("q", ("x", "y"), (True, False)), S("q", ("x", "y"), (False, False))])
    d = fit_dbn(m, iterations=1)
    assert _approx(d.attractiveness, [F(1, 2), F(8, 21)]) and _approx(d.satisfaction, [F(4, 7), F(1, 2)])
    assert abs(d.continuation - 1 / 3) < 1e-12
    fixed = fit_dbn(m, gamma=0.5, iterations=1)
    assert fixed.continuation == 0.5 and _approx(fixed.attractiveness, [F(1, 2), F(8, 21)])


# --- an independent implementation: enumerate every hidden state -------------------------------------------------

def _brute_dbn(sessions, iterations):
    """DBN EM by enumerating attractiveness, satisfaction and continuation coins of each position."""
    pairs = list(dict.fromkeys((s.query, d) for s in sessions for d in s.docs))
    a, s_, g = {p: 0.5 for p in pairs}, {p: 0.5 for p in pairs}, 0.5
    for _ in range(iterations):
        sa, na, ss, ns, went, could = ({p: 0.0 for p in pairs}, {p: 0 for p in pairs}, {p: 0.0 for p in pairs},
                                       {p: 0 for p in pairs}, 0.0, 0.0)
        for sess in sessions:
            n, keys = len(sess.docs), [(sess.query, d) for d in sess.docs]
            stats, z = [], 0.0
            for bits in itertools.product((0, 1), repeat=3 * n):
                att, sat, cont = bits[:n], bits[n:2 * n], bits[2 * n:]
                w, e, examined, clicks = 1.0, 1, [], []
                for r, k in enumerate(keys):
                    examined.append(e)
                    c = e * att[r]
                    clicks.append(c)
                    w *= a[k] if att[r] else 1 - a[k]
                    w *= (s_[k] if sat[r] else 1 - s_[k]) if c else (0.0 if sat[r] else 1.0)
                    w *= g if cont[r] else 1 - g
                    e = e * (1 - sat[r]) * cont[r]
                if tuple(bool(c) for c in clicks) != sess.clicked or w == 0:
                    continue
                z += w
                stats.append((w, att, sat, cont, examined))
            for w, att, sat, cont, examined in stats:
                for r, k in enumerate(keys):
                    sa[k] += w / z * att[r]
                    if sess.clicked[r]:
                        ss[k] += w / z * sat[r]
                    if r < n - 1 and examined[r] and not sat[r]:
                        could += w / z
                        went += w / z * cont[r]
            for r, k in enumerate(keys):
                na[k] += 1
                ns[k] += sess.clicked[r]
        a = {p: min(max(sa[p] / na[p], 1e-6), 1 - 1e-6) for p in pairs}
        s_ = {p: min(max(ss[p] / ns[p], 1e-6), 1 - 1e-6) if ns[p] else s_[p] for p in pairs}
        g = min(max(went / could, 1e-6), 1.0)
    return [a[p] for p in pairs], [s_[p] for p in pairs], g


def _brute_pbm(sessions, iterations):
    pairs = list(dict.fromkeys((s.query, d) for s in sessions for d in s.docs))
    depth = max(len(s.docs) for s in sessions)
    a, e = {p: 0.5 for p in pairs}, [0.5] * depth
    for _ in range(iterations):
        sa, na, se, ne = {p: 0.0 for p in pairs}, {p: 0 for p in pairs}, [0.0] * depth, [0] * depth
        for sess in sessions:
            for r, d in enumerate(sess.docs):
                k = (sess.query, d)
                post = {(x, y): (a[k] if x else 1 - a[k]) * (e[r] if y else 1 - e[r])
                        for x in (0, 1) for y in (0, 1) if (x and y) == sess.clicked[r]}
                z = sum(post.values())
                sa[k] += sum(w for (x, _), w in post.items() if x) / z
                se[r] += sum(w for (_, y), w in post.items() if y) / z
                na[k] += 1
                ne[r] += 1
        a = {p: min(max(sa[p] / na[p], 1e-6), 1 - 1e-6) for p in pairs}
        e = [min(max(se[r] / ne[r], 1e-6), 1 - 1e-6) for r in range(depth)]
    return [a[p] for p in pairs], e


def _random_log(seed):
    rng = np.random.default_rng(seed)
    docs = ["d1", "d2", "d3", "d4"]
    out = []
    for _ in range(12):
        n = int(rng.integers(1, 4))
        shown = tuple(rng.permutation(docs)[:n].tolist())
        out.append(S(str(rng.choice(["q1", "q2"])), shown, tuple(bool(x) for x in rng.random(n) < 0.4)))
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_em_matches_brute_force_enumeration(seed):
    sessions = _random_log(seed)
    m = encode_sessions(sessions)
    d = fit_dbn(m, iterations=3, tol=0.0)
    a, s, g = _brute_dbn(sessions, 3)
    assert np.allclose(d.attractiveness, a, atol=1e-6) and np.allclose(d.satisfaction, s, atol=1e-6)
    assert abs(d.continuation - g) < 1e-6 and d.iterations == 3
    p = fit_pbm(m, iterations=3, tol=0.0)
    a, e = _brute_pbm(sessions, 3)
    assert np.allclose(p.attractiveness, a, atol=1e-6) and np.allclose(p.examination, e, atol=1e-6)


@pytest.mark.parametrize("fit", [fit_pbm, fit_dbn])
def test_em_converging_on_its_last_allowed_iteration_counts_as_converged(fit):
    # the log of a seed converges in n iterations; capped at exactly n it converged too, capped at n - 1 it did not
    m = encode_sessions(_random_log(1))
    n = fit(m, iterations=1000, tol=1e-6).iterations
    assert 1 < n < 1000
    at_cap = fit(m, iterations=n, tol=1e-6)
    assert at_cap.iterations == n and at_cap.converged
    short = fit(m, iterations=n - 1, tol=1e-6)
    assert short.iterations == n - 1 and not short.converged


@pytest.mark.parametrize("model", ["pbm", "dbn"])
def test_fit_click_model_reports_convergence(model):
    sessions = _random_log(1)
    n = fit_click_model(model, sessions, iterations=1000).iterations
    assert fit_click_model(model, sessions, iterations=n).converged
    assert not fit_click_model(model, sessions, iterations=n - 1).converged
    assert fit_click_model("coec", sessions).converged  # no EM to stop short


# --- recovery of known parameters -------------------------------------------------------------------------------

def _model_log(rng, true_a, n_sessions, depth, click):
    docs = list(true_a)
    out = []
    for _ in range(n_sessions):
        shown = tuple(rng.permutation(docs)[:depth].tolist())
        out.append(S("q", shown, click(shown)))
    return out


def test_pbm_recovers_known_parameters():
    rng = np.random.default_rng(3)
    true_a = {"a": 0.9, "b": 0.6, "c": 0.3, "d": 0.1, "e": 0.05}
    true_e = [1.0, 0.6, 0.35, 0.2]
    sessions = _model_log(rng, true_a, 20000, 4, lambda shown: tuple(
        bool(rng.random() < true_e[r] and rng.random() < true_a[d]) for r, d in enumerate(shown)))
    fit = fit_click_model("pbm", sessions, iterations=300)
    assert np.allclose(fit.positions, true_e, atol=0.04)
    for p in fit.pairs:
        assert abs(p.estimate - true_a[p.doc_id]) < 0.05 and 0 < p.stderr < 0.02


def test_dbn_recovers_known_parameters():
    rng = np.random.default_rng(4)
    true_a = {"a": 0.8, "b": 0.6, "c": 0.4, "d": 0.2, "e": 0.1}
    true_s = {"a": 0.7, "b": 0.3, "c": 0.5, "d": 0.4, "e": 0.6}

    def scan(shown):
        clicks, examined = [], True
        for d in shown:
            c = examined and rng.random() < true_a[d]
            clicks.append(bool(c))
            examined = examined and not (c and rng.random() < true_s[d]) and rng.random() < 0.7
        return tuple(clicks)

    sessions = _model_log(rng, true_a, 30000, 4, scan)
    m = encode_sessions(sessions)
    d = fit_dbn(m, iterations=500, tol=1e-7)
    assert abs(d.continuation - 0.7) < 0.05
    for i, (_, doc) in enumerate(m.pairs):
        assert abs(d.attractiveness[i] - true_a[doc]) < 0.05 and abs(d.satisfaction[i] - true_s[doc]) < 0.1


def test_a_pair_nobody_looked_at_is_not_graded_by_its_starting_guess():
    # A true cascade that rarely reaches the bottom: DBN keeps the starting a = s = 0.5 for products that were
    # never examined, which graded them 2; they are left out now, and every never-clicked pair graded is a 0.
    rng = np.random.default_rng(0)
    sessions = []
    for q in range(20):
        docs = tuple(f"q{q}d{i}" for i in range(10))
        a, s = rng.uniform(0.02, 0.4, 10), rng.uniform(0.2, 0.8, 10)
        for _ in range(100):
            clicks = [False] * 10
            for r in range(10):
                if rng.random() < a[r]:
                    clicks[r] = True
                    if rng.random() < s[r]:
                        break
                if rng.random() > 0.5:
                    break
            sessions.append(SerpSession(f"q{q}", docs, tuple(clicks)))
    fit = fit_click_model("dbn", sessions)
    graded = grade_pairs(fit.pairs, min_impressions=10)
    never = [g for g in graded if g.clicks == 0]
    assert all(g.grade == 0 and g.examinations >= 10 for g in never)
    left_out = {(p.query, p.doc_id) for p in fit.pairs} - {(g.query, g.doc_id) for g in graded}
    assert left_out and all(p.clicks == 0 and p.examinations < 10 for p in fit.pairs if (p.query, p.doc_id) in left_out)
    assert all(math.isnan(g.examinations) for g in grade_pairs(fit_click_model("coec", sessions).pairs))


# --- sessions, grades, errors -----------------------------------------------------------------------------------

def _click(list_id, doc, position=None):
    pos = UbiPosition(ordinal=UbiOrdinal(index=position)) if position else None
    return UbiEvent(action_name="click", query_id=list_id, timestamp="2024-01-01T00:00:05Z",
                    event_attributes=UbiEventAttributes(object=UbiObject(object_id=doc), position=pos))


def _list(list_id, text, docs, **attrs):
    return UbiQuery(query_id=list_id, user_query=text, query_response_id=f"r-{list_id}",
                    query_response_hit_ids=docs, timestamp="2024-01-01T00:00:00Z", query_attributes=attrs)


def test_serp_sessions_from_ubi_records():
    queries = [_list("l1", "  Red LAMP", ["p1", "p2", "p3"]), _list("l2", "red lamp", ["p2", "p1"], page=1),
               _list("l3", "red lamp", ["p9"], page=2), _list("l4", "  ", ["p1"]), _list("l5", "mug", [])]
    events = [_click("l1", "p3", 3), _click("l1", "p1", 2),  # wrong position: found by id
              _click("l1", "p7"), _click("l2", "p2"), _click("l3", "p9", 1),
              UbiEvent(action_name="add_to_cart", query_id="l2", timestamp="2024-01-01T00:00:09Z",
                       event_attributes=UbiEventAttributes(object=UbiObject(object_id="p1")))]
    assert serp_sessions(queries, events) == [S("red lamp", ("p1", "p2", "p3"), (True, False, True)),
                                              S("red lamp", ("p2", "p1"), (True, False))]


def test_grades_follow_the_gain_cut_points_and_min_impressions():
    assert [round(c, 3) for c in GRADE_CUTS] == [0.059, 0.261, 0.665]
    assert [grade_for(r) for r in (0.05, 0.06, 0.26, 0.27, 0.66, 0.67, 2.0)] == [0, 1, 1, 2, 2, 3, 3]
    pairs = [PairEstimate("lamp", "a", 0.8, 0.1, 30, 20), PairEstimate("lamp", "b", 0.3, 0.1, 30, 8),
             PairEstimate("lamp", "c", 0.1, 0.1, 30, 2), PairEstimate("lamp", "d", 0.01, 0.1, 30, 0),
             PairEstimate("lamp", "e", 0.9, 0.3, 9, 8)]
    graded = grade_pairs(pairs, min_impressions=10, reference_quantile=1.0)
    assert [(g.doc_id, g.grade) for g in graded] == [("a", 3), ("b", 2), ("c", 1), ("d", 0)]
    assert graded[0].qid == query_id_for("lamp") and graded[0].impressions == 30
    assert grade_pairs(pairs, min_impressions=31) == []
    assert {g.grade for g in grade_pairs([p._replace(estimate=0.0) for p in pairs])} == {0}


def test_sparse_clicks_grade_the_clicked_pairs_and_no_clicks_grade_nothing():
    # 2 clicked pairs among 60: the 95th percentile of all estimates falls on unclicked ones (COEC: 0, so every
    # pair was graded 0; PBM with no click at all: its starting guess, so every pair was graded 3).
    unclicked = [PairEstimate("lamp", f"u{i}", 0.0, 0.1, 30, 0, 30.0) for i in range(58)]
    pairs = unclicked + [PairEstimate("lamp", "a", 0.4, 0.1, 30, 12, 30.0),
                         PairEstimate("lamp", "b", 0.1, 0.1, 30, 3, 30.0)]
    grades = {g.doc_id: g.grade for g in grade_pairs(pairs, min_impressions=10)}
    assert grades["a"] == 3 and grades["b"] >= 1 and {grades[p.doc_id] for p in unclicked} == {0}
    sessions = [S("lamp", ("a", "b", "c"), (False, False, False))] * 20
    with pytest.raises(ValueError, match="was clicked"):
        grade_pairs(fit_click_model("pbm", sessions).pairs, min_impressions=5)


def test_pairs_left_out_do_not_move_the_reference():
    # Never-clicked products served below the clicks (nobody looked there) are not graded, so they must not pull
    # the 95th-percentile reference down and lift the graded pairs' grades.
    clicked = [PairEstimate("lamp", f"c{i}", i / 20, 0.05, 40, 1 + i, 40.0) for i in range(1, 20)]
    ghosts = [PairEstimate("lamp", f"g{i}", 0.001, 0.05, 40, 0, 0.5) for i in range(40)]
    alone = [(g.doc_id, g.grade) for g in grade_pairs(clicked)]
    assert [(g.doc_id, g.grade) for g in grade_pairs(clicked + ghosts)] == alone


def test_coec_leaves_out_pairs_with_no_evidence():
    # "deep" is only ever shown at rank 3, where nobody clicked: COEC's expected clicks are 0, its estimate 0 with
    # an infinite error. It is left out (as PBM and DBN leave it), not graded a confident 0.
    sessions = [S("lamp", ("a", "b", "deep"), (True, i % 2 == 0, False)) for i in range(40)]
    graded = {g.doc_id for g in grade_pairs(fit_click_model("coec", sessions).pairs)}
    assert graded == {"a", "b"}
    assert graded == {g.doc_id for g in grade_pairs(fit_click_model("pbm", sessions).pairs)}


def test_dbn_pair_clicked_only_last_takes_the_pooled_satisfaction():
    # Nothing is observed after a list's last product: a click there leaves its satisfaction where EM started it
    # (0.5). The estimate uses the satisfaction of the pairs whose clicks inform it instead.
    rng = np.random.default_rng(5)
    true_a, true_s = [0.5, 0.4, 0.3], [0.2, 0.2, 0.2]
    sessions = []
    for _ in range(3000):
        clicks, looking = [], True
        for a, s in zip(true_a, true_s):
            c = looking and rng.random() < a
            clicks.append(bool(c))
            looking = looking and not (c and rng.random() < s) and rng.random() < 0.9
        sessions.append(S("lamp", ("x", "y", "z"), tuple(clicks)))
    m = encode_sessions(sessions)
    em = fit_dbn(m)
    assert em.satisfaction[m.pairs.index(("lamp", "z"))] == pytest.approx(0.5)  # the EM's own value: unmoved
    fit = {p.doc_id: p for p in fit_click_model("dbn", sessions).pairs}
    a_z = em.attractiveness[m.pairs.index(("lamp", "z"))]
    s_xy = [em.satisfaction[m.pairs.index(("lamp", d))] for d in ("x", "y")]
    clicks_xy = [fit[d].clicks for d in ("x", "y")]
    assert fit["z"].estimate / a_z == pytest.approx(np.average(s_xy, weights=clicks_xy))
    assert fit["z"].estimate / a_z != pytest.approx(0.5, abs=0.05)


def test_serp_sessions_leave_out_lists_no_shopper_saw_ranked():
    queries = [_list("l1", "lamp", ["p1", "p2"], sort="price_asc"), _list("l2", "lamp", ["p3"], explain=True),
               _list("l3", "gift card", ["p4"], redirect="/pages/gift-cards"),
               _list("l4", "lamp", ["p5", "p6"], sort="relevance")]
    assert serp_sessions(queries, [_click("l1", "p2", 2), _click("l4", "p6", 2)]) == [
        S("lamp", ("p5", "p6"), (False, True))]


def test_serp_sessions_read_a_page_logged_as_text():
    # The OpenSearch UBI plugin stores query_attributes as strings: "2" is a second page, not a first one.
    queries = [_list("l1", "lamp", ["p1"], page="2"), _list("l2", "lamp", ["p2"], page="1"),
               _list("l3", "lamp", ["p3"], page="two")]
    assert serp_sessions(queries, [_click("l1", "p1", 1)]) == [S("lamp", ("p2",), (False,))]


@pytest.mark.parametrize("call, message", [
    (lambda: fit_click_model("ubm", [S("q", ("a",), (True,))]), "model must be one of coec, pbm, dbn; got 'ubm'"),
    (lambda: fit_click_model("pbm", []), "sessions must hold at least one"),
    (lambda: encode_sessions([S("q", ("a", "b"), (True,))]), "sessions[0]: clicked has 1 flags for 2 docs"),
    (lambda: fit_click_model("dbn", [S("q", ("a",), (True,))], iterations=0), "iterations must be an integer >= 1"),
    (lambda: fit_dbn(encode_sessions([S("q", ("a",), (True,))]), gamma=1.5), "gamma must be in (0, 1]"),
    (lambda: grade_pairs([], min_impressions=0), "min_impressions must be an integer >= 1; got 0"),
    (lambda: grade_pairs([], reference_quantile=0), "reference_quantile must be in (0, 1]; got 0"),
])
def test_bad_input_names_the_parameter(call, message):
    with pytest.raises(ValueError) as err:
        call()
    assert message in str(err.value)


# --- logs simulated from known relevance: Kendall tau against the human labels ---------------------------------

SIM_QUERIES, SIM_SESSIONS, SIM_SEED = 30, 5000, 0
# Measured on this seeded run (grades / estimates, over the graded pairs): COEC 0.608 / 0.561 (1,000 pairs), PBM
# 0.575 / 0.545 (907: never-clicked pairs hardly looked at are left out; counted as 0, as eval reads them, 0.603),
# DBN 0.449 / 0.411 (926; 0.481 with the left-out pairs as 0).
# DBN trails because the simulator is not a cascade (a click does not end the scan, only a purchase does), so its
# satisfaction term carries no signal there; the floors leave a margin of about 0.1 under the measured values.
TAU_FLOORS = {"coec": (0.5, 0.45), "pbm": (0.5, 0.45), "dbn": (0.35, 0.3)}


def simulated_ubi_logs(data, params):
    """The simulator's sessions as UBI records: one served list per session (its impressions), its clicks."""
    queries, events = [], []
    for _, session in simulate(data, params):
        shown = [e for e in session if e.type == "impression"]
        list_id = shown[0].session_id
        queries.append(UbiQuery(query_id=list_id, user_query=shown[0].query, query_response_id=list_id,
                                query_response_hit_ids=[e.product_id for e in shown], timestamp=shown[0].timestamp,
                                query_attributes={"simulated": True}))
        events += [to_ubi_event(e.model_copy(update={"query_id": list_id})) for e in session if e.type == "click"]
    return queries, events


@pytest.fixture(scope="module")
def simulated(shared_data):
    data = load_judged(shared_data / "crowdflower")
    qids = sorted(data.qrels)
    keep = set(np.random.default_rng(SIM_SEED).choice(qids, SIM_QUERIES, replace=False).tolist())
    data = data.without(set(qids) - keep)
    queries, events = simulated_ubi_logs(data, SimParams(sessions=SIM_SESSIONS, seed=SIM_SEED))
    truth = {(normalise_query(data.queries[q]), pid): g for q, pool in data.qrels.items() for pid, g in pool.items()}
    return serp_sessions(queries, events), truth


@pytest.mark.parametrize("model", MODELS)
def test_grades_from_simulated_clicks_correlate_with_true_labels(simulated, model):
    sessions, truth = simulated
    graded = grade_pairs(fit_click_model(model, sessions).pairs, min_impressions=10)
    labels = [truth[(g.query, g.doc_id)] for g in graded]
    tau_grade = kendalltau([g.grade for g in graded], labels)[0]
    tau_estimate = kendalltau([g.estimate for g in graded], labels)[0]
    print(f"{model}: Kendall tau vs human labels over {len(graded)} pairs: grades {tau_grade:.3f}, "
          f"estimates {tau_estimate:.3f}")
    assert len(graded) > 850 and all(g.impressions >= 10 for g in graded)
    floor_grade, floor_estimate = TAU_FLOORS[model]
    assert tau_grade >= floor_grade and tau_estimate >= floor_estimate
