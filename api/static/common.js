/* Shared helpers for the storefront and the console: DOM building, JSON calls, friendly error messages. */
"use strict";

const Shop = (() => {
  /** Build an element: h("a", {href: "#", class: "x", onclick: fn}, "text", childNode). Text is never parsed as HTML. */
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
      else if (key === "class") el.className = value;
      else if (key === "dataset") Object.assign(el.dataset, value);
      else if (key === "style" && typeof value === "object") {
        // setProperty also takes custom properties ("--grade-color"), which Object.assign on style ignores
        for (const [prop, v] of Object.entries(value)) el.style.setProperty(prop.replace(/[A-Z]/g, (c) => "-" + c.toLowerCase()), v);
      }
      else el.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  /** An API error with the HTTP status and the server's JSON error (code, message, parameter). */
  class ApiProblem extends Error {
    constructor(status, code, message, parameter, retryAfter) {
      super(message);
      Object.assign(this, { status, code, parameter, retryAfter });
    }
  }

  /** The API key to send (docs/security.md): one typed into the console (kept for this tab only), else the
   *  storefront's search key the server renders into <meta name="shopsearch-key">; none in local mode. */
  function apiKey() {
    const meta = document.querySelector('meta[name="shopsearch-key"]');
    return sessionStorage.getItem("shopsearch-key") || (meta && meta.content) || null;
  }

  /** The console asks once for an admin key when the API says it needs one; the storefront never does. */
  function askForKey(status, sentKey) {
    if (!document.body.classList.contains("console") || (status !== 401 && status !== 403)) return false;
    const typed = sessionStorage.getItem("shopsearch-key");
    if (typed && typed !== sentKey) return true;  // another call asked meanwhile: retry with that key
    const key = window.prompt("This console needs an admin API key (shopsearch keys create --role admin):");
    if (!key) return false;
    sessionStorage.setItem("shopsearch-key", key.trim());
    return true;
  }

  async function request(url, options, retried) {
    const key = apiKey();
    const sent = key ? { ...options, headers: { ...(options.headers || {}), "X-API-Key": key } } : options;
    let resp;
    try {
      resp = await fetch(url, sent);
    } catch (err) {
      if (err.name === "AbortError") throw err;
      throw new ApiProblem(0, "network", "network error: " + err.message, null, null);
    }
    const raw = await resp.text().catch(() => "");
    let body = null;
    try { body = JSON.parse(raw); } catch (_) { body = null; }
    if (!resp.ok) {
      if (!retried && askForKey(resp.status, key)) return request(url, options, true);
      const e = (body && body.error) || {};
      throw new ApiProblem(resp.status, e.code || "http_" + resp.status, e.message || resp.statusText,
                           e.parameter || null, resp.headers.get("Retry-After"));
    }
    return options.asText ? raw : body;
  }

  /** GET a JSON endpoint; throws ApiProblem for an error answer or a network failure. */
  const getJson = (url, signal) => request(url, { signal, headers: { Accept: "application/json" } });

  /** GET a text endpoint (a CSV download that needs the API key); throws ApiProblem as getJson does. */
  const getText = (url) => request(url, { asText: true, headers: { Accept: "text/csv, application/json" } });

  /** POST JSON; ``keepalive`` lets an event survive the page being left. */
  const postJson = (url, data, keepalive) => request(url, {
    method: "POST", keepalive: !!keepalive,
    headers: { "Content-Type": "application/json", Accept: "application/json" }, body: JSON.stringify(data),
  });

  /** A message for shoppers: what happened and what to do, never a stack trace. */
  function friendly(err) {
    if (!(err instanceof ApiProblem)) return { title: "Something went wrong", detail: "Please try again." };
    if (err.status === 503) {
      const wait = err.retryAfter ? ` in about ${err.retryAfter} seconds` : " in a moment";
      return { title: "Search is taking a short break",
               detail: `Our search engine is unavailable right now. Please try again${wait}.`, retry: true };
    }
    if (err.status === 429) return { title: "Slow down a little", retry: true,
                                     detail: `Too many requests; try again in ${err.retryAfter || "a few"} seconds.` };
    if (err.status === 0) return { title: "Can't reach the shop", detail: "Check your connection and try again.",
                                   retry: true };
    if (err.status === 400 || err.status === 422) return { title: "We couldn't run that search", detail: err.message };
    return { title: "Something went wrong on our side", detail: "Please try again in a moment.", retry: true };
  }

  /** Call ``fn`` once ``ms`` have passed without another call; ``.cancel()`` drops a call still waiting. */
  function debounce(fn, ms) {
    let timer = null;
    const run = (...args) => { clearTimeout(timer); timer = setTimeout(() => fn(...args), ms); };
    run.cancel = () => clearTimeout(timer);
    return run;
  }

  const money = new Intl.NumberFormat("en-US", { style: "currency", currency: "USD" });
  const formatPrice = (p) => (typeof p === "number" ? money.format(p) : "Price on request");

  // A list parameter (brand, category, category_path, attr) is split at commas by the API; a backslash before a
  // comma makes it part of the value (two backslashes: one), so a facet value such as "Sonix, Inc." selects itself.
  const listValue = (v) => String(v).replace(/\\/g, "\\\\").replace(/,/g, "\\,");
  function splitList(text) {
    const out = [];
    let cur = "";
    for (let i = 0; i < text.length; i++) {
      const c = text[i];
      if (c === "\\" && (text[i + 1] === "," || text[i + 1] === "\\")) cur += text[++i];
      else if (c === ",") { out.push(cur); cur = ""; }
      else cur += c;
    }
    out.push(cur);
    return out.map((v) => v.trim()).filter(Boolean);
  }

  function qs(params) {
    const u = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) {
      if (Array.isArray(v)) v.forEach((x) => u.append(k, x));
      else if (v !== null && v !== undefined && v !== "" && v !== false) u.append(k, v);
    }
    return u.toString();
  }

  return { h, ApiProblem, getJson, getText, postJson, friendly, debounce, formatPrice, qs, listValue, splitList };
})();
