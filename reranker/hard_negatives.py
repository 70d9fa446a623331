"""Hard negatives: products the search itself ranks high for a query that nobody judged relevant to it.

Both trainers use them. The bi-encoder learns to push them out of the top hits; the cross-encoder, trained on
judged pools alone, would otherwise never see the products retrieval puts next to the pool (other queries'
products) and rank them on top. Unjudged products count as not relevant, the assumption nDCG evaluation makes.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from shopsearch.evaluation import RELEVANT_GRADE  # a hard negative is never judged this or higher


def mine_hard_negatives(ranked: Mapping[str, Sequence[str]], grades: Mapping[str, Mapping[str, int]],
                        depth: int = 30) -> dict[str, list[str]]:
    """Per query, its top-``depth`` hits that are judged 0 or unjudged, in rank order (pure).

    Args:
        ranked: qid -> product ids from the index, best first.
        grades: qid -> {product id: grade} (the judgments).
        depth: how many top hits to look at.

    Returns:
        qid -> hard-negative product ids (never one judged >= 1 for that query).

    >>> mine_hard_negatives({"q": ["a", "b", "c"]}, {"q": {"a": 2, "b": 0}})
    {'q': ['b', 'c']}
    """
    out = {}
    for qid, hits in ranked.items():
        judged = grades.get(qid, {})
        out[qid] = [p for p in list(dict.fromkeys(hits))[:depth] if judged.get(p, 0) < RELEVANT_GRADE]
    return out


def sample_unjudged(mined: Mapping[str, Sequence[str]], judged: Mapping[str, Mapping[str, int]], per_query: int,
                    seed: int = 42) -> dict[str, list[str]]:
    """Up to ``per_query`` of each query's mined negatives that are not judged at all for it (seeded, pure).

    Judged-irrelevant products are already in the query's pool, so only unjudged ones are added. A uniform draw
    over the mined depth, rather than the very top, keeps fewer unjudged-but-relevant products (false
    negatives), which crowd the first ranks.

    >>> sample_unjudged({"q": ["a", "b", "c"]}, {"q": {"a": 0}}, 5)
    {'q': ['b', 'c']}
    """
    out = {}
    for qid in sorted(mined):
        pool = [p for p in mined[qid] if p not in judged.get(qid, {})]
        rng = np.random.default_rng([seed, int.from_bytes(qid.encode()[:8].ljust(8, b"\0"), "little")])
        keep = sorted(rng.choice(len(pool), min(per_query, len(pool)), replace=False)) if pool else []
        out[qid] = [pool[i] for i in keep]
    return out
