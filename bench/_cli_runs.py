"""Running `shopsearch` commands from the bench scripts that chain them (closed_loop.py, ltr_cv.py, bi_cv.py,
ltr_crossfit.py)."""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path
from typing import Mapping


def command(cmd: list[str]) -> list[str]:
    """``cmd`` with a leading ``shopsearch`` run by this Python, so a bench works without the venv on PATH."""
    return [sys.executable, "-m", "shopsearch.api.cli", *cmd[1:]] if cmd[:1] == ["shopsearch"] else list(cmd)


def sh(cmd: list[str], env: Mapping[str, str], out: Path | None = None) -> str:
    """Run a command; return its stdout (also written to ``out``) and print its last line with the time it took.

    A failing command ends the bench with its stderr's tail: the later steps depend on it. Its stdout goes to
    ``out`` + ".failed" instead, so a report a rerun reads is never one a failed step left.
    """
    t0 = time.perf_counter()
    proc = subprocess.run(command(cmd), env=dict(env), capture_output=True, text=True)
    if out is not None:
        if proc.returncode == 0:
            out.write_text(proc.stdout, encoding="utf-8")
        else:
            out.with_name(out.name + ".failed").write_text(proc.stdout, encoding="utf-8")
    tail = (proc.stdout.strip().splitlines() or [""])[-1]
    print(f"  $ {' '.join(cmd[:3])} ... ({time.perf_counter() - t0:.0f}s) {tail[:160]}", flush=True)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc.stdout


def step(cmd: list[str], env: Mapping[str, str], out: Path) -> None:
    """Run ``cmd`` into ``out`` unless an earlier run finished it (a failed run leaves only ``out``.part)."""
    if out.exists():
        print(f"  (kept {out.name})", flush=True)
        return
    part = out.with_name(out.name + ".part")
    sh(cmd, env, part)
    part.rename(out)


def link_targets(links: list[str], fold: int) -> dict[str, Path]:
    """Each ``NAME=PATH`` of ``links`` as NAME -> PATH, with ``{fold}`` in PATH replaced by ``fold``, for a model
    trained per fold (a cross-encoder that held the same fold out)."""
    return {name: Path(path.replace("{fold}", str(fold))).resolve()
            for name, _, path in (link.partition("=") for link in links)}


def models_with_links(models: Path, links: list[str], fold: int) -> Path:
    """``models`` (created) holding each ``NAME=PATH`` of ``links`` (:func:`link_targets`) as a symlink NAME: a model
    every fold shares, such as a profile's cross-encoder, beside the fold's own."""
    models.mkdir(parents=True, exist_ok=True)
    for name, target in link_targets(links, fold).items():
        if not (models / name).exists():
            (models / name).symlink_to(target)
    return models


def add_fold_args(ap: argparse.ArgumentParser, index_help: str) -> None:
    """The options every fold-by-fold bench shares: the judged folder, the index, the work folder, K."""
    ap.add_argument("--data", required=True, help="judged data folder (products.jsonl, queries-dev.tsv, qrels)")
    ap.add_argument("--index", required=True, help=index_help)
    ap.add_argument("--work", required=True, help="folder for every fold's models, logs and reports")
    ap.add_argument("--folds", type=int, default=5)
