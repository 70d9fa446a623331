"""Refit a trained cross-encoder's score calibration on every validation query, scored the way it is served.

Training fits the isotonic map (score -> raw rating) with the fp32 weights, and older models did so on the capped
validation subset early stopping uses. The served scores come from another path (ONNX Runtime int8 on CPU, fp16
on CUDA) and a map fitted on a few hundred pairs is mostly noise, so :func:`recalibrate` scores all of a data
folder's validation pairs with the serving reranker and refits. Test queries stay untouched.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from shopsearch.evaluation import rmse_vs_mean

from .calibration import fit_isotonic, load_calibrations, save_calibrations
from .model_card import read_model_card, trained_on, write_model_card
from .pool_eval import heldout_pools, model_scores

Scorer = Callable[[str, list[dict[str, Any]]], np.ndarray]  # (query, products) -> scores


def recalibrate(model_dir: str | Path, data_dirs: Sequence[str | Path], score: Scorer,
                precision: str) -> dict[str, dict[str, float]]:
    """Refit and save the calibration of each data folder on all its validation queries.

    Args:
        model_dir: the trained cross-encoder (its card gives the seeded split).
        data_dirs: data folders the model was trained on (others keep their stored calibration).
        score: the serving reranker's scorer, e.g. ``CrossEncoderReranker(...).score``.
        precision: how ``score`` computes (recorded in the model card), e.g. ``"onnx-int8"``.
    Returns:
        {data folder name: {"queries", "pairs", "rmse_calibrated", "rmse_mean"}} on the validation pairs.
    Raises:
        ValueError: a data folder the model was not trained on, or one with too few rated pairs.
    """
    card = read_model_card(model_dir)
    trained = trained_on(card)
    cals, default = load_calibrations(model_dir)
    report: dict[str, dict[str, float]] = {}
    for d in data_dirs:
        if Path(d).name not in trained:
            raise ValueError(f"data dir {str(d)!r} is not one the model was trained on ({', '.join(trained)}): "
                             "its validation queries are not defined")
        data, pools, train = heldout_pools(d, model_dir, "valid")
        scores = np.concatenate(model_scores(pools, score)) if pools else np.zeros(0)
        raw = np.concatenate([p.raw for p in pools]) if pools else np.zeros(0)
        cal = fit_isotonic(scores, raw, data.raw_min, data.raw_max)
        cals[data.name] = cal
        mean = float(np.nanmean([data.raw_score(q) for q in train]))
        report[data.name] = {"queries": len(pools), "pairs": int(raw.size),
                             **rmse_vs_mean(cal.apply(scores), raw, mean)}
    save_calibrations(model_dir, cals, default or next(iter(report)))
    card["calibration"] = {"fitted_on": "every validation query's judged pairs", "precision": precision,
                           "refitted": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                           "datasets": {**card.get("calibration", {}).get("datasets", {}), **report}}
    write_model_card(model_dir, card)
    return report
