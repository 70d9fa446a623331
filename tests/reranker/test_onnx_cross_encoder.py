"""The cross-encoder's ONNX int8 path: pairs tokenised exactly as the Hugging Face tokenizer does, and a recorded
export served without torch (same scores as the process that exported it)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from shopsearch.reranker.cross_encoder import CrossEncoderReranker
from shopsearch.reranker.onnx_cross_encoder import export_path, pair_tokenizer
from tests.reranker.tiny_ce import build_tiny_cross_encoder

PAIRS = [("red lamp", "A red lamp for the desk"), ("Kinderfahrrad für Mädchen", "café crème ☕ 😀"),
         ("oak " * 40, "desk " * 40), ("x", ""), ("usb c cable", "Braided USB-C cable, 2 m " * 20)]

WORKER = """
import json, sys
from shopsearch.reranker.cross_encoder import CrossEncoderReranker
rr = CrossEncoderReranker(sys.argv[1], max_length=32, onnx_cache=sys.argv[2])
pairs = json.loads(sys.argv[3])
print(json.dumps({"precision": rr.precision, "scores": rr.score(pairs[0][0], [{"title": t} for _, t in pairs]).tolist(),
                  "imported": [m for m in ("torch", "sentence_transformers", "transformers") if m in sys.modules]}))
"""


@pytest.fixture(scope="module")
def tiny_ce(tmp_path_factory) -> Path:
    return build_tiny_cross_encoder(tmp_path_factory.mktemp("ce") / "tiny-ce")


def test_pair_tokenizer_gives_the_hugging_face_ids(tiny_ce):
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(tiny_ce)
    want = hf([q for q, _ in PAIRS], [t for _, t in PAIRS], truncation=True, max_length=32)  # unpadded
    got = pair_tokenizer(hf, 32).encode_batch(PAIRS)
    assert [e.ids for e in got] == want["input_ids"]
    assert [e.type_ids for e in got] == want["token_type_ids"]
    assert [e.attention_mask for e in got] == want["attention_mask"]


def test_recorded_export_scores_without_torch_as_the_exporting_process(tiny_ce, tmp_path):
    first = CrossEncoderReranker(tiny_ce, device="cpu", max_length=32, require_onnx=True, onnx_cache=tmp_path)
    assert first.precision == "onnx-int8" and first.model is not None  # loaded, exported and recorded
    out = export_path(tiny_ce, tmp_path)
    assert out.with_name(out.name.removesuffix(".onnx") + ".served.json").is_file()
    want = first.score(PAIRS[0][0], [{"title": t} for _, t in PAIRS])
    again = CrossEncoderReranker(tiny_ce, device="cpu", max_length=32, require_onnx=True, onnx_cache=tmp_path)
    assert again.model is None and again.precision == "onnx-int8"  # served from the record
    run = subprocess.run([sys.executable, "-c", WORKER, str(tiny_ce), str(tmp_path), json.dumps(PAIRS)],
                         capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parents[2])
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert got["precision"] == "onnx-int8" and got["imported"] == []
    assert np.allclose(got["scores"], want, atol=1e-6)


def test_a_pairs_int8_score_does_not_depend_on_what_is_scored_with_it(tiny_ce, tmp_path):
    # Dynamic quantisation scales a run's activations over its whole input: in a shared batch a product's score
    # (and so its rank) would move when another product joined the candidates or a filter removed one.
    rr = CrossEncoderReranker(tiny_ce, device="cpu", max_length=32, require_onnx=True, onnx_cache=tmp_path)
    products = [{"title": t} for _, t in PAIRS]
    together = rr.score("red lamp", products)
    alone = np.concatenate([rr.score("red lamp", [p]) for p in products])
    reversed_ = rr.score("red lamp", products[::-1])[::-1]
    assert np.array_equal(together, alone) and np.array_equal(together, reversed_)
    fp32 = CrossEncoderReranker(tiny_ce, device="cpu", max_length=32, fast_cpu=False).score("red lamp", products)
    assert np.allclose(together, fp32, atol=0.05)  # still the model's scores
