"""Monotone calibration of model scores onto a dataset's raw rating scale, stored as plain JSON.

Isotonic regression (pool-adjacent-violators) keeps the ranking and fixes the scale; applied with linear
interpolation between the fitted knots and clipped to the rating range.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from shopsearch.atomic_write import write_atomically

CALIBRATION_FILE = "calibration.json"


@dataclass(frozen=True)
class Calibration:
    """Knots of a non-decreasing map from model score ``x`` to rating ``y``, within [raw_min, raw_max]."""

    x: tuple[float, ...]
    y: tuple[float, ...]
    raw_min: float
    raw_max: float
    kind: str = "isotonic"

    def apply(self, scores: Sequence[float] | np.ndarray) -> np.ndarray:
        """Calibrated ratings for ``scores`` (float64 array of the same length)."""
        s = np.asarray(scores, dtype=float)
        return np.clip(np.interp(s, self.x, self.y), self.raw_min, self.raw_max)


def fit_isotonic(scores: Sequence[float], ratings: Sequence[float], raw_min: float, raw_max: float) -> Calibration:
    """Fit a non-decreasing map from scores to ratings (NaN ratings are ignored).

    Args:
        scores: model scores.
        ratings: raw ratings, same length.
        raw_min, raw_max: the rating scale; outputs are clipped into it.
    Returns:
        The fitted :class:`Calibration`.
    Raises:
        ValueError: lengths differ, or fewer than 2 usable pairs.
    Example:
        >>> cal = fit_isotonic([0.1, 0.2, 0.9], [1.0, 2.0, 3.0], 1.0, 3.0)
        >>> float(cal.apply([0.9])[0])
        3.0
    """
    s, r = np.asarray(scores, dtype=float), np.asarray(ratings, dtype=float)
    if s.shape != r.shape:
        raise ValueError(f"scores has {s.size} items but ratings has {r.size}; they must match")
    keep = ~(np.isnan(r) | np.isnan(s))
    s, r = s[keep], r[keep]
    if s.size < 2:
        raise ValueError(f"need at least 2 scored ratings to calibrate, got {s.size}")
    order = np.argsort(s, kind="stable")
    s, r = s[order], r[order]
    # Pool adjacent violators over blocks of (sum, weight, min x, max x).
    blocks: list[list[float]] = []
    for xi, yi in zip(s, r):
        blocks.append([yi, 1.0, xi, xi])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] >= blocks[-1][0] / blocks[-1][1]:
            tot, w, _, hi = blocks.pop()
            blocks[-1][0] += tot
            blocks[-1][1] += w
            blocks[-1][3] = hi
    xs, ys = [], []
    for tot, w, lo, hi in blocks:  # a block is flat between its smallest and largest score
        xs.extend([lo, hi] if hi > lo else [lo])
        ys.extend([tot / w] * (2 if hi > lo else 1))
    return Calibration(x=tuple(float(v) for v in xs), y=tuple(float(v) for v in ys),
                       raw_min=float(raw_min), raw_max=float(raw_max))


def save_calibrations(model_dir: str | Path, calibrations: dict[str, Calibration], default: str) -> Path:
    """Write ``{"default": name, "datasets": {name: {...}}}`` to ``model_dir/calibration.json``."""
    if default not in calibrations:
        raise ValueError(f"default={default!r} must be one of {sorted(calibrations)}")
    path = Path(model_dir) / CALIBRATION_FILE
    payload = {"version": 1, "default": default, "datasets": {k: asdict(v) for k, v in calibrations.items()}}
    write_atomically(path, json.dumps(payload, indent=1))
    return path


def load_calibrations(model_dir: str | Path) -> tuple[dict[str, Calibration], str | None]:
    """The calibrations stored in ``model_dir`` and the default's name; ({}, None) when there is no file."""
    path = Path(model_dir) / CALIBRATION_FILE
    if not path.is_file():
        return {}, None
    payload = json.loads(path.read_text(encoding="utf-8"))
    cals = {name: Calibration(x=tuple(d["x"]), y=tuple(d["y"]), raw_min=d["raw_min"], raw_max=d["raw_max"],
                              kind=d.get("kind", "isotonic")) for name, d in payload["datasets"].items()}
    return cals, payload.get("default")
