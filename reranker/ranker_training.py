"""Train the LightGBM conversion model with query-grouped cross-validation and save it with a model card.

Folds group rows by ``query_id`` (no query is in both the training and the held-out part of a fold). Each fold
reports AUC of the target and purchase-nDCG@10 over held-out lists with a purchase. The final model is fitted
on all rows; for lambdarank a Platt calibration fitted on the out-of-fold scores turns scores into probabilities.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shopsearch.evaluation import auc, mean_list_ndcg

from .conversion import CARD_FILE, CARD_VERSION, MODEL_FILE, ConversionModel, platt
from .features import FEATURES
from .training_rows import TrainingRows

OBJECTIVES = ("lambdarank", "binary")
TARGETS = ("purchase", "click")
DEFAULT_PARAMS: dict[str, Any] = {
    "learning_rate": 0.05, "num_leaves": 15, "min_data_in_leaf": 20, "feature_fraction": 0.9,
    "bagging_fraction": 0.9, "bagging_freq": 1, "lambda_l2": 1.0, "num_threads": 2, "verbose": -1,
    "deterministic": True, "force_row_wise": True,
}
NUM_ROUNDS = 120


@dataclass(frozen=True)
class TrainResult:
    """A fitted booster plus everything the model card records."""

    booster: Any
    objective: str
    target: str
    params: dict[str, Any]
    folds: list[dict[str, float]]
    calibration: dict[str, float]
    importance_gain: dict[str, float]


def _check(objective: str, target: str, folds: int) -> None:
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}; got {objective!r}")
    if target not in TARGETS:
        raise ValueError(f"target must be one of {', '.join(TARGETS)}; got {target!r}")
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise ValueError(f"folds must be an integer >= 2; got {folds!r}")


def labels(rows: TrainingRows, objective: str, target: str) -> np.ndarray:
    """Training labels: lambdarank/purchase grades 0 none, 1 click, 2 add_to_cart, 3 purchase; else 0/1."""
    if objective == "lambdarank" and target == "purchase":
        return rows.clicked + rows.carted + rows.purchased
    return (rows.purchased if target == "purchase" else rows.clicked).astype(int)


def group_folds(groups: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Fold number (0..k-1) per row; every group (query) lands in one fold, groups shuffled by ``seed``.

    Raises:
        ValueError: fewer distinct groups than folds.
    """
    uniq = sorted(set(groups.tolist()))
    if len(uniq) < k:
        raise ValueError(f"folds={k} needs at least {k} distinct query_ids; got {len(uniq)}")
    perm = np.random.default_rng(seed).permutation(len(uniq))
    fold_of = {uniq[g]: i % k for i, g in enumerate(perm)}
    return np.array([fold_of[g] for g in groups.tolist()])


def _group_sizes(list_ids: np.ndarray) -> list[int]:
    sizes: list[int] = []
    prev = None
    for lid in list_ids.tolist():
        if lid != prev:
            sizes.append(0)
            prev = lid
        sizes[-1] += 1
    return sizes


def fit(rows: TrainingRows, objective: str, target: str, seed: int, params: dict[str, Any] | None = None):
    """One LightGBM booster on ``rows`` (no validation); returns the booster."""
    import lightgbm as lgb

    p = {**DEFAULT_PARAMS, **(params or {}), "objective": objective, "seed": seed}
    if objective == "lambdarank":
        p.update({"eval_at": [10], "lambdarank_truncation_level": 20})
    ds = lgb.Dataset(rows.X, label=labels(rows, objective, target), feature_name=list(rows.names),
                     group=_group_sizes(rows.list_ids) if objective == "lambdarank" else None,
                     free_raw_data=False)
    return lgb.train(p, ds, num_boost_round=NUM_ROUNDS)


def evaluate(rows: TrainingRows, scores: np.ndarray, target: str = "purchase") -> dict[str, float]:
    """AUC of the target and purchase-nDCG@10 (lists with a purchase) of ``scores`` on ``rows``."""
    y = rows.purchased if target == "purchase" else rows.clicked
    ndcg, n_lists = mean_list_ndcg(rows.list_ids, rows.purchased, scores, 10)
    return {"auc": auc(y, scores), "purchase_ndcg@10": ndcg, "lists_with_purchase": n_lists, "rows": len(rows)}


def compare(rows: TrainingRows, candidate: np.ndarray, baselines: dict[str, np.ndarray],
            target: str = "purchase") -> dict[str, dict[str, float]]:
    """Metrics of every baseline's scores and of the candidate's on the same rows, baselines first.

    NaN baseline scores (a missing stage) rank last. Example: ``compare(test, model.predict(test.X),
    {"bm25": bm25_scores, "cross_encoder": ce_scores})``.
    """
    out = {}
    for name, scores in {**baselines, "candidate": candidate}.items():
        s = np.nan_to_num(np.asarray(scores, dtype=float), nan=-1e18)
        if len(s) != len(rows):
            raise ValueError(f"scores {name!r} have {len(s)} values for {len(rows)} rows")
        out[name] = evaluate(rows, s, target)
    return out


def train(rows: TrainingRows, *, objective: str = "lambdarank", target: str = "purchase", folds: int = 5,
          seed: int = 0, params: dict[str, Any] | None = None, progress: bool = False) -> TrainResult:
    """Cross-validate by query, then fit the final model on every row.

    Raises:
        ValueError: bad objective/target/folds, too few queries, or no positive label.
    """
    _check(objective, target, folds)
    y = labels(rows, objective, target)
    if not (y > 0).any():
        raise ValueError(f"no {target} in the events; cannot train a {target} model")
    fold_of = group_folds(rows.query_ids, folds, seed)
    oof = np.zeros(len(rows))
    results = []
    iterator = range(folds)
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, desc="cv folds", unit="fold")
    for f in iterator:
        train_rows, test_rows = rows.subset(fold_of != f), rows.subset(fold_of == f)
        booster = fit(train_rows, objective, target, seed, params)
        oof[fold_of == f] = booster.predict(test_rows.X, raw_score=True)
        results.append({"fold": f, **evaluate(test_rows, oof[fold_of == f], target)})
    booster = fit(rows, objective, target, seed, params)
    binary_y = rows.purchased if target == "purchase" else rows.clicked
    a, b = platt(oof, binary_y) if objective == "lambdarank" else (1.0, 0.0)
    gain = booster.feature_importance(importance_type="gain")
    importance = dict(sorted(zip(rows.names, map(float, gain)), key=lambda t: -t[1]))
    return TrainResult(booster, objective, target, {**DEFAULT_PARAMS, **(params or {}), "objective": objective,
                                                      "seed": seed, "num_boost_round": NUM_ROUNDS},
                       results, {"a": a, "b": b}, importance)


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file, streamed."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save(result: TrainResult, rows: TrainingRows, out_dir: str | Path, data: dict[str, Any]) -> ConversionModel:
    """Write ``model.txt``, ``model_card.json`` and ``README.md`` to ``out_dir``; returns the loaded model.

    ``data`` describes the training data (events path and sha256, data dir, simulated or not).
    """
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    result.booster.save_model(str(d / MODEL_FILE))
    keys = ("auc", "purchase_ndcg@10")
    mean = {k: float(np.nanmean([f[k] for f in result.folds])) for k in keys}
    desc = {f.name: f.description for f in FEATURES}
    card = {
        "card_version": CARD_VERSION, "name": d.name, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "objective": result.objective, "target": result.target, "features": list(rows.names),
        "params": result.params, "calibration": result.calibration,
        "data": {**data, "rows": len(rows), "lists": len(set(rows.list_ids.tolist())),
                 "queries": len(set(rows.query_ids.tolist())), "clicks": int(rows.clicked.sum()),
                 "purchases": int(rows.purchased.sum())},
        "cv": {"group_by": "query_id", "folds": result.folds, "mean": mean},
        "importance_gain": result.importance_gain,
    }
    (d / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    sim = " (SIMULATED events)" if data.get("simulated") else ""
    lines = [f"# Conversion model `{d.name}`", "",
             f"LightGBM `{result.objective}`, target `{result.target}`, trained on {len(rows)} impressions"
             f"{sim}; events sha256 `{data.get('events_sha256', '?')}`.", "",
             "## Cross-validation (GroupKFold by query_id)", "", "| fold | AUC | purchase nDCG@10 | lists |",
             "|---|---|---|---|"]
    lines += [f"| {f['fold']} | {f['auc']:.4f} | {f['purchase_ndcg@10']:.4f} | {f['lists_with_purchase']} |"
              for f in result.folds]
    lines += [f"| mean | {mean['auc']:.4f} | {mean['purchase_ndcg@10']:.4f} | |", "",
              "## Features (importance by gain)", "", "| feature | gain | meaning |", "|---|---|---|"]
    lines += [f"| {n} | {g:.1f} | {desc[n]} |" for n, g in result.importance_gain.items()]
    lines += ["", "Files: `model.txt` (LightGBM text format), `model_card.json` (this card, machine-readable).", ""]
    (d / "README.md").write_text("\n".join(lines), encoding="utf-8")
    return ConversionModel.load(d)
