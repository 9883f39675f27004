"""The verdict rules on hand-made frames: each rule's boundary, with the numbers it is stated in."""

import math

import numpy as np
import pandas as pd
import pytest

from initlab import verdicts
from initlab.verdicts import (HEALTHY_DECADES, SINGLE_STEP_DECADES, _accumulate, _chain_steps, _judge, healthy_interval,
                              judged_by, stream_summary)


def test_a_chain_is_healthy_within_a_decade_of_he_when_its_band_is_narrow():
    # no finite-width variance: the interval is exactly ±HEALTHY_DECADES around log10 1 = 0
    assert healthy_interval(0.0, 1) == (-HEALTHY_DECADES, HEALTHY_DECADES, 0.0)
    assert _judge(0.99, 0.0, 1)[0] == "healthy" and _judge(-0.99, 0.0, 1)[0] == "healthy"
    assert _judge(1.01, 0.0, 1) == ("exploding", pytest.approx(0.01))
    assert _judge(-1.5, 0.0, 1) == ("vanishing", pytest.approx(0.5))


def test_the_interval_widens_to_the_3_sigma_band_of_a_deep_chain_and_is_centred_on_its_median():
    log_variance = 20.0  # ln-variance of a long, narrow chain: 3σ in log10 is 3·√20/ln 10 ≈ 5.8 decades
    low, high, center = healthy_interval(log_variance, 1)
    assert center == pytest.approx(-0.5 * log_variance / math.log(10))  # −σ²/2 in ln
    assert high - center == pytest.approx(3 * math.sqrt(log_variance) / math.log(10))
    assert _judge(center - 5.0, log_variance, 1)[0] == "healthy"  # beyond a decade, inside the band
    # more seeds narrow the band on the seed mean by √seeds, down to the decade
    assert healthy_interval(log_variance, 100)[1] - center == pytest.approx(HEALTHY_DECADES)


def test_a_lone_layer_step_is_judged_at_three_decades():
    assert healthy_interval(0.0, 1, steps=1)[:2] == (-SINGLE_STEP_DECADES, SINGLE_STEP_DECADES)
    assert _judge(-2.5, 0.0, 1, steps=1)[0] == "healthy" and _judge(-2.5, 0.0, 1, steps=2)[0] == "vanishing"


def test_the_fan_ratio_of_the_other_direction_is_healthy_too():
    # He's fan_out init read in the forward direction: gain ∏ n/n̂ = 10^-1.8, healthy by §2.2's c_2/d_L
    low, high, _ = healthy_interval(0.0, 1, log10_fan_ratio=-1.8)
    assert (low, high) == (pytest.approx(-2.8), pytest.approx(1.0))
    assert _judge(-2.5, 0.0, 1, log10_fan_ratio=-1.8)[0] == "healthy"


def test_infinite_and_nan_gains_are_named_not_judged():
    assert _judge(-np.inf, 0.0, 1) == ("vanishing", np.inf)
    assert _judge(np.inf, 0.0, 1) == ("exploding", np.inf)
    assert _judge(np.nan, 0.0, 1) == ("non-finite", np.inf)


def test_the_chain_restarts_at_a_reset_and_stops_at_underflow_or_nan():
    steps = np.array([0.5, 0.5, 0.5, 0.5, 0.5])
    measured = np.ones(5)
    resets = np.array([False, False, True, False, False])
    np.testing.assert_array_equal(_accumulate(steps, measured, resets), [0.5, 1.0, 0.5, 1.0, 1.5])
    underflow = measured.copy()
    underflow[1] = 0.0  # a second moment that underflowed: −inf from there on, through the reset
    np.testing.assert_array_equal(_accumulate(steps, underflow, resets), [0.5, -np.inf, -np.inf, -np.inf, -np.inf])
    nan = measured.copy()
    nan[3] = np.nan
    assert np.isnan(_accumulate(steps, nan, resets)[3:]).all()


def _seed_frame(resets, ends):
    return pd.DataFrame({"link_resets": resets, "ends_in": ends})


def test_what_judges_a_layer_follows_its_chain_between_resets():
    # layers 0–1 a chain, 2–3 a residual branch, 4–5 ending in a normalization, 6 alone
    frame = _seed_frame([False, False, True, False, True, False, True], ["", "", "", "branch", "", "norm", ""])
    assert list(judged_by(frame)) == ["chain", "chain", "stream", "stream", "normalization", "normalization", "chain"]
    forward, backward = _chain_steps(frame)
    # the network's first layer's own step is not counted forward, the last layer's not backward
    assert list(forward) == [1, 1, 2, 2, 2, 2, 1] and list(backward) == [2, 2, 2, 2, 2, 2, 0]


def _sums(second_moments, grad_second_moments, seed=0):
    count = len(second_moments)
    skip0 = 1.0
    return pd.DataFrame({"seed": seed, "stream": 0, "depth": np.arange(1, count + 1), "name": [f"s{i}" for i in
                                                                                                range(count)],
                         "second_moment": second_moments, "grad_second_moment": grad_second_moments,
                         "stream_growth": np.asarray(second_moments) / skip0})


def test_a_stream_growing_linearly_is_healthy_and_one_doubling_per_sum_explodes():
    linear = stream_summary(_sums([2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0], [1.0] * 8))
    assert linear.loc[0, "forward_growth_after_first"] == pytest.approx(4.5)  # 9/2 over 8 sums: below ×8·10
    assert linear.loc[0, "verdict_forward"] == "healthy"
    doubling = stream_summary(_sums([2.0 ** k for k in range(1, 13)], [1.0] * 12))
    # 2^11 after the first of 12 sums: log10 2048 = 3.3 > log10 12 + 1 = 2.08
    assert doubling.loc[0, "verdict_forward"] == "exploding" and doubling.loc[0, "verdict_backward"] == "healthy"
    backward = stream_summary(_sums([1.0] * 12, [4.0 ** (12 - k) for k in range(12)]))
    assert backward.loc[0, "backward_growth"] == pytest.approx(4.0 ** 11) and backward.loc[0, "verdict_backward"] == \
        "exploding"


def test_a_stream_of_one_sum_is_not_judged_and_no_sums_is_an_empty_frame():
    one = stream_summary(_sums([1000.0], [1.0]))
    assert one.loc[0, "sums"] == 1 and one.loc[0, "verdict_forward"] == "healthy"
    assert stream_summary(pd.DataFrame()).empty and list(stream_summary(None).columns)[:2] == ["stream", "sums"]


def test_the_growth_limit_is_linear_in_sums_plus_a_decade():
    # exactly at the limit K·10 after the first: healthy; just above: exploding
    count = 10
    limit = 10 ** (math.log10(count) + HEALTHY_DECADES)
    at = stream_summary(_sums([1.0] * (count - 1) + [limit * 0.999], [1.0] * count))
    above = stream_summary(_sums([1.0] * (count - 1) + [limit * 1.001], [1.0] * count))
    assert at.loc[0, "verdict_forward"] == "healthy" and above.loc[0, "verdict_forward"] == "exploding"
    assert verdicts.JUDGED_GROWTH == {"forward": "forward_growth_after_first", "backward": "backward_growth"}


def test_collapse_steps_compare_each_layer_with_a_critical_relu_layer_on_the_previous_correlation():
    from initlab.correlation import rectifier_correlation_map
    measured = np.array([0.1, 0.5, 0.9, 0.9999, 0.99999, 0.999999])
    links = np.array(["input", "rectifier", "rectifier+pool", "rectifier+pool+view", "view", "norm+rectifier"])
    layers = np.array(["conv", "conv", "conv", "linear", "linear", "linear"])
    reference, excess, verdict = verdicts._collapse(measured, links, layers)
    # rectifier: F(c_{l-1}); a local pool into a conv is part of the step; a view keeps c; a pool
    # into a Linear layer (global) and a normalization have no reference and add nothing
    np.testing.assert_allclose(reference[1:3], rectifier_correlation_map(measured[:2]))
    assert np.isnan(reference[0]) and np.isnan(reference[3]) and np.isnan(reference[5])
    assert reference[4] == measured[3]
    steps = np.log10((1 - reference[1:3]) / (1 - measured[1:3]))
    np.testing.assert_allclose(excess[1:4], np.cumsum(steps).tolist() + [steps.sum()])
    assert excess[4] == pytest.approx(steps.sum() + 1.0)  # 1 − c ten times smaller across a view
    assert list(verdict) == ["healthy"] * 6  # 0.9999 came across the global pool, not counted
    _, excess, verdict = verdicts._collapse(np.array([0.0, 0.5, 0.99, 0.99999]), links[[0, 1, 1, 1]], layers[:4])
    assert excess[-1] > verdicts.COLLAPSE_DECADES and verdict[-1] == "collapsed" and verdict[2] == "healthy"
    reference, _, verdict = verdicts._collapse(np.array([np.nan, 0.5]), links[:2], layers[:2])
    assert list(verdict) == ["unmeasured", "healthy"] and np.isnan(reference).all()
