"""The learned ranker from judgments and from UBI logs: rows, relevance training, position debiasing, the card."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from shopsearch.indexer.records import Product
from shopsearch.judgments import Qrel
from shopsearch.plugin.search_types import ScoredHit
from shopsearch.reranker.conversion import ConversionModel
from shopsearch.reranker.features import (FeatureContext, RELEVANCE_FEATURES, feature_matrix, query_features,
                                          smoothed_rate)
from shopsearch.reranker.judged_rows import judged_rows
from shopsearch.reranker.pipeline import RankerInput
from shopsearch.reranker.ranker_training import (MEMBER_QUERIES, TUNE_GRID, TUNE_ROUNDS, edge_note, fit, group_folds,
                                                 member_queries, member_seed, save, train)
from shopsearch.reranker.training_rows import TrainingRows, build_rows, logged_events
from shopsearch.ubi import UbiEvent, UbiEventAttributes, UbiObject, UbiOrdinal, UbiPosition, UbiQuery

NAMES = ("bm25", "title_overlap", "fused_rank")


def test_query_shape():
    assert query_features("3/4 in copper pipe") == {"query_terms": 5.0, "query_has_digits": 1.0,
                                                     "query_has_units": 1.0}
    assert query_features("ipad 2")["query_has_units"] == 0.0 and query_features("5 gal")["query_has_units"] == 1.0
    assert query_features("") == {"query_terms": 0.0, "query_has_digits": 0.0, "query_has_units": 0.0}


class StubPipeline:
    """A pipeline whose ranker stage input is a fixed head per query text (what ``judged_rows`` must use as is)."""

    def __init__(self, heads):
        self.heads, self.calls = heads, []

    def ranker_input(self, req):
        self.calls.append((req.query, req.profile))
        return RankerInput(self.heads.get(req.query, []), FeatureContext(), False)


def _hit(pid, rank, bm25, title):
    return ScoredHit(pid, rank, 0.0, {"id": pid, "title": title}, {"bm25": bm25})


def test_judged_rows_are_the_stage_input_labelled_by_grades():
    heads = {"red lamp": [_hit("a", 1, 9.0, "red lamp"), _hit("b", 2, 5.0, "blue lamp"), _hit("c", 3, 1.0, "mug")],
             "mug": [_hit("c", 1, 3.0, "mug")]}
    pipe = StubPipeline(heads)
    qrels = [Qrel("q1", "a", 3), Qrel("q1", "c", -1), Qrel("q2", "c", 2), Qrel("q3", "x", 1)]
    rows = judged_rows(pipe, {"q1": "red lamp", "q2": "mug", "q3": "nothing"}, qrels, "ltr", NAMES)
    assert pipe.calls == [("red lamp", "ltr"), ("mug", "ltr"), ("nothing", "ltr")]
    assert rows.query_ids.tolist() == ["q1"] * 3 + ["q2"] and rows.list_ids.tolist() == rows.query_ids.tolist()
    assert rows.grades.tolist() == [3, 0, 0, 2]  # unjudged b and the negative grade count 0
    assert rows.positions.tolist() == [1, 2, 3, 1] and not rows.purchased.any()
    expected = feature_matrix("red lamp", heads["red lamp"], FeatureContext(), NAMES)
    assert np.array_equal(rows.X[:3], expected)  # the stage's own feature code, on the stage's own input
    with pytest.raises(ValueError, match="none of the 1 judged queries"):
        judged_rows(pipe, {"q3": "nothing"}, qrels, "ltr", NAMES)


def test_judged_rows_can_leave_unjudged_products_out():
    heads = {"red lamp": [_hit("a", 1, 9.0, "red lamp"), _hit("b", 2, 5.0, "blue lamp"), _hit("c", 3, 1.0, "mug")],
             "mug": [_hit("d", 1, 3.0, "mug")]}
    qrels = [Qrel("q1", "a", 3), Qrel("q1", "c", -1), Qrel("q2", "x", 2)]
    names = ("bm25", "bm25_rel", "bm25_list_rank")  # list-relative: computed over the whole head, as served
    rows = judged_rows(StubPipeline(heads), {"q1": "red lamp", "q2": "mug"}, qrels, "ltr", names, unjudged="skip")
    assert rows.query_ids.tolist() == ["q1", "q1"]  # b was never judged; q2's head holds no judged product
    assert rows.grades.tolist() == [3, 0] and rows.positions.tolist() == [1, 3]
    whole = feature_matrix("red lamp", heads["red lamp"], FeatureContext(), names)
    assert np.array_equal(rows.X, whole[[0, 2]])
    with pytest.raises(ValueError, match="unjudged must be one of zero, skip; got 'drop'"):
        judged_rows(StubPipeline(heads), {"q1": "red lamp"}, qrels, "ltr", names, unjudged="drop")


def _judged_like(n_queries=40, seed=0) -> TrainingRows:
    """Lists of 10 where grade follows title_overlap, not the incoming rank (bm25 is noise)."""
    rng = np.random.default_rng(seed)
    n = n_queries * 10
    overlap = rng.integers(0, 4, n) / 3.0
    X = np.column_stack([rng.normal(5, 2, n), overlap, np.tile(np.arange(1, 11), n_queries)])
    qids = np.repeat([f"q{i:02d}" for i in range(n_queries)], 10)
    zeros = np.zeros(n, dtype=int)
    return TrainingRows(NAMES, X, qids, qids, X[:, 2].astype(int), zeros, zeros, zeros,
                        np.rint(overlap * 3).astype(int))


def test_a_ranker_of_relevant_products_only_keeps_its_order_and_writes_valid_json(tmp_path):
    rows = _judged_like()
    rows.grades[:] += 1  # every row relevant (judged products only, say): the 0/1 outcome has one class
    result = train(rows, target="relevance", folds=3, seed=1)
    assert result.calibration == {"a": 1.0, "b": 0.0}  # a Platt fit of one class could reverse the model's order
    save(result, rows, tmp_path / "ltr", {"judgments": "qrels.txt"})

    def no_nan(token):
        raise AssertionError(f"{token} in the card's JSON")

    card = json.loads((tmp_path / "ltr" / "model_card.json").read_text(), parse_constant=no_nan)
    assert card["cv"]["mean"]["auc"] is None and all(f["auc"] is None for f in card["cv"]["folds"])
    assert "| mean | " in (tmp_path / "ltr" / "README.md").read_text()


def test_relevance_ranker_learns_grades_and_writes_its_card(tmp_path):
    rows = _judged_like()
    result = train(rows, target="relevance", folds=3, seed=1)
    assert [f["fold"] for f in result.folds] == [0, 1, 2]
    assert all(f["ndcg@10"] > 0.95 and f["auc"] > 0.8 for f in result.folds)
    assert next(iter(result.importance_gain)) == "title_overlap"
    held = {"fold": 0, "folds": 5, "queries": 8, "incoming": {"ndcg@10": 0.5}, "model": {"ndcg@10": 0.9}}
    model = save(result, rows, tmp_path / "ltr", {"judgments": "qrels.txt"}, held)
    card = json.loads((tmp_path / "ltr" / "model_card.json").read_text())
    assert card["target"] == "relevance" and card["data"]["source"] == "judgments"
    assert card["heldout"] == held and set(card["cv"]["mean"]) == {"ndcg@10", "auc"}
    readme = (tmp_path / "ltr" / "README.md").read_text()
    assert "| incoming | 0.5000 |" in readme and "| title_overlap |" in readme
    loaded = ConversionModel.load(tmp_path / "ltr")
    probs = loaded.predict(rows.X[:10])
    assert np.corrcoef(probs, rows.grades[:10])[0, 1] > 0.8 and model.names == NAMES
    with pytest.raises(ValueError, match="needs objective 'lambdarank'"):
        train(rows, objective="binary", target="relevance")
    # the card names where the rows came from, whatever the target
    save(result, rows, tmp_path / "sim", {"events": "e.jsonl", "events_sha256": "ab", "simulated": True})
    assert json.loads((tmp_path / "sim" / "model_card.json").read_text())["data"]["source"] == "events"
    assert "(SIMULATED events); events sha256 `ab`" in (tmp_path / "sim" / "README.md").read_text()


def test_the_label_gain_can_be_the_one_eval_scores_judgments_with():
    # eval's nDCG counts grade 3 as 3x grade 1; LightGBM's default label gain counts it 7x.
    rows = _judged_like()
    linear = train(rows, target="relevance", folds=3, seed=1, label_gain="linear")
    exponential = train(rows, target="relevance", folds=3, seed=1)
    assert (linear.params["label_gain"], exponential.params["label_gain"]) == ("linear", "exponential")
    assert not np.allclose(linear.booster.predict(rows.X), exponential.booster.predict(rows.X))
    assert train(rows, target="relevance", folds=3, seed=1, label_gain="exponential").params == exponential.params
    with pytest.raises(ValueError, match="label_gain must be one of linear, exponential; got 'square'"):
        train(rows, target="relevance", folds=3, label_gain="square")


def test_tuning_chooses_the_setting_its_cv_scores_best_and_the_card_says_so(tmp_path):
    rows = _judged_like(n_queries=30, seed=3)
    noise = np.random.default_rng(5).integers(-1, 2, len(rows))  # grades off by one here and there: settings differ
    rows = dataclasses.replace(rows, grades=np.clip(rows.grades + noise, 0, 3))
    result = train(rows, target="relevance", folds=3, seed=1, tune_grid=True)
    tuning = result.tuning
    assert tuning["metric"] == "ndcg@10" and len(tuning["tried"]) == 36
    assert len({round(t["score"], 6) for t in tuning["tried"]}) > 10
    best = max(t["score"] for t in tuning["tried"])
    assert tuning["score"] == best and tuning["chosen"] == next(
        {k: v for k, v in t.items() if k != "score"} for t in tuning["tried"] if t["score"] == best)
    chosen = tuning["chosen"]
    assert (result.params["num_leaves"], result.params["min_data_in_leaf"]) == (chosen["num_leaves"],
                                                                                chosen["min_data_in_leaf"])
    assert result.params["num_boost_round"] == chosen["rounds"] == result.booster.num_trees()
    # the CV it reports is the chosen setting's, on the folds that chose it: the rounds read off a longer booster
    # are the trees a booster of that many rounds grows
    assert np.mean([f["ndcg@10"] for f in result.folds]) == pytest.approx(tuning["score"])
    grid = {**TUNE_GRID, "rounds": TUNE_ROUNDS}
    assert tuning["at_edge"] == [k for k in grid if chosen[k] in (grid[k][0], grid[k][-1])]
    save(result, rows, tmp_path / "ltr", {"judgments": "qrels.txt"})
    assert json.loads((tmp_path / "ltr" / "model_card.json").read_text())["tuning"] == tuning
    readme = (tmp_path / "ltr" / "README.md").read_text()
    assert "Tuned (`--tune`) on these folds over 36 settings" in readme and "held-out" not in readme
    assert ("at the edge of the grid in " + ", ".join(tuning["at_edge"]) in readme) == bool(tuning["at_edge"])
    assert edge_note({**tuning, "at_edge": ["rounds"]}) == ("at the edge of the grid in rounds: a value past it was "
                                                           "not tried")
    assert edge_note({**tuning, "at_edge": []}) == edge_note({"chosen": {}}) == ""  # cards from before say nothing
    assert train(rows, target="relevance", folds=3, seed=1).tuning is None


def test_a_ranker_of_several_members_scores_their_mean_and_keeps_each_in_its_folder(tmp_path):
    rows = _judged_like(n_queries=30, seed=3)
    noise = np.random.default_rng(5).integers(-1, 2, len(rows))
    rows = dataclasses.replace(rows, grades=np.clip(rows.grades + noise, 0, 3))
    masks = [member_queries(rows, s) for s in (1, 2)]
    assert [len(set(rows.query_ids[m].tolist())) for m in masks] == [round(MEMBER_QUERIES * 30)] * 2
    assert not np.array_equal(*masks)  # each member learns from its own draw of the queries
    # rankers trained with neighbouring seeds share no member (a spread over --seed measures something)
    seeds = {s: {member_seed(s, i) for i in range(8)} for s in (0, 1, 2)}
    assert all(len(v) == 8 for v in seeds.values()) and not (seeds[0] & seeds[1] or seeds[1] & seeds[2])
    bagged = train(rows, target="relevance", folds=3, seed=1, members=4)
    members = bagged.booster.members
    assert len(members) == 4 and bagged.params["members"] == 4
    assert not np.allclose(members[0].predict(rows.X), members[1].predict(rows.X))
    mean = np.mean([m.predict(rows.X, raw_score=True) for m in members], axis=0)
    assert bagged.booster.predict(rows.X, raw_score=True) == pytest.approx(mean)
    assert all(f["ndcg@10"] > 0.8 for f in bagged.folds)
    out = tmp_path / "ltr"
    save(bagged, rows, out, {"judgments": "qrels.txt"})
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "model-1.txt", "model-2.txt", "model-3.txt",
                                                     "model.txt", "model_card.json"]
    assert json.loads((out / "model_card.json").read_text())["members"] == ["model.txt", "model-1.txt",
                                                                            "model-2.txt", "model-3.txt"]
    assert "4 boosters, each fitted on 80% of the training queries" in (out / "README.md").read_text()
    loaded = ConversionModel.load(out)
    x = rows.X[:10]
    assert loaded.raw_scores(x) == pytest.approx(mean[:10])
    assert [sum(c.values()) for c in loaded.contributions(x)] == pytest.approx(mean[:10].tolist())
    # one booster trained into the same folder leaves no member of the four behind to be read
    single = train(rows, target="relevance", folds=3, seed=1)
    assert "members" not in single.params
    save(single, rows, out, {"judgments": "qrels.txt"})
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "model.txt", "model_card.json"]
    save(bagged, rows, out, {"judgments": "qrels.txt"})
    (out / "model-2.txt").unlink()
    with pytest.raises(FileNotFoundError, match="lacks model-2.txt of the 4 members"):
        ConversionModel.load(out)
    with pytest.raises(ValueError, match="members must be >= 1; got 0"):
        train(rows, target="relevance", folds=3, members=0)


def test_a_purchase_model_needs_a_purchase():
    # Clicks and not one purchase: the grades count the clicks, yet a "purchase" model (its calibration, AUC and
    # tuning metric) has nothing to learn; it used to train, with NaN in every fold's figures and the card.
    rows = _judged_like(n_queries=12)
    clicks = dataclasses.replace(rows, clicked=(rows.grades > 1).astype(int), grades=(rows.grades > 1).astype(int))
    for tune_grid in (False, True):
        with pytest.raises(ValueError, match="no purchase in the events; cannot train a purchase model"):
            train(clicks, target="purchase", folds=3, tune_grid=tune_grid)


def test_cv_folds_are_split_queries_folds():
    from shopsearch.reranker.training_data import split_queries

    groups = np.array([f"q{i}" for i in range(10)] * 2)
    folds = group_folds(groups, 3, seed=4)
    for f in range(3):
        assert set(groups[folds == f]) == split_queries(groups.tolist(), folds=3, fold=f, valid_fraction=0.0,
                                                        seed=4).test


def test_position_debiasing_learns_relevance_despite_position_biased_clicks():
    """Clicks = examined (falls with position) x relevant; shown order is random, relevance in feature 1."""
    rng = np.random.default_rng(0)
    n_lists, k = 300, 10
    rel = rng.integers(0, 2, n_lists * k)
    pos = np.tile(np.arange(1, k + 1), n_lists)
    clicked = ((rng.random(len(rel)) < 1.0 / pos) & (rel == 1)).astype(int)
    X = np.column_stack([rng.normal(size=len(rel)), rel + rng.normal(0, 0.3, len(rel)), pos])
    ids = np.repeat([f"l{i}" for i in range(n_lists)], k)
    rows = TrainingRows(NAMES, X, ids, ids, pos, clicked, np.zeros_like(clicked), np.zeros_like(clicked), clicked)
    debiased = fit(rows, "lambdarank", "click", 0, position_debias=True)
    scores = debiased.predict(X, raw_score=True)
    assert np.corrcoef(scores, rel)[0, 1] > 0.5
    with pytest.raises(ValueError, match="position_debias needs objective 'lambdarank'"):
        fit(rows, "binary", "click", 0, position_debias=True)


def _ubi_query(qid, hits, features, t, page=1):
    return UbiQuery(query_id=qid, client_id="c1", user_query="red lamp", query_response_id=f"r-{qid}",
                    query_response_hit_ids=hits, timestamp=f"2024-01-01T00:00:{t:02d}Z",
                    query_attributes={"session_id": "s1", "page": page, "size": len(hits), "features": features,
                                      "simulated": True})


def _ubi_event(action, qid, pid, position, t):
    return UbiEvent(action_name=action, query_id=qid, session_id="s1", client_id="c1",
                    timestamp=f"2024-01-01T00:00:{t:02d}Z",
                    event_attributes=UbiEventAttributes(object=UbiObject(object_id=pid),
                                                        position=UbiPosition(ordinal=UbiOrdinal(index=position))))


def test_logged_features_and_events_become_rows_without_recomputing_a_stage():
    features = {"p1": {"bm25": 7.5, "fused": 0.03}, "p2": {"bm25": 2.5, "fused": 0.02}}
    queries = [_ubi_query("q1", ["p1", "p2", "p3"], features, 0),  # p3 served below the logged top K
               _ubi_query("q2", ["p9"], {}, 1)]  # nothing logged: no rows
    events = [_ubi_event("click", "q1", "p2", 2, 5), _ubi_event("purchase", "q1", "p2", 2, 9),
              _ubi_event("hover", "q1", "p1", 1, 6)]
    logs = logged_events(queries, events)
    assert set(logs.stages) == {"q1"} and logs.stages["q1"]["p1"] == {"bm25": 7.5, "fused": 0.03}
    assert sorted((e.type, e.product_id, e.position) for e in logs.events) == [
        ("click", "p2", 2), ("impression", "p1", 1), ("impression", "p2", 2), ("purchase", "p2", 2)]
    assert all(e.simulated for e in logs.events if e.type == "impression")
    products = {"p1": Product(id="p1", title="Red lamp"), "p2": Product(id="p2", title="Blue lamp")}
    rows = build_rows(logs.events, products, ("bm25", "title_overlap"), logged=logs.stages)
    assert rows.X[:, 0].tolist() == [7.5, 2.5] and rows.X[0, 1] == 1.0 and math.isclose(rows.X[1, 1], 0.5)
    assert rows.clicked.tolist() == [0, 1] and rows.purchased.tolist() == [0, 1] and rows.grades.tolist() == [0, 3]
    assert rows.positions.tolist() == [1, 2]
    page2 = logged_events([_ubi_query("q3", ["p1", "p2"], features, 3, page=2)], [])
    assert [e.position for e in page2.events] == [3, 4]
    # two searches of one query are one CV group: a fold holds the query out, not one of its searches
    twice = logged_events([_ubi_query("q5", ["p1"], features, 5), _ubi_query("q6", ["p2"], features, 6)], [])
    assert set(build_rows(twice.events, products, ("bm25",), logged=twice.stages).query_ids) == {"red lamp"}
    anonymous = _ubi_query("q4", ["p1"], features, 4).model_copy(  # a plain API call: no session, no client
        update={"client_id": None, "query_attributes": {"page": 1, "size": 1, "features": features}})
    click = _ubi_event("click", "q4", "p1", 1, 8)  # the shopper's click names a session the search did not
    logs = logged_events([anonymous], [click])
    assert [e.session_id for e in logs.events if e.type == "impression"] == ["search-q4"]
    assert build_rows(logs.events, products, ("bm25",), logged=logs.stages).clicked.tolist() == [1]
    # searches no shopper saw (a console's explained one, a redirected one) and a page that is no number: no rows
    unseen = [_ubi_query(q, ["p1"], features, 7).model_copy(update={"query_attributes": {
        **_ubi_query(q, ["p1"], features, 7).query_attributes, **extra}})
        for q, extra in (("q7", {"explain": True}), ("q8", {"redirect": "/gift-cards"}), ("q9", {"page": "two"}))]
    assert logged_events(unseen, []).events == []
    as_text = _ubi_query("q10", ["p1", "p2"], features, 9, page="2")  # as the OpenSearch UBI plugin stores it
    assert [e.position for e in logged_events([as_text], []).events] == [3, 4]


def _outcomes(queries, events, products):
    logs = logged_events(queries, events)
    rows = build_rows(logs.events, products, ("bm25",), logged=logs.stages)
    shown = [(lid.split("|")[1], pid) for lid, pid in
             zip(rows.list_ids, [e.product_id for e in sorted(logs.events, key=lambda e: e.time)
                                 if e.type == "impression"])]
    return {key: int(g) for key, g in zip(shown, rows.grades)}


def test_events_are_credited_to_the_search_they_name_or_the_one_the_shopper_engaged_with():
    products = {p: Product(id=p, title=p) for p in ("p", "x", "y")}
    f = {"p": {"bm25": 1.0}, "x": {"bm25": 1.0}, "y": {"bm25": 1.0}}
    # a click stamped a second before its search (a client's own clock) still counts for that search
    early = _outcomes([_ubi_query("q1", ["x", "p"], f, 5)], [_ubi_event("click", "q1", "p", 2, 4)], products)
    assert early == {("q1", "x"): 0, ("q1", "p"): 1}
    # a click in q2 on a product q2 did not log (shown below the logged depth) is no click in q1, which logged it
    below = _outcomes([_ubi_query("q1", ["x", "p"], f, 1), _ubi_query("q2", ["y"], {"y": f["y"]}, 3)],
                      [_ubi_event("click", "q2", "p", 12, 5)], products)
    assert below == {("q1", "x"): 0, ("q1", "p"): 0, ("q2", "y"): 0}
    # a checkout purchase (no query_id) goes to the search where the product was carted, not to the latest
    # search that merely showed it again
    carted = [_ubi_event("click", "q1", "p", 2, 10), _ubi_event("add_to_cart", "q1", "p", 2, 12),
              UbiEvent(action_name="purchase", session_id="s1", client_id="c1", timestamp="2024-01-01T00:00:50Z",
                       event_attributes=UbiEventAttributes(object=UbiObject(object_id="p")))]
    checkout = _outcomes([_ubi_query("q1", ["x", "p"], f, 1), _ubi_query("q2", ["y", "p"], f, 30)], carted,
                         products)
    assert checkout[("q1", "p")] == 3 and checkout[("q2", "p")] == 0


def test_an_anonymous_session_has_the_affinity_it_is_served_with():
    # Serving keys an anonymous shopper's affinity by session (event_context.affinity_key); training must too.
    products = {"a": Product(id="a", title="acme lamp", brand="Acme"), "b": Product(id="b", title="lamp", brand="Zed")}
    f = {"a": {"bm25": 1.0}, "b": {"bm25": 1.0}}
    logs = logged_events([_ubi_query("q1", ["a", "b"], f, 0), _ubi_query("q2", ["a", "b"], f, 30)],
                         [_ubi_event("purchase", "q1", "a", 1, 10)])
    rows = build_rows(logs.events, products, ("user_brand_affinity",), logged=logs.stages)
    assert rows.X[2:, 0].tolist() == [0.75, 0.0]  # the second search: the session bought Acme


def test_event_features_count_what_the_serving_history_counts():
    """Serving counts the impressions clients post (a storefront posts its whole page); training from the logs
    must not count only the products whose features were logged."""
    from shopsearch.reranker.event_history import EventHistory
    from shopsearch.ubi import from_ubi_event

    products = {p: Product(id=p, title=p) for p in ("a", "b", "c")}
    f = {"a": {"bm25": 1.0}, "b": {"bm25": 1.0}, "c": {"bm25": 1.0}}
    queries = [_ubi_query("q1", ["a", "b", "c"], {"a": f["a"], "b": f["b"]}, 0),  # c served below the logged K
               _ubi_query("q2", ["c", "a"], {"c": f["c"], "a": f["a"]}, 30)]
    posted = [_ubi_event("impression", "q1", pid, i, 2) for i, pid in enumerate("abc", 1)]
    posted += [_ubi_event("click", "q1", "c", 3, 4)]
    logs = logged_events(queries, posted)
    rows = build_rows(logs.events, products, ("ctr", "impressions_log"), logged=logs.stages,
                      history_events=logs.history)
    serving = EventHistory(products)
    serving.extend(from_ubi_event(e) for e in posted)
    stats = serving.context(None, ["c", "a"]).stats
    expected = [[smoothed_rate(stats[p].clicks, stats[p].impressions, 0.1, 20.0), math.log1p(stats[p].impressions)]
                for p in ("c", "a")]
    assert rows.X[2:].tolist() == expected and stats["c"].impressions == 1
    # another UBI client's event without a product is left out, not an abort of the whole run
    objectless = UbiEvent(action_name="impression", query_id="q1", session_id="s1", client_id="c1",
                          timestamp="2024-01-01T00:00:03Z")
    assert logged_events(queries, [*posted, objectless]).history == logs.history


def test_lists_the_ranker_did_not_order_are_no_rows():
    f = {"p1": {"bm25": 1.0}}
    sorted_by_price = _ubi_query("q1", ["p1"], f, 1).model_copy(update={"query_attributes": {
        **_ubi_query("q1", ["p1"], f, 1).query_attributes, "sort": "price_asc"}})
    degraded = _ubi_query("q2", ["p1"], f, 2).model_copy(update={"query_attributes": {
        **_ubi_query("q2", ["p1"], f, 2).query_attributes, "degraded": ["conversion:failed"]}})
    assert logged_events([sorted_by_price, degraded], []).events == []


def test_relevance_features_leave_the_shopper_out():
    assert "fused_rank" in RELEVANCE_FEATURES and "cross_encoder" in RELEVANCE_FEATURES
    assert not any(n.startswith("user_") for n in RELEVANCE_FEATURES)


def test_row_files_round_trip_check_their_fingerprint_and_concatenate(tmp_path):
    from shopsearch.reranker.training_rows import TrainingRows, concat_rows, load_rows, save_rows

    def rows(qid: str, n: int, names=("bm25", "knn")) -> TrainingRows:
        return TrainingRows(names, np.arange(n * len(names), dtype=float).reshape(n, len(names)),
                            np.array([f"{qid}|{qid}"] * n), np.array([qid] * n), np.arange(1, n + 1),
                            np.zeros(n), np.zeros(n), np.zeros(n), np.arange(n) % 4, [{"bm25": 1.0}] * n)

    save_rows(rows("q1", 3), tmp_path / "a.npz", {"index": "a"})
    save_rows(rows("q2", 2), tmp_path / "b.npz", {"index": "b"})
    assert load_rows(tmp_path / "a.npz", {"index": "other"}) is None  # built from something else: rebuilt
    a, b = load_rows(tmp_path / "a.npz", {"index": "a"}), load_rows(tmp_path / "b.npz", None)  # None: any
    both = concat_rows([a, b])
    assert len(both) == 5 and both.query_ids.tolist() == ["q1"] * 3 + ["q2"] * 2 and len(both.stages) == 5
    assert np.array_equal(both.X[3:], b.X)
    with pytest.raises(ValueError, match="same features"):
        concat_rows([a, rows("q3", 1, names=("bm25",))])
