"""OpenSearch connection settings from the environment, and the opensearch-py client built from them.

Environment variables (all optional):

- ``OPENSEARCH_URL``: node URL (default ``http://127.0.0.1:9200``).
- ``OPENSEARCH_USER`` / ``OPENSEARCH_PASSWORD``: basic auth, both or neither.
- ``OPENSEARCH_VERIFY_CERTS``: ``true``/``false`` (default true; only used for https).
- ``OPENSEARCH_CA_CERTS``: path to a CA bundle for https.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Mapping
from urllib.parse import urlsplit, urlunsplit

DEFAULT_URL = "http://127.0.0.1:9200"
RETRY_ON_STATUS = (502, 503, 504)
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class ConnectionSettings:
    """Where and how to reach OpenSearch. ``password`` is hidden from ``repr``."""

    url: str = DEFAULT_URL
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    verify_certs: bool = True
    ca_certs: str | None = None

    @property
    def display_url(self) -> str:
        """The URL without any credentials, safe for logs and error messages."""
        return display_url(self.url)


def display_url(url: str) -> str:
    """``url`` with any ``user:password@`` removed.

    >>> display_url("https://admin:secret@search.local:9200")
    'https://search.local:9200'
    """
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def _parse_bool(name: str, value: str) -> bool:
    low = value.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError(f"{name}={value!r} is not a boolean; use one of {sorted(_TRUE | _FALSE)}")


def settings_from_env(url: str | None = None, env: Mapping[str, str] | None = None) -> ConnectionSettings:
    """Read connection settings from ``env`` (default ``os.environ``); an explicit ``url`` wins over OPENSEARCH_URL.

    Args:
        url: node URL; None means $OPENSEARCH_URL or ``http://127.0.0.1:9200``.
        env: the variables to read (tests pass a dict).
    Returns:
        The validated ConnectionSettings.
    Raises:
        ValueError: the URL is not http(s)://host[:port], only one of user/password is set, or
            OPENSEARCH_VERIFY_CERTS is not a boolean.

    >>> settings_from_env(env={}).url
    'http://127.0.0.1:9200'
    >>> settings_from_env("https://node:9200", env={"OPENSEARCH_VERIFY_CERTS": "false"}).verify_certs
    False
    """
    env = os.environ if env is None else env
    url = (url or env.get("OPENSEARCH_URL") or DEFAULT_URL).strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"url={display_url(url)!r} must look like http(s)://host[:port]")
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise ValueError(f"url={display_url(url)!r} has an invalid port: {exc}") from None
    user = env.get("OPENSEARCH_USER") or None
    password = env.get("OPENSEARCH_PASSWORD") or None
    if (user is None) != (password is None):
        raise ValueError("OPENSEARCH_USER and OPENSEARCH_PASSWORD must be set together (basic auth); got only "
                         + ("OPENSEARCH_USER" if user else "OPENSEARCH_PASSWORD"))
    raw_verify = env.get("OPENSEARCH_VERIFY_CERTS")
    verify = True if raw_verify in (None, "") else _parse_bool("OPENSEARCH_VERIFY_CERTS", raw_verify)
    return ConnectionSettings(url=url, user=user, password=password, verify_certs=verify,
                              ca_certs=env.get("OPENSEARCH_CA_CERTS") or None)


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host in ("localhost", "::1") or host.startswith("127.")


def client_kwargs(settings: ConnectionSettings, *, timeout: float = 10.0, max_retries: int = 2) -> dict[str, Any]:
    """The keyword arguments for ``opensearchpy.OpenSearch`` (pure; :func:`make_client` uses them).

    >>> client_kwargs(ConnectionSettings(), timeout=5)["retry_on_status"]
    (502, 503, 504)
    """
    if timeout <= 0:
        raise ValueError(f"timeout={timeout!r} must be > 0 seconds")
    if max_retries < 0:
        raise ValueError(f"max_retries={max_retries!r} must be >= 0")
    kwargs: dict[str, Any] = {
        "hosts": [settings.url],
        "timeout": timeout,
        # gzip costs ~1 ms CPU per bulk document; worth it across a network, pure waste on loopback.
        "http_compress": not _is_loopback(settings.url),
        "retry_on_timeout": True,
        "max_retries": max_retries,
        "retry_on_status": RETRY_ON_STATUS,
    }
    if settings.user is not None:
        kwargs["http_auth"] = (settings.user, settings.password)
    if urlsplit(settings.url).scheme == "https":
        kwargs["use_ssl"] = True
        kwargs["verify_certs"] = settings.verify_certs
        # An explicit opt-out must not turn into a warning per request (pytest runs with warnings as errors).
        kwargs["ssl_show_warn"] = settings.verify_certs
        if settings.ca_certs:
            kwargs["ca_certs"] = settings.ca_certs
    return kwargs


def make_client(url: str | None = None, *, timeout: float = 10.0, max_retries: int = 2,
                settings: ConnectionSettings | None = None) -> Any:
    """Build an ``opensearchpy.OpenSearch`` client; nothing is sent until the first request.

    Args:
        url: node URL (default $OPENSEARCH_URL or http://127.0.0.1:9200); ignored when ``settings`` is given.
        timeout: per-request timeout in seconds.
        max_retries: retries on connection errors, timeouts and 502/503/504.
        settings: explicit settings instead of the environment.
    Returns:
        The client (with gzip request compression and retries configured).
    Raises:
        ValueError: invalid URL, auth pair, boolean or timeout.

    >>> make_client("http://127.0.0.1:9200", timeout=2).transport.max_retries
    2
    """
    from opensearchpy import OpenSearch

    settings = settings or settings_from_env(url)
    return OpenSearch(**client_kwargs(settings, timeout=timeout, max_retries=max_retries))
