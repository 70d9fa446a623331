"""Resident memory of one search worker with the ONNX query encoder: lean (export recorded) vs the training stack.

Builds, in a scratch home, a 200-product demo catalog in the embedded engine and the model's ONNX export, then
starts fresh interpreters that do what a gunicorn worker of ``shopsearch serve`` does (create_app, build the
searcher at boot, serve one /search) and reports their RSS (psutil) and which heavy modules they imported:

- ``training stack``: the export exists but is not recorded in its manifest (what every worker did before issue 16,
  item 6: load the torch BiEncoder to compute the fingerprint that names the export, then serve with ONNX Runtime);
- ``lean``: the export is recorded (indexer/onnx_encoder.py), so the worker imports neither torch nor
  sentence-transformers nor transformers.

    python bench/worker_rss.py [--model all-MiniLM-L6-v2] [--runs 2] [--home DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "sentence_transformers", "transformers", "onnxscript", "onnx")

WORKER = """
import json, sys
import psutil
from shopsearch.api.app import create_app

app = create_app({"TESTING": True, "home": sys.argv[1], "model": sys.argv[2], "engine": "embedded"})
svc = app.extensions["shopsearch"]
svc.get_searcher()
status = app.test_client().get("/search?q=desk+lamp").status_code
svc.ubi_drainer.stop()
print(json.dumps({"status": status, "rss_mb": psutil.Process().memory_info().rss / 2**20,
                  "encoder": type(svc.searcher.embeddings.embedder).__name__,
                  "imported": [m for m in %r if m in sys.modules]}))
""" % (HEAVY,)


def prepare(home: Path, model: str) -> None:
    """Index the demo catalog into ``home``'s embedded engine and export ``model`` to ONNX under ``home/onnx``."""
    from shopsearch.api.demo_catalog import write_catalog
    from shopsearch.indexer.onnx_encoder import load_query_encoder
    from shopsearch.settings import child_environment, load_settings

    catalog = write_catalog(home / "catalog.jsonl", n=200)
    env = child_environment({"home": home})
    subprocess.run([sys.executable, "-m", "shopsearch.api.cli", "index", str(catalog), "--engine", "embedded",
                    "--full", "--no-progress", "--model", model], check=True, env=env, cwd=REPO,
                   stdout=subprocess.DEVNULL)
    cfg = load_settings({"home": str(home), "model": model}, environ={})
    load_query_encoder(model, mode="onnx", cache_dir=cfg.onnx_dir)


def measure(home: Path, model: str) -> dict:
    """One fresh worker's RSS after boot and one search."""
    run = subprocess.run([sys.executable, "-c", WORKER, str(home), model], capture_output=True, text=True,
                         check=True, cwd=REPO)
    return json.loads(run.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="all-MiniLM-L6-v2")
    p.add_argument("--runs", type=int, default=2, help="workers measured per configuration")
    p.add_argument("--home", help="scratch home (default: a temporary folder)")
    args = p.parse_args(argv)
    home = Path(args.home or tempfile.mkdtemp(prefix="worker-rss-"))
    prepare(home, args.model)
    rows = []
    for label in ("training stack", "lean"):
        for _ in range(args.runs):
            if label == "training stack":  # forget the record: the worker finds the export the old way
                for manifest in (home / "onnx").glob("*.served.json"):
                    manifest.unlink()
            got = measure(home, args.model)
            rows.append((label, got))
    print(f"{'worker':<16}{'RSS MB':>8}{'workers/GB':>12}  encoder          imported")
    for label, got in rows:
        print(f"{label:<16}{got['rss_mb']:>8.0f}{1024 / got['rss_mb']:>12.2f}  {got['encoder']:<16} "
              f"{', '.join(got['imported']) or '-'}")


if __name__ == "__main__":
    main()
