"""Seeds side by side: a stacked net computes each seed's own net, exactly (up to float rounding)."""

import pytest
import torch
from torch import nn

from initlab.probe.stacking import StackingError, one_seed_shape, repeat_input, stack_models


def _net(seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.PReLU(4), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(4 * 4 * 4, 5), nn.PReLU(), nn.Linear(5, 3))


def test_a_stacked_net_computes_every_seeds_own_net():
    nets = [_net(seed) for seed in (0, 1, 2)]
    stacked, references = stack_models(nets)
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    out = stacked(repeat_input(x, 3))
    assert out.shape == (2, 9)
    for position, net in enumerate(nets):
        torch.testing.assert_close(out[:, 3 * position:3 * position + 3], net(x), rtol=1e-5, atol=1e-6)
    first_conv = next(m for m in stacked.modules() if isinstance(m, nn.Conv2d))
    assert first_conv.groups == 3 and references[first_conv] is nets[0][0]  # one seed's layer for geometry


def test_the_shape_one_seed_sees_and_the_repeated_input():
    assert one_seed_shape(torch.Size([2, 12, 5, 5]), 3) == (2, 4, 5, 5)
    x = torch.arange(6.0).reshape(1, 2, 3)
    assert torch.equal(repeat_input(x, 2), torch.cat([x, x], dim=1))


def test_a_net_that_does_not_stack_names_its_layer():
    class NotSequential(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 2)

        def forward(self, x):
            return self.fc(x)

    with pytest.raises(StackingError):
        stack_models([NotSequential(), NotSequential()])
    with pytest.raises(StackingError, match=r"layer .1. \(LSTM\) cannot be stacked"):
        stack_models([nn.Sequential(nn.Linear(2, 2), nn.LSTM(2, 2)) for _ in range(2)])
