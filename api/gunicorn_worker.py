"""The gunicorn worker ``shopsearch serve`` runs: gunicorn's threaded worker, answering malformed HTTP as JSON.

gunicorn rejects some requests before the app sees them: a request line over ``limit_request_line`` (8190 bytes at
most; ``serve`` sets that maximum), too many or too long headers, a malformed request line or header. Stock
gunicorn answers those with an HTML page; the API promises ``{"error": {"code", "message", "parameter"}}``
everywhere (api/errors.py), so this worker writes that body instead, with the same status gunicorn would use
(414, 431, 400). Anything else (a server-side failure) keeps gunicorn's own handling.

    >>> from gunicorn.http.errors import LimitRequestLine
    >>> client_error(LimitRequestLine(9000, 8190), 8190, 100, 8190)[:2]
    (414, 'uri_too_long')
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from gunicorn import util
from gunicorn.http.errors import (ConfigurationProblem, InvalidResponseHeader, InvalidResponseHeaderName,
                                  LimitRequestHeaders, LimitRequestLine, ParseException, UnsupportedTransferCoding)
from gunicorn.workers.gthread import ThreadWorker

from .errors import error_body
from .response_headers import HEADERS, NO_STORE

REASONS = {400: "Bad Request", 414: "URI Too Long", 431: "Request Header Fields Too Large", 501: "Not Implemented"}


class ClientError(NamedTuple):
    """What to answer a request gunicorn could not parse."""

    status: int
    code: str
    message: str


def client_error(exc: ParseException, max_line: int, max_fields: int, max_field_size: int) -> ClientError:
    """The JSON error for a request gunicorn rejected with ``exc``; the limits are the worker's settings.

    The message names the limit, never the request's bytes (they may be anything).
    """
    if isinstance(exc, LimitRequestLine):
        return ClientError(414, "uri_too_long", f"the request line (method, URL, HTTP version) must be at most "
                                                f"{max_line} bytes")
    if isinstance(exc, LimitRequestHeaders):
        return ClientError(431, "request_header_fields_too_large", f"at most {max_fields} request headers of at "
                                                                   f"most {max_field_size} bytes each")
    if isinstance(exc, UnsupportedTransferCoding):
        return ClientError(501, "not_implemented", "unsupported Transfer-Encoding")
    return ClientError(400, "bad_request", f"malformed HTTP request ({type(exc).__name__})")


def response_bytes(error: ClientError) -> bytes:
    """A complete HTTP/1.1 response (the connection is closed after it) carrying the JSON error body."""
    body = json.dumps(error_body(error.code, error.message)).encode()
    safety = "".join(f"{k}: {v}\r\n" for k, v in {**HEADERS, **NO_STORE}.items())  # as the app's answers
    head = (f"HTTP/1.1 {error.status} {REASONS[error.status]}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n{safety}\r\n")
    return head.encode("latin-1") + body


class JsonErrorWorker(ThreadWorker):
    """gunicorn's ``gthread`` worker whose answers to unparsable requests are the API's JSON errors."""

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        server_side = (InvalidResponseHeader, InvalidResponseHeaderName, ConfigurationProblem)
        if not isinstance(exc, ParseException) or isinstance(exc, server_side):
            super().handle_error(req, client, addr, exc)
            return
        error = client_error(exc, self.cfg.limit_request_line, self.cfg.limit_request_fields,
                             self.cfg.limit_request_field_size)
        self.log.warning("Invalid request from ip=%s: %s", (addr or ("",))[0], exc)
        try:
            util.write_nonblock(client, response_bytes(error))
        except OSError:
            self.log.debug("Failed to send error message.")
