"""Which device a probe runs on: resolved from ``auto``/``cpu``/``cuda``, or the model's own."""

from __future__ import annotations

import torch
from torch import nn

from .errors import ProbeError


def resolve_device(spec: str | torch.device | None) -> torch.device | None:
    """Return the torch device for ``auto``/``cpu``/``cuda[:N]``; ``auto`` prefers CUDA."""
    if spec is None or isinstance(spec, torch.device):
        return spec
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise ProbeError(f"unknown device {spec!r}; valid: auto, cpu, cuda, cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ProbeError("--device cuda was asked for but no CUDA GPU is available (use --device auto or cpu)")
    return device


def model_device(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")
