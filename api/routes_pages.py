"""The storefront page (``/``), the relevance console (``/console``) and the console's JSON endpoints.

The pages are plain HTML + vanilla JS served from ``api/static`` (no CDN, no build step); they call the public API
(/search, /suggest, /products/<id>/similar, /events). The console adds:

- ``GET /console/api/profiles``: the ranking profiles to compare, with what each one does;
- ``GET /console/api/judgments``: which judgment list is configured and how many queries it judges;
- ``POST /console/api/judge``: grades and per-query nDCG@10 for the rankings the page shows;
- ``POST /console/api/grades``: a grade given in the console, stored before it is acknowledged (or withdrawn);
- ``GET /console/api/grades`` and ``GET /console/api/grades.csv``: how many grades were given, and the list itself.

Judgments come from app config ``CONSOLE_QRELS`` (a judgment list in any format shopsearch.judgments reads)
+ ``CONSOLE_QUERIES`` (``qid<TAB>query``; needed for TREC qrels, which carry no query text), or the environment
variables ``SHOPSEARCH_CONSOLE_QRELS`` / ``SHOPSEARCH_CONSOLE_QUERIES``; or from TREC qrels + queries TSV uploaded in
the page: the page parses them and sends only the current query's grades, so a large qrels file never crosses the
body size limit. Grades given in the console are kept in the settings' ``console_grades`` file
(:mod:`.console_grades`) and count over either list.
"""

from __future__ import annotations

import logging
import math
import os
import unicodedata
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, jsonify, render_template, request

from shopsearch.evaluation import RELEVANT_GRADE
from shopsearch.events import MAX_ID
from shopsearch.plugin.profiles import ProfileError, ProfileStore
from shopsearch.text import has_lone_surrogate

from .app import service
from .auth import current_key, role
from .console_grades import MAX_GRADE, MAX_GRADES, ConsoleGrades, GradesFull, render
from .console_judgments import (MAX_JUDGMENTS, MAX_RANKING_DEPTH, MAX_RANKINGS, METRIC, JudgmentList,
                                load_judgments, scores_per_ranking)
from .errors import ApiError, bad_parameter

log = logging.getLogger(__name__)
bp = Blueprint("pages", __name__, template_folder="templates")
# The pair the console opens with when those profiles exist: the lexical baseline against the hybrid default.
DEFAULT_PAIR = ("bm25", "default")


@bp.get("/")
@role("public")  # a page shell: its data comes from /search with the embedded key
def storefront():
    """The storefront: search box with autocomplete, facets, result cards, similar products (paged as deep as the
    API's ``max_depth`` lets it)."""
    return render_template("storefront.html", max_depth=service().config.max_depth)


@bp.get("/console")
@role("public")  # a page shell: its API calls need an admin key
def console():
    """The relevance console: one query, two profiles side by side, judgment colours, stage scores."""
    return render_template("console.html")


def _profile_store() -> ProfileStore:
    """The searcher's profile store when it is built (same folders as search), else the default folders."""
    searcher = service().searcher
    store = getattr(searcher, "profiles", None)
    return store if isinstance(store, ProfileStore) else ProfileStore(settings=service().config)


@bp.get("/console/api/profiles")
@role("admin")
def profiles():
    """Every ranking profile: name, description, enabled legs, fusion method, reranking, the share of served
    pages that explore; an invalid file is listed with its error instead of hiding the others."""
    store = _profile_store()
    out: list[dict[str, Any]] = []
    for name in store.names():
        try:
            p = store.get(name)
        except ProfileError as exc:
            out.append({"name": name, "error": str(exc)})
            continue
        out.append({"name": p.name, "description": p.description, "legs": list(p.legs),
                    "fusion": p.fusion.method, "rerank": p.rerank.enabled, "explore": p.explore.share})
    names = [p["name"] for p in out if "error" not in p]
    pair = list(DEFAULT_PAIR) if all(n in names for n in DEFAULT_PAIR) else (names * 2)[:2]
    return jsonify({"profiles": out, "pair": pair})


def configured_paths() -> tuple[str, str | None] | None:
    """(judgments, queries or None) paths from the settings' ``console_qrels``/``console_queries``; None when
    neither is set.

    Raises:
        ApiError: 500 when queries are set without judgments.
    """
    cfg = service().config
    qrels, queries = cfg.console_qrels, cfg.console_queries
    if not qrels and not queries:
        return None
    if not qrels:
        raise ApiError(500, "console_misconfigured", "console_queries is set but console_qrels is not: set "
                       "console_qrels ($SHOPSEARCH_CONSOLE_QRELS) to the judgment file (TREC qrels, CSV, ESCI, "
                       "WANDS or Quepid)")
    return str(qrels), str(queries) if queries else None


def configured_judgments() -> JudgmentList | None:
    """The configured judgment list, or None when none is configured.

    Raises:
        ApiError: 500 naming the file and line when it cannot be read.
    """
    paths = configured_paths()
    if paths is None:
        return None
    try:
        return load_judgments(*paths)
    except OSError as exc:  # named by the file alone: where the server keeps its files is for its log
        log.warning("cannot read the configured judgments: %s", exc)
        name = Path(exc.filename or paths[0]).name
        raise ApiError(500, "judgments_unreadable", f"cannot read the configured judgments: "
                                                    f"{exc.strerror or 'unreadable'}: {name}") from None
    except ValueError as exc:  # "path:line: ...": what to mend, without the folder
        message = str(exc)
        for path in filter(None, paths):
            message = message.replace(f"{Path(path).parent}{os.sep}", "")
        raise ApiError(500, "judgments_unreadable", f"cannot read the configured judgments: {message}") from None


@bp.get("/console/api/judgments")
@role("admin")
def judgments_summary():
    """Which judgment list the console uses: ``{"configured", "source", "queries", "judged_queries"}``."""
    jl = configured_judgments()
    if jl is None:
        return jsonify({"configured": False, "source": None, "queries": 0, "judged_queries": 0})
    return jsonify({"configured": True, "source": Path(jl.source).name, "queries": len(jl.qids),
                    "judged_queries": jl.judged_queries})


def _text(body: dict, name: str, limit: int, required: bool) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise bad_parameter(name, f"{name} must be a non-empty string of at most {limit} characters; got {value!r}")
    return value


def parse_rankings(value: Any) -> list[list[str]]:
    """``rankings``: 1..4 lists of at most 100 product ids (strings), best first."""
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_RANKINGS:
        raise bad_parameter("rankings", f"rankings must be a list of 1 to {MAX_RANKINGS} lists of product ids")
    out = []
    for i, ranking in enumerate(value):
        ok = isinstance(ranking, list) and len(ranking) <= MAX_RANKING_DEPTH and all(
            isinstance(d, str) and 0 < len(d) <= MAX_ID for d in ranking)
        if not ok:
            raise bad_parameter(f"rankings[{i}]", f"rankings[{i}] must be a list of at most {MAX_RANKING_DEPTH} "
                                                  f"product ids (strings of 1 to {MAX_ID} characters)")
        out.append(list(ranking))
    return out


def parse_grades(value: Any, name: str = "judgments") -> dict[str, int]:
    """``judgments`` (an uploaded list, filtered to one query) or ``added`` (grades given in the console): an
    object product id -> integer grade."""
    if not isinstance(value, dict) or len(value) > MAX_JUDGMENTS:
        raise bad_parameter(name, f"{name} must be an object of at most {MAX_JUDGMENTS} product id -> integer grade")
    for doc, grade in value.items():
        if not doc or len(doc) > MAX_ID or isinstance(grade, bool) or not isinstance(grade, int) or abs(grade) > 1000:
            raise bad_parameter(name, f"{name}[{doc!r}] must be an integer grade; got {grade!r}")
    return dict(value)


def judge_report(query: str, qid: str | None, grades: dict[str, int], rankings: list[list[str]],
                 source: str | None, given: dict[str, int] | None = None) -> dict[str, Any]:
    """The /console/api/judge body: grades of the shown products (``given``: those graded in the console), counts,
    nDCG@10 per ranking and the delta, and the share of each top 10 that was judged (an unjudged product scores as
    not relevant)."""
    shown = dict.fromkeys(d for r in rankings for d in r)
    per_ranking = scores_per_ranking(grades, rankings)
    scores = [s[METRIC] for s in per_ranking] if per_ranking is not None else None
    delta = scores[1] - scores[0] if scores is not None and len(scores) >= 2 else None
    return {
        "query": query, "qid": qid, "judged": bool(grades), "source": source,
        "grades": {d: grades[d] for d in shown if d in grades},
        "given": {d: g for d, g in (given or {}).items() if d in shown},
        "judged_count": len(grades),
        "relevant_count": sum(1 for g in grades.values() if g >= RELEVANT_GRADE),
        "max_grade": max(grades.values(), default=None),
        "metric": METRIC,
        "scores": [_rounded(s) for s in scores] if scores is not None else None,
        "delta": _rounded(delta) if delta is not None else None,
        "judged_at_10": [_rounded(s["judged@10"]) for s in per_ranking] if per_ranking is not None else None,
    }


def _rounded(x: float) -> float:
    return round(x, 6) if math.isfinite(x) else 0.0


@bp.post("/console/api/judge")
@role("admin")
def judge():
    """Grades and nDCG@10 for the rankings the console shows.

    Body: ``{"query": str, "rankings": [[id, ...], ...], "judgments"?: {id: grade}, "qid"?: str,
    "added"?: {id: grade}}``; without ``judgments`` the configured list is used, looked up by the query text.
    The grades given in the console (the ``console_grades`` list) count over the list's, and ``added`` (grades
    an API caller has not stored) over those; ``given`` in the answer holds both, for the shown products.
    """
    body = _json_body(("query", "rankings", "judgments", "qid", "added"))
    query = _text(body, "query", service().config.max_query_length, required=True)
    rankings = parse_rankings(body.get("rankings"))
    added = parse_grades(body["added"], "added") if "added" in body else {}
    given = _read_grades(lambda store: store.for_query(query)) | added
    if "judgments" in body:
        grades = parse_grades(body["judgments"])
        return jsonify(judge_report(query, _text(body, "qid", MAX_ID, required=False), grades | given, rankings,
                                    "uploaded", given))
    jl = configured_judgments()
    if jl is None:
        return jsonify(judge_report(query, None, given, rankings, None, given))
    qid, grades = jl.lookup(query)
    return jsonify(judge_report(query, qid, grades | given, rankings, Path(jl.source).name, given))


# --- grades given in the console -------------------------------------------------------------------------------

_stores: dict[Path, ConsoleGrades] = {}


def grade_store() -> ConsoleGrades:
    """The grade list of the app's settings (one object per path, so its parsed rows are cached)."""
    path = Path(service().config.console_grades)
    return _stores.setdefault(path, ConsoleGrades(path))


def _read_grades(read):
    """``read(store)``; a malformed list answers 500 and a disk that fails 503, naming the file, not its folder."""
    store = grade_store()
    try:
        return read(store)
    except ValueError as exc:
        raise _unreadable(exc) from None
    except OSError:
        log.exception("cannot read the console's grades from %s", store.path)
        raise ApiError(503, "grades_unavailable", f"cannot read the console's grades ({store.path.name}); the "
                                                  "error was logged", headers={"Retry-After": "5"}) from None


def _unreadable(exc: ValueError) -> ApiError:
    """The 500 for a malformed grade list: its ``name:line: ...`` says what to mend, and names no folder."""
    return ApiError(500, "grades_unreadable", f"cannot read the console's grades: {exc}")


def _json_body(allowed: tuple[str, ...]) -> dict:
    """The request's JSON object, every field of it among ``allowed`` (a 400 naming the first that is not)."""
    body = request.get_json(silent=True) if request.is_json else None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "body must be a JSON object (Content-Type: application/json)", "body")
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise bad_parameter(unknown[0], f"unknown field {unknown[0]!r}; allowed: {', '.join(allowed)}")
    for name, value in body.items():
        if _holds_surrogate(value):  # JSON's \ud800 alone: no text, and ir-measures' C backend crashes on it
            raise bad_parameter(name, f"{name} holds text that is not valid Unicode (a lone surrogate)")
    return body


def _holds_surrogate(value: Any) -> bool:
    """Whether a decoded JSON value holds a lone surrogate in any string, key or value, at any depth (walked with
    a stack: a deeply nested body is the route's 400, not a RecursionError's 500)."""
    todo = [value]
    while todo:
        v = todo.pop()
        if isinstance(v, str) and has_lone_surrogate(v):
            return True
        if isinstance(v, dict):
            todo += [*v.keys(), *v.values()]
        elif isinstance(v, list):
            todo += v
    return False


def _printable(value: str, name: str) -> str:
    """``value`` unless it holds a control character or a line or paragraph separator (a line break would split
    the list's row for readers that split lines, as ``judgments merge``'s queries file does)."""
    if any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in value):
        raise bad_parameter(name, f"{name} must not contain control characters (line breaks, tabs, ...)")
    return value


@bp.post("/console/api/grades")
@role("admin")
def give_grade():
    """Store a grade given in the console; the answer comes once it is on disk.

    Body: ``{"query": str, "product_id": str, "grade": int 0..100 | null}``; null withdraws an earlier grade. A
    query's grades keep the text it was first graded under (``query`` in the answer), matched by normalised text.
    Answers ``{"query", "product_id", "grade", "graded_by", "graded_at", "count"}``, ``count`` being the grades in
    the list; 503 ``grades_full`` at the list's limit, 503 ``grades_unavailable`` when the disk refuses.
    """
    body = _json_body(("query", "product_id", "grade"))
    query = _printable(_text(body, "query", service().config.max_query_length, required=True), "query")
    doc = body.get("product_id")
    if not isinstance(doc, str) or not doc or doc != doc.strip() or len(doc) > MAX_ID:
        raise bad_parameter("product_id", f"product_id must be a product id (1 to {MAX_ID} characters, no "
                                          f"surrounding spaces); got {doc!r}")
    _printable(doc, "product_id")
    if "grade" not in body:
        raise bad_parameter("grade", "grade is required: an integer from 0 to 100, or null to withdraw it")
    grade = body["grade"]
    if grade is not None and (isinstance(grade, bool) or not isinstance(grade, int) or not 0 <= grade <= MAX_GRADE):
        raise bad_parameter("grade", f"grade must be an integer from 0 to {MAX_GRADE}, or null to withdraw it; "
                                     f"got {grade!r}")
    key = current_key()
    store = grade_store()
    try:
        row, count = store.give(query, doc, grade, graded_by=key.name if key else "local")
    except GradesFull:
        raise ApiError(503, "grades_full", f"the console's grade list holds its limit of {MAX_GRADES} grades: "
                                           "fold it into your judgment list (shopsearch judgments merge) "
                                           "and start a new one") from None
    except ValueError as exc:
        raise _unreadable(exc) from None
    except OSError:
        log.exception("cannot store a console grade in %s", store.path)
        raise ApiError(503, "grades_unavailable", "the grade could not be stored for certain (the error was "
                                                  "logged); send it again", headers={"Retry-After": "5"}) from None
    if row is None:
        return jsonify({"query": query, "product_id": doc, "grade": None, "graded_by": None, "graded_at": None,
                        "count": count})
    return jsonify({"query": row.query, "product_id": row.product_id, "grade": row.grade,
                    "graded_by": row.graded_by, "graded_at": row.graded_at, "count": count})


@bp.get("/console/api/grades")
@role("admin")
def grades_summary():
    """How many grades were given in the console: ``{"count", "queries", "source"}`` (the list's file name)."""
    grades = _read_grades(ConsoleGrades.read)
    return jsonify({"count": len(grades), "queries": len({g.key for g in grades}),
                    "source": grade_store().path.name})


@bp.get("/console/api/grades.csv")
@role("admin")
def grades_csv():
    """The grades given in the console as the CSV judgment list they are kept in (a header alone when none)."""
    data = render(_read_grades(ConsoleGrades.read))
    return Response(data, mimetype="text/csv",
                    headers={"Content-Disposition": 'attachment; filename="console-grades.csv"'})
