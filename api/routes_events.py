"""POST /events: storefront behaviour events, validated and appended to the event log."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from shopsearch.events import EventError, parse_events

from .app import service
from .errors import ApiError

bp = Blueprint("events", __name__)


@bp.post("/events")
def events():
    """Store one event or a list of events (all or nothing); answers 202 with the count."""
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
        batch = parse_events(payload, limit)
    except EventError as exc:
        raise ApiError(400, "invalid_event", str(exc), exc.parameter) from None
    stored = svc.events.append(batch)
    for ev in batch:
        svc.metrics.events.labels(ev.type).inc()
    return jsonify({"accepted": stored, "event_ids": [ev.event_id for ev in batch]}), 202
