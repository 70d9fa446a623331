"""A search worker serving existing ONNX exports never imports torch, sentence-transformers or transformers: with
the query encoder alone, and with a profile that reranks with the cross-encoder's ONNX int8 path.

Checked in a fresh interpreter (this test process has torch loaded already): it builds the app the way a gunicorn
worker does, serves one /search over a tiny embedded index and reports which heavy modules got imported.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from shopsearch.indexer.onnx_encoder import OnnxQueryEncoder, load_query_encoder
from shopsearch.plugin.engines import open_engine
from shopsearch.reranker.cross_encoder import CrossEncoderReranker
from shopsearch.settings import Settings, child_environment, load_settings
from tests.reranker.tiny_ce import build_tiny_cross_encoder

from .conftest import build_catalog

TRAINING_STACK = ("torch", "sentence_transformers", "transformers")

WORKER = """
import json, sys
from shopsearch.api.app import create_app

app = create_app({"TESTING": True, "home": sys.argv[1], "model": sys.argv[2], "engine": "embedded",
                  "query_encoder": "onnx"})
svc = app.extensions["shopsearch"]
svc.get_searcher()  # what gunicorn's post_worker_init does at boot
response = app.test_client().get("/search?q=desk+lamp&explain=true&profile=" + sys.argv[3])
svc.ubi_drainer.stop()
body = response.get_json()
models = svc.get_pipeline().models
print(json.dumps({"status": response.status_code, "ids": [h["id"] for h in body["hits"]],
                  "encoder": type(svc.searcher.embeddings.embedder).__name__,
                  "reranked": sum("cross_encoder" in (h.get("stages") or {}) for h in body["hits"]),
                  "precision": [models.cross_encoder(n).precision for k, n in models.loaded() if k == "cross_encoder"],
                  "imported": sorted(m for m in %r if m in sys.modules)}))
""" % (TRAINING_STACK,)


def _worker(home: Path, model: Path, profile: str) -> dict:
    """Run WORKER in a fresh interpreter on ``home`` (also its SHOPSEARCH_HOME, as `shopsearch serve` passes it)."""
    env = child_environment({"home": home})
    run = subprocess.run([sys.executable, "-c", WORKER, str(home), str(model), profile], capture_output=True,
                         text=True, timeout=300, cwd=Path(__file__).resolve().parents[2], env=env)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout.strip().splitlines()[-1])


def _prepare(home: Path, model: Path, encoder) -> Settings:
    """A tiny catalog in ``home``'s embedded engine and the query encoder's export (exporting needs torch; `shopsearch
    serve` workers find it under <home>/onnx)."""
    cfg = load_settings({"home": str(home), "model": str(model), "engine": "embedded"}, environ={})
    engine = open_engine("embedded", root=cfg.embedded_dir)
    build_catalog(engine, encoder, alias=cfg.index)
    engine.close()
    assert type(load_query_encoder(model, mode="onnx", cache_dir=cfg.onnx_dir)) is OnnxQueryEncoder
    return cfg


def test_search_worker_with_onnx_encoder_does_not_import_torch(tiny_bi_encoder_dir, tiny_encoder, tmp_path):
    _prepare(tmp_path, tiny_bi_encoder_dir, tiny_encoder)
    got = _worker(tmp_path, tiny_bi_encoder_dir, "default")
    assert got["status"] == 200 and got["ids"] and got["encoder"] == "OnnxQueryEncoder"
    assert got["imported"] == [], f"the search worker imported {got['imported']}"


def test_search_worker_reranking_with_the_onnx_cross_encoder_does_not_import_torch(tiny_bi_encoder_dir,
                                                                                    tiny_encoder, tmp_path):
    cfg = _prepare(tmp_path, tiny_bi_encoder_dir, tiny_encoder)
    ce = build_tiny_cross_encoder(cfg.models_dir / "ce-minilm")  # the model the packaged rerank-ce profile names
    # its int8 export, made beforehand as the query encoder's is (the first load of a model exports it)
    assert CrossEncoderReranker(ce, device="cpu", require_onnx=True, onnx_cache=cfg.onnx_dir).model is not None
    got = _worker(tmp_path, tiny_bi_encoder_dir, "rerank-ce")
    assert got["status"] == 200 and got["ids"] and got["encoder"] == "OnnxQueryEncoder"
    assert got["reranked"] > 0 and got["precision"] == ["onnx-int8"]
    assert got["imported"] == [], f"the search worker imported {got['imported']}"
