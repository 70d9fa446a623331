"""POST /events: storefront behaviour events — UBI 1.0 events or shopsearch's own format — validated, spooled for
the UBI store and appended to the event log."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from shopsearch.events import EventError
from shopsearch.plugin.ubi_spool import SpoolFull
from shopsearch.ubi import parse_event_batch

from .app import service
from .auth import role
from .errors import ApiError
from .limits import budget

bp = Blueprint("events", __name__)


@bp.post("/events")
@role("search")
@budget("events")
def events():
    """Store one event or a list of events (all or nothing); answers 202 with the count and the event ids.

    An item with ``action_name`` is a UBI event, any other is shopsearch's format (the documented alias). The
    batch goes to the UBI spool first: a full spool answers 503 (Retry-After) and nothing is written anywhere.
    Events of the four types training reads also go to the event log (reranker/event_context.py tails it).
    """
    svc = service()
    if not request.is_json:
        raise ApiError(415, "unsupported_media_type", "body must be JSON (Content-Type: application/json)",
                       "body")
    payload = request.get_json(silent=True)
    if payload is None:
        raise ApiError(400, "invalid_json", "body is not valid JSON", "body")
    limit = svc.config.max_events
    if isinstance(payload, list) and len(payload) > limit:
        raise ApiError(413, "too_many_events", f"at most {limit} events per request; got {len(payload)}", "body")
    try:
        batch = parse_event_batch(payload, limit)
    except EventError as exc:
        raise ApiError(400, "invalid_event", str(exc), exc.parameter) from None
    try:
        svc.log_ubi([], [parsed.ubi for parsed in batch])
    except SpoolFull as exc:
        svc.metrics.ubi_dropped.labels("event").inc(len(batch))
        raise ApiError(503, "spool_full", f"events cannot be stored now (the log's spool is full); retry after "
                                          f"{svc.config.retry_after_s}s", "body",
                       headers={"Retry-After": str(svc.config.retry_after_s)}) from exc
    svc.events.append([parsed.event for parsed in batch if parsed.event is not None])
    for parsed in batch:
        svc.metrics.events.labels(parsed.event.type if parsed.event is not None else "other").inc()
    return jsonify({"accepted": len(batch), "event_ids": [parsed.ubi.event_id for parsed in batch]}), 202
