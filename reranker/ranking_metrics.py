"""AUC and per-list nDCG@k for conversion models (pure numpy; lists are identified by an id per row)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.stats import rankdata


def auc(labels: Sequence[float], scores: Sequence[float]) -> float:
    """ROC AUC by the rank-sum (Mann-Whitney) formula; ties count one half. NaN without both classes.

    >>> auc([0, 1, 0, 1], [0.1, 0.9, 0.2, 0.8])
    1.0
    """
    y = np.asarray(labels, dtype=float) > 0
    s = np.asarray(scores, dtype=float)
    pos, neg = int(y.sum()), int((~y).sum())
    if pos == 0 or neg == 0:
        return float("nan")
    ranks = rankdata(s)
    return float((ranks[y].sum() - pos * (pos + 1) / 2) / (pos * neg))


def ndcg_at_k(gains: Sequence[float], scores: Sequence[float], k: int = 10) -> float:
    """nDCG@k of one list ranked by ``scores`` (descending; ties broken by list order). NaN if no gain.

    Gain is used linearly: DCG = sum(g_i / log2(i + 1)).

    >>> round(ndcg_at_k([0, 1], [0.9, 0.1], k=10), 4)
    0.6309
    """
    g = np.asarray(gains, dtype=float)
    s = np.asarray(scores, dtype=float)
    if k < 1:
        raise ValueError(f"k must be >= 1; got {k!r}")
    ideal = np.sort(g)[::-1][:k]
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    idcg = float((ideal * disc[: len(ideal)]).sum())
    if idcg <= 0:
        return float("nan")
    order = np.argsort(-s, kind="stable")[:k]
    return float((g[order] * disc[: len(order)]).sum() / idcg)


def mean_list_ndcg(list_ids: Sequence, gains: Sequence[float], scores: Sequence[float],
                   k: int = 10) -> tuple[float, int]:
    """Mean nDCG@k over the lists that have any gain, and how many such lists there were.

    Lists without a positive (no purchase) cannot be ranked better or worse, so they are left out.

    >>> mean_list_ndcg(["a", "a", "b", "b"], [1, 0, 0, 0], [0.9, 0.1, 0.5, 0.4])
    (1.0, 1)
    """
    g = np.asarray(gains, dtype=float)
    s = np.asarray(scores, dtype=float)
    rows: dict = {}
    for i, lid in enumerate(list_ids):
        rows.setdefault(lid, []).append(i)
    values = []
    for idx in rows.values():
        v = ndcg_at_k(g[idx], s[idx], k)
        if not np.isnan(v):
            values.append(v)
    return (float(np.mean(values)) if values else float("nan")), len(values)
