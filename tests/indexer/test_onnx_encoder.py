"""OnnxQueryEncoder against the torch BiEncoder it was exported from: same vectors, cached export, fallbacks."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from shopsearch.indexer import onnx_encoder
from shopsearch.indexer.embedder import BiEncoder
from shopsearch.indexer.onnx_encoder import OnnxQueryEncoder, export_paths, load_query_encoder

QUERIES = ["red lamp", "Red LAMP", "usb-c cable 2m", "Kinderfahrrad für Mädchen — größe 20\"",
           "日本語のテスト", "café crème ☕ 😀", "", "   ",
           "oak " * 60,  # 60 words > max_length tokens: truncation must agree
           "stainless steel double-wall insulated water bottle with a leak proof lid " * 5]


@pytest.fixture(scope="module")
def tiny(tiny_bi_encoder_dir):
    return BiEncoder(tiny_bi_encoder_dir, device="cpu", max_length=32)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="module")
def onnx_tiny(tiny, cache_dir):
    return OnnxQueryEncoder.from_bi_encoder(tiny, cache_dir=cache_dir)


def test_vectors_equal_torch_including_truncation_and_non_ascii(tiny, onnx_tiny):
    got, want = onnx_tiny.encode(QUERIES), tiny.encode(QUERIES)
    assert got.shape == want.shape == (len(QUERIES), 32) and got.dtype == np.float32
    assert np.sum(got * want, axis=1).min() > 0.9999
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    # one query alone (no padding) equals the same query inside a padded batch
    assert np.allclose(onnx_tiny.encode_one(QUERIES[3]), got[3], atol=1e-5)
    assert onnx_tiny.encode_one(QUERIES[8]).shape == (32,)
    # the truncated queries really hit the limit, so truncation was exercised
    assert len(tiny._st.tokenizer(QUERIES[8])["input_ids"]) > tiny.max_length


def test_batches_larger_than_one_chunk(tiny, onnx_tiny):
    texts = [f"product number {i} " + "x" * (i % 7) for i in range(onnx_encoder._CHUNK + 5)]
    got = onnx_tiny.encode(texts)
    assert got.shape == (len(texts), 32)
    assert np.sum(got * tiny.encode(texts), axis=1).min() > 0.9999


def test_same_interface_and_identity_as_the_bi_encoder(tiny, onnx_tiny):
    assert onnx_tiny.fingerprint == tiny.fingerprint
    assert (onnx_tiny.dims, onnx_tiny.max_length, onnx_tiny.name) == (tiny.dims, tiny.max_length, tiny.name)
    assert onnx_tiny.encode([]).shape == (0, 32)
    with pytest.raises(ValueError, match="single str"):
        onnx_tiny.encode("red lamp")


def test_export_is_cached_by_fingerprint(tiny, onnx_tiny, cache_dir, tiny_bi_encoder_dir, monkeypatch):
    assert onnx_tiny.exported and onnx_tiny.onnx_path == export_paths(cache_dir, tiny.fingerprint)[0]
    mtime = onnx_tiny.onnx_path.stat().st_mtime_ns
    calls = []
    monkeypatch.setattr(onnx_encoder, "_export", lambda *a: calls.append(a))
    again = OnnxQueryEncoder.from_bi_encoder(tiny, cache_dir=cache_dir)
    assert not again.exported and calls == [] and again.onnx_path.stat().st_mtime_ns == mtime
    # another max_length is another fingerprint, hence another export
    monkeypatch.undo()
    other = OnnxQueryEncoder.from_bi_encoder(tiny_bi_encoder_dir, cache_dir=cache_dir, max_length=16)
    assert other.exported and other.onnx_path != onnx_tiny.onnx_path and other.fingerprint != tiny.fingerprint
    # atomic writes leave no temporary files behind
    assert sorted(p.suffix for p in cache_dir.iterdir()) == [".json", ".json", ".onnx", ".onnx"]


def test_mode_switch(tiny_bi_encoder_dir, tmp_path):
    kw = {"cache_dir": tmp_path, "max_length": 32}
    assert type(load_query_encoder(tiny_bi_encoder_dir, mode="torch", cuda=False, **kw)) is BiEncoder
    assert type(load_query_encoder(tiny_bi_encoder_dir, mode="auto", cuda=True, **kw)) is BiEncoder
    assert type(load_query_encoder(tiny_bi_encoder_dir, mode="auto", cuda=False, **kw)) is OnnxQueryEncoder
    assert type(load_query_encoder(tiny_bi_encoder_dir, mode="onnx", cuda=True, **kw)) is OnnxQueryEncoder
    with pytest.raises(ValueError, match="query_encoder must be one of auto, onnx, torch; got 'tensorrt'"):
        load_query_encoder(tiny_bi_encoder_dir, mode="tensorrt", **kw)


def test_export_failure_falls_back_to_torch(tiny_bi_encoder_dir, tmp_path, monkeypatch, caplog):
    def broken(*args):
        raise RuntimeError("exporter exploded")

    monkeypatch.setattr(onnx_encoder, "_export", broken)
    with caplog.at_level(logging.WARNING, logger=onnx_encoder.__name__):
        enc = load_query_encoder(tiny_bi_encoder_dir, mode="onnx", cache_dir=tmp_path, max_length=32, cuda=False)
    assert type(enc) is BiEncoder and enc.device == "cpu"
    assert "falling back to torch" in caplog.text and "exporter exploded" in caplog.text
    assert list(tmp_path.iterdir()) == []


def test_missing_onnx_packages_fall_back_to_torch(tiny_bi_encoder_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(onnx_encoder, "onnx_available", lambda: False)
    enc = load_query_encoder(tiny_bi_encoder_dir, mode="auto", cache_dir=tmp_path, max_length=32, cuda=False)
    assert type(enc) is BiEncoder


def test_disagreeing_vectors_are_refused(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(OnnxQueryEncoder, "encode", lambda self, texts: -tiny.encode(texts))
    with pytest.raises(ValueError, match="ONNX vectors disagree with torch"):
        OnnxQueryEncoder.from_bi_encoder(tiny, cache_dir=tmp_path)


@pytest.mark.slow
def test_packaged_model_matches_torch(tmp_path):
    bi = BiEncoder("all-MiniLM-L6-v2", device="cpu")
    enc = OnnxQueryEncoder.from_bi_encoder(bi, cache_dir=tmp_path)
    queries = QUERIES + ["oak " * 300]  # > 256 tokens
    assert enc.fingerprint == bi.fingerprint and enc.dims == 384
    assert np.sum(enc.encode(queries) * bi.encode(queries), axis=1).min() > 0.9999
    assert float(enc.encode_one("girls summer dress") @ bi.encode_one("girls summer dress")) > 0.9999


def test_a_recorded_export_is_served_without_the_torch_model(tiny_bi_encoder_dir, tiny, tmp_path, monkeypatch,
                                                             caplog):
    first = load_query_encoder(tiny_bi_encoder_dir, mode="onnx", cache_dir=tmp_path, max_length=32, cuda=False)
    assert first.exported and len(list(tmp_path.glob("*.served.json"))) == 1

    def no_torch(*args, **kwargs):
        raise AssertionError("the torch BiEncoder was loaded")

    monkeypatch.setattr(onnx_encoder, "BiEncoder", no_torch)
    again = load_query_encoder(tiny_bi_encoder_dir, mode="onnx", cache_dir=tmp_path, max_length=32, cuda=False)
    assert type(again) is OnnxQueryEncoder and not again.exported and again.onnx_path == first.onnx_path
    assert (again.fingerprint, again.dims, again.max_length) == (tiny.fingerprint, 32, 32)
    assert np.allclose(again.encode(QUERIES), tiny.encode(QUERIES), atol=1e-5)

    monkeypatch.undo()  # a damaged record: the export is found the old way and the record rewritten
    manifest = next(tmp_path.glob("*.served.json"))
    manifest.write_text("{not json", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger=onnx_encoder.__name__):
        repaired = load_query_encoder(tiny_bi_encoder_dir, mode="onnx", cache_dir=tmp_path, max_length=32, cuda=False)
    assert type(repaired) is OnnxQueryEncoder and "unusable" in caplog.text
    assert json.loads(manifest.read_text(encoding="utf-8"))["fingerprint"] == tiny.fingerprint
