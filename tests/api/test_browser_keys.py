"""In headless Chromium with API keys configured: the storefront searches with the search key the server renders
into the page; the console asks for an admin key once and then works (docs/security.md)."""

from __future__ import annotations

import pytest

from shopsearch.api.keys import KeyStore

from .pages_support import make_pages_app, serve
from .test_browser import browser, chromium_path, page  # noqa: F401 - the browser fixtures, shared


@pytest.fixture(scope="module")
def keyed(tmp_path_factory, searcher, catalog_engine):
    """(base URL, admin key): the pages app with a search and an admin key; the search key is the storefront's."""
    tmp = tmp_path_factory.mktemp("keyed")
    store = KeyStore(tmp / "keys.json")
    search, admin = store.create("search").secret, store.create("admin").secret
    app = make_pages_app(searcher, catalog_engine, tmp, storefront_key=search)
    with serve(app) as base:
        yield base, admin


def test_storefront_sends_its_embedded_search_key(keyed, page):  # noqa: F811 - the imported fixture
    from playwright.sync_api import expect

    base, _ = keyed
    page.goto(base + "/?q=drill")
    expect(page.locator('.card[data-id="p4"]')).to_be_visible()


def test_console_asks_for_an_admin_key_once(keyed, page):  # noqa: F811 - the imported fixture
    from playwright.sync_api import expect

    base, admin = keyed
    prompts: list[str] = []

    def answer(dialog) -> None:
        prompts.append(dialog.message)
        dialog.accept(admin)

    page.on("dialog", answer)
    page.goto(base + "/console")
    expect(page.locator("#profile-a option").first).to_be_attached()
    assert len(prompts) == 1 and "admin API key" in prompts[0]
