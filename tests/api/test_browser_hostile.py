"""Hostile catalog text (markup, script, an RTL override) rendered in headless Chromium: shown as text, never run.

A merchant's feed is not trusted: a title holding ``<script>`` or ``<img onerror>`` must reach the shopper as those
characters, and a U+202E (right-to-left override) in a title or brand must stay inside its own element (``<bdi>``
or ``unicode-bidi: isolate``) rather than reverse the text after it. Both pages build the DOM with text nodes
(api/static/common.js ``h``); :func:`test_pages_never_parse_data_as_html` keeps it that way.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from shopsearch.indexer.records import Product

from .conftest import build_catalog
from .pages_support import make_pages_app, serve
from .test_browser import browser, chromium_path, page  # noqa: F401 - the shared Chromium fixtures

STATIC = Path(__file__).resolve().parents[2] / "api" / "static"
RLO = "\u202e"
HOSTILE = [
    Product(id="h1", title='<script>window.__pwned = 1</script>Lamp of doom',
            description='<img src=x onerror="window.__pwned = 2"> a lamp', brand="<b>Evil</b>",
            category=("Home", "Lighting"), price=10.0, rating=4.0, in_stock=True),
    Product(id="h2", title=f"Lamp {RLO}gnp.exe", description=f"{RLO}reversed lamp", brand=f"{RLO}Torq",
            category=("Home", "Lighting"), price=20.0, rating=3.0, in_stock=True),
    Product(id="h3", title="Plain lamp", description="An ordinary lamp", brand="Lumo", category=("Home", "Lighting"),
            price=30.0, rating=5.0, in_stock=True),
]


@pytest.fixture(scope="module")
def hostile_live(tmp_path_factory, tiny_encoder):
    """The pages over a hostile catalog in a fresh embedded engine, served from a thread."""
    from shopsearch.plugin.engines import open_engine
    from shopsearch.plugin.hybrid import HybridSearcher
    from shopsearch.plugin.profiles import ProfileStore

    tmp = tmp_path_factory.mktemp("hostile")
    engine = open_engine("embedded", root=tmp / "embedded")
    build_catalog(engine, tiny_encoder, products=HOSTILE)
    searcher = HybridSearcher(engine, "catalog", tiny_encoder, ProfileStore())
    app = make_pages_app(searcher, engine, tmp)
    try:
        with serve(app) as base:
            yield base
    finally:
        app.extensions["shopsearch"].ubi_drainer.stop()
        engine.close()


def test_pages_never_parse_data_as_html():
    sinks = re.compile(r"\.innerHTML|\.outerHTML|insertAdjacentHTML|document\.write|DOMParser|createContextualFragment")
    for js in STATIC.glob("*.js"):
        assert not sinks.search(js.read_text()), f"{js.name} parses HTML; build elements with Shop.h (text nodes)"


def test_storefront_and_console_show_hostile_catalog_text_as_text(hostile_live, page):  # noqa: F811
    from playwright.sync_api import expect

    page.goto(hostile_live + "/?q=lamp")
    cards = page.locator("#results .card")
    expect(cards).to_have_count(3)
    titles = cards.locator(".title").all_text_contents()
    assert "<script>window.__pwned = 1</script>Lamp of doom" in titles and f"Lamp {RLO}gnp.exe" in titles
    assert "<b>Evil</b>" in cards.locator(".brand").all_text_contents()
    # the highlighter's escaped markup is decoded into text: the query word is marked, the feed's markup stays text
    expect(cards.filter(has_text="Lamp of doom").locator(".title mark")).to_have_text(["Lamp"])
    expect(cards.filter(has_text="gnp.exe").locator(".title mark")).to_have_text(["Lamp"])
    assert page.locator("#results script, #results img, #results b").count() == 0
    assert page.evaluate("window.__pwned") is None
    # the override is isolated: it cannot run past the title's own box
    bidi = page.evaluate("""() => [...document.querySelectorAll('#results .card .title')]
        .map(e => getComputedStyle(e).unicodeBidi)""")
    assert set(bidi) == {"isolate"}

    page.locator(".card", has_text="gnp.exe").locator(".similar-btn").click()
    expect(page.locator("#similar-for bdi")).to_have_text(f"Lamp {RLO}gnp.exe")
    expect(page.locator("#similar-results .mini").first).to_be_visible()
    assert page.locator("#similar-results script, #similar-results img").count() == 0

    page.goto(hostile_live + "/console")
    page.locator("#cq").fill("lamp")
    page.locator("#console-form button[type=submit]").click()
    expect(page.locator("#col-b .row")).to_have_count(3)
    rows = page.locator("#col-b .row-title bdi").all_text_contents()
    assert "<script>window.__pwned = 1</script>Lamp of doom" in rows and f"Lamp {RLO}gnp.exe" in rows
    assert page.locator("#col-a script, #col-b script, #col-a img, #col-b img").count() == 0
    assert page.evaluate("window.__pwned") is None
