"""The storefront's category-path, price, rating and attribute facets in headless Chromium (fixtures shared with
tests/api/test_browser.py): a tree of category paths, price buckets and rating thresholds that set the range
filters, and an attribute facet (``color``, declared facetable) where two values can be picked; catalog text is
shown as text. Its own embedded index: the tiny catalog with colours, one of them markup.
"""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from shopsearch.indexer.sink import FACET_ATTRIBUTES_META, IndexDoc
from shopsearch.plugin.hybrid import HybridSearcher
from shopsearch.plugin.profiles import ProfileStore

from .conftest import ALIAS, CATALOG
from .pages_support import make_pages_app, serve
from .test_browser import _card_ids, _facet_counts, _shot, browser, chromium_path, page  # noqa: F401 - shared

COLORS = {"p1": "red", "p2": "blue, navy", "p3": "white", "p4": "red", "p5": "black", "p6": "green", "p7": "white",
          "p8": "<b>teal</b>"}


@pytest.fixture(scope="module")
def colour_shop(tmp_path_factory, tiny_encoder):
    """The pages over the tiny catalog with a ``color`` attribute facet (every query matches all eight products:
    the tiny random bi-encoder puts them all over the vector threshold)."""
    from shopsearch.plugin.engines import open_engine

    tmp = tmp_path_factory.mktemp("colour-shop")
    engine = open_engine("embedded", root=tmp / "engine")
    products = [replace(p, attributes={"color": COLORS[p.id]}) for p in CATALOG]
    vectors = tiny_encoder.encode([p.embed_text() for p in products])
    engine.create_index("colours-v1", dims=int(vectors.shape[1]))
    docs = [IndexDoc(p, [float(x) for x in v], p.content_hash(), ("color",)) for p, v in zip(products, vectors)]
    assert all(item.ok for item in engine.bulk("colours-v1", docs))
    engine.set_index_meta("colours-v1", {FACET_ATTRIBUTES_META: "color"})
    engine.refresh("colours-v1")
    engine.swap_alias(ALIAS, "colours-v1")
    app = make_pages_app(HybridSearcher(engine, ALIAS, tiny_encoder, ProfileStore()), engine, tmp)
    try:
        with serve(app) as base:
            yield base
    finally:
        app.extensions["shopsearch"].ubi_drainer.stop()
        app.extensions["shopsearch"].stop_history()
        engine.close()


def test_storefront_category_paths_price_rating_and_attribute_facets(colour_shop, page):
    from playwright.sync_api import expect

    page.goto(colour_shop + "/?q=lamp")
    expect(page.locator("#results .card")).to_have_count(8)
    assert _facet_counts(page, "category_path") == {"Home": 5, "Tools": 2, "Outdoor": 1}
    assert _facet_counts(page, "price") == {"0-25": 2, "25-50": 2, "50-100": 2, "100-250": 1}
    assert _facet_counts(page, "rating")["4+"] == 5
    colours = _facet_counts(page, "attr.color")
    assert colours == {"red": 2, "white": 2, "blue, navy": 1, "black": 1, "green": 1, "<b>teal</b>": 1}
    # catalog text is text: the markup value is shown as written, never parsed
    teal = page.locator('[data-facet="attr.color"] .facet-value', has_text="teal")
    expect(teal.locator(".facet-name")).to_have_text("<b>teal</b>")
    expect(teal.locator("b")).to_have_count(0)

    # the category tree: pick Home, its children appear under it, the other roots stay (disjunctive)
    page.locator('[data-facet="category_path"] .facet-value[data-value="Home"]').click()
    expect(page.locator("#results .card")).to_have_count(5)
    assert _facet_counts(page, "category_path") == {"Home": 5, "Tools": 2, "Outdoor": 1, "Home > Lighting": 4,
                                                    "Home > Office": 1}
    expect(page.locator('[data-facet="category_path"] .facet-value[data-value="Home > Lighting"] .facet-name')
           ).to_have_text("Lighting")

    # two colours of one attribute: both kept, the colour facet still lists every colour of Home
    colour = page.locator('[data-facet="attr.color"]')
    colour.locator('.facet-value[data-value="red"]').click()
    expect(page.locator("#results .card")).to_have_count(1)
    colour.locator('.facet-value[data-value="white"]').click()
    expect(page.locator("#results .card")).to_have_count(3)
    assert sorted(_card_ids(page)) == ["p1", "p3", "p7"]
    assert _facet_counts(page, "attr.color") == {"red": 1, "white": 2, "blue, navy": 1, "<b>teal</b>": 1}
    assert re.search(r"attr=color%3Ared&attr=color%3Awhite", page.url)

    # a price bucket sets the range filter; its facet ignores it
    page.locator('[data-facet="price"] .facet-value[data-value="25-50"]').click()
    expect(page.locator("#results .card")).to_have_count(1)
    assert _card_ids(page) == ["p1"]
    assert "price_min=25" in page.url and "price_max=50" in page.url
    assert _facet_counts(page, "price") == {"0-25": 1, "25-50": 1, "50-100": 1}
    expect(page.locator("#price-min")).to_have_value("25")

    # a rating threshold
    page.locator('[data-facet="rating"] .facet-value[data-value="4+"]').click()
    expect(page.locator('[data-facet="rating"] .facet-value[data-value="4+"]')).to_have_attribute("aria-pressed",
                                                                                               "true")
    assert "rating_min=4" in page.url
    expect(page.locator("#active-filters .chip")).to_have_text(
        ["Home ×", "color: red ×", "color: white ×", "4★ & up ×", re.compile(r"25.*50")])
    _shot(page, "storefront-facets.png")

    page.reload()  # every filter comes back from the URL
    expect(page.locator("#results .card")).to_have_count(1)


def test_a_facet_value_holding_a_comma_selects_itself_and_comes_back_from_the_url(colour_shop, page):
    from playwright.sync_api import expect

    page.goto(colour_shop + "/?q=lamp")
    expect(page.locator("#results .card")).to_have_count(8)
    page.locator('[data-facet="attr.color"] .facet-value[data-value="blue, navy"]').click()
    expect(page.locator("#results .card")).to_have_count(1)
    assert _card_ids(page) == ["p2"] and "attr=color%3Ablue%5C%2C+navy" in page.url
    expect(page.locator("#active-filters .chip")).to_have_text(["color: blue, navy ×"])
    page.reload()
    expect(page.locator("#results .card")).to_have_count(1)
    expect(page.locator("#active-filters .chip")).to_have_text(["color: blue, navy ×"])
