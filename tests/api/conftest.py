"""API fixtures: a tiny hand-made catalog in the embedded engine, and ``app`` / ``client`` built on it.

The catalog is indexed once per session into ``catalog-v1`` behind the alias ``catalog`` (the team's swap_alias),
with vectors from the tiny random bi-encoder; each test gets a fresh app (own metrics, own event log).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from shopsearch.indexer.records import Product

ALIAS = "catalog"
CONCRETE = "catalog-v1"

CATALOG = [
    Product(id="p1", title="Red desk lamp", description="LED desk lamp with adjustable arm", brand="Lumo",
            category=("Home", "Lighting", "Lamps"), price=29.99, rating=4.5, review_count=120, in_stock=True),
    Product(id="p2", title="Blue floor lamp", description="Tall floor lamp, warm light", brand="Lumo",
            category=("Home", "Lighting", "Lamps"), price=89.0, rating=4.0, review_count=40, in_stock=False),
    Product(id="p3", title="Ceiling light fixture", description="Flush mount ceiling light", brand="Brightway",
            category=("Home", "Lighting", "Ceiling"), price=59.5, rating=3.5, review_count=12, in_stock=True),
    Product(id="p4", title="Cordless drill", description="18V cordless drill driver with two batteries",
            brand="Torq", category=("Tools", "Power Tools", "Drills"), price=119.0, rating=4.7,
            review_count=300, in_stock=True),
    Product(id="p5", title="Hammer", description="16 oz claw hammer, steel handle", brand="Torq",
            category=("Tools", "Hand Tools", "Hammers"), price=15.0, rating=4.2, review_count=80, in_stock=True),
    Product(id="p6", title="Garden hose", description="50 ft expandable garden hose", brand="Greenline",
            category=("Outdoor", "Garden", "Hoses"), price=34.0, rating=3.9, review_count=55, in_stock=True),
    Product(id="p7", title="Lamp shade", description="Linen lamp shade for table lamps", brand="Brightway",
            category=("Home", "Lighting", "Shades"), price=12.5, rating=4.1, review_count=9, in_stock=True),
    Product(id="p8", title="Desk organizer", description="Bamboo desk organizer with drawers", brand=None,
            category=("Home", "Office"), price=None, rating=None, in_stock=None),
]


def build_catalog(engine, encoder, index: str = CONCRETE, alias: str = ALIAS,
                  products: list[Product] = CATALOG) -> None:
    """Index ``products`` (with ``encoder`` vectors) into ``index`` and point ``alias`` at it."""
    from shopsearch.indexer.sink import IndexDoc

    vectors = encoder.encode([p.embed_text() for p in products])
    engine.delete_index(index)
    engine.create_index(index, dims=int(vectors.shape[1]))
    docs = [IndexDoc(product=p, vector=[float(x) for x in v], content_hash=p.content_hash())
            for p, v in zip(products, vectors)]
    failed = [item for item in engine.bulk(index, docs) if not item.ok]
    if failed:
        raise RuntimeError(f"indexing the test catalog failed: {failed[:3]}")
    engine.refresh(index)
    engine.swap_alias(alias, index)


@pytest.fixture(scope="session")
def tiny_encoder(tiny_bi_encoder_dir: Path):
    """The tiny bi-encoder (32 dims), loaded once."""
    from shopsearch.indexer.embedder import BiEncoder

    return BiEncoder(str(tiny_bi_encoder_dir), device="cpu")


@pytest.fixture(scope="session")
def catalog_engine(tmp_path_factory, tiny_encoder):
    """An embedded engine holding the tiny catalog under the alias ``catalog``."""
    from shopsearch.plugin.engines import open_engine

    engine = open_engine("embedded", root=tmp_path_factory.mktemp("embedded"))
    build_catalog(engine, tiny_encoder)
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def searcher(catalog_engine, tiny_encoder):
    """The team's HybridSearcher over the tiny catalog."""
    from shopsearch.plugin.hybrid import HybridSearcher
    from shopsearch.plugin.profiles import ProfileStore

    return HybridSearcher(catalog_engine, ALIAS, tiny_encoder, ProfileStore())


@pytest.fixture
def app(tmp_path, searcher, catalog_engine):
    """A fresh app per test: injected searcher/engine, its own event log and UBI logs under tmp_path."""
    from shopsearch.api.app import create_app

    app = create_app({"TESTING": True, "searcher": searcher, "engine_instance": catalog_engine, "index": ALIAS,
                      "engine": "embedded", "events_dir": str(tmp_path / "events"), "home": str(tmp_path)})
    yield app
    app.extensions["shopsearch"].ubi_drainer.stop()  # its UBI spool drainer thread (the engine is shared)
    app.extensions["shopsearch"].stop_history()  # and its event history's refresh thread


@pytest.fixture
def client(app):
    """A Flask test client."""
    return app.test_client()


@pytest.fixture
def runner(app):
    """A test runner for the app's CLI commands."""
    return app.test_cli_runner()
