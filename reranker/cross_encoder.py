"""Serve a trained cross-encoder: score (query, product) pairs and rerank the top of a fused hit list.

On CUDA the model runs in fp16; on CPU, with ``fast_cpu``, an int8 copy runs in ONNX Runtime (see
onnx_cross_encoder.py; measured in bench/rerank.py), or torch fp32 when that cannot be built. Reranking never
raises: on a scoring error or a blown time budget it returns the fused order and says why.

The budget is checked before each batch against a time-decayed estimate of what a batch costs
(:class:`~.batch_cost.BatchCost`): a batch that would not fit is not started, and a slow spell is forgotten as time
passes, so the stage comes back on its own.
"""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from shopsearch.deadline import Deadline, DeadlineExceeded
from shopsearch.indexer.embedder import position_limit
from shopsearch.indexer.onnx_encoder import cuda_available
from shopsearch.plugin.search_types import ScoredHit
from shopsearch.settings import load_settings, offline_environment

from .batch_cost import BatchCost
from .calibration import load_calibrations
from .pair_text import product_text

log = logging.getLogger(__name__)

STAGE = "cross_encoder"


class OverBudget(DeadlineExceeded):
    """Scoring was stopped because the next batch would not fit the time left."""

    def __init__(self, message: str) -> None:
        super().__init__("rerank", message)


class CrossEncoderReranker:
    """A trained cross-encoder (a folder written by ``shopsearch train cross-encoder``) as a reranker.

    Args:
        model_dir: the model folder (sentence-transformers CrossEncoder layout, optional calibration.json).
        device: "cuda", "cpu"...; None picks CUDA when available.
        batch_size: pairs per forward pass (>= 1).
        max_length: token limit of a (query, product text) pair, in [8, 512]; None: the one the model was
            trained with (its model card), else 256. Serving longer pairs than training saw costs time for text
            the model never learned to use.
        fast_cpu: on CPU, score with the ONNX Runtime int8 model (faster, ~same ranking), falling back to torch
            fp32 with a warning when it cannot be built; False: torch fp32.
        require_onnx: with ``fast_cpu`` on CPU, raise instead of falling back when the ONNX path cannot be built.
        onnx_cache: where ONNX exports are cached (default: the settings' ``onnx_dir``).
    Raises:
        ValueError: a parameter out of range. FileNotFoundError: ``model_dir`` does not exist.
    Example:
        >>> rr = CrossEncoderReranker("models/ce-minilm")  # doctest: +SKIP
        >>> hits, why = rr.rerank("red lamp", fused_hits, depth=50, budget_ms=300)  # doctest: +SKIP
    """

    def __init__(self, model_dir: str | Path, *, device: str | None = None, batch_size: int = 64,
                 max_length: int | None = None, fast_cpu: bool = True, require_onnx: bool = False,
                 onnx_cache: str | Path | None = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r} must be >= 1")
        if max_length is not None and not 8 <= max_length <= 512:
            raise ValueError(f"max_length={max_length!r} must be in [8, 512]")
        path = Path(model_dir)
        if not is_model_dir(path):
            raise FileNotFoundError(f"model_dir={str(path)!r} is not a trained cross-encoder (no config.json of a "
                                    f"sequence-classification model: a bi-encoder's folder?)")
        if max_length is None:
            max_length = _trained_max_length(path)
        offline_environment()
        self.batch_size = batch_size
        self.model: Any = None  # the torch CrossEncoder; None when a recorded ONNX export serves without torch
        self._onnx: Any = None
        if fast_cpu and (device == "cpu" or (device is None and not cuda_available())):
            self._onnx = self._recorded_onnx(path, max_length, require_onnx, onnx_cache)
        if self._onnx is not None:
            self.device, self.precision = "cpu", "onnx-int8"
        else:
            import torch
            from sentence_transformers import CrossEncoder

            self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
            self.model = CrossEncoder(str(path), max_length=max_length, device=self.device, local_files_only=True)
            self.model.eval()
            if self.device.startswith("cuda"):
                self.model.half()
                self.precision = "fp16"
            else:
                self._onnx = self._onnx_int8(path, max_length, require_onnx, onnx_cache) if fast_cpu else None
                self.precision = "fp32" if self._onnx is None else "onnx-int8"
        self._serve(path, self.device, self.precision, BatchCost())

    def _serve(self, model_dir: Path, device: str, precision: str, cost: Any) -> None:
        """Set what :meth:`rerank`, :meth:`calibrated` and callers read besides :meth:`score`: the folder, where
        and how it scores, its calibrations, and ``cost`` (what a batch costs, which drives the budget checks).
        The one place these are set, so a subclass scoring another way (an ensemble) sets them all."""
        self.model_dir, self.device, self.precision = model_dir, device, precision
        self.calibrations, self.default_calibration = load_calibrations(model_dir)
        self.cost = cost

    def _recorded_onnx(self, path: Path, max_length: int, required: bool, cache: str | Path | None) -> Any:
        """The int8 scorer of an export recorded earlier, built without torch or transformers (a lean search
        worker); None when there is none yet, or (logged; raised when ``required``) when it cannot be loaded."""
        try:
            from .onnx_cross_encoder import load_exported

            return load_exported(path, cache or load_settings().onnx_dir, max_length)
        except Exception as exc:  # noqa: BLE001 - the model is loaded instead, which re-exports
            if required:
                raise
            log.warning("recorded ONNX export of %s unusable (%s: %s); loading the model", path,
                        type(exc).__name__, exc)
            return None

    def _onnx_int8(self, path: Path, max_length: int, required: bool, cache: str | Path | None) -> Any:
        """The ONNX Runtime int8 scorer, or None (logged) when it cannot be built and is not ``required``."""
        try:
            from .onnx_cross_encoder import OnnxCrossEncoder, export_int8, pair_tokenizer

            onnx_path = export_int8(self.model, path, cache or load_settings().onnx_dir)
            return OnnxCrossEncoder(onnx_path, pair_tokenizer(self.model.tokenizer, max_length), max_length)
        except Exception as exc:  # noqa: BLE001 - any failure here means "use the torch path"
            if required:
                raise
            log.warning("ONNX Runtime int8 path for %s unavailable (%s: %s); using torch fp32", path,
                        type(exc).__name__, exc)
            return None

    def score(self, query: str, products: Sequence[Mapping[str, Any]], *, deadline: Deadline | None = None
              ) -> np.ndarray:
        """Relevance scores in (0, 1) (sigmoid of the logit) of ``products`` for ``query``, in input order.

        Args:
            query: the shopper's query.
            products: product dicts with ``title`` (and optionally ``description``).
            deadline: checked before each batch: a batch the cost estimate says would end past it is not started
                (:class:`OverBudget`), nor any once it has passed; with no estimate yet the first batch runs.
        Returns:
            float32 array, one score per product.
        Example:
            >>> rr.score("red lamp", [{"title": "Red lamp"}, {"title": "Blue chair"}])  # doctest: +SKIP
            array([0.93, 0.02], dtype=float32)
        """
        if self.model is None:  # a recorded ONNX export: this process never imports torch
            no_grad: Any = contextlib.nullcontext()
        else:
            import torch

            no_grad = torch.inference_mode()
        pairs = [(query, product_text(p)) for p in products]
        out = np.zeros(len(pairs), dtype=np.float32)
        with no_grad:
            for start in range(0, len(pairs), self.batch_size):
                chunk = pairs[start:start + self.batch_size]
                if deadline is not None:
                    need = self.cost.batch_ms(len(chunk))
                    if deadline.expired() or (need is not None and need > deadline.remaining_ms()):
                        raise OverBudget(f"scored {start} of {len(pairs)} pairs; the next batch would end past "
                                         "the deadline")
                t = self.cost.clock()  # the estimate's own clock (a test's fake one moves with its fake model)
                out[start:start + len(chunk)] = (
                    self._onnx.predict(chunk) if self._onnx is not None else
                    self.model.predict(chunk, batch_size=self.batch_size, show_progress_bar=False))
                self.cost.observe(pairs=len(chunk), ms=(self.cost.clock() - t) * 1000)
        return out

    def calibrated(self, scores: Sequence[float] | np.ndarray, dataset: str | None = None) -> np.ndarray:
        """Scores mapped to a dataset's raw rating scale with the stored isotonic calibration.

        Raises:
            ValueError: the model has no calibration, or none for ``dataset``.
        Example:
            >>> rr.calibrated([0.9], dataset="homedepot")  # doctest: +SKIP
            array([2.8])
        """
        name = dataset or self.default_calibration
        if name not in self.calibrations:
            raise ValueError(f"dataset={dataset!r} has no calibration in {self.model_dir}; "
                             f"available: {sorted(self.calibrations)}")
        return self.calibrations[name].apply(scores)

    def rerank(self, query: str, hits: Sequence[ScoredHit], depth: int = 50, budget_ms: float | None = None,
               combine: str = "none", rrf_k: float = 60.0) -> tuple[list[ScoredHit], str | None]:
        """Rescore the top ``depth`` hits with the cross-encoder; the rest follow in their fused order.

        Reranked hits get ``score`` = the cross-encoder score and ``stages["cross_encoder"]``; the others keep
        their score. Ranks are renumbered 1..n. Never raises for a scoring failure or a blown budget: then the
        fused order is returned unchanged with the reason.

        Args:
            query: the shopper's query.
            hits: the fused ranking (rank order).
            depth: how many of the top hits to rescore (>= 0).
            budget_ms: time allowed for scoring; None for no limit. Skipped up front when the cost estimate
                (:attr:`cost`, time-decayed) says the head cannot fit, and stopped before a batch that would not.
            combine: "none" orders the head by the cross-encoder score; "rrf" by 1/(rrf_k + cross-encoder rank)
                + 1/(rrf_k + incoming rank), and that sum becomes the hit's score (``stages["rerank"]``).
            rrf_k: the fusion's k (> 0).
        Returns:
            (hits, why), with exactly the input hits; ``why`` is None when reranked, else why the fused order came
            back: ``"budget"`` (it could not fit ``budget_ms``) or ``"failed"`` (scoring raised).
        Raises:
            ValueError: ``depth`` < 0, ``budget_ms`` <= 0, unknown ``combine`` or ``rrf_k`` <= 0.
        Example:
            >>> ranked, why = rr.rerank("red lamp", hits, depth=50, budget_ms=250)  # doctest: +SKIP
        """
        if depth < 0:
            raise ValueError(f"depth={depth!r} must be >= 0")
        if budget_ms is not None and budget_ms <= 0:
            raise ValueError(f"budget_ms={budget_ms!r} must be > 0 (or None for no limit)")
        if combine not in ("none", "rrf"):
            raise ValueError(f"combine={combine!r} must be 'none' or 'rrf'")
        if rrf_k <= 0:
            raise ValueError(f"rrf_k={rrf_k!r} must be > 0")
        hits = list(hits)
        head, tail = hits[:depth], hits[depth:]
        if not head:
            return hits, None
        need = self.cost.batch_ms(len(head))
        if budget_ms is not None and need is not None and need > budget_ms:
            log.info("cross-encoder skipped: %d pairs need ~%.0f ms > budget %.0f ms", len(head), need, budget_ms)
            return hits, "budget"
        deadline = None if budget_ms is None else Deadline.after(budget_ms / 1000, clock=self.cost.clock)
        try:
            scores = self.score(query, [h.source for h in head], deadline=deadline)
        except OverBudget as exc:
            log.info("cross-encoder over its %.0f ms budget, keeping fused order: %s", budget_ms, exc)
            return hits, "budget"
        except Exception as exc:  # noqa: BLE001 - any scoring failure degrades to the fused order
            log.warning("cross-encoder failed, keeping fused order: %s", exc)
            return hits, "failed"
        if deadline is not None and deadline.expired():
            return hits, "budget"
        final = scores.astype(np.float64)
        if combine == "rrf":
            final = rrf_with_incoming(scores, rrf_k)
        order = np.argsort(-final, kind="stable")  # ties keep the fused order
        reranked = []
        for i in order:
            stages = {**head[i].stages, STAGE: float(scores[i])}
            if combine == "rrf":
                stages["rerank"] = float(final[i])
            reranked.append(replace(head[i], score=float(final[i]), stages=stages))
        return [replace(h, rank=r) for r, h in enumerate(reranked + tail, 1)], None


def is_model_dir(path: str | Path) -> bool:
    """Whether ``path`` holds one trained cross-encoder: a sentence-transformers CrossEncoder folder, whose
    config.json names a sequence-classification model (a bi-encoder's folder names a bare encoder, and served as
    a cross-encoder it would score with a randomly initialised head)."""
    config = Path(path) / "config.json"
    try:
        architectures = json.loads(config.read_text(encoding="utf-8")).get("architectures")
    except (OSError, ValueError, AttributeError):
        return False
    return architectures is None or any(str(a).endswith("ForSequenceClassification") for a in architectures)


def rrf_with_incoming(scores: Sequence[float] | np.ndarray, rrf_k: float) -> np.ndarray:
    """1/(rrf_k + rank by ``scores``) + 1/(rrf_k + incoming rank), for a head given in its incoming order.

    Rerank stages use it to fuse their own ranking with the one they were handed (``combine = "rrf"``).

    >>> rrf_with_incoming([0.1, 0.9], 1.0).round(3).tolist()  # each is first once: a tie
    [0.833, 0.833]
    """
    scores = np.asarray(scores, dtype=np.float64)
    own = np.empty(len(scores))
    own[np.argsort(-scores, kind="stable")] = np.arange(1, len(scores) + 1)
    return 1.0 / (rrf_k + own) + 1.0 / (rrf_k + np.arange(1, len(scores) + 1))


def _trained_max_length(path: Path, default: int = 256) -> int:
    """``parameters.max_length`` of the model card in ``path``, else ``default`` within the model's positions.

    A folder without a card (a cross-encoder from elsewhere) may take fewer tokens than ``default``; a longer pair
    would fail to score.
    """
    from .model_card import read_model_card

    try:
        value = read_model_card(path)["parameters"]["max_length"]
    except (OSError, ValueError, KeyError, TypeError):
        value = None
    if isinstance(value, int) and 8 <= value <= 512:
        return value
    try:
        limit = position_limit(json.loads((path / "config.json").read_text(encoding="utf-8")))
    except (OSError, ValueError, AttributeError):
        limit = None
    return min(default, limit) if limit is not None and limit >= 8 else default
