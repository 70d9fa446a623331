"""The API's query_encoder setting: validated, read from the environment, and honoured by build_searcher."""

from __future__ import annotations

import pytest

from shopsearch.api.app import build_searcher
from shopsearch.indexer.embedder import BiEncoder
from shopsearch.indexer.onnx_encoder import OnnxQueryEncoder
from shopsearch.settings import load_settings


def test_query_encoder_option_is_validated_and_read_from_the_environment():
    assert load_settings(environ={}).query_encoder == "auto"
    assert load_settings(environ={"SHOPSEARCH_QUERY_ENCODER": "torch"}).query_encoder == "torch"
    with pytest.raises(ValueError, match=r"query_encoder='gpu' \(from flags\): Input should be 'auto', 'onnx' or "
                                         r"'torch'"):
        load_settings({"query_encoder": "gpu"}, environ={})


@pytest.mark.parametrize("mode, expected", [("torch", BiEncoder), ("onnx", OnnxQueryEncoder)])
def test_build_searcher_uses_the_configured_encoder(mode, expected, tiny_bi_encoder_dir, tmp_path):
    cfg = load_settings({"model": str(tiny_bi_encoder_dir), "home": str(tmp_path), "query_encoder": mode},
                        environ={})
    engine = object()  # build_searcher only stores a given engine
    got_engine, searcher = build_searcher(cfg, engine)
    encoder = searcher.embeddings.embedder
    assert got_engine is engine and type(encoder) is expected and encoder.dims == 32
    if expected is OnnxQueryEncoder:  # exported under <home>/onnx
        assert encoder.onnx_path.parent == tmp_path / "onnx" and encoder.exported
