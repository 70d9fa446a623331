"""Acceptance: the whole homedepot catalog (54,667 products) indexes into both real engines with nothing lost.

The whole crowdflower catalog is covered by ``test_engines_e2e.py::test_whole_crowdflower_catalog`` (same
counts contract); this adds the larger catalog plus retrieval of a known product by id and by a BM25 search of
its title. The tiny bi-encoder embeds; one vector cache is shared by both engines, so the second engine reuses
every vector the first computed.
"""

from __future__ import annotations

import pytest

from shopsearch.indexer.job import run_index
from shopsearch.indexer.vector_cache import VectorCache
from shopsearch.plugin.engine import BM25Leg

pytestmark = pytest.mark.slow

HOMEDEPOT_ROWS = 54_667
KNOWN_ID = "hd100006"
KNOWN_TITLE = "Whirlpool 1.9 cu. ft. Over the Range Convection Microwave in Stainless Steel with Sensor Cooking"


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    """One vector cache for every engine in this module (same texts, same model: embedded once)."""
    with VectorCache(tmp_path_factory.mktemp("acceptance") / "vectors.sqlite") as cache:
        yield cache


def _rows(path) -> int:
    with path.open("rb") as f:
        return sum(1 for line in f if line.strip())


def test_whole_homedepot_catalog(engine, alias, tiny_encoder, shared_data, shared_cache, tmp_path):
    path = shared_data / "homedepot" / "products.jsonl"
    assert _rows(path) == HOMEDEPOT_ROWS

    report = run_index(path, engine, tiny_encoder, alias=alias, cache=shared_cache,
                       quarantine_path=tmp_path / "q.jsonl", chunk_size=2048, progress=False)

    assert (report.mode, report.read, report.indexed, report.quarantined) == ("full", HOMEDEPOT_ROWS,
                                                                               HOMEDEPOT_ROWS, 0)
    assert report.embedded + report.cache_hits == HOMEDEPOT_ROWS
    assert report.quarantine_path is None and not (tmp_path / "q.jsonl").exists()
    assert engine.count(alias) == HOMEDEPOT_ROWS

    doc = engine.get(alias, KNOWN_ID)
    assert (doc["id"], doc["title"]) == (KNOWN_ID, KNOWN_TITLE)
    assert len(engine.get(alias, KNOWN_ID, with_vector=True)["vector"]) == tiny_encoder.dims
    hits = engine.search(alias, [BM25Leg(KNOWN_TITLE, {"title": 1.0}, size=10)])[0]
    assert hits[0].id == KNOWN_ID and hits[0].source["title"] == KNOWN_TITLE  # its own title is unique
