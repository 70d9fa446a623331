"""The latency bench's engine side: record the exact requests the adapter sends, replay them with a bare client.

:class:`RequestRecorder` wraps the opensearch-py transport of an :class:`OpenSearchEngine`, so every request the
adapter makes (``_msearch`` with its legs and facets, the page's ids ``_search``) is kept byte for byte.
:class:`DirectClient` posts those same bytes over a plain keep-alive ``http.client`` connection, times the round
trip, and can send each leg of an ``_msearch`` alone as its own ``_search``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

CLIENT_PARAMS = ("request_timeout", "ignore")


@dataclass(frozen=True)
class Recorded:
    """One request as the adapter sent it: method, path (with index), query params and the body bytes."""

    method: str
    path: str
    params: dict[str, Any]
    body: bytes

    @property
    def is_msearch(self) -> bool:
        return self.path.endswith("/_msearch")

    def legs(self) -> list[tuple[str, bytes]]:
        """The ``(index, body)`` of each search in an ``_msearch`` (header and body lines paired)."""
        lines = [ln for ln in self.body.decode("utf-8").split("\n") if ln.strip()]
        if len(lines) % 2:
            raise ValueError(f"an _msearch body must hold header/body line pairs; got {len(lines)} lines")
        out = []
        for header, body in zip(lines[0::2], lines[1::2]):
            index = json.loads(header).get("index") or self.path.split("/")[1]
            out.append((index, body.encode("utf-8")))
        return out


class RequestRecorder:
    """Keeps every request the wrapped transport performs; :meth:`take` returns and forgets them.

    Only a list append is added to the adapter's path (well under a microsecond per request).
    """

    def __init__(self, transport: Any):
        self._transport = transport
        self._inner = transport.perform_request
        self._serializer = transport.serializer
        self._seen: list[Recorded] = []
        transport.perform_request = self._perform

    def _perform(self, method: str, url: str, params: Any = None, body: Any = None, **kwargs: Any) -> Any:
        # request_timeout and ignore are the client's own options (the transport takes them out), not the URL's
        sent = {k: v for k, v in (params or {}).items() if k not in CLIENT_PARAMS}
        self._seen.append(Recorded(method, url, sent, body))
        return self._inner(method, url, params=params, body=body, **kwargs)

    def take(self) -> list[Recorded]:
        """The requests since the last call, bodies serialised exactly as the transport sends them."""
        seen, self._seen = self._seen, []
        out = []
        for r in seen:
            body = r.body
            if body is not None and not isinstance(body, (str, bytes)):
                body = self._serializer.dumps(body)
            if isinstance(body, str):
                body = body.encode("utf-8")
            out.append(Recorded(r.method, r.path, r.params, body or b""))
        return out

    def close(self) -> None:
        """Put the transport's own method back."""
        self._transport.perform_request = self._inner


@dataclass
class DirectTiming:
    """One replayed request: wall milliseconds (send to last byte read), OpenSearch ``took`` per search."""

    wall_ms: float
    took_ms: list[float] = field(default_factory=list)
    decode_ms: float = 0.0


class DirectClient:
    """Sends recorded requests straight to OpenSearch over one keep-alive ``http.client`` connection.

    The barest client the standard library has (no retries, no session machinery), so what it measures is the
    round trip itself.

    Args:
        url: node URL (``http://127.0.0.1:9200``; plain http without credentials).
        timeout: seconds per request.
    """

    def __init__(self, url: str, timeout: float = 10.0):
        import http.client
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname or parts.username:
            raise ValueError(f"opensearch url must be plain http://host[:port] for the direct client; got {url!r}")
        self._conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)

    def _post(self, path: str, params: dict[str, Any], body: bytes, method: str = "POST") -> DirectTiming:
        from urllib.parse import urlencode

        query = ("?" + urlencode({k: str(v).lower() if isinstance(v, bool) else v for k, v in params.items()})
                 if params else "")
        t0 = time.perf_counter()
        self._conn.request(method, path + query, body=body, headers={"Content-Type": "application/json"})
        resp = self._conn.getresponse()
        raw = resp.read()  # the whole body: the bytes a client must receive before it can decode them
        wall = (time.perf_counter() - t0) * 1000.0
        if resp.status != 200:
            raise RuntimeError(f"{method} {path} answered {resp.status}: {raw[:300]!r}")
        t1 = time.perf_counter()
        data = json.loads(raw)
        decode = (time.perf_counter() - t1) * 1000.0
        subs = data.get("responses") if isinstance(data.get("responses"), list) else [data]
        for sub in subs:
            if "error" in sub:
                raise RuntimeError(f"{path}: OpenSearch error {str(sub['error'])[:300]}")
        return DirectTiming(wall, [float(s.get("took", 0.0)) for s in subs], decode)

    def replay(self, rec: Recorded) -> DirectTiming:
        """Send one recorded request unchanged."""
        return self._post(rec.path, rec.params, rec.body, rec.method)

    def leg_alone(self, index: str, body: bytes) -> DirectTiming:
        """One leg of an ``_msearch`` sent as its own ``_search``."""
        return self._post(f"/{index}/_search", {}, body)

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()
