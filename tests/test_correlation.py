"""The correlation maps of signal propagation against Monte Carlo and against finite nets."""

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from initlab import correlation

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from phase_diagram import measured_growth  # noqa: E402


def _bivariate(c, samples, seed):
    rng = np.random.default_rng(seed)
    z1, z2 = rng.standard_normal((2, samples))
    return z1, c * z1 + math.sqrt(1 - c * c) * z2


def _leaky(z, slope):
    return np.where(z > 0, z, slope * z)


@pytest.mark.parametrize("slope", [0.0, 0.25, 0.5])
@pytest.mark.parametrize("c", [-0.6, 0.0, 0.4, 0.9])
def test_rectifier_correlation_map_is_the_monte_carlo_correlation(slope, c):
    # 10^6 pairs: the estimate of E[f(u₁)f(u₂)]/E[f²] has a standard error below 3e-3
    u1, u2 = _bivariate(c, 1_000_000, seed=21)
    measured = np.mean(_leaky(u1, slope) * _leaky(u2, slope)) / np.mean(_leaky(u1, slope) ** 2)
    assert correlation.rectifier_correlation_map(c, slope) == pytest.approx(measured, abs=0.01)


def test_rectifier_correlation_map_end_points_and_slope():
    for slope in (0.0, 0.1, 0.25, 0.5, 0.9):
        assert correlation.rectifier_correlation_map(1.0, slope) == pytest.approx(1.0, abs=1e-12)
        assert correlation.rectifier_correlation_map(0.0, slope) == pytest.approx(
            (1 - slope) ** 2 / (math.pi * (1 + slope ** 2)), abs=1e-12)
        assert correlation.rectifier_correlation_slope(1.0, slope) == pytest.approx(1.0, abs=1e-12)  # critical
        for c in (-0.5, 0.2, 0.7):  # the slope is the map's derivative
            step = 1e-6
            numeric = (correlation.rectifier_correlation_map(c + step, slope)
                       - correlation.rectifier_correlation_map(c - step, slope)) / (2 * step)
            assert correlation.rectifier_correlation_slope(c, slope) == pytest.approx(numeric, abs=1e-6)
    c = np.linspace(-1, 1, 11)
    np.testing.assert_allclose(correlation.rectifier_correlation_map(c, 1.0), c, atol=1e-12)  # linear: unchanged
    relu = correlation.rectifier_correlation_map(c)
    np.testing.assert_allclose(relu, c / 2 + (np.sqrt(1 - c * c) + c * np.arcsin(c)) / math.pi, atol=1e-12)
    assert np.all(relu >= c - 1e-12)  # a rectifier only makes examples more alike


def test_the_quadrature_maps_agree_with_the_closed_form_for_relu_and_with_monte_carlo_for_tanh():
    relu = lambda h: np.maximum(h, 0.0)
    for c in (-0.5, 0.0, 0.5, 0.9):
        # He's σ_w² = 2 keeps q; the kink limits 80-node Gauss–Hermite to a few 1e-3 (3.3e-3 at c = 0)
        assert correlation.correlation_map(relu, 2.0, 0.0, 1.3, c) == pytest.approx(
            correlation.rectifier_correlation_map(c), abs=5e-3)
    assert correlation.length_map(relu, 2.0, 0.0, 1.3) == pytest.approx(1.3, rel=1e-3)
    weight_variance, bias_variance, q, c = 1.5, 0.1, 0.8, 0.3
    u1, u2 = _bivariate(c, 1_000_000, seed=22)
    u1, u2 = math.sqrt(q) * u1, math.sqrt(q) * u2
    cross = weight_variance * np.mean(np.tanh(u1) * np.tanh(u2)) + bias_variance
    length = weight_variance * np.mean(np.tanh(u1) ** 2) + bias_variance
    assert correlation.length_map(np.tanh, weight_variance, bias_variance, q) == pytest.approx(length, rel=3e-3)
    assert correlation.correlation_map(np.tanh, weight_variance, bias_variance, q, c) == pytest.approx(
        cross / length, abs=3e-3)
    measured_chi1 = weight_variance * np.mean(correlation.tanh_derivative(u1) ** 2)
    assert correlation.chi1(correlation.tanh_derivative, weight_variance, q) == pytest.approx(measured_chi1, rel=3e-3)


def test_correlation_through_depth_is_what_a_wide_he_relu_net_does():
    # Two inputs of correlation 0.2 through 6 He-initialized ReLU layers of width 2048, 12 seeds.
    # The cosine of their pre-activations after a layer fluctuates by about 0.025 at this width, so
    # each step is checked against F of the cosine measured before it (residuals averaged over 60
    # steps: standard error ≈ 0.003), and the seed-mean trajectory against the iterated map.
    width, depth, c0, seeds = 2048, 6, 0.2, 12
    generator = torch.Generator().manual_seed(23)
    base = torch.randn(2, width, generator=generator, dtype=torch.float64)
    x = torch.stack([base[0], c0 * base[0] + math.sqrt(1 - c0 ** 2) * base[1]])
    measured = []
    for _ in range(seeds):
        h, cosines = x, []
        for index in range(depth):
            w = torch.randn(width, width, generator=generator, dtype=torch.float64) * math.sqrt(2.0 / width)
            h = (torch.relu(h) if index else h) @ w.T
            cosines.append(float(torch.nn.functional.cosine_similarity(h[0], h[1], dim=0)))
        measured.append(cosines)
    measured = np.array(measured)
    residuals = measured[:, 1:] - correlation.rectifier_correlation_map(measured[:, :-1])
    assert abs(residuals.mean()) < 0.01 and residuals.std() < 0.05
    trajectory = np.concatenate([[c0], correlation.correlation_through_depth(c0, depth - 1)])
    np.testing.assert_allclose(measured.mean(axis=0), trajectory, atol=0.03)
    predicted = correlation.correlation_through_depth(c0, 30)
    assert np.all(np.diff(predicted) > 0) and 0.9 < predicted[-1] < 1  # towards 1, slowly (χ₁ = 1)


@pytest.mark.parametrize("bias_variance", [0.05, 0.3])
def test_the_order_to_chaos_boundary_is_where_a_wide_tanh_net_neither_grows_nor_shrinks_a_perturbation(bias_variance):
    # On the χ₁ = 1 line a small perturbation of the input keeps its size through depth (the mean
    # squared singular value of each layer's Jacobian is χ₁); 30% above the line it grows, 30% below it
    # shrinks. Measured with a Jacobian-vector product through a 1024-wide tanh net at its q*.
    critical = correlation.critical_weight_variance(np.tanh, correlation.tanh_derivative, bias_variance)
    assert correlation.chi1(correlation.tanh_derivative, critical,
                            correlation.fixed_point_length(np.tanh, critical, bias_variance)) == pytest.approx(1, abs=1e-8)
    growth = {}
    for factor in (0.7, 1.0, 1.3):
        weight_variance = factor * critical
        q = correlation.fixed_point_length(np.tanh, weight_variance, bias_variance)
        # plain PyTorch: torch.func.jvp through a random 1024-wide, 16-layer tanh net at q* (the
        # phase diagram's own measurement)
        growth[factor] = measured_growth(weight_variance, bias_variance, width=1024, depth=16, seed=24)
        assert growth[factor] == pytest.approx(correlation.chi1(correlation.tanh_derivative, weight_variance, q),
                                               rel=0.06)
    assert growth[0.7] < 0.9 and growth[1.0] == pytest.approx(1.0, abs=0.04) and growth[1.3] > growth[1.0]


def test_gram_statistics_are_the_mean_pairwise_cosine_and_the_participation_ratio():
    rng = np.random.default_rng(25)
    y = rng.standard_normal((6, 50))
    gram = y @ y.T
    cosine, rank = correlation.gram_statistics(gram)
    unit = y / np.linalg.norm(y, axis=1, keepdims=True)
    pairs = [unit[b] @ unit[c] for b in range(6) for c in range(6) if b != c]
    eigenvalues = np.linalg.eigvalsh(gram)
    assert cosine == pytest.approx(np.mean(pairs), abs=1e-12)
    assert rank == pytest.approx(eigenvalues.sum() ** 2 / (eigenvalues ** 2).sum(), rel=1e-12)
    assert correlation.gram_statistics(np.ones((4, 4)))[1] == pytest.approx(1.0)  # all parallel: rank 1
    assert correlation.gram_statistics(np.eye(4))[1] == pytest.approx(4.0)


def test_rectifier_gram_map_is_the_expected_gram_of_a_random_layer_with_bias():
    # 5 fixed inputs through a random layer of 20,000 Gaussian units (the previous layer), a leaky
    # rectifier, and a random layer of 4,000 units with n·E[w²] = 1.6 and E[b²] = 0.3: its
    # per-element Gram matrix against the map of the previous Gram (sampling error ≈ 2 %).
    rng = np.random.default_rng(26)
    inputs = rng.standard_normal((5, 40)) + 0.7 * rng.standard_normal(40)  # correlated examples
    previous = inputs @ rng.standard_normal((40, 20_000)) / math.sqrt(40)
    slope, gain, bias = 0.2, 1.6, 0.3
    activated = np.where(previous > 0, previous, slope * previous)
    weights = rng.standard_normal((20_000, 4000)) * math.sqrt(gain / 20_000)
    outputs = activated @ weights + rng.standard_normal(4000) * math.sqrt(bias)
    measured = outputs @ outputs.T / 4000
    expected = correlation.rectifier_gram_map(previous @ previous.T, 20_000, slope, gain, bias)
    np.testing.assert_allclose(measured, expected, rtol=0.06, atol=0.02)
    assert correlation.gram_statistics(measured)[0] == pytest.approx(correlation.gram_statistics(expected)[0], abs=0.02)
