"""Several cross-encoders serving as one: each scores every pair, and the stage uses the mean of their scores.

Cross-encoders fine-tuned on a catalog's few hundred judged queries differ with the order they saw the pairs in
(two such runs on crowdflower: 0.8407 and 0.8339 nDCG@10 as a rerank stage), and the mean of their scores ranks like
the better one (0.8409: +0.004 over a single run's expectation, though it did not raise the ``ltr-ce`` ranker fed
its score; bench/RESULTS.md, session 17). An ensemble is a
model folder holding ``ensemble.toml``, which ``shopsearch train cross-encoder --members N`` writes:

    members = ["m0", "m1"]   # member model folders, inside this one

A profile names it like any cross-encoder (``rerank.model = "ce-minilm"``); it costs one scoring per member, all
within the stage's one budget.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from pydantic import BaseModel, Field, field_validator

from shopsearch.atomic_write import write_atomically
from shopsearch.config_files import FILE_MODEL, must, read_toml, validate_file
from shopsearch.deadline import Deadline

from .cross_encoder import CrossEncoderReranker, OverBudget, is_model_dir

ENSEMBLE_FILE = "ensemble.toml"
MAX_MEMBERS = 8
_MEMBER = re.compile(r"[A-Za-z0-9_.-]{1,100}")  # one folder name: no separators, drive letters or paths


class EnsembleFile(BaseModel):
    """``ensemble.toml``: the member model folders of a cross-encoder ensemble."""

    model_config = FILE_MODEL
    members: list[str] = Field(min_length=2, max_length=MAX_MEMBERS,
                               description="member cross-encoder folders, by name, inside the ensemble's folder")

    @field_validator("members")
    @classmethod
    def _inside(cls, members: list[str]) -> list[str]:
        for m in members:
            if not _MEMBER.fullmatch(m) or m in (".", ".."):
                raise must("be names of folders inside the ensemble's folder (letters, digits, '_', '.', '-')")
        if len(set(members)) != len(members):
            raise must("name each member once")
        return members


def is_ensemble(model_dir: str | Path) -> bool:
    """Whether ``model_dir`` is an ensemble folder (it holds ``ensemble.toml``)."""
    return (Path(model_dir) / ENSEMBLE_FILE).is_file()


def is_cross_encoder_dir(model_dir: str | Path) -> bool:
    """Whether ``model_dir`` holds a trained cross-encoder: one model (:func:`is_model_dir`) or an ensemble."""
    return is_model_dir(model_dir) or is_ensemble(model_dir)


def check_out_folder(out: str | Path) -> None:
    """Refuse, before any training, an ``--out`` that training would wipe: the new model replaces the folder whole
    (:func:`shopsearch.atomic_write.folder_replaced`), so it must be new, empty or a cross-encoder's (one model or
    an ensemble), never a folder of models or of data.

    Raises:
        ValueError: naming the folder and why.
    """
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise ValueError(f"--out {out}: is a file; train into a model's folder")
    if path.is_dir() and any(path.iterdir()) and not is_cross_encoder_dir(path):
        raise ValueError(f"--out {out}: holds other files than a cross-encoder, and training replaces the folder "
                         f"whole; train into a new folder (e.g. {Path(out) / 'ce-new'})")


def write_ensemble(model_dir: str | Path, members: Sequence[str]) -> Path:
    """Write ``ensemble.toml`` naming ``members`` (folders inside ``model_dir``); returns its path.

    Raises:
        ValueError: fewer than two members, or one that is not the name of a folder inside ``model_dir``.
    """
    validate_file(EnsembleFile, {"members": list(members)}, ENSEMBLE_FILE)
    path = Path(model_dir) / ENSEMBLE_FILE
    listed = ", ".join(json.dumps(m) for m in members)  # a JSON string is a TOML basic string
    write_atomically(path, "# A cross-encoder ensemble: each member scores every pair, the stage uses their mean.\n"
                     f"members = [{listed}]\n")
    return path


def read_members(model_dir: str | Path) -> list[Path]:
    """The member folders of the ensemble in ``model_dir``.

    Raises:
        ValueError: ``ensemble.toml`` is not valid TOML or names members badly.
        FileNotFoundError: a member folder is not a trained cross-encoder.
    """
    root = Path(model_dir)
    where = root / ENSEMBLE_FILE
    spec = validate_file(EnsembleFile, read_toml(where), where)
    paths = [root / m for m in spec.members]
    for p in paths:
        if not is_model_dir(p):
            raise FileNotFoundError(f"{where}: member {p.relative_to(root)} is not a trained cross-encoder "
                                    "(no config.json)")
    return paths


class CrossEncoderEnsemble(CrossEncoderReranker):
    """The members of an ensemble folder as one reranker: :meth:`score` is the mean of their scores.

    Reranking, budgets and calibration are :class:`CrossEncoderReranker`'s. A batch's estimated cost is the sum
    of the members' (each keeps its own estimate), so the stage is skipped up front when they cannot all fit its
    budget, and no member starts that the time left cannot carry through the rest. Keyword arguments go to each
    member.

    Raises:
        ValueError, FileNotFoundError: see :func:`read_members`.
    Example:
        >>> rr = CrossEncoderEnsemble("models/ce-minilm")  # doctest: +SKIP
        >>> hits, why = rr.rerank("red lamp", fused_hits, depth=50, budget_ms=400)  # doctest: +SKIP
    """

    def __init__(self, model_dir: str | Path, **kwargs: Any) -> None:  # noqa: D107
        # No model of its own to load, so not the base __init__: the members load theirs, _serve sets the rest.
        path = Path(model_dir)
        self.members = [CrossEncoderReranker(p, **kwargs) for p in read_members(path)]
        self.batch_size, self.model, self._onnx = self.members[0].batch_size, None, None
        self._serve(path, self.members[0].device, "+".join(sorted({m.precision for m in self.members})),
                    _SummedCost(self.members))

    def score(self, query: str, products: Sequence[Mapping[str, Any]], *, deadline: Deadline | None = None
              ) -> np.ndarray:
        """The mean of the members' scores (each in (0, 1)).

        Raises:
            OverBudget: before a member starts, when the members left cannot all finish by ``deadline`` (their
                cost estimates say), or as a member's own batch check raises it.
        """
        scores = []
        for i, member in enumerate(self.members):
            if deadline is not None and i:
                need = _SummedCost(self.members[i:]).batch_ms(len(products))
                if deadline.expired() or (need is not None and need > deadline.remaining_ms()):
                    raise OverBudget(f"{i} of {len(self.members)} ensemble members scored; the rest would end "
                                     "past the deadline")
            scores.append(member.score(query, products, deadline=deadline))
        return np.mean(scores, axis=0).astype(np.float32)


class _SummedCost:
    """The members' batch costs as one: a batch costs what it costs every member (None until each has one)."""

    def __init__(self, members: Sequence[CrossEncoderReranker]) -> None:
        self.members = members
        self.clock = members[0].cost.clock

    def batch_ms(self, pairs: int) -> float | None:
        each = [m.cost.batch_ms(pairs) for m in self.members]
        return None if any(ms is None for ms in each) else float(sum(each))  # type: ignore[arg-type]
