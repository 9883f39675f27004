"""Init schemes against torch.nn.init (same generator → same tensor) and against their stated variance."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import initlab
from initlab import schemes
from initlab.layers import fans
from initlab.schemes import apply_init


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


SHAPES = [(64, 32), (32, 16, 3, 3), (8, 4, 5)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("mode", ["fan_in", "fan_out"])
@pytest.mark.parametrize("slope", [0.0, 0.25])
def test_kaiming_draws_exactly_what_torch_draws(shape, mode, slope):
    fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
    for dist, reference in (("normal", nn.init.kaiming_normal_), ("uniform", nn.init.kaiming_uniform_)):
        ours = schemes.kaiming_(torch.empty(shape), fan_in=fan_in, fan_out=fan_out, slope=slope, mode=mode, dist=dist,
                                generator=_gen(1))
        theirs = reference(torch.empty(shape), a=slope, mode=mode, nonlinearity="leaky_relu", generator=_gen(1))
        torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=0)


@pytest.mark.parametrize("shape", SHAPES)
def test_xavier_and_xavier_fanin_draw_exactly_what_torch_draws(shape):
    fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
    torch.testing.assert_close(schemes.xavier_(torch.empty(shape), fan_in=fan_in, fan_out=fan_out, generator=_gen(2)),
                               nn.init.xavier_normal_(torch.empty(shape), generator=_gen(2)), rtol=1e-6, atol=0)
    torch.testing.assert_close(schemes.xavier_(torch.empty(shape), fan_in=fan_in, fan_out=fan_out, dist="uniform",
                                               generator=_gen(2)),
                               nn.init.xavier_uniform_(torch.empty(shape), generator=_gen(2)), rtol=1e-6, atol=0)
    # Var = 1/fan_in is torch's kaiming_normal_ with the 'linear' gain of 1
    torch.testing.assert_close(schemes.xavier_fanin_(torch.empty(shape), fan_in=fan_in, generator=_gen(3)),
                               nn.init.kaiming_normal_(torch.empty(shape), nonlinearity="linear", generator=_gen(3)),
                               rtol=1e-6, atol=0)


def test_normal_and_orthogonal_draw_exactly_what_torch_draws():
    torch.testing.assert_close(schemes.normal_(torch.empty(32, 16), std=0.01, generator=_gen(4)),
                               nn.init.normal_(torch.empty(32, 16), 0.0, 0.01, generator=_gen(4)))
    for shape in [(16, 64), (64, 16), (8, 4, 3, 3)]:
        torch.testing.assert_close(schemes.orthogonal_(torch.empty(shape), slope=0.25, generator=_gen(5)),
                                   nn.init.orthogonal_(torch.empty(shape), gain=math.sqrt(2 / 1.0625),
                                                       generator=_gen(5)))


def test_torch_default_is_pytorchs_own_reset_parameters():
    torch.manual_seed(0)
    ours = initlab.plain_net(depth=6, width=4, input_shape=(3, 8, 8))
    reference = initlab.plain_net(depth=6, width=4, input_shape=(3, 8, 8))
    initlab.apply_init(ours, "torch-default", seed=3)
    torch.default_generator.manual_seed(schemes.stream_seed(3, schemes.INIT_STREAM))
    for module in reference.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            module.reset_parameters()
    for a, b in zip(ours.state_dict().values(), reference.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


SPECS = ["kaiming", "kaiming:mode=fan_out", "kaiming:a=0.25,dist=uniform", "xavier", "xavier:dist=uniform",
         "xavier-fanin", "torch-default", "normal:0.01", "orthogonal"]


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("layer", [nn.Linear(300, 500), nn.Conv2d(48, 96, 3), nn.Conv1d(40, 80, 5, groups=4)],
                         ids=["linear", "conv2d", "conv1d-groups"])
def test_nominal_variance_matches_the_sampled_weights(spec, layer):
    scheme = schemes.parse_scheme(spec)
    torch.manual_seed(0)
    net = nn.Sequential(layer, nn.ReLU())
    schemes.apply_init(net, scheme, seed=11)
    fan_in, fan_out = fans(layer)
    nominal = scheme.weight_variance(tuple(layer.weight.shape), fan_in, fan_out, 0.0)
    sampled = layer.weight.square().mean().item()
    count = layer.weight.numel()
    # second moment of N i.i.d. draws: relative std √(2/N) (normal) or √(0.8/N) (uniform); 5σ
    assert sampled == pytest.approx(nominal, rel=5 * math.sqrt(2 / count))
    bias = layer.bias.square().mean().item()
    if scheme.name == "torch-default":
        assert bias == pytest.approx(scheme.bias_variance(fan_in, True), rel=5 * math.sqrt(0.8 / layer.bias.numel()))
    else:
        assert bias == 0.0


def test_grouped_conv_fans_divide_by_groups():
    assert fans(nn.Conv2d(32, 64, 3, groups=4)) == (9 * 8, 9 * 16)
    assert fans(nn.Linear(7, 3)) == (7, 3)


def test_kaiming_is_slope_aware_for_prelu_nets():
    net = initlab.mlp(depth=4, width=512, act="prelu")
    initlab.apply_init(net, "kaiming", seed=0)
    assert net[1].weight.var().item() == pytest.approx(2 / (1.0625 * 512), rel=0.02)
    initlab.apply_init(net, "kaiming:a=0", seed=0)
    assert net[1].weight.var().item() == pytest.approx(2 / 512, rel=0.02)
    net_leaky = initlab.mlp(depth=3, width=512, act="leaky:0.5")
    initlab.apply_init(net_leaky, "kaiming", seed=0)
    assert net_leaky[3].weight.var().item() == pytest.approx(2 / (1.25 * 512), rel=0.02)


def test_same_seed_same_weights_and_global_rng_untouched():
    a, b = initlab.mlp(depth=3, width=32), initlab.mlp(depth=3, width=32)
    state = torch.get_rng_state()
    initlab.apply_init(a, "kaiming", seed=7)
    initlab.apply_init(b, "kaiming", seed=7)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    initlab.apply_init(b, "torch-default", seed=7)
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("spec,message", [
    ("kaimin", "did you mean 'kaiming'"),
    ("kaiming:mode=fanin", "mode must be one of fan_in, fan_out"),
    ("kaiming:b=1", "unknown option 'b'"),
    ("normal", "needs its std"),
    ("normal:-1", "positive finite number"),
    ("normal:abc", "not a number"),
    ("xavier:0.1", "needs key=value"),
])
def test_bad_scheme_specs_raise_a_clear_error(spec, message):
    with pytest.raises(ValueError, match=message):
        schemes.parse_scheme(spec)


@given(st.sampled_from(SPECS))
def test_canonical_spec_parses_back_to_the_same_scheme(spec):
    scheme = schemes.parse_scheme(spec)
    assert schemes.parse_scheme(str(scheme)) == scheme


@given(st.integers(0, 2 ** 40), st.integers(0, 5))
def test_stream_seeds_are_valid_and_distinct_per_stream(seed, stream):
    value = schemes.stream_seed(seed, stream)
    assert 0 <= value < 2 ** 63
    assert value != schemes.stream_seed(seed, stream + 1)


@pytest.mark.parametrize("spec", ["kaiming", "torch-default", "orthogonal", "normal:0.02"])
def test_same_seed_same_weights_across_dtypes(spec):
    single, double = initlab.mlp(depth=3, width=16), initlab.mlp(depth=3, width=16).double()
    initlab.apply_init(single, spec, seed=1)
    initlab.apply_init(double, spec, seed=1)
    for a, b in zip(single.parameters(), double.parameters()):
        torch.testing.assert_close(a.double(), b, rtol=0, atol=0)


def test_kaiming_balances_the_gelu_actually_there_and_the_signal_holds_over_depth():
    from initlab.activations import activation_factor
    torch.manual_seed(0)
    layers = []
    for _ in range(20):
        layers += [nn.Linear(512, 512), nn.GELU()]
    model = nn.Sequential(*layers[:-1])
    apply_init(model, "kaiming", seed=0)
    gelu = activation_factor(nn.GELU())
    assert gelu == pytest.approx(0.425, abs=1e-3)
    sampled = model[2].weight.detach().square().mean().item()
    assert sampled == pytest.approx(1.0 / (gelu * 512), rel=0.02)  # He's c·n·Var[w] = 1 with c of GELU, not ½
    x = torch.randn(256, 512, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():  # plain torch: E[y²] of the last layer over the first's
        first = model[0](x)
        last = model(x)
    ratio = (last.square().mean() / first.square().mean()).item()
    assert 0.5 < ratio < 2.0


def test_apply_init_leaves_tied_weights_alone_and_names_what_it_does_not_draw():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(50, 16)
            self.hidden = nn.Linear(16, 16)
            self.raw = nn.Parameter(torch.randn(16, 16))
            self.head = nn.Linear(16, 50, bias=False)
            self.head.weight = self.embed.weight

        def forward(self, ids):
            return self.head(self.hidden(self.embed(ids)) @ self.raw)

    model = Tied()
    table, raw = model.embed.weight.detach().clone(), model.raw.detach().clone()
    with pytest.warns(UserWarning, match=r"1 weight parameter\(s\) are left as they are \(raw\)"):
        apply_init(model, "kaiming", seed=0)
    assert torch.equal(model.embed.weight, table) and torch.equal(model.raw, raw)
    assert model.hidden.weight.detach().square().mean().item() == pytest.approx(2 / 16, rel=0.35)


@pytest.mark.parametrize("act", ["relu", "prelu", "leaky:0.2"])
def test_kaiming_from_a_trace_equals_kaiming_by_module_order_on_a_plain_net(act):
    torch.manual_seed(0)
    by_modules = initlab.plain_net(depth=8, width=8, act=act)
    traced = initlab.plain_net(depth=8, width=8, act=act)
    traced.load_state_dict(by_modules.state_dict())
    apply_init(by_modules, "kaiming", seed=3)
    apply_init(traced, "kaiming", seed=3, example_input=torch.randn(2, 3, 32, 32))
    for a, b in zip(by_modules.state_dict().values(), traced.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=0)
