"""Rectifiers (ReLU, PReLU, leaky ReLU): builders by name, live slopes, and the no-decay rule.

PReLU (paper §2.1, eq. 1): f(y_i) = max(0, y_i) + a_i·min(0, y_i), a_i learned, initialized at
0.25, one a_i per channel (channel-wise) or one per layer (channel-shared). ReLU is a = 0 and
leaky ReLU a small fixed a. The variance factor of a rectifier with slope a on a zero-symmetric
input is E[f(y)²]/E[y²] = ½(1+a²) (paper eq. 7 with PReLU, §2.2).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .names import did_you_mean
from .theory import unit_second_moment

RECTIFIER_TYPES: tuple[type[nn.Module], ...] = (nn.ReLU, nn.LeakyReLU, nn.PReLU)
PRELU_INIT = 0.25


def _relu(channels: int, argument: str | None) -> nn.Module:
    return nn.ReLU(inplace=True)


def _prelu(channels: int, argument: str | None) -> nn.Module:
    return nn.PReLU(num_parameters=channels, init=float(argument) if argument else PRELU_INIT)


def _prelu_shared(channels: int, argument: str | None) -> nn.Module:
    return nn.PReLU(num_parameters=1, init=float(argument) if argument else PRELU_INIT)


def _leaky(channels: int, argument: str | None) -> nn.Module:
    if argument is None:
        raise ValueError("leaky needs its slope, e.g. 'leaky:0.01'")
    return nn.LeakyReLU(negative_slope=float(argument), inplace=True)


ACTIVATIONS: dict[str, tuple[Callable[[int, str | None], nn.Module], str]] = {
    "relu": (_relu, "ReLU, a = 0 (in place)"),
    "prelu": (_prelu, "PReLU, one learned slope per channel, init 0.25 ('prelu:0.1' sets the init)"),
    "prelu-shared": (_prelu_shared, "PReLU, one learned slope per layer, init 0.25"),
    "leaky:A": (_leaky, "leaky ReLU with fixed slope A, e.g. leaky:0.01 (in place)"),
}


def activation_names() -> list[str]:
    """Return the registered activation names (``leaky:A`` takes its slope after the colon)."""
    return list(ACTIVATIONS)


def parse_activation(spec: str) -> tuple[str, str | None]:
    """Return (registry name, argument) for an activation spec such as ``leaky:0.01``.

    Raises ``ValueError`` naming the valid choices (and the closest one) for an unknown name or a
    malformed argument.
    """
    spec = spec.strip()
    base, _, argument = spec.partition(":")
    key = "leaky:A" if base == "leaky" else base
    if key not in ACTIVATIONS:
        hint = did_you_mean(base, [name.split(":")[0] for name in ACTIVATIONS])
        raise ValueError(f"unknown activation {spec!r}; valid: {', '.join(ACTIVATIONS)}{hint}")
    if argument:
        try:
            float(argument)
        except ValueError:
            raise ValueError(f"activation {spec!r}: {argument!r} is not a number") from None
    elif key == "leaky:A":
        raise ValueError("leaky needs its slope, e.g. 'leaky:0.01'")
    return key, argument or None


def make_activation(spec: str, channels: int) -> nn.Module:
    """Return a fresh rectifier module for ``spec`` acting on ``channels`` channels."""
    key, argument = parse_activation(spec)
    return ACTIVATIONS[key][0](channels, argument)


def is_rectifier(module: nn.Module) -> bool:
    """True for the rectifiers whose variance factor is ½(1+a²): ReLU, LeakyReLU, PReLU."""
    return isinstance(module, RECTIFIER_TYPES)


def slope_tensor(module: nn.Module) -> torch.Tensor:
    """Return the rectifier's negative slope(s) as a detached tensor, read live.

    ReLU → 0, LeakyReLU → its ``negative_slope``, PReLU → its learned weight (one value per
    channel, or one for a channel-shared PReLU).
    """
    if isinstance(module, nn.PReLU):
        return module.weight.detach()
    if isinstance(module, nn.LeakyReLU):
        return torch.tensor([module.negative_slope])
    if isinstance(module, nn.ReLU):
        return torch.zeros(1)
    raise TypeError(f"{type(module).__name__} is not a rectifier (ReLU, LeakyReLU, PReLU)")


def variance_factor(module: nn.Module) -> torch.Tensor:
    """Return mean over channels of ½(1+a_c²), the rectifier's second-moment factor (paper §2.2).

    For a channel-wise PReLU this is the exact factor on a zero-symmetric input whose channels
    carry equal second moments. The result stays on the slope's device (no host sync).
    """
    slope = slope_tensor(module).float()
    return (0.5 * (1.0 + slope.square())).mean()


SMOOTH_TYPES: tuple[type[nn.Module], ...] = (nn.GELU, nn.SiLU, nn.Tanh, nn.ELU, nn.SELU, nn.CELU, nn.Mish, nn.Softplus,
                                             nn.Hardswish, nn.Sigmoid, nn.Hardtanh, nn.ReLU6)
_SMOOTH_NAMES = ("gelu", "silu", "swish", "mish", "tanh", "elu", "quickgelu")  # Hugging Face's activation modules
_FACTORS: dict[tuple, float] = {}  # per activation type and settings


def activation_factor(module: nn.Module) -> float | None:
    """Return c = E[f(y)²]/E[y²] at y ~ N(0, 1) of a smooth, parameter-free activation module (GELU
    0.425, SiLU 0.356, tanh 0.394, and Hugging Face's ``GELUActivation``, ``NewGELUActivation``,
    ...), by Gauss–Hermite quadrature on the module itself; None for anything else. The
    generalized He condition is c·n·Var[w] = 1 (for a rectifier c = ½(1+a²), eq. 7)."""
    name = type(module).__name__.lower()  # the type first: the probe asks this of every module its tensor enters
    if not (isinstance(module, SMOOTH_TYPES) or ("activation" in name and any(n in name for n in _SMOOTH_NAMES))):
        return None
    if is_rectifier(module) or list(module.parameters(recurse=False)) or list(module.children()):
        return None
    key = (type(module), repr(module))
    if key not in _FACTORS:
        _FACTORS[key] = unit_second_moment(module.forward)
    return _FACTORS[key]


def no_decay_param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Return optimizer parameter groups: weight decay on weight matrices/kernels only.

    The paper updates PReLU slopes a_i with momentum but never decays them (§2.1): decay would
    pull a_i towards 0, i.e. towards ReLU. Biases and other 1-d parameters are not decayed
    either; every parameter with two or more dimensions (Conv/Linear weights) gets
    ``weight_decay``.
    """
    slope_ids = {id(m.weight) for m in model.modules() if isinstance(m, nn.PReLU)}
    decayed = [p for p in model.parameters() if p.dim() >= 2 and id(p) not in slope_ids]
    decayed_ids = {id(p) for p in decayed}
    others = [p for p in model.parameters() if id(p) not in decayed_ids]
    groups = [{"params": decayed, "weight_decay": weight_decay}]
    if others:
        groups.append({"params": others, "weight_decay": 0.0})
    return groups
