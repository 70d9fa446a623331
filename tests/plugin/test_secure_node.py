"""The secured local node (security plugin, HTTPS, basic auth) and the client against it, with certificate checks.

The session fixture ``secure_node`` (tests/conftest.py) starts the secure node once; tests/plugin/
test_opensearch_engine.py also runs the whole adapter suite against it.
"""

from __future__ import annotations

import stat
import uuid
from pathlib import Path

import pytest

from shopsearch.api.cli import main
from shopsearch.indexer.records import Product
from shopsearch.indexer.sink import Delete, IndexDoc
from shopsearch.plugin import localnode
from shopsearch.plugin.connection import client_kwargs
from shopsearch.plugin.engine import BM25Leg, EngineUnavailable
from shopsearch.plugin.localnode_security import (ADMIN_DN, NODE_DN, internal_users_yml,
                                                  security_artifact, security_yml, write_certs)
from shopsearch.plugin.opensearch_engine import OpenSearchEngine
from shopsearch.settings import load_settings
from tests.conftest import secure_settings as _settings

ROOT = Path(__file__).resolve().parents[2]


# --- pure: artifact, certificates, config --------------------------------------------------------------------------


def test_security_artifact_is_pinned():
    art = security_artifact()
    assert art.path == ("org/opensearch/plugin/opensearch-security/2.19.1.0/opensearch-security-2.19.1.0.zip")
    assert art.role == "plugin:opensearch-security" and len(art.pinned_sha1) == 40
    with pytest.raises(ValueError, match="version='9.9.9.0'"):
        security_artifact("9.9.9.0")


def test_certs_cli_writes_a_verifiable_chain_and_hashed_users(tmp_path, monkeypatch, capsys):
    import bcrypt
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    monkeypatch.setenv("OPENSEARCH_PASSWORD", "docker-Secret-1")
    monkeypatch.setenv("OPENSEARCH_USER", "admin")
    monkeypatch.setenv("OPENSEARCH_URL", "https://127.0.0.1:9250")
    out = tmp_path / "certs"
    assert main(["opensearch", "certs", "--out", str(out), "--host", "opensearch", "--host", "localhost",
                 "--internal-users"]) == 0
    assert "keys are mode 0600" in capsys.readouterr().out
    files = write_certs(out)  # a complete set is kept, not regenerated
    ca = x509.load_pem_x509_certificate(files.ca.read_bytes())
    node = x509.load_pem_x509_certificate(files.node.read_bytes())
    admin = x509.load_pem_x509_certificate(files.admin.read_bytes())
    for leaf in (node, admin):
        leaf.verify_directly_issued_by(ca)
    assert node.subject.rfc4514_string() == NODE_DN and admin.subject.rfc4514_string() == ADMIN_DN
    san = node.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["opensearch", "localhost"]
    assert ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "shopsearch-local-ca"
    for key in (files.ca_key, files.node_key, files.admin_key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600 and b"BEGIN PRIVATE KEY" in key.read_bytes()
    users = (out / "internal_users.yml").read_text()
    hashed = users.split('hash: "')[1].split('"')[0]
    assert "docker-Secret-1" not in users and bcrypt.checkpw(b"docker-Secret-1", hashed.encode())
    assert main(["opensearch", "certs", "--out", str(out), "--owner", "root"]) == 2


def test_internal_users_rejects_bad_input():
    with pytest.raises(ValueError, match="user='a b'"):
        internal_users_yml("a b", "pw")
    with pytest.raises(ValueError, match="password"):
        internal_users_yml("admin", "")


def test_docker_opensearch_yml_carries_the_generated_security_settings():
    docker_yml = (ROOT / "docker" / "opensearch.yml").read_text()
    for line in security_yml().splitlines()[1:]:
        assert line in docker_yml.splitlines(), line
    compose = (ROOT / "docker" / "compose.yaml").read_text()
    assert "DISABLE_SECURITY_PLUGIN" not in compose and "OPENSEARCH_INITIAL_ADMIN_PASSWORD" in compose
    assert "restart: unless-stopped" in compose and "mem_limit" in compose
    assert "OPENSEARCH_INITIAL_ADMIN_PASSWORD=" in (ROOT / "docker" / ".env.example").read_text()


def test_basic_auth_over_plain_http_is_refused_unless_allowed():
    plain = load_settings({"opensearch_url": "http://127.0.0.1:9200", "opensearch_user": "admin",
                           "opensearch_password": "pw"})
    with pytest.raises(ValueError, match="opensearch_allow_insecure_http_auth"):
        client_kwargs(plain)
    in_url = load_settings({"opensearch_url": "http://admin:pw@127.0.0.1:9200"})
    with pytest.raises(ValueError, match="plain http"):
        client_kwargs(in_url)
    allowed = client_kwargs(plain.replace(opensearch_allow_insecure_http_auth=True))
    assert allowed["http_auth"] == ("admin", "pw")
    assert "http_auth" not in client_kwargs(load_settings({"opensearch_url": "http://127.0.0.1:9200"}))


# --- the real secured node -----------------------------------------------------------------------------------------


@pytest.mark.opensearch
def test_adapter_round_trip_over_https(secure_node):
    settings = _settings(secure_node)
    kwargs = client_kwargs(settings)
    assert kwargs["use_ssl"] and kwargs["verify_certs"] and kwargs["ca_certs"] == str(secure_node.ca_certs)
    engine = OpenSearchEngine(settings=settings, timeout=20)
    name = f"test-secure-{uuid.uuid4().hex[:8]}"
    products = [Product(id=f"p{i}", title=title, brand="Acme") for i, title in
                enumerate(["red wool scarf", "blue cotton shirt", "red leather boots"])]
    try:
        engine.create_index(name, 4)
        docs = [IndexDoc(p, [1.0, float(i), 0.0, 0.0], p.content_hash()) for i, p in enumerate(products)]
        assert all(item.ok for item in engine.bulk(name, docs))
        engine.refresh(name)
        assert engine.count(name) == 3
        [hits] = engine.search(name, [BM25Leg("red", {"title": 1.0})])
        assert {h.id for h in hits} == {"p0", "p2"}
        assert all(item.ok for item in engine.bulk(name, [Delete("p0")]))
        engine.refresh(name)
        assert engine.count(name) == 2
    finally:
        engine.delete_index(name)
        engine.close()
    assert not OpenSearchEngine(settings=settings).index_exists(name)


@pytest.mark.opensearch
def test_wrong_password_names_the_cause(secure_node):
    engine = OpenSearchEngine(settings=_settings(secure_node, opensearch_password="not-the-password"), timeout=10)
    with pytest.raises(EngineUnavailable, match=r"authentication failed for user 'admin' at https://127\.0\.0\.1"):
        engine.ping()
    engine.close()


@pytest.mark.opensearch
def test_certificate_is_verified(secure_node):
    # Without the node's CA the system trust store does not know it: the TLS handshake must fail.
    engine = OpenSearchEngine(settings=_settings(secure_node).replace(opensearch_ca_certs=None), timeout=10,
                              max_retries=0)
    with pytest.raises(EngineUnavailable, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        engine.ping()
    engine.close()


@pytest.mark.opensearch
def test_status_shows_security_on(secure_node, capsys):
    status = localnode.node_status(secure=True)
    assert status.running and status.security and status.url == secure_node.url
    assert status.user == secure_node.user and status.ca_certs == secure_node.ca_certs
    assert "opensearch-security" in status.plugins and status.health in ("green", "yellow")
    assert main(["opensearch", "status", "--secure"]) == 0
    out = capsys.readouterr().out
    assert "security=on" in out and f"CA:   {secure_node.ca_certs}" in out and "user: admin" in out
    assert secure_node.password.get_secret_value() not in out
