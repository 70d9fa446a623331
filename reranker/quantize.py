"""CPU fast path for the cross-encoder: dynamic int8 quantisation of every Linear layer (weights int8,
activations quantised per batch). Measured in bench/rerank.py against fp32."""

from __future__ import annotations

import warnings

import torch


def quantize_linear_int8(model: torch.nn.Module) -> torch.nn.Module:
    """Replace ``model``'s Linear layers in place by dynamically quantised int8 ones; returns the model.

    Only for CPU inference (quantised kernels have no CUDA path); the model must be in eval mode and not trained
    afterwards.

    Example:
        >>> m = quantize_linear_int8(torch.nn.Sequential(torch.nn.Linear(4, 2)).eval())
        >>> type(m[0]).__name__
        'Linear'
    """
    with warnings.catch_warnings():
        # torch.ao eager quantisation is deprecated in favour of torchao, which is not a dependency;
        # it still works on torch 2.15 and is the measured fast path here.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*", category=UserWarning)
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
