"""Fine-tune the retrieval bi-encoder on judged (query, relevant product) pairs with mined hard negatives.

Loss: sentence-transformers' ``MultipleNegativesRankingLoss`` (InfoNCE, scale 20, cosine) on
``(query, positive, negative_1..n)`` rows: every other row's positive and negatives in the batch are in-batch
negatives, the row's own mined negatives are hard ones. Batches never hold two rows of the same query (its other
positives would otherwise be scored as negatives). A plain loop drives the library's loss (``model.preprocess``
-> loss -> AdamW with linear warmup/decay): ``SentenceTransformerTrainer`` needs the ``datasets`` package,
which the project does not depend on.

Data: the shared layout (:func:`shopsearch.reranker.training_data.load_judged_set`); queries are split by
:func:`~shopsearch.reranker.training_data.split_queries` (``test_fraction``, or fold ``fold`` of ``folds``, held
out and never trained on: with the same seed and fraction or folds it is the cross-encoder's test split).
Positives are judged >= ``min_positive_grade``; hard negatives come from the index's top hits for the query
(``candidates``) that are judged 0 or unjudged — never a product judged relevant (grade >= 1). Product text is
exactly what the indexer embeds (``Product.embed_text`` of the validated row). The model card compares held-out
nDCG@10 of ranking each held-out query's judged pool by cosine, base model -> fine-tuned.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from shopsearch.atomic_write import write_atomically
from shopsearch.evaluation import RELEVANT_GRADE, mean_ndcg
from shopsearch.judgments import Query, write_queries
from shopsearch.settings import DEFAULT_MODEL, offline_environment

from .hard_negatives import mine_hard_negatives
from .model_card import CARD_JSON, CARD_README, created_now
from .training_data import JudgedSet, QuerySplit, load_judged_set, split_queries
from .training_common import MixedPrecision, check_ranges, common_checks, make_optimizer, pick_device

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class BiTrainConfig:
    """Everything a bi-encoder training run depends on (recorded in the model card)."""

    data_dir: str
    out: str
    base_model: str = DEFAULT_MODEL  # or a local sentence-transformers folder
    epochs: int = 2
    batch_size: int = 32
    lr: float = 2e-5
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    hard_negatives: int = 1  # per (query, positive) row
    mine_depth: int = 30  # top hits per query the negatives are drawn from
    min_positive_grade: int = 2
    max_positives_per_query: int | None = 8
    max_length: int = 128
    seed: int = 42
    test_fraction: float = 0.2
    folds: int = 0  # K >= 2: cross-validation, fold ``fold`` of K is the held-out set (test_fraction unused)
    fold: int = 0
    device: str | None = None

    def validate(self) -> None:
        """Raise ValueError naming the first out-of-range parameter."""
        check_ranges(self, [
            *common_checks(self), ("batch_size", self.batch_size >= 2, ">= 2"),
            ("hard_negatives", self.hard_negatives >= 0, ">= 0"), ("mine_depth", self.mine_depth >= 1, ">= 1"),
            ("min_positive_grade", self.min_positive_grade >= 1, ">= 1"),
            ("max_positives_per_query", self.max_positives_per_query is None or self.max_positives_per_query >= 1,
             ">= 1 (or None)"),
            ("test_fraction", 0 < self.test_fraction < 1, "in (0, 1)"),
            ("folds", self.folds == 0 or self.folds >= 2, "0 (no folds) or >= 2"),
            ("fold", self.fold == 0 or 0 <= self.fold < self.folds, "in 0 .. folds-1")])

    def split(self, qids: Iterable[str]) -> QuerySplit:
        """The run's train / held-out split of ``qids`` (no validation set): ``test_fraction`` or fold ``fold``."""
        return split_queries(qids, valid_fraction=0.0, test_fraction=self.test_fraction, seed=self.seed,
                             folds=self.folds, fold=self.fold)


@dataclass(frozen=True)
class BiTrainResult:
    """What a run produced."""

    out: Path
    heldout_ndcg_before: float
    heldout_ndcg_after: float
    train_queries: int
    heldout_queries: tuple[str, ...]
    rows: int
    steps: int
    seconds: float
    card: dict[str, Any] = field(repr=False)


def catalog_texts(products_jsonl: str | Path) -> dict[str, str]:
    """product id -> the text the indexer embeds (rows that fail validation are skipped, as the indexer does).

    Raises:
        FileNotFoundError: no such file.
    """
    from shopsearch.indexer.fields import FieldMapping
    from shopsearch.indexer.validate import RowError, to_product

    mapping, out = FieldMapping(), {}
    with Path(products_jsonl).open(encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                p = to_product(json.loads(line), mapping)
            except (RowError, ValueError):
                continue
            out[p.id] = p.embed_text()
    return out


def build_rows(data: JudgedSet, train_qids: Sequence[str], negatives: Mapping[str, Sequence[str]],
               texts: Mapping[str, str], config: BiTrainConfig) -> list[tuple[str, tuple[str, ...]]]:
    """Training rows ``(qid, (query, positive text, negative texts...))`` of the training queries (pure, seeded).

    A query's positives are its products judged >= ``min_positive_grade`` (the best graded first, at most
    ``max_positives_per_query``); each row takes the next ``hard_negatives`` of the query's mined negatives
    (cycling), topped up with seeded random catalog products not judged relevant when too few were mined.
    """
    rng = np.random.default_rng(config.seed)
    catalog = sorted(texts)
    groups = data.by_query()
    rows = []
    for qid in sorted(train_qids):
        judged = {j.doc_id: j.relevance for j in groups.get(qid, [])}
        positives = sorted((j for j in groups.get(qid, []) if j.relevance >= config.min_positive_grade
                            and j.doc_id in texts), key=lambda j: (-j.relevance, j.doc_id))
        positives = positives[:config.max_positives_per_query]
        pool = [p for p in negatives.get(qid, []) if p in texts and judged.get(p, 0) < RELEVANT_GRADE]
        for i, pos in enumerate(positives):
            negs = [pool[(i * config.hard_negatives + k) % len(pool)] for k in range(config.hard_negatives)] \
                if pool and len(pool) >= config.hard_negatives else list(pool)
            while len(negs) < config.hard_negatives:
                cand = catalog[int(rng.integers(len(catalog)))]
                if judged.get(cand, 0) < RELEVANT_GRADE and cand not in negs:
                    negs.append(cand)
            rows.append((qid, (data.queries[qid], texts[pos.doc_id], *(texts[n] for n in negs))))
    return rows


def no_duplicate_batches(qids: Sequence[str], batch_size: int, rng: np.random.Generator) -> list[list[int]]:
    """Shuffled batches of row indices in which no query appears twice (pure given ``rng``).

    >>> no_duplicate_batches(["a", "a", "b"], 2, np.random.default_rng(0))  # doctest: +SKIP
    [[2, 0], [1]]
    """
    pending = [int(i) for i in rng.permutation(len(qids))]
    batches = []
    while pending:
        batch, seen, rest = [], set(), []
        for i in pending:
            if len(batch) < batch_size and qids[i] not in seen:
                batch.append(i)
                seen.add(qids[i])
            else:
                rest.append(i)
        batches.append(batch)
        pending = rest
    return batches


def pool_ndcg(encode: Callable[[list[str]], np.ndarray], data: JudgedSet, qids: Sequence[str],
              texts: Mapping[str, str]) -> float:
    """Mean nDCG@10 of ranking each query's judged products by cosine(query, product) with ``encode``."""
    groups = data.by_query()
    per_query = {}
    for qid in sorted(qids):
        js = [j for j in groups.get(qid, []) if j.doc_id in texts]
        if not js:
            continue
        vecs = encode([data.queries[qid]] + [texts[j.doc_id] for j in js])
        per_query[qid] = ((vecs[1:] @ vecs[0]).tolist(), [j.relevance for j in js])
    return mean_ndcg(per_query)


def rows_sha256(rows: Sequence[tuple[str, tuple[str, ...]]]) -> str:
    """sha256 over the sorted training rows (qid and every text)."""
    h = hashlib.sha256()
    for qid, texts in sorted(rows):
        h.update(("\t".join((qid, *texts)) + "\n").encode())
    return h.hexdigest()


def train_bi_encoder(config: BiTrainConfig, candidates: Mapping[str, Sequence[str]] | None = None,
                     progress: bool = True) -> BiTrainResult:
    """Fine-tune the bi-encoder; save it, ``model_card.json``, ``README.md`` and ``heldout-queries.tsv`` to ``out``.

    Args:
        config: the run's parameters (validated here).
        candidates: qid -> the index's ranked product ids for the training queries (hard-negative source);
            None or a missing qid: random catalog negatives only.
        progress: show the training bar.

    Returns:
        A :class:`BiTrainResult`.

    Raises:
        ValueError: bad parameters, or no training rows. FileNotFoundError: a data file or the base model is missing.

    >>> train_bi_encoder(BiTrainConfig("../shared/data/crowdflower", "models/bi-cf"), ranked)  # doctest: +SKIP
    """
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from sentence_transformers.util import batch_to_device
    from tqdm import tqdm

    from shopsearch.indexer.embedder import resolve_model_dir

    config.validate()
    offline_environment()
    started = time.perf_counter()
    data = load_judged_set(config.data_dir)
    texts = catalog_texts(Path(config.data_dir) / "products.jsonl")
    split = config.split({j.query_id for j in data.qrels})
    grades = {q: {j.doc_id: j.relevance for j in js} for q, js in data.by_query().items()}
    negatives = mine_hard_negatives({q: h for q, h in (candidates or {}).items() if q in split.train}, grades,
                                    config.mine_depth)
    rows = build_rows(data, sorted(split.train), negatives, texts, config)
    if not rows:
        raise ValueError(f"data_dir={config.data_dir!r} gives no training rows with min_positive_grade="
                         f"{config.min_positive_grade}")
    base_dir = resolve_model_dir(config.base_model)
    device = pick_device(config.device)
    torch.manual_seed(config.seed)
    model = SentenceTransformer(str(base_dir), device=device, local_files_only=True)
    model.max_seq_length = config.max_length

    def encode(batch: list[str]) -> np.ndarray:
        model.eval()
        with torch.inference_mode():
            return np.asarray(model.encode(batch, batch_size=64, convert_to_numpy=True, normalize_embeddings=True,
                                           show_progress_bar=False), dtype=np.float32)

    heldout = sorted(split.test)
    before = pool_ndcg(encode, data, heldout, texts)
    log.info("held-out pool nDCG@10 before training: %.4f", before)
    loss_fn = MultipleNegativesRankingLoss(model)
    rng = np.random.default_rng(config.seed)
    row_qids = [q for q, _ in rows]
    # Batches of every epoch up front: their number varies a little with the shuffle, the schedule needs the total.
    epochs = [no_duplicate_batches(row_qids, config.batch_size, rng) for _ in range(config.epochs)]
    total = sum(len(e) for e in epochs)
    optimizer, scheduler = make_optimizer(model, config, total)
    amp = MixedPrecision(device)  # bf16 on CUDA where supported, else fp16 with a gradient scaler
    step, losses = 0, []
    bar = tqdm(total=total, desc="train bi-encoder", unit="step", disable=not progress)
    for batches in epochs:
        for batch in batches:
            model.train()
            columns = list(zip(*(rows[i][1] for i in batch)))
            features = [batch_to_device(model.preprocess(list(col)), model.device) for col in columns]
            with amp.autocast():
                loss = loss_fn(features, None)
            losses.append(amp.step(model, loss, optimizer, scheduler))
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
    bar.close()
    after = pool_ndcg(encode, data, heldout, texts)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    model.save(str(out), create_model_card=False)
    judged = data.by_query()
    write_queries(out / "heldout-queries.tsv", (Query(q, data.queries[q]) for q in heldout if q in judged))
    seconds = time.perf_counter() - started
    card = _card(config, str(base_dir), data, split, rows, negatives, before, after, losses, step, seconds)
    write_bi_encoder_card(out, card)
    print(f"trained {out.name}: {len(rows)} rows from {len(split.train)} queries, {step} steps, held-out pool "
          f"nDCG@10 {before:.4f} -> {after:.4f} ({len(heldout)} queries), {seconds:.0f} s "
          f"({step * config.batch_size / max(seconds, 1e-9):.1f} rows/s)")
    return BiTrainResult(out, before, after, len(split.train), tuple(heldout), len(rows), step, seconds, card)


def _card(config: BiTrainConfig, base: str, data: JudgedSet, split: Any, rows: list, negatives: Mapping,
          before: float, after: float, losses: list[float], steps: int, seconds: float) -> dict[str, Any]:
    """The model card dict."""
    k = max(1, len(losses) // 10)
    return {
        "model": Path(config.out).name,
        "kind": "bi-encoder (sentence-transformers), MultipleNegativesRankingLoss with mined hard negatives",
        "base_model": base,
        "data": {"path": str(data.path), "name": data.name, "rows_sha256": rows_sha256(rows), "rows": len(rows),
                 "train_queries": len(split.train), "heldout_queries": len(split.test),
                 "queries_with_mined_negatives": sum(1 for v in negatives.values() if v),
                 "heldout_file": "heldout-queries.tsv"},
        "parameters": {k_: v for k_, v in asdict(config).items() if k_ not in ("data_dir", "out")},
        "seed": config.seed,
        "metrics": {"heldout_pool_ndcg@10_before": before, "heldout_pool_ndcg@10_after": after, "steps": steps,
                    "loss_first": float(np.mean(losses[:k])) if losses else math.nan,
                    "loss_last": float(np.mean(losses[-k:])) if losses else math.nan},
        "training_seconds": round(seconds, 1),
        "created": created_now(),
    }


def write_bi_encoder_card(model_dir: str | Path, card: dict[str, Any]) -> None:
    """Write ``model_card.json`` and a README.md summary into ``model_dir``."""
    root = Path(model_dir)
    write_atomically(root / CARD_JSON, json.dumps(card, indent=1, sort_keys=True))
    m, d = card["metrics"], card["data"]
    lines = [f"# {card['model']}", "", f"{card['kind']}, fine-tuned from `{card['base_model']}`.",
             f"Created {card['created']}; training took {card['training_seconds']:.0f} s; seed {card['seed']}.", "",
             "## Data", "", f"- {d['path']}: {d['rows']} training rows from {d['train_queries']} queries "
             f"({d['queries_with_mined_negatives']} with mined hard negatives); {d['heldout_queries']} queries held "
             f"out, never trained on (`{d['heldout_file']}`).", f"- training rows sha256 `{d['rows_sha256']}`", "",
             "## Parameters", "", *(f"- {k}: {v}" for k, v in sorted(card["parameters"].items())), "",
             "## Metrics", "", f"Held-out nDCG@10 ranking each query's judged pool by cosine: "
             f"{m['heldout_pool_ndcg@10_before']:.4f} (base) -> {m['heldout_pool_ndcg@10_after']:.4f} (fine-tuned); "
             f"loss {m['loss_first']:.4f} -> {m['loss_last']:.4f} over {m['steps']} steps.", ""]
    write_atomically(root / CARD_README, "\n".join(lines))
