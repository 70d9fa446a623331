"""A trained LightGBM ranker (text format + model card): load, predict, explain, rerank.

It serves the profiles' ``[conversion]`` stage whatever it learnt from: purchases or clicks in behaviour logs, or
human relevance judgments (card ``target``); its calibrated score is then P(purchase), P(click) or P(positive
grade). A model directory holds ``model.txt`` (LightGBM's own text format, never pickle) and ``model_card.json``
(features by name, objective, calibration, CV metrics); :mod:`shopsearch.reranker.ranker_training` writes both.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from shopsearch.plugin.search_types import ScoredHit

from .features import FeatureContext, check_names, feature_matrix
from .model_card import CARD_JSON, read_model_card

MODEL_FILE = "model.txt"
# 2: list-relative features compare a hit with the retrieval's first page (features.LIST_REFERENCE), not with the
# stage's whole input; a version-1 model learnt the other definition, so serving it would skew its inputs.
CARD_VERSION = 2


def is_current(directory: str | Path) -> bool:
    """Whether ``directory`` holds a ranker this version serves (its card's version is :data:`CARD_VERSION`): a
    cache of trained models keeps it, and trains again otherwise."""
    try:
        return read_model_card(directory).get("card_version") == CARD_VERSION
    except (OSError, ValueError):
        return False


class ConversionModel:
    """P(purchase) (or P(click)) of each candidate, from a LightGBM booster and its model card.

    Scores are ``sigmoid(a * raw + b)``: for ``binary`` a=1, b=0 (LightGBM's own probability); for
    ``lambdarank`` (a, b) is a Platt fit on the cross-validation predictions.

    >>> m = ConversionModel.load("models/lgbm-sim")  # doctest: +SKIP
    >>> [h.id for h in m.rerank("red lamp", hits, FeatureContext())][:3]  # doctest: +SKIP
    ['p7', 'p2', 'p9']
    """

    def __init__(self, booster: Any, card: dict[str, Any]) -> None:
        self.booster = booster
        self.card = card
        self.names: tuple[str, ...] = tuple(card["features"])
        check_names(self.names)
        cal = card.get("calibration") or {"a": 1.0, "b": 0.0}
        self.a, self.b = float(cal["a"]), float(cal["b"])

    @classmethod
    def load(cls, directory: str | Path) -> "ConversionModel":
        """Load ``model.txt`` + ``model_card.json`` from ``directory``.

        Raises:
            FileNotFoundError: the directory lacks either file.
            ValueError: the card's version or feature list is not understood, or the booster's feature count
                differs from the card.
        """
        import lightgbm as lgb

        d = Path(directory)
        for name in (MODEL_FILE, CARD_JSON):
            if not (d / name).is_file():
                raise FileNotFoundError(f"conversion model {str(d)!r} lacks {name}; train one with "
                                        f"`shopsearch train ranker`")
        card = read_model_card(d)
        if card.get("card_version") != CARD_VERSION:
            raise ValueError(f"{d / CARD_JSON}: card_version must be {CARD_VERSION}; got {card.get('card_version')!r}"
                             " (a ranker trained by an older shopsearch: retrain it with `shopsearch train ranker`)")
        booster = lgb.Booster(model_file=str(d / MODEL_FILE))
        if booster.num_feature() != len(card["features"]):
            raise ValueError(f"{d}: booster has {booster.num_feature()} features, card lists {len(card['features'])}")
        return cls(booster, card)

    def _check(self, features: np.ndarray) -> np.ndarray:
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != len(self.names):
            raise ValueError(f"features must be a (n, {len(self.names)}) matrix in the card's order "
                             f"({', '.join(self.names)}); got shape {x.shape}")
        return x

    def raw_scores(self, features: np.ndarray) -> np.ndarray:
        """The booster's raw scores (log-odds for binary, ranking scores for lambdarank)."""
        x = self._check(features)
        return self.booster.predict(x, raw_score=True) if len(x) else np.zeros(0)

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Calibrated probabilities, one per row of ``features`` (columns = ``self.names``).

        Raises:
            ValueError: wrong shape.
        """
        raw = self.raw_scores(features)
        return 1.0 / (1.0 + np.exp(-(self.a * raw + self.b)))

    def contributions(self, features: np.ndarray) -> list[dict[str, float]]:
        """Per-row SHAP contributions to the raw score (LightGBM ``pred_contrib``), keyed by feature name
        plus ``"bias"``; they sum to :meth:`raw_scores`.
        """
        x = self._check(features)
        if not len(x):
            return []
        contrib = self.booster.predict(x, pred_contrib=True)
        return [dict(zip((*self.names, "bias"), map(float, row))) for row in contrib]

    def rerank(self, query: str, hits: Sequence[ScoredHit], context: FeatureContext | None = None) -> list[ScoredHit]:
        """Sort ``hits`` by predicted probability; each gets ``score`` = probability, ``stages["conversion"]``
        and a new 1-based ``rank``. Ties keep the incoming order.
        """
        if not hits:
            return []
        probs = self.predict(feature_matrix(query, hits, context or FeatureContext(), self.names))
        order = sorted(range(len(hits)), key=lambda i: (-probs[i], i))
        out = []
        for new_rank, i in enumerate(order, 1):
            h = hits[i]
            p = float(probs[i])
            out.append(replace(h, rank=new_rank, score=p, stages={**h.stages, "conversion": p}))
        return out


def platt(raw: np.ndarray, labels: np.ndarray, iters: int = 50) -> tuple[float, float]:
    """Fit P(y=1) = sigmoid(a * raw + b) by Newton's method (tiny ridge for stability); returns (a, b).

    >>> a, b = platt(np.array([-2.0, -1.0, 1.0, 2.0]), np.array([0, 0, 1, 1]))
    >>> a > 0
    True
    """
    x = np.column_stack([np.asarray(raw, dtype=float), np.ones(len(raw))])
    y = np.asarray(labels, dtype=float)
    w = np.zeros(2)
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-(x @ w)))
        grad = x.T @ (p - y) + 1e-3 * w
        hess = (x * (p * (1 - p))[:, None]).T @ x + 1e-3 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        w -= step
        if math.sqrt(float(step @ step)) < 1e-8:
            break
    return float(w[0]), float(w[1])
