"""What the bi-encoder and cross-encoder fine-tuning loops share: config range checks, mixed precision, the step.

Both loops are plain PyTorch loops around a sentence-transformers loss (the library's trainers need the
``datasets`` package): AdamW with linear warmup/decay, gradients clipped to norm 1. On CUDA they autocast to bf16
where the GPU supports it, else to fp16 with a gradient scaler (fp16 gradients underflow to zero without one, and
training silently stops learning); on CPU they run fp32. torch and transformers are imported inside the functions
so importing a training module stays cheap.
"""

from __future__ import annotations

import logging
from typing import Any, Iterable, NamedTuple

log = logging.getLogger(__name__)

Check = tuple[str, bool, str]  # (parameter name, whether its value is allowed, what is allowed)
MAX_GRAD_NORM = 1.0


def check_ranges(config: Any, checks: Iterable[Check]) -> None:
    """Raise ValueError naming the first failed check's parameter, its value on ``config`` and what is allowed.

    >>> from types import SimpleNamespace
    >>> check_ranges(SimpleNamespace(epochs=0), [("epochs", False, ">= 1")])
    Traceback (most recent call last):
    ValueError: epochs=0 must be >= 1
    """
    for name, ok, allowed in checks:
        if not ok:
            raise ValueError(f"{name}={getattr(config, name)!r} must be {allowed}")


def common_checks(config: Any) -> list[Check]:
    """The checks every training config needs: ``epochs``, ``lr``, ``warmup_ratio`` and ``max_length``."""
    return [("epochs", config.epochs >= 1, ">= 1"), ("lr", 0 < config.lr < 1, "in (0, 1)"),
            ("warmup_ratio", 0 <= config.warmup_ratio < 1, "in [0, 1)"),
            ("max_length", 8 <= config.max_length <= 512, "in [8, 512]")]


def pick_device(requested: str | None) -> str:
    """``requested`` when given, else ``cuda`` when torch sees a GPU, else ``cpu``."""
    import torch

    return requested or ("cuda" if torch.cuda.is_available() else "cpu")


def make_optimizer(model: Any, config: Any, total_steps: int) -> tuple[Any, Any]:
    """AdamW (``config.lr``, ``config.weight_decay``) and a linear schedule: warmup over ``config.warmup_ratio`` of
    ``total_steps``, then decay to 0."""
    import torch
    from transformers import get_linear_schedule_with_warmup

    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    return optimizer, get_linear_schedule_with_warmup(optimizer, int(config.warmup_ratio * total_steps),
                                                      total_steps)


class Precision(NamedTuple):
    """How training steps run: the autocast dtype ("bfloat16", "float16"; None: fp32) and whether a gradient
    scaler guards it."""

    dtype: str | None
    scaler: bool


def choose_precision(device: str, bf16_supported: bool) -> Precision:
    """bf16 autocast on a CUDA device that supports it, else fp16 with a gradient scaler; fp32 on other devices.

    Args:
        device: the training device ("cuda", "cuda:1", "cpu", "mps"...).
        bf16_supported: whether that device computes in bf16 (``torch.cuda.is_bf16_supported()``).
    Returns:
        The :class:`Precision` to train with.

    >>> choose_precision("cuda:0", bf16_supported=True)
    Precision(dtype='bfloat16', scaler=False)
    >>> choose_precision("cuda", bf16_supported=False)
    Precision(dtype='float16', scaler=True)
    >>> choose_precision("cpu", bf16_supported=True)
    Precision(dtype=None, scaler=False)
    """
    if not device.startswith("cuda"):
        return Precision(None, False)
    # bf16 has fp32's exponent range: gradients cannot underflow, so it needs no scaler
    return Precision("bfloat16", False) if bf16_supported else Precision("float16", True)


class MixedPrecision:
    """The autocast context and the optimizer step for one training run on ``device``.

    Args:
        device: the training device.
        precision: None: :func:`choose_precision` for the device; a :class:`Precision` to force one (the GPU
            check runs fp16 with its scaler on a bf16-capable GPU this way).

    Example:
        >>> amp = MixedPrecision("cpu")
        >>> with amp.autocast():  # doctest: +SKIP
        ...     loss = loss_fn(features, labels)
        >>> amp.step(model, loss, optimizer, scheduler)  # doctest: +SKIP
        0.6931
    """

    def __init__(self, device: str, precision: Precision | None = None) -> None:
        import torch

        cuda = device.startswith("cuda")
        if precision is not None and (precision.dtype or precision.scaler) and not cuda:
            raise ValueError(f"precision={precision!r} needs a CUDA device; device={device!r}")
        self.device = device
        self.precision = precision or choose_precision(device, cuda and torch.cuda.is_bf16_supported())
        self.scaler = torch.amp.GradScaler("cuda") if self.precision.scaler else None
        log.info("training precision on %s: %s%s", device, self.precision.dtype or "float32",
                 " with a gradient scaler" if self.scaler else "")

    def autocast(self) -> Any:
        """Autocast to the chosen dtype on CUDA; a no-op context when training in fp32."""
        import torch

        dtype = self.precision.dtype
        return torch.autocast("cuda", dtype=getattr(torch, dtype or "float16"), enabled=dtype is not None)

    def step(self, model: Any, loss: Any, optimizer: Any, scheduler: Any) -> float:
        """Backpropagate ``loss`` (scaled when fp16), clip gradients to norm 1, step the optimizer and the schedule,
        clear gradients; returns the (unscaled) loss value.

        With a scaler, a step whose gradients overflowed is skipped (the scaler then lowers its scale), and so is
        that step's schedule advance.
        """
        import torch

        if self.scaler is None:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM)
            optimizer.step()
            stepped = True
        else:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
            torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM)
            scale = self.scaler.get_scale()
            self.scaler.step(optimizer)
            self.scaler.update()
            stepped = self.scaler.get_scale() >= scale  # the scale drops only when the step was skipped
        if stepped:
            scheduler.step()
        optimizer.zero_grad()
        return float(loss.item())
