"""Turn opensearch-py exceptions and error bodies into the engine contract's errors.

Connection errors, timeouts, 5xx and a closed index -> EngineUnavailable (naming the URL); 429 (the cluster rejected
the request: its queues are full) -> EngineBusy, an EngineUnavailable the API sheds at once; a 404 for a missing
index -> IndexNotFound; another 4xx (a bad query or document) -> EngineRejected, a ValueError carrying OpenSearch's
reason.

A search answer (an ``_msearch`` item or a ``_search`` response) can fail with HTTP 200 around it: an item's own
error, or ``_shards.failed > 0`` (some shards did not answer: the hit list is incomplete). :func:`search_failure`
says what went wrong and whether sending it again may help (the adapter retries those: a lost node's shards). A
scroll (opensearch-py's ``helpers.scan``) some shards did not answer raises ScanError -> EngineUnavailable; one
whose search context is gone (it expired, or the node that held it left) answers 404 -> ScrollLost, an
EngineUnavailable a scan can start over from.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

from .engine import EngineBusy, EngineRejected, EngineUnavailable, IndexNotFound

_MISSING_INDEX_TYPES = {"index_not_found_exception", "no_such_index_exception"}
_LOST_SCROLL = "search_context_missing_exception"
_CLOSED_INDEX = "index_closed_exception"


class ScrollLost(EngineUnavailable):
    """A scroll's search context is gone (it expired, or the node holding it left): the scan must start over."""


def error_reason(error: Any) -> str:
    """A one-line reason from an OpenSearch error body (``{"type", "reason", "root_cause", "caused_by"}``).

    The deepest ``caused_by`` usually says what was actually wrong (e.g. the vector dimension).

    >>> error_reason({"type": "x", "reason": "outer", "caused_by": {"type": "y", "reason": "inner"}})
    'x: outer (caused by y: inner)'
    """
    if not isinstance(error, dict):
        return str(error)
    text = f"{error.get('type', 'error')}: {error.get('reason') or ''}".rstrip(": ")
    cause, deepest = error.get("caused_by"), None
    while isinstance(cause, dict):
        deepest, cause = cause, cause.get("caused_by")
    if deepest is None and error.get("type") == "search_phase_execution_exception":
        roots = error.get("root_cause") or []
        deepest = roots[0] if roots else None
        # root_cause of a shard failure can be less specific than failed_shards[].reason.caused_by
        for shard in error.get("failed_shards") or []:
            shard_reason = shard.get("reason")
            if isinstance(shard_reason, dict):
                deepest = shard_reason
                while isinstance(deepest.get("caused_by"), dict):
                    deepest = deepest["caused_by"]
                break
    if deepest is not None:
        text += f" (caused by {deepest.get('type', 'error')}: {deepest.get('reason')})"
    return text


def _error_body(info: Any) -> Any:
    return info.get("error", info) if isinstance(info, dict) else info


def _missing_index(error: Any) -> str | None:
    """The index name when ``error`` says an index does not exist, else None."""
    if not isinstance(error, dict):
        return None
    for candidate in [error, *(error.get("root_cause") or [])]:
        if isinstance(candidate, dict) and candidate.get("type") in _MISSING_INDEX_TYPES:
            return candidate.get("index") or candidate.get("resource.id") or ""
    return None


def _types(error: Any) -> set[str]:
    """The error types an error body names: its own, its root causes' and its failed shards' reasons'."""
    if not isinstance(error, dict):
        return set()
    found = [error, *(error.get("root_cause") or []),
             *(f.get("reason") for f in error.get("failed_shards") or [] if isinstance(f, dict))]
    return {e.get("type") for e in found if isinstance(e, dict) and isinstance(e.get("type"), str)}


def translate_status(status: Any, error: Any, *, index: str, url: str, user: str | None = None) -> Exception:
    """The contract exception for an HTTP ``status`` with OpenSearch ``error`` body (e.g. one msearch response).

    ``user``: the basic-auth user the client sent, named when the cluster refuses it (401/403).
    """
    reason = error_reason(error)
    if status == 429:
        return EngineBusy(f"OpenSearch at {url} is saturated ({status}): {reason}")
    if not isinstance(status, int) or status >= 500:
        return EngineUnavailable(f"OpenSearch at {url} failed ({status}): {reason}")
    who = f"user {user!r}" if user else "no user (opensearch_user is not set)"
    if status == 401:
        detail = f" ({reason})" if error else ""  # the security plugin answers 401 with no JSON body
        return EngineUnavailable(f"OpenSearch authentication failed for {who} at {url} (401): check opensearch_user "
                                 f"and opensearch_password{detail}")
    if status == 403:
        on = f" on index {index!r}" if index else ""
        return EngineUnavailable(f"OpenSearch at {url} denied {who}{on} (403): the user lacks the permission "
                                 f"({reason})")
    if status == 404:
        missing = _missing_index(error)
        if missing is not None:
            return IndexNotFound(missing or index)
        if _LOST_SCROLL in _types(error):
            return ScrollLost(f"OpenSearch at {url} lost the scroll over index {index!r} (its node left or it "
                              f"expired): {reason}")
    if _CLOSED_INDEX in _types(error):  # an operator closed it: an outage, not the request's fault
        return EngineUnavailable(f"OpenSearch at {url}: index {index!r} is closed ({status}): {reason}")
    return EngineRejected(f"OpenSearch rejected the request on index {index!r} ({status}): {reason}")


def search_failure(answer: Any, *, index: str, url: str,
                   user: str | None = None) -> tuple[Exception, bool] | None:
    """``(the contract exception, transient)`` for a failed search ``answer`` (an ``_msearch`` item, or a
    ``_search`` response), or None when it is whole.

    Transient (worth sending again, elsewhere or a moment later): a 5xx item (or one without a status), e.g. all
    shards failed or NoShardAvailableActionException while a lost node's replicas take over, and an answer some
    shards did not give (``_shards.failed > 0``: never served as if complete; EngineUnavailable when it persists).
    Not transient: 429 (EngineBusy: shed at once) and other 4xx (the request itself).

    >>> search_failure({"hits": {"hits": []}, "_shards": {"total": 1, "failed": 0}}, index="i", url="u") is None
    True
    >>> failures = [{"shard": 0, "reason": {"type": "node_closed_exception", "reason": "closed"}}]
    >>> exc, transient = search_failure({"_shards": {"total": 2, "failed": 1, "failures": failures}}, index="i",
    ...                                 url="u")
    >>> transient, str(exc)  # doctest: +NORMALIZE_WHITESPACE
    (True, "OpenSearch at u answered a search on index 'i' from 1 of 2 shards
            (1 failed: node_closed_exception: closed)")
    """
    if not isinstance(answer, dict):
        return EngineUnavailable(f"OpenSearch at {url} gave no search answer: {answer!r:.200}"), True
    if "error" in answer:
        status = answer.get("status")
        transient = not isinstance(status, int) or status >= 500
        return translate_status(status, answer["error"], index=index, url=url, user=user), transient
    shards = answer.get("_shards")
    failed = shards.get("failed") if isinstance(shards, dict) else None
    if not isinstance(failed, int) or failed <= 0:
        return None
    total = shards.get("total")
    failures = shards.get("failures") or [{}]
    first = failures[0] if isinstance(failures[0], dict) else {}
    if _request_error(first):  # the query itself fails on those shards (a bad field...): asking again cannot help
        status = first.get("status") if isinstance(first.get("status"), int) else 400
        return translate_status(status, first.get("reason") or {}, index=index, url=url, user=user), False
    reason = error_reason(first.get("reason")) if first.get("reason") is not None else "no reason given"
    given = f"{total - failed} of {total}" if isinstance(total, int) else "not all"
    return EngineUnavailable(f"OpenSearch at {url} answered a search on index {index!r} from {given} shards "
                             f"({failed} failed: {reason})"), True


def transient_request_failure(exc: BaseException) -> bool:
    """Whether a whole request's failure ``exc`` (translated: an EngineUnavailable) may pass in a moment: its
    connection refused or reset (on every node the client tried), or a 5xx answer that does not blame the request
    (e.g. all shards failed while a lost node's copies are given up). The adapter sends such a search once more
    after a backoff. Not a timeout, connecting or reading (the time is spent), a TLS failure (the configuration),
    a 429 (EngineBusy: shed at once) or a refusal of the request itself.

    >>> from opensearchpy.exceptions import ConnectionError, ConnectionTimeout
    >>> def raised(cause):
    ...     try:
    ...         with engine_errors(index="i", url="u"):
    ...             raise cause
    ...     except EngineUnavailable as exc:
    ...         return exc
    >>> transient_request_failure(raised(ConnectionError("N/A", "reset by peer", None)))
    True
    >>> transient_request_failure(raised(ConnectionTimeout("TIMEOUT", "read timed out", None)))
    False
    """
    from opensearchpy.exceptions import ConnectionError, ConnectionTimeout, SSLError, TransportError
    from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

    if not isinstance(exc, EngineUnavailable) or isinstance(exc, EngineBusy):
        return False
    cause = exc.__cause__
    if isinstance(cause, (ConnectionTimeout, SSLError)):
        return False
    if isinstance(cause, ConnectionError):
        # opensearch-py reports a connect timeout as a ConnectionError; urllib3 2 derives a refusal from it
        info = cause.info
        return not isinstance(info, ConnectTimeoutError) or isinstance(info, NewConnectionError)
    if not isinstance(cause, TransportError) or not isinstance(cause.status_code, int) or cause.status_code < 500:
        return False
    return not _types(_error_body(cause.info)) & _REQUEST_ERROR_TYPES


# Shard failures that come from the request itself, not from a shard's node: the same query fails again.
_REQUEST_ERROR_TYPES = {"query_shard_exception", "illegal_argument_exception", "parsing_exception",
                        "search_parse_exception", "x_content_parse_exception", "number_format_exception"}


def _request_error(failure: dict[str, Any]) -> bool:
    status = failure.get("status")
    if isinstance(status, int):
        return 400 <= status < 500 and status != 429
    reason = failure.get("reason")
    return isinstance(reason, dict) and reason.get("type") in _REQUEST_ERROR_TYPES


def translate(exc: Exception, *, index: str, url: str, user: str | None = None) -> Exception:
    """The contract exception for an opensearch-py exception (returns ``exc`` itself when nothing fits)."""
    from opensearchpy.exceptions import ConnectionError, ConnectionTimeout, TransportError

    if isinstance(exc, ConnectionTimeout):
        return EngineUnavailable(f"OpenSearch at {url} timed out: {exc.info}")
    if isinstance(exc, ConnectionError):
        return EngineUnavailable(f"OpenSearch at {url} is unreachable: {exc.info}")
    if isinstance(exc, TransportError):
        return translate_status(exc.status_code, _error_body(exc.info), index=index, url=url, user=user)
    return exc


@contextmanager
def engine_errors(*, index: str, url: str, user: str | None = None) -> Iterator[None]:
    """Re-raise opensearch-py exceptions inside the block as EngineUnavailable / IndexNotFound / ValueError."""
    from opensearchpy.exceptions import TransportError
    from opensearchpy.helpers import ScanError

    try:
        yield
    except TransportError as exc:
        raise translate(exc, index=index, url=url, user=user) from exc
    except ScanError as exc:  # a scroll some shards did not answer: what it read is incomplete, as a partial search
        raise EngineUnavailable(f"OpenSearch at {url} could not read all of index {index!r}: {exc}") from exc
