"""The storefront's search features in headless Chromium (as tests/api/test_browser.py, whose fixtures these share):
sorting, highlighted words, two brands picked in one facet, a zero-result page with its "did you mean", and
recommendations on the home view.

Two servers over the tiny catalog: ``shop`` with the packaged profiles (the tiny random bi-encoder puts every
product over the vector threshold, so every query matches all eight products: good for sorting and facets) and
``strict_shop`` whose ``default`` profile is lexical only, so a misspelled query can match nothing. Screenshots land
in test-artifacts/ like the other browser tests'.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any
from urllib.error import HTTPError
from urllib.request import urlopen

import pytest

from shopsearch.plugin.hybrid import HybridSearcher
from shopsearch.plugin.profiles import PACKAGED_DIR, ProfileStore

from .conftest import ALIAS
from .pages_support import make_pages_app, serve
from .test_browser import _card_ids, _events, _facet_counts, _shot, browser, chromium_path, page  # noqa: F401 - shared

# A lexical-only default profile: a query is a match only where BM25 (fuzzy) matches it.
LEXICAL_DEFAULT = """description = "test: BM25 only, so a query can match nothing"
[knn]
enabled = false
"""


def _served(tmp: Path, searcher: Any, engine: Any):
    app = make_pages_app(searcher, engine, tmp)
    return app, serve(app)


@pytest.fixture(scope="module")
def shop(tmp_path_factory, tiny_encoder, catalog_engine):
    """(base URL, app, events dir): the pages over the tiny catalog with the packaged profiles."""
    tmp = tmp_path_factory.mktemp("shop")
    app, server = _served(tmp, HybridSearcher(catalog_engine, ALIAS, tiny_encoder, ProfileStore()), catalog_engine)
    try:
        with server as base:
            yield base, app, tmp / "events"
    finally:
        app.extensions["shopsearch"].ubi_drainer.stop()
        app.extensions["shopsearch"].stop_history()


@pytest.fixture(scope="module")
def strict_shop(tmp_path_factory, tiny_encoder, catalog_engine):
    """The pages over the tiny catalog whose ``default`` profile is BM25 only (a misspelling can match nothing)."""
    tmp = tmp_path_factory.mktemp("strict-shop")
    (tmp / "profiles").mkdir()
    (tmp / "profiles" / "default.toml").write_text(LEXICAL_DEFAULT, encoding="utf-8")
    store = ProfileStore([PACKAGED_DIR, tmp / "profiles"])
    app, server = _served(tmp, HybridSearcher(catalog_engine, ALIAS, tiny_encoder, store), catalog_engine)
    try:
        with server as base:
            yield base
    finally:
        app.extensions["shopsearch"].ubi_drainer.stop()
        app.extensions["shopsearch"].stop_history()


def _settled(page) -> None:
    """Wait until the page's search call has answered and rendered (the page marks <body> busy meanwhile)."""
    from playwright.sync_api import expect

    expect(page.locator("body.busy")).to_have_count(0)


def _cards(page) -> list[dict]:
    return page.locator("#results .card").evaluate_all(
        """cs => cs.map(c => ({id: c.dataset.id, rank: Number(c.dataset.rank),
              price: c.dataset.price === "" ? null : Number(c.dataset.price),
              rating: c.dataset.rating === "" ? null : Number(c.dataset.rating),
              listed: c.dataset.listedAt || null}))""")


def _monotone(cards: list[dict], key: str, descending: bool) -> bool:
    """Values of ``key`` in order (ties by id, ascending), products without one last."""
    present = [c for c in cards if c[key] is not None]
    if any(c[key] is not None for c in cards[len(present):]):
        return False  # a product with the value after one without
    for a, b in zip(present, present[1:]):
        x, y = (b[key], a[key]) if descending else (a[key], b[key])
        if x > y or (x == y and a["id"] > b["id"]):
            return False
    missing = [c["id"] for c in cards[len(present):]]
    return missing == sorted(missing)


def test_storefront_sorts_every_order_monotonically_and_keeps_it_in_the_url(shop, page):
    from playwright.sync_api import expect

    base = shop[0]
    page.goto(base + "/?q=lamp")
    expect(page.locator("#results .card")).to_have_count(8)
    expect(page.locator("#sort")).to_have_value("relevance")
    assert [c["rank"] for c in _cards(page)] == list(range(1, 9))
    relevance_order = _card_ids(page)

    orders = {"price_asc": ("price", False), "price_desc": ("price", True), "rating": ("rating", True)}
    seen = {}
    for sort, (key, descending) in orders.items():
        page.locator("#sort").select_option(sort)
        expect(page).to_have_url(re.compile(rf"[?&]sort={sort}(&|$)"))
        _settled(page)
        cards = _cards(page)
        assert len(cards) == 8 and [c["rank"] for c in cards] == list(range(1, 9)), (sort, cards)
        assert _monotone(cards, key, descending), (sort, cards)
        seen[sort] = [c["id"] for c in cards]
    assert seen["price_asc"] == ["p7", "p5", "p1", "p6", "p3", "p2", "p4", "p8"]  # p8 has no price: last
    assert seen["price_desc"][:3] == ["p4", "p2", "p3"] and seen["price_desc"][-1] == "p8"
    assert seen["rating"][:2] == ["p4", "p1"]
    _shot(page, "storefront-sort.png")

    # The order is part of the URL: a reload keeps it, pages continue it, and back returns to the previous one.
    page.locator("#sort").select_option("price_desc")
    expect(page).to_have_url(re.compile(r"sort=price_desc"))
    page.reload()
    expect(page.locator("#sort")).to_have_value("price_desc")
    expect(page.locator("#results .card")).to_have_count(8)
    assert _card_ids(page) == seen["price_desc"]
    page.goto(base + "/?q=lamp&size=3&sort=price_asc")
    expect(page.locator("#results .card")).to_have_count(3)
    page.locator("#pager button", has_text="Next").click()
    expect(page).to_have_url(re.compile(r"page=2"))
    _settled(page)
    assert "sort=price_asc" in page.url and _card_ids(page) == seen["price_asc"][3:6]
    page.locator("#sort").select_option("relevance")
    expect(page).not_to_have_url(re.compile(r"sort="))
    _settled(page)
    assert "page=" not in page.url and _card_ids(page) == relevance_order[:3]  # a new order starts at page 1


def test_storefront_highlights_the_query_words_as_marks(shop, page):
    from playwright.sync_api import expect

    base = shop[0]
    page.goto(base + "/?q=lamp")
    expect(page.locator("#results .card")).to_have_count(8)
    p1, p7 = page.locator('.card[data-id="p1"]'), page.locator('.card[data-id="p7"]')
    expect(p1.locator(".title")).to_have_text("Red desk lamp")  # the words are intact, only marked
    expect(p1.locator(".title mark")).to_have_text(["lamp"])
    expect(p1.locator(".desc mark")).to_have_text(["lamp"])
    expect(p7.locator(".title mark")).to_have_text(["Lamp"])
    expect(p7.locator(".desc")).to_have_text("Linen lamp shade for table lamps")
    expect(p7.locator(".desc mark")).to_have_text(["lamp", "lamps"])
    # products matched by their vectors alone have nothing to mark
    assert page.locator('.card[data-id="p4"] mark').count() == 0
    marks = page.locator("#results mark").all_text_contents()
    assert marks and all("lamp" in m.lower() for m in marks), marks
    text = page.locator("#results").inner_text()
    assert not re.search(r"</?em>|&lt;|&gt;|&amp;|&#x", text), text  # no raw markup or entities shown
    assert page.locator("#results em").count() == 0

    # Expanding a description keeps its marks.
    p1.locator(".title").click()
    expect(p1.locator(".desc")).to_have_class(re.compile("expanded"))
    expect(p1.locator(".desc mark")).to_have_text(["lamp"])
    _shot(page, "storefront-highlights.png")


def test_storefront_picks_two_brands_in_one_facet(shop, page):
    from playwright.sync_api import expect

    base = shop[0]
    page.goto(base + "/?q=lamp")
    expect(page.locator("#results .card")).to_have_count(8)
    every_brand = _facet_counts(page, "brand")
    assert every_brand == {"Lumo": 2, "Brightway": 2, "Torq": 2, "Greenline": 1}

    brand = page.locator('[data-facet="brand"]')
    brand.locator('.facet-value[data-value="Lumo"]').click()
    expect(page.locator("#results .card")).to_have_count(2)
    brand.locator('.facet-value[data-value="Torq"]').click()  # a second brand in the same facet
    expect(page.locator("#results .card")).to_have_count(4)
    assert sorted(_card_ids(page)) == ["p1", "p2", "p4", "p5"]
    assert {page.locator(f'.card[data-id="{i}"] .brand').inner_text() for i in _card_ids(page)} == {"Lumo", "Torq"}
    # disjunctive counts: the brand facet ignores its own filter, so the other brands stay listed and pickable
    assert _facet_counts(page, "brand") == every_brand
    for value, pressed in (("Lumo", "true"), ("Torq", "true"), ("Brightway", "false"), ("Greenline", "false")):
        expect(brand.locator(f'.facet-value[data-value="{value}"]')).to_have_attribute("aria-pressed", pressed)
    assert re.search(r"brand=Lumo&brand=Torq", page.url)
    expect(page.locator("#active-filters .chip")).to_have_text(["Lumo ×", "Torq ×"])
    _shot(page, "storefront-two-brands.png")

    page.reload()  # both brands come back from the URL
    expect(page.locator("#results .card")).to_have_count(4)
    page.locator("#active-filters .chip", has_text="Lumo").click()
    expect(page.locator("#results .card")).to_have_count(2)
    assert sorted(_card_ids(page)) == ["p4", "p5"]


def test_storefront_zero_results_offer_did_you_mean(strict_shop, page):
    from playwright.sync_api import expect

    page.goto(strict_shop + "/?q=drxxl")  # two letters off "drill": beyond the lexical leg's fuzziness
    empty = page.locator("#results .empty")
    expect(empty.locator("h2")).to_have_text("No products match “drxxl”")
    suggestion = empty.locator(".did-you-mean a")
    expect(suggestion).to_have_text(["drill"])
    expect(empty.locator(".did-you-mean")).to_have_text("Did you mean drill?")
    assert page.locator("#results .card").count() == 0
    _shot(page, "storefront-zero-results.png")

    suggestion.click()  # the suggestion runs its search
    expect(page.locator("#status")).to_contain_text("for “drill”")
    assert _card_ids(page) == ["p4"]
    assert re.search(r"[?&]q=drill(&|$)", page.url)
    expect(page.locator("#q")).to_have_value("drill")

    # Nonsense with nothing close: the empty state without a suggestion.
    page.goto(strict_shop + "/?q=zzzzqqq")
    expect(page.locator("#results .empty h2")).to_have_text("No products match “zzzzqqq”")
    expect(page.locator("#results .empty")).to_contain_text("Check the spelling")
    assert page.locator(".did-you-mean").count() == 0


def test_storefront_labels_relaxed_results(shop, page):
    """Relaxed results (the query matched nothing; its known words did) are labelled. The tiny catalog's lexical
    leg matches any known word, so the page is shown the API's answer for the relaxed query, marked relaxed as
    the searcher marks it (plugin/hybrid.py ``_nothing_found``)."""
    from playwright.sync_api import expect

    base = shop[0]

    def relaxed(route):
        real = route.fetch(url=route.request.url.replace("q=lamp+zzzzqqq", "q=lamp"))
        body = real.json()
        body.update(query="lamp zzzzqqq", correction="lamp", relaxed=True, did_you_mean=["lamp"])
        route.fulfill(response=real, json=body)

    page.route(re.compile(r"/search\?q=lamp\+zzzzqqq&"), relaxed)
    page.goto(base + "/?q=lamp+zzzzqqq")
    status = page.locator("#status")
    expect(status).to_contain_text("No products match “lamp zzzzqqq”")
    expect(status).to_contain_text("of 8 results for “lamp”")
    expect(status.locator(".relaxed-note")).to_have_text(re.compile("related results, not exact matches"))
    expect(page.locator("#results .card")).to_have_count(8)
    _shot(page, "storefront-relaxed.png")
    status.locator(".did-you-mean a", has_text="lamp").click()
    expect(status).to_contain_text("1–8 of 8 results for “lamp”")
    expect(status.locator(".relaxed-note")).to_have_count(0)
    assert re.search(r"[?&]q=lamp(&|$)", page.url)


def _has_recommendations(base: str) -> bool:
    try:
        with urlopen(base + "/recommendations?client_id=probe&context=home", timeout=10) as resp:
            return resp.status == 200
    except HTTPError as exc:
        return exc.code != 404


def test_storefront_shows_recommendations_on_home_and_product_views(shop, page):
    from playwright.sync_api import expect

    base, app, events_dir = shop
    if not _has_recommendations(base):
        pytest.skip("GET /recommendations is not in this build yet (issue #14, recommendations)")
    # Some history first: a search and a click, so "for you" and "recently viewed" have something to go on.
    page.goto(base + "/?q=lamp")
    expect(page.locator("#results .card")).to_have_count(8)
    clicks = _clicks(events_dir)
    page.locator('.card[data-id="p1"] .title').click()
    deadline = time.monotonic() + 10
    while _clicks(events_dir) == clicks and time.monotonic() < deadline:  # the page sends it asynchronously
        time.sleep(0.1)
    assert _clicks(events_dir) == clicks + 1
    app.extensions["shopsearch"].get_pipeline().history.refresh()  # now, not at its next background pass

    page.goto(base + "/")
    lists = page.locator("#recs-home section.recs")
    expect(lists.first).to_be_visible()
    _recommended(lists)
    _shot(page, "storefront-recommendations.png")

    # The product view (a product's side panel) recommends too, never the product itself.
    page.goto(base + "/?q=lamp")
    page.locator('.card[data-id="p1"] .similar-btn').click()
    lists = page.locator("#together-results section.recs")
    expect(lists.first).to_be_visible()
    assert "p1" not in _recommended(lists)
    _shot(page, "storefront-recommendations-product.png")


def _clicks(events_dir: Path) -> int:
    return sum(e["type"] == "click" for e in _events(events_dir, want=0))


def _recommended(lists) -> list[str]:
    """The product ids of the recommendation ``lists`` (each a labelled section with products)."""
    from playwright.sync_api import expect

    sources = lists.evaluate_all("ls => ls.map(l => l.dataset.source)")
    assert sources and set(sources) <= {"for_you", "bought_together", "recently_viewed", "popular"}, sources
    ids = []
    for i in range(lists.count()):
        expect(lists.nth(i).locator("h3")).not_to_be_empty()
        products = lists.nth(i).locator(".mini[data-id]")
        expect(products.first).to_be_visible()
        expect(products.first.locator(".mini-title")).not_to_be_empty()
        ids += products.evaluate_all("ps => ps.map(p => p.dataset.id)")
    assert set(ids) <= {f"p{i}" for i in range(1, 9)}, ids
    return ids


def test_storefront_category_steps_narrow_and_children_sit_under_their_parent(shop, page):
    """Choosing Home, then Lighting under it, narrows to Lighting (paths combine as any-of: the parent must go), and
    the tree draws Lighting and Office right under Home, not after the last root."""
    from playwright.sync_api import expect

    base, _, _ = shop
    page.goto(base + "/?q=lamp")
    _settled(page)
    page.locator('[data-facet="category_path"] [data-value="Home"]').click()
    _settled(page)
    expect(page.locator("#results .card")).to_have_count(5)
    values = page.locator('[data-facet="category_path"] .facet-value').evaluate_all("bs => bs.map(b => b.dataset.value)")
    home = values.index("Home")
    assert set(values[home + 1:home + 3]) == {"Home > Lighting", "Home > Office"}, values
    page.locator('[data-facet="category_path"] [data-value="Home > Lighting"]').click()
    _settled(page)
    expect(page.locator("#results .card")).to_have_count(4)
    assert page.evaluate("new URLSearchParams(location.search).getAll('category_path')") == ["Home > Lighting"]
    assert page.locator("#active-filters .chip").all_inner_texts() == ["Home > Lighting ×"]


def test_storefront_page_past_the_end_and_a_card_opened_twice(shop, page):
    """A shared link to page 9 of a 1-page result says so (not "check the spelling"); opening a card logs one click
    however often it is opened and closed."""
    from playwright.sync_api import expect

    base, _, events_dir = shop
    page.goto(base + "/?q=lamp&page=9")
    _settled(page)
    expect(page.locator("#results .empty h2")).to_contain_text("Page 9 is past the last page")
    page.get_by_role("button", name="Back to the first page").click()
    _settled(page)
    expect(page.locator("#results .card").first).to_be_visible()
    before = _clicks(events_dir)
    title = page.locator("#results .card .title").first
    for _ in range(3):  # open, close, open
        title.click()
    deadline = time.monotonic() + 10
    while _clicks(events_dir) < before + 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    assert _clicks(events_dir) == before + 1


def test_storefront_on_a_phone_shows_results_first_with_the_filters_folded(shop, page):
    from playwright.sync_api import expect

    base, _, _ = shop
    page.set_viewport_size({"width": 375, "height": 740})
    try:
        page.goto(base + "/?q=lamp")
        _settled(page)
        assert page.locator("#q").bounding_box()["width"] > 200  # the search box has its own row
        expect(page.locator("#filters-panel")).not_to_have_attribute("open", "")
        assert page.locator("#results .card").first.bounding_box()["y"] < 740  # a product on the first screen
        page.locator("#filters-panel > summary").click()
        expect(page.locator('[data-facet="brand"]')).to_be_visible()
        _shot(page, "storefront-phone.png")
    finally:
        page.set_viewport_size({"width": 1280, "height": 900})
