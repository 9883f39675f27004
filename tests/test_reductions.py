"""The probe's statistics read as their formulas: each recipe against the plain torch expression,
on both sides of every seam (the CPU's dot products and sums, the GPU's Welford pass run here)."""

import numpy as np
import pytest
import torch

from initlab.probe import reductions
from initlab.probe.reductions import (_RawStore, _Scratch, _accumulates_examples, _channel_square_sums, _divided,
                                      _dead_fraction, _evaluate, _example_square_sums, _moments, _moments_with_units,
                                      _parameter_second_moments, _position_moments, _reads_channels_once,
                                      _second_moment, _unit_second_moments, _unit_sums, _variance_and_second_moment)


def _x(*shape, seed=0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)) * 1.7 + 0.3


def _value(store, recipe):
    """A recipe's value per seed: (S, ...) from the store's rows."""
    return _evaluate(recipe, store.flat().double().numpy().reshape(store.stacked, -1))


def _scalar(store, recipe) -> float:
    return float(np.asarray(_value(store, recipe)).reshape(-1)[0])


@pytest.mark.parametrize("welford", [False, True])
def test_moments_and_maps_are_their_formulas_on_either_path(monkeypatch, welford):
    monkeypatch.setattr(reductions, "_uses_welford", lambda data: welford)
    x = _x(4, 3, 5, 6)
    store = _RawStore()
    mean, second = _moments(store, x)
    variance, second_again = _variance_and_second_moment(store, x)
    second_map, overall, map_mean, unit_seconds = _position_moments(store, x, 2, _Scratch())
    units = _divided(*_unit_sums(store, x, dim=1))  # per-unit means: the sums, divided on the host
    feature_seconds = _unit_second_moments(store, x.reshape(-1, 6), dim=1)
    x64 = x.double()
    assert _scalar(store, second) == pytest.approx(float(x64.square().mean()), rel=1e-6)  # E[x²] = Σx²/N
    assert _scalar(store, mean) == pytest.approx(float(x64.mean()), rel=1e-5, abs=1e-7)
    assert _scalar(store, variance) == pytest.approx(float(x64.var(unbiased=False)), rel=1e-5)
    np.testing.assert_allclose(_value(store, second_map)[0], x64.square().mean(dim=(0, 1)).numpy(), rtol=1e-5)
    assert _scalar(store, overall) == pytest.approx(float(x64.square().mean()), rel=1e-5)
    assert (map_mean is None) == (not welford)  # the Welford pass gives E[x] for free
    np.testing.assert_allclose(_value(store, units)[0], x64.mean(dim=(0, 2, 3)).numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(_value(store, unit_seconds)[0], x64.square().mean(dim=(0, 2, 3)).numpy(), rtol=1e-5)
    np.testing.assert_allclose(_value(store, feature_seconds)[0], x64.reshape(-1, 6).square().mean(dim=0).numpy(),
                               rtol=1e-5)


@pytest.mark.parametrize("stacked", [1, 2])
def test_position_maps_are_their_formulas_either_side_of_the_running_sum_over_examples(stacked):
    big = _x(3, 64, 32, 33, seed=5)  # 67,584 elements an example: summed over the batch one example at a time
    small = big[:, :8].contiguous()  # 8,448: squared into the scratch buffer and summed
    assert _accumulates_examples(big.view(3, -1)) and not _accumulates_examples(small.view(3, -1))
    np.testing.assert_allclose(_example_square_sums(big.view(3, -1), _Scratch()).double().numpy(),
                               big.double().square().sum(0).reshape(-1).numpy(), rtol=1e-6)  # the plain formula
    for x in (big, small):
        store, scratch = _RawStore(stacked), _Scratch()
        second_map, overall, _, units = _position_moments(store, x, 2, scratch, stacked)
        scratch.square(torch.ones(2, 300, 300))  # the buffer is reused at once: the statistics do not live in it
        seeds = x.double().reshape(3, stacked, -1, 32, 33)
        for seed in range(stacked):
            own = seeds[:, seed]
            np.testing.assert_allclose(_value(store, second_map)[seed], own.square().mean(dim=(0, 1)).numpy(), rtol=1e-5)
            np.testing.assert_allclose(_value(store, units)[seed], own.square().mean(dim=(0, 2, 3)).numpy(), rtol=1e-5)
            assert _value(store, overall)[seed] == pytest.approx(float(own.square().mean()), rel=1e-5)


@pytest.mark.parametrize("welford", [False, True])
@pytest.mark.parametrize("layout", ["channels", "channels-strided", "features", "features-strided", "features-2d",
                                    "features-large"])
def test_moments_with_units_are_their_formulas_with_and_without_the_mean(monkeypatch, welford, layout):
    monkeypatch.setattr(reductions, "_uses_welford", lambda data: welford)
    x = {"channels": _x(4, 3, 5, 6), "channels-strided": _x(4, 5, 6, 3).permute(0, 3, 1, 2),
         "features": _x(4, 7, 6), "features-strided": _x(40, 30, 17).transpose(0, 1),  # attention's (T, B, E)
         "features-2d": _x(9, 6), "features-large": _x(40, 50, 17)}[layout]  # 136 KB: past the scratch's small size
    dim = 1 if layout.startswith("channels") else x.dim() - 1
    assert _reads_channels_once(x, dim) == (layout == "channels" and not welford)  # the rows' norms' seam
    large = x.numel() * x.element_size() > _Scratch.SMALL_BYTES
    assert reductions._reads_features_once(x, dim) == (layout.startswith("features") and large and not welford)
    x64 = x.double()
    others = [d for d in range(x.dim()) if d != dim]
    for with_mean in (True, False):
        store = _RawStore()
        mean, second, units, unit_means = _moments_with_units(store, x, dim, _Scratch(), mean=with_mean)
        assert (mean is None) == (not with_mean)
        if with_mean:
            assert _scalar(store, mean) == pytest.approx(float(x64.mean()), rel=1e-5, abs=1e-7)
        assert _scalar(store, second) == pytest.approx(float(x64.square().mean()), rel=1e-6)
        # float32 sums of up to 2,000 elements: a few 1e-6 apart from float64
        np.testing.assert_allclose(_value(store, units)[0], x64.square().mean(dim=others).numpy(), rtol=1e-5)
        assert (unit_means is None) == (not reductions._reads_features_once(x, dim))  # given free, never taken apart
        if unit_means is not None:
            np.testing.assert_allclose(_value(store, unit_means)[0], x64.mean(dim=others).numpy(), rtol=1e-5,
                                       atol=1e-7)
    # the plain formula beside the trick: each feature's mean and biased variance
    rows = _x(300, 17, seed=4)
    means, variances = reductions._feature_moments(rows.view(30, 10, 17))
    np.testing.assert_allclose(means.double().numpy(), rows.double().mean(0).numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(variances.double().numpy(), rows.double().var(0, correction=0).numpy(), rtol=1e-5)
    # the plain formula beside the trick, on tensors of many rows on either side of the small size
    for big in (_x(16, 8, 33, 31, seed=3), _x(16, 8, 9, 10, seed=3)):
        assert (big.numel() * 4 > _Scratch.SMALL_BYTES) == (big.shape[2] == 33)
        np.testing.assert_allclose(_channel_square_sums(big).double().numpy(),
                                   big.double().square().sum(dim=(0, 2, 3)).numpy(), rtol=1e-6)


@pytest.mark.parametrize("shape", [(4, 6, 9, 8), (16, 3, 8, 8), (17, 3, 8, 8), (4, 5, 7, 7), (3, 4, 70)])
def test_output_moments_and_gram_are_their_formulas_from_the_shared_product_or_apart(shape):
    """Per-channel Σy² and the examples' Gram from one batched product over the channels where the batch is
    at most 16 and a channel has at least 64 positions; apart (``_channel_square_sums``, ``flat @ flat.T``)
    for 17 examples or 49 positions; the same numbers either way."""
    x = torch.relu(_x(*shape))
    shared = 2 <= shape[0] <= reductions.CORRELATION_EXAMPLES and np.prod(shape[2:]) >= reductions.GRAM_POSITIONS
    assert reductions._shares_channel_grams(x, 1) == shared
    assert not reductions._shares_channel_grams(x, x.dim() - 1) and not reductions._shares_channel_grams(x, 1, 2)
    x64 = x.double()
    head = x64[:reductions.CORRELATION_EXAMPLES].reshape(min(shape[0], reductions.CORRELATION_EXAMPLES), -1)
    others = [d for d in range(x.dim()) if d != 1]
    for with_mean in (True, False):
        store = _RawStore()
        mean, second, units, gram = reductions._output_moments(store, x, 1, _Scratch(), mean=with_mean)
        assert (mean is None) == (not with_mean)
        if with_mean:
            assert _scalar(store, mean) == pytest.approx(float(x64.mean()), rel=1e-5)
        assert _scalar(store, second) == pytest.approx(float(x64.square().mean()), rel=1e-6)
        np.testing.assert_allclose(_value(store, units)[0], x64.square().mean(dim=others).numpy(), rtol=1e-6)
        np.testing.assert_allclose(_value(store, gram)[0], (head @ head.T).numpy(), rtol=1e-5)
    np.testing.assert_allclose(reductions._channel_grams(x).sum(0).double().numpy(),  # the plain formula beside it
                               (x64.reshape(shape[0], -1) @ x64.reshape(shape[0], -1).T).numpy(), rtol=1e-6)


def test_dead_units_are_the_relu_units_whose_sum_is_zero():
    relu = torch.relu(_x(4, 5, 3, 3))
    relu[:, 1] = 0.0
    relu[:, 3] = 0.0
    relu[0, 3, 0, 0] = 1e-30  # alive by a hair: a sum of non-negative floats cancels nothing
    store = _RawStore()
    sums, count = _unit_sums(store, relu, 1)
    assert count == 4 * 3 * 3
    fraction = _value(store, reductions._Derived(_dead_fraction, (sums,)))
    largest = relu.amax(dim=(0, 2, 3))
    assert float(np.asarray(fraction).reshape(-1)[0]) == pytest.approx(float((largest <= 0).float().mean())) == 0.2


def test_unit_second_moments_of_stacked_seeds_are_each_seeds_own():
    seeds = [_x(4, 3, 5, 2, seed=s) for s in range(3)]
    store = _RawStore(3)
    recipe = _unit_second_moments(store, torch.cat(seeds, dim=1), dim=1, stacked=3)
    np.testing.assert_allclose(_value(store, recipe), [s.double().square().mean(dim=(0, 2, 3)).numpy() for s in seeds],
                               rtol=1e-6)


def test_stacked_seeds_give_each_seeds_statistic_in_its_row():
    seeds = [_x(4, 3, 5, seed=s) for s in range(3)]
    stacked = torch.cat(seeds, dim=1)  # seeds side by side along dim 1, as ``stacking`` lays them out
    store = _RawStore(3)
    second = _second_moment(store, stacked, 3)
    rows = _value(store, second)
    np.testing.assert_allclose(rows, [float(s.double().square().mean()) for s in seeds], rtol=1e-6)


def test_parameter_second_moments_come_from_one_multi_tensor_norm():
    parameters = [_x(8, 4), _x(16, seed=1), _x(3, 3, 2, 2, seed=2)]
    store = _RawStore()
    recipes = _parameter_second_moments(store, parameters, 1)
    for recipe, parameter in zip(recipes, parameters):
        assert _scalar(store, recipe) == pytest.approx(float(parameter.double().square().mean()), rel=1e-6)


def test_the_scratch_buffer_is_reused_for_large_squares_and_small_ones_get_fresh_memory():
    scratch = _Scratch()
    large = _x(64, 64, 8)  # 128 KiB > SMALL_BYTES
    first = scratch.square(large)
    assert torch.equal(first, large * large) and scratch.buffer is not None
    pointer = scratch.buffer.data_ptr()
    scratch.square(_x(64, 64, 8, seed=1))
    assert scratch.buffer.data_ptr() == pointer
    small = _x(2, 3)
    assert torch.equal(scratch.square(small), small * small) and scratch.buffer.data_ptr() == pointer
