"""Traced init: He's condition c·n·Var[w] = 1 for the activation the trace found next to each layer."""

import pytest
import torch
from torch import nn

import initlab
from initlab.theory import unit_second_moment
from initlab.traced_init import PER_MODULE_SCHEMES, init_from_trace, redraw


def _gelu_mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(256, 512), nn.GELU(), nn.Linear(512, 512), nn.GELU(), nn.Linear(512, 10))


def test_a_layer_fed_by_gelu_is_drawn_at_one_over_c_n():
    model = init_from_trace(_gelu_mlp(), "kaiming", torch.randn(16, 256), seed=0)
    c = unit_second_moment(torch.nn.functional.gelu)  # E[GELU(z)²], z ~ N(0, 1): 0.425
    assert c == pytest.approx(0.4252, abs=1e-4)
    for layer, fan_in in ((model[2], 512), (model[4], 512)):
        # sampled Var over 512·512 (or 10·512) weights: within 4 standard errors √(2/N) of 1/(c·n)
        measured = float(layer.weight.detach().double().square().mean()) * c * fan_in
        assert measured == pytest.approx(1.0, abs=4 * (2 / layer.weight.numel()) ** 0.5)
    assert float(model[0].weight.detach().double().square().mean()) * 256 == pytest.approx(1.0, abs=0.02)  # c = 1 on the input
    assert all(float(layer.bias.detach().abs().max()) == 0 for layer in (model[0], model[2], model[4]))


def test_redraw_traces_unless_the_scheme_is_drawn_per_module():
    assert PER_MODULE_SCHEMES == ("torch-default", "orthogonal")
    x = torch.randn(8, 256)
    traced, direct = redraw(_gelu_mlp(), "kaiming", x), initlab.apply_init(_gelu_mlp(), "kaiming", seed=0,
                                                                          example_input=x)
    assert all(torch.equal(a, b) for a, b in zip(traced.state_dict().values(), direct.state_dict().values()))
    orthogonal = redraw(_gelu_mlp(), "orthogonal", x)
    weight = orthogonal[2].weight.detach().double()
    gram = weight @ weight.T
    torch.testing.assert_close(gram, gram[0, 0] * torch.eye(512, dtype=torch.float64), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="drawn per module"):
        init_from_trace(_gelu_mlp(), "orthogonal", x)
