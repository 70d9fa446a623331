"""Mixed precision for the training loops: which dtype and scaler each device gets, and a real step on CPU."""

from __future__ import annotations

import pytest
import torch

from shopsearch.reranker.training_common import MixedPrecision, Precision, choose_precision


@pytest.mark.parametrize("device,bf16,want", [
    ("cuda", True, Precision("bfloat16", False)),  # Ampere and later: bf16, no scaler needed
    ("cuda:1", True, Precision("bfloat16", False)),
    ("cuda", False, Precision("float16", True)),  # older GPUs: fp16 must be scaled or gradients underflow
    ("cuda:0", False, Precision("float16", True)),
    ("cpu", True, Precision(None, False)),  # CPU trains in fp32 whatever it supports
    ("cpu", False, Precision(None, False)),
    ("mps", True, Precision(None, False)),
])
def test_precision_per_device(device, bf16, want):
    assert choose_precision(device, bf16_supported=bf16) == want


def test_cpu_runs_fp32_without_a_scaler_and_learns():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    x = torch.randn(32, 4)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])  # learnable exactly
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    amp = MixedPrecision("cpu")
    assert amp.precision == Precision(None, False) and amp.scaler is None
    losses = []
    for _ in range(20):
        with amp.autocast():
            out = model(x)
        assert out.dtype == torch.float32  # autocast is off on CPU
        losses.append(amp.step(model, torch.nn.functional.mse_loss(out, y), optimizer, scheduler))
    assert losses[-1] < 0.5 * losses[0] and scheduler.last_epoch == 20
    assert all(p.grad is None or not p.grad.any() for p in model.parameters())  # cleared after each step


def test_mixed_precision_on_cpu_is_refused():
    with pytest.raises(ValueError, match=r"precision=Precision\(dtype='float16', scaler=True\) needs a CUDA device; "
                                         r"device='cpu'"):
        MixedPrecision("cpu", Precision("float16", True))
