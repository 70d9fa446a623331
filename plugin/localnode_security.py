"""The secured local node: the opensearch-security plugin, its certificates, its admin user and how to reach it.

``shopsearch opensearch start --secure`` installs the plugin (Maven Central's zip, sha1-pinned) into its own home,
then :func:`configure_security` writes a private CA with node and admin certificates (``cryptography``), the
internal-users file with a bcrypt hash of the admin password, and the TLS settings, so the node serves HTTPS with
basic auth. :func:`write_certs` is the same certificate code for ``shopsearch opensearch certs`` (docker/).

Layering: ``localnode`` imports this module, never the other way round.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import SecretStr

from shopsearch.plugin.localnode_download import PLUGIN_VERSION, Artifact
from shopsearch.settings import Settings

SECURE_PORT = 9250  # beside the plain node's 9200, so the two never meet
ADMIN_USER = "admin"
PLUGIN_NAME = "opensearch-security"
# Maven Central has opensearch-security-2.19.1.0.zip (43,828,219 bytes) but no .sha1/.md5 beside it, so its digest
# is pinned here, taken from the file downloaded and installed while building this module.
SECURITY_SHA1 = {"2.19.1.0": "bbea3f51ff7e94da093589f2c30ad9868e92959b"}
# Subjects of the generated certificates (RFC 4514 order, as the plugin compares them).
NODE_DN = "CN=shopsearch-node,OU=node,O=shopsearch"
ADMIN_DN = "CN=shopsearch-admin,OU=admin,O=shopsearch"
CA_DN = "CN=shopsearch-local-ca,O=shopsearch"
CERTS_DIR = "certs"  # below the node's config folder: the plugin only reads files there
STATE_FILE = "shopsearch-security.json"  # in the node's home: who the admin is and where the CA is
PASSWORD_FILE = "admin-password"  # in <home>/secrets, mode 0600
CA_DAYS, LEAF_DAYS = 3650, 825  # 825 days: the longest leaf lifetime browsers and most TLS stacks accept
_SECURITY_YML_MARK = "# --- security (plugin/localnode_security.py) ---"


class NodeAccess(NamedTuple):
    """How to reach a node over HTTP: its URL and, for a secured one, the basic-auth pair and the CA to verify.

    >>> NodeAccess("http://127.0.0.1:9200").requests_kwargs()
    {}
    """

    url: str
    user: str | None = None
    password: SecretStr | None = None
    ca_certs: Path | None = None

    @property
    def secure(self) -> bool:
        """True for an HTTPS node with credentials."""
        return self.url.startswith("https://")

    def requests_kwargs(self) -> dict[str, Any]:
        """``auth`` and ``verify`` for ``requests`` (empty for a plain node)."""
        kwargs: dict[str, Any] = {}
        if self.user and self.password is not None:
            kwargs["auth"] = (self.user, self.password.get_secret_value())
        if self.ca_certs:
            kwargs["verify"] = str(self.ca_certs)
        return kwargs


@dataclass(frozen=True)
class CertFiles:
    """The PEM files :func:`write_certs` writes into ``folder`` (keys are PKCS#8, mode 0600)."""

    folder: Path

    ca = property(lambda self: self.folder / "root-ca.pem")
    ca_key = property(lambda self: self.folder / "root-ca-key.pem")
    node = property(lambda self: self.folder / "node.pem")
    node_key = property(lambda self: self.folder / "node-key.pem")
    admin = property(lambda self: self.folder / "admin.pem")
    admin_key = property(lambda self: self.folder / "admin-key.pem")

    def all(self) -> tuple[Path, ...]:
        """Every file, CA first."""
        return (self.ca, self.ca_key, self.node, self.node_key, self.admin, self.admin_key)


def security_artifact(version: str = PLUGIN_VERSION) -> Artifact:
    """The opensearch-security plugin zip on Maven Central (sha1 pinned: Maven publishes none for it).

    Raises:
        ValueError: no pinned digest for ``version``.
    Example:
        >>> security_artifact().filename
        'opensearch-security-2.19.1.0.zip'
    """
    if version not in SECURITY_SHA1:
        raise ValueError(f"version={version!r} has no pinned sha1; allowed: {sorted(SECURITY_SHA1)}")
    return Artifact("org.opensearch.plugin", PLUGIN_NAME, version, "zip", f"plugin:{PLUGIN_NAME}",
                    pinned_sha1=SECURITY_SHA1[version])


# --- certificates ------------------------------------------------------------------------------------------------


def _name(dn: str) -> Any:
    from cryptography import x509

    return x509.Name.from_rfc4514_string(dn)


def _key() -> Any:
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _write_key(path: Path, key: Any, owner: tuple[int, int] | None) -> None:
    """PKCS#8 PEM (the only private-key form the plugin reads), created 0600 so it is never readable by others."""
    from cryptography.hazmat.primitives import serialization

    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    if owner:
        os.chown(path, *owner)


def _write_cert(path: Path, cert: Any, owner: tuple[int, int] | None) -> None:
    from cryptography.hazmat.primitives import serialization

    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    path.chmod(0o644)
    if owner:
        os.chown(path, *owner)


def _issue(subject: str, key: Any, issuer: Any, issuer_key: Any, days: int, *, ca: bool = False,
           hosts: tuple[str, ...] = (), server: bool = False) -> Any:
    """One X.509 v3 certificate signed with SHA-256 (self-signed when ``issuer`` is None)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID

    now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)  # a little slack for clock skew
    issuer_name = issuer.subject if issuer is not None else _name(subject)
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(issuer_name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now).not_valid_after(now + dt.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False, encipher_only=False,
            decipher_only=False), critical=True)
    else:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, key_encipherment=True, key_cert_sign=False, crl_sign=False,
            content_commitment=False, data_encipherment=False, key_agreement=False, encipher_only=False,
            decipher_only=False), critical=True)
        # Node certificates serve HTTPS and also authenticate node-to-node transport (both ends), hence both.
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH] + ([ExtendedKeyUsageOID.SERVER_AUTH] if server else [])
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        builder = builder.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            issuer_key.public_key()), critical=False)
    if hosts:
        names: list[Any] = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key if issuer is not None else key, hashes.SHA256())


def write_certs(folder: Path, hosts: tuple[str, ...] = ("localhost", "127.0.0.1"), *,
                owner: tuple[int, int] | None = None, force: bool = False) -> CertFiles:
    """Write a new CA and a node and an admin certificate signed by it into ``folder`` (kept when present).

    Args:
        folder: created if missing.
        hosts: the node certificate's subject alternative names (DNS names or IP addresses) — every name
            clients use to reach the node, e.g. ``("opensearch", "localhost")`` in docker/.
        owner: ``(uid, gid)`` to chown the files to (the user the node runs as), or None.
        force: replace existing files instead of keeping them.
    Returns:
        The file set; an existing complete set is returned untouched unless ``force``.
    Raises:
        ValueError: ``hosts`` is empty or holds an empty name.
    Example:
        >>> files = write_certs(Path("/tmp/certs"), ("opensearch", "localhost"))  # doctest: +SKIP
        >>> files.ca.name  # doctest: +SKIP
        'root-ca.pem'
    """
    if not hosts or any(not h or not h.strip() for h in hosts):
        raise ValueError(f"hosts={hosts!r} must name at least one DNS name or IP address, none empty")
    files = CertFiles(Path(folder))
    if not force and all(path.is_file() for path in files.all()):
        return files
    files.folder.mkdir(parents=True, exist_ok=True)
    ca_key, node_key, admin_key = _key(), _key(), _key()
    ca = _issue(CA_DN, ca_key, None, ca_key, CA_DAYS, ca=True)
    node = _issue(NODE_DN, node_key, ca, ca_key, LEAF_DAYS, hosts=tuple(h.strip() for h in hosts), server=True)
    admin = _issue(ADMIN_DN, admin_key, ca, ca_key, LEAF_DAYS)
    for path, cert in ((files.ca, ca), (files.node, node), (files.admin, admin)):
        _write_cert(path, cert, owner)
    for path, key in ((files.ca_key, ca_key), (files.node_key, node_key), (files.admin_key, admin_key)):
        _write_key(path, key, owner)
    return files


# --- security configuration --------------------------------------------------------------------------------------


def bcrypt_hash(password: str) -> str:
    """The bcrypt hash (cost 12) the plugin's internal user database expects.

    >>> bcrypt_hash("x").startswith("$2b$12$")
    True
    """
    import bcrypt

    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=12)).decode()


def internal_users_yml(user: str, password: str) -> str:
    """``internal_users.yml`` with one user, mapped (backend role ``admin``) to the ``all_access`` role.

    Raises:
        ValueError: an empty user or password, or a user name that is not plain ASCII letters, digits, ``-_.``.
    Example:
        >>> "backend_roles: [\\"admin\\"]" in internal_users_yml("admin", "s3cret-pw")
        True
    """
    if not user or not all(c.isascii() and (c.isalnum() or c in "-_.") for c in user):
        raise ValueError(f"user={user!r} is not allowed; use ASCII letters, digits, '-', '_' or '.'")
    if not password:
        raise ValueError("password must not be empty")
    return "\n".join([
        "# Written by shopsearch (plugin/localnode_security.py). Read into the security index on first start only:",
        "# to change a password later use the security REST API or securityadmin.sh.",
        "_meta:",
        '  type: "internalusers"',
        "  config_version: 2",
        f"{user}:",
        f'  hash: "{bcrypt_hash(password)}"',
        "  reserved: true",
        '  backend_roles: ["admin"]',
        '  description: "shopsearch admin"',
        "",
    ])


def security_yml(certs_dir: str = CERTS_DIR) -> str:
    """The ``opensearch.yml`` lines that turn on TLS (transport and HTTP) and the security plugin.

    Args:
        certs_dir: the certificates' folder, relative to the node's config folder.
    Example:
        >>> "plugins.security.ssl.http.enabled: true" in security_yml()
        True
    """
    lines = [_SECURITY_YML_MARK]
    for layer in ("transport", "http"):
        lines += [f"plugins.security.ssl.{layer}.pemcert_filepath: {certs_dir}/node.pem",
                  f"plugins.security.ssl.{layer}.pemkey_filepath: {certs_dir}/node-key.pem",
                  f"plugins.security.ssl.{layer}.pemtrustedcas_filepath: {certs_dir}/root-ca.pem"]
    lines += [
        "plugins.security.ssl.transport.enforce_hostname_verification: false",
        "plugins.security.ssl.http.enabled: true",
        # Loads config/opensearch-security/*.yml into the security index on first start (no securityadmin run).
        "plugins.security.allow_default_init_securityindex: true",
        f'plugins.security.authcz.admin_dn: ["{ADMIN_DN}"]',
        f'plugins.security.nodes_dn: ["{NODE_DN}"]',
        "plugins.security.audit.type: noop",
        'plugins.security.restapi.roles_enabled: ["all_access"]',
        "plugins.security.check_snapshot_restore_write_privileges: true",
        "",
    ]
    return "\n".join(lines)


def _state_path(home: Path) -> Path:
    return home / STATE_FILE


def is_secure_home(home: Path) -> bool:
    """True when :func:`configure_security` has configured ``home``."""
    return _state_path(home).is_file()


def access_for(home: Path, port: int) -> NodeAccess:
    """How to reach the secured node in ``home`` on ``port`` (its admin, password and CA).

    Raises:
        RuntimeError: ``home`` was never configured by :func:`configure_security`.
    """
    try:
        state = json.loads(_state_path(home).read_text())
        password = (home / "secrets" / PASSWORD_FILE).read_text().strip()
    except (OSError, ValueError) as exc:
        raise RuntimeError(f"{home} is not a secured shopsearch node ({exc}); start it with "
                           f"`shopsearch opensearch start --secure`") from exc
    return NodeAccess(f"https://127.0.0.1:{port}", state["user"], SecretStr(password), Path(state["ca_certs"]))


def configure_security(home: Path, port: int, settings: Settings) -> NodeAccess:
    """Make the installed node in ``home`` secure (once; later calls only read what was written).

    Writes the CA and certificates into ``<home>/config/certs``, the plugin's security config into
    ``<home>/config/opensearch-security`` with one admin user, appends :func:`security_yml` to ``opensearch.yml``
    and keeps the admin password in ``<home>/secrets/admin-password`` (0600). The admin is the settings'
    ``opensearch_user``/``opensearch_password`` when given, else ``admin`` with a random 32-character password.

    Args:
        home: a node home built with the security plugin (``plugins/opensearch-security``).
        port: the HTTPS port the node will serve.
        settings: the resolved settings.
    Returns:
        The node's access (URL, user, password, CA).
    Raises:
        RuntimeError: the plugin is not installed in ``home``.
    """
    if is_secure_home(home):
        return access_for(home, port)
    plugin = home / "plugins" / PLUGIN_NAME
    if not plugin.is_dir():
        raise RuntimeError(f"{plugin} is missing: the node in {home} was installed without the security plugin")
    config = home / "config"
    files = write_certs(config / CERTS_DIR, ("localhost", "127.0.0.1"), force=True)
    sec_dir = config / "opensearch-security"
    sec_dir.mkdir(exist_ok=True)
    for yml in sorted((plugin / "config").glob("*.yml")):  # the plugin's defaults: roles, action groups, ...
        shutil.copy2(yml, sec_dir / yml.name)
    user = settings.opensearch_user or ADMIN_USER
    given = settings.opensearch_password
    password = given.get_secret_value() if given is not None else secrets.token_urlsafe(24)
    (sec_dir / "internal_users.yml").write_text(internal_users_yml(user, password))
    secret_dir = home / "secrets"
    secret_dir.mkdir(mode=0o700, exist_ok=True)
    fd = os.open(secret_dir / PASSWORD_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(password + "\n")
    yml = config / "opensearch.yml"
    if _SECURITY_YML_MARK not in yml.read_text():
        with yml.open("a") as fh:
            fh.write(security_yml())
    # The plugin warns at every start about any config file others can read; only the node's user needs them.
    for path in [config, *config.rglob("*")]:
        path.chmod(0o700 if path.is_dir() else 0o600)
    # Written last: its presence means "configured" (a crash before it reconfigures from scratch next time).
    _state_path(home).write_text(json.dumps({"user": user, "ca_certs": str(files.ca)}, indent=2) + "\n")
    return access_for(home, port)
