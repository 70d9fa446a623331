"""Signed hit tokens: proof, checked without storage, that a /search served a product at a given time.

Each hit of a /search response carries ``token = "<t>.<mac>"``, where ``t`` is the search's time (epoch seconds)
and ``mac`` is the first 16 bytes (base64url, 22 characters) of HMAC-SHA256(key, ``"v1|<query_id>|<product_id>|
<t>"``). An event naming a ``query_id`` sends back the token of the product it names, so the API can check, with
the key alone, that this query served this product (not a forged id, not another query's product) and how old
the search is (the freshness window). ``query_id`` stays the plain UUID the UBI query record logs, so click
models still join events to impressions.

The key comes from the ``event_signing_key`` setting, or is generated once (32 random bytes) into
``event_signing_key_file`` under the shopsearch home, so every worker on one home shares it. Several API hosts
must be given the same ``event_signing_key``: a token signed by one host is checked by another.

    >>> signer = HitSigner(b"k" * 32)
    >>> token = signer.token("q-1", "p1", 1_700_000_000)
    >>> signer.verify("q-1", "p1", token, now=1_700_000_060, max_age_s=3600)
    1700000000
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from pathlib import Path

from shopsearch.atomic_write import write_atomically
from shopsearch.settings import Settings

VERSION = "v1"
MAC_BYTES = 16  # 128 bits: forging one token takes ~2^128 guesses, and each guess is a rate-limited request
MIN_KEY_CHARS = 32
CLOCK_SKEW_S = 300.0  # a token up to this far in the future is accepted (hosts' clocks differ a little)
_TOKEN = re.compile(r"^([0-9]{1,12})\.([A-Za-z0-9_-]{22})$")


class TokenError(ValueError):
    """A hit token that does not prove what the event claims; ``reason``: missing, malformed, invalid or stale."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class HitSigner:
    """Signs and checks hit tokens with one HMAC key.

    Args:
        key: the secret (at least 32 bytes).
    Raises:
        ValueError: a key shorter than 32 bytes.
    """

    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_KEY_CHARS:
            raise ValueError(f"event_signing_key must have at least {MIN_KEY_CHARS} characters; got {len(key)}")
        self._key = key

    def _mac(self, query_id: str, product_id: str, t: int) -> str:
        msg = f"{VERSION}|{query_id}|{product_id}|{t}".encode()
        digest = hmac.new(self._key, msg, hashlib.sha256).digest()[:MAC_BYTES]
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def token(self, query_id: str, product_id: str, t: int) -> str:
        """The token of ``product_id`` served by ``query_id`` at epoch second ``t``."""
        return f"{t}.{self._mac(query_id, product_id, t)}"

    def proves_client(self, client_id: str, token: str | None) -> bool:
        """Whether ``token`` is :func:`client_token` of ``client_id`` under this key (compared in constant time)."""
        return isinstance(token, str) and hmac.compare_digest(token, client_token(self._key, client_id))

    def verify(self, query_id: str, product_id: str, token: str | None, now: float, max_age_s: float) -> int:
        """Check that ``token`` was signed for (``query_id``, ``product_id``) at most ``max_age_s`` ago.

        Returns:
            The search's time (epoch seconds).
        Raises:
            TokenError: missing, malformed, not signed by this key for this query and product (forged, or another
                query's product), or stale.
        """
        if token is None:
            raise TokenError("missing", "token is required with a query_id: send the hit's token from the /search "
                                        "response")
        match = _TOKEN.match(token) if isinstance(token, str) else None
        if match is None:
            raise TokenError("malformed", "token must be the hit's token from the /search response "
                                          "('<time>.<signature>')")
        t = int(match.group(1))
        if not hmac.compare_digest(match.group(2), self._mac(query_id, product_id, t)):
            raise TokenError("invalid", f"token does not match query_id {query_id!r} and product_id "
                                        f"{product_id!r}: that search did not serve that product (or the token "
                                        f"was altered)")
        age = now - t
        if age > max_age_s or age < -CLOCK_SKEW_S:
            raise TokenError("stale", f"the search {query_id!r} is {age / 3600:.1f} h old; events are accepted for "
                                      f"searches at most {max_age_s / 3600:g} h old")
        return t


CLIENT_VERSION = "c1"
CLIENT_TOKEN = re.compile(r"^[A-Za-z0-9_-]{22}$")
# How a shop's backend computes one, for the help texts that tell it (the API's parameters, `keys client-token`).
CLIENT_TOKEN_RECIPE = (f"HMAC-SHA256(event_signing_key, '{CLIENT_VERSION}|' + the user id), its first 16 bytes, "
                       "base64url without padding (docs/security.md)")


def client_token(key: bytes, client_id: str) -> str:
    """The proof that a caller may read ``client_id``'s history: the first 16 bytes (base64url, 22 characters) of
    HMAC-SHA256(key, ``"c1|<client_id>"``). The shop's backend, which knows who is signed in, computes it with the
    shared ``event_signing_key`` and renders it into that shopper's pages; it does not expire (revoke every one by
    changing the key).

    >>> client_token(b"k" * 32, "u1")
    'Xf_JKq60FiO8apaZPyJTYg'
    """
    digest = hmac.new(key, f"{CLIENT_VERSION}|{client_id}".encode(), hashlib.sha256).digest()[:MAC_BYTES]
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def signing_key(settings: Settings) -> bytes:
    """The event signing key: the ``event_signing_key`` setting, else the key in ``event_signing_key_file``
    (generated there, mode 0600, the first time; concurrent workers agree on the one written first).

    Raises:
        ValueError: a configured key shorter than 32 characters.
        OSError: the key file cannot be read or created.
    """
    if settings.event_signing_key is not None:
        key = settings.event_signing_key.get_secret_value().encode()
        if len(key) < MIN_KEY_CHARS:
            raise ValueError(f"event_signing_key must have at least {MIN_KEY_CHARS} characters; got {len(key)}")
        return key
    path = Path(settings.event_signing_key_file)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # Exclusive: if another worker won the race, its key is kept.
        write_atomically(path, secrets.token_urlsafe(32) + "\n", mode=0o600, replace=False)
    key = path.read_text().strip().encode()
    if len(key) < MIN_KEY_CHARS:
        raise ValueError(f"{path}: the event signing key must have at least {MIN_KEY_CHARS} characters; got "
                         f"{len(key)} (delete the file to generate a new one)")
    return key
