"""Which device a probe runs on: resolved from ``auto``/``cpu``/``cuda``, or the model's own."""

from __future__ import annotations

import torch

from ..models import model_device
from .errors import ProbeError

__all__ = ["model_device", "resolve_device"]


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
        raise ProbeError(f"device {spec!r} was asked for but no CUDA GPU is available (use 'auto' or 'cpu')")
    return device
