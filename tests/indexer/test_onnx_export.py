"""torch's exporter and ONNX Runtime's quantiser on a tiny masked-mean model: dynamic axes, parity, atomic files."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from shopsearch.indexer.onnx_export import cpu_session, export_onnx, onnx_available, quantize_int8


class MaskedMean(torch.nn.Module):
    """input_ids, attention_mask -> the masked mean of projected token embeddings (a bi-encoder in miniature)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embed = torch.nn.Embedding(50, 64)
        self.proj = torch.nn.Linear(64, 64)

    def forward(self, input_ids, attention_mask):
        mask = attention_mask.unsqueeze(-1).to(torch.float32)
        return (self.proj(self.embed(input_ids)) * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


def _inputs(batch: int, length: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    mask = np.ones((batch, length), dtype=np.int64)
    mask[0, length // 2:] = 0  # a padded row
    return {"input_ids": rng.integers(1, 50, (batch, length), dtype=np.int64), "attention_mask": mask}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = MaskedMean().eval()
    path = tmp_path_factory.mktemp("export") / "m.onnx"
    export_onnx(model, {k: torch.from_numpy(v) for k, v in _inputs(2, 5, 0).items()}, "pooled", path)
    return model, path


def _torch(model, feed):
    with torch.inference_mode():
        return model(*(torch.from_numpy(v) for v in feed.values())).numpy()


def test_packages_for_the_export_are_installed():
    assert onnx_available()


@pytest.mark.parametrize("batch,length", [(1, 3), (2, 5), (7, 40)])
def test_export_matches_torch_at_any_batch_and_length(exported, batch, length):
    model, path = exported
    feed = _inputs(batch, length, seed=batch * 100 + length)
    got = cpu_session(path, threads=1).run(None, feed)[0]
    assert got.shape == (batch, 64)
    np.testing.assert_allclose(got, _torch(model, feed), atol=1e-5)


def test_single_file_with_named_inputs_and_output(exported):
    _, path = exported
    graph = onnx.load(str(path)).graph
    assert [i.name for i in graph.input] == ["input_ids", "attention_mask"] and graph.output[0].name == "pooled"
    assert sorted(p.name for p in path.parent.iterdir()) == ["m.onnx"]  # no external data, no temporary files


def test_int8_quantisation_stays_close_and_shrinks_the_weights(exported, tmp_path):
    model, path = exported
    out = tmp_path / "m-int8.onnx"
    quantize_int8(path, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m-int8.onnx"]
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert "MatMulInteger" in ops and out.stat().st_size < path.stat().st_size / 2
    feed = _inputs(3, 11, seed=7)
    want = _torch(model, feed)
    got = cpu_session(out, threads=1).run(None, feed)[0]
    assert np.abs(got - want).max() < 0.05 * np.abs(want).max()
