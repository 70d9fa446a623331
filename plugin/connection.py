"""The opensearch-py client built from the settings' ``opensearch_*`` options (see shopsearch.settings).

The URLs, basic-auth pair, certificate verification and CA bundle are validated where they are resolved
(:class:`shopsearch.settings.Settings`); this module turns them into client arguments, and refuses credentials
over plain http (basic auth sends the password itself) unless ``opensearch_allow_insecure_http_auth`` allows it.
With https the client verifies the node's certificate against ``opensearch_ca_certs`` (else the system's CAs).

On a cluster the client gets every configured node: opensearch-py's transport round-robins requests over them,
marks a node that fails as dead for a while and retries the request on the next one (``max_retries`` times, on
connection errors, timeouts and 502/503/504). Every request shopsearch sends is safe to repeat: searches, counts
and health are reads, and bulk writes carry explicit ids (a repeated index or delete ends in the same state).
Sniffing (``opensearch_sniff``) adds the nodes the cluster reports, once a minute and after a failure (never at
construction, so building a client still contacts nothing).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

from shopsearch.settings import Settings, load_settings

RETRY_ON_STATUS = (502, 503, 504)


# Seconds between sniffs of the cluster's node list when sniffing is on.
SNIFF_INTERVAL_S = 60.0


def display_url(url: str) -> str:
    """``url`` (one, or several comma-separated) with any ``user:password@`` removed.

    >>> display_url("https://admin:secret@search.local:9200,https://admin:secret@b.local:9200")
    'https://search.local:9200,https://b.local:9200'
    """
    shown = []
    for one in url.split(","):
        parts = urlsplit(one)
        shown.append(urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1])) if "@" in parts.netloc
                     else one)
    return ",".join(shown)


# A request's timeout outside serving (bulk loads, scans, commands): a batch's requests take longer than a shopper's,
# which get the engine_timeout_s setting instead.
JOB_TIMEOUT_S = 10.0


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host in ("localhost", "::1") or host.startswith("127.")


def client_kwargs(settings: Settings, *, timeout: float = JOB_TIMEOUT_S, max_retries: int = 2,
                  retry_on_timeout: bool = True) -> dict[str, Any]:
    """The keyword arguments for ``opensearchpy.OpenSearch`` (pure; :func:`make_client` uses them).

    Raises ValueError for a bad ``timeout``/``max_retries``, or basic-auth credentials with an http URL while
    ``opensearch_allow_insecure_http_auth`` is off.

    >>> client_kwargs(load_settings(environ={}), timeout=5)["retry_on_status"]
    (502, 503, 504)
    """
    if timeout <= 0:
        raise ValueError(f"timeout={timeout!r} must be > 0 seconds")
    if max_retries < 0:
        raise ValueError(f"max_retries={max_retries!r} must be >= 0")
    urls = settings.opensearch_urls
    kwargs: dict[str, Any] = {
        "hosts": urls,
        "timeout": timeout,
        # gzip costs ~1 ms CPU per bulk document; worth it across a network, pure waste on loopback.
        "http_compress": not all(_is_loopback(u) for u in urls),
        "retry_on_timeout": retry_on_timeout,
        "max_retries": max_retries,
        "retry_on_status": RETRY_ON_STATUS,
        # One pool per node; each API thread holds one connection while it waits for the engine.
        "pool_maxsize": settings.opensearch_pool_maxsize,
    }
    if settings.opensearch_sniff:
        kwargs |= {"sniff_on_connection_fail": True, "sniffer_timeout": SNIFF_INTERVAL_S}
    if settings.opensearch_user is not None and settings.opensearch_password is not None:
        kwargs["http_auth"] = (settings.opensearch_user, settings.opensearch_password.get_secret_value())
    sends_password = "http_auth" in kwargs or any("@" in urlsplit(u).netloc for u in urls)
    if sends_password and urlsplit(urls[0]).scheme == "http" and not settings.opensearch_allow_insecure_http_auth:
        # Basic auth is the password itself, base64-encoded: over plain http anyone on the path can read it.
        raise ValueError(f"opensearch_url={display_url(settings.opensearch_url)!r} is plain http but basic-auth "
                         f"credentials are set (opensearch_user/opensearch_password or user:password@ in the URL): "
                         f"use an https URL, or set opensearch_allow_insecure_http_auth = true "
                         f"(OPENSEARCH_ALLOW_INSECURE_HTTP_AUTH=true) to send the password in clear anyway")
    if urlsplit(urls[0]).scheme == "https":
        kwargs["use_ssl"] = True
        kwargs["verify_certs"] = settings.opensearch_verify_certs
        # An explicit opt-out must not turn into a warning per request (pytest runs with warnings as errors).
        kwargs["ssl_show_warn"] = settings.opensearch_verify_certs
        if settings.opensearch_ca_certs:
            kwargs["ca_certs"] = str(settings.opensearch_ca_certs)
    return kwargs


def make_client(url: str | None = None, *, timeout: float = JOB_TIMEOUT_S, max_retries: int = 2,
                retry_on_timeout: bool = True, settings: Settings | None = None) -> Any:
    """Build an ``opensearchpy.OpenSearch`` client; nothing is sent until the first request.

    Args:
        url: node URL (or several, comma-separated), instead of the settings' ``opensearch_url``.
        timeout: per-request timeout in seconds.
        max_retries: retries on connection errors, timeouts and 502/503/504, each on the next node.
        retry_on_timeout: whether a timeout is retried too (a caller with a deadline says False: a node that
            hangs has used the time, while a refused connection costs nothing to retry elsewhere).
        settings: the resolved settings (default :func:`shopsearch.settings.load_settings`).
    Returns:
        The client (with gzip request compression and retries configured).
    Raises:
        ValueError: invalid URL, auth pair, boolean or timeout.

    >>> make_client("http://127.0.0.1:9200", timeout=2).transport.max_retries
    2
    """
    from opensearchpy import OpenSearch

    settings = settings or load_settings()
    if url:
        settings = settings.replace(opensearch_url=url)
    return OpenSearch(**client_kwargs(settings, timeout=timeout, max_retries=max_retries,
                                      retry_on_timeout=retry_on_timeout))
