"""POST /events: storefront behaviour events — UBI 1.0 events or shopsearch's own format — checked (signed hit
tokens, known products, duplicates, caps: api/event_gate.py), spooled for the UBI store and appended to the event
log, all or nothing."""

from __future__ import annotations

import errno
import logging
from typing import Any

from flask import Blueprint, current_app, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from shopsearch.events import EventError
from shopsearch.plugin.ubi_spool import SpoolFull
from shopsearch.ubi import ParsedUbiEvent, parse_event_batch

from .app import service
from .auth import role
from .errors import ApiError
from .event_gate import Rejected
from .limits import budget

log = logging.getLogger(__name__)
bp = Blueprint("events", __name__)


@bp.post("/events")
@role("search")
@budget("events")
def events():
    """Store one event or a list of events (all or nothing); answers 202 with the count and the event ids (200
    when every event was a duplicate: ``"duplicate": true``, nothing stored again).

    An item with ``action_name`` is a UBI event, any other is shopsearch's format (the documented alias). Both
    pass the same gate (api/event_gate.py): a query_id needs its hit's signed token, fresh; a product without a
    query must exist; a client ``event_id`` seen before is a duplicate; per-session/per-product caps answer 429.
    The batch goes to the UBI spool and, for the four types training reads, the event log (reranker/
    event_context.py tails it): a full spool or disk answers 503 (Retry-After) and nothing is written anywhere.
    """
    svc = service()
    if not request.is_json:
        raise ApiError(415, "unsupported_media_type", "body must be JSON (Content-Type: application/json)",
                       "body")
    payload = _json_body()
    limit = svc.config.max_events
    if isinstance(payload, list) and len(payload) > limit:
        raise ApiError(413, "too_many_events", f"at most {limit} events per request; got {len(payload)}", "body")
    try:
        batch = parse_event_batch(payload, limit)
        svc.event_gate.check(batch)
        with svc.event_gate.admit(batch, request.remote_addr or "") as admitted:
            store(svc, admitted.fresh)
    except EventError as exc:
        raise ApiError(400, "invalid_event", str(exc), exc.parameter) from None
    except Rejected as exc:
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
        raise ApiError(exc.status, exc.code, str(exc), exc.parameter, headers=headers) from None
    for parsed in admitted.fresh:
        svc.metrics.events.labels(parsed.event.type if parsed.event is not None else "other").inc()
    return jsonify({"accepted": len(admitted.fresh), "event_ids": [parsed.ubi.event_id for parsed in batch],
                    "duplicate": not admitted.fresh, "duplicates": admitted.duplicates}), \
        202 if admitted.fresh else 200


def _json_body() -> Any:
    """The request's JSON body (``null`` included: the batch's own check names what is wrong with it).

    Raises:
        RequestEntityTooLarge: a body streamed without Content-Length over ``max_content_length``: werkzeug's
            stream would stop at the limit unannounced, and a cut body must not read as bad JSON.
        ApiError: 400 when the body is not JSON.
    """
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    if request.content_length is None and limit is not None and "wsgi.input_terminated" in request.environ:
        data = request.environ["wsgi.input"].read(limit + 1)  # one byte past the limit tells a cut body apart
        if len(data) > limit:
            raise RequestEntityTooLarge(f"body over {limit} bytes")
    else:
        data = request.get_data(cache=False)
    try:
        return current_app.json.loads(data)  # the app's provider: nesting too deep is a ValueError too
    except ValueError:  # UnicodeDecodeError too
        raise ApiError(400, "invalid_json", "body is not valid JSON", "body") from None


def store(svc: Any, batch: list[ParsedUbiEvent]) -> None:
    """Spool the batch's UBI events and append its events to the event log: both or neither.

    Raises:
        ApiError: 503 ``spool_full`` (the spool's bound) or ``storage_full`` (the disk), with Retry-After.
    """
    if not batch:
        return
    retry = {"Retry-After": str(svc.config.retry_after_s)}
    try:
        svc.log_ubi([], [parsed.ubi for parsed in batch],
                    then=lambda: svc.events.append([parsed.event for parsed in batch if parsed.event is not None]))
    except SpoolFull as exc:
        svc.metrics.ubi_dropped.labels("event").inc(len(batch))
        raise ApiError(503, "spool_full", f"events cannot be stored now (the log's spool is full); retry after "
                                          f"{svc.config.retry_after_s}s", "body", headers=retry) from exc
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        svc.metrics.ubi_dropped.labels("event").inc(len(batch))
        log.error("event storage full: %s", exc)
        raise ApiError(503, "storage_full", f"events cannot be stored now (no space left for the event log); "
                                            f"nothing was stored; retry after {svc.config.retry_after_s}s", "body",
                       headers=retry) from exc
