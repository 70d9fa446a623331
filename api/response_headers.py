"""Headers every response carries, for a browser facing the internet.

- ``X-Content-Type-Options: nosniff``: a JSON answer holding catalog or query text is never sniffed as HTML;
- ``X-Frame-Options: DENY`` and ``Content-Security-Policy: frame-ancestors 'none'``: no other site frames the
  storefront or the console to trick a click (a grade given, a key typed);
- ``Referrer-Policy: same-origin``: a merchandising redirect to another site is not told the shopper's query;
- ``Cache-Control: no-store`` on API answers (not static files, which set their own): a shared cache never keeps
  a keyed, personal or admin answer for the next caller.
"""

from __future__ import annotations

from flask import Flask, Response, request

HEADERS = {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY",
           "Content-Security-Policy": "frame-ancestors 'none'", "Referrer-Policy": "same-origin"}
NO_STORE = {"Cache-Control": "no-store"}  # on API answers (the JSON errors gunicorn writes itself too)


def init_app(app: Flask) -> None:
    """Add :data:`HEADERS` to every response, and ``Cache-Control: no-store`` where none is set."""

    @app.after_request
    def _headers(resp: Response) -> Response:
        for name, value in HEADERS.items():
            resp.headers.setdefault(name, value)
        if request.endpoint != "static" and "Cache-Control" not in resp.headers:
            resp.headers.update(NO_STORE)
        return resp
