"""Evaluate rankers on held-out queries' judged pools: the pools, and the BM25 / MiniLM-cosine references.

Used by bench/ce_eval.py and bench/rerank.py. Each query's pool is its judged products sorted by product id, so
ties never follow the qrels file order (which is sorted by grade in the shared data).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from shopsearch.evaluation import mean_ndcg, per_pool_ndcg
from shopsearch.judgments import Qrel

from .model_card import read_model_card, trained_on
from .pair_text import product_text
from .training_data import JudgedSet, QuerySplit, load_judged_set, split_for


@dataclass(frozen=True)
class Pool:
    """One query's judged products (sorted by id) with their grades and raw ratings."""

    qid: str
    query: str
    products: list[dict[str, Any]]
    grades: list[int]
    raw: list[float]


def heldout_pools(data_dir: str | Path, model_dir: str | Path, split: str = "test",
                  max_queries: int | None = None) -> tuple[JudgedSet, list[Pool], list[Qrel]]:
    """The pools of ``split`` queries under the model card's seeded split, plus that dataset's train judgments.

    A data folder the model was not trained on has no split: every one of its queries is unseen, so "test" gives
    all of them (a zero-shot measure), "valid" and the train judgments none.

    Args:
        data_dir: the data folder.
        model_dir: the trained model folder (its model_card.json gives seed, fractions and fold).
        split: "test" (held out) or "valid".
        max_queries: keep this many queries (seeded, whole queries); None keeps all.
    Returns:
        (judged set, pools sorted by qid, train-split judgments).
    """
    card = read_model_card(model_dir)
    data = load_judged_set(data_dir)
    all_qids = frozenset(q.query_id for q in data.qrels)
    if data.name in trained_on(card):
        s = split_for(all_qids, card["parameters"], card["seed"])
    else:
        s = QuerySplit(train=frozenset(), valid=frozenset(), test=all_qids)
    qids = getattr(s, split)
    chosen = [q for q in data.qrels if q.query_id in qids]
    if max_queries is not None:
        keep = set(sorted({q.query_id for q in chosen}, key=lambda q: (hash_key(q), q))[:max_queries])
        chosen = [q for q in chosen if q.query_id in keep]
    pools = []
    for qid, qs in sorted(data.by_query(chosen).items()):
        qs = sorted(qs, key=lambda q: q.doc_id)
        pools.append(Pool(qid, data.queries[qid], [data.products[q.doc_id] for q in qs], [q.relevance for q in qs],
                          [data.raw_score(q) for q in qs]))
    train = [q for q in data.qrels if q.query_id in s.train]
    return data, pools, train


def hash_key(qid: str) -> str:
    """A stable, seed-free order of qids for capping evaluation sets."""
    import hashlib

    return hashlib.sha256(qid.encode()).hexdigest()


def pool_ndcg(pools: Sequence[Pool], scores: Sequence[np.ndarray], k: int = 10) -> float:
    """Mean nDCG@k of ranking each pool by its scores (:func:`shopsearch.evaluation.mean_ndcg`)."""
    return mean_ndcg({p.qid: (s, p.grades) for p, s in zip(pools, scores)}, k)


def per_query_ndcg(pools: Sequence[Pool], scores: Sequence[np.ndarray], k: int = 10) -> np.ndarray:
    """nDCG@k of each pool ranked by its scores, in pool order (for paired tests between rankers)."""
    return np.array(list(per_pool_ndcg({i: (s, p.grades) for i, (p, s) in enumerate(zip(pools, scores))},
                                       k).values()))


def bm25_scores(pools: Sequence[Pool]) -> list[np.ndarray]:
    """BM25 (bm25s, English stemming and stopwords) of each pool's title + description, indexed per pool."""
    import bm25s
    import Stemmer

    logging.getLogger("bm25s").setLevel(logging.WARNING)  # it logs every per-pool index build at DEBUG

    stemmer = Stemmer.Stemmer("english")
    out = []
    for p in pools:
        corpus = bm25s.tokenize([product_text(x) for x in p.products], stopwords="en", stemmer=stemmer,
                                show_progress=False)
        index = bm25s.BM25()
        index.index(corpus, show_progress=False)
        q = bm25s.tokenize([p.query], stopwords="en", stemmer=stemmer, show_progress=False, return_ids=False)[0]
        terms = [t for t in q if t in index.vocab_dict]
        out.append(index.get_scores(terms) if terms else np.zeros(len(p.products)))
    return out


def cosine_scores(pools: Sequence[Pool], model_path: str | None = None, batch_size: int = 64) -> list[np.ndarray]:
    """Cosine of off-the-shelf all-MiniLM-L6-v2 embeddings (query vs product text) for each pool."""
    from sentence_transformers import SentenceTransformer

    if model_path is None:
        from shopsearch.packaged_models import MINILM, packaged_model_dir

        model_path = str(packaged_model_dir(MINILM))
    model = SentenceTransformer(model_path, device="cpu", local_files_only=True)
    texts = [product_text(x) for p in pools for x in p.products]
    docs = model.encode(texts, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=True)
    queries = model.encode([p.query for p in pools], batch_size=batch_size, normalize_embeddings=True)
    out, start = [], 0
    for p, q in zip(pools, queries):
        out.append(docs[start:start + len(p.products)] @ q)
        start += len(p.products)
    return out


def model_scores(pools: Sequence[Pool], score: Callable[[str, list[dict[str, Any]]], np.ndarray]
                 ) -> list[np.ndarray]:
    """``score(query, products)`` for each pool, with a progress bar."""
    from tqdm import tqdm

    return [score(p.query, p.products) for p in tqdm(pools, desc="score pools", unit="query")]
