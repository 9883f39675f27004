"""Rectifiers: builders, live slopes, the ½(1+a²) factor, and no weight decay on PReLU slopes."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import initlab
from initlab import activations


def test_builders_follow_the_paper():
    prelu = activations.make_activation("prelu", 24)
    assert isinstance(prelu, nn.PReLU) and prelu.weight.shape == (24,)
    assert torch.all(prelu.weight == 0.25)
    shared = activations.make_activation("prelu-shared", 24)
    assert shared.weight.shape == (1,) and shared.weight.item() == 0.25
    leaky = activations.make_activation("leaky:0.01", 8)
    assert isinstance(leaky, nn.LeakyReLU) and leaky.negative_slope == 0.01
    assert isinstance(activations.make_activation("relu", 8), nn.ReLU)


def test_variance_factor_of_channelwise_prelu_matches_monte_carlo():
    torch.manual_seed(0)
    prelu = nn.PReLU(16)
    with torch.no_grad():
        prelu.weight.copy_(torch.linspace(-0.5, 1.5, 16))
    y = torch.randn(20_000, 16, 8, 8)
    with torch.no_grad():
        measured = (prelu(y).square().mean() / y.square().mean()).item()
    assert measured == pytest.approx(activations.variance_factor(prelu).item(), rel=0.01)
    assert activations.variance_factor(nn.LeakyReLU(0.5)).item() == pytest.approx(0.625)
    assert activations.variance_factor(nn.ReLU()).item() == pytest.approx(0.5)


def test_no_weight_decay_on_prelu_slopes_in_an_sgd_step():
    torch.manual_seed(1)
    net = initlab.mlp(depth=3, width=8, act="prelu")
    optimizer = torch.optim.SGD(activations.no_decay_param_groups(net, weight_decay=0.1), lr=1.0, momentum=0.9)
    slopes = [m.weight.detach().clone() for m in net.modules() if isinstance(m, nn.PReLU)]
    weight = net[1].weight.detach().clone()
    for parameter in net.parameters():
        parameter.grad = torch.zeros_like(parameter)
    optimizer.step()
    assert all(torch.equal(m.weight, s) for m, s in zip([m for m in net.modules() if isinstance(m, nn.PReLU)], slopes))
    torch.testing.assert_close(net[1].weight.detach(), weight * 0.9)  # decay 0.1 · lr 1 on weights only
    groups = activations.no_decay_param_groups(net, 0.1)
    assert [g["weight_decay"] for g in groups] == [0.1, 0.0]
    slope_ids = {id(m.weight) for m in net.modules() if isinstance(m, nn.PReLU)}
    assert slope_ids <= {id(p) for p in groups[1]["params"]}  # two PReLUs × 8 channels, never decayed
    assert all(p.dim() >= 2 for p in groups[0]["params"])


@pytest.mark.parametrize("spec,message", [("relo", "did you mean 'relu'"), ("leaky", "needs its slope"),
                                          ("leaky:x", "not a number"), ("tanh", "valid: relu")])
def test_bad_activation_specs_raise_a_clear_error(spec, message):
    with pytest.raises(ValueError, match=message):
        activations.parse_activation(spec)


def test_prelu_forward_is_the_papers_formula():
    prelu = nn.PReLU(1, init=0.3)
    y = torch.linspace(-2, 2, 11)
    expected = torch.clamp(y, min=0) + 0.3 * torch.clamp(y, max=0)
    torch.testing.assert_close(prelu(y), expected)
    torch.testing.assert_close(F.leaky_relu(y, 0.3), expected)


def test_smooth_activation_factors_equal_monte_carlo():
    from torch import nn as tnn

    from initlab.activations import activation_factor
    z = torch.randn(2_000_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for module in (tnn.GELU(), tnn.GELU(approximate="tanh"), tnn.SiLU(), tnn.Tanh(), tnn.ELU()):
        values = module(z).square()
        standard_error = (values.std() / len(z) ** 0.5).item()
        assert abs(activation_factor(module) - values.mean().item()) < 4 * standard_error, module
    assert activation_factor(tnn.ReLU()) is None and activation_factor(tnn.Linear(2, 2)) is None
