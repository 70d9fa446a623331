"""Embedded-only behaviour: persistence across instances, lazy refresh, bulk mode, threads, validation."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from shopsearch.indexer.records import Product
from shopsearch.indexer.sink import Delete, IndexDoc
from shopsearch.plugin.embedded_engine import EmbeddedEngine
from shopsearch.plugin.embedded_snapshot import FORMAT_VERSION
from shopsearch.plugin.engine import BM25Leg, Filters, KnnLeg

TITLE = {"title": 1.0}


def _doc(i: int, title: str, vec=(1.0, 0.0)) -> IndexDoc:
    p = Product(f"d{i}", title, brand="Acme", price=float(i))
    return IndexDoc(p, list(vec), p.content_hash())


def _ids(engine, index, query):
    return [h.id for h in engine.search(index, [BM25Leg(query, TITLE)])[0]]


def test_reopened_engine_sees_documents_snapshot_and_aliases(tmp_path):
    eng = EmbeddedEngine(tmp_path)
    eng.create_index("shop-1", 2)
    list(eng.bulk("shop-1", [_doc(1, "red lamp"), _doc(2, "blue chair", (0.0, 1.0))]))
    eng.refresh("shop-1")
    eng.swap_alias("shop", "shop-1")
    eng.close()
    params = json.loads((tmp_path / "shop-1" / "params.json").read_text())
    assert params["format_version"] == FORMAT_VERSION and params["docs"] == 2
    again = EmbeddedEngine(tmp_path)
    assert again.resolve_alias("shop") == "shop-1" and again.count("shop") == 2
    assert _ids(again, "shop", "lamp") == ["d1"]
    assert [h.id for h in again.search("shop", [KnnLeg([0.0, 1.0], k=1)])[0]] == ["d2"]


def test_a_server_lets_go_of_a_version_another_process_deleted(tmp_path, monkeypatch):
    """Nightly rebuilds drop the version before last; a long-running server must not keep its files open."""
    server, indexer = EmbeddedEngine(tmp_path), EmbeddedEngine(tmp_path)
    for n in (1, 2, 3):
        indexer.create_index(f"shop-{n}", 2)
        list(indexer.bulk(f"shop-{n}", [_doc(1, f"lamp {n}")]))
        indexer.refresh(f"shop-{n}")
        indexer.swap_alias("shop", f"shop-{n}")
        if n > 1:
            indexer.delete_index(f"shop-{n - 1}")
        assert _ids(server, "shop", "lamp") == ["d1"]  # the server follows the alias
        assert list(server._open) == [f"shop-{n}"]  # and serves nothing the indexer deleted
        assert [idx.store.path.parent.name for _, idx in server._retired] == [f"shop-{m}" for m in range(1, n)]
    monkeypatch.setattr("shopsearch.plugin.embedded_engine.RETIRE_S", 0.0)  # a search on a retired one is done
    server.count("shop")  # any later lookup closes them, not only the next rebuild's
    assert server._retired == []  # closed: their files and memory let go

def test_a_snapshot_whose_two_files_come_from_different_saves_is_rebuilt_not_served(tmp_path):
    """Two processes saving one index's snapshot each replace both files whole, and may interleave: params.json of
    one beside snapshot.npz of the other, with the same number of products, is not read as either."""
    eng = EmbeddedEngine(tmp_path)
    eng.create_index("p", 2)
    list(eng.bulk("p", [_doc(1, "red lamp")]))
    eng.refresh("p")
    folder = tmp_path / "p"
    older = (folder / "snapshot.npz").read_bytes()
    list(eng.bulk("p", [_doc(1, "green lamp")]))  # same count, next generation
    eng.refresh("p")
    (folder / "snapshot.npz").write_bytes(older)
    eng.close()
    again = EmbeddedEngine(tmp_path)
    assert _ids(again, "p", "green") == ["d1"] and _ids(again, "p", "red") == []
    assert (folder / "snapshot.npz").read_bytes() != older  # rebuilt from the documents and saved again


def test_searches_refresh_lazily_unless_bulk_mode(tmp_path):
    eng = EmbeddedEngine(tmp_path)
    eng.create_index("p", 2)
    list(eng.bulk("p", [_doc(1, "red lamp")]))
    assert _ids(eng, "p", "lamp") == ["d1"]  # pending write made visible by the search itself
    eng.set_bulk_mode("p", True)
    list(eng.bulk("p", [_doc(2, "green lamp"), Delete("d1")]))
    # bulk mode is refresh_interval -1: d2 is not searchable yet (and d1, deleted from storage, is not returned)
    assert _ids(eng, "p", "lamp") == []
    eng.refresh("p")
    assert _ids(eng, "p", "lamp") == ["d2"]
    eng.set_bulk_mode("p", False)


def test_second_instance_sees_writes_of_the_first(tmp_path):
    writer, reader = EmbeddedEngine(tmp_path), EmbeddedEngine(tmp_path)
    writer.create_index("p", 2)
    list(writer.bulk("p", [_doc(1, "red lamp")]))
    assert _ids(reader, "p", "lamp") == ["d1"]
    list(writer.bulk("p", [_doc(2, "blue lamp")]))
    assert sorted(_ids(reader, "p", "lamp")) == ["d1", "d2"]


def test_bad_items_are_rejected_with_reasons(tmp_path):
    eng = EmbeddedEngine(tmp_path)
    eng.create_index("p", 2)
    items = list(eng.bulk("p", [_doc(1, "ok"), _doc(2, "zero", (0.0, 0.0)), _doc(3, "nan", (float("nan"), 1.0)),
                                IndexDoc(Product(" ", "no id"), [1.0, 0.0], "h")]))
    assert [(i.ok, i.error) for i in items] == [
        (True, None), (False, "zero vector: cosine similarity is undefined"),
        (False, "vector holds NaN or infinite values"), (False, "id is empty")]
    assert eng.count("p") == 1


def test_chunks_commit_separately(tmp_path):
    from shopsearch.plugin.index_config import IndexConfig

    eng = EmbeddedEngine(tmp_path, config=IndexConfig(chunk_size=2))
    eng.create_index("p", 2)
    gen = eng.bulk("p", [_doc(i, f"lamp {i}") for i in range(5)])
    next(gen), next(gen)
    assert eng.count("p") == 2  # the first chunk is durable before the rest is sent
    assert len(list(gen)) == 3 and eng.count("p") == 5


def test_concurrent_readers_during_writes(tmp_path):
    eng = EmbeddedEngine(tmp_path)
    eng.create_index("p", 2)
    list(eng.bulk("p", [_doc(i, f"lamp number {i}") for i in range(50)]))

    def read(i: int) -> int:
        hits = eng.search("p", [BM25Leg("lamp", TITLE, size=100), KnnLeg([1.0, 0.0], k=5)])
        return len(hits[0])

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(read, i) for i in range(20)]
        list(eng.bulk("p", [_doc(100 + i, f"lamp extra {i}") for i in range(10)]))
        counts = [f.result() for f in futures]
    assert all(c in (50, 60) for c in counts)
    assert eng.filtered_count("p", Filters(price_min=100.0)) == 10


def test_names_and_sizes_are_validated(tmp_path):
    eng = EmbeddedEngine(tmp_path)
    for bad in ("Upper", "_x", "a/b", ""):
        with pytest.raises(ValueError, match="not a valid index name"):
            eng.create_index(bad, 2)
    with pytest.raises(ValueError, match="dims"):
        eng.create_index("p", 0)
    eng.create_index("p", 2)
    with pytest.raises(ValueError, match="already exists"):
        eng.create_index("p", 2)
    list(eng.bulk("p", [_doc(1, "lamp")]))
    with pytest.raises(ValueError, match="dimensions"):
        eng.search("p", [KnnLeg([1.0, 0.0, 0.0])])
    with pytest.raises(ValueError, match="tie_breaker"):
        eng.search("p", [BM25Leg("lamp", TITLE, tie_breaker=2.0)])
