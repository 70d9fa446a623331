"""Fine-tune a sentence-transformers CrossEncoder (one relevance logit) on judged query-product pairs.

Two losses: ``bce`` (pointwise: grades normalised to [0, 1], binary cross-entropy on the logit) and ``lambda``
(listwise: each query's products in lists of up to ``list_size``, LambdaLoss with the NDCG-Loss2++ weighting, which
optimises the order within a query that nDCG scores, not the level of each score). AdamW with linear warmup/decay
and early stopping on the validation queries' nDCG@10 (each query's judged pool ranked by the model); the best
checkpoint is saved with a model card and an isotonic calibration per dataset.

Judged pools alone never show the model the products retrieval puts beside them, so a model trained on them
ranks those on top in the full catalog. ``candidates`` (the index's top hits per training/validation query) add
``hard_negatives`` unjudged products per query with label 0, to training and to validation alike.
A plain training loop is used because the library's ``CrossEncoderTrainer`` needs the ``datasets`` package.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Hashable, Mapping, Sequence

import numpy as np

from shopsearch.atomic_write import folder_replaced
from shopsearch.evaluation import mean_ndcg, rmse_vs_mean
from shopsearch.judgments import Qrel, Query, write_queries
from shopsearch.packaged_models import local_model_dir
from shopsearch.settings import DEFAULT_MODEL, offline_environment

from .calibration import fit_isotonic, save_calibrations
from .hard_negatives import mine_hard_negatives, sample_unjudged
from .model_card import created_now, write_model_card
from .pair_text import product_text
from .training_data import JudgedSet, cap_by_query, load_judged_set, load_product_rows, split_for
from .training_common import MixedPrecision, check_ranges, common_checks, make_optimizer, pick_device

log = logging.getLogger(__name__)
LOSSES = ("bce", "lambda")


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on (recorded in the model card)."""

    data_dirs: tuple[str, ...]
    out: str
    base_model: str | None = None  # a folder or a packaged model's name; None: all-MiniLM-L6-v2
    epochs: int = 2
    batch_size: int = 16
    lr: float = 3e-5
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_length: int = 128
    max_pairs: int | None = None  # per data dir, whole queries
    max_valid_pairs: int | None = 1500  # per data dir; validation runs at every evaluation
    seed: int = 42  # the query split and the order of the pairs
    shuffle_seed: int | None = None  # the order of the pairs only (continuing a run on data in a new order)
    valid_fraction: float = 0.1
    test_fraction: float = 0.2
    folds: int = 0  # K >= 2: cross-validation, fold ``fold`` of K is the test set (test_fraction unused)
    fold: int = 0
    eval_steps: int = 0  # 0: evaluate once per epoch
    patience: int = 2  # evaluations without improvement before stopping
    hard_negatives: int = 0  # unjudged products per train/valid query, drawn from the mined candidates
    mine_depth: int = 30  # top hits per query that negatives are drawn from
    mined_from: str | None = None  # where the candidates came from (recorded in the card)
    teacher: str | None = None  # bi-encoder (all-MiniLM-L6-v2 or a folder) whose similarity joins the labels
    teacher_weight: float = 0.0  # label = (1 - w) * grade + w * teacher, on judged pairs only
    loss: str = "bce"  # "bce" (pointwise) or "lambda" (listwise, per query)
    list_size: int = 16  # lambda: products per list (a query's products are cut into lists this long)
    device: str | None = None

    def validate(self) -> None:
        """Raise ValueError naming the first out-of-range parameter."""
        if not self.data_dirs:
            raise ValueError("data_dirs is empty; give at least one --train DATA_DIR")
        check_ranges(self, [
            *common_checks(self), ("batch_size", self.batch_size >= 1, ">= 1"),
            ("max_pairs", self.max_pairs is None or self.max_pairs >= 1, ">= 1"),
            ("max_valid_pairs", self.max_valid_pairs is None or self.max_valid_pairs >= 1, ">= 1"),
            ("valid_fraction", 0 < self.valid_fraction < 1, "in (0, 1)"),
            ("test_fraction", 0 <= self.test_fraction < 1, "in [0, 1)"),
            ("folds", self.folds == 0 or self.folds >= 2, "0 (no folds) or >= 2"),
            ("fold", self.fold == 0 or 0 <= self.fold < self.folds, "in 0 .. folds-1"),
            ("eval_steps", self.eval_steps >= 0, ">= 0"), ("patience", self.patience >= 1, ">= 1"),
            ("hard_negatives", self.hard_negatives >= 0, ">= 0"), ("mine_depth", self.mine_depth >= 1, ">= 1"),
            ("teacher_weight", 0 <= self.teacher_weight <= 1, "in [0, 1]"),
            ("loss", self.loss in LOSSES, f"one of {', '.join(LOSSES)}"), ("list_size", self.list_size >= 2, ">= 2")])
        if self.teacher_weight > 0 and not self.teacher:
            raise ValueError(f"teacher_weight={self.teacher_weight!r} needs a teacher (--teacher MODEL)")


@dataclass(frozen=True)
class DatasetSplit:
    """One data folder's train and validation judgments after splitting and capping."""

    data: JudgedSet
    train: list[Qrel]
    valid: list[Qrel]
    test_queries: int
    train_negatives: int = 0  # of ``train``, the mined unjudged ones (label 0)
    valid_negatives: int = 0
    test_qids: tuple[str, ...] = ()  # held out: written to heldout-queries-<name>.tsv for evaluation
    valid_qids: tuple[str, ...] = ()  # every validation query (``valid`` may be capped): valid-queries-<name>.tsv


@dataclass(frozen=True)
class TrainResult:
    """What a run produced."""

    out: Path
    valid_ndcg_before: float
    valid_ndcg_after: float
    best_step: int
    steps: int
    train_pairs: int
    seconds: float
    card: dict[str, Any] = field(repr=False)


Candidates = Mapping[str, Mapping[str, Sequence[str]]]  # data folder name -> qid -> ranked product ids


def prepare_splits(config: TrainConfig, candidates: Candidates | None = None) -> list[DatasetSplit]:
    """Load every data dir, split its queries (seeded), cap train/valid pairs by whole queries, add negatives.

    ``candidates[name]`` (optional per data folder) gives the mined hits of its queries; only kept train and
    valid queries take negatives from them, never a test query.
    """
    out = []
    for d in config.data_dirs:
        data = load_judged_set(d)
        split = split_for({q.query_id for q in data.qrels}, asdict(config), config.seed)
        train = cap_by_query([q for q in data.qrels if q.query_id in split.train], config.max_pairs, seed=config.seed)
        valid = cap_by_query([q for q in data.qrels if q.query_id in split.valid], config.max_valid_pairs,
                             seed=config.seed)
        mined = (candidates or {}).get(data.name)
        qids = {"test_qids": tuple(sorted(split.test)), "valid_qids": tuple(sorted(split.valid))}
        if mined and config.hard_negatives:
            data, neg_train, neg_valid = _negatives(data, train, valid, mined, config)
            out.append(DatasetSplit(data, train + neg_train, valid + neg_valid, len(split.test), len(neg_train),
                                    len(neg_valid), **qids))
        else:
            out.append(DatasetSplit(data, train, valid, len(split.test), **qids))
    return out


def _negatives(data: JudgedSet, train: list[Qrel], valid: list[Qrel], mined: Mapping[str, Sequence[str]],
               config: TrainConfig) -> tuple[JudgedSet, list[Qrel], list[Qrel]]:
    """(data with the negatives' product rows, train negatives, valid negatives): grade 0, no raw rating (NaN)."""
    chosen = {q.query_id for q in (*train, *valid)}
    grades = {q: {j.doc_id: j.relevance for j in js} for q, js in data.by_query().items()}
    kept = {q: r for q, r in mined.items() if q in chosen}
    negs = sample_unjudged(mine_hard_negatives(kept, grades, config.mine_depth), grades, config.hard_negatives,
                           seed=config.seed)
    rows = load_product_rows(data.path / "products.jsonl", {p for v in negs.values() for p in v})
    data = replace(data, products={**rows, **data.products})

    def of(js: list[Qrel]) -> list[Qrel]:
        return [Qrel(q, p, 0) for q in dict.fromkeys(j.query_id for j in js) for p in negs.get(q, ()) if p in rows]
    return data, of(train), of(valid)


def pairs_sha256(splits: Sequence[DatasetSplit]) -> str:
    """sha256 over the sorted training pairs (dataset, qid, product id, label) and their texts."""
    h = hashlib.sha256()
    rows = sorted((s.data.name, j.query_id, j.doc_id, s.data.normalised_grade(j), s.data.queries[j.query_id],
                   product_text(s.data.products[j.doc_id])) for s in splits for j in s.train)
    for row in rows:
        h.update(("\t".join(map(str, row)) + "\n").encode())
    return h.hexdigest()


def resolve_base_model(base_model: str | os.PathLike[str], cache_dir: Path | None = None) -> Path:
    """The folder a cross-encoder starts from: a packaged model's (a split one unpacks under ``cache_dir``, default
    the settings') or ``base_model`` itself (:func:`~shopsearch.packaged_models.local_model_dir`).

    Raises:
        ValueError: neither a packaged model's name nor a folder holding a model (nothing is downloaded from a
            hub), said before any pair is mined.
    """
    return local_model_dir(base_model, cache_dir, what="base model", needs=("config.json",))


def train_cross_encoder(config: TrainConfig, candidates: Candidates | None = None,
                        splits: list[DatasetSplit] | None = None, progress: bool = True) -> TrainResult:
    """Fine-tune, keep the best validation checkpoint, save it with its card and calibration.

    Args:
        config: the run's parameters (validated here).
        candidates: data folder name -> qid -> the index's ranked product ids, the hard-negative source (see
            :func:`prepare_splits`); None trains on the judged pools only.
        splits: ``prepare_splits(config, candidates)`` done already (an ensemble's members share one split);
            None prepares them here.
        progress: show the training bar (the log keeps every evaluation either way).
    Returns:
        A :class:`TrainResult` (the model is in ``config.out``).
    Raises:
        ValueError: bad parameters, no training pairs or no such base model. FileNotFoundError: a data dir is
            missing.
    Example:
        >>> train_cross_encoder(TrainConfig(data_dirs=("data/crowdflower",), out="models/ce-x"))  # doctest: +SKIP
    """
    import torch
    from sentence_transformers import CrossEncoder
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss
    from tqdm import tqdm

    from .cross_encoder_ensemble import check_out_folder

    config.validate()
    check_out_folder(config.out)  # before training: the model replaces --out whole, so it must be a model's
    offline_environment()
    started = time.perf_counter()
    if splits is None:
        splits = prepare_splits(config, candidates)
    examples = [(s.data.queries[j.query_id], product_text(s.data.products[j.doc_id]), s.data.normalised_grade(j))
                for s in splits for j in s.train]
    if not examples:
        raise ValueError(f"data_dirs={list(config.data_dirs)!r} give no training pairs")
    teacher_fit: dict[str, dict[str, float]] = {}
    if config.teacher and config.teacher_weight > 0:
        labels, teacher_fit = teacher_labels(splits, config.teacher, config.teacher_weight, progress)
        examples = [(q, t, y) for (q, t, _), y in zip(examples, labels)]
    # each folder's calibration is fitted on its validation pairs: a folder without two is refused now, not after
    # the hours of training
    short = next((s.data.name for s in splits if len(_calibration_pairs(s)) < 2), None)
    if short is not None:
        raise ValueError(f"valid_fraction={config.valid_fraction!r} leaves data folder {short!r} fewer than 2 judged "
                         f"validation pairs, which its calibration is fitted on; give it more judged queries or a "
                         f"larger --valid-fraction")
    base = resolve_base_model(config.base_model or DEFAULT_MODEL)
    device = pick_device(config.device)
    torch.manual_seed(config.seed)  # the new classifier head's initialisation
    model = CrossEncoder(str(base), num_labels=1, max_length=config.max_length, device=device,
                         local_files_only=True)
    rng = np.random.default_rng(config.seed if config.shuffle_seed is None else config.shuffle_seed)
    if config.loss == "lambda":
        from sentence_transformers.cross_encoder.losses import LambdaLoss

        loss_fn = LambdaLoss(model, mini_batch_size=config.batch_size)  # its default: one forward per list
        # gains are 2^label - 1: labels go back on each folder's grade scale
        scale = [float(s.data.max_grade) for s in splits for _ in s.train]
        groups = [(s.data.name, j.query_id) for s in splits for j in s.train]
        schedule = [list_batches(groups, config.batch_size, config.list_size, rng) for _ in range(config.epochs)]
    else:
        loss_fn = BinaryCrossEntropyLoss(model)
        schedule = [[[order[i:i + config.batch_size].tolist()] for i in range(0, len(order), config.batch_size)]
                    for order in (rng.permutation(len(examples)) for _ in range(config.epochs))]
    total_steps = sum(len(epoch) for epoch in schedule)
    optimizer, scheduler = make_optimizer(model, config, total_steps)
    amp = MixedPrecision(device)  # bf16 on CUDA where supported, else fp16 with a gradient scaler

    def batch_loss(lists: list[list[int]]) -> Any:
        if config.loss == "lambda":
            return loss_fn([[examples[ix[0]][0] for ix in lists], [[examples[i][1] for i in ix] for ix in lists]],
                           [torch.tensor([examples[i][2] * scale[i] for i in ix], device=model.device)
                            for ix in lists])
        batch = [examples[i] for i in lists[0]]
        return loss_fn([[b[0] for b in batch], [b[1] for b in batch]],
                       torch.tensor([b[2] for b in batch], device=model.device))

    before = _evaluate(model, splits)
    best, best_step, best_state, stale, step = before["ndcg@10"], 0, None, 0, 0
    log.info("valid nDCG@10 before training: %.4f", best)
    eval_every = config.eval_steps or len(schedule[0])
    stop = False
    bar = tqdm(total=total_steps, desc="train cross-encoder", unit="step", disable=not progress)
    for epoch in schedule:
        for lists in epoch:
            model.train()
            with amp.autocast():
                loss = batch_loss(lists)
            loss_value = amp.step(model, loss, optimizer, scheduler)
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.4f}", best=f"{best:.4f}")
            if step % eval_every == 0 or step == total_steps:
                score = _evaluate(model, splits)["ndcg@10"]
                log.info("step %d: valid nDCG@10 %.4f (best %.4f)", step, score, best)
                if score > best or best_state is None and score >= best:
                    best, best_step, stale = score, step, 0
                    best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
                else:
                    stale += 1
                    if stale >= config.patience:
                        stop = True
                        break
        if stop:
            break
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    elif step:  # training never beat the base model: keep the base weights' ranking but record it
        log.warning("no checkpoint beat the base model's valid nDCG@10 %.4f; saving the last step", best)
    out = Path(config.out)
    # built whole beside --out and swapped in: a failed calibration or a Ctrl-C leaves the last model as it was,
    # never new weights beside an old card and calibration (which serving would load)
    with folder_replaced(out) as building:
        model.save(str(building), create_model_card=False)
        write_heldout_queries(building, splits)
        after = _evaluate(model, splits)
        cal_metrics = _calibrate(model, splits, building)
        seconds = time.perf_counter() - started
        card = _card(config, base, splits, before, after, cal_metrics, best_step, step, seconds, teacher_fit)
        write_model_card(building, card)
    print(f"trained {out.name}: {len(examples)} pairs, {step} steps, valid nDCG@10 {before['ndcg@10']:.4f} -> "
          f"{after['ndcg@10']:.4f}, {seconds:.0f} s ({step * config.batch_size / max(seconds, 1e-9):.1f} pairs/s)")
    return TrainResult(out, before["ndcg@10"], after["ndcg@10"], best_step, step, len(examples), seconds, card)


def train_ensemble(config: TrainConfig, candidates: Candidates | None = None, members: int = 2,
                   progress: bool = True, base_models: Sequence[str] | None = None) -> TrainResult:
    """Train ``members`` cross-encoders on one split, each seeing the pairs in its own order, served as their mean.

    Member ``i`` is :func:`train_cross_encoder` into ``config.out``/m{i} with shuffle seed S + i (S: the config's
    shuffle seed, else its seed). With ``base_models``, member ``i`` starts from ``base_models[i]`` instead and
    every member sees the pairs in order S: they already differ in what they start from (models of two
    architectures err on different products, where seeds of one mostly agree). ``config.out`` then gets
    ``ensemble.toml`` and, as a single model would, the split's query files, a calibration and a card, both
    computed from the members' mean score; the card also lists each member. ``progress``: each member's training
    bar.

    Raises:
        ValueError: ``members`` (or ``base_models``) outside 2..8, or what :func:`train_cross_encoder` raises.
    Example:
        >>> train_ensemble(TrainConfig(data_dirs=("data/crowdflower",), out="models/ce-x"), members=2)  # doctest: +SKIP
        >>> train_ensemble(TrainConfig(data_dirs=("data/crowdflower",), out="models/ce-x"),
        ...                base_models=["models/ce-hd", "all-mpnet-base-v2"])  # doctest: +SKIP
    """
    from sentence_transformers import CrossEncoder

    from .cross_encoder_ensemble import MAX_MEMBERS, check_out_folder, write_ensemble

    if base_models is not None:
        members = len(base_models)
    if not 2 <= members <= MAX_MEMBERS:
        raise ValueError(f"members={members!r} must be in 2..{MAX_MEMBERS}")
    started = time.perf_counter()
    first = config.seed if config.shuffle_seed is None else config.shuffle_seed
    names = [f"m{i}" for i in range(members)]
    out = Path(config.out)
    config.validate()  # the members differ from it only where validate() does not look
    check_out_folder(out)
    # the members differ only in shuffle seed or base model, which the split ignores
    splits = prepare_splits(config, candidates)
    with folder_replaced(out) as building:  # the whole ensemble, or the last one as it was
        member_configs = [replace(config, out=str(building / n), shuffle_seed=first + i) if base_models is None
                          else replace(config, out=str(building / n), shuffle_seed=first, base_model=base_models[i])
                          for i, n in enumerate(names)]
        results = [train_cross_encoder(c, candidates, splits, progress) for c in member_configs]
        write_ensemble(building, names)
        device = pick_device(config.device)
        mean = _MeanOf([CrossEncoder(str(r.out), max_length=config.max_length, device=device,
                                     local_files_only=True) for r in results])
        write_heldout_queries(building, splits)
        after = _evaluate(mean, splits)
        cal_metrics = _calibrate(mean, splits, building)
        m0 = results[0].card["metrics"]
        before = {"ndcg@10": m0["valid_ndcg@10_before"],
                  "per_dataset": {n: v["ndcg@10_before"] for n, v in m0["per_dataset"].items()}}
        seconds = time.perf_counter() - started
        bases = ", ".join(dict.fromkeys(r.card["base_model"] for r in results))
        card = _card(config, bases, splits, before, after, cal_metrics, results[0].best_step, results[0].steps,
                     seconds)
        card["members"] = [{"folder": n, "base_model": r.card["base_model"], "shuffle_seed": c.shuffle_seed,
                            "valid_ndcg@10_after": r.valid_ndcg_after, "best_step": r.best_step, "steps": r.steps}
                           for n, c, r in zip(names, member_configs, results)]
        write_model_card(building, card)
    each = ", ".join(f"{r.valid_ndcg_after:.4f}" for r in results)
    print(f"trained ensemble {out.name}: {members} members (valid nDCG@10 {each}), their mean "
          f"{before['ndcg@10']:.4f} -> {after['ndcg@10']:.4f}; {seconds:.0f} s")
    return TrainResult(out, before["ndcg@10"], after["ndcg@10"], results[0].best_step, results[0].steps,
                       results[0].train_pairs, seconds, card)


class _MeanOf:
    """Cross-encoders predicting as one, the mean of their scores (an ensemble, for evaluation and calibration)."""

    def __init__(self, models: Sequence[Any]) -> None:
        self.models = models

    def predict(self, pairs: list[tuple[str, str]], **kwargs: Any) -> np.ndarray:
        return np.mean([np.asarray(m.predict(pairs, **kwargs), dtype=np.float32) for m in self.models], axis=0)


def list_batches(groups: Sequence[Hashable], batch_size: int, list_size: int, rng: np.random.Generator
                 ) -> list[list[list[int]]]:
    """One epoch of listwise batches: each batch a few lists of example indices, each list from one query.

    Every example appears once: a query's examples are shuffled and cut into near-equal lists of at most
    ``list_size``; the lists, in random order, are packed into batches of at most ``batch_size`` examples (a
    longer list goes alone). ``groups[i]`` is example i's query key.

    >>> list_batches(["a", "a", "a", "b"], batch_size=4, list_size=2, rng=np.random.default_rng(0))
    [[[3], [1], [2, 0]]]
    """
    by_group: dict[Hashable, list[int]] = {}
    for i, g in enumerate(groups):
        by_group.setdefault(g, []).append(i)
    lists = []
    for members in by_group.values():
        members = [members[i] for i in rng.permutation(len(members))]
        lists.extend(a.tolist() for a in np.array_split(members, math.ceil(len(members) / list_size)))
    batches: list[list[list[int]]] = []
    current: list[list[int]] = []
    for k in rng.permutation(len(lists)):
        if current and sum(map(len, current)) + len(lists[k]) > batch_size:
            batches.append(current)
            current = []
        current.append(lists[k])
    return batches + ([current] if current else [])


def teacher_labels(splits: Sequence[DatasetSplit], teacher: str, weight: float, progress: bool = True
                   ) -> tuple[list[float], dict[str, dict[str, float]]]:
    """Training labels blended with a bi-encoder's cosine (distillation), in the order of the splits' train pairs.

    The bi-encoder generalises to unseen queries from far more data than the few judged ones, and the cross-encoder
    starts from its weights but not its scoring; blending its similarity into the labels passes that ranking on.
    Its cosine is put on the label scale per data folder by matching the judged train labels' mean and spread
    (a least-squares line would shrink it by the correlation and leave the teacher little to say);
    mined hard negatives keep label 0 (they are there to teach what the pools leave out).

    Returns:
        (labels, {data folder name: {"slope", "intercept", "r"}}) — the fit is recorded in the model card.
    """
    from shopsearch.indexer.embedder import BiEncoder

    encoder = BiEncoder(teacher)
    labels: list[float] = []
    fits = {}
    for s in splits:
        texts = [product_text(s.data.products[j.doc_id]) for j in s.train]
        cos = _cosines(encoder, [s.data.queries[j.query_id] for j in s.train], texts, progress)
        grades = np.array([s.data.normalised_grade(j) for j in s.train], dtype=float)
        judged = np.arange(len(s.train)) < len(s.train) - s.train_negatives  # negatives come last
        c, g = cos[judged], grades[judged]
        slope = float(g.std() / c.std()) if judged.sum() > 1 and c.std() > 0 else 0.0
        intercept = float(g.mean() - slope * c.mean()) if judged.any() else 0.0
        mapped = np.clip(slope * cos + intercept, 0.0, 1.0)
        blended = np.where(judged, (1 - weight) * grades + weight * mapped, grades)
        labels.extend(float(y) for y in blended)
        r = float(np.corrcoef(c, g)[0, 1]) if judged.sum() > 1 and c.std() > 0 and g.std() > 0 else math.nan
        fits[s.data.name] = {"slope": slope, "intercept": intercept, "r": r}
        log.info("teacher %s on %s: label ~ %.3f * cosine + %.3f (r %.3f)", teacher, s.data.name, slope,
                 intercept, r)
    return labels, fits


def _cosines(encoder: Any, queries: list[str], texts: list[str], progress: bool = True) -> np.ndarray:
    """Row-wise cosine of (query, text) pairs; each distinct string is embedded once."""
    from tqdm import tqdm

    uq, ut = list(dict.fromkeys(queries)), list(dict.fromkeys(texts))
    qv = encoder.encode(uq)
    tv = np.concatenate([encoder.encode(ut[i:i + 512]) for i in tqdm(range(0, len(ut), 512), desc="teacher",
                                                                     unit="chunk", disable=not progress)]) \
        if ut else qv[:0]
    qi, ti = {q: i for i, q in enumerate(uq)}, {t: i for i, t in enumerate(ut)}
    return np.einsum("ij,ij->i", qv[[qi[q] for q in queries]], tv[[ti[t] for t in texts]]).astype(float)


def write_heldout_queries(out: Path, splits: Sequence[DatasetSplit]) -> list[Path]:
    """``heldout-queries-<name>.tsv`` (qid TAB query) per data folder: the test queries no stage trained on;
    and ``valid-queries-<name>.tsv``: the validation queries early stopping chose the checkpoint on.

    Evaluate the model with the held-out ones (``shopsearch eval --queries ...``) and keep them out of anything
    trained on top of it (``shopsearch simulate-events --exclude-queries ...``); compare candidate runs or profile
    settings on the validation ones, so the test queries stay unbiased.
    """
    paths = []
    for s in splits:
        text = s.data.queries
        for stem, qids in (("heldout-queries", s.test_qids), ("valid-queries", s.valid_qids)):
            path = out / f"{stem}-{s.data.name}.tsv"
            write_queries(path, (Query(q, text[q]) for q in qids))
            paths.append(path)
    return paths


def score_pairs(model: Any, pairs: list[tuple[str, str]], batch_size: int = 64) -> np.ndarray:
    """Model relevance scores (sigmoid of the logit) for (query, text) pairs."""
    if not pairs:
        return np.zeros(0, dtype=np.float32)
    return np.asarray(model.predict(pairs, batch_size=batch_size, show_progress_bar=False), dtype=np.float32)


def _evaluate(model: Any, splits: Sequence[DatasetSplit]) -> dict[str, Any]:
    """Valid nDCG@10: the mean over data folders of each folder's mean over its queries (and per folder).

    Each folder counts equally, so the few validation queries of a small folder are not drowned by a large one's.
    """
    per_dataset = {}
    for s in splits:
        scores = score_pairs(model, [(s.data.queries[j.query_id], product_text(s.data.products[j.doc_id]))
                                     for j in s.valid])
        groups: dict[str, tuple[list[float], list[int]]] = {}
        for j, sc in zip(s.valid, scores):
            g = groups.setdefault(j.query_id, ([], []))
            g[0].append(float(sc))
            g[1].append(j.relevance)
        per_dataset[s.data.name] = mean_ndcg(groups)
    scored = [per_dataset[s.data.name] for s in splits if s.valid]
    return {"ndcg@10": float(np.mean(scored)) if scored else 0.0, "per_dataset": per_dataset}


def _calibration_pairs(split: DatasetSplit) -> list[Qrel]:
    """Every judged pair of a folder's validation queries (not the capped subset early stopping scores: an isotonic
    map fitted on a few hundred pairs is mostly noise)."""
    qids = set(split.valid_qids)
    return [j for j in split.data.qrels if j.query_id in qids] or list(split.valid)


def _calibrate(model: Any, splits: Sequence[DatasetSplit], out: Path) -> dict[str, dict[str, float]]:
    """Fit and save an isotonic map per dataset on all its validation queries' judged pairs; in-sample RMSEs."""
    cals, metrics = {}, {}
    for s in splits:
        valid = _calibration_pairs(s)
        scores = score_pairs(model, [(s.data.queries[j.query_id], product_text(s.data.products[j.doc_id]))
                                     for j in valid])
        raw = np.array([s.data.raw_score(j) for j in valid], dtype=float)
        cal = fit_isotonic(scores, raw, s.data.raw_min, s.data.raw_max)
        cals[s.data.name] = cal
        metrics[s.data.name] = rmse_vs_mean(cal.apply(scores), raw, np.nanmean(raw))
    save_calibrations(out, cals, default=splits[0].data.name)
    return metrics


def _card(config: TrainConfig, base: str, splits: Sequence[DatasetSplit], before: dict, after: dict,
          cal_metrics: dict, best_step: int, steps: int, seconds: float,
          teacher_fit: dict[str, dict[str, float]] | None = None) -> dict[str, Any]:
    """The model card dict (see model_card.REQUIRED_KEYS)."""
    params = {k: v for k, v in asdict(config).items()
              if k not in ("data_dirs", "out", "base_model", "seed", "mined_from")}
    per_dataset = {name: {"ndcg@10_before": before["per_dataset"][name], "ndcg@10_after": after["per_dataset"][name],
                          **cal_metrics[name]} for name in after["per_dataset"]}
    return {
        "model": Path(config.out).name,
        "base_model": str(base),
        "data": {"pairs_sha256": pairs_sha256(splits), "dirs": [
            {"path": str(s.data.path), "name": s.data.name, "max_grade": s.data.max_grade,
             "raw_scale": [s.data.raw_min, s.data.raw_max], "train_pairs": len(s.train),
             "train_queries": len({j.query_id for j in s.train}), "valid_pairs": len(s.valid),
             "valid_queries": len({j.query_id for j in s.valid}), "test_queries": s.test_queries,
             "train_hard_negatives": s.train_negatives, "valid_hard_negatives": s.valid_negatives} for s in splits],
                 "hard_negatives_from": config.mined_from},
        "parameters": params,
        "seed": config.seed,
        "metrics": {"valid_ndcg@10_before": before["ndcg@10"], "valid_ndcg@10_after": after["ndcg@10"],
                    "best_step": best_step, "steps": steps, "per_dataset": per_dataset},
        "training_seconds": round(seconds, 1),
        "created": created_now(),
        "labels": "grade / max_grade of its dataset, in [0, 1] (mined hard negatives: 0); model score = "
                  "sigmoid(logit)" + (f"; judged pairs blended with teacher {config.teacher!r} at weight "
                                      f"{config.teacher_weight} (cosine mapped per dataset: teacher_fit)"
                                      if teacher_fit else ""),
        **({"teacher_fit": teacher_fit} if teacher_fit else {}),
    }
