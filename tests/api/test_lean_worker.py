"""A search worker serving an existing ONNX export never imports torch, sentence-transformers or transformers.

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
from shopsearch.settings import load_settings

from .conftest import build_catalog

TRAINING_STACK = ("torch", "sentence_transformers", "transformers")

WORKER = """
import json, sys
from shopsearch.api.app import create_app

app = create_app({"TESTING": True, "home": sys.argv[1], "model": sys.argv[2], "engine": "embedded",
                  "query_encoder": "onnx"})
svc = app.extensions["shopsearch"]
svc.get_searcher()  # what gunicorn's post_worker_init does at boot
response = app.test_client().get("/search?q=desk+lamp")
svc.ubi_drainer.stop()
print(json.dumps({"status": response.status_code, "ids": [h["id"] for h in response.get_json()["hits"]],
                  "encoder": type(svc.searcher.embeddings.embedder).__name__,
                  "imported": sorted(m for m in %r if m in sys.modules)}))
""" % (TRAINING_STACK,)


def test_search_worker_with_onnx_encoder_does_not_import_torch(tiny_bi_encoder_dir, tiny_encoder, tmp_path):
    cfg = load_settings({"home": str(tmp_path), "model": str(tiny_bi_encoder_dir), "engine": "embedded"},
                        environ={})
    engine = open_engine("embedded", root=cfg.embedded_dir)
    build_catalog(engine, tiny_encoder, alias=cfg.index)
    engine.close()
    # the export, made beforehand (exporting needs torch; `shopsearch serve` workers find it under <home>/onnx)
    assert type(load_query_encoder(tiny_bi_encoder_dir, mode="onnx", cache_dir=cfg.onnx_dir)) is OnnxQueryEncoder

    run = subprocess.run([sys.executable, "-c", WORKER, str(tmp_path), str(tiny_bi_encoder_dir)],
                         capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parents[2])
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert got["status"] == 200 and got["ids"] and got["encoder"] == "OnnxQueryEncoder"
    assert got["imported"] == [], f"the search worker imported {got['imported']}"
