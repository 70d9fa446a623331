"""Prometheus metrics for one app: requests and latency per endpoint/status, search stages, engine errors.

Each app owns its registry, so several apps (tests) never share counters. Under gunicorn every worker counts
its own requests; serve with ``--workers 1`` (threads give the concurrency) for exact totals in /metrics.
"""

from __future__ import annotations

import re
import time

from flask import Flask, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

_CONVERTER = re.compile(r"<\w+:")  # "<path:product_id>" -> "<product_id>"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})  # any other: "other"

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """The app's metric families; :meth:`init_app` times every request."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("shopsearch_http_requests", "HTTP requests by endpoint, method and status",
                                ["endpoint", "method", "status"], registry=self.registry)
        self.latency = Histogram("shopsearch_http_request_duration_seconds", "HTTP request latency",
                                 ["endpoint", "method", "status"], buckets=LATENCY_BUCKETS,
                                 registry=self.registry)
        self.stages = Histogram("shopsearch_search_stage_duration_seconds",
                                "Search stage latency from the response's timings_ms", ["stage"],
                                buckets=LATENCY_BUCKETS, registry=self.registry)
        self.engine_errors = Counter("shopsearch_engine_errors",
                                     "Engine outages, timeouts and refusals of the API's own requests", ["kind"],
                                     registry=self.registry)
        self.degraded = Counter("shopsearch_search_degraded", "Searches answered in degraded mode",
                                registry=self.registry)
        self.degraded_reasons = Counter("shopsearch_search_degraded_reasons", "Degraded searches by reason code "
                                        "(<stage>:<cause>, e.g. rerank:deadline; a search may have several)",
                                        ["reason"], registry=self.registry)
        self.shed = Counter("shopsearch_search_shed", "Requests answered 503 at once to shed load (inflight: the "
                            "worker's bound; engine_busy: the engine rejected it; deadline: nothing in time)",
                            ["reason"], registry=self.registry)
        self.events = Counter("shopsearch_events", "Behaviour events stored, by type", ["type"],
                              registry=self.registry)
        self.ubi_dropped = Counter("shopsearch_ubi_records_dropped", "UBI records not logged because the spool "
                                   "was full or its disk failed (kind: query, or event for a POST /events answered "
                                   "503)", ["kind"],
                                   registry=self.registry)

    def init_app(self, app: Flask) -> None:
        """Time every request and count it under its route template (``/products/<product_id>``)."""

        @app.before_request
        def _start() -> None:
            g.metrics_start = time.perf_counter()

        @app.after_request
        def _count(resp):
            start = g.pop("metrics_start", None)
            # the template without converter names, so a dashboard's label outlives a change of converter
            rule = _CONVERTER.sub("<", request.url_rule.rule) if request.url_rule is not None else "unmatched"
            # a client chooses the method: one it makes up must not add a series
            method = request.method if request.method in _METHODS else "other"
            labels = (rule, method, str(resp.status_code))
            self.requests.labels(*labels).inc()
            if start is not None:
                self.latency.labels(*labels).observe(time.perf_counter() - start)
            return resp

    def observe_search(self, timings_ms: dict[str, float], degraded: bool, reasons: tuple[str, ...] = ()) -> None:
        """Record each stage of one search (milliseconds in, seconds out), and why it degraded."""
        for stage, ms in timings_ms.items():
            self.stages.labels(stage).observe(max(float(ms), 0.0) / 1000.0)
        if degraded:
            self.degraded.inc()
        for reason in reasons:
            self.degraded_reasons.labels(reason).inc()

    def engine_error(self, kind: str) -> None:
        """Count an engine outage (``unavailable``), a timeout, or a request of the API's own it refused
        (``rejected``)."""
        self.engine_errors.labels(kind).inc()

    def exposition(self) -> Response:
        """The Prometheus text format of every metric."""
        return Response(generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})
