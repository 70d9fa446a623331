"""What the bi-encoder and cross-encoder fine-tuning loops share: config range checks and the optimizer step.

Both loops are plain PyTorch loops around a sentence-transformers loss (the library's trainers need the
``datasets`` package): AdamW with linear warmup/decay, gradients clipped to norm 1, fp16 autocast on CUDA.
torch and transformers are imported inside the functions so importing a training module stays cheap.
"""

from __future__ import annotations

from typing import Any, Iterable

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


def autocast(device: str) -> Any:
    """fp16 autocast on CUDA; a no-op context on other devices."""
    import torch

    return torch.autocast("cuda", dtype=torch.float16, enabled=device.startswith("cuda"))


def optimizer_step(model: Any, loss: Any, optimizer: Any, scheduler: Any) -> float:
    """Backpropagate ``loss``, clip gradients, step the optimizer and schedule, clear gradients; the loss value."""
    import torch

    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad()
    return float(loss.item())
