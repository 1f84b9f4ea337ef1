"""Casting a torch model to fp16/bf16, or quantizing its linear layers to int8 (CPU)."""

from __future__ import annotations

import warnings
from typing import Any

DTYPES = {"fp16": "float16", "bf16": "bfloat16"}


def cast(model: Any, precision: str) -> Any:
    """Return the model in ``precision``; fp16/bf16 in place, int8 as a quantized copy."""
    import torch

    if precision in DTYPES:
        return model.to(getattr(torch, DTYPES[precision]))
    if precision == "int8":
        with warnings.catch_warnings():
            # torch.ao's eager dynamic quantization announces its move to torchao; it is still
            # the quantizer shipped with the pinned torch, and the one measured (bench/precision.py)
            warnings.filterwarnings("ignore", message=r"torch\.(ao\.quantization|quantize_per)")
            # one scale per output channel: on all-MiniLM-L6-v2 per-tensor scales left sentence
            # vectors at median cosine 0.94 to fp32's, per-channel 0.97
            qconfig = torch.ao.quantization.per_channel_dynamic_qconfig
            return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear: qconfig}, dtype=torch.qint8)
    raise ValueError(f"no torch conversion for precision {precision!r}")
