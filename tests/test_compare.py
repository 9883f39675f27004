"""The tidy frames: one row per seed × layer, predictions by the paper's chain from the measured input."""

import numpy as np
import pytest
import torch

import initlab
from initlab import theory
from initlab.compare import GEOMETRIC_COLUMNS, slope_from_factor


def test_the_frame_has_a_row_per_seed_and_layer_and_the_chain_predicts_from_the_measured_input():
    x = torch.randn(32, 64, generator=torch.Generator().manual_seed(0))
    result = initlab.probe(lambda: initlab.mlp(depth=5, width=64, input_shape=(64,)), x, init="kaiming", seeds=[0, 1])
    frame = result.to_frame()
    assert len(frame) == 2 * 5 and list(frame.groupby("seed").size()) == [5, 5]
    first = frame[frame["seed"] == 0].reset_index(drop=True)
    assert list(first["link_in"]) == ["input"] + ["rectifier"] * 4
    # eq. 7 on the raw input: E[y_1²] = n·Var[w]·E[x²] = 2·E[x²] under Kaiming; then ½·n·(2/n) = 1 per layer (eq. 9)
    expected = 2.0 * float(x.square().mean())
    np.testing.assert_allclose(first["var_y_pred"], expected, rtol=1e-6)
    np.testing.assert_allclose(first["forward_factor"][1:], 1.0, rtol=1e-12)
    assert set(GEOMETRIC_COLUMNS) <= set(frame.columns)


def test_the_slope_of_a_factor_inverts_the_rectifier_factor():
    for slope in (0.0, 0.1, 0.25, 1.0):
        assert slope_from_factor(theory.rectifier_factor(slope)) == pytest.approx(slope, abs=1e-12)
    assert slope_from_factor(None) is None and slope_from_factor(0.3) == 0.0  # below ½: no rectifier gives it


def test_chi1_per_layer_is_the_growth_of_a_jacobian_vector_product_through_it():
    # tanh, 1024 wide, σ_w² = 2.5, σ_b² = 0.05 (chaotic): each layer's χ₁ column against the growth
    # of a random perturbation through it, measured by torch.func.jvp on the plain layers; the
    # perturbation's own spread over 1024 units and 16 examples allows 6 %.
    import math
    from torch import nn
    torch.manual_seed(0)
    width, depth = 1024, 6
    layers = []
    for _ in range(depth):
        layer = nn.Linear(width, width)
        nn.init.normal_(layer.weight, std=math.sqrt(2.5 / width))
        nn.init.normal_(layer.bias, std=math.sqrt(0.05))
        layers.append(layer)
    model = nn.Sequential(*[m for layer in layers for m in (layer, nn.Tanh())][:-1])
    inputs = torch.randn(16, width, generator=torch.Generator().manual_seed(1))
    chi1 = initlab.probe(model, inputs).to_frame()["chi1"].to_numpy()
    hidden = layers[0](inputs)
    generator = torch.Generator().manual_seed(2)
    for index, layer in enumerate(layers[1:], start=1):
        tangent = torch.randn(hidden.shape, generator=generator)
        following, pushed = torch.func.jvp(lambda h: layer(torch.tanh(h)), (hidden,), (tangent,))
        growth = float(pushed.square().sum() / tangent.square().sum())
        assert chi1[index] == pytest.approx(growth, rel=0.06)
        hidden = following.detach()
    assert initlab.probe(model, inputs).gains()["chi1_geometric_mean"] == pytest.approx(
        float(np.exp(np.log(chi1[1:]).mean())))
