"""A tiny LightGBM conversion model saved in the ConversionModel layout (model.txt + model_card.json)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from shopsearch.reranker.conversion import CARD_VERSION, MODEL_FILE
from shopsearch.reranker.model_card import CARD_JSON


def build_tiny_conversion_model(out: Path, features: Sequence[str] = ("price", "rating"), seed: int = 0) -> Path:
    """Train a binary LightGBM whose label is "cheap" (price < 50): it ranks cheaper products higher.

    Every feature but ``price`` is noise. Deterministic (one thread, fixed seed).
    """
    import lightgbm as lgb

    rng = np.random.default_rng(seed)
    n = 400
    x = rng.uniform(0.0, 1.0, size=(n, len(features)))
    price_col = list(features).index("price")
    x[:, price_col] = rng.uniform(1.0, 100.0, size=n)
    y = (x[:, price_col] < 50).astype(int)
    params = {"objective": "binary", "num_leaves": 4, "min_data_in_leaf": 5, "learning_rate": 0.2,
              "num_threads": 1, "deterministic": True, "seed": seed, "verbose": -1}
    booster = lgb.train(params, lgb.Dataset(x, y, feature_name=list(features)), num_boost_round=20)
    out.mkdir(parents=True, exist_ok=True)
    booster.save_model(str(out / MODEL_FILE))
    card = {"card_version": CARD_VERSION, "features": list(features), "objective": "binary",
            "calibration": {"a": 1.0, "b": 0.0}}
    (out / CARD_JSON).write_text(json.dumps(card), encoding="utf-8")
    return out
