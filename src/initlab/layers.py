"""The weight layers the paper's chain covers, and their geometry.

A "covered" layer is a Conv1d/2d/3d or Linear: the layers whose output variance the paper's
eq. (7) predicts.  Everything else (pooling, normalization, residual sums) is a link between
covered layers that the theory either handles in closed form or re-anchors on a measurement.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import nn

COVERED_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def is_covered(module: nn.Module) -> bool:
    """True for the weight layers the chain covers (Conv1d/2d/3d, Linear)."""
    return isinstance(module, COVERED_TYPES)


@dataclass(frozen=True)
class LayerGeometry:
    """Shape facts of one covered layer call, enough to run the chain through it.

    ``fan_in`` is the paper's n_l = k^d·c/groups, ``fan_out`` its n̂_l = k^d·d/groups (torch's
    own fan_out ignores groups; for groups = 1 the two agree). Spatial fields are empty tuples
    for a Linear layer.
    """

    kind: str  # "linear" or "conv"
    in_channels: int
    out_channels: int
    groups: int
    kernel_size: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    in_spatial: tuple[int, ...]
    out_spatial: tuple[int, ...]
    padding_mode: str = "zeros"

    @property
    def receptive(self) -> int:
        return math.prod(self.kernel_size) if self.kernel_size else 1

    @property
    def fan_in(self) -> int:
        return self.receptive * self.in_channels // self.groups

    @property
    def fan_out(self) -> int:
        return self.receptive * self.out_channels // self.groups


def fans(module: nn.Module) -> tuple[int, int]:
    """Return (fan_in, fan_out) = (k^d·c/groups, k^d·d/groups) of a Conv or Linear layer.

    This is the n_l and n̂_l of the paper's eqs. (7) and (13). Raises ``TypeError`` for any
    other module.
    """
    if isinstance(module, nn.Linear):
        return module.in_features, module.out_features
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        receptive = math.prod(module.kernel_size)
        return (
            receptive * module.in_channels // module.groups,
            receptive * module.out_channels // module.groups,
        )
    raise TypeError(f"fans() takes a Conv1d/2d/3d or Linear layer, got {type(module).__name__}")


def geometry(module: nn.Module, input_shape: tuple[int, ...], output_shape: tuple[int, ...]) -> LayerGeometry:
    """Return the ``LayerGeometry`` of one call of ``module`` on an input of ``input_shape``."""
    if isinstance(module, nn.Linear):
        return LayerGeometry("linear", module.in_features, module.out_features, 1, (), (), (), (), (), ())
    if not isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        raise TypeError(f"geometry() takes a Conv or Linear layer, got {type(module).__name__}")
    spatial_dims = len(module.kernel_size)
    if isinstance(module.padding, str):  # "same" / "valid": torch has resolved it into _reversed_padding_repeated_twice
        padding = tuple(module._reversed_padding_repeated_twice[::-2][:spatial_dims])
    else:
        padding = tuple(module.padding)
    return LayerGeometry(
        kind="conv",
        in_channels=module.in_channels,
        out_channels=module.out_channels,
        groups=module.groups,
        kernel_size=tuple(module.kernel_size),
        stride=tuple(module.stride),
        padding=padding,
        dilation=tuple(module.dilation),
        in_spatial=tuple(input_shape[-spatial_dims:]),
        out_spatial=tuple(output_shape[-spatial_dims:]),
        padding_mode=module.padding_mode,
    )
