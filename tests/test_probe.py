"""The probe: statistics equal direct computation, the user's model is untouched, and the
paper's predictions hold on deep MLPs and the 30-layer plain net within the finite-width band."""

import gc
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import initlab
from initlab.probe import ProbeError
from initlab.schemes import DIRECTION_STREAM, stream_seed

sys.path.insert(0, str(Path(__file__).parent))
from architectures import resnet18  # noqa: E402
from module_hooks import hook_count  # noqa: E402


def _input(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_recorded_statistics_equal_a_direct_autograd_computation():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 36, 5))
    x = _input(4, 3, 6, 6)
    frame = initlab.probe(model, x, elementwise_variances=True).to_frame()
    light = initlab.probe(model, x).to_frame()  # the default: no E[x] of outputs and gradients

    xr = x.clone().requires_grad_(True)
    y1 = model[0](xr)
    y1.retain_grad()
    h = model[1](y1)
    h.retain_grad()
    flat = model[2](h)
    flat.retain_grad()
    y2 = model[3](flat)
    y2.retain_grad()
    direction = torch.randn(y2.shape, generator=torch.Generator().manual_seed(stream_seed(0, DIRECTION_STREAM)))
    (y2 * direction).sum().backward()
    expected = {
        0: dict(input_second_moment=x.square().mean(), var_y=y1.square().mean(), output_variance=y1.var(correction=0),
                grad_output_second_moment=y1.grad.square().mean(), grad_var=xr.grad.square().mean(),
                grad_output_variance=y1.grad.var(correction=0), grad_input_variance=xr.grad.var(correction=0),
                weight_grad_variance=model[0].weight.grad.var(correction=0), input_mean=x.mean()),
        1: dict(input_second_moment=flat.square().mean(), var_y=y2.square().mean(), output_variance=y2.var(correction=0),
                grad_output_second_moment=y2.grad.square().mean(), grad_var=flat.grad.square().mean(),
                grad_output_variance=y2.grad.var(correction=0), grad_input_variance=flat.grad.var(correction=0),
                weight_grad_variance=model[3].weight.grad.var(correction=0), input_mean=flat.mean()),
    }
    elementwise = ("output_variance", "grad_output_variance", "grad_input_variance")
    for index, columns in expected.items():
        row, light_row = frame[frame["index"] == index].iloc[0], light[light["index"] == index].iloc[0]
        for column, value in columns.items():
            assert row[column] == pytest.approx(value.item(), rel=1e-5, abs=1e-7), (index, column)
            if column in elementwise:
                assert np.isnan(light_row[column]), (index, column)
            else:
                assert light_row[column] == row[column], (index, column)
    assert list(frame["link_in"]) == ["input", "rectifier+view"]


def test_inplace_relu_gives_the_same_statistics_as_out_of_place():
    def build(inplace):
        torch.manual_seed(1)
        return nn.Sequential(nn.Linear(16, 32), nn.ReLU(inplace=inplace), nn.Linear(32, 32), nn.ReLU(inplace=inplace),
                             nn.Linear(32, 4))
    x = _input(8, 16)
    columns = ["var_y", "grad_output_second_moment", "grad_var", "weight_grad_variance", "var_y_pred", "grad_var_pred"]
    a = initlab.probe(build(True), x).to_frame()[columns]
    b = initlab.probe(build(False), x).to_frame()[columns]
    np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), rtol=1e-6)
    # the gradient at a layer's output is taken before the in-place ReLU: it differs from the one after it
    assert not np.allclose(a["grad_output_second_moment"].iloc[0], a["grad_var"].iloc[1])


class _Raises(nn.Module):
    def forward(self, x):
        raise RuntimeError("boom halfway")


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("raises", [False, True])
def test_probe_leaves_the_model_exactly_as_found(raises):
    torch.manual_seed(2)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(inplace=True), nn.Flatten(),
                          nn.Linear(4 * 4 * 4, 3))
    if raises:
        model.append(_Raises())
    model.train()
    model[1].eval()
    model[4].weight.requires_grad_(False)
    model[0].weight.grad = torch.full_like(model[0].weight, 7.0)
    before = _state(model)
    modes = [m.training for m in model.modules()]
    flags = [p.requires_grad for p in model.parameters()]
    rng = torch.get_rng_state()
    x = _input(2, 3, 6, 6)
    if raises:
        with pytest.raises(ProbeError, match="boom halfway"):
            initlab.probe(model, x)
    else:
        initlab.probe(model, x, seeds=2, jacobian_projections=2)  # forward-mode passes too
        initlab.probe(model, x, init="kaiming", seeds=2)
    after = _state(model)
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert [m.training for m in model.modules()] == modes
    assert [p.requires_grad for p in model.parameters()] == flags
    assert torch.equal(model[0].weight.grad, torch.full_like(model[0].weight, 7.0))
    assert model[0].bias.grad is None
    assert torch.equal(torch.get_rng_state(), rng)
    assert hook_count(model) == 0


def test_batchnorm_running_statistics_are_restored_in_training_mode():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2)).train()
    before = _state(model)
    initlab.probe(model, _input(16, 4) * 5 + 3)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


class _CountingLinear(nn.Linear):
    """A Linear whose forward writes its buffers: a float64 counter alone in its dtype, a
    non-contiguous float32 view-backed buffer, a bool flag, and a buffer it replaces."""

    def __init__(self):
        super().__init__(4, 4)
        self.register_buffer("calls", torch.zeros((), dtype=torch.float64))
        self.register_buffer("strided", torch.arange(12.0).reshape(3, 4).t())  # non-contiguous
        self.register_buffer("seen", torch.zeros(2, dtype=torch.bool))
        self.register_buffer("replaced", torch.ones(3))

    def forward(self, x):
        self.calls += 1
        self.strided.mul_(-1)
        self.seen.fill_(True)
        self.replaced = torch.full((3,), 7.0)  # a new tensor under the same name
        return super().forward(x)


@pytest.mark.parametrize("multi_tensor_clone", [True, False])  # False: torch before _foreach_clone
def test_every_buffer_is_restored_whatever_its_dtype_layout_or_replacement(monkeypatch, multi_tensor_clone):
    if not multi_tensor_clone:
        monkeypatch.delattr(torch, "_foreach_clone", raising=False)
    model = nn.Sequential(_CountingLinear(), nn.ReLU(), nn.Linear(4, 2))
    before = _state(model)
    initlab.probe(model, _input(8, 4))
    after = model.state_dict()
    assert all(torch.equal(before[k], v) and before[k].dtype == v.dtype for k, v in after.items())
    assert not model[0].strided.is_contiguous()  # the buffer itself is kept, its values put back
    assert model[0].replaced.tolist() == [1.0, 1.0, 1.0]  # the replacement is given the values at entry


def test_reinitialization_works_on_a_copy_and_apply_init_changes_in_place():
    torch.manual_seed(4)
    model = initlab.mlp(depth=4, width=16)
    before = _state(model)
    initlab.probe(model, _input(4, 16), init="xavier-fanin", seeds=2)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    initlab.apply_init(model, "xavier-fanin", seed=0)
    assert not torch.equal(before["1.weight"], model.state_dict()["1.weight"])


def test_factory_is_called_after_reseeding_torch():
    x = _input(4, 16)
    result = initlab.probe(lambda: initlab.mlp(depth=3, width=16), x, seeds=[5])
    torch.manual_seed(5)
    reference = initlab.probe(initlab.mlp(depth=3, width=16), x, seeds=[5])
    np.testing.assert_array_equal(result.to_frame()["var_w_sampled"], reference.to_frame()["var_w_sampled"])


def test_statistics_move_to_the_host_once_per_probe(monkeypatch):
    calls = []
    original = torch.Tensor.cpu

    def counting(self, *args, **kwargs):
        calls.append(self.shape)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "cpu", counting)
    initlab.probe(lambda: initlab.plain_net(depth=8, width=4, input_shape=(3, 8, 8)), _input(2, 3, 8, 8), seeds=3)
    assert len(calls) == 1  # one transfer per probe, all three seeds together


def test_a_model_without_conv_or_linear_layers_is_a_clear_error():
    with pytest.raises(ProbeError, match="no Conv1d/2d/3d or Linear"):
        initlab.probe(nn.Sequential(nn.ReLU(), nn.Tanh()), _input(2, 3))


@pytest.mark.parametrize("batched", [False, True])
def test_a_shape_mismatch_names_the_failing_point(batched):
    # stacked seeds fail in the stacked net's shapes; the message is still the model's own
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(9, 2))
    with pytest.raises(ProbeError, match=r"layer '2' \(Linear\) expects input \(\.\.\., 9\) but got \(2, 8\)"):
        initlab.probe(model, _input(2, 4), init="kaiming", seeds=2, batched=batched)
    conv = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))
    with pytest.raises(ProbeError, match=r"layer '3' \(Linear\) expects input \(\.\.\., 144\) but got \(2, 64\)"):
        initlab.probe(conv, _input(2, 3, 6, 6), init="kaiming", seeds=2, batched=batched)


def test_tuple_and_dict_outputs_are_probed():
    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.body, self.a, self.b = nn.Linear(8, 8), nn.Linear(8, 2), nn.Linear(8, 3)

        def forward(self, x):
            h = torch.relu(self.body(x))
            return {"a": self.a(h), "b": (self.b(h),)}

    frame = initlab.probe(TwoHeads(), _input(4, 8)).to_frame()
    assert len(frame) == 3
    assert frame["grad_var"].notna().all()
    # functional torch.relu is followed (a torch function mode); h then feeds two heads: the first
    # head gets the closed-form link, the second sees a tensor the probe followed elsewhere
    assert list(frame["link_in"]) == ["input", "rectifier", "other"]
    assert list(frame["backward_link_closed"]) == [False, False, False]  # h fans out to both heads


def test_slopes_are_read_live_from_prelu_modules():
    torch.manual_seed(6)
    model = initlab.mlp(depth=3, width=64, act="prelu")
    with torch.no_grad():
        model[2].weight.fill_(0.5)  # PReLU after the first layer: channel-wise, now 0.5
        model[4].weight[:32] = 0.0  # second PReLU: half ReLU, half linear (a = 1)
        model[4].weight[32:] = 1.0
    frame = initlab.probe(model, _input(16, 64)).to_frame()
    assert frame["slope"].iloc[0] == pytest.approx(0.5)
    forward = frame["forward_factor"] / (frame["fan_in"] * frame["var_w"])
    assert forward.iloc[1] == pytest.approx(0.5 * (1 + 0.25))
    assert forward.iloc[2] == pytest.approx(0.5 * (0.5 * 1 + 0.5 * 2))  # mean of ½(1+a_c²) over channels


def test_residual_sum_resets_the_chain_and_fan_out_opens_the_backward_link():
    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.act, self.b, self.c = nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8), nn.Linear(8, 2)

        def forward(self, x):
            h = self.act(self.a(x))
            return self.c(self.b(h) + h)

    frame = initlab.probe(Residual(), _input(4, 8)).to_frame()
    assert list(frame["link_in"]) == ["input", "rectifier", "sum"]
    assert list(frame["link_resets"]) == [False, False, True]
    assert list(frame["backward_link_closed"]) == [False, False, False]  # h feeds b and the sum


def test_a_multi_seed_probe_gives_each_seed_the_frame_it_gets_alone():
    # The seeds' chains run as one batch (compare.build_frame); each seed's rows, predictions
    # included, must be those of a probe of that seed alone. PReLU slopes differ per seed after
    # the init, so the link factors differ from row to row of the batch too.
    x = _input(2, 3, 32, 32)
    for factory, init in ((lambda: initlab.plain_net(depth=8, width=8, act="prelu"), "kaiming"),
                          (lambda: resnet18(width=8), "xavier")):
        together = initlab.probe(factory, x, init=init, seeds=[3, 4, 5]).to_frame()
        alone = [initlab.probe(factory, x, init=init, seeds=[seed]).to_frame() for seed in (3, 4, 5)]
        for column in ("var_y_pred", "var_y_pred_sampled", "grad_var_pred", "grad_var_pred_sampled",
                       "grad_output_pred", "padding_factor", "padding_factor_backward", "var_y"):
            expected = np.concatenate([frame[column].to_numpy() for frame in alone])
            np.testing.assert_allclose(together[column].to_numpy(), expected, rtol=1e-12, err_msg=column)
        spread = together.groupby("index")["var_y_pred_sampled"].agg(np.ptp) / together.groupby("index")["var_y_pred_sampled"].mean()
        assert spread.max() > 1e-3  # the seeds' predictions differ, so a mix-up would show


# -- the paper's predictions ----------------------------------------------------------------

DEPTH = 20


@pytest.mark.parametrize("act,init,forward_pred", [
    ("relu", "xavier-fanin", 2.0 ** -(DEPTH - 1)),
    ("relu", "kaiming", 1.0),
    ("prelu", "kaiming", 1.0),
    ("prelu", "kaiming:a=0", 1.0625 ** (DEPTH - 1)),
])
def test_deep_mlp_forward_gain_is_the_papers_and_measured_within_band(act, init, forward_pred):
    x = _input(64, 256)
    result = initlab.probe(lambda: initlab.mlp(depth=DEPTH, width=256, act=act), x, init=init, seeds=3)
    gains = result.gains()
    assert gains["forward_gain_pred"] == pytest.approx(forward_pred, rel=1e-6)
    summary = result.summary()
    assert summary["within_band_forward"].all(), summary[["log10_ratio_forward", "band_forward_low",
                                                          "band_forward_high"]]
    low, high = summary["band_forward_low"].iloc[-1], summary["band_forward_high"].iloc[-1]
    first_low, first_high = summary["band_forward_low"].iloc[0], summary["band_forward_high"].iloc[0]
    assert low - first_high <= math.log10(gains["forward_gain"] / forward_pred) <= high - first_low


@pytest.mark.parametrize("act,init,backward_pred", [
    ("relu", "xavier-fanin", 2.0 ** -(DEPTH - 1)),
    ("relu", "kaiming:mode=fan_out", 1.0),
    ("prelu", "kaiming:mode=fan_out", 1.0),
    ("prelu", "kaiming:a=0,mode=fan_out", 1.0625 ** (DEPTH - 1)),
])
def test_deep_mlp_backward_gain_is_the_papers_and_measured_within_band(act, init, backward_pred):
    result = initlab.probe(lambda: initlab.mlp(depth=DEPTH, width=256, act=act), _input(64, 256), init=init, seeds=3)
    gains = result.gains()
    assert gains["backward_gain_pred"] == pytest.approx(backward_pred, rel=1e-6)
    summary = result.summary()
    assert summary["within_band_backward"].all()
    low, high = summary["band_backward_low"].iloc[0], summary["band_backward_high"].iloc[0]
    assert low - 0.2 <= math.log10(gains["backward_gain"] / backward_pred) <= high + 0.2


def test_forward_only_condition_gives_a_width_ratio_backward_not_exponential():
    # Paper §2.2: with the forward condition alone, the backward product is a ratio of widths.
    model = lambda: nn.Sequential(nn.Linear(64, 128), nn.ReLU(), *[m for _ in range(8) for m in
                                  (nn.Linear(128, 128), nn.ReLU())], nn.Linear(128, 32))
    gains = initlab.probe(model, _input(32, 64), init="kaiming").gains()
    assert gains["backward_gain_pred"] == pytest.approx(128 / 64, rel=1e-6)  # n̂_1/n_1 · ∏ 1


@pytest.fixture(scope="module")
def plain30():
    x = _input(32, 3, 32, 32)
    factory = lambda: initlab.plain_net(depth=30, width=16)
    return {init: initlab.probe(factory, x, init=init, seeds=3) for init in ("xavier-fanin", "kaiming")}


def test_plain30_every_layer_agrees_with_the_chain_within_the_band(plain30):
    for init, result in plain30.items():
        summary = result.summary()
        assert len(summary) == 30
        assert summary["within_band_forward"].all(), init
        assert summary["within_band_backward"].all(), init


def test_plain30_xavier_over_kaiming_measured_gain_is_two_to_minus_29(plain30):
    ratio = plain30["xavier-fanin"].gains()["forward_gain"] / plain30["kaiming"].gains()["forward_gain"]
    # Same seeds draw the same normalized weights, so the ratio is the scale ratio itself.
    assert math.log2(ratio) == pytest.approx(-29, abs=0.01)
    assert plain30["xavier-fanin"].gains()["verdict"] == "vanishing"
    assert plain30["kaiming"].gains()["verdict"] == "healthy"
    assert (plain30["kaiming"].summary()["verdict"] == "healthy").all()


def test_plain30_padding_factor_is_the_measured_border_loss(plain30):
    summary = plain30["kaiming"].summary()
    by_stage = summary.groupby(summary["fan_in"].clip(upper=600))["padding_factor"].mean()
    # 32×32, 16×16, 8×8 maps: smaller maps lose more at the borders (docs/theory.md: a few % to ~10 %)
    convs = summary[summary["kind"] == "conv"]
    assert convs["padding_factor"].between(0.85, 0.99).all()
    assert convs["padding_factor"].iloc[-1] < convs["padding_factor"].iloc[1]
    assert len(by_stage) >= 3


def test_torch_default_is_flagged_vanishing_with_factor_one_sixth():
    result = initlab.probe(lambda: initlab.mlp(depth=12, width=128), _input(32, 128), init="torch-default", seeds=2)
    summary = result.summary()
    assert summary["forward_factor"].iloc[1:].to_numpy() == pytest.approx(1 / 6, rel=1e-9)
    assert summary["forward_factor"].iloc[0] == pytest.approx(1 / 3, rel=1e-9)  # no rectifier before layer 1
    assert result.gains()["verdict"] == "vanishing"
    assert result.gains()["backward_gain_pred"] < 1e-8
    assert (summary["verdict"].iloc[:6] == "vanishing").all()
    assert summary["within_band_forward"].all() and summary["within_band_backward"].all()


CALIBRATION_NETS = {  # (factory, input shape): widths 16–512, batches 1–256, maps 4×4–32×32, two slopes
    "mlp w16 batch 1": (lambda: initlab.mlp(depth=16, width=16), (1, 16)),
    "mlp w64 batch 256": (lambda: initlab.mlp(depth=16, width=64), (256, 64)),
    "mlp w512 batch 64": (lambda: initlab.mlp(depth=8, width=512), (64, 512)),
    "mlp w64 leaky 0.25 batch 32": (lambda: initlab.mlp(depth=16, width=64, act="leaky:0.25"), (32, 64)),
    "conv w16 4x4 batch 1": (lambda: initlab.plain_net(depth=10, width=16, input_shape=(3, 4, 4), stages=1),
                             (1, 3, 4, 4)),
    "conv w24 16x16 batch 32": (lambda: initlab.plain_net(depth=12, width=24, input_shape=(3, 16, 16), stages=1),
                                (32, 3, 16, 16)),
    "conv w16 32x32 batch 4": (lambda: initlab.plain_net(depth=8, width=16, input_shape=(3, 32, 32), stages=1),
                               (4, 3, 32, 32)),
}


@pytest.mark.parametrize("net", CALIBRATION_NETS)
def test_band_sigma_matches_the_seed_to_seed_sigma(net):
    # The band is a 3σ band of ln(measured/predicted) across seeds: its σ must be the σ that 64
    # seeds of Kaiming weights show (same batch, as a probe does), in both directions. A σ from 64
    # seeds has a sampling error of about 9 %; per net the median over layers must lie in
    # 0.8–1.25 and every layer in 0.65–1.45.
    factory, shape = CALIBRATION_NETS[net]
    frame = initlab.probe(factory, _input(*shape), init="kaiming", seeds=64).to_frame()
    for direction, measured, predicted in (("forward", "var_y", "var_y_pred"), ("backward", "grad_var", "grad_var_pred")):
        frame["log_ratio"] = np.log(frame[measured] / frame[predicted])
        grouped = frame.groupby("index")
        ratio = grouped["log_ratio"].std() / np.sqrt(grouped[f"{direction}_log_variance"].mean())
        assert 0.8 <= ratio.median() <= 1.25, (direction, ratio.round(2).tolist())
        assert ratio.between(0.65, 1.45).all(), (direction, ratio.round(2).tolist())
    low, high = initlab.theory.log10_band(frame["forward_log_variance"].to_numpy())
    log10_ratio = np.log10(frame["var_y"] / frame["var_y_pred"])
    assert ((log10_ratio >= low) & (log10_ratio <= high)).mean() >= 0.97  # 3σ: 99.7 % of seed-layers


def test_summary_log_ratio_is_the_log_of_its_own_columns():
    result = initlab.probe(lambda: initlab.mlp(depth=6, width=32), _input(8, 32), init="kaiming", seeds=4)
    summary = result.summary()
    np.testing.assert_allclose(summary["log10_ratio_forward"], np.log10(summary["var_y"] / summary["var_y_pred"]))
    np.testing.assert_allclose(summary["log10_ratio_backward"],
                               np.log10(summary["grad_var"] / summary["grad_var_pred"]))


def test_device_auto_is_cpu_here_and_cuda_is_refused_without_a_gpu():
    from initlab.probe import resolve_device
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ProbeError, match="no CUDA GPU"):
            resolve_device("cuda")
    with pytest.raises(ProbeError, match="unknown device"):
        resolve_device("tpu9")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="runs where CUDA is present")
def test_cuda_probe_matches_cpu_and_leaves_the_model_on_the_cpu():
    model = initlab.plain_net(depth=8, width=8, input_shape=(3, 16, 16))
    x = _input(8, 3, 16, 16)
    cpu = initlab.probe(model, x, init="kaiming", seeds=2, device="cpu").to_frame()
    gpu = initlab.probe(model, x, init="kaiming", seeds=2, device="cuda").to_frame()
    assert next(model.parameters()).device.type == "cpu"
    for column in ("var_y", "grad_var", "var_y_pred", "grad_var_pred"):
        np.testing.assert_allclose(gpu[column], cpu[column], rtol=2e-3)


def test_bfloat16_model_is_probed_with_float32_statistics():
    x = _input(32, 64)
    reference = initlab.probe(lambda: initlab.mlp(depth=6, width=64), x, init="kaiming", seeds=2).to_frame()
    result = initlab.probe(lambda: initlab.mlp(depth=6, width=64).to(torch.bfloat16), x.to(torch.bfloat16),
                           init="kaiming", seeds=2)
    low = result.to_frame()
    np.testing.assert_allclose(low["var_y"], reference["var_y"], rtol=0.05)  # bfloat16 keeps ~3 digits
    np.testing.assert_allclose(low["grad_var"], reference["grad_var"], rtol=0.1)
    assert result.summary()["within_band_forward"].all()


def test_progress_is_reported_after_each_seed():
    seen = []
    initlab.probe(lambda: initlab.mlp(depth=3, width=8), _input(4, 8), seeds=3, progress=lambda d, t: seen.append((d, t)))
    assert seen == [(1, 3), (2, 3), (3, 3)]


def test_first_layer_fan_ratio_is_not_called_exploding():
    # One input channel, 32 outputs: under fan_in Kaiming the gradient at the *input image* is
    # n̂_1·Var[w_1] = 288·2/9 = 64 times the one at the first layer's output. It reaches no
    # parameter, and the paper's backward chain (eq. 13) stops before it; so do the verdicts.
    factory = lambda: initlab.plain_net(depth=12, width=32, input_shape=(1, 8, 8), stages=1)
    result = initlab.probe(factory, _input(16, 1, 8, 8), init="kaiming", seeds=2)
    summary = result.summary()
    assert summary["backward_factor"].iloc[0] == pytest.approx(64 * 0.5, rel=1e-9)  # ½ from the ReLU after it
    assert result.gains()["verdict"] == "healthy"
    assert (summary["verdict"] == "healthy").all()


def test_example_correlation_and_rank_are_the_plain_measurement_and_follow_the_map():
    # The probe's per-layer mean cosine between the first 16 examples and its effective rank equal
    # a measurement with forward hooks alone; on a 512-wide He MLP the one-step prediction through
    # the arc-cosine map is within the finite-width error (≈ 1/√512 per pair, averaged over 120 pairs).
    torch.manual_seed(3)
    model = initlab.mlp(depth=8, width=512)
    initlab.apply_init(model, "kaiming", seed=3)
    x = _input(24, 512)
    outputs = []
    handles = [m.register_forward_hook(lambda module, args, output: outputs.append(output.detach().double()))
               for m in model.modules() if isinstance(m, nn.Linear)]
    with torch.no_grad():
        model(x)
    for handle in handles:
        handle.remove()
    frame = initlab.probe(model, x).to_frame()
    for index, output in enumerate(outputs):
        head = output[:16]
        unit = head / head.norm(dim=1, keepdim=True)
        cosines = unit @ unit.T
        gram = head @ head.T
        assert frame["example_correlation"].iloc[index] == pytest.approx(
            float((cosines.sum() - cosines.trace()) / (16 * 15)), abs=1e-5)
        assert frame["effective_rank"].iloc[index] == pytest.approx(
            float(gram.trace() ** 2 / gram.square().sum()), rel=1e-5)
    hidden = frame.iloc[1:-1]  # the classifier's 10 outputs are too few for the map
    assert (hidden["example_correlation"] - hidden["example_correlation_pred"]).abs().max() < 0.05
    assert frame["example_correlation"].iloc[-2] > 0.5  # correlations rise with depth, as the map says
    assert np.isnan(frame["example_correlation_pred"].iloc[0])  # the first layer has no layer before it


def test_example_correlation_prediction_counts_the_biases():
    # PyTorch's default init: Var[w] = 1/(3·fan_in) shrinks the signal, biases of E[b²] = 1/(3·fan_in) take
    # over and every example's output tends to the same bias vector; the map with E[b²] follows it.
    torch.manual_seed(4)
    frame = initlab.probe(initlab.mlp(depth=8, width=512), _input(16, 512)).to_frame()
    hidden = frame.iloc[1:-1]
    assert hidden["example_correlation"].iloc[-1] > 0.95
    assert (hidden["example_correlation"] - hidden["example_correlation_pred"]).abs().max() < 0.05


class _Mixer(nn.Module):
    """An embedding, a weight reused twice, a layer fed through an op the probe does not follow
    (a concatenation), a residual sum: inputs with and without a covered layer upstream."""

    def __init__(self):
        super().__init__()
        self.embed, self.shared, self.head = nn.Embedding(20, 8), nn.Linear(8, 8), nn.Linear(16, 4)
        self.tied = nn.Linear(8, 8)
        self.tied.weight = self.shared.weight  # one parameter under two modules: its first name wins

    def forward(self, ids):
        x = self.embed(ids)
        x = x + self.shared(torch.relu(self.shared(x)))
        return self.head(torch.cat([x, self.tied(x)], dim=-1))


def _upstream_models():
    layer = nn.TransformerEncoderLayer(16, 2, dim_feedforward=32, dropout=0.0, batch_first=True)
    return [(initlab.plain_net(depth=6, width=4, input_shape=(3, 8, 8)), _input(2, 3, 8, 8)),
            (resnet18(), _input(2, 3, 16, 16)),
            (nn.TransformerEncoder(layer, 2, enable_nested_tensor=False), _input(2, 5, 16)),
            (_Mixer(), torch.randint(0, 20, (3, 5), generator=torch.Generator().manual_seed(0)))]


def test_an_input_followed_from_a_layer_has_a_layer_upstream_as_the_graph_walk_finds(monkeypatch):
    # The shortcut (a followed link proves a layer upstream) against the plain formula, the walk
    # back through the autograd graph, at every layer call of models with and without a link.
    from initlab import dataflow
    from initlab.probe.capture import _Recorder

    original, answers = _Recorder._has_layer_upstream, []

    def checked(self, x, link):
        walked = x.grad_fn is not None and bool(dataflow.nearest_layers(x.grad_fn, self.layer_nodes, set(),
                                                                        first=True))
        answers.append((link is not None, original(self, x, link), walked))
        return answers[-1][1]

    monkeypatch.setattr(_Recorder, "_has_layer_upstream", checked)
    for model, x in _upstream_models():
        torch.manual_seed(0)
        initlab.probe(model, x)
    assert answers and all(shortcut == walked for _, shortcut, walked in answers)
    assert {(linked, shortcut) for linked, shortcut, _ in answers} == {(True, True), (False, True), (False, False)}


def test_the_recorder_names_modules_and_parameters_as_torch_does():
    from initlab.probe.capture import _Recorder

    for model, _ in _upstream_models():
        recorder = _Recorder(model)
        try:
            assert recorder.names == {module: name for name, module in model.named_modules()}
            assert recorder.parameter_names == {p: name for name, p in model.named_parameters()}
        finally:
            recorder.remove()
    mixer = _Mixer()
    recorder = _Recorder(mixer)
    recorder.remove()
    assert recorder.parameter_names[mixer.tied.weight] == "shared.weight"  # a tied weight: its first name


@pytest.mark.parametrize("enabled", [True, False])
def test_the_garbage_collector_is_paused_for_a_pass_and_left_as_found(enabled):
    model = initlab.plain_net(depth=6, width=4, input_shape=(3, 8, 8))
    during = []
    handle = model[0].register_forward_hook(lambda module, args, output: during.append(gc.isenabled()))
    was = gc.isenabled()
    try:
        gc.enable() if enabled else gc.disable()
        initlab.probe(model, _input(2, 3, 8, 8), seeds=2)
        assert gc.isenabled() is enabled
        with pytest.raises(ProbeError):
            initlab.probe(model, _input(2, 5, 8, 8))  # a pass that fails resumes the collector too
        assert gc.isenabled() is enabled
    finally:
        handle.remove()
        gc.enable() if was else gc.disable()
    assert during == [False, False]  # the two seeds' passes (the failing one raises in the first layer)


def test_a_pass_leaves_no_reference_cycle_for_the_paused_collector():
    # What the pass drops is freed as it goes (reference counts), so pausing the collector keeps
    # nothing alive: after a pass, a collection finds nothing unreachable.
    from initlab.probe.seeds import _probe_one

    for model, x in _upstream_models():
        _probe_one(model, x, 0, None)
        gc.collect()
        was = gc.isenabled()
        gc.disable()
        try:
            _probe_one(model, x, 0, None)
            assert gc.collect() == 0, type(model).__name__
        finally:
            gc.enable() if was else gc.disable()
