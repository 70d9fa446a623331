"""The int8 bi-encoder for indexing: close to fp32, its own fingerprint, recorded on the index, loaded by pool
workers without torch, and wired into ``shopsearch index --encoder onnx-int8 --workers N``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from shopsearch.indexer.embedder import BiEncoder
from shopsearch.indexer.encode_pool import EncoderPool, open_index_encoder
from shopsearch.indexer.encoder_record import INT8, EncoderRecord
from shopsearch.indexer.job import run_index
from shopsearch.indexer.onnx_int8 import int8_encoder, int8_manifest_path

from .catalogs import good_rows, write_jsonl
from .memsink import MemorySink

WORKER = """
import json, sys
from shopsearch.indexer.onnx_int8 import int8_encoder
enc = int8_encoder(sys.argv[1], cache_dir=sys.argv[2], max_length=64, threads=1)
enc.encode(["red lamp", "oak desk"])
print(json.dumps({"fingerprint": enc.fingerprint,
                  "imported": [m for m in ("torch", "sentence_transformers", "transformers") if m in sys.modules]}))
"""


def test_int8_vectors_are_close_to_fp32_and_recorded_for_torch_free_workers(tiny_bi_encoder_dir, tmp_path):
    enc = int8_encoder(tiny_bi_encoder_dir, cache_dir=tmp_path, max_length=64, threads=1)
    fp32 = BiEncoder(tiny_bi_encoder_dir, device="cpu", max_length=64)
    assert enc.fingerprint == f"{fp32.fingerprint}|{INT8}" and enc.dims == fp32.dims
    texts = [f"{r['title']}. {r['description']}" for r in good_rows(30)] + ["oak " * 80, "x"]
    got = enc.encode(texts)
    assert got.shape == (len(texts), fp32.dims) and got.dtype == np.float32
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert float(np.sum(got * fp32.encode(texts), axis=1).min()) > 0.95  # a random tiny model: MiniLM's in RESULTS
    assert int8_manifest_path(tmp_path, tiny_bi_encoder_dir, 64).is_file()
    run = subprocess.run([sys.executable, "-c", WORKER, str(tiny_bi_encoder_dir), str(tmp_path)],
                         capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parents[2])
    assert run.returncode == 0, run.stderr
    worker = json.loads(run.stdout.strip().splitlines()[-1])
    assert worker == {"fingerprint": enc.fingerprint, "imported": []}


def test_a_products_int8_vector_does_not_depend_on_the_rows_embedded_with_it(tiny_bi_encoder_dir, tmp_path):
    # Dynamic quantisation scales a run's activations over the whole run: a shared, padded batch made a product's
    # vector depend on its neighbours, so an increment re-embedded it differently from the full run.
    enc = int8_encoder(tiny_bi_encoder_dir, cache_dir=tmp_path, max_length=64, threads=2)
    texts = [f"{r['title']}. {r['description']}" for r in good_rows(20)] + ["oak " * 80, "x", "UPPER case 12 V"]
    together = enc.encode(texts)
    alone = np.stack([enc.encode([t])[0] for t in texts])
    backwards = enc.encode(texts[::-1])[::-1]
    assert np.array_equal(together, alone) and np.array_equal(together, backwards)
    assert enc.encode([]).shape == (0, enc.dims)


def test_int8_pool_matches_in_process_int8_and_records_the_encoder(tiny_bi_encoder_dir, tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", good_rows(40))
    sinks = {}
    for workers in (1, 2):
        sink = sinks[workers] = MemorySink()
        with open_index_encoder(tiny_bi_encoder_dir, kind=INT8, workers=workers, max_length=64,
                                onnx_dir=tmp_path / "onnx") as enc:
            assert isinstance(enc, EncoderPool) == (workers == 2)
            report = run_index(path, sink, enc, alias="shop", progress=False, chunk_size=8,
                               quarantine_path=tmp_path / "q.jsonl")
        assert (report.read, report.indexed, report.embedded) == (40, 40, 40)
        record = EncoderRecord.from_meta(sink.index_meta("shop"))
        assert record is not None and record.kind == INT8 and record.fingerprint.endswith(f"|{INT8}")
    a, b = ({pid: np.asarray(d.vector) for pid, d in s.indices[s.resolve_alias("shop")].items()}
            for s in (sinks[1], sinks[2]))
    assert max(float(np.abs(a[k] - b[k]).max()) for k in a) < 1e-4


def test_cli_indexes_with_int8_workers_and_records_it(tiny_bi_encoder_dir, tmp_path, monkeypatch, capsys):
    from shopsearch.api.cli import main
    from shopsearch.plugin.engines import open_engine

    monkeypatch.setenv("SHOPSEARCH_HOME", str(tmp_path / "home"))
    path = write_jsonl(tmp_path / "c.jsonl", good_rows(30))
    root = tmp_path / "embedded"
    code = main(["index", str(path), "--index", "shop", "--engine", "embedded", "--root", str(root), "--full",
                 "--model", str(tiny_bi_encoder_dir), "--max-length", "64", "--workers", "2", "--encoder", INT8,
                 "--cache", "none", "--no-progress", "--quarantine", str(tmp_path / "q.jsonl")])
    assert code == 0
    assert "read 30, indexed 30, quarantined 0, unchanged 0" in capsys.readouterr().out
    engine = open_engine("embedded", root=root)
    try:
        assert EncoderRecord.from_meta(engine.index_meta("shop")).kind == INT8
    finally:
        engine.close()


def test_int8_vectors_an_older_version_cached_are_not_read(tiny_bi_encoder_dir, tmp_path):
    # Before 2026-12-03 the int8 encoder's vectors depended on the rows embedded beside them; a run now embeds
    # each text alone, and must not take those older vectors from the cache.
    from shopsearch.indexer.vector_cache import VectorCache, cache_key

    rows = good_rows(10)
    path = write_jsonl(tmp_path / "c.jsonl", rows)
    enc = int8_encoder(tiny_bi_encoder_dir, cache_dir=tmp_path / "onnx", max_length=64, threads=1)
    cache = VectorCache(tmp_path / "vectors.sqlite")
    stale = np.full(enc.dims, 0.5, np.float32)
    cache.put_many({cache_key(enc.fingerprint, f"{r['title']}. {r['description']}"): stale for r in rows})  # as before
    sink = MemorySink()
    report = run_index(path, sink, enc, alias="shop", progress=False, cache=cache, quarantine_path=tmp_path / "q.jsonl")
    assert (report.embedded, report.cache_hits) == (10, 0)
    vectors = [np.asarray(d.vector) for d in sink.indices[sink.resolve_alias("shop")].values()]
    assert not any(np.allclose(v, stale) for v in vectors)
    again = run_index(path, MemorySink(), enc, alias="shop", progress=False, cache=cache,
                      quarantine_path=tmp_path / "q.jsonl")
    assert (again.embedded, again.cache_hits) == (0, 10)  # this version's own cached vectors are read
