"""Every error the API returns is JSON: ``{"error": {"code", "message", "parameter"}}``.

400 a malformed or out-of-limit parameter, 422 values that are valid alone but not together, 404 unknown product
or route, 413 body too large, 501 not implemented, 503 engine outage (with Retry-After), 500 anything else (logged
here, never a traceback in the response). A request the engine refuses is a 400 where the caller's query or
filters reached it (``engine_refused``), else a 500 (nothing the caller sent is at fault, so a client retries);
either way its text is logged, not returned. 401/403: a missing, invalid or insufficient API key (api/auth.py);
429: a rate limit (api/limits.py).

A 5xx message can name internals (the engine's URL, a file path, exception text): only callers who may see
details (an admin key, or an admin endpoint in local mode; api/auth.py) get it; others, anonymous loopback clients
of the shopper-facing endpoints in local mode included, get the public message of its code.
"""

from __future__ import annotations

import logging

from flask import Flask, current_app, g, jsonify
from werkzeug.exceptions import HTTPException

from shopsearch.plugin.engine import EngineRejected, EngineUnavailable, IndexNotFound

log = logging.getLogger(__name__)
# What a 5xx says to a caller who may not see details (a search key): no URLs, paths or exception text.
PUBLIC_MESSAGES = {
    "engine_unavailable": "search engine unavailable; retry after the Retry-After seconds",
    "index_not_found": "the search index is not available; retry after the Retry-After seconds",
    "not_ready": "not ready; retry after the Retry-After seconds",
    "profile_invalid": "the ranking profile is misconfigured; the error was logged",
}
GENERIC_5XX = "the service cannot answer now; the error was logged"
# Messages written to be shown to anyone.
SAFE_5XX = frozenset({"internal_error", "spool_full", "storage_full", "not_implemented"})


class ApiError(Exception):
    """An error with its HTTP status, a machine-readable code and the offending parameter (if any).

    >>> ApiError(400, "invalid_parameter", "size must be <= 100; got 500", parameter="size").status
    400
    """

    def __init__(self, status: int, code: str, message: str, parameter: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.parameter = status, code, message, parameter
        self.headers = headers or {}


def bad_parameter(parameter: str | None, message: str) -> ApiError:
    """A 400 naming the parameter (None when no single parameter is at fault)."""
    return ApiError(400, "invalid_parameter", message, parameter)


def engine_refused(exc: EngineRejected) -> ApiError:
    """The engine's refusal of a request built from the caller's query or filters, every check here passed: a 400
    without the engine's text (it names indices and internals), which is logged for the operator."""
    log.warning("search engine refused a request: %s", exc)
    return bad_parameter(None, "the search engine could not run this request (a filter or the query may be too "
                               "long or too complex); the details were logged")


def profile_invalid(exc: ValueError) -> ApiError:
    """A ranking profile file that does not load: the operator's fault, not the caller's, so a 500 (a client
    retries it) whose text, naming the file, only callers who may see details get; it is logged for the operator."""
    log.error("ranking profile does not load: %s", exc)
    return ApiError(500, "profile_invalid", str(exc))


def error_body(code: str, message: str, parameter: str | None = None) -> dict:
    """The JSON body of every error response."""
    return {"error": {"code": code, "message": message, "parameter": parameter}}


def _respond(status: int, code: str, message: str, parameter: str | None = None,
             headers: dict[str, str] | None = None):
    if status >= 500 and not g.get("sees_details", False):  # set by api/auth.py
        message = PUBLIC_MESSAGES.get(code, message if code in SAFE_5XX else GENERIC_5XX)
    resp = jsonify(error_body(code, message, parameter))
    resp.status_code = status
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


def unavailable_response(message: str):
    """A 503 with Retry-After from the app's config (also counted as an engine error)."""
    cfg = current_app.extensions["shopsearch"].config
    current_app.extensions["shopsearch"].metrics.engine_error("unavailable")
    return _respond(503, "engine_unavailable", message, headers={"Retry-After": str(cfg.retry_after_s)})


def _is_engine_outage(exc: BaseException) -> bool:
    """Timeouts and connection errors that escaped the engine adapter still mean "engine down" (503)."""
    if isinstance(exc, (TimeoutError, ConnectionError)):
        return True
    return type(exc).__module__.startswith("opensearchpy") and type(exc).__name__ in (
        "ConnectionError", "ConnectionTimeout")


def register_error_handlers(app: Flask) -> None:
    """Turn ApiError, HTTP errors, engine outages and unexpected exceptions into JSON responses."""

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        return _respond(exc.status, exc.code, exc.message, exc.parameter, exc.headers)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        code = (exc.name or "error").lower().replace(" ", "_")
        headers = {"Allow": ", ".join(exc.valid_methods)} if getattr(exc, "valid_methods", None) else None
        return _respond(exc.code or 500, code, exc.description or exc.name, headers=headers)

    @app.errorhandler(EngineRejected)
    def _engine_refused_our_request(exc: EngineRejected):
        # Routes whose caller sent no text the engine reads (a product lookup, recommendations, POST /events'
        # product check): the request was ours, so a 500 the client retries, not a 400 it would drop.
        log.error("search engine refused a request the API built: %s", exc)
        current_app.extensions["shopsearch"].metrics.engine_error("rejected")
        return _respond(500, "internal_error", "internal server error; the error was logged")

    @app.errorhandler(EngineUnavailable)
    def _engine_down(exc: EngineUnavailable):
        log.warning("engine unavailable: %s", exc)
        return unavailable_response(f"search engine unavailable: {exc}")

    @app.errorhandler(IndexNotFound)
    def _no_index(exc: IndexNotFound):
        log.warning("index not found: %s", exc)
        cfg = current_app.extensions["shopsearch"].config
        current_app.extensions["shopsearch"].metrics.engine_error("index_not_found")
        return _respond(503, "index_not_found", f"index {cfg.index!r} does not exist; build it with "
                        "`shopsearch index`", headers={"Retry-After": str(cfg.retry_after_s)})

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        if _is_engine_outage(exc):
            log.warning("engine unreachable: %r", exc)
            return unavailable_response(f"search engine unavailable: {type(exc).__name__}")
        log.exception("unhandled error")
        return _respond(500, "internal_error", "internal server error; the error was logged")
