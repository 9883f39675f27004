"""Fans and geometry of the covered layers, against torch.nn.init's own fan computation."""

import pytest
import torch
from torch import nn

from initlab.layers import fans, geometry, is_covered


@pytest.mark.parametrize("layer", [nn.Linear(7, 5), nn.Conv1d(4, 6, 3), nn.Conv2d(3, 8, (3, 5)), nn.Conv3d(2, 4, 3),
                                   nn.Conv2d(8, 16, 3, groups=1)])
def test_fans_equal_torch_for_ungrouped_layers(layer):
    assert fans(layer) == nn.init._calculate_fan_in_and_fan_out(layer.weight)


def test_grouped_fan_out_divides_by_groups_where_torch_does_not():
    conv = nn.Conv2d(16, 32, 3, groups=4)
    torch_fan_in, torch_fan_out = nn.init._calculate_fan_in_and_fan_out(conv.weight)
    assert fans(conv) == (torch_fan_in, torch_fan_out // 4) == (36, 72)  # n = k²·c/g, n̂ = k²·d/g
    depthwise = nn.Conv2d(8, 8, 3, groups=8)
    assert fans(depthwise) == (9, 9)


def test_geometry_of_a_strided_padded_conv_call_and_of_a_linear():
    conv = nn.Conv2d(3, 8, 3, stride=2, padding=1, dilation=1)
    x = torch.zeros(2, 3, 9, 9)
    shape = geometry(conv, tuple(x.shape), tuple(conv(x).shape))
    assert (shape.kind, shape.in_spatial, shape.out_spatial, shape.stride, shape.padding) == \
        ("conv", (9, 9), (5, 5), (2, 2), (1, 1))
    assert (shape.fan_in, shape.fan_out, shape.receptive) == (27, 72, 9)
    same = nn.Conv1d(2, 2, 5, padding="same")
    assert geometry(same, (1, 2, 10), (1, 2, 10)).padding == (2,)  # "same" resolved to the explicit padding
    linear = geometry(nn.Linear(6, 4), (2, 6), (2, 4))
    assert (linear.kind, linear.fan_in, linear.fan_out, linear.in_spatial) == ("linear", 6, 4, ())


def test_only_conv_and_linear_layers_are_covered_and_others_are_refused():
    assert is_covered(nn.Linear(2, 2)) and is_covered(nn.Conv3d(1, 1, 1))
    assert not is_covered(nn.ReLU()) and not is_covered(nn.BatchNorm2d(3)) and not is_covered(nn.ConvTranspose2d(1, 1, 2))
    with pytest.raises(TypeError, match="got ReLU"):
        fans(nn.ReLU())
    with pytest.raises(TypeError, match="got BatchNorm2d"):
        geometry(nn.BatchNorm2d(3), (1, 3, 4, 4), (1, 3, 4, 4))
