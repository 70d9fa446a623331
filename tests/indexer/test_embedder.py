"""BiEncoder on the tiny test model, and the SQLite vector cache."""

from __future__ import annotations

import numpy as np
import pytest

from shopsearch.indexer.embedder import BiEncoder, resolve_model_dir
from shopsearch.indexer.vector_cache import VectorCache, cache_key


@pytest.fixture(scope="module")
def tiny(tiny_bi_encoder_dir):
    return BiEncoder(tiny_bi_encoder_dir, device="cpu", max_length=32, batch_size=4)


def test_encode_is_float32_normalised_and_batched_consistently(tiny):
    texts = ["red lamp", "usb cable", "girls dress", "oak desk", "blue mug"]
    vecs = tiny.encode(texts)
    assert vecs.shape == (5, 32) == (len(texts), tiny.dims) and vecs.dtype == np.float32
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert np.allclose(tiny.encode_one("usb cable"), vecs[1], atol=1e-5)
    assert tiny.encode([]).shape == (0, 32)
    with pytest.raises(ValueError, match="single str"):
        tiny.encode("red lamp")


def test_fingerprint_tracks_model_and_max_length(tiny, tiny_bi_encoder_dir):
    other = BiEncoder(tiny_bi_encoder_dir, device="cpu", max_length=16)
    assert tiny.fingerprint != other.fingerprint and "len=32" in tiny.fingerprint
    assert tiny.fingerprint == BiEncoder(tiny_bi_encoder_dir, device="cpu", max_length=32).fingerprint


def test_max_length_is_clamped_to_the_model(tiny_bi_encoder_dir):
    assert BiEncoder(tiny_bi_encoder_dir, device="cpu", max_length=10_000).max_length == 128


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="hub downloads are disabled"):
        resolve_model_dir("bert-base-uncased")
    with pytest.raises(ValueError, match="max_length must be an integer >= 8"):
        BiEncoder(tmp_path, max_length=2)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        BiEncoder(tmp_path, batch_size=0)


def test_packaged_name_resolves_locally():
    assert (resolve_model_dir("all-MiniLM-L6-v2") / "modules.json").is_file()


def test_vector_cache_round_trip_and_persistence(tmp_path):
    key_a, key_b = cache_key("fp", "red lamp"), cache_key("fp", "blue lamp")
    assert cache_key("fp2", "red lamp") != key_a
    vec = np.arange(4, dtype=np.float32)
    with VectorCache(tmp_path / "v.sqlite") as cache:
        cache.put_many({key_a: vec})
        assert list(cache.get_many([key_a, key_b])) == [key_a]
    with VectorCache(tmp_path / "v.sqlite") as cache:  # survives reopening
        got = cache.get_many([key_a] * 3)
        assert np.array_equal(got[key_a], vec) and len(cache) == 1
        many = {cache_key("fp", str(i)): np.full(2, i, np.float32) for i in range(1200)}  # > one IN (...) chunk
        cache.put_many(many)
        assert len(cache.get_many(list(many))) == 1200
