"""The pre-training check: verdicts and named misconfigurations, with their factors, on plain nets
and on networks in the style of ResNet-18, VGG-11 (with and without BN), a ViT and an MLP-Mixer."""

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import initlab
from initlab.check import UnhealthyInitError, identify_init
from initlab.cli import main
from initlab.theory import gaussian_activation_factors as _smooth_factors

sys.path.insert(0, str(Path(__file__).parent))
from architectures import Mixer, ResNet, ViT, resnet18, vgg11  # noqa: E402


def _batch(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _conv_stack(depth=20, width=16, act=None):
    torch.manual_seed(0)
    layers = [nn.Conv2d(3, width, 3, padding=1), act() if act else nn.ReLU()]
    for _ in range(depth - 2):
        layers += [nn.Conv2d(width, width, 3, padding=1), act() if act else nn.ReLU()]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 10))


def _kinds(report):
    return {f.kind: f for f in report.findings}


# -- plain nets: the paper's misconfigurations --------------------------------------------------


def test_torch_default_init_under_relu_is_named_with_factor_one_sixth():
    report = initlab.check(_conv_stack(), _batch(8, 3, 16, 16))
    assert not report.healthy
    assert report.verdict_backward == "vanishing"
    finding = _kinds(report)["torch-default-init"]
    assert finding.severity == "error"
    assert finding.factor == pytest.approx(1 / 6, rel=0.1)  # ½·n·1/(3n); sampled weights, 8 % spread
    assert len(finding.layers) == 19  # every ReLU-fed layer, the first (raw input) excluded
    assert "1/(3·fan_in)" in finding.message and "10^-" in finding.message
    assert "kaiming" in finding.fix


def test_kaiming_makes_the_same_net_healthy_with_no_finding():
    model = initlab.apply_init(_conv_stack(), "kaiming", seed=0)
    report = initlab.check(model, _batch(8, 3, 16, 16))
    assert report.healthy, report.text()
    assert report.findings == ()
    assert set(report.to_frame()["init"]) == {"kaiming"}


def test_xavier_under_relu_is_named_with_factor_one_half():
    model = initlab.apply_init(_conv_stack(), "xavier-fanin", seed=0)
    report = initlab.check(model, _batch(8, 3, 16, 16))
    finding = _kinds(report)["xavier-under-rectifier"]
    assert finding.factor == pytest.approx(0.5, rel=0.1)
    assert report.verdict_forward == "vanishing" and finding.severity == "error"


def test_kaiming_for_relu_under_prelu_is_a_slope_mismatch_with_factor_one_plus_a_squared():
    model = initlab.mlp(depth=8, width=256, act="prelu:0.5", num_classes=256)
    initlab.apply_init(model, "kaiming:a=0", seed=0)
    report = initlab.check(model, _batch(32, 256))
    finding = _kinds(report)["slope-mismatch"]
    assert finding.factor == pytest.approx(0.5 * (1 + 0.25) * 2, rel=0.08)  # ½(1+a²)·n·2/n = 1.25
    assert "a=0.5" in finding.message
    assert len(finding.layers) == 7


def test_fan_out_mode_is_named_when_the_forward_direction_is_checked():
    torch.manual_seed(0)
    widths = [64, 128, 256, 512]
    layers, previous = [], 32
    for width in widths:
        layers += [nn.Linear(previous, width), nn.ReLU()]
        previous = width
    model = nn.Sequential(*layers, nn.Linear(previous, 10))
    initlab.apply_init(model, "kaiming:mode=fan_out", seed=0)
    forward = initlab.check(model, _batch(64, 32), direction="forward")
    finding = _kinds(forward)["fan-mode"]
    assert finding.severity == "warning"  # a width ratio, not exponential: both verdicts stay healthy
    assert forward.healthy
    rows = forward.to_frame().set_index("name").loc[list(finding.layers)]
    np.testing.assert_allclose(finding.factor, np.exp(np.log(rows["fan_in"] / rows["fan_out"]).mean()), rtol=1e-9)
    assert "fan-mode" not in _kinds(initlab.check(model, _batch(64, 32), direction="backward"))


def test_dead_relu_units_from_a_negative_bias_are_an_error():
    model = initlab.mlp(depth=4, width=64)
    initlab.apply_init(model, "kaiming", seed=0)
    with torch.no_grad():
        model[1].bias.fill_(-10.0)  # every unit of the first ReLU is negative on N(0,1) input
    report = initlab.check(model, _batch(16, 64))
    dead = [f for f in report.findings if f.kind == "dead-units"]
    assert dead and dead[0].severity == "error" and "64 of 64 units" in dead[0].message
    assert not report.healthy


def test_unnormalized_first_layer_input_is_named_with_its_second_moment():
    model = initlab.apply_init(_conv_stack(depth=6), "kaiming", seed=0)
    images = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 255
    report = initlab.check(model, images)
    finding = _kinds(report)["unnormalized-input"]
    assert finding.severity == "error"
    assert finding.factor == pytest.approx(images.square().mean().item(), rel=1e-4)  # ≈ 255²/3
    assert _kinds(initlab.check(model, (images / 255 - 0.5) / 0.29)).get("unnormalized-input") is None
    assert _kinds(initlab.check(model, images / 255))["unnormalized-input"].severity == "warning"  # mean 0.5


def test_identify_init_reads_each_scheme_back_from_sampled_weights():
    for scheme, expected in (("kaiming", "kaiming"), ("xavier-fanin", "xavier-fanin"), ("torch-default", "torch-default"),
                             ("kaiming:mode=fan_out", "kaiming:mode=fan_out"), ("normal:0.01", "other")):
        layer = nn.Linear(256, 1024)
        initlab.apply_init(layer, scheme, seed=1)
        weight = layer.weight.detach()
        assert identify_init(256, 1024, weight.numel(), weight.square().mean().item(), 0.0) == expected, scheme


# -- real architectures ---------------------------------------------------------------------------


def test_resnet18_with_batch_norm_is_healthy_under_torch_default_and_kaiming():
    images = _batch(8, 3, 32, 32)
    model = resnet18()
    default = initlab.check(model, images)
    assert default.healthy, default.text()
    # BatchNorm takes every conv's scale away: the default init is not a finding, and the layers
    # say what judges them (a residual branch by its stream, the stem by its normalization)
    assert "torch-default-init" not in _kinds(default)
    judged = default.to_frame().set_index("name")["judged_by"]
    assert judged["conv1"] == "normalization" and judged["layer1.0.conv2"] == "stream" and judged["fc"] == "chain"
    torchvision_init = initlab.apply_init(resnet18(), "kaiming:mode=fan_out", seed=0)  # what torchvision uses
    report = initlab.check(torchvision_init, images)
    assert report.healthy and report.gains["residual_sums"] == 8
    assert len(report.streams) == 4  # one stream per stage: each downsampling block starts from a projection


def test_unnormalized_deep_residual_stream_explodes_and_is_named():
    torch.manual_seed(0)
    model = initlab.apply_init(ResNet((8,), width=16, norm=False), "kaiming", seed=0)
    report = initlab.check(model, _batch(8, 3, 32, 32))
    forward, backward = [f for f in report.findings if f.kind == "residual-stream-growth"]
    assert "forward" in forward.message and "backward" in backward.message
    finding = forward
    assert finding.severity == "error" and not report.healthy
    growth = report.streams["forward_growth_after_first"].max()  # E[s_8²]/E[s_1²]: 7 sums after the first
    assert growth > 10 ** (math.log10(8) + 1)  # beyond linear growth (at most K = 8) by more than a decade
    assert finding.factor == pytest.approx(growth ** (1 / 7))
    sums = report.result.sums  # plain arithmetic on the recorded sums: the last over the first sum's output
    assert growth == pytest.approx(sums["second_moment"].iloc[-1] / sums["second_moment"].iloc[0])
    # per sum: x = relu(s) feeds a He branch worth 2·E[x²], so s grows ×3·E[x²]/E[s²], between 1.5 and 3
    assert 1.5 < finding.factor < 3.0
    normalized = initlab.check(initlab.apply_init(ResNet((8,), width=16, norm=True), "kaiming", seed=0),
                               _batch(8, 3, 32, 32))
    assert normalized.healthy and normalized.streams["forward_growth"].max() < 9 * 1.5  # linear: ≈ K+1


def test_residual_sums_are_the_sum_of_their_branches():
    # E[(skip + branch)²] = E[skip²] + E[branch²] in expectation over the branch's zero-mean weights
    ratios = []
    for seed in range(12):
        model = initlab.apply_init(ResNet((3,), width=16, norm=False), "kaiming", seed=seed)
        sums = initlab.check(model, _batch(8, 3, 32, 32, seed=seed)).result.sums
        ratios += list(sums["second_moment"] / sums["second_moment_pred"])
    # the cross term 2·E[skip·branch] averages out over seeds: the mean ratio is 1 within 3 standard
    # errors (36 sums; one sum's ratio spreads by ~15 % at 16 channels and batch 8)
    assert abs(np.mean(ratios) - 1) < 3 * np.std(ratios) / np.sqrt(len(ratios))
    assert np.std(ratios) < 0.3


def test_vgg11_without_bn_vanishes_under_torch_default_and_is_healthy_under_kaiming():
    images = _batch(8, 3, 32, 32)
    report = initlab.check(vgg11(), images)
    assert report.verdict_forward == "vanishing" and report.verdict_backward == "vanishing"
    finding = _kinds(report)["torch-default-init"]
    assert finding.factor == pytest.approx(1 / 6, rel=0.12) and len(finding.layers) == 10
    assert initlab.check(initlab.apply_init(vgg11(), "kaiming", seed=0), images).healthy


def test_vgg11_with_bn_is_healthy_under_kaiming_and_its_buffers_and_modes_are_restored():
    model = initlab.apply_init(vgg11(batch_norm=True), "kaiming", seed=0)
    model.eval()
    before = {name: value.clone() for name, value in model.state_dict().items()}
    rng = torch.get_rng_state()
    report = initlab.check(model, _batch(8, 3, 32, 32), mode="train")
    assert report.healthy, report.text()
    assert report.mode == "train" and report.result.config["normalization_mode"] == "train"
    assert all(not m.training for m in model.modules())
    assert all(torch.equal(before[name], value) for name, value in model.state_dict().items())
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    # eval mode: running statistics (0 and 1 at init) do not normalize, so the BN net is the plain one
    eval_report = initlab.check(vgg11(batch_norm=True), _batch(8, 3, 32, 32), mode="eval")
    assert eval_report.verdict_forward == "vanishing"


def test_vit_like_model_is_healthy_and_its_blocks_form_one_residual_stream():
    torch.manual_seed(0)
    report = initlab.check(ViT(depth=4), _batch(4, 3, 32, 32))
    assert report.healthy, report.text()
    assert len(report.streams) == 1 and report.streams["sums"].iloc[0] == 8  # attention + MLP per block
    layers = report.to_frame().set_index("name")
    assert layers.loc["blocks.0.mlp.2", "link_in"] == "smooth"  # the GELU's factor by quadrature
    assert layers.loc["blocks.0.mlp.0", "in_residual_branch"]


def test_mixer_like_model_is_healthy_with_one_stream_through_transposed_token_mixing():
    torch.manual_seed(0)
    report = initlab.check(Mixer(depth=4), _batch(4, 3, 32, 32))
    assert report.healthy, report.text()
    assert len(report.streams) == 1 and report.streams["sums"].iloc[0] == 8
    assert report.to_frame().set_index("name").loc["blocks.0.token_mlp.0", "kind"] == "linear"


def test_smooth_activation_factors_match_monte_carlo():
    z = _batch(2_000_000) * math.sqrt(0.7)
    for function in (torch.nn.functional.gelu, torch.tanh, torch.nn.functional.silu):
        forward, backward = _smooth_factors(function, (z,), {}, torch.tensor(0.7))
        y = z.clone().requires_grad_(True)
        out = function(y)
        (slope,) = torch.autograd.grad(out.sum(), y)
        assert forward.item() == pytest.approx((out.detach().square().mean() / 0.7).item(), rel=0.01)
        assert backward.item() == pytest.approx(slope.square().mean().item(), rel=0.01)


# -- inputs, outputs and odd modules --------------------------------------------------------------


def test_dict_inputs_dataclass_outputs_shared_modules_and_frozen_weights():
    from dataclasses import dataclass

    @dataclass
    class Output:
        logits: torch.Tensor

    class TwoInputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.shared, self.act, self.head = nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4)
            self.head.weight.requires_grad_(False)

        def forward(self, image, extra):
            hidden = self.act(self.shared(image))
            hidden = self.act(self.shared(hidden + extra))  # the same weights twice
            return Output(self.head(hidden))

    model = initlab.apply_init(TwoInputs(), "kaiming", seed=0)
    report = initlab.check(model, lambda: {"image": _batch(16, 32), "extra": _batch(16, 32, seed=1)})
    names = list(report.to_frame()["name"])
    assert names == ["shared", "shared#2", "head"]
    assert np.isnan(report.result.to_frame().set_index("name").loc["head", "weight_grad_variance"])  # frozen
    assert report.healthy, report.text()


def test_report_assert_healthy_html_plot_and_json():
    bad = initlab.check(_conv_stack(depth=10), _batch(8, 3, 16, 16))
    with pytest.raises(UnhealthyInitError, match="PyTorch's default init"):
        bad.assert_healthy()
    assert "UNHEALTHY" in bad._repr_html_() and "<table" in bad._repr_html_()
    figure = bad.plot()
    assert len(figure.axes) == 2
    document = json.loads(json.dumps(bad.to_dict()))
    assert document["healthy"] is False and document["findings"][0]["kind"] == "torch-default-init"
    initlab.check(initlab.apply_init(_conv_stack(depth=10), "kaiming", seed=0), _batch(8, 3, 16, 16)).assert_healthy()


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="direction must be one of forward, backward"):
        initlab.check(_conv_stack(depth=4), _batch(2, 3, 8, 8), direction="sideways")
    with pytest.raises(ValueError, match="mode must be one of train, eval, as-is"):
        initlab.check(_conv_stack(depth=4), _batch(2, 3, 8, 8), mode="test")
    with pytest.raises(ValueError, match="example_input must be a tensor"):
        initlab.check(_conv_stack(depth=4), "pixels")
    with pytest.raises(ValueError, match="input factory raised"):
        initlab.check(_conv_stack(depth=4), lambda: 1 / 0)


# -- the command line -----------------------------------------------------------------------------

NET = '''
import torch
from torch import nn

def default_net():
    layers = [nn.Conv2d(3, 16, 3, padding=1), nn.ReLU()]
    for _ in range(12):
        layers += [nn.Conv2d(16, 16, 3, padding=1), nn.ReLU()]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))

def kaiming_net():
    net = default_net()
    for module in net.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            nn.init.zeros_(module.bias)
    return net

def batch():
    return (torch.randn(4, 3, 16, 16),)
'''


def test_cli_exit_codes_gate_ci(tmp_path, capsys):
    path = tmp_path / "net.py"
    path.write_text(NET)
    assert main(["check", f"{path}:default_net", "--input-shape", "3,16,16"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("UNHEALTHY") and "PyTorch's default init" in out and "fix: kaiming" in out
    assert main(["check", f"{path}:kaiming_net", "--input-factory", f"{path}:batch", "--out", str(tmp_path / "o")]) == 0
    assert capsys.readouterr().out.startswith("HEALTHY")
    assert {p.name for p in (tmp_path / "o").iterdir()} == {"check.json", "layers.csv", "check.png"}
    assert main(["check", f"{path}:default_net", "--input-shape", "3,16,16", "--init", "kaiming",
                 "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["healthy"] is True
    for argv in (["check", f"{path}:missing", "--input-shape", "3,16,16"], ["check", f"{path}:default_net"],
                 ["check", f"{path}:default_net", "--input-shape", "3,16,16", "--direction", "up"],
                 ["check", f"{path}:default_net", "--input-shape", "3,9,x"]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_cli_check_of_a_user_factory_is_reproducible(tmp_path, capsys):
    path = tmp_path / "net.py"
    path.write_text(NET)
    documents = []
    for _ in range(2):
        assert main(["check", f"{path}:default_net", "--input-shape", "3,16,16", "--format", "json"]) == 1
        documents.append(json.loads(capsys.readouterr().out))
    assert documents[0]["summary"] == documents[1]["summary"]
    assert documents[0]["layers"][1]["var_w"] == documents[1]["layers"][1]["var_w"]


# -- real models, when their libraries are installed ----------------------------------------------


def test_torchvision_resnet18_is_healthy():
    models = pytest.importorskip("torchvision.models")
    report = initlab.check(models.resnet18(num_classes=10), _batch(2, 3, 64, 64))
    assert report.healthy, report.text()


def test_timm_vit_is_healthy():
    timm = pytest.importorskip("timm")
    report = initlab.check(timm.create_model("vit_tiny_patch16_224", num_classes=10, img_size=64),
                           _batch(2, 3, 64, 64))
    assert report.healthy, report.text()


# -- false alarms that the data flow and sampling error remove ------------------------------------


def _plain_input_gradient_second_moment(network: nn.Module, x: torch.Tensor, seed: int = 0) -> float:
    """Plain autograd: E[Δx²] at ``x`` for the backward of ⟨network(x), g⟩, g drawn as the probe draws
    its output direction for ``seed``."""
    from initlab.schemes import DIRECTION_STREAM, stream_seed
    x = x.detach().requires_grad_(True)
    output = network(x)
    direction = torch.randn(output.shape, generator=torch.Generator().manual_seed(stream_seed(seed, DIRECTION_STREAM)))
    (grad,) = torch.autograd.grad(output, x, direction)
    return grad.double().square().mean().item()


def test_a_net_fed_by_an_embedding_has_finite_gradients_equal_to_plain_autograd():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(100, 64), nn.LayerNorm(64), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64),
                          nn.ReLU(), nn.Linear(64, 64))
    initlab.apply_init(model, "kaiming", seed=0)
    ids = torch.randint(0, 100, (8, 16), generator=torch.Generator().manual_seed(0))
    report = initlab.check(model, ids)
    assert report.healthy and report.verdict_backward == "healthy", report.text()
    assert "unnormalized-input" not in _kinds(report)  # the first layer is fed by the embedding, not the input
    hidden = model[1](model[0](ids)).detach()  # the first Linear's input
    measured = report.result.to_frame().set_index("name").loc["2", "grad_var"]
    np.testing.assert_allclose(measured, _plain_input_gradient_second_moment(model[2:], hidden), rtol=1e-4)


def test_a_unit_gaussian_batch_never_reads_as_unnormalized_input():
    model = initlab.apply_init(initlab.mlp(depth=3, width=64, input_shape=(784,)), "kaiming", seed=0)
    fired = [seed for seed in range(20)
             if "unnormalized-input" in _kinds(initlab.check(model, _batch(8, 784, seed=seed)))]
    assert fired == []
    offset = _batch(8, 784) + 3.0  # a real offset still reads: channel means 3σ beyond sampling error
    assert "unnormalized-input" in _kinds(initlab.check(model, offset))


@pytest.mark.parametrize("groups, call, expected", [
    (256, lambda w: nn.init.kaiming_normal_(w, mode="fan_in"), "kaiming"),
    (256, lambda w: nn.init.kaiming_uniform_(w, mode="fan_in"), "kaiming"),
    (256, lambda w: nn.init.kaiming_normal_(w, mode="fan_out"), "kaiming:mode=fan_out(torch)"),
    (256, lambda w: nn.init.kaiming_uniform_(w, mode="fan_out"), "kaiming:mode=fan_out(torch)"),
    (256, None, "torch-default"),
    # depthwise, torch's Xavier 2·9/(9 + 9·256) equals its fan_out Kaiming 2/256 within 0.4 %: groups of 4 tell them apart
    (4, lambda w: nn.init.xavier_normal_(w), "xavier(torch)"),
    (4, lambda w: nn.init.xavier_uniform_(w), "xavier(torch)"),
    (4, lambda w: nn.init.kaiming_normal_(w, mode="fan_out"), "kaiming:mode=fan_out(torch)"),
    (4, None, "torch-default"),
])
def test_torch_inits_of_grouped_and_depthwise_convs_are_identified_groups_included(groups, call, expected):
    torch.manual_seed(0)
    conv = nn.Conv2d(256, 256, 3, padding=1, groups=groups)  # fan_in 9·256/g; torch's fan_out 9·256 (groups ignored)
    if call is not None:
        call(conv.weight)
    model = nn.Sequential(nn.Conv2d(3, 256, 1), nn.ReLU(), conv, nn.ReLU(), nn.Conv2d(256, 8, 1))
    report = initlab.check(model, _batch(4, 3, 8, 8))
    assert report.to_frame().set_index("name").loc["2", "init"] == expected


def test_the_readme_check_example_of_a_plain_conv_net_prints_what_it_shows(tmp_path, capsys):
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme[readme.index("With `nets.py` holding"):]
    (tmp_path / "nets.py").write_text(section.split("```python\n", 1)[1].split("```", 1)[0])
    shown = section.split("```\n$ initlab check nets.py:build_net", 1)[1].split("$ echo $?", 1)[0].splitlines()[1:]
    assert main(["check", f"{tmp_path / 'nets.py'}:build_net", "--input-shape", "3,32,32"]) == 1
    assert capsys.readouterr().out.splitlines() == shown


def test_a_first_layer_fed_an_input_that_needs_no_gradient_is_measured_not_non_finite():
    import torch.nn.functional as F

    class OneHot(nn.Module):
        def __init__(self):
            super().__init__()
            self.first, self.second = nn.Linear(10, 32), nn.Linear(32, 10)

        def forward(self, ids):
            return self.second(torch.relu(self.first(F.one_hot(ids, 10).float())))

    torch.manual_seed(0)
    model = initlab.apply_init(OneHot(), "kaiming", seed=0)
    ids = torch.randint(0, 10, (16,), generator=torch.Generator().manual_seed(0))
    report = initlab.check(model, ids)
    assert report.healthy, report.text()
    rest = nn.Sequential(model.first, nn.ReLU(), model.second)  # the model after its one-hot
    measured = report.result.to_frame().set_index("name").loc["first", "grad_var"]
    np.testing.assert_allclose(measured, _plain_input_gradient_second_moment(rest, F.one_hot(ids, 10).float()),
                               rtol=1e-4)


def test_each_layer_verdict_is_its_chain_gain_against_the_interval_the_plot_draws():
    report = initlab.check(_conv_stack(depth=32), _batch(8, 3, 32, 32))
    layers = report.to_frame()
    for direction in ("forward", "backward"):
        gain = layers[f"log10_{direction}_gain_layers"]
        inside = (gain >= layers[f"healthy_{direction}_low"] - 1e-12) & (gain <= layers[f"healthy_{direction}_high"] + 1e-12)
        assert ((layers[f"verdict_{direction}"] == "healthy") == inside).all(), direction
    # the band is at least ±1 decade everywhere and widens with depth (finite-width wandering)
    width = layers["healthy_forward_high"] - layers["healthy_forward_low"]
    assert (width >= 2 - 1e-9).all() and width.iloc[-2] > width.iloc[2]
    figure = report.plot()
    assert len(figure.axes[0].collections) >= 1  # the per-layer band is drawn, not a fixed ±1 strip


def test_examples_collapsing_under_default_init_are_named_and_he_nets_that_train_are_not():
    # PyTorch's default init: the biases carry the signal, every example's output alike (0.9999);
    # He's init reaches 0.97 after 8 layers, VGG-11 (five max-pools, no normalization) 0.98, a conv
    # stack's global average pool 0.9994: none of these is a collapse.
    import architectures
    x = _batch(4, 3, 16, 16)
    default = initlab.check(initlab.plain_net(depth=8, width=8, input_shape=(3, 16, 16), stages=2), x)
    finding = _kinds(default)["examples-collapse"]
    assert finding.severity == "error" and finding.factor > 0.999 and "indistinguishable" in finding.message
    assert default.gains["collapse_decades"] > 2
    kaiming = initlab.apply_init(initlab.plain_net(depth=8, width=8, input_shape=(3, 16, 16), stages=2), "kaiming")
    assert "examples-collapse" not in _kinds(initlab.check(kaiming, x))
    images = _batch(2, 3, 32, 32)
    assert "examples-collapse" in _kinds(initlab.check(architectures.vgg11(), images))
    vgg = initlab.check(initlab.apply_init(architectures.vgg11(), "kaiming", seed=0), images)
    assert vgg.gains["verdict_correlation"] == "healthy" and vgg.gains["collapse_decades"] < 1.5
    pooled = initlab.check(initlab.apply_init(_conv_stack(depth=10), "kaiming", seed=0), _batch(8, 3, 16, 16))
    assert pooled.gains["example_correlation"] > 0.999 and pooled.healthy, pooled.text()
