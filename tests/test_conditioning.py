"""The Jacobian's spread in closed form against exact Jacobians, and its random-projection estimate
against a plain-PyTorch computation (``torch.autograd.functional.jacobian``, double backward)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import initlab
from initlab import conditioning
from initlab.probe import ProbeError
from initlab.probe.projections import jacobian_projections
from initlab.schemes import DROPOUT_STREAM, PROJECTION_STREAM, stream_seed

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _exact_spread(model: nn.Module, inputs: torch.Tensor) -> tuple[float, float]:
    """(m₁, s²) of JJᵀ from the full Jacobian of the batch function, eigenvalues in float64."""
    outputs = model(inputs).numel()
    jacobian = torch.autograd.functional.jacobian(model, inputs).reshape(outputs, inputs.numel()).double()
    eigenvalues = torch.linalg.eigvalsh(jacobian @ jacobian.T)
    return float(eigenvalues.mean()), float((eigenvalues ** 2).mean() / eigenvalues.mean() ** 2 - 1)


def _chain(widths: list[int], slope: float, seed: int, orthogonal: bool = False, conv: bool = False) -> nn.Module:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for position, (width_in, width_out) in enumerate(zip(widths[:-1], widths[1:])):
        layer = (nn.Conv2d(width_in, width_out, 3, padding=1, padding_mode="circular", bias=False) if conv
                 else nn.Linear(width_in, width_out, bias=False))
        if orthogonal:
            nn.init.orthogonal_(layer.weight, gain=math.sqrt(2.0 / (1.0 + slope ** 2)))
        else:
            nn.init.kaiming_normal_(layer.weight, a=slope)
        layers.append(layer)
        if position < len(widths) - 2:
            layers.append(nn.LeakyReLU(slope))
    return nn.Sequential(*layers).double()


@pytest.mark.parametrize("widths, slope, orthogonal, conv", [
    ([256] * 3, 0.0, False, False),
    ([256] * 5, 0.0, False, False),
    ([256] * 9, 0.0, False, False),
    ([256] * 9, 0.25, False, False),
    ([64, 256, 256, 128, 10], 0.0, False, False),
    ([256] * 9, 0.0, True, False),
    ([64, 256, 256, 128, 10], 0.0, True, False),
    ([16] * 5, 0.0, False, True),
])
def test_jacobian_spread_matches_exact_jacobians(widths, slope, orthogonal, conv):
    # 8 seeds of one example each (4 for the 16-channel 8×8 circular conv, 1024 outputs): the seed
    # mean within 3 of its standard errors, plus 3 % for the rectifier step's 1/n corrections (12
    # seeds of 8 layers: 15.77 ± 0.34 at 256 units, 15.30 ± 0.27 at 512, 15.21 ± 0.19 at 1024,
    # against 15.25, 15.13, 15.06).
    seeds = 4 if conv else 8
    shape = (1, widths[0], 8, 8) if conv else (1, widths[0])
    measured = [_exact_spread(_chain(widths, slope, seed, orthogonal, conv),
                              torch.randn(shape, generator=torch.Generator().manual_seed(100 + seed)).double())[1]
                for seed in range(seeds)]
    slopes = [slope] * (len(widths) - 2) + [None]
    theory_widths = [w * 64 for w in widths] if conv else widths  # per position, c·P coordinates: n'/n = c'/c
    predicted = conditioning.jacobian_spread(theory_widths, slopes, orthogonal=orthogonal)
    error = np.std(measured, ddof=1) / math.sqrt(seeds)
    assert abs(np.mean(measured) - predicted) < 3 * error + 0.03 * predicted


def test_jacobian_spread_is_linear_in_depth_for_relu_and_zero_for_linear_orthogonal():
    # the recursion's fixed numbers: 2L − 1 for Gaussian ReLU (wide), L − 1 orthogonal, 0 linear orthogonal
    assert conditioning.jacobian_spread([10 ** 6] * 31, [0.0] * 29 + [None]) == pytest.approx(59.0, rel=1e-4)
    assert conditioning.jacobian_spread([64] * 31, [0.0] * 29 + [None], orthogonal=True) == 29.0
    assert conditioning.jacobian_spread([64] * 31, [1.0] * 29 + [None], orthogonal=True) == 0.0
    assert conditioning.rectifier_spectrum_spread(0.25) == pytest.approx(2 * (1 + 0.25 ** 4) / (1 + 0.25 ** 2) ** 2 - 1)
    assert conditioning.jacobian_spread([784, 256], [None], orthogonal=True) == 0.0  # rows orthonormal: WWᵀ ∝ I
    assert conditioning.jacobian_spread([64, 256], [None], orthogonal=True) == 3.0  # 64 ones and 192 zeros
    with pytest.raises(ValueError, match="one slope"):
        conditioning.jacobian_spread([64, 64, 64], [None])


def _dropout_mlp() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(nn.Linear(32, 96), nn.ReLU(), nn.Dropout(0.2), nn.Linear(96, 96), nn.Tanh(),
                         nn.Linear(96, 12)).double().train()


def test_projection_estimate_matches_the_exact_jacobian_with_the_same_dropout_masks():
    # Hutchinson: one projection's ‖Jᵀr‖² has relative sd √(2(1+s²)/N); 64 projections, 4 sd.
    model = _dropout_mlp()
    inputs = torch.randn(6, 32, generator=torch.Generator().manual_seed(0)).double()
    rows = jacobian_projections(model, inputs, 64, seed=5).numpy()
    estimate = conditioning.jacobian_spectrum(rows[:, 0], rows[:, 1], int(rows[0, 2]))
    torch.manual_seed(stream_seed(5, DROPOUT_STREAM))  # the masks every projection pass draws
    mean, spread = _exact_spread(model, inputs)
    outputs = 6 * 12
    assert estimate.outputs == outputs
    assert estimate.mean_squared_singular_value == pytest.approx(mean, rel=4 * math.sqrt(2 * (1 + spread) / outputs / 64))
    assert abs(estimate.spread - spread) < 4 * estimate.spread_standard_error
    assert estimate.spread_standard_error < 0.3 * spread


def test_projections_of_a_transformer_equal_a_double_backward_from_its_embeddings():
    # GPT-2 reads ids: the probe differentiates from the token embedding's output. The same r,
    # Jᵀr by a backward pass and J·Jᵀr by double backward (no forward mode), in plain PyTorch.
    corpus = pytest.importorskip("corpus")
    pytest.importorskip("transformers")
    model, example = corpus.build("gpt2")
    model.eval()
    rows = jacobian_projections(model, example, 2, seed=0).numpy()
    captured = []
    handle = model.transformer.wte.register_forward_hook(lambda m, a, out: captured.append(out))
    try:  # the math attention kernel: the fused one has no double backward
        with torch.nn.attention.sdpa_kernel([torch.nn.attention.SDPBackend.MATH]):
            logits = model(**example).logits
    finally:
        handle.remove()
    generator = torch.Generator().manual_seed(stream_seed(0, PROJECTION_STREAM))
    for row in rows:
        direction = torch.randn(logits.shape, generator=generator)
        pulled = _pulled(logits, captured[0], direction)  # Jᵀr
        # g(ρ) = Jᵀρ is linear in ρ, so the gradient of ⟨g(ρ), Jᵀr⟩ in ρ is J·Jᵀr
        dual = torch.zeros_like(logits, requires_grad=True)
        (transposed,) = torch.autograd.grad(logits, captured[0], dual, create_graph=True)
        (pushed,) = torch.autograd.grad(transposed, dual, pulled, retain_graph=True)
        assert row[0] == pytest.approx(float(pulled.square().sum()), rel=1e-4)
        assert row[1] == pytest.approx(float(pushed.square().sum()), rel=1e-3)
        assert row[2] == logits.numel()


def _pulled(output: torch.Tensor, start: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    (value,) = torch.autograd.grad(output, start, direction, retain_graph=True)
    return value


def test_probe_reports_the_jacobian_beside_the_closed_form_of_a_fully_connected_chain():
    inputs = torch.randn(8, 128, generator=torch.Generator().manual_seed(0))
    result = initlab.probe(lambda: initlab.mlp(depth=8, width=256, input_shape=(128,)), inputs, init="kaiming",
                           seeds=3, jacobian_projections=16)
    jacobian = result.jacobian
    assert list(jacobian["seed"]) == [0, 1, 2] and (jacobian["projections"] == 16).all()
    # 128 → 256 (×7) → 10 with ReLUs between: ((n'+1)/n)(1+s²), +1 per ReLU
    assert jacobian["spread_pred"].iloc[0] == pytest.approx(conditioning.jacobian_spread(
        [128] + [256] * 7 + [10], [0.0] * 7 + [None]))
    # seed mean within 3 standard errors of the mean (and the He m₁ = 2 of a last Linear layer)
    error = math.sqrt((jacobian["spread_standard_error"] ** 2).sum()) / 3
    assert abs(jacobian["spread"].mean() - jacobian["spread_pred"].mean()) < 3 * error + 0.05
    assert jacobian["mean_squared_singular_value"].mean() == pytest.approx(2.0, rel=0.15)
    assert result.to_dict()["jacobian"][0]["projections"] == 16
    # no closed form where the chain has a conv, a pool or a normalization; no projections by default
    plain = initlab.probe(lambda: initlab.plain_net(depth=6, width=4, input_shape=(3, 8, 8)),
                          torch.randn(2, 3, 8, 8), init="kaiming", jacobian_projections=2)
    assert np.isnan(plain.jacobian["spread_pred"].iloc[0]) and plain.jacobian["spread"].iloc[0] > 0
    assert initlab.probe(lambda: initlab.mlp(depth=2, width=8, input_shape=(4,)), torch.randn(2, 4)).jacobian.empty


def test_probe_records_why_a_model_cannot_be_projected():
    class OneHot(nn.Module):  # integer input and no nn.Embedding: nothing to differentiate from
        def __init__(self) -> None:
            super().__init__()
            self.layer = nn.Linear(5, 4)

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return self.layer(nn.functional.one_hot(ids, 5).float())

    ids = torch.randint(0, 5, (3,), generator=torch.Generator().manual_seed(0))
    result = initlab.probe(OneHot(), ids, jacobian_projections=2)
    assert "no floating-point input" in result.jacobian["reason"].iloc[0]
    assert np.isnan(result.jacobian["spread"].iloc[0])

    class Thresholded(nn.Module):  # the output is a step function of the input: J = 0
        def __init__(self) -> None:
            super().__init__()
            self.layer = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.layer((x > 0).float())

    result = initlab.probe(Thresholded(), torch.randn(3, 4), jacobian_projections=2)
    assert result.jacobian["mean_squared_singular_value"].iloc[0] == 0.0
    with pytest.raises(ProbeError, match="jacobian_projections"):
        initlab.probe(Thresholded(), torch.randn(3, 4), jacobian_projections=-1)
