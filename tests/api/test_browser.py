"""End to end in headless Chromium (Debian's ``chromium``, driven by Playwright for Python): the storefront and
the relevance console served over HTTP from a thread, on the tiny catalog in the embedded engine.

Screenshots land in test-artifacts/ (git-ignored). Chromium is required: without it these tests FAIL and say how
to install it. Never run ``playwright install`` (it downloads a browser); the system Chromium is used.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import shutil
import time
import uuid
from pathlib import Path
from urllib.request import Request, urlopen

import pytest

from shopsearch.plugin.engine import EngineUnavailable
from shopsearch.plugin.hybrid import HybridSearcher
from shopsearch.plugin.profiles import ProfileStore

from .conftest import ALIAS
from .pages_support import make_pages_app, serve, write_judgments

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM = os.environ.get("SHOPSEARCH_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WAIT_MS = 15_000


class OutageSwitch(HybridSearcher):
    """The real searcher; while ``down`` is set, search raises EngineUnavailable like a dead node."""

    down = False

    def search(self, req, **kwargs):
        if self.down:
            raise EngineUnavailable("connection refused (test outage)")
        return super().search(req, **kwargs)


@pytest.fixture(scope="module")
def chromium_path() -> str:
    path = shutil.which(CHROMIUM) or (CHROMIUM if os.access(CHROMIUM, os.X_OK) else None)
    if path is None:
        pytest.fail(f"Chromium not found at {CHROMIUM}: install Debian's browser with "
                    "`apt-get update && apt-get install -y chromium` (or set $SHOPSEARCH_CHROMIUM); "
                    "do not run `playwright install`")
    return path


@pytest.fixture(scope="module")
def browser(chromium_path, tmp_path_factory):
    """A fresh persistent Chromium context (own user data dir), 1280x900."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("Playwright for Python is missing: pip install playwright==1.65.2 (never `playwright install`)")
    pw = sync_playwright().start()
    context = pw.chromium.launch_persistent_context(
        str(tmp_path_factory.mktemp("chromium-profile")), executable_path=chromium_path, headless=True,
        args=CHROMIUM_ARGS, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(WAIT_MS)
    yield context
    context.close()
    pw.stop()


@pytest.fixture(scope="module")
def live(tmp_path_factory, tiny_encoder, catalog_engine):
    """(base URL, searcher switch, events dir): the app with the pages and configured judgments, served."""
    tmp = tmp_path_factory.mktemp("live")
    qrels, queries = write_judgments(tmp / "judgments")
    switch = OutageSwitch(catalog_engine, ALIAS, tiny_encoder, ProfileStore())
    app = make_pages_app(switch, catalog_engine, tmp, console_qrels=str(qrels), console_queries=str(queries))
    with serve(app) as base:
        yield base, switch, tmp / "events"


@pytest.fixture
def page(browser):
    p = browser.new_page()
    errors: list[str] = []
    p.on("pageerror", lambda exc: errors.append(str(exc)))
    yield p
    p.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def _shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def _events(events_dir: Path, want: int, timeout_s: float = 10.0) -> list[dict]:
    """The logged events once at least ``want`` are there (they are sent asynchronously by the page)."""
    deadline = time.monotonic() + timeout_s
    while True:
        lines = [json.loads(line) for f in sorted(events_dir.glob("*.jsonl")) for line in f.read_text().splitlines()]
        if len(lines) >= want or time.monotonic() > deadline:
            return lines
        time.sleep(0.1)


def _card_ids(page) -> list[str]:
    return page.locator("#results .card").evaluate_all("cards => cards.map(c => c.dataset.id)")


def _facet_counts(page, facet: str) -> dict[str, int]:
    return dict(page.locator(f'[data-facet="{facet}"] .facet-value').evaluate_all(
        "bs => bs.map(b => [b.dataset.value, Number(b.querySelector('.count').textContent)])"))


def test_storefront_search_autocomplete_facets_similar_and_events(live, page):
    from playwright.sync_api import expect

    base, _, events_dir = live
    page.goto(base + "/")
    expect(page.locator(".hero")).to_contain_text("What are you looking for")

    # Autocomplete: typing asks /suggest (debounced); arrows move the selection; Enter searches the suggestion.
    page.locator("#q").press_sequentially("lam", delay=60)
    options = page.locator("#suggestions [role=option]")
    expect(options.first).to_be_visible()
    texts = options.all_inner_texts()
    assert texts and all("lam" in t.lower() for t in texts), texts
    page.keyboard.press("ArrowDown")
    expect(options.first).to_have_attribute("aria-selected", "true")
    expect(page.locator("#q")).to_have_attribute("aria-activedescendant", "suggestion-0")
    page.keyboard.press("Enter")
    expect(page.locator("#q")).to_have_value(texts[0])
    expect(page.locator("#status")).to_contain_text(f"for “{texts[0]}”")
    expect(page.locator("#suggestions")).to_be_hidden()

    # A typed query: result cards with title, brand, price, rating, stock and description; facets with counts.
    page.locator("#q").fill("lamp")
    page.locator("#search-form button[type=submit]").click()
    expect(page.locator("#status")).to_contain_text("for “lamp”")
    assert "q=lamp" in page.url
    assert len(_card_ids(page)) == 8  # the tiny random model puts every product over the vector threshold
    p1 = page.locator('.card[data-id="p1"]')
    expect(p1.locator(".title")).to_have_text("Red desk lamp")
    expect(p1.locator(".brand")).to_have_text("Lumo")
    expect(p1.locator(".price")).to_have_text("$29.99")
    expect(p1.locator(".stock")).to_have_text("In stock")
    expect(p1.locator(".rating")).to_contain_text("4.5")
    expect(page.locator('.card[data-id="p2"] .stock')).to_have_text("Out of stock")
    # counted over the matching products (here all eight)
    every_brand = {"Lumo": 2, "Brightway": 2, "Torq": 2, "Greenline": 1}
    assert _facet_counts(page, "brand") == every_brand
    assert _facet_counts(page, "category_path") == {"Home": 5, "Tools": 2, "Outdoor": 1}
    expect(page.locator('[data-facet^="category_lvl"]')).to_have_count(0)  # the tree selects what it counts
    _shot(page, "storefront.png")

    # Impressions were logged with the search's query_id; a click on a title is logged with the same id.
    p1.locator(".title").click()
    expect(p1.locator(".desc")).to_have_class(re.compile("expanded"))
    events = _events(events_dir, want=8 + 8 + 1)
    clicks = [e for e in events if e["type"] == "click"]
    assert len(clicks) == 1 and clicks[0]["product_id"] == "p1" and clicks[0]["query"] == "lamp"
    lamp_impressions = [e for e in events if e["type"] == "impression" and e["query_id"] == clicks[0]["query_id"]]
    assert sorted(e["product_id"] for e in lamp_impressions) == sorted(_card_ids(page))
    assert {e["position"] for e in lamp_impressions} == set(range(1, 9))
    assert uuid.UUID(clicks[0]["query_id"]) and clicks[0]["position"] == next(
        e["position"] for e in lamp_impressions if e["product_id"] == "p1")

    # A facet value filters: results and counts change, the value shows as pressed and as a removable chip.
    page.locator('[data-facet="brand"] .facet-value[data-value="Lumo"]').click()
    expect(page.locator("#results .card")).to_have_count(2)
    assert sorted(_card_ids(page)) == ["p1", "p2"]
    assert _facet_counts(page, "brand") == every_brand  # disjunctive: a second brand can still be picked
    assert _facet_counts(page, "category_path") == {"Home": 2}
    expect(page.locator('[data-facet="brand"] .facet-value[data-value="Lumo"]')).to_have_attribute(
        "aria-pressed", "true")
    expect(page.locator("#active-filters .chip")).to_have_text(["Lumo ×"])
    assert "brand=Lumo" in page.url
    page.locator("#in-stock").check()
    expect(page.locator("#results .card")).to_have_count(1)
    assert _card_ids(page) == ["p1"]

    # Similar products for a card open in a side panel (the product itself excluded).
    page.locator('.card[data-id="p1"] .similar-btn').click()
    expect(page.locator("#similar-panel")).to_be_visible()
    expect(page.locator("#similar-for")).to_have_text("Like “Red desk lamp”")
    minis = page.locator("#similar-results .mini")
    expect(minis).to_have_count(6)
    similar_ids = minis.evaluate_all("ms => ms.map(m => m.dataset.id)")
    assert "p1" not in similar_ids and len(set(similar_ids)) == 6
    _shot(page, "storefront-similar.png")
    page.locator("#similar-close").click()
    expect(page.locator("#similar-panel")).to_be_hidden()

    # A filter that matches nothing: a kind empty state with a way out.
    page.locator("#price-max").fill("1")
    page.locator("#price-form button").click()
    expect(page.locator(".empty")).to_contain_text("No products match “lamp”")
    page.locator(".empty button", has_text="Clear all filters").click()
    expect(page.locator("#results .card")).to_have_count(8)


def test_storefront_pagination(live, page):
    from playwright.sync_api import expect

    base, _, _ = live
    page.goto(base + "/?q=lamp&size=3")
    expect(page.locator("#status")).to_contain_text("1–3 of 8 results")
    first = _card_ids(page)
    expect(page.locator("#pager button[aria-current=page]")).to_have_text("1")
    expect(page.locator("#pager button", has_text="Prev")).to_be_disabled()
    assert page.locator("#pager button").all_inner_texts() == ["‹ Prev", "1", "2", "3", "Next ›"]
    page.locator("#pager button", has_text="Next").click()
    expect(page.locator("#status")).to_contain_text("4–6 of 8 results")
    assert "page=2" in page.url
    second = _card_ids(page)
    assert len(second) == 3 and not set(first) & set(second)
    assert page.locator("#results .card").evaluate_all("cs => cs.map(c => Number(c.dataset.rank))") == [4, 5, 6]
    page.locator("#pager button", has_text="3").click()
    expect(page.locator("#results .card")).to_have_count(2)
    expect(page.locator("#pager button", has_text="Next")).to_be_disabled()
    page.go_back()  # history keeps each page
    expect(page.locator("#status")).to_contain_text("4–6 of 8 results")


def test_storefront_engine_outage_shows_a_friendly_message(live, page):
    from playwright.sync_api import expect

    base, switch, _ = live
    page.goto(base + "/?q=drill")
    expect(page.locator("#results .card").first).to_be_visible()
    switch.down = True
    try:
        page.locator("#q").fill("hammer")
        page.keyboard.press("Enter")
        alert = page.locator("#results [role=alert]")
        expect(alert).to_contain_text("Search is taking a short break")
        expect(alert).to_contain_text("try again in about 5 seconds")
        assert "connection refused" not in alert.inner_text()  # no internals shown to shoppers
        _shot(page, "storefront-outage.png")
    finally:
        switch.down = False
    alert.locator("button", has_text="Try again").click()
    expect(page.locator("#status")).to_contain_text("for “hammer”")
    expect(page.locator('.card[data-id="p5"]')).to_be_visible()


def _judge(base: str, query: str, rankings: list[list[str]], added: dict[str, int] | None = None) -> dict:
    body = {"query": query, "rankings": rankings, **({"added": added} if added else {})}
    req = Request(base + "/console/api/judge", data=json.dumps(body).encode(),
                  headers={"Content-Type": "application/json"})
    with urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def _column(page, col: str) -> list[dict]:
    return page.locator(f"#{col} .row").evaluate_all(
        """rows => rows.map(r => ({id: r.dataset.id, grade: r.dataset.grade,
              badge: r.querySelector('.grade-badge').textContent,
              color: r.style.getPropertyValue('--grade-color'),
              stages: [...r.querySelectorAll('tr[data-stage]')].map(t => t.dataset.stage)}))""")


def test_console_compares_two_profiles_with_judgments_and_stages(live, page, tmp_path):
    from playwright.sync_api import expect

    base, _, events_dir = live
    (events_dir.parent / "judgments" / "console-grades.csv").unlink(missing_ok=True)  # a rerun starts ungraded
    page.goto(base + "/console")
    expect(page.locator("#judgments-status")).to_have_text("qrels.txt (2 judged queries)")
    expect(page.locator("#profile-a")).to_have_value("bm25")
    expect(page.locator("#profile-b")).to_have_value("default")
    page.locator("#cq").fill("lamp")
    page.locator("#console-form button[type=submit]").click()
    expect(page.locator("#col-b .row")).to_have_count(8)
    expect(page.locator("#delta-value")).to_be_visible()

    left, right = _column(page, "col-a"), _column(page, "col-b")
    grades = {"p1": "3", "p2": "2", "p7": "1", "p3": "0", "p8": "0"}
    assert {r["id"] for r in left} == {"p1", "p2", "p7"}  # BM25 alone: the products with "lamp" in the text
    for row in left + right:
        assert row["grade"] == grades.get(row["id"], ""), row
        assert row["badge"] == grades.get(row["id"], "?")
        assert row["color"] == ("var(--grade-unjudged)" if row["id"] not in grades else
                                "hsl(0 70% 52%)" if grades[row["id"]] == "0" else row["color"])
    assert {r["color"] for r in left} == {"hsl(120 55% 38%)", "hsl(93 65% 42%)", "hsl(67 75% 46%)"}  # 3, 2, 1
    assert all(r["stages"] == ["bm25", "fused"] for r in left)
    assert all(r["stages"][0] in ("bm25", "knn") and "knn" in r["stages"] and r["stages"][-1] == "fused"
               for r in right)

    expected = _judge(base, "lamp", [[r["id"] for r in left], [r["id"] for r in right]])
    s0, s1, d = expected["scores"][0], expected["scores"][1], expected["delta"]
    expect(page.locator("#metric-delta")).to_contain_text(f"bm25 {s0:.3f}")
    expect(page.locator("#metric-delta")).to_contain_text(f"default {s1:.3f}")
    expect(page.locator("#delta-value")).to_have_text(f"{'+' if d >= 0 else ''}{d:.3f}")
    expect(page.locator("#col-a .column-metric")).to_contain_text(f"nDCG@10 {s0:.3f}")
    share = math.floor(100 * expected["judged_at_10"][1] + 0.5)  # Math.round: halves up
    expect(page.locator("#col-b .column-metric")).to_contain_text(f"{share}% of the top 10 judged")
    assert "q=lamp" in page.url and "a=bm25" in page.url

    # A product nobody judged, graded here: stored on the server, it counts at once, survives a reload, and the
    # stored grades download as a CSV judgment list
    unjudged = next(r["id"] for r in right if r["id"] not in grades)
    expect(page.locator("#download-grades")).to_be_hidden()
    page.locator(f'#col-b .row[data-id="{unjudged}"] .grade-pick').select_option("3")
    expect(page.locator(f'#col-b .row[data-id="{unjudged}"] .grade-badge')).to_have_text("3")
    regraded = _judge(base, "lamp", [[r["id"] for r in left], [r["id"] for r in right]])  # nothing sent: stored
    assert regraded["given"] == {unjudged: 3}
    expect(page.locator("#col-b .column-metric")).to_contain_text(f"nDCG@10 {regraded['scores'][1]:.3f}")
    expect(page.locator("#download-grades")).to_have_text("Download 1 grade given in the console (CSV)")
    # an edited, unsent query box does not change which query a grade belongs to
    other = next(r["id"] for r in right if r["id"] not in grades and r["id"] != unjudged)
    page.locator("#cq").fill("kettle")
    page.locator(f'#col-b .row[data-id="{other}"] .grade-pick').select_option("0")
    expect(page.locator("#download-grades")).to_have_text("Download 2 grades given in the console (CSV)")
    expect(page.locator(f'#col-b .row[data-id="{other}"] .grade-badge')).to_have_text("0")
    expect(page.locator("#cq")).to_have_value("kettle")  # what was typed stays, unsent
    with page.expect_download() as download:
        page.locator("#download-grades").click()
    rows = list(csv.reader(Path(download.value.path()).read_text().splitlines()))
    assert rows[0] == ["query", "product_id", "grade", "graded_by", "graded_at"]
    assert [r[:4] for r in rows[1:]] == [["lamp", unjudged, "3", "local"], ["lamp", other, "0", "local"]]
    # a reload keeps them (the pickers show what is stored); "clear" withdraws one
    page.reload()
    expect(page.locator(f'#col-b .row[data-id="{unjudged}"] .grade-pick')).to_have_value("3")
    expect(page.locator("#download-grades")).to_have_text("Download 2 grades given in the console (CSV)")
    page.locator(f'#col-b .row[data-id="{other}"] .grade-pick').select_option("clear")
    expect(page.locator(f'#col-b .row[data-id="{other}"] .grade-badge')).to_have_text("?")
    expect(page.locator("#download-grades")).to_have_text("Download 1 grade given in the console (CSV)")
    _shot(page, "console.png")
    # by keyboard: arrows move through the grades without saving one; Enter saves; the focus stays on the picker
    picker = page.locator(f'#col-b .row[data-id="{other}"] .grade-pick')
    picker.focus()
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    page.wait_for_timeout(300)
    expect(page.locator("#download-grades")).to_have_text("Download 1 grade given in the console (CSV)")
    page.keyboard.press("Enter")
    expect(page.locator(f'#col-b .row[data-id="{other}"] .grade-badge')).to_have_text("1")
    expect(page.locator("#download-grades")).to_have_text("Download 2 grades given in the console (CSV)")
    expect(page.locator(f'#col-b .row[data-id="{other}"] .grade-pick')).to_be_focused()

    # An uploaded judgment list replaces the configured one (parsed in the page; only this query's grades sent).
    (tmp_path / "upload-qrels.txt").write_text("u1 0 p7 3.0\nu1 0 p1 0\n")  # 3.0: as eval reads it
    (tmp_path / "upload-queries.tsv").write_text("u1\tLamp\n")
    page.locator("#qrels-file").set_input_files(str(tmp_path / "upload-qrels.txt"))
    page.locator("#queries-file").set_input_files(str(tmp_path / "upload-queries.tsv"))
    expect(page.locator("#judgments-status")).to_have_text("uploaded upload-qrels.txt (1 queries)")
    expect(page.locator('#col-a .row[data-id="p7"] .grade-badge')).to_have_text("3")
    expect(page.locator('#col-a .row[data-id="p2"] .grade-badge')).to_have_text("?")
    expect(page.locator("#metric-delta")).to_contain_text("qid u1")
    page.locator("#cq").fill("ＬＡＭＰ ")  # full-width: the page matches the list as the server would (NFKC)
    page.locator("#console-form button[type=submit]").click()
    expect(page).to_have_url(re.compile(r"q=%EF%BC%AC"))
    expect(page.locator("#metric-delta")).to_contain_text("qid u1")

    # A side whose search fails is not scored: no drop to 0, no delta, no "only here" beside it.
    down = re.compile(r".*/search\?.*profile=default.*")
    page.route(down, lambda route: route.fulfill(status=503, content_type="application/json", body=json.dumps(
        {"error": {"code": "engine_unavailable", "message": "search engine unavailable", "parameter": None}})))
    page.locator("#console-form button[type=submit]").click()
    expect(page.locator("#metric-delta")).to_have_text("nDCG@10 not compared: the search of default failed.")
    expect(page.locator("#col-b .column-metric")).not_to_contain_text("nDCG@10")
    expect(page.locator("#col-a .move")).to_have_count(0)
    page.unroute(down)


def test_console_steps_through_a_pool_worklist_and_grades_it(live, page, tmp_path):
    from playwright.sync_api import expect

    base, _, events_dir = live
    grades_file = events_dir.parent / "judgments" / "console-grades.csv"
    grades_file.unlink(missing_ok=True)
    page.goto(base + "/console?q=lamp&a=bm25&b=default")
    expect(page.locator("#col-b .row").first).to_be_visible()
    holes = [r["id"] for r in _column(page, "col-b") if r["grade"] == ""]
    assert len(holes) >= 2
    # what `shopsearch judgments pool dense default --depth 20` writes; a title holds a line break and text shaped
    # like another row, so a parser that splits lines would see a third query
    worklist = tmp_path / "holes.csv"
    link = f"{base}/console?q=x&a=dense&b=default"
    with open(worklist, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["Query Text", "Doc ID", "Title", "Rating", "Best Rank", "Shown By", "Console"])
        w.writerows(["lamp", pid, f'A "lamp",\ngarden hose,p{i}', "", i + 1, "default", link]
                    for i, pid in enumerate(holes))
        w.writerow(["lamp", "p404", "deeper than these columns", "", 15, "dense", link])
        w.writerow(["'+garden hose", "p6", "Hose", "", 1, "default", link])  # a text cell: read without its mark
    try:
        page.locator("#worklist-file").set_input_files(str(worklist))
        expect(page.locator("#worklist-bar")).to_be_visible()
        expect(page.locator("#profile-a")).to_have_value("dense")  # the pair the worklist was pooled from
        n = len(holes) + 1
        expect(page.locator("#worklist-status")).to_have_text(
            f"holes.csv: query 1 of 2 · {n} to grade, {len(holes)} left, 1 not in these columns")
        expect(page.locator("#col-b .tag.to-grade")).to_have_count(len(holes))
        expect(page.locator("#worklist-prev")).to_be_disabled()
        # a grade given here is stored and counts against the worklist
        page.locator(f'#col-b .row[data-id="{holes[0]}"] .grade-pick').select_option("2")
        expect(page.locator(f'#col-b .row[data-id="{holes[0]}"] .tag.graded')).to_be_visible()
        expect(page.locator("#worklist-status")).to_contain_text(f"{len(holes) - 1} left")
        _shot(page, "console-worklist.png")
        page.locator("#worklist-next").click()
        expect(page.locator("#cq")).to_have_value("+garden hose")
        expect(page.locator("#worklist-status")).to_have_text("holes.csv: query 2 of 2 · 1 to grade, 1 left")
        expect(page.locator("#col-b .tag.to-grade")).to_have_count(1)
        expect(page.locator("#worklist-next")).to_be_disabled()
        page.locator("#worklist-prev").click()
        expect(page.locator("#cq")).to_have_value("lamp")
        expect(page.locator("#worklist-status")).to_contain_text(f"{len(holes) - 1} left")
        page.locator("#worklist-close").click()
        expect(page.locator("#worklist-bar")).to_be_hidden()
        expect(page.locator("#col-b .tag.to-grade")).to_have_count(0)
        # a file that is not a worklist says so, and leaves no tags behind
        page.locator("#worklist-file").set_input_files(str(worklist))
        expect(page.locator("#col-b .tag.to-grade")).not_to_have_count(0)
        (tmp_path / "other.csv").write_text("query,product_id,grade\nlamp,p1,3\n")
        page.locator("#worklist-file").set_input_files(str(tmp_path / "other.csv"))
        expect(page.locator("#console-status")).to_contain_text("other.csv: expected the columns of a worklist")
        (tmp_path / "torn.csv").write_text('Query Text,Doc ID\nlamp,"p1\n')
        page.locator("#worklist-file").set_input_files(str(tmp_path / "torn.csv"))
        expect(page.locator("#console-status")).to_contain_text("torn.csv: a quoted field is never closed")
        expect(page.locator("#worklist-bar")).to_be_hidden()
        expect(page.locator("#col-b .tag.to-grade")).to_have_count(0)
    finally:
        grades_file.unlink(missing_ok=True)
