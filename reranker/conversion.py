"""A trained LightGBM ranker (text format + model card): load, predict, explain, rerank.

It serves the profiles' ``[conversion]`` stage whatever it learnt from: purchases or clicks in behaviour logs, or
human relevance judgments (card ``target``); its calibrated score is then P(purchase), P(click) or P(positive
grade). A model directory holds ``model.txt`` (LightGBM's own text format, never pickle) and ``model_card.json``
(features by name, objective, calibration, CV metrics); :mod:`shopsearch.reranker.ranker_training` writes both. A
ranker of several members (``train ranker --members N``) keeps the others beside it (``model-1.txt`` ...), listed
in the card.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from shopsearch.atomic_write import write_atomically
from shopsearch.plugin.search_types import ScoredHit

from .features import FeatureContext, check_names, feature_matrix
from .model_card import CARD_JSON, read_model_card

MODEL_FILE = "model.txt"
# 2: list-relative features compare a hit with the retrieval's first page (features.LIST_REFERENCE), not with the
# stage's whole input; a version-1 model learnt the other definition, so serving it would skew its inputs.
CARD_VERSION = 2


def member_files(n: int) -> list[str]:
    """The files of a ranker of ``n`` members: ``model.txt`` first (a one-member ranker is just that file)."""
    return [MODEL_FILE] + [f"model-{i}.txt" for i in range(1, n)]


def card_members(card: dict[str, Any]) -> list[str]:
    """The booster files a ranker's card lists; a card without the list is one booster's, ``model.txt``."""
    return card.get("members", [MODEL_FILE])


class Bag:
    """Boosters that score as one: the mean of their raw scores (and of their per-feature contributions, which
    therefore still sum to it). Members differ in the queries and seed each was fitted with
    (:func:`~.ranker_training.fit`), so their mean depends less on which few hundred queries were judged."""

    def __init__(self, members: Sequence[Any]) -> None:
        if not members:
            raise ValueError("a bag needs at least one booster")
        self.members = list(members)

    def predict(self, x: np.ndarray, raw_score: bool = False, pred_contrib: bool = False,
                num_iteration: int | None = None) -> np.ndarray:
        """The members' mean (raw scores only: a mean of probabilities is not the probability of a mean).

        Raises:
            ValueError: asked for probabilities of a bag of more than one member.
        """
        if not (raw_score or pred_contrib) and len(self.members) > 1:
            raise ValueError("a bag scores raw (raw_score=True); calibrate the mean raw score instead")
        return np.mean([m.predict(x, raw_score=raw_score, pred_contrib=pred_contrib, num_iteration=num_iteration)
                        for m in self.members], axis=0)

    def num_feature(self) -> int:
        return self.members[0].num_feature()

    def feature_importance(self, importance_type: str = "split") -> np.ndarray:
        return np.mean([m.feature_importance(importance_type=importance_type) for m in self.members], axis=0)

    def save(self, directory: str | Path) -> list[str]:
        """Write each member in LightGBM's text format (:func:`member_files`); returns the file names."""
        names = member_files(len(self.members))
        for name, m in zip(names, self.members):
            write_atomically(Path(directory) / name, lambda tmp, m=m: m.save_model(str(tmp)))
        return names


def check_folder(directory: str | Path) -> dict[str, Any]:
    """The card of the ranker in ``directory`` once every file it lists is there and its version is served.

    Raises:
        FileNotFoundError: ``model.txt``, the card or a member the card lists is missing.
        ValueError: the card's version or members are not understood.
    """
    d = Path(directory)
    for name in (MODEL_FILE, CARD_JSON):
        if not (d / name).is_file():
            raise FileNotFoundError(f"conversion model {str(d)!r} lacks {name}; train one with "
                                    f"`shopsearch train ranker`")
    card = read_model_card(d)
    if card.get("card_version") != CARD_VERSION:
        raise ValueError(f"{d / CARD_JSON}: card_version must be {CARD_VERSION}; got {card.get('card_version')!r}"
                         " (a ranker trained by an older shopsearch: retrain it with `shopsearch train ranker`)")
    members = card_members(card)
    if not isinstance(members, list) or not members or members != member_files(len(members)):
        raise ValueError(f"{d / CARD_JSON}: members must be {member_files(2)[:2]}... in order; got {members!r}")
    missing = [name for name in members if not (d / name).is_file()]
    if missing:
        raise FileNotFoundError(f"conversion model {str(d)!r} lacks {', '.join(missing)} of the "
                                f"{len(members)} members its card lists; train it again")
    return card


def is_current(directory: str | Path) -> bool:
    """Whether ``directory`` holds a ranker this version serves, whole (:func:`check_folder`): a cache of trained
    models keeps it, and trains again otherwise."""
    try:
        check_folder(directory)
        return True
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
        """Load the booster(s) and ``model_card.json`` from ``directory`` (:func:`check_folder`).

        Raises:
            FileNotFoundError: the directory lacks ``model.txt``, the card, or a member the card lists.
            ValueError: the card's version, members or feature list is not understood, or a booster's feature
                count differs from the card.
        """
        import lightgbm as lgb

        d = Path(directory)
        card = check_folder(d)
        members = card_members(card)
        boosters = [lgb.Booster(model_file=str(d / name)) for name in members]
        booster = boosters[0] if len(boosters) == 1 else Bag(boosters)
        for name, b in zip(members, boosters):
            if b.num_feature() != len(card["features"]):
                raise ValueError(f"{d}: booster {name} has {b.num_feature()} features, card lists "
                                 f"{len(card['features'])}")
        return cls(booster, card)

    def _check(self, features: np.ndarray) -> np.ndarray:
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != len(self.names):
            raise ValueError(f"features must be a (n, {len(self.names)}) matrix in the card's order "
                             f"({', '.join(self.names)}); got shape {x.shape}")
        return x

    def raw_scores(self, features: np.ndarray) -> np.ndarray:
        """The booster's raw scores (log-odds for binary, ranking scores for lambdarank; a bag's mean)."""
        x = self._check(features)
        return self.booster.predict(x, raw_score=True) if len(x) else np.zeros(0)

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Calibrated probabilities, one per row of ``features`` (columns = ``self.names``).

        Raises:
            ValueError: wrong shape.
        """
        return self.calibrated(self.raw_scores(features))

    def calibrated(self, raw: np.ndarray) -> np.ndarray:
        """The probabilities of raw scores :meth:`raw_scores` gave (a stage that needs both scores once)."""
        return 1.0 / (1.0 + np.exp(-(self.a * np.asarray(raw, dtype=np.float64) + self.b)))

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
