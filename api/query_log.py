"""The UBI query record of a served /search (shopsearch/ubi.py's :class:`UbiQuery`), built from the pipeline's
own response and spooled for the store.

Besides the profile, filters and page, a record says how the list was shown: its ``sort``, ``explain`` (a
relevance console's search) and a merchandising ``redirect`` (the storefront navigated away from the hits).

A degraded page (a stage cut short by its budget, the deadline or a failure) records its reasons under
``query_attributes.degraded`` (plugin/search_types.py's DEGRADED_REASONS codes).

Feature logging: for the top ``ubi_feature_depth`` results, ``query_attributes.features[<product id>]`` holds
each stage's value exactly as the pipeline computed it — the same numbers ``explain=true`` shows under a hit's
``stages`` (:func:`explained_stages` serves both), so training never recomputes them with other code. The
conversion model's per-feature ``contributions`` are computed only when explaining and are not logged.

A full spool never fails a search: the record is dropped and counted in ``shopsearch_ubi_records_dropped_total
{kind="query"}``.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import asdict
from typing import Any, Mapping

from shopsearch.events import MAX_ID
from shopsearch.timestamps import format_timestamp, utcnow
from shopsearch.plugin.search_types import ScoredHit, SearchResponse
from shopsearch.plugin.ubi_spool import SpoolFull
from shopsearch.ubi import UbiQuery

log = logging.getLogger(__name__)


def explained_stages(hit: ScoredHit) -> dict[str, float]:
    """A hit's stage values as ``explain=true`` returns them (and the query log records them)."""
    return {k: float(v) for k, v in hit.stages.items()}


def client_id(params: Any) -> str | None:
    """The UBI client: the ``client_id`` parameter, else the session (when it fits UBI's 100 characters)."""
    if params.client_id:
        return params.client_id
    session = params.session_id
    return session if session and len(session) <= MAX_ID else None


def query_record(params: Any, resp: SearchResponse, query_id: str, *, depth: int,
                 attributes: Mapping[str, Any] | None = None) -> UbiQuery:
    """The UBI query record of one served search.

    Args:
        params: the validated /search parameters (api/params.py).
        resp: the pipeline's response (the page served).
        query_id: the id the response returns.
        depth: how many of the served hits get their features logged.
        attributes: more query_attributes (the experiment and arm, when the client is in one).

    >>> query_record(params, resp, "q-1", depth=10).query_response_hit_ids  # doctest: +SKIP
    ['p1', 'p7', 'p2']
    """
    filters = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(params.filters()).items()
               if v not in (None, ())}
    attrs: dict[str, Any] = {"profile": resp.profile, "filters": filters, "page": resp.page, "size": resp.size,
                             "total": resp.total, "session_id": params.session_id, "user_id": params.user_id,
                             "simulated": bool(params.simulated),
                             # lists the shopper did not see in relevance order, or at all: click models skip them
                             "sort": params.sort, "explain": True if params.explain else None,
                             "redirect": resp.redirect,
                             # a stage cut short: the page is not the profile as designed (experiment reports count it)
                             "degraded": list(resp.degraded_reasons or ("unknown",)) if resp.degraded else None,
                             **(attributes or {}),
                             "features": {h.id: explained_stages(h) for h in resp.hits[:depth]}}
    return UbiQuery(query_id=query_id, client_id=client_id(params), user_query=resp.query,
                    query_response_id=uuid.uuid4().hex, query_response_hit_ids=[h.id for h in resp.hits],
                    timestamp=format_timestamp(utcnow()),
                    query_attributes={k: v for k, v in attrs.items() if v is not None})


def log_query(svc: Any, record: UbiQuery) -> bool:
    """Spool ``record`` for the store; False (dropped, counted, logged) when the spool is full or its disk fails:
    the search itself succeeded, so the shopper still gets the page."""
    try:
        svc.log_ubi([record], [])
    except SpoolFull:
        svc.metrics.ubi_dropped.labels("query").inc()
        log.warning("UBI spool full: query %s not logged", record.query_id)
        return False
    except OSError as exc:  # a full or unwritable disk under the spool
        svc.metrics.ubi_dropped.labels("query").inc()
        log.error("UBI spool write failed (%s): query %s not logged", exc, record.query_id)
        return False
    return True
