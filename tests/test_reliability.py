"""Reliability campaign: bad input gets one line and exit 2, faults leave nothing half-written, the
user's model is never harmed, and numerics degrade into verdicts, never into crashes."""

import gc
import json
import math
import textwrap

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import initlab
from initlab import theory
from initlab.activations import parse_activation
from initlab.cli import _parse_shape, main
from module_hooks import hook_count


def run(capsys, *args):
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


FACTORIES = textwrap.dedent("""
    import torch.nn as nn
    def good():
        return nn.Sequential(nn.Linear(10, 8), nn.ReLU(), nn.Linear(8, 2))
    def raises():
        raise RuntimeError("cannot build")
    def not_module():
        return "a string"
    NOT_CALLABLE = 3
    def no_weights():
        return nn.Sequential(nn.ReLU(), nn.Tanh())
""")


@pytest.mark.parametrize("target,shape,message", [
    ("good", "3,7", "layer '0' (Linear) expects input (..., 10) but got (64, 3, 7)"),
    ("raises", "10", "the factory raised RuntimeError: cannot build"),
    ("not_module", "10", "returned str, not an nn.Module"),
    ("NOT_CALLABLE", "10", "NOT_CALLABLE is not callable"),
    ("missing", "10", "has no attribute 'missing'"),
    ("no_weights", "10", "no Conv1d/2d/3d or Linear layer"),
])
def test_user_factory_failures_are_one_line_exit_2(capsys, tmp_path, target, shape, message):
    path = tmp_path / "nets.py"
    path.write_text(FACTORIES)
    code, _, err = run(capsys, "probe", "--model", f"{path}:{target}", "--input-shape", shape, "--seeds", "1")
    assert code == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_a_wrong_input_shape_with_stacked_seeds_is_the_same_one_line(capsys, tmp_path):
    path = tmp_path / "nets.py"
    path.write_text(FACTORIES)
    code, _, err = run(capsys, "probe", "--model", f"{path}:good", "--input-shape", "3,7", "--seeds", "2",
                       "--batched", "on")
    assert code == 2 and "layer '0' (Linear) expects input (..., 10) but got (64, 3, 7)" in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_a_file_that_fails_to_import_is_one_line(capsys, tmp_path):
    path = tmp_path / "broken.py"
    path.write_text("import nonexistent_module_xyz\n")
    code, _, err = run(capsys, "probe", "--model", f"{path}:build", "--input-shape", "4")
    assert code == 2 and "importing" in err and "ModuleNotFoundError" in err


class _Overflow(nn.Module):
    def forward(self, x):
        return x * float("inf")


def _blowing_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8), _Overflow(), nn.Linear(8, 8), nn.ReLU(),
                         nn.Linear(8, 2))


def test_nan_and_inf_are_reported_where_they_first_appear_never_a_crash(capsys):
    result = initlab.probe(_blowing_model(), torch.randn(4, 8))
    gains = result.gains()
    assert gains["verdict"] == "non-finite"
    assert gains["first_non_finite_forward"] == "4"  # the layer after the overflow
    assert gains["first_non_finite_backward"] == "2"  # its gradient turns NaN going back through it
    summary = result.summary()
    assert (summary["verdict"] == "non-finite").all()
    json.dumps(result.to_dict(), allow_nan=False)  # NaN becomes null in the JSON


def test_float16_model_is_probed_with_float32_statistics():
    x = torch.randn(16, 32)
    reference = initlab.probe(lambda: initlab.mlp(depth=5, width=32), x, init="kaiming", seeds=2).to_frame()
    half = initlab.probe(lambda: initlab.mlp(depth=5, width=32).half(), x.half(), init="kaiming", seeds=2)
    np.testing.assert_allclose(half.to_frame()["var_y"], reference["var_y"], rtol=0.01)
    assert half.gains()["verdict"] == "healthy"


def test_xavier_at_100_layers_is_reported_without_underflow():
    result = initlab.probe(lambda: initlab.mlp(depth=100, width=256), torch.randn(64, 256), init="xavier-fanin",
                           seeds=2)
    summary = result.summary()
    assert (summary["var_y"] > 0).all() and summary["var_y"].iloc[-1] < 1e-29
    assert summary["within_band_forward"].all() and summary["within_band_backward"].all()
    assert math.log2(result.gains()["forward_gain_pred"]) == pytest.approx(-99, abs=1e-6)


def test_beyond_float32_range_the_verdict_is_vanishing_not_a_crash():
    # 200 halvings: 2^-199 ≈ 1e-60 is below float32's smallest second moment; it underflows to 0
    result = initlab.probe(lambda: initlab.mlp(depth=200, width=64), torch.randn(16, 64), init="xavier-fanin")
    summary = result.summary()
    assert result.gains()["verdict"] == "vanishing"
    assert "exploding" not in set(summary["verdict"]) and "non-finite" not in set(summary["verdict"])


def _live_tensors():
    gc.collect()
    return sum(1 for obj in gc.get_objects() if issubclass(type(obj), torch.Tensor))


def test_repeated_probes_accumulate_no_hooks_and_no_tensors():
    model = initlab.mlp(depth=6, width=32)
    x = torch.randn(8, 32)
    for _ in range(2):
        initlab.probe(model, x, seeds=2)
    before = _live_tensors()
    for _ in range(5):
        initlab.probe(model, x, seeds=2)
    assert _live_tensors() <= before
    assert hook_count(model) == 0


class _Interrupt(nn.Module):
    def forward(self, x):
        raise KeyboardInterrupt


def test_ctrl_c_inside_the_forward_leaves_the_model_intact():
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.ReLU(), _Interrupt())
    x = torch.randn(8, 4) * 3
    state = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    with pytest.raises(KeyboardInterrupt):
        initlab.probe(model, x)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert torch.equal(torch.get_rng_state(), rng)
    assert hook_count(model) == 0


# -- property-based checks ----------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(depth=st.integers(1, 50), factor=st.floats(0.01, 0.99), fan=st.integers(1, 4096), slope=st.floats(0, 1))
def test_chain_gain_shrinks_with_depth_below_he_and_is_one_at_he(depth, factor, fan, slope):
    variance = factor * theory.he_std(fan, slope) ** 2
    shallow = theory.chain_gain([fan] * depth, [variance] * depth, [slope] * depth)
    deeper = theory.chain_gain([fan] * (depth + 1), [variance] * (depth + 1), [slope] * (depth + 1))
    assert deeper < shallow
    he = theory.chain_gain([fan] * depth, [theory.he_std(fan, slope) ** 2] * depth, [slope] * depth)
    assert he == pytest.approx(1.0, rel=1e-9)


@settings(max_examples=60, deadline=None)
@given(depth=st.integers(2, 40), width=st.integers(2, 2048), slope=st.floats(0, 1))
def test_band_variance_grows_with_depth_and_shrinks_with_width(depth, width, slope):
    def band(units):
        return theory.forward_log_variance([theory.gaussian_unit_log_variance(units)] * depth,
                                           [theory.gaussian_unit_log_variance(units, slope)] * depth,
                                           [True] + [False] * (depth - 1))
    variance = band(width)
    assert np.all(np.diff(variance) >= 0)
    assert band(2 * width)[-1] < variance[-1]


@given(st.lists(st.integers(1, 4096), min_size=1, max_size=5))
def test_input_shape_parsing_round_trips(shape):
    assert _parse_shape(",".join(map(str, shape))) == tuple(shape)


@given(st.text(max_size=12))
def test_input_shape_parsing_never_crashes_on_garbage(text):
    try:
        shape = _parse_shape(text)
    except ValueError:
        return
    assert all(isinstance(size, int) and size >= 1 for size in shape)


@given(st.text(max_size=16))
def test_activation_parsing_raises_only_value_errors(text):
    try:
        key, _ = parse_activation(text)
    except ValueError:
        return
    assert key in ("relu", "prelu", "prelu-shared", "leaky:A")


@given(st.text(max_size=24))
def test_scheme_parsing_raises_only_value_errors(text):
    try:
        initlab.parse_scheme(text)
    except ValueError:
        pass


def test_debug_shows_the_traceback_instead_of_one_line():
    with pytest.raises(ValueError, match="unknown init scheme"):
        main(["--debug", "probe", "--init", "kaimng"])


def test_debug_does_not_leak_into_the_next_call(capsys):
    with pytest.raises(ValueError):
        main(["--debug", "probe", "--init", "kaimng"])
    code, _, err = run(capsys, "probe", "--init", "kaimng")
    assert code == 2 and "did you mean" in err


def test_train_with_a_user_model_that_does_not_fit_the_data_is_one_line(capsys, tmp_path):
    path = tmp_path / "nets.py"
    path.write_text(FACTORIES)
    code, _, err = run(capsys, "train", "--model", f"{path}:good", "--epochs", "1", "--quiet")  # digits are 1×8×8
    assert code == 2 and "RuntimeError" in err and "--debug" in err
    assert len(err.strip().splitlines()) == 1


def test_multihead_attention_is_covered_with_and_without_attention_weights():
    torch.manual_seed(0)
    for need_weights in (False, True):
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.attention = nn.MultiheadAttention(16, 2, batch_first=True)
                self.head = nn.Linear(16, 4)

            def forward(self, x):
                return self.head(self.attention(x, x, x, need_weights=need_weights)[0])

        result = initlab.probe(Net(), torch.randn(4, 6, 16))
        assert set(result.coverage.covered) == {"attention.in_proj", "attention.out_proj", "head"}
        assert np.isfinite(result.to_frame()[["var_y", "grad_var"]].to_numpy()).all()
