"""nDCG@k over a query's judged pool (linear gain, log2 discount, as trec_eval), and RMSE. Pure functions."""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np


def ndcg_at_k(scores: Sequence[float], grades: Sequence[float], k: int = 10) -> float:
    """nDCG@k of ranking one query's judged pool by ``scores`` (ties broken by position, stable).

    Args:
        scores: one score per judged item (higher ranks first).
        grades: the items' relevance grades, same order.
        k: the cutoff, >= 1.
    Returns:
        nDCG@k in [0, 1]; 0.0 when no item has a positive grade.
    Raises:
        ValueError: lengths differ or k < 1.
    Example:
        >>> ndcg_at_k([0.9, 0.1], [0, 2], k=10) < ndcg_at_k([0.1, 0.9], [0, 2], k=10) == 1.0
        True
    """
    if len(scores) != len(grades):
        raise ValueError(f"scores has {len(scores)} items but grades has {len(grades)}; they must match")
    if k < 1:
        raise ValueError(f"k={k!r} must be >= 1")
    order = np.argsort(-np.asarray(scores, dtype=float), kind="stable")[:k]
    g = np.asarray(grades, dtype=float)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = float((g[order] * discounts[: len(order)]).sum())
    ideal = np.sort(g)[::-1][:k]
    idcg = float((ideal * discounts[: len(ideal)]).sum())
    return dcg / idcg if idcg > 0 else 0.0


def mean_ndcg(per_query: Mapping[str, tuple[Sequence[float], Sequence[float]]], k: int = 10) -> float:
    """Mean nDCG@k over queries given ``{qid: (scores, grades)}``; 0.0 for no queries."""
    values = [ndcg_at_k(s, g, k) for s, g in per_query.values()]
    return float(np.mean(values)) if values else 0.0


def rmse(predicted: Sequence[float], actual: Sequence[float]) -> float:
    """Root mean squared error, ignoring pairs whose actual value is NaN."""
    p, a = np.asarray(predicted, dtype=float), np.asarray(actual, dtype=float)
    keep = ~np.isnan(a)
    return math.sqrt(float(np.mean((p[keep] - a[keep]) ** 2))) if keep.any() else math.nan


def rmse_vs_mean(predicted: Sequence[float], actual: Sequence[float],
                 mean: float | Sequence[float]) -> dict[str, float]:
    """RMSE of ``predicted`` and of always predicting ``mean`` (the baseline a calibrated score must beat).

    ``mean`` is one value, or one per pair when pairs pooled from several models each have their own baseline.

    Example:
        >>> r = rmse_vs_mean([1.0, 3.0], [1.0, 3.0], mean=2.0)
        >>> r["rmse_calibrated"], r["rmse_mean"]
        (0.0, 1.0)
    """
    actual = np.asarray(actual, dtype=float)
    return {"rmse_calibrated": rmse(predicted, actual), "rmse_mean": rmse(np.broadcast_to(mean, actual.shape), actual)}
