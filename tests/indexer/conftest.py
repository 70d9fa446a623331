"""Engines for the end-to-end indexer tests: every test that takes ``engine`` runs on both implementations."""

from __future__ import annotations

import uuid

import pytest

ENGINE_KINDS = ("embedded", pytest.param("opensearch", marks=pytest.mark.opensearch))


@pytest.fixture(params=ENGINE_KINDS)
def engine_kind(request) -> str:
    return request.param


@pytest.fixture
def engine(engine_kind, tmp_path, request):
    """An open engine of each kind; OpenSearch indices made under the test's alias are dropped afterwards."""
    from shopsearch.plugin.engines import open_engine

    if engine_kind == "opensearch":
        url = request.getfixturevalue("opensearch_url")
        eng = open_engine("opensearch", url=url)
    else:
        eng = open_engine("embedded", root=tmp_path / "embedded")
    yield eng
    if engine_kind == "opensearch":
        for name in eng.list_indices("ixtest-"):
            eng.delete_index(name)
    eng.close()


@pytest.fixture
def alias() -> str:
    """A unique alias per test (the OpenSearch node is shared)."""
    return f"ixtest-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def tiny_encoder(tiny_bi_encoder_dir):
    from shopsearch.indexer.embedder import BiEncoder

    return BiEncoder(tiny_bi_encoder_dir, device="cpu", max_length=64, batch_size=64)
