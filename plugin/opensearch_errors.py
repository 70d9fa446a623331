"""Turn opensearch-py exceptions and error bodies into the engine contract's errors.

Connection errors, timeouts and 5xx -> EngineUnavailable (naming the URL); 429 (the cluster rejected the request: its
queues are full) -> EngineBusy, an EngineUnavailable the API sheds at once; a 404 for a missing index ->
IndexNotFound; a 400 (bad query or document) -> ValueError carrying OpenSearch's reason.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

from .engine import EngineBusy, EngineUnavailable, IndexNotFound

_MISSING_INDEX_TYPES = {"index_not_found_exception", "no_such_index_exception"}


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
    return ValueError(f"OpenSearch rejected the request on index {index!r} ({status}): {reason}")


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

    try:
        yield
    except TransportError as exc:
        raise translate(exc, index=index, url=url, user=user) from exc
