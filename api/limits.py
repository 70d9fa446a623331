"""Rate limits (flask-limiter): a search budget and an events budget, each per API key and per client IP.

A view joins a budget with :func:`budget` (``search``: /search, /suggest, /products...; ``events``: POST /events);
other views are not limited here. Each budget is one counter across its endpoints. A breach answers 429 in the
API's JSON error format with ``Retry-After`` (seconds, at least 1) and ``X-RateLimit-Limit``,
``X-RateLimit-Remaining`` and ``X-RateLimit-Reset`` (epoch seconds), which every limited response carries.

Counters live in Redis when the ``redis_url`` setting is set, so every gunicorn worker and every host behind the
same Redis share them; otherwise each worker counts in its own memory (with N workers a client gets up to N times
the budget). The moving-window strategy counts exactly: at most the limit in any window. If Redis goes away the
limits fall back to per-worker memory (logged) rather than failing searches.

    >>> @budget("search")
    ... def view(): ...
    >>> view.shopsearch_budget
    'search'
"""

from __future__ import annotations

import logging
from typing import Callable, TypeVar

from flask import Flask, current_app, g, jsonify, request
from flask_limiter import Limit, Limiter, RateLimitExceeded
from limits import parse_many

from shopsearch.settings import Settings

from .errors import error_body

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable)
BUDGETS = ("search", "events")
BUDGET_ATTR = "shopsearch_budget"


def budget(name: str) -> Callable[[F], F]:
    """Count a view against budget ``name`` (``search`` or ``events``)."""
    if name not in BUDGETS:
        raise ValueError(f"budget must be one of {', '.join(BUDGETS)}; got {name!r}")

    def mark(view: F) -> F:
        setattr(view, BUDGET_ATTR, name)
        return view

    return mark


def _budget_of_request() -> str | None:
    view = current_app.view_functions.get(request.endpoint or "")
    return getattr(view, BUDGET_ATTR, None)


def _key_id() -> str:
    key = g.get("api_key")
    return f"key:{key.id}" if key is not None else "key:-"


def _client_ip() -> str:
    return f"ip:{request.remote_addr or '-'}"


def _limit(cfg: Settings, name: str, per: str) -> Limit:
    option = f"rate_limit_{name}_{per}"
    value = getattr(cfg, option)
    try:
        parse_many(value)
    except ValueError:
        raise ValueError(f"{option}={value!r}: not a rate limit; write e.g. 20/second or 20/second;600/minute "
                         "(several separated by ;)") from None

    def exempt() -> bool:
        # per-key budgets need a key: local mode and public calls are bounded by the per-IP budget alone
        return _budget_of_request() != name or (per == "key" and g.get("api_key") is None)

    return Limit(value, key_function=_key_id if per == "key" else _client_ip, scope=f"{name}-{per}", shared=True,
                 exempt_when=exempt, error_message=f"{name} rate limit per {'API key' if per == 'key' else 'client IP'}"
                                                   f" ({value})")


def storage_uri(cfg: Settings) -> str:
    """Where counters live: the ``redis_url`` setting, else this process's memory."""
    return cfg.redis_url.get_secret_value() if cfg.redis_url is not None else "memory://"


def init_app(app: Flask, cfg: Settings) -> Limiter:
    """Limit ``app``'s budgeted views by the settings; call after api/auth.py's hook (the key identifies callers).

    Raises:
        ValueError: a limit setting that is not a rate limit (named).
    """
    limits = [_limit(cfg, name, per) for name in BUDGETS for per in ("key", "ip")]

    @app.after_request
    def _tightest_headers(resp):
        # Runs after the limiter's hook, which describes the first limit of the shortest window (the per-key one),
        # so a client pacing itself by X-RateLimit-Remaining ran into the per-IP limit unwarned: describe the one
        # nearest to running out instead.
        applied = limiter.current_limits if resp.status_code != 429 else []
        if len(applied) > 1 and "X-RateLimit-Remaining" in resp.headers:
            try:
                tight = min(applied, key=lambda lim: lim.remaining)
                resp.headers["X-RateLimit-Limit"] = str(tight.limit.amount)
                resp.headers["X-RateLimit-Remaining"] = str(tight.remaining)
                resp.headers["X-RateLimit-Reset"] = str(tight.reset_at)
            except Exception:  # the storage failed: keep the limiter's headers (it swallows such errors too)
                log.warning("rate limit headers: storage error", exc_info=True)
        return resp

    @app.after_request
    def _own_retry_after(resp):
        # Registered before the limiter's hook, so it runs after it (Flask runs them in reverse). The limiter writes
        # Retry-After on every limited response; only a 429 keeps its value (at least 1: a window ending within the
        # second would say 0); any other answer gets back its own (a 503's) or none.
        if resp.status_code == 429:
            if int(resp.headers.get("Retry-After", "1")) < 1:
                resp.headers["Retry-After"] = "1"
        elif g.get("own_retry_after") is not None:
            resp.headers["Retry-After"] = g.own_retry_after
        else:
            resp.headers.pop("Retry-After", None)
        return resp

    limiter = Limiter(_client_ip, default_limits=limits, storage_uri=storage_uri(cfg), strategy="moving-window",
                      headers_enabled=True, key_prefix="shopsearch", enabled=cfg.rate_limits,
                      in_memory_fallback_enabled=True, swallow_errors=True)
    limiter.init_app(app)

    @app.after_request
    def _keep_retry_after(resp):
        g.own_retry_after = resp.headers.get("Retry-After")  # runs before the limiter's hook
        return resp

    @app.errorhandler(RateLimitExceeded)
    def _too_many(exc: RateLimitExceeded):
        resp = jsonify(error_body("rate_limited", f"{exc.description} exceeded; retry after the Retry-After "
                                                  "seconds"))
        resp.status_code = 429
        return resp

    return limiter
