"""Overload protection: a bound on the searches one worker runs at once, each /search's deadline, fast 503s.

Under load the API answers at once rather than queueing without bound:

- **In-flight bound** (``search_max_inflight``): the views marked :func:`bounded` (GET /search, the one that
  fans out to the engine and the models) take a slot of a per-worker semaphore without waiting; with none free the
  request is answered 503 ``overloaded`` with Retry-After at once. Under ``shopsearch serve`` the bound is the worker's
  threads minus one, so a thread is always free to turn the excess away while the others search (a gthread worker
  otherwise queues connections until a thread frees up).
- **Engine saturated**: an engine that rejects a request (OpenSearch 429, :class:`EngineBusy`) is answered 503
  ``overloaded`` at once; retrying it inside the request would only add load.
- **Deadline** (``search_deadline_ms``): :func:`request_deadline` is created when the request starts and handed
  down through the ranking pipeline to every engine call and stage; what runs out of time is served degraded.
  When nothing could be served in time (:class:`DeadlineExceeded` escapes) the answer is 503
  ``deadline_exceeded`` with Retry-After.

Each such 503 is counted in ``shopsearch_search_shed_total{reason}`` (inflight, engine_busy, deadline).
"""

from __future__ import annotations

import logging
import threading
from typing import Callable, TypeVar

from flask import Flask, current_app, g, jsonify, request

from shopsearch.deadline import Deadline, DeadlineExceeded
from shopsearch.plugin.engine import EngineBusy
from shopsearch.settings import Settings

from .errors import error_body

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable)
BOUNDED_ATTR = "shopsearch_bounded"


def bounded(view: F) -> F:
    """Count a view against the worker's in-flight bound and start its deadline when the request starts.

    >>> @bounded
    ... def view(): ...
    >>> view.shopsearch_bounded
    True
    """
    setattr(view, BOUNDED_ATTR, True)
    return view


def _shed(code: str, message: str, reason: str):
    """A 503 with Retry-After (the ``retry_after_s`` setting), counted as shed load under ``reason``."""
    svc = current_app.extensions["shopsearch"]
    svc.metrics.shed.labels(reason).inc()
    resp = jsonify(error_body(code, message))
    resp.status_code = 503
    resp.headers["Retry-After"] = str(svc.config.retry_after_s)
    return resp


def request_deadline() -> Deadline:
    """This request's deadline: ``search_deadline_ms`` from when it started (from now outside a bounded view)."""
    deadline = g.get("deadline")
    if deadline is None:
        deadline = g.deadline = Deadline.after(current_app.extensions["shopsearch"].config.search_deadline_ms / 1000)
    return deadline


def init_app(app: Flask, cfg: Settings) -> None:
    """Bound the in-flight searches of this worker and answer overload with fast 503s; call after
    api/limits.py's ``init_app`` (a client over its rate limit gets its 429 first)."""
    bound = cfg.search_max_inflight
    slots = threading.BoundedSemaphore(bound) if bound > 0 else None

    @app.before_request
    def _take_slot():
        view = current_app.view_functions.get(request.endpoint or "")
        if not getattr(view, BOUNDED_ATTR, False):
            return None
        # Once per process, what every search needs is built before the first shopper's deadline starts.
        current_app.extensions["shopsearch"].warm()
        request_deadline()  # the deadline starts with the request, before any queueing for the engine
        if slots is None:
            return None
        if not slots.acquire(blocking=False):
            log.info("shedding %s: %d searches in flight in this worker", request.path, bound)
            return _shed("overloaded", f"this server is running its {bound} searches at a time; retry after the "
                                       "Retry-After seconds", "inflight")
        g.search_slot = True
        return None

    @app.teardown_request
    def _release_slot(exc: BaseException | None) -> None:
        if g.pop("search_slot", False) and slots is not None:
            slots.release()

    @app.errorhandler(EngineBusy)
    def _engine_busy(exc: EngineBusy):
        log.warning("engine saturated, request shed: %s", exc)
        return _shed("overloaded", "the search engine is saturated; retry after the Retry-After seconds",
                     "engine_busy")

    @app.errorhandler(DeadlineExceeded)
    def _deadline(exc: DeadlineExceeded):
        log.warning("nothing served within the deadline (%s): %s", exc.stage, exc)
        ms = current_app.extensions["shopsearch"].config.search_deadline_ms
        return _shed("deadline_exceeded", f"no results within the {ms} ms search deadline; retry after the "
                                          "Retry-After seconds", "deadline")
