/* Relevance console: one query, two ranking profiles side by side, coloured by judgments, with stage scores. */
"use strict";

(() => {
  const { h, getJson, getText, postJson, friendly, qs, ApiProblem } = Shop;
  const $ = (id) => document.getElementById(id);
  const DEPTH = 10;  // the metric is nDCG@10, so the columns show the top 10
  const STAGE_ORDER = ["bm25", "knn", "fused", "cross_encoder", "conversion"];
  let profiles = [];
  let uploaded = null;  // {qrels: {qid: {doc: grade}}, qids: {normalised text: qid}, name}
  let configured = null;
  let shown = "";  // the query the columns show (the box may have been edited since)
  let worklist = null;  // {name, queries: [{query, ids: Set, pair}], at}: a `judgments pool` worklist being graded

  // For an uploaded list, looked up in the page: close to the server's normalise_query (NFKC, case folded,
  // whitespace collapsed), so "ＬＡＭＰ" finds "lamp" here as in a configured list (toLowerCase is not casefold:
  // "ß" stays "ß").
  const normalise = (t) => t.normalize("NFKC").toLowerCase().replace(/\s+/g, " ").trim();

  // --- profiles and judgments ----------------------------------------------------------------------------------
  async function loadProfiles() {
    const body = await getJson("/console/api/profiles");
    profiles = body.profiles;
    const url = new URLSearchParams(location.search);
    const pick = [url.get("a") || body.pair[0], url.get("b") || body.pair[1]];
    ["profile-a", "profile-b"].forEach((id, i) => {
      $(id).replaceChildren(...profiles.map((p) => h("option", { value: p.name, disabled: !!p.error,
        selected: p.name === pick[i] }, p.error ? `${p.name} (invalid)` : p.name)));
    });
    $("cq").value = url.get("q") || "";
  }

  async function loadJudgmentStatus() {
    try {
      configured = await getJson("/console/api/judgments");
    } catch (err) {
      // a key the API refused is not a list it could not read
      const key = err instanceof ApiProblem && (err.status === 401 || err.status === 403);
      configured = { configured: false, error: err.message, key };
    }
    showJudgmentStatus();
  }

  function showJudgmentStatus() {
    const el = $("judgments-status");
    $("clear-upload").hidden = !uploaded;
    if (uploaded) el.textContent = `uploaded ${uploaded.name} (${Object.keys(uploaded.qids).length} queries)`;
    else if (configured && configured.configured) el.textContent = `${configured.source} (${configured.judged_queries} judged queries)`;
    else if (configured && configured.key) el.textContent = `configured list not shown: ${configured.error}`;
    else if (configured && configured.error) el.textContent = `configured list unreadable: ${configured.error}`;
    else el.textContent = "none loaded — upload a qrels file and its queries TSV";
  }

  // grades keyed by product id, read with [] and "in": ids are data ("constructor" is a product, not a property)
  function byId(judged) {
    for (const k of ["grades", "given"]) if (judged && judged[k]) judged[k] = Object.assign(Object.create(null), judged[k]);
    return judged;
  }

  function parseQrels(text, name) {
    const out = Object.create(null);  // ids are data: "constructor" is a product, not a property
    text.split(/\r?\n/).forEach((line, n) => {
      const parts = line.trim().split(/\s+/);
      if (!line.trim()) return;
      // as eval's reader: a grade 2 or 2.0, one line a (query, product)
      if (parts.length !== 4 || !/^-?\d+(\.0*)?$/.test(parts[3])) {
        throw new Error(`${name}:${n + 1}: expected 'qid iteration doc_id grade', got '${line.slice(0, 60)}'`);
      }
      const grades = (out[parts[0]] = out[parts[0]] || Object.create(null));
      if (parts[2] in grades) throw new Error(`${name}:${n + 1}: judgment for (${parts[0]}, ${parts[2]}) appears twice`);
      grades[parts[2]] = parseInt(parts[3], 10);
    });
    return out;
  }

  // normalised text -> qid; of two queries with one text, a judged one (in ``qrels``) before the first
  function parseQueries(text, name, qrels) {
    const out = Object.create(null);
    text.split(/\r?\n/).forEach((line, n) => {
      if (!line.trim()) return;
      const tab = line.indexOf("\t");
      if (tab < 1) throw new Error(`${name}:${n + 1}: expected 'qid<TAB>query text'`);
      const key = normalise(line.slice(tab + 1));
      const qid = line.slice(0, tab).trim();
      if (!(key in out) || (!(out[key] in qrels) && qid in qrels)) out[key] = qid;
    });
    return out;
  }

  async function onUpload() {
    const qf = $("qrels-file").files[0], tf = $("queries-file").files[0];
    if (!qf || !tf) { setStatus(qf ? "Now choose the queries TSV that goes with the qrels." : "Now choose the qrels file.", "warn"); return; }
    try {
      const qrels = parseQrels(await qf.text(), qf.name);
      uploaded = { qrels, qids: parseQueries(await tf.text(), tf.name, qrels), name: qf.name };
      setStatus("", "");
    } catch (err) {
      uploaded = null;
      showJudgmentStatus();
      if ($("cq").value.trim()) await compare();  // first: it clears the status line when it has judged
      setStatus(err.message, "warn");
      return;
    }
    showJudgmentStatus();
    if ($("cq").value.trim()) compare();
  }

  // --- compare -------------------------------------------------------------------------------------------------
  function setStatus(text, kind) {
    $("console-status").className = "status" + (kind ? " " + kind : "");
    $("console-status").textContent = text;
  }

  let latest = 0;  // the newest compare() started: an older one's answers arriving late are dropped
  let requested = "";  // the query of that newest compare()

  async function compare(query) {
    const q = (query ?? $("cq").value).trim();
    const names = [$("profile-a").value, $("profile-b").value];
    const mine = ++latest;
    requested = q;
    history.replaceState(null, "", location.pathname + "?" + qs({ q, a: names[0], b: names[1] }));
    if (!q) { setStatus("Type a query to compare.", "warn"); return; }
    setStatus("Searching…", "loading");
    const results = await Promise.all(names.map((profile) =>
      getJson("/search?" + qs({ q, profile, explain: "true", size: DEPTH, facets: "none" })).catch((err) => ({ error: err }))));
    if (mine !== latest) return;
    const rankings = results.map((r) => (r.error ? [] : r.hits.map((x) => x.id)));
    const judgeBody = { query: q, rankings };
    if (uploaded) {
      const qid = uploaded.qids[normalise(q)] || null;
      judgeBody.judgments = qid ? (uploaded.qrels[qid] || {}) : {};
      if (qid) judgeBody.qid = qid;
    }
    let judged = null;
    try {
      judged = byId(await postJson("/console/api/judge", judgeBody));
    } catch (err) {
      if (mine === latest) setStatus(`Judgments unavailable: ${err.message}`, "warn");
    }
    if (mine !== latest) return;
    // Grades given from now on are for this query: the columns on screen until here were the last one's.
    shown = q;
    // A side whose search failed has no ranking to score: no figure for it, and no delta (not a drop to 0).
    const failed = results.map((r) => Boolean(r.error));
    if (judged) setStatus("", "");
    showWorklist(judged, rankings);
    renderDelta(judged, names, failed);
    results.forEach((r, i) => renderColumn(i ? $("col-b") : $("col-a"), names[i], r, judged, i,
      failed[1 - i] ? null : rankings[1 - i] || []));
  }

  function fmt(x, digits = 3) {
    return typeof x === "number" ? x.toFixed(digits) : "–";
  }

  function renderDelta(judged, names, failed) {
    const el = $("metric-delta");
    if (!judged) { el.replaceChildren(); return; }
    if (failed.some(Boolean) && judged.judged) {
      const down = names.filter((_, i) => failed[i]).join(" and ");
      el.replaceChildren(h("span", { class: "muted" }, `nDCG@10 not compared: the search of ${down} failed.`));
      return;
    }
    if (!judged.judged) {
      const why = judged.source === null && !uploaded ? "no judgment list is loaded"
        : "this query is not in the judgment list";
      el.replaceChildren(h("span", { class: "muted" }, `nDCG@10 not available: ${why}.`));
      return;
    }
    const d = judged.delta;
    const cls = d > 1e-9 ? "up" : d < -1e-9 ? "down" : "same";
    el.replaceChildren(
      h("span", {}, `${judged.metric} (qid ${judged.qid || "?"}, ${judged.relevant_count} relevant of ${judged.judged_count} judged): `),
      h("strong", { dataset: { side: "a" } }, `${names[0]} ${fmt(judged.scores[0])}`), " → ",
      h("strong", { dataset: { side: "b" } }, `${names[1]} ${fmt(judged.scores[1])}`), " ",
      h("span", { class: `delta ${cls}`, id: "delta-value" }, `${d >= 0 ? "+" : ""}${fmt(d)}`));
  }

  function gradeColor(grade, max) {
    if (grade === undefined) return "var(--grade-unjudged)";
    if (grade <= 0) return "hsl(0 70% 52%)";
    const t = Math.min(1, grade / Math.max(1, max || 1));
    return `hsl(${Math.round(40 + 80 * t)} ${Math.round(85 - 30 * t)}% ${Math.round(50 - 12 * t)}%)`;
  }

  function stageRows(stages) {
    // Ranks show beside their score; list-relative features (*_list_rank, *_rel) are the ranker's, not a stage's.
    const names = Object.keys(stages).filter((k) => !k.endsWith("_rank") && !k.endsWith("_rel"));
    names.sort((a, b) => ((STAGE_ORDER.indexOf(a) + 1) || 99) - ((STAGE_ORDER.indexOf(b) + 1) || 99));
    return names.map((k) => h("tr", { dataset: { stage: k } }, h("th", {}, k),
      h("td", {}, fmt(stages[k], 4)), h("td", { class: "muted" }, `${k}_rank` in stages ? `#${stages[`${k}_rank`]}` : "")));
  }

  function contributions(hit) {
    const c = hit.contributions || hit.feature_contributions || hit.features;
    if (!c || typeof c !== "object") return null;
    const entries = Object.entries(c).filter(([, v]) => typeof v === "number").sort((a, b) => Math.abs(b[1]) - Math.abs(a[1]));
    if (!entries.length) return null;
    const top = Math.max(...entries.map(([, v]) => Math.abs(v))) || 1;
    return h("details", { class: "contrib" }, h("summary", {}, "Feature contributions"),
      h("ul", {}, entries.slice(0, 12).map(([k, v]) => h("li", {}, h("span", { class: "fname" }, k),
        h("span", { class: "bar " + (v < 0 ? "neg" : "pos"), style: { width: `${Math.round(60 * Math.abs(v) / top)}px` } }),
        h("span", { class: "fval" }, fmt(v, 3))))));
  }

  function renderColumn(col, name, result, judged, side, other) {
    const p = profiles.find((x) => x.name === name) || {};
    const head = h("header", { class: "column-head" },
      h("h2", {}, name),
      h("p", { class: "muted" }, p.description || ""),
      h("div", { class: "tags" }, (p.legs || []).map((l) => h("span", { class: "tag" }, l)),
        p.fusion ? h("span", { class: "tag" }, p.fusion) : null, p.rerank ? h("span", { class: "tag" }, "rerank") : null,
        p.explore ? h("span", { class: "tag", title: "shoppers see FairPairs swaps on this share of first pages; "
          + "the console shows the ranking unswapped" }, `explores ${Math.round(100 * p.explore)}%`) : null),
      h("div", { class: "column-metric" }, judged && judged.judged && !result.error ? `nDCG@10 ${fmt(judged.scores[side])}` : "",
        judged && judged.judged && judged.judged_at_10 && !result.error ? h("span", {
          class: "muted",
          title: "share of this top 10 the judgments cover; nDCG@10 counts an unjudged product as not relevant",
        }, ` · ${Math.round(100 * judged.judged_at_10[side])}% of the top 10 judged`) : "",
        result.error ? "" : h("span", { class: "muted" }, ` · ${result.total} candidates · ${fmt(result.timings_ms.total, 1)} ms`)),
      // a degraded answer is not the profile's ranking (a missing model serves the fused order): say so
      !result.error && result.degraded ? h("p", { class: "degraded warn", role: "note" },
        `degraded: ${(result.degraded_reasons || []).join(", ") || "part of the search was skipped"} — `,
        (result.notes || []).join(" ")) : null);
    if (result.error) {
      const f = friendly(result.error);
      col.replaceChildren(head, h("div", { class: "empty error", role: "alert" }, h("h3", {}, f.title), h("p", {}, result.error.message)));
      return;
    }
    if (!result.hits.length) {
      col.replaceChildren(head, h("div", { class: "empty" }, h("p", {}, "No results.")));
      return;
    }
    const grades = (judged && judged.grades) || {};
    const rows = result.hits.map((hit) => {
      const grade = grades[hit.id];
      const otherRank = other ? other.indexOf(hit.id) + 1 : -1;  // null: the other side's search failed
      const move = otherRank < 0 ? null : otherRank === 0 ? h("span", { class: "move new", title: "not in the other column's top 10" }, "only here")
        : otherRank === hit.rank ? h("span", { class: "move same" }, "=")
        : h("span", { class: "move " + (otherRank > hit.rank ? "up" : "down"), title: `#${otherRank} in the other column` },
            `${otherRank > hit.rank ? "▲" : "▼"}${Math.abs(otherRank - hit.rank)}`);
      return h("li", { class: "row" + (grade === undefined ? " unjudged" : ""), dataset: { id: hit.id, grade: grade ?? "" },
                       style: { "--grade-color": gradeColor(grade, judged && judged.max_grade) },
                       onmouseenter: () => linkRows(hit.id, true), onmouseleave: () => linkRows(hit.id, false) },
        h("span", { class: "rank" }, String(hit.rank)),
        h("div", { class: "row-main" },
          // <bdi>: a bidi override (U+202E) in catalog text must not reorder the text around it
          h("div", { class: "row-title" }, h("bdi", {}, hit.title), " ", h("code", { class: "pid" }, hit.id)),
          h("div", { class: "muted" }, [hit.brand, typeof hit.price === "number" ? Shop.formatPrice(hit.price) : null,
            (hit.category || []).join(" › ")].filter(Boolean).flatMap((t, i) => [i ? " · " : null, h("bdi", {}, t)])),
          h("table", { class: "stages" }, h("tbody", {}, stageRows(hit.stages || {}))),
          contributions(hit)),
        h("div", { class: "row-side" },
          h("span", { class: "grade-badge", title: grade === undefined ? "not judged" : `grade ${grade}` },
            grade === undefined ? "?" : String(grade)), move, gradePicker(hit.id, judged), worklistTag(hit.id, grade)));
    });
    col.replaceChildren(head, h("ol", { class: "rows" }, rows));
  }

  // --- grades given in the console -----------------------------------------------------------------------------
  // A product the judgments miss scores as not relevant. Graded here, the grade is stored on the server before the
  // columns are judged again, so it counts at once, survives a reload and is shared with the other graders; the
  // download button gives the stored list (query,product_id,grade,graded_by,graded_at), a CSV judgment list that
  // compare reads and `shopsearch judgments merge` puts into a TREC list.
  function gradePicker(id, judged) {
    const top = Math.max(3, (judged && judged.max_grade) || 0);
    const mine = judged && judged.given ? judged.given[id] : undefined;
    // A closed <select> changes on every arrow key: a keyboard grader's arrows only move the choice, and Enter or
    // leaving the picker saves it (when it differs from the stored grade); a pointer's choice saves at once.
    const commit = (select) => {
      if (!select.dataset.moved) return;
      delete select.dataset.moved;
      if (select.value !== select.dataset.given) gradeHere(id, select);
    };
    return h("select", { class: "grade-pick", "aria-label": `grade ${id} here`, title: "grade this product here",
                         dataset: { given: mine ?? "", id },
                         onpointerdown: (e) => { delete e.target.dataset.moved; },
                         onkeydown: (e) => {
                           if (/^(Arrow|Page|Home|End)/.test(e.key)) e.target.dataset.moved = "1";
                           else if (e.key === "Enter") commit(e.target);
                         },
                         onblur: (e) => commit(e.target),
                         onchange: (e) => { if (!e.target.dataset.moved) gradeHere(id, e.target); } },
      h("option", { value: "", selected: mine === undefined }, "grade…"),
      Array.from({ length: top + 1 }, (_, g) => h("option", { value: String(g), selected: mine === g }, String(g))),
      mine === undefined ? null : h("option", { value: "clear" }, "clear"));
  }

  async function gradeHere(id, select) {
    const value = select.value;
    if (value === "") return;
    const q = shown;  // the query this product was ranked for, not an edit of the box not yet sent
    select.disabled = true;  // one grade of a product in flight at a time, so they reach the server in order
    try {
      const stored = await postJson("/console/api/grades",
        { query: q, product_id: id, grade: value === "clear" ? null : parseInt(value, 10) });
      showGiven(stored.count);
    } catch (err) {
      select.value = select.dataset.given;  // the picker shows what is stored, not what failed
      select.disabled = false;
      setStatus(`The grade was not saved: ${err.message}`, "warn");
      return;
    }
    // The columns are judged again for the query they show (the box keeps what is typed there), unless another
    // query was asked for while the grade was being stored (the worklist's next, say); a keyboard grader's focus
    // goes back to the product's picker in the same column.
    if (requested === q) {
      const kept = keepPickers(select);
      await compare(q);
      kept();
    }
  }

  /** Before the columns are drawn again: what to give back after (the focus, on the same control of the same row,
   *  and any choice a keyboard grader moved to but has not saved yet); the graded ``select`` is where the focus
   *  was when the save disabled it. */
  function keepPickers(select) {
    const where = (el) => {
      const row = el && el.closest && el.closest(".row[data-id]"), col = row && row.closest("[id^='col-']");
      return row && col ? `#${col.id} .row[data-id="${CSS.escape(row.dataset.id)}"]` : null;
    };
    const active = document.activeElement === document.body ? select : document.activeElement;
    const focusAt = where(active), onPicker = active && active.classList && active.classList.contains("grade-pick");
    const moved = [...document.querySelectorAll(".grade-pick[data-moved]")].map((p) => [where(p), p.value]);
    return () => {
      for (const [at, value] of moved) {
        const picker = at && document.querySelector(`${at} .grade-pick`);
        if (picker) { picker.value = value; picker.dataset.moved = "1"; }
      }
      const again = focusAt && document.querySelector(`${focusAt} ${onPicker ? ".grade-pick" : "summary, .grade-pick"}`);
      if (again) again.focus({ preventScroll: true });
    };
  }

  async function loadGiven() {
    try {
      showGiven((await getJson("/console/api/grades")).count);
    } catch (err) {
      setStatus(`Grades given in the console are unavailable: ${err.message}`, "warn");
    }
  }

  function showGiven(n) {
    $("download-grades").hidden = n === 0;
    $("download-grades").textContent = `Download ${n} grade${n === 1 ? "" : "s"} given in the console (CSV)`;
  }

  async function downloadGiven() {
    let text;
    try {
      text = await getText("/console/api/grades.csv");
    } catch (err) {
      setStatus(`Download failed: ${err.message}`, "warn");
      return;
    }
    const url = URL.createObjectURL(new Blob([text], { type: "text/csv" }));
    const link = h("a", { href: url, download: "console-grades.csv" });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 0);
  }

  // --- a worklist from `shopsearch judgments pool` -------------------------------------------------------------
  // Its rows are the products some profile shows in its top k that nobody judged. The page steps through its
  // queries; the rows to grade are tagged, and a grade given here is stored as any other console grade.
  function parseCsv(text) {
    const rows = [];
    let row = [], cell = "", quoted = false;
    for (let i = 0; i < text.length; i++) {
      const c = text[i];
      if (quoted) {
        if (c === '"' && text[i + 1] === '"') { cell += '"'; i++; }
        else if (c === '"') quoted = false;
        else cell += c;
      } else if (c === '"') quoted = true;
      else if (c === ",") { row.push(cell); cell = ""; }
      else if (c === "\n" || c === "\r") {
        if (c === "\r" && text[i + 1] === "\n") i++;
        row.push(cell); rows.push(row); row = []; cell = "";
      } else cell += c;
    }
    if (quoted) throw new Error("a quoted field is never closed");
    if (cell || row.length) { row.push(cell); rows.push(row); }
    return rows.filter((r) => r.some((x) => x.trim()));
  }

  // A query text that starts like a formula is written with a leading apostrophe, a spreadsheet's text mark
  // (shopsearch.judgments.as_text_cell); read without it.
  const fromTextCell = (s) => (/^''*[=+\-@\t\r]/.test(s) ? s.slice(1) : s);

  function parseWorklist(text, name) {
    let rows;
    try {
      rows = parseCsv(text.replace(/^\ufeff/, ""));
    } catch (err) {
      throw new Error(`${name}: ${err.message}`);
    }
    const header = (rows[0] || []).map((c) => c.trim().toLowerCase().replace(/[ -]/g, "_"));
    const qi = header.indexOf("query_text"), di = header.indexOf("doc_id");
    if (qi < 0 || di < 0) throw new Error(`${name}: expected the columns of a worklist from \`shopsearch judgments pool\` (Query Text, Doc ID, ...)`);
    const ci = header.indexOf("console");
    const byQuery = new Map();
    rows.slice(1).forEach((r) => {
      const q = fromTextCell((r[qi] || "").trim()), id = (r[di] || "").trim();
      if (!q || !id) return;
      if (!byQuery.has(q)) byQuery.set(q, { query: q, ids: new Set(), pair: consolePair(ci >= 0 ? r[ci] : "") });
      byQuery.get(q).ids.add(id);
    });
    if (!byQuery.size) throw new Error(`${name}: no products to grade`);
    return { name, queries: [...byQuery.values()], at: 0 };
  }

  // The profile pair the pool's console link names (a, b), so the columns show what the worklist was pooled from.
  function consolePair(link) {
    try {
      const u = new URL(link);
      return [u.searchParams.get("a"), u.searchParams.get("b")];
    } catch (_) {
      return [null, null];
    }
  }

  async function onWorklist() {
    const f = $("worklist-file").files[0];
    if (!f) return;
    try {
      worklist = parseWorklist(await f.text(), f.name);
    } catch (err) {
      worklist = null;
      $("worklist-file").value = "";  // the same file, mended, can be chosen again
      showWorklist();
      if ($("cq").value.trim()) await compare();  // no tags left from a worklist no longer open
      setStatus(err.message, "warn");
      return;
    }
    openWorklistQuery(0);
  }

  function openWorklistQuery(at) {
    worklist.at = Math.max(0, Math.min(at, worklist.queries.length - 1));
    const item = worklist.queries[worklist.at];
    ["profile-a", "profile-b"].forEach((id, i) => {
      if (item.pair[i] && profiles.some((p) => p.name === item.pair[i] && !p.error)) $(id).value = item.pair[i];
    });
    $("cq").value = item.query;
    showWorklist();
    compare();
  }

  const onWorklistQuery = () => worklist && normalise(worklist.queries[worklist.at].query) === normalise(shown);

  function showWorklist(judged, rankings) {
    $("worklist-bar").hidden = !worklist;
    if (!worklist) return;
    const item = worklist.queries[worklist.at];
    let counts = "";
    if (judged && rankings && onWorklistQuery()) {
      // what the columns show can be graded here; a product pooled from other profiles or deeper is not shown
      const inColumns = new Set(rankings.flat());
      const here = [...item.ids].filter((id) => inColumns.has(id));
      const left = here.filter((id) => !(id in (judged.grades || {}))).length;
      counts = `, ${left} left` + (here.length < item.ids.size ? `, ${item.ids.size - here.length} not in these columns` : "");
    }
    $("worklist-status").textContent = `${worklist.name}: query ${worklist.at + 1} of ${worklist.queries.length}`
      + ` · ${item.ids.size} to grade${counts}`;
    $("worklist-prev").disabled = worklist.at === 0;
    $("worklist-next").disabled = worklist.at === worklist.queries.length - 1;
  }

  function worklistTag(id, grade) {
    if (!onWorklistQuery() || !worklist.queries[worklist.at].ids.has(id)) return null;
    return grade === undefined ? h("span", { class: "tag to-grade", title: "on the worklist: nobody judged it" }, "to grade")
      : h("span", { class: "tag graded", title: "on the worklist, graded" }, "graded");
  }

  function linkRows(id, on) {
    document.querySelectorAll(`.row[data-id="${CSS.escape(id)}"]`).forEach((r) => r.classList.toggle("linked", on));
  }

  // --- wiring --------------------------------------------------------------------------------------------------
  $("console-form").addEventListener("submit", (e) => { e.preventDefault(); compare(); });
  ["profile-a", "profile-b"].forEach((id) => $(id).addEventListener("change", () => { if ($("cq").value.trim()) compare(); }));
  $("qrels-file").addEventListener("change", onUpload);
  $("queries-file").addEventListener("change", onUpload);
  $("download-grades").addEventListener("click", downloadGiven);
  $("worklist-file").addEventListener("change", onWorklist);
  $("worklist-prev").addEventListener("click", () => openWorklistQuery(worklist.at - 1));
  $("worklist-next").addEventListener("click", () => openWorklistQuery(worklist.at + 1));
  $("worklist-close").addEventListener("click", () => {
    worklist = null; $("worklist-file").value = "";
    showWorklist();
    if ($("cq").value.trim()) compare();
  });
  $("clear-upload").addEventListener("click", () => {
    uploaded = null; $("qrels-file").value = ""; $("queries-file").value = "";
    showJudgmentStatus();
    if ($("cq").value.trim()) compare();
  });

  (async () => {
    try {
      await Promise.all([loadProfiles(), loadJudgmentStatus(), loadGiven()]);
    } catch (err) {
      const f = friendly(err);
      setStatus(`${f.title}: ${err.message}`, "warn");
      return;
    }
    if ($("cq").value.trim()) compare();
  })();
})();
