"""Session-wide fixtures: the shared data folder, the real OpenSearch node and the secured one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data beside the project root (or $SHOPSEARCH_DATA)."""
    path = Path(os.environ.get("SHOPSEARCH_DATA", REPO.parent / "shared" / "data"))
    if not (path / "crowdflower" / "products.jsonl").exists():
        pytest.fail(f"shared data not found at {path}; set SHOPSEARCH_DATA")
    return path


@pytest.fixture(scope="session")
def opensearch_url() -> str:
    """URL of the real OpenSearch node the tests run against; fails (never skips) if it is down."""
    import requests

    url = os.environ.get("OPENSEARCH_URL", "http://127.0.0.1:9200")
    try:
        requests.get(url, timeout=5).raise_for_status()
    except Exception as exc:  # noqa: BLE001 - any failure means the same thing here
        pytest.fail(f"OpenSearch is not reachable at {url} ({exc}); run `shopsearch opensearch start`")
    return url


@pytest.fixture(scope="session")
def tiny_bi_encoder_dir(tmp_path_factory) -> Path:
    """A tiny random bi-encoder saved once per session (32 dims); for tests that don't judge relevance."""
    from tests.tinymodels import build_tiny_bi_encoder

    return build_tiny_bi_encoder(tmp_path_factory.mktemp("tiny-bi-encoder"))


def secure_settings(access, **changes):
    """Settings that point the client at the secured node (flags layer: wins over the environment)."""
    from shopsearch.settings import load_settings

    values = {"opensearch_url": access.url, "opensearch_user": access.user,
              "opensearch_password": access.password.get_secret_value(), "opensearch_ca_certs": str(access.ca_certs)}
    return load_settings(values | changes)


@pytest.fixture(scope="session")
def secure_node():
    """The secured local node (security plugin, HTTPS, basic auth; its own home and port 9250, never the plain
    :9200 node): its access (URL, admin, password, CA). Started once per run and stopped after if it was started
    here; the plugin zip is downloaded once into the cache."""
    from shopsearch.plugin import localnode
    from shopsearch.plugin.localnode_security import access_for
    from shopsearch.settings import load_settings

    settings = load_settings({"opensearch_heap": "512m"})
    node = localnode.ensure_node(settings=settings, secure=True, timeout=180)
    yield access_for(node.home, int(node.url.rsplit(":", 1)[1]))
    if node.started:
        localnode.stop_node(settings=settings, secure=True)
