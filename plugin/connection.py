"""The opensearch-py client built from the settings' ``opensearch_*`` options (see shopsearch.settings).

The URL, basic-auth pair, certificate verification and CA bundle are validated where they are resolved
(:class:`shopsearch.settings.Settings`); this module only turns them into client arguments.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

from shopsearch.settings import Settings, load_settings

RETRY_ON_STATUS = (502, 503, 504)


def display_url(url: str) -> str:
    """``url`` with any ``user:password@`` removed.

    >>> display_url("https://admin:secret@search.local:9200")
    'https://search.local:9200'
    """
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host in ("localhost", "::1") or host.startswith("127.")


def client_kwargs(settings: Settings, *, timeout: float = 10.0, max_retries: int = 2) -> dict[str, Any]:
    """The keyword arguments for ``opensearchpy.OpenSearch`` (pure; :func:`make_client` uses them).

    >>> client_kwargs(load_settings(environ={}), timeout=5)["retry_on_status"]
    (502, 503, 504)
    """
    if timeout <= 0:
        raise ValueError(f"timeout={timeout!r} must be > 0 seconds")
    if max_retries < 0:
        raise ValueError(f"max_retries={max_retries!r} must be >= 0")
    kwargs: dict[str, Any] = {
        "hosts": [settings.opensearch_url],
        "timeout": timeout,
        # gzip costs ~1 ms CPU per bulk document; worth it across a network, pure waste on loopback.
        "http_compress": not _is_loopback(settings.opensearch_url),
        "retry_on_timeout": True,
        "max_retries": max_retries,
        "retry_on_status": RETRY_ON_STATUS,
    }
    if settings.opensearch_user is not None and settings.opensearch_password is not None:
        kwargs["http_auth"] = (settings.opensearch_user, settings.opensearch_password.get_secret_value())
    if urlsplit(settings.opensearch_url).scheme == "https":
        kwargs["use_ssl"] = True
        kwargs["verify_certs"] = settings.opensearch_verify_certs
        # An explicit opt-out must not turn into a warning per request (pytest runs with warnings as errors).
        kwargs["ssl_show_warn"] = settings.opensearch_verify_certs
        if settings.opensearch_ca_certs:
            kwargs["ca_certs"] = str(settings.opensearch_ca_certs)
    return kwargs


def make_client(url: str | None = None, *, timeout: float = 10.0, max_retries: int = 2,
                settings: Settings | None = None) -> Any:
    """Build an ``opensearchpy.OpenSearch`` client; nothing is sent until the first request.

    Args:
        url: node URL, instead of the settings' ``opensearch_url``.
        timeout: per-request timeout in seconds.
        max_retries: retries on connection errors, timeouts and 502/503/504.
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
    return OpenSearch(**client_kwargs(settings, timeout=timeout, max_retries=max_retries))
