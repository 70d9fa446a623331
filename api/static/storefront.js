/* Storefront: search with autocomplete, facets and filters, result cards, pagination, similar products, events. */
"use strict";

(() => {
  const { h, getJson, postJson, friendly, debounce, formatPrice, qs, listValue, splitList, ApiProblem } = Shop;
  const $ = (id) => document.getElementById(id);
  const PAGE_SIZE = 12;
  const MAX_DEPTH = parseInt(document.body.dataset.maxDepth, 10) || 1000;  // the API's max_depth: pages past it are 422
  // Categories show as the category_path tree, whose values select exactly what they count (a level facet's
  // value, as the category filter, would also keep that name at other levels).
  const FACETS = "brand,category_path,price,rating,attr.*";  // the ones shown: the engine counts no others

  // The orders /search offers over the whole matching set (plugin/engine.py SORTS); the first is the default.
  const SORTS = ["relevance", "price_asc", "price_desc", "rating"];

  const state = { q: "", page: 1, size: PAGE_SIZE, brand: [], category: [], price_min: "", price_max: "", in_stock: false,
                  sort: SORTS[0], category_path: [], attr: [], rating_min: "" };
  let searchAbort = null;

  const sessionId = (() => {
    let id = sessionStorage.getItem("shopsearch.session");
    if (!id) {
      id = (crypto.randomUUID ? crypto.randomUUID() : String(Date.now()) + Math.random().toString(16).slice(2));
      sessionStorage.setItem("shopsearch.session", id);
    }
    return id;
  })();

  // --- URL <-> state -----------------------------------------------------------------------------------------
  function readUrl() {
    const p = new URLSearchParams(location.search);
    state.q = p.get("q") || "";
    state.page = Math.max(1, parseInt(p.get("page") || "1", 10) || 1);
    state.size = Math.min(100, Math.max(1, parseInt(p.get("size") || "", 10) || PAGE_SIZE));
    state.brand = p.getAll("brand").flatMap(splitList);  // the URL's lists read as the API reads them
    state.category = p.getAll("category").flatMap(splitList);
    state.price_min = p.get("price_min") || "";
    state.price_max = p.get("price_max") || "";
    state.in_stock = p.get("in_stock") === "true";
    state.category_path = p.getAll("category_path").flatMap(splitList);
    state.attr = p.getAll("attr").flatMap(splitList);  // name:value
    state.rating_min = p.get("rating_min") || "";
    state.sort = SORTS.includes(p.get("sort")) ? p.get("sort") : SORTS[0];
    $("q").value = state.q;
    $("sort").value = state.sort;
    $("price-min").value = state.price_min;
    $("price-max").value = state.price_max;
    $("in-stock").checked = state.in_stock;
  }

  function filterParams() {
    return { brand: state.brand.map(listValue), category: state.category.map(listValue), price_min: state.price_min,
             price_max: state.price_max, in_stock: state.in_stock ? "true" : "",
             category_path: state.category_path.map(listValue), attr: state.attr.map(listValue),
             rating_min: state.rating_min };
  }

  function writeUrl(push) {
    const query = qs({ q: state.q, page: state.page > 1 ? state.page : "", size: state.size !== PAGE_SIZE ? state.size : "",
                       ...filterParams(), sort: state.sort !== SORTS[0] ? state.sort : "" });
    const url = location.pathname + (query ? "?" + query : "");
    if (url !== location.pathname + location.search) history[push ? "pushState" : "replaceState"](null, "", url);
  }

  // --- search ------------------------------------------------------------------------------------------------
  function searchFor(text) {
    state.q = text;
    state.page = 1;
    $("q").value = text;
    runSearch();
  }

  async function runSearch(push = true) {
    writeUrl(push);
    renderChips();
    if (!state.q.trim()) { renderLanding(); return; }
    if (searchAbort) searchAbort.abort();
    searchAbort = new AbortController();
    // highlight: the API marks the query's words in titles and descriptions (rendered by ``marked``);
    // session_id: the id this page's events carry, so the API can enrol the shopper in an experiment and the
    // experiment report can join the search to its clicks
    const params = { q: state.q, page: state.page, size: state.size, ...filterParams(), sort: state.sort,
                     facets: FACETS, highlight: "true", session_id: sessionId };
    setStatus("Searching…", "loading");
    document.body.classList.add("busy");
    try {
      const body = await getJson("/search?" + qs(params), searchAbort.signal);
      // A merchandising rule sends this query to a page of its own (only http(s) URLs or site paths).
      // replace: the entry this search pushed would search and redirect again, a Back button that never leaves
      if (body.redirect && /^(https?:\/\/|\/(?![\/\\]))/.test(body.redirect)) { location.replace(body.redirect); return; }
      const focused = focusKey();
      renderResults(body);
      renderFacets(body.facets || {});
      renderPager(body);
      restoreFocus(focused);
      sendImpressions(body);
    } catch (err) {
      if (err.name === "AbortError") return;
      renderError(err);
    } finally {
      document.body.classList.remove("busy");
    }
  }

  /** What has the keyboard focus among the controls a search re-renders (a facet value, a pager button). */
  function focusKey() {
    const el = document.activeElement;
    if (!el || !el.closest) return null;
    const facet = el.closest("[data-facet]");
    if (facet && el.dataset.value !== undefined) {
      return `[data-facet="${CSS.escape(facet.dataset.facet)}"] [data-value="${CSS.escape(el.dataset.value)}"]`;
    }
    if (el.closest("#pager")) return el.dataset.page ? `#pager [data-page="${el.dataset.page}"]` : "#pager button";
    return null;
  }

  /** Give the focus back to the re-rendered control ``key`` names, so a keyboard shopper keeps their place. */
  function restoreFocus(key) {
    let el = key && document.querySelector(key);
    if (el && el.disabled && el.closest("#pager")) el = document.querySelector('#pager [aria-current="page"]');
    if (el && !el.disabled) el.focus({ preventScroll: true });  // paging scrolls to the top: focus must not undo it
  }

  function setStatus(text, kind) {
    const el = $("status");
    el.className = "status" + (kind ? " " + kind : "");
    el.replaceChildren(text ? h("span", {}, text) : "");
  }

  function renderLanding() {
    setStatus("", "");
    $("facets").replaceChildren();
    $("pager").replaceChildren();
    const recs = h("div", { id: "recs-home", class: "recs-block" });
    $("results").replaceChildren(h("div", { class: "empty hero" },
      h("h2", {}, "What are you looking for today?"),
      h("p", {}, "Search by product, brand or category — suggestions appear as you type.")), recs);
    showRecommendations("home", null, recs);
  }

  function renderError(err) {
    const f = friendly(err);
    $("facets").replaceChildren();
    $("pager").replaceChildren();
    setStatus("", "");
    if (err instanceof ApiProblem && err.status >= 500) console.warn("search failed:", err.status, err.code, err.message);
    $("results").replaceChildren(h("div", { class: "empty error", role: "alert" },
      h("h2", {}, f.title), h("p", {}, f.detail),
      f.retry ? h("button", { type: "button", class: "primary", onclick: () => runSearch(false) }, "Try again") : null));
  }

  function renderResults(body) {
    const hits = body.hits || [];
    const first = (body.page - 1) * body.size + 1;
    if (!hits.length && body.total > 0) {
      // a bookmarked or shared page number past the last page: the query matches, the page is empty
      setStatus("", "");
      $("results").replaceChildren(h("div", { class: "empty" },
        h("h2", {}, `Page ${body.page} is past the last page of results for “`, h("bdi", {}, body.query), "”"),
        h("button", { type: "button", class: "primary", onclick: () => { state.page = 1; runSearch(); } },
          "Back to the first page")));
      return;
    }
    if (!hits.length) {
      setStatus("", "");
      const filtered = state.brand.length || state.category.length || state.price_min || state.price_max || state.in_stock
        || state.category_path.length || state.attr.length || state.rating_min;
      $("results").replaceChildren(h("div", { class: "empty" },
        h("h2", {}, "No products match “", h("bdi", {}, body.query), "”"),
        didYouMean(body.did_you_mean, body.correction),
        h("p", {}, filtered ? "Try removing a filter or two." : "Check the spelling or try a more general word."),
        filtered ? h("button", { type: "button", onclick: clearFilters }, "Clear all filters") : null));
      return;
    }
    // The speller's correction (or, relaxed, the words the catalog knows) is what the hits are for: say so.
    // Built of nodes, the query texts in <bdi>: a bidi override (U+202E) in a query must not reorder the sentence.
    const shown = body.correction || body.query;
    const status = $("status");
    status.className = "status";
    status.replaceChildren(h("span", {},
      body.relaxed ? ["No products match “", h("bdi", {}, body.query), "”. "] : null,
      `${first}–${first + hits.length - 1} of ${body.total} results for “`, h("bdi", {}, shown), "”",
      body.correction && !body.relaxed ? [" (you searched for “", h("bdi", {}, body.query), "”)"] : null,
      body.degraded ? " (simplified results while part of search is unavailable)" : null));
    if (body.relaxed) {
      // results for fewer words than were typed: labelled, so nobody takes them for matches of the whole query
      $("status").classList.add("relaxed");
      $("status").append(h("span", { class: "relaxed-note" }, " — related results, not exact matches"),
                         didYouMean(body.did_you_mean, null) || "");  // relaxed: the exact search is the offer
    }
    $("results").replaceChildren(...hits.map((hit) => card(hit, body)));
  }

  /** "Did you mean a, b?" with each suggestion a link that runs that search with the filters kept (its href too,
   *  for a middle click); null when there is none. The correction already searched is no suggestion. */
  function didYouMean(ideas, applied) {
    ideas = (ideas || []).filter((text) => text !== applied);
    if (!ideas.length) return null;
    const links = ideas.flatMap((text, i) => [i ? ", " : "",
      h("a", { href: "?" + qs({ q: text, size: state.size !== PAGE_SIZE ? state.size : "", ...filterParams(),
                                sort: state.sort !== SORTS[0] ? state.sort : "" }),
               class: "suggestion", onclick: (e) => { e.preventDefault(); searchFor(text); } },
        h("bdi", {}, text))]);
    return h("p", { class: "did-you-mean" }, "Did you mean ", ...links, "?");
  }

  function stars(rating) {
    if (typeof rating !== "number") return null;
    const full = Math.round(rating * 2) / 2;
    const text = "★".repeat(Math.floor(full)) + (full % 1 ? "½" : "");
    return h("span", { class: "stars", "aria-label": `Rated ${rating} out of 5` }, text);
  }

  /** Where ``text`` is cut to show about ``n`` characters: at the last space before n (past 40), else at n. */
  function cutAt(text, n) {
    if (text.length <= n) return text.length;
    const space = text.lastIndexOf(" ", n);
    return space > 40 ? space : n;
  }

  function shorten(text, n) {
    if (!text) return "";
    const cut = cutAt(text, n);
    return cut >= text.length ? text : text.slice(0, cut) + "…";
  }

  // The highlighter's markup (plugin/highlight.py, OpenSearch's html encoder): the field HTML-escaped with
  // <em>…</em> around matched words. It is never parsed as HTML: split on the two markers, decode the encoder's
  // entities, and build text nodes and <mark> elements.
  const ENTITIES = { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'" };
  const decodeEntities = (s) => s.replace(/&(#x[0-9a-f]+|#[0-9]+|[a-z]+);/gi, (whole, e) => {
    if (e[0] !== "#") return ENTITIES[e.toLowerCase()] ?? whole;
    const code = e[1] === "x" || e[1] === "X" ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10);
    return code > 0 && code <= 0x10ffff ? String.fromCodePoint(code) : whole;
  });

  /** ``markup`` as [{text, mark}] segments, or null when it is absent or its text is not ``plain`` (then the
   *  plain text is shown: a highlight never changes what the product says). */
  function highlightSegments(markup, plain) {
    if (typeof markup !== "string" || !markup) return null;
    const segments = [];
    let inMark = false;
    for (const part of markup.split(/(<em>|<\/em>)/)) {
      if (part === "<em>") inMark = true;
      else if (part === "</em>") inMark = false;
      else if (part) segments.push({ text: decodeEntities(part), mark: inMark });
    }
    return segments.map((s) => s.text).join("") === (plain || "") ? segments : null;
  }

  /** Nodes showing ``plain`` (cut to about ``limit`` characters, with "…") with the highlighted words of
   *  ``markup`` in <mark> elements. */
  function marked(markup, plain, limit = Infinity) {
    const text = plain || "";
    const cut = limit === Infinity ? text.length : cutAt(text, limit);
    const segments = highlightSegments(markup, text) || [{ text, mark: false }];
    const nodes = [];
    let at = 0;
    for (const seg of segments) {
      if (at >= cut) break;
      const piece = seg.text.slice(0, cut - at);
      at += seg.text.length;
      nodes.push(seg.mark ? h("mark", {}, piece) : piece);
    }
    if (cut < text.length) nodes.push("…");
    return nodes;
  }

  function card(hit, body) {
    const initial = (hit.brand || hit.title || "?").trim().charAt(0).toUpperCase();
    // a stable, well-spread hue per product (golden-angle steps), so neighbouring ids don't share a colour
    const hash = [...String(hit.id)].reduce((a, c) => (a * 31 + c.charCodeAt(0)) >>> 0, 7);
    const hue = Math.round((hash * 137.508) % 360);
    const stock = hit.in_stock === true ? h("span", { class: "stock in" }, "In stock")
      : hit.in_stock === false ? h("span", { class: "stock out" }, "Out of stock") : null;
    const lit = hit.highlights || {};
    const title = h("a", { href: "#", class: "title", onclick: (e) => {
      e.preventDefault();
      if (toggleDetails(e.currentTarget)) sendClick(hit, body);  // opening the card is the click; closing it is not
    } },
      marked(lit.title, hit.title));
    // price, rating and listed_at ride along on the card for its sort order to be checked (tests, analytics)
    const sortKeys = { price: hit.price ?? "", rating: hit.rating ?? "", listedAt: hit.listed_at ?? "" };
    return h("article", { class: "card", dataset: { id: hit.id, rank: hit.rank, ...sortKeys } },
      h("div", { class: "thumb", style: { background: `hsl(${hue} 45% 92%)`, color: `hsl(${hue} 45% 30%)` },
                 "aria-hidden": "true" }, initial),
      h("div", { class: "body" },
        h("h3", {}, title),
        hit.brand ? h("div", { class: "brand" }, hit.brand) : null,
        h("div", { class: "price-line" }, h("span", { class: typeof hit.price === "number" ? "price" : "price none" }, formatPrice(hit.price)), stock),
        typeof hit.rating === "number" ? h("div", { class: "rating" }, stars(hit.rating), ` ${hit.rating.toFixed(1)}`,
          typeof hit.review_count === "number" ? h("span", { class: "muted" }, ` (${hit.review_count})`) : null) : null,
        h("p", { class: "desc", dataset: { full: hit.description || "", marked: lit.description || "" } },
          marked(lit.description, hit.description, 110)),
        h("button", { type: "button", class: "link similar-btn", onclick: (e) => openSimilar(hit, e.currentTarget) },
          "Similar products")));
  }

  /** Open or close a card's description; true when this opened it for the first time (a click to log). */
  function toggleDetails(link) {
    const card = link.closest(".card");
    const desc = card.querySelector(".desc");
    const expanded = desc.classList.toggle("expanded");
    desc.replaceChildren(...marked(desc.dataset.marked, desc.dataset.full, expanded ? Infinity : 110));
    const first = expanded && !card.dataset.clicked;
    if (first) card.dataset.clicked = "true";
    return first;
  }

  // --- facets and filters ------------------------------------------------------------------------------------
  function renderFacets(facets) {
    const brands = facetBlock("brand", "Brand", (facets.brand || []).slice(0, 12).map((v) => ({
      name: v.value, value: v.value, count: v.count, on: state.brand.includes(v.value),
      onclick: () => toggleFilter("brand", v.value) })));
    $("facets").replaceChildren(...[brands, ...moreFacets(facets)].filter(Boolean));
  }

  /** A facet block whose buttons show ``name`` (text, never markup) and toggle with ``onclick``. */
  function facetBlock(field, label, items) {
    if (!items.length) return null;
    return h("section", { class: "filter-block facet", dataset: { facet: field } }, h("h3", {}, label),
      h("ul", {}, items.map(({ name, value, count, on, onclick, depth }) => h("li", depth ? { style: { paddingLeft: `${depth}em` } } : {},
        h("button", { type: "button", class: "facet-value" + (on ? " on" : ""), "aria-pressed": on ? "true" : "false",
                      dataset: { value }, onclick },
          h("span", { class: "facet-name" }, name), h("span", { class: "count" }, String(count)))))));
  }

  // Category paths (a tree: the roots, then the levels under the chosen paths), price buckets, ratings and the
  // index's attribute facets (attr.<name>); each facet's counts ignore its own filter (disjunctive).
  function moreFacets(facets) {
    const blocks = [];
    const sep = " > ";
    blocks.push(facetBlock("category_path", "Categories", treeOrder(facets.category_path || [], sep).map((v) => ({
      name: v.value.split(sep).pop(), value: v.value, count: v.count, depth: v.value.split(sep).length - 1,
      on: state.category_path.includes(v.value), onclick: () => toggleFilter("category_path", v.value) }))));
    blocks.push(facetBlock("price", "Price", (facets.price || []).map((v) => {
      const [lo, hi] = v.value.replace(/\+$/, "").split("-");  // "25-50", "250+"
      const on = state.price_min === lo && state.price_max === (hi || "");
      return { name: hi ? `${formatPrice(+lo)} – ${formatPrice(+hi)}` : `${formatPrice(+lo)} and up`, value: v.value,
               count: v.count, on, onclick: () => {
                 Object.assign(state, on ? { price_min: "", price_max: "" } : { price_min: lo, price_max: hi || "" });
                 $("price-min").value = state.price_min; $("price-max").value = state.price_max;
                 state.page = 1; runSearch(); } };
    })));
    blocks.push(facetBlock("rating", "Rating", (facets.rating || []).map((v) => {
      const min = v.value.replace("+", "");
      const on = state.rating_min === min;
      return { name: `${min}★ & up`, value: v.value, count: v.count, on,
               onclick: () => { state.rating_min = on ? "" : min; state.page = 1; runSearch(); } };
    })));
    for (const [field, values] of Object.entries(facets)) {
      if (!field.startsWith("attr.")) continue;
      const attr = field.slice(5);
      blocks.push(facetBlock(field, attr.charAt(0).toUpperCase() + attr.slice(1).replace(/[_-]/g, " "), values.map((v) => ({
        name: v.value, value: v.value, count: v.count, on: state.attr.includes(`${attr}:${v.value}`),
        onclick: () => toggleFilter("attr", `${attr}:${v.value}`) }))));
    }
    return blocks.filter(Boolean);
  }

  /** The category paths with each child right after its parent (the API lists them level by level), siblings
   *  in the API's order. */
  function treeOrder(values, sep) {
    const kids = new Map();
    for (const v of values) {
      const parent = v.value.split(sep).slice(0, -1).join(sep);
      if (!kids.has(parent)) kids.set(parent, []);
      kids.get(parent).push(v);
    }
    const out = [];
    const walk = (parent) => (kids.get(parent) || []).forEach((v) => { if (v.value) { out.push(v); walk(v.value); } });
    walk("");
    return out.concat(values.filter((v) => !out.includes(v)));  // a child whose parent is not listed: last
  }

  function toggleFilter(param, value) {
    const list = state[param];
    const i = list.indexOf(value);
    if (i >= 0) list.splice(i, 1);
    else {
      if (param === "category_path") {
        // paths combine as "any of": a chosen path replaces its ancestors and descendants, so a step down narrows
        const sep = " > ";
        state.category_path = list.filter((p) => !value.startsWith(p + sep) && !p.startsWith(value + sep));
      }
      state[param].push(value);
    }
    state.page = 1;
    runSearch();
  }

  function clearFilters() {
    Object.assign(state, { brand: [], category: [], price_min: "", price_max: "", in_stock: false, page: 1,
                           category_path: [], attr: [], rating_min: "" });
    $("price-min").value = $("price-max").value = "";
    $("in-stock").checked = false;
    runSearch();
  }

  function renderChips() {
    const chips = [];
    const chip = (text, remove) => h("button", { type: "button", class: "chip", onclick: remove,
                                                 "aria-label": `Remove filter ${text}` }, text, h("span", {}, " ×"));
    state.brand.forEach((b) => chips.push(chip(b, () => toggleFilter("brand", b))));
    state.category.forEach((c) => chips.push(chip(c, () => toggleFilter("category", c))));
    state.category_path.forEach((c) => chips.push(chip(c, () => toggleFilter("category_path", c))));
    state.attr.forEach((a) => chips.push(chip(a.replace(":", ": "), () => toggleFilter("attr", a))));
    if (state.rating_min) chips.push(chip(`${state.rating_min}★ & up`, () => { state.rating_min = ""; state.page = 1; runSearch(); }));
    if (state.price_min || state.price_max) {
      chips.push(chip(`${state.price_min ? formatPrice(+state.price_min) : "any"} – ${state.price_max ? formatPrice(+state.price_max) : "any"}`,
        () => { state.price_min = state.price_max = ""; $("price-min").value = $("price-max").value = ""; state.page = 1; runSearch(); }));
    }
    if (state.in_stock) chips.push(chip("In stock", () => { state.in_stock = false; $("in-stock").checked = false; state.page = 1; runSearch(); }));
    if (chips.length > 1) chips.push(h("button", { type: "button", class: "link", onclick: clearFilters }, "Clear all"));
    $("active-filters").replaceChildren(...chips);
  }

  // --- pagination ----------------------------------------------------------------------------------------------
  function renderPager(body) {
    const pages = Math.min(Math.ceil(body.total / body.size), Math.floor(MAX_DEPTH / body.size));
    if (pages <= 1 || body.page > pages) { $("pager").replaceChildren(); return; }  // past the end: the page offers page 1
    const go = (p) => () => { state.page = p; runSearch(); window.scrollTo({ top: 0 }); };
    const items = [h("button", { type: "button", disabled: body.page <= 1, dataset: { page: "prev" }, onclick: go(body.page - 1) },
                     "‹ Prev")];
    const lo = Math.max(1, body.page - 3), hi = Math.min(pages, lo + 6);
    for (let p = lo; p <= hi; p++) {
      items.push(h("button", { type: "button", class: p === body.page ? "on" : "", "aria-current": p === body.page ? "page" : null,
                               dataset: { page: String(p) }, onclick: go(p) }, String(p)));
    }
    items.push(h("button", { type: "button", disabled: body.page >= pages, dataset: { page: "next" }, onclick: go(body.page + 1) },
                 "Next ›"));
    $("pager").replaceChildren(...items);
  }

  // --- similar products ----------------------------------------------------------------------------------------
  let similarFor = null;  // the product the drawer shows: an earlier answer that arrives late is dropped

  async function openSimilar(hit, opener) {
    const panel = $("similar-panel");
    panel.hidden = false;
    similarFor = hit.id;
    similarOpener = opener || null;
    // <bdi>: a bidi override (U+202E) in catalog text must not reorder the text around it
    $("similar-for").replaceChildren("Like “", h("bdi", {}, hit.title), "”");
    $("similar-results").replaceChildren(h("p", { class: "muted" }, "Finding similar products…"));
    $("together-results").replaceChildren();  // not the last product's list under this one's name
    try {
      const body = await getJson(`/products/${encodeURIComponent(hit.id)}/similar?size=6`);
      if (similarFor !== hit.id) return;
      const items = body.hits.map(mini);
      $("similar-results").replaceChildren(...(items.length ? items : [h("p", { class: "muted" }, "Nothing similar found.")]));
    } catch (err) {
      if (similarFor !== hit.id) return;
      const f = friendly(err);
      $("similar-results").replaceChildren(h("p", { class: "error", role: "alert" }, `${f.title}. ${f.detail}`));
    }
    $("similar-close").focus();
    showRecommendations("product", hit.id, $("together-results"), () => similarFor === hit.id);
  }

  let similarOpener = null;
  /** Close the drawer and give the focus back to the button that opened it. */
  function closeSimilar() {
    if ($("similar-panel").hidden) return;
    const inside = $("similar-panel").contains(document.activeElement);
    $("similar-panel").hidden = true;
    similarFor = null;
    // back to the button that opened it, when the focus was in the drawer (not someone typing elsewhere)
    if (inside && similarOpener && similarOpener.isConnected) similarOpener.focus();
  }

  function mini(s) {
    return h("div", { class: "mini", dataset: { id: s.id } },
      h("div", { class: "mini-title" }, s.title),
      h("div", { class: "muted" }, s.brand ? [h("bdi", {}, s.brand), " · "] : null, formatPrice(s.price)));
  }

  // --- recommendations (GET /recommendations; client_id: this session, the one its events carry) -------------
  const REC_TITLES = { for_you: "Recommended for you", bought_together: "Frequently bought together",
                       recently_viewed: "Recently viewed", popular: "Popular right now" };

  /** Fill ``target`` with the labelled lists for ``context``; recommendations are extras, so a failure or an
   * empty answer leaves ``target`` empty. */
  async function showRecommendations(context, productId, target, current = () => true) {
    target.replaceChildren();
    try {
      const body = await getJson("/recommendations?" + qs({ client_id: sessionId, context, product_id: productId, size: 6 }));
      if (!current()) return;  // the shopper moved on while it was on its way
      target.replaceChildren(...body.lists.map((list) => h("section", { class: "recs", dataset: { source: list.source } },
        h("h3", {}, REC_TITLES[list.source] || list.source),
        h("div", { class: "mini-list" }, list.hits.map(mini)))));
    } catch (err) {
      console.warn("recommendations unavailable:", err.message);
    }
  }

  // --- events --------------------------------------------------------------------------------------------------
  // token: the hit's signed proof that this search served it (POST /events checks it); event_id: a retry key.
  const newEventId = () => (window.crypto && crypto.randomUUID ? crypto.randomUUID()
    : `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}-${Math.random().toString(36).slice(2)}`);

  function eventFor(type, hit, body) {
    const ev = { type, query_id: body.query_id, product_id: hit.id, position: hit.rank, session_id: sessionId,
                 query: body.query, token: hit.token, event_id: newEventId() };
    if (typeof hit.price === "number") ev.price = hit.price;
    return ev;
  }

  function send(events) {
    if (!events.length) return;
    postJson("/events", events, true).catch((err) => console.warn("events not recorded:", err.message));
  }

  const sendImpressions = (body) => send((body.hits || []).map((hit) => eventFor("impression", hit, body)));
  const sendClick = (hit, body) => send([eventFor("click", hit, body)]);

  // --- autocomplete --------------------------------------------------------------------------------------------
  const input = $("q");
  const list = $("suggestions");
  let suggestAbort = null;
  let active = -1;
  let suggestOff = false;

  function closeSuggestions() {
    list.hidden = true;
    list.replaceChildren();
    active = -1;
    input.setAttribute("aria-expanded", "false");
    input.removeAttribute("aria-activedescendant");
  }

  function highlight(i) {
    const items = [...list.children];
    active = items.length ? (i + items.length) % items.length : -1;
    items.forEach((li, j) => li.setAttribute("aria-selected", j === active ? "true" : "false"));
    if (active >= 0) input.setAttribute("aria-activedescendant", items[active].id);
  }

  function choose(text) {
    input.value = text;
    closeSuggestions();
    submit();
  }

  const fetchSuggestions = debounce(async () => {
    const prefix = input.value.trim();
    if (suggestOff || prefix.length < 2) { closeSuggestions(); return; }
    if (suggestAbort) suggestAbort.abort();
    suggestAbort = new AbortController();
    try {
      const body = await getJson("/suggest?" + qs({ q: prefix, size: 8 }), suggestAbort.signal);
      if (input.value.trim() !== prefix || document.activeElement !== input) return;
      if (!body.suggestions.length) { closeSuggestions(); return; }
      list.replaceChildren(...body.suggestions.map(({ text: s, kind }, i) => {
        const at = s.toLowerCase().indexOf(prefix.toLowerCase());
        const label = at >= 0 ? [s.slice(0, at), h("mark", {}, s.slice(at, at + prefix.length)), s.slice(at + prefix.length)] : [s];
        // kind "query" (a popular past search) or "product" (a title): style.css marks each by its data-kind
        return h("li", { id: `suggestion-${i}`, role: "option", "aria-selected": "false", dataset: { value: s, kind },
                         onmousedown: (e) => { e.preventDefault(); choose(s); } }, label);
      }));
      list.hidden = false;
      active = -1;
      input.setAttribute("aria-expanded", "true");
    } catch (err) {
      if (err.name === "AbortError") return;
      if (err instanceof ApiProblem && err.status === 501) suggestOff = true;  // this build has no autocomplete
      closeSuggestions();
    }
  }, 150);

  input.addEventListener("input", fetchSuggestions);
  input.addEventListener("blur", () => setTimeout(closeSuggestions, 100));
  input.addEventListener("keydown", (e) => {
    if (list.hidden) return;
    if (e.key === "ArrowDown") { e.preventDefault(); highlight(active + 1); }
    else if (e.key === "ArrowUp") { e.preventDefault(); highlight(active - 1); }
    else if (e.key === "Escape") { e.preventDefault(); e.stopPropagation(); closeSuggestions(); }
    else if (e.key === "Enter" && active >= 0) { e.preventDefault(); choose(list.children[active].dataset.value); }
  });

  // --- wiring --------------------------------------------------------------------------------------------------
  function submit() {
    state.q = input.value.trim();
    state.page = 1;
    fetchSuggestions.cancel();  // a list asked for before Enter must not open over the results
    if (suggestAbort) suggestAbort.abort();
    closeSuggestions();
    runSearch();
  }

  $("search-form").addEventListener("submit", (e) => { e.preventDefault(); submit(); });
  $("price-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const lo = $("price-min").value, hi = $("price-max").value;
    if (lo && hi && +lo > +hi) { setStatus("The lowest price must not be above the highest.", "warn"); return; }
    state.price_min = lo; state.price_max = hi; state.page = 1;
    runSearch();
  });
  $("in-stock").addEventListener("change", (e) => { state.in_stock = e.target.checked; state.page = 1; runSearch(); });
  $("sort").addEventListener("change", (e) => {
    state.sort = SORTS.includes(e.target.value) ? e.target.value : SORTS[0];
    state.page = 1;
    runSearch();
  });
  $("similar-close").addEventListener("click", closeSimilar);
  document.addEventListener("keydown", (e) => { if (e.key === "Escape" && !e.defaultPrevented) closeSimilar(); });
  window.addEventListener("popstate", () => { readUrl(); runSearch(false); });

  // A phone folds the filters behind their summary, so the results are on the first screen (style.css); a
  // wide screen keeps them open (its summary is hidden).
  const narrow = window.matchMedia("(max-width: 860px)");
  const fold = () => { $("filters-panel").open = !narrow.matches; };
  narrow.addEventListener("change", fold);
  fold();

  readUrl();
  runSearch(false);
})();
