"""API keys with roles, stored hashed in one JSON file (the ``keys_file`` setting, default ``<home>/keys.json``).

A key is shown once, at creation: ``ss_<id>_<secret>``, where ``id`` (8 hex digits) names the record and
``secret`` is 32 random bytes (``secrets.token_urlsafe``). The file keeps only a per-key salt and
HMAC-SHA256(salt, secret): a 256-bit random secret cannot be guessed from its hash, so a slow password KDF (scrypt,
pbkdf2) would only add milliseconds to every request without adding safety. Checks compare in constant time
(``hmac.compare_digest``).

Roles: ``search`` (the storefront's key, safe in page JavaScript) and ``admin`` (every endpoint). The store
re-reads the file when it changes, so ``shopsearch keys revoke`` takes effect in a running server at once.

    >>> import tempfile, pathlib
    >>> store = KeyStore(pathlib.Path(tempfile.mkdtemp()) / "keys.json")
    >>> created = store.create("search", name="storefront")
    >>> store.verify(created.secret).role
    'search'
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import hmac
import json
import re
import secrets
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict

from shopsearch.atomic_write import write_atomically
from shopsearch.timestamps import parse_age, utc_time, utcnow

ROLES = ("search", "admin")
Role = Literal["search", "admin"]
PREFIX = "ss"
_TOKEN = re.compile(r"^ss_([0-9a-f]{8})_([A-Za-z0-9_-]{20,100})$")
FORMAT_VERSION = 1


class InvalidKey(Exception):
    """An unknown, revoked or expired key (``reason``: unknown, revoked or expired)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class ApiKey(BaseModel):
    """One stored key: never the secret, only its salt and HMAC."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    id: str
    name: str
    role: Role
    created: dt.datetime
    expires: dt.datetime | None = None
    revoked: dt.datetime | None = None
    salt: str
    hash: str

    def state(self, now: dt.datetime) -> str:
        """``active``, ``revoked`` or ``expired`` at ``now``."""
        if self.revoked is not None:
            return "revoked"
        if self.expires is not None and now >= self.expires:
            return "expired"
        return "active"


class CreatedKey(NamedTuple):
    """A new key: its record and the secret (shown once, never stored)."""

    key: ApiKey
    secret: str


def _digest(salt: str, secret: str) -> str:
    return hmac.new(bytes.fromhex(salt), secret.encode(), hashlib.sha256).hexdigest()


def parse_expires(value: str, now: dt.datetime | None = None) -> dt.datetime:
    """``--expires``: a duration (``12h``, ``30d``, ``8w``) or an ISO date/time (UTC when no zone is given).

    Raises:
        ValueError: anything else, or a time already past.

    >>> parse_expires("30d", dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)).date().isoformat()
    '2025-01-31'
    """
    now = now or utcnow()
    age = parse_age(value)
    try:
        when = now + age if age is not None else utc_time(value)
    except ValueError:
        raise ValueError(f"--expires must be a duration like 12h, 30d, 8w or an ISO date/time like 2026-01-31; "
                         f"got {value!r}") from None
    if when <= now:
        raise ValueError(f"--expires must be in the future; got {value!r}")
    return when


class KeyStore:
    """The keys in ``path`` (a JSON file, mode 0600): create, list, revoke and verify.

    Args:
        path: the keys file; need not exist (no keys).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._keys: dict[str, ApiKey] = {}

    def keys(self) -> list[ApiKey]:
        """Every key in the file, revoked and expired ones included, oldest first."""
        self._refresh()
        return sorted(self._keys.values(), key=lambda k: k.created)

    def configured(self) -> bool:
        """Whether key checks are on: the file holds any key (revoking them all locks the API; it never reopens)."""
        self._refresh()  # called on every request: no sorting of the keys
        return bool(self._keys)

    def verify(self, token: str, now: dt.datetime | None = None) -> ApiKey:
        """The active key whose secret ``token`` is.

        Raises:
            InvalidKey: a malformed or unknown token, a wrong secret, a revoked or an expired key.
        """
        m = _TOKEN.match(token)
        self._refresh()
        key = self._keys.get(m.group(1)) if m else None
        # One comparison whatever was wrong, so timing tells nothing about which ids exist.
        expected = key.hash if key else _digest("00" * 16, "")
        given = _digest(key.salt if key else "00" * 16, m.group(2) if m else token)
        if not hmac.compare_digest(expected, given) or key is None:
            raise InvalidKey("unknown", "the API key is not valid")
        state = key.state(now or utcnow())
        if state != "active":
            raise InvalidKey(state, f"the API key {key.id} ({key.name}) is {state}")
        return key

    def create(self, role: str, name: str = "", expires: dt.datetime | None = None) -> CreatedKey:
        """Add a key; returns it with its secret (shown once).

        Raises:
            ValueError: an unknown role.
        """
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}; got {role!r}")
        with self._locked() as keys:
            key_id = secrets.token_hex(4)
            while key_id in keys:
                key_id = secrets.token_hex(4)
            secret, salt = secrets.token_urlsafe(32), secrets.token_hex(16)
            key = ApiKey(id=key_id, name=name or f"{role}-{key_id}", role=role, created=utcnow(), expires=expires,
                         salt=salt, hash=_digest(salt, secret))
            keys[key_id] = key
        return CreatedKey(key, f"{PREFIX}_{key_id}_{secret}")

    def revoke(self, key_id: str) -> ApiKey:
        """Mark key ``key_id`` revoked (kept in the file, so the API stays locked); returns it.

        Raises:
            ValueError: no key with that id.
        """
        with self._locked() as keys:
            if key_id not in keys:
                known = ", ".join(sorted(keys)) or "none"
                raise ValueError(f"no key with id {key_id!r}; ids: {known} (see `shopsearch keys list`)")
            if keys[key_id].revoked is None:
                keys[key_id] = keys[key_id].model_copy(update={"revoked": utcnow()})
            return keys[key_id]

    def _refresh(self) -> None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._stamp, self._keys = None, {}
            return
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            with self._lock:
                self._keys, self._stamp = self._read(), stamp

    def _read(self) -> dict[str, ApiKey]:
        try:
            data = json.loads(self.path.read_text())
            return {k["id"]: ApiKey.model_validate(k) for k in data["keys"]}
        except FileNotFoundError:
            return {}
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"keys file {self.path} is not a shopsearch keys file ({exc})") from None

    @contextmanager
    def _locked(self) -> Iterator[dict[str, ApiKey]]:
        """Read-modify-write under an exclusive lock; written atomically (temp file + rename), mode 0600."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            keys = self._read()
            yield keys
            write_atomically(self.path, json.dumps({"version": FORMAT_VERSION,
                                                    "keys": [k.model_dump(mode="json") for k in keys.values()]},
                                                   indent=1), mode=0o600)
        self._stamp = None
