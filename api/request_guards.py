"""Hostile input rejected where it enters, as the API's JSON errors (never a 500 or an HTML page).

- a URL longer than :data:`MAX_URL_BYTES` answers 414 JSON (``shopsearch serve`` lets gunicorn read request lines
  up to its maximum, 8190 bytes, so the app sees them; only longer ones get gunicorn's own HTML 414);
- a query parameter (name or value) that is not valid UTF-8 or holds a control character (NUL...) answers 400
  naming it;
- a JSON body nested deeper than Python's parser recurses (200,000 ``[``) is invalid JSON (400), not a
  RecursionError (500).

    >>> bad_text("lamp\\x00"), bad_text("lämp")
    (True, False)
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote_to_bytes

from flask import Flask, request
from flask.json.provider import DefaultJSONProvider

from .errors import ApiError, bad_parameter

MAX_URL_BYTES = 4096  # gunicorn's default request line; served with limit_request_line 8190 so the app answers
GUNICORN_MAX_REQUEST_LINE = 8190
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffd]")


def bad_text(value: str) -> bool:
    """Whether ``value`` holds a control character or bytes that were not UTF-8."""
    return _CONTROL.search(value) is not None


class GuardedJSONProvider(DefaultJSONProvider):
    """Flask's JSON, with too-deep nesting reported as invalid JSON (a ValueError) instead of a RecursionError."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        try:
            return super().loads(s, **kwargs)
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None


def init_app(app: Flask) -> None:
    """Install the JSON provider and check every request's URL and query parameters."""
    app.json = GuardedJSONProvider(app)
    app.json.sort_keys = False

    @app.before_request
    def _check_url() -> None:
        length = len(request.full_path.encode())
        if length > MAX_URL_BYTES:
            raise ApiError(414, "uri_too_long", f"the URL must be at most {MAX_URL_BYTES} bytes; got {length}")
        try:  # werkzeug keeps undecodable bytes as literal %XX text; reject them instead
            unquote_to_bytes(request.query_string).decode("utf-8")
        except UnicodeDecodeError:
            raise bad_parameter(None, "the query string must be UTF-8 (percent-encoded)") from None
        for name, value in request.args.items(multi=True):
            if bad_text(name) or bad_text(value):
                shown = name if not bad_text(name) else repr(name)[:60]
                raise bad_parameter(shown, f"parameter {shown} must be UTF-8 text without control characters "
                                           "(NUL, ...)")
