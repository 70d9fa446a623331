"""Who may call what: the role each endpoint needs, checked before every request (docs/security.md).

A view declares its role with :func:`role`: ``public`` (health, readiness, the OpenAPI document, the HTML page
shells and static files, which hold no data), ``search`` or ``admin``; a view that declares nothing needs
``admin``, so a new endpoint is closed until someone opens it. An ``admin`` key may call everything.

The key comes as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``. While the keys file holds no key the
API is in local mode: loopback clients may call everything, any other client gets 403 (``shopsearch serve``
also refuses to bind a non-loopback address then).

    >>> @role("search")
    ... def view(): ...
    >>> view.shopsearch_role
    ('search', None)
"""

from __future__ import annotations

import ipaddress
from typing import Callable, TypeVar

from flask import Flask, current_app, g, request

from shopsearch.settings import Settings

from .errors import ApiError
from .hit_tokens import HitSigner
from .keys import ApiKey, InvalidKey, KeyStore

F = TypeVar("F", bound=Callable)
ROLE_ATTR = "shopsearch_role"
PUBLIC = "public"
CREATE_KEY_HINT = "create one with `shopsearch keys create --role admin` (and a search key for the storefront)"
LOCAL_MODE_WARNING = ("no API keys configured: every endpoint is open to loopback clients only; " + CREATE_KEY_HINT
                      + " before serving anyone else")


def role(name: str, public_when: str | None = None) -> Callable[[F], F]:
    """Declare the role a view needs: ``public``, ``search`` or ``admin``; ``public_when`` names a boolean setting
    that makes it public (``metrics_public``)."""
    if name not in (PUBLIC, "search", "admin"):
        raise ValueError(f"role must be public, search or admin; got {name!r}")

    def mark(view: F) -> F:
        setattr(view, ROLE_ATTR, (name, public_when))
        return view

    return mark


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) is a loopback address.

    >>> is_loopback("127.0.0.1"), is_loopback("::1"), is_loopback("0.0.0.0"), is_loopback("localhost")
    (True, True, False, True)
    """
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def presented_key() -> str | None:
    """The key the request carries (Bearer token or X-API-Key), or None."""
    auth = request.headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    return request.headers.get("X-API-Key", "").strip() or None


def required_role(app: Flask, endpoint: str | None, cfg: Settings) -> str:
    """The role ``endpoint`` needs (static files: public; an unknown route: search, so scanners get 401)."""
    if endpoint is None:
        return "search"
    if endpoint == "static":
        return PUBLIC
    name, public_when = getattr(app.view_functions.get(endpoint), ROLE_ATTR, ("admin", None))
    return PUBLIC if public_when and getattr(cfg, public_when) else name


def current_key() -> ApiKey | None:
    """The verified key of this request (None in local mode or on a public endpoint called without one)."""
    return g.get("api_key")


def may_read_history(signer: HitSigner, user_id: str, client_token: str | None) -> bool:
    """Whether this request may use ``user_id``'s history (recommendations, search affinity): an admin key (a
    shop's backend), or that shopper's ``client_token`` (api/hit_tokens.py). The search key is public and a user id
    can be guessed, so naming one proves nothing."""
    key = current_key()
    return (key is not None and key.role == "admin") or signer.proves_client(user_id, client_token)


def sees_details() -> bool:
    """Whether error bodies may carry internal details (engine URLs, exception text): admin keys, and admin
    endpoints in local mode."""
    return bool(g.get("sees_details", False))


def storefront_key(cfg: Settings, store: KeyStore) -> str | None:
    """The search key the pages embed: ``storefront_key`` when keys are configured, else None.

    Raises:
        ValueError: the setting is not an active key, or is an admin key (which must never reach a page).
    """
    if cfg.storefront_key is None or not store.configured():
        return None
    secret = cfg.storefront_key.get_secret_value()
    try:
        key = store.verify(secret)
    except InvalidKey as exc:
        raise ValueError(f"storefront_key: {exc}; set it to an active search key") from None
    if key.role != "search":
        raise ValueError(f"storefront_key must be a search key, never an admin key; got the {key.role} key {key.id}")
    return secret


def init_app(app: Flask, cfg: Settings, store: KeyStore) -> None:
    """Check every request's key against ``store`` and expose the storefront key to templates."""
    page_key = storefront_key(cfg, store)

    @app.context_processor
    def _page_key() -> dict[str, str | None]:
        return {"shopsearch_search_key": page_key}

    @app.before_request
    def _authenticate() -> None:
        need = required_role(current_app, request.endpoint, cfg)
        if not store.configured():
            if not is_loopback(request.remote_addr or ""):
                raise ApiError(403, "keys_not_configured", "this server has no API keys and answers loopback "
                                                           "clients only; its operator must " + CREATE_KEY_HINT)
            # Local mode grants the admin endpoints (console API) their diagnostics; the shopper-facing ones keep
            # them hidden: behind a same-host proxy every client would look local.
            g.sees_details = need == "admin"
            return
        token = presented_key()
        if token is None:
            if need == PUBLIC:
                return
            raise ApiError(401, "missing_api_key", f"this endpoint needs a{'n' if need == 'admin' else ''} {need} "
                                                   "API key: send Authorization: Bearer <key> or X-API-Key: <key>",
                           headers={"WWW-Authenticate": 'Bearer realm="shopsearch"'})
        try:
            key = store.verify(token)
        except InvalidKey as exc:
            if need == PUBLIC:
                return
            raise ApiError(401, f"{exc.reason}_api_key" if exc.reason != "unknown" else "invalid_api_key",
                           str(exc), headers={"WWW-Authenticate": 'Bearer realm="shopsearch", '
                                                                  'error="invalid_token"'}) from None
        g.api_key, g.sees_details = key, key.role == "admin"
        if need == "admin" and key.role != "admin":
            raise ApiError(403, "forbidden", f"this endpoint needs an admin key; key {key.id} has the role "
                                             f"{key.role}")
