"""Device names accepted in config and on the API, resolved against what torch can see."""

from __future__ import annotations

import re

from .errors import ConfigError, ModelLoadError

DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda|cuda:\d+)$")


def validate_device(device: str) -> str:
    """Check the spelling only (config validation must not need a GPU)."""
    if not isinstance(device, str) or not DEVICE_PATTERN.match(device):
        raise ConfigError(f"device must be one of auto, cpu, mps, cuda, cuda:N; got {device!r}")
    return device


def resolve_device(device: str) -> str:
    """Map ``auto`` to the best available device and refuse devices this machine lacks."""
    import torch

    validate_device(device)
    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ModelLoadError(f"device {device!r} requested but CUDA is not available here")
        index = int(device.split(":")[1]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise ModelLoadError(
                f"device {device!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist"
            )
    if device == "mps" and not torch.backends.mps.is_available():
        raise ModelLoadError("device 'mps' requested but MPS is not available here")
    return device
