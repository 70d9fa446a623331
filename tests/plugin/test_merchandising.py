"""Merchandising rules and file-managed synonyms on both engines (the real OpenSearch node and the embedded engine).

Contract lines of issue 14: a pin rule puts the product at its position; a synonym added to the file works after
the reload, with no reindex. Also bury, hide (total and facets shrink), boost, filter (facets stay inside it),
redirect, rules_applied/explain, a bad file keeping the last good rules, and the pure arrangement functions.
"""

from __future__ import annotations

import logging
import math
import os
import uuid
from datetime import datetime, timezone

import numpy as np
import pytest

from shopsearch.indexer.fields import FieldMapping
from shopsearch.indexer.records import Product
from shopsearch.indexer.sink import IndexDoc
from shopsearch.indexer.validate import to_product
from shopsearch.plugin.embedded_engine import EmbeddedEngine
from shopsearch.plugin.engine import BM25Leg
from shopsearch.plugin.hybrid import HybridSearcher
from shopsearch.plugin.merchandising import Merchandising, arrange, plan_for, rearrange
from shopsearch.plugin.merchandising_rules import RulesError, RulesFile, load_rules
from shopsearch.plugin.opensearch_engine import OpenSearchEngine
from shopsearch.plugin.search_types import ScoredHit, SearchRequest
from shopsearch.plugin.text_analysis import SynonymMap, analyze_query

pytestmark = pytest.mark.opensearch
BRANDS = ["Lumo", "Brightway", "Torq"]


def catalog() -> list[IndexDoc]:
    """20 lamps and 10 drills; brands cycle Lumo, Brightway, Torq; prices 10..22."""
    out = []
    for i in range(30):
        lamp = i < 20
        p = Product(id=f"p{i:02d}", title=f"{'Desk lamp' if lamp else 'Cordless drill'} model {i}",
                    description="warm light" if lamp else "18V battery", brand=BRANDS[i % 3],
                    category=("Home", "Lighting") if lamp else ("Tools", "Drills"), price=10.0 + (i * 7) % 13,
                    rating=1.0 + i % 5, in_stock=i % 2 == 0)
        vec = [math.cos(math.radians(3 * i)), math.sin(math.radians(3 * i)), 0.0, 0.0]
        out.append(IndexDoc(product=p, vector=vec, content_hash=p.content_hash()))
    return out


class Fixed:
    """A query embedder near the lamps (the default profile's vector leg)."""

    def encode(self, texts):
        return np.array([[1.0, 0.05, 0.0, 0.0] for _ in texts], dtype=np.float32)


@pytest.fixture(scope="module")
def engines(opensearch_url, tmp_path_factory):
    name = f"test-merch-{uuid.uuid4().hex[:8]}"
    found = {"opensearch": OpenSearchEngine(opensearch_url, timeout=10),
             "embedded": EmbeddedEngine(tmp_path_factory.mktemp("embedded"))}
    for eng in found.values():
        eng.create_index(name, 4)
        assert all(item.ok for item in eng.bulk(name, catalog()))
        eng.refresh(name)
    yield name, found
    for eng in found.values():
        eng.delete_index(name)
        eng.close()


@pytest.fixture(params=["opensearch", "embedded"])
def setup(request, engines, tmp_path):
    """(searcher, rules file, synonyms file) for one engine; the files start absent."""
    name, found = engines
    folder = tmp_path / "merchandising"
    folder.mkdir()
    searcher = HybridSearcher(found[request.param], name, Fixed(), merchandising=Merchandising(folder, []))
    return searcher, folder / f"{name}.rules.toml", folder / f"{name}.synonyms.txt"


def write(path, text: str) -> None:
    """Write ``text`` and move the modification time on, so a reload never depends on the clock's resolution."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text, encoding="utf-8")
    os.utime(path, ns=(before + 10**9, before + 10**9))


def search(searcher, query, **kw):
    return searcher.search(SearchRequest(query, **{"profile": "bm25", "size": 10, **kw}))


def walk(searcher, query, **kw) -> list[str]:
    """Every hit id of every page (relevance order)."""
    first = search(searcher, query, **kw)
    ids = [h.id for h in first.hits]
    for page in range(2, math.ceil(first.total / 10) + 1):
        ids += [h.id for h in search(searcher, query, page=page, **kw).hits]
    return ids


def test_pin_puts_products_at_their_positions_and_counts_an_unmatched_one(setup):
    searcher, rules, _ = setup
    base = search(searcher, "lamp", facets=("brand", "category_lvl0"))
    write(rules, '[[rule]]\nname = "pins"\nqueries = ["lamp"]\n'
                 'pin = [{id = "p13", position = 1}, {id = "p25", position = 3}]\n')
    resp = search(searcher, "Lamp ", explain=True, facets=("brand", "category_lvl0"))
    assert [h.id for h in resp.hits][0] == "p13" and resp.hits[2].id == "p25"  # p25 is a drill: not matched
    assert resp.rules_applied == ("pins",) and resp.hits[0].stages["pinned"] == 1.0
    assert resp.total == base.total + 1
    # the facets count what total counts: the shown drill too, so a facet's count is what its filter returns
    assert dict(resp.facets["category_lvl0"]) == {**dict(base.facets["category_lvl0"]), "Tools": 1}
    brightway = dict(resp.facets["brand"])["Brightway"]
    assert brightway == dict(base.facets["brand"])["Brightway"] + 1
    assert search(searcher, "lamp", filters=replace_brand("Brightway")).total == brightway
    ids = walk(searcher, "lamp")
    assert len(ids) == len(set(ids)) == resp.total
    lumo = search(searcher, "lamp", filters=replace_brand("Lumo"), facets=("brand",))
    assert lumo.hits[2].id != "p25"  # p25 is Brightway
    # the brand facet ignores its own filter: under Lumo, Brightway still counts the pinned drill
    assert dict(lumo.facets["brand"])["Brightway"] == brightway


def replace_brand(brand):
    from shopsearch.plugin.engine import Filters

    return Filters(brand=(brand,))


def test_bury_moves_a_match_to_the_end_and_hide_removes_it_from_total_and_facets(setup):
    searcher, rules, _ = setup
    base = search(searcher, "lamp", facets=("brand",))
    top = base.hits[0].id
    write(rules, f'[[rule]]\nname = "down"\nqueries = ["lamp"]\nbury = ["{top}"]\n')
    ids = walk(searcher, "lamp")
    assert ids[-1] == top and len(ids) == base.total and ids[0] != top
    write(rules, f'[[rule]]\nname = "gone"\nqueries = ["lamp"]\nhide = ["{top}"]\n')
    resp = search(searcher, "lamp", facets=("brand",))
    assert resp.total == base.total - 1 and top not in walk(searcher, "lamp")
    assert sum(c for _, c in resp.facets["brand"]) == sum(c for _, c in base.facets["brand"]) - 1


def test_boost_and_filter(setup):
    searcher, rules, _ = setup
    write(rules, '[[rule]]\nname = "lumo"\nqueries = ["lamp"]\nmatch = "contains"\n'
                 '[[rule.boost]]\nbrand = ["Lumo"]\nfactor = 100.0\n'
                 '[[rule]]\nname = "cheap"\nqueries = ["cheap lamp"]\n'
                 '[rule.filter]\nbrand = ["Brightway"]\nprice_max = 15.0\n')
    resp = search(searcher, "desk lamp", explain=True)
    assert [h.source["brand"] for h in resp.hits[:7]] == ["Lumo"] * 7 and resp.hits[0].stages["boost"] == 100.0
    cheap = search(searcher, "cheap lamp", size=20, facets=("brand",))
    assert cheap.total == len(cheap.hits) > 0 and cheap.rules_applied == ("lumo", "cheap")
    assert all(h.source["brand"] == "Brightway" and h.source["price"] <= 15 for h in cheap.hits)
    assert [v for v, _ in cheap.facets["brand"]] == ["Brightway"]  # the rule's filter holds in the facets too
    assert search(searcher, "cheap lamp", filters=replace_brand("Torq")).total == 0


def test_redirect_date_window_and_explained_rules(setup):
    searcher, rules, _ = setup
    write(rules, '[[rule]]\nname = "gift"\nqueries = ["gift card"]\nredirect = "/pages/gift-cards"\n'
                 '[[rule]]\nname = "over"\nqueries = ["lamp"]\nactive_until = 2020-01-01\nhide = ["p00"]\n')
    resp = search(searcher, "Gift  Card")
    assert resp.redirect == "/pages/gift-cards" and resp.rules_applied == ("gift",)
    assert search(searcher, "lamp").rules_applied == ()  # the window has closed


def test_a_rule_fires_for_the_spelling_correction_served(setup):
    searcher, rules, _ = setup
    write(rules, '[[rule]]\nname = "lamps"\nqueries = ["desk lamp"]\npin = [{id = "p25", position = 1}]\n')
    resp = search(searcher, "desk lanp", explain=True)
    assert resp.correction == "desk lamp"  # served as "desk lamp": the rule for "desk lamp" fires
    assert resp.rules_applied == ("lamps",) and resp.hits[0].id == "p25" and resp.hits[0].stages["pinned"] == 1.0
    assert search(searcher, "desk lamp").rules_applied == ("lamps",)


def test_the_typed_query_wins_over_the_correction_when_both_fire_rules(setup):
    searcher, rules, _ = setup
    write(rules, '[[rule]]\nname = "lamps"\nqueries = ["desk lamp"]\npin = [{id = "p25", position = 1}]\n'
                 'redirect = "/lamps"\n'
                 '[[rule]]\nname = "typo"\nqueries = ["desk lanp"]\npin = [{id = "p13", position = 1}]\n'
                 'redirect = "/typo"\n')
    resp = search(searcher, "Desk Lanp")
    # both fire; the typed query's rule comes first though later in the file, and takes position 1 and the redirect
    assert resp.correction == "Desk lamp" and resp.rules_applied == ("typo", "lamps")  # the rest as typed
    assert resp.hits[0].id == "p13" and "p25" not in [h.id for h in resp.hits] and resp.redirect == "/typo"
    right = search(searcher, "desk lamp")  # the rule for the misspelling never fires for the right spelling
    assert right.rules_applied == ("lamps",) and right.hits[0].id == "p25" and right.redirect == "/lamps"


def test_a_rare_catalog_word_the_speller_also_serves_keeps_to_its_own_rules(tmp_path):
    """The speller serves "lamb wool" with "lamp wool" too (lamb: 2 products, lamp: 200); the shopper typed a word
    the catalog holds, so a rule for lamps must not filter the lamb wool away or redirect the shopper."""
    engine = EmbeddedEngine(tmp_path / "engine")
    engine.create_index("rare", 4)
    lamps = [Product(id=f"l{i}", title=f"Desk lamp model {i}", category=("Lighting",), price=20.0) for i in range(200)]
    wool = [Product(id=f"w{i}", title=f"Lamb wool {kind}", category=("Home",), price=30.0)
            for i, kind in enumerate(("throw", "slippers"))]
    docs = [IndexDoc(product=p, vector=[1.0, 0.0, 0.0, 0.0], content_hash=p.content_hash()) for p in lamps + wool]
    assert all(item.ok for item in engine.bulk("rare", docs))
    engine.refresh("rare")
    folder = tmp_path / "merchandising"
    folder.mkdir()
    write(folder / "rare.rules.toml", '[[rule]]\nname = "lamps"\nqueries = ["lamp"]\nmatch = "contains"\n'
                                      'filter = { category = ["Lighting"] }\nredirect = "/c/lighting"\n')
    searcher = HybridSearcher(engine, "rare", Fixed(), merchandising=Merchandising(folder, []))
    resp = searcher.search(SearchRequest("lamb wool", profile="bm25", size=5))
    assert resp.rules_applied == () and resp.redirect is None
    assert {"w0", "w1"} <= {h.id for h in resp.hits}
    assert searcher.search(SearchRequest("lamp", profile="bm25", size=5)).rules_applied == ("lamps",)
    engine.close()


class LampEmbedder:
    """Queries with "lamp" sit near the lamps, unless they hold nonsense ("zzzz"); anything else is orthogonal to
    every product (nothing clears the dense profile's threshold)."""

    def encode(self, texts):
        return np.array([[1.0, 0.05, 0.0, 0.0] if "lamp" in t and "zzzz" not in t else [0.0, 0.0, 1.0, 0.0]
                         for t in texts], dtype=np.float32)


@pytest.mark.parametrize("kind", ["embedded", "opensearch"])
def test_a_relaxed_search_fires_the_rules_of_the_typed_and_the_served_query(engines, tmp_path, kind):
    name, found = engines
    write(tmp_path / f"{name}.rules.toml",
          '[[rule]]\nname = "served"\nqueries = ["lamp"]\npin = [{id = "p25", position = 1}]\nredirect = "/lamps"\n'
          '[[rule]]\nname = "typed"\nqueries = ["zzzzqqq lamp"]\nhide = ["p00"]\nredirect = "/odd"\n')
    searcher = HybridSearcher(found[kind], name, LampEmbedder(), merchandising=Merchandising(tmp_path, []))
    resp = searcher.search(SearchRequest("zzzzqqq lamp", profile="dense", size=30))
    assert resp.relaxed and resp.correction == "lamp" and resp.query == "zzzzqqq lamp"
    assert resp.rules_applied == ("typed", "served") and resp.redirect == "/odd"
    ids = [h.id for h in resp.hits]
    assert ids[0] == "p25" and "p00" not in ids and resp.total == len(ids)


def test_a_bad_file_keeps_the_last_good_rules_and_logs_the_line(setup, caplog):
    searcher, rules, _ = setup
    write(rules, '[[rule]]\nname = "gone"\nqueries = ["lamp"]\nhide = ["p00"]\n')
    assert search(searcher, "lamp").rules_applied == ("gone",)
    with caplog.at_level(logging.ERROR):
        write(rules, '[[rule]]\nname = "gone"\nqueries = ["lamp"]\n\n[[rule]]\nname = "x"\nqueries = ["a"]\n'
                     'pin = [{id = "p1", position = 0}]\n')
        assert search(searcher, "lamp").rules_applied == ("gone",)
    assert "line 5" in caplog.text and "position = 0" in caplog.text


def test_a_synonym_added_to_the_file_works_without_a_reindex(setup):
    searcher, _, synonyms = setup
    assert search(searcher, "luminaire").total == 0
    write(synonyms, "# ours\nluminaire, lamp\n")
    resp = search(searcher, "luminaire")
    assert resp.total == 20 and all(h.id < "p20" for h in resp.hits)
    write(synonyms, "torch => drill\n")  # one way: torch finds drills; the old rule is gone
    assert search(searcher, "torch").total == 10 and search(searcher, "luminaire").total == 0
    # a synonym's word no product holds is known, not a misspelling of a catalog word ("lamps" one edit away)
    assert search(searcher, "lampy").correction == "lamp"
    write(synonyms, "lampy => lamp\n")
    resp = search(searcher, "lampy")
    assert resp.correction is None and resp.total == 20


def test_the_engines_score_a_synonym_query_alike(engines):
    name, found = engines
    syn = SynonymMap.from_lines(["luminaire, desk lamp", "cordless => battery"])
    leg = BM25Leg("luminaire cordless model", {"title": 2.0, "description": 1.0}, size=30, synonyms=syn)
    a, b = (eng.search(name, [leg])[0] for eng in found.values())
    assert [h.id for h in a] == [h.id for h in b] and len(a) == 30
    assert [h.score for h in a] == pytest.approx([h.score for h in b], rel=1e-4)


# --- pure parts ---------------------------------------------------------------------------------------------

def test_arrange_and_rearrange():
    assert arrange(list("abcde"), str, {"e": 1, "a": 9}) == list("ebcda")  # past the end: at the end
    assert arrange(list("abcd"), str, {}, {"d": 4.0}) == list("adbc")  # 4/4 = 1 ties a; the incoming order wins
    hits = [ScoredHit("x", 1, 3.0, stages={"buried": 1.0}), ScoredHit("y", 2, 2.0), ScoredHit("z", 3, 1.0,
                                                                                           stages={"pinned": 1.0})]
    assert [(h.id, h.rank) for h in rearrange(hits)] == [("z", 1), ("y", 2), ("x", 3)]
    # a boost mark is applied again only after a stage whose order replaced the boosted one it started from
    boosted = [ScoredHit("a", 1, 2.0), ScoredHit("b", 2, 1.0, stages={"boost": 4.0})]
    assert [h.id for h in rearrange(boosted)] == ["a", "b"]
    assert [h.id for h in rearrange(boosted, boost=True)] == ["b", "a"]


def test_plan_conflicts_and_matching():
    rules = RulesFile.model_validate({"rule": [
        {"name": "a", "queries": ["tv"], "match": "contains", "hide": ["h"], "pin": [{"id": "h", "position": 1}]},
        {"name": "b", "queries": ["led tv"], "pin": [{"id": "p", "position": 2}], "bury": ["p", "q"]}]})
    plan = plan_for(rules, "LED  TV", datetime(2025, 1, 1, tzinfo=timezone.utc))
    assert plan.rules == ("a", "b") and plan.pins == {"p": 2} and plan.bury == ("q",) and plan.hide == ("h",)
    assert plan_for(rules, "tvs").rules == () and plan_for(rules, "").rules == ()
    # punctuation does not count, on either side: "LED-TV!" is "led tv"; a rule for "gift-card" fires for "gift card?"
    assert plan_for(rules, "LED-TV!").rules == ("a", "b") and plan_for(rules, "smart tv, 4k").rules == ("a",)
    gift = RulesFile.model_validate({"rule": [{"name": "g", "queries": ["Gift-Card"], "redirect": "/gift-cards"}]})
    assert plan_for(gift, "gift card?").redirect == "/gift-cards" and plan_for(gift, "giftcard").redirect is None
    # the served spelling correction fires rules too; the typed query's come first and win a position
    tv = RulesFile.model_validate({"rule": [
        {"name": "tv", "queries": ["television"], "pin": [{"id": "p6", "position": 1}], "redirect": "/tv"},
        {"name": "typo", "queries": ["televsion"], "pin": [{"id": "p7", "position": 1}]}]})
    assert plan_for(tv, "televsion").rules == ("typo",) and plan_for(tv, "television", served="television").rules == (
        "tv",)
    both = plan_for(tv, "Televsion", served="television")
    assert both.rules == ("typo", "tv") and both.pins == {"p7": 1} and both.redirect == "/tv"
    assert plan_for(tv, "", served="").rules == () and plan_for(tv, "lamp", served=None).rules == ()
    # a hide of a rule only the served query fires does not undo the typed query's pin
    hidden = RulesFile.model_validate({"rule": [
        {"name": "tv", "queries": ["television"], "hide": ["p7", "p9"]},
        {"name": "typo", "queries": ["televsion"], "pin": [{"id": "p7", "position": 1}]}]})
    kept = plan_for(hidden, "televsion", served="television")
    assert kept.rules == ("typo", "tv") and kept.pins == {"p7": 1} and kept.hide == ("p9",)
    assert plan_for(hidden, "television").hide == ("p7", "p9")
    # nor does a pin of the served query's lift a product the typed query's rule buries
    buried = RulesFile.model_validate({"rule": [
        {"name": "tv", "queries": ["television"], "pin": [{"id": "p7", "position": 1}]},
        {"name": "typo", "queries": ["televsion"], "bury": ["p7"]}]})
    down = plan_for(buried, "televsion", served="television")
    assert down.rules == ("typo", "tv") and down.pins == {} and down.bury == ("p7",)
    assert plan_for(buried, "television").pins == {"p7": 1}
    with pytest.raises(ValueError, match="queries must have a word"):
        RulesFile.model_validate({"rule": [{"name": "p", "queries": ["?!"], "hide": ["x"]}]})
    assert analyze_query("luminaire", SynonymMap.from_lines(["luminaire, lamp"]))[0].kind == "graph"


def test_a_rules_category_named_as_the_catalog_names_it_matches_the_level_indexed():
    """The indexer stores a ">" inside a category level as "›" (the facet reads levels at ">"); a rule written
    with the catalog's own name still matches it."""
    rules = RulesFile.model_validate({"rule": [{"name": "big", "queries": ["tv"],
                                                "filter": {"category": ["Screens  &gt;=  55 in", " TVs "]}}]})
    stored = to_product({"id": "1", "title": "t", "category": ["TVs", "Screens >= 55 in"]}, FieldMapping()).category
    assert set(rules.rule[0].filter.category) == set(stored)
    with pytest.raises(ValueError, match="has no text once cleaned"):
        RulesFile.model_validate({"rule": [{"name": "x", "queries": ["tv"], "filter": {"category": ["<br>"]}}]})


def test_rules_file_errors_name_key_value_and_line(tmp_path):
    bad = tmp_path / "x.rules.toml"
    bad.write_text('[[rule]]\nname = "ok"\nqueries = ["a"]\nhide = ["p"]\n\n[[rule]]\nname = "b"\nqueries = []\n'
                   'colour = "red"\n')
    with pytest.raises(RulesError) as err:
        load_rules(bad)
    assert "rule.1.queries = []" in str(err.value) and "(rule at line 6)" in str(err.value)
    assert "rule.1.colour" in str(err.value)
    bad.write_text('[[rule]]\nname = "b"\nqueries = ["a"]\n')
    with pytest.raises(RulesError, match="must have an action"):
        load_rules(bad)


@pytest.mark.parametrize("url", ["//evil.example/x", "/\\evil.example/x", "/a\\b", "javascript:alert(1)"])
def test_a_redirect_that_a_browser_would_send_to_another_host_is_refused(url):
    """"/\\host" reads as "//host" in browsers: a site path may hold no backslash (an open redirect otherwise)."""
    with pytest.raises(ValueError, match="redirect"):
        RulesFile.model_validate({"rule": [{"name": "x", "queries": ["gift"], "redirect": url}]})
    assert RulesFile.model_validate({"rule": [{"name": "x", "queries": ["gift"], "redirect": "/gift-cards"}]})

def test_rules_check_cli(tmp_path, capsys):
    from shopsearch.api.cli import main

    assert main(["rules", "check", "plugin/config/rules.example.toml"]) == 0
    assert "tv-week: contains tv | television" in capsys.readouterr().out
    bad = tmp_path / "bad.rules.toml"
    bad.write_text("[[rule]\n")
    assert main(["rules", "check", str(bad)]) == 1
    assert "not valid TOML" in capsys.readouterr().err


def test_rules_check_names_the_key_its_value_and_what_is_allowed(tmp_path, capsys):
    """A typo in an array of tables showed ``= None`` and no allowed keys; a missing key showed the whole table."""
    from shopsearch.api.cli import main

    bad = tmp_path / "bad.rules.toml"
    bad.write_text('[[rule]]\nname = "a"\nqueries = ["x"]\nbury_ids = ["p1"]\nfilter = { brnd = ["Acme"] }\n\n'
                   '[[rule]]\nname = "b"\nhide = ["x"]\n\n'
                   '[[rule]]\nname = "c"\nqueries = ["y"]\npin = [{ id = "p1", postion = 1 }]\n')
    assert main(["rules", "check", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "rule.0.bury_ids = ['p1']: must be one of the keys allowed in [rule.0]: name, description, queries" in err
    assert "rule.0.filter.brnd = ['Acme']: must be one of the keys allowed in [rule.0.filter]: brand, category" in err
    assert "rule.1.queries is required" in err and "rule.2.pin.0.position is required" in err
    assert "rule.2.pin.0.postion = 1: must be one of the keys allowed in [rule.2.pin.0]: id, position" in err
