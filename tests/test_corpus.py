"""``initlab check`` on real architectures: Hugging Face models as the library initializes them are
healthy, broken variants are unhealthy for the named reason, every weight layer is covered, and the
numbers behind each verdict equal a plain-PyTorch measurement (``corpus.reference_statistics``)."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import initlab
from initlab.schemes import DIRECTION_STREAM, stream_seed

sys.path.insert(0, str(Path(__file__).parent))
pytest.importorskip("transformers")
import corpus  # noqa: E402

SEED = 0


def _second_moment_hook(captured, key, of="output"):
    """A forward hook that keeps E[·²] (or the mean per-row variance) of a module's input or output."""
    def hook(module, args, output):
        value = (args[0] if of != "output" else output).detach().double()
        captured.setdefault(key, value.var(dim=-1).mean().item() if of == "input-variance"
                            else value.square().mean().item())
    return hook


def _kinds(report):
    return {f.kind for f in report.findings}


@pytest.mark.parametrize("name", corpus.HEALTHY)
def test_real_models_as_their_library_initializes_them_are_healthy_and_fully_covered(name):
    model, example = corpus.build(name)
    report = initlab.check(model, example)
    assert report.healthy, report.text()
    assert not [f for f in report.findings if f.severity == "error"]
    coverage = report.result.coverage
    assert coverage.uncovered == (), coverage.text()
    assert len(coverage.covered) == len(report.layers["name"].str.split("#").str[0].unique())
    assert report.text().count("coverage: ") == 1


@pytest.mark.parametrize("name", corpus.HEALTHY + corpus.BROKEN_AS_BUILT)
def test_measured_second_moments_equal_a_plain_pytorch_measurement(name):
    model, example = corpus.build(name)
    model.train()
    reference = corpus.reference_statistics(model, example, stream_seed(SEED, DIRECTION_STREAM))
    model, example = corpus.build(name)  # fresh: the reference pass moved BatchNorm's running statistics
    model.train()
    frame = initlab.probe(model, example, seeds=[SEED]).to_frame().set_index("name")
    assert set(reference) <= set(frame.index), set(reference) - set(frame.index)
    # float32 statistics: a second moment below ~1e-38 (EfficientNet's vanished gradients) underflows to 0
    tolerance = {"rtol": 2e-4, "atol": 1e-30}
    for layer, expected in reference.items():
        row = frame.loc[layer]
        np.testing.assert_allclose(row["input_second_moment"], expected["input"], err_msg=layer, **tolerance)
        np.testing.assert_allclose(row["var_y"], expected["output"], err_msg=layer, **tolerance)
        np.testing.assert_allclose(row["grad_output_second_moment"], expected["grad_output"], err_msg=layer,
                                   **tolerance)


def test_transformers_with_unit_gaussian_weights_have_an_exploding_stream_and_saturated_attention():
    for name in ("gpt2", "llama", "vit"):
        model, example = corpus.build(name)
        corpus.redraw_weights(model, 1.0)
        report = initlab.check(model, example)
        assert not report.healthy, name
        assert {"residual-stream-growth", "attention-saturated"} <= _kinds(report), (name, report.text())
        assert report.result.coverage.uncovered == ()


def test_a_small_stream_start_under_large_branches_is_a_jump_not_growth():
    class Block(nn.Module):  # pre-norm: the branch's size does not depend on the stream's
        def __init__(self):
            super().__init__()
            self.norm, self.fc1, self.fc2 = nn.LayerNorm(128), nn.Linear(128, 128), nn.Linear(128, 128)

        def forward(self, x):
            return x + self.fc2(torch.relu(self.fc1(self.norm(x))))

    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(1000, 128), *[Block() for _ in range(8)], nn.LayerNorm(128), nn.Linear(128, 10))
    initlab.apply_init(model, "kaiming", seed=0)
    nn.init.normal_(model[0].weight, std=0.02)  # an embedding at std 0.02, branches at He scale
    ids = torch.randint(0, 1000, (8, 16), generator=torch.Generator().manual_seed(0))
    report = initlab.check(model, ids)
    assert report.healthy, report.text()
    stream = report.streams.iloc[0]
    assert stream["forward_growth"] > 1000  # the first sum jumps from the embedding's 4e-4 to the branch's O(1)
    with torch.no_grad():  # plain torch: after the first sum the stream grows linearly, at most ×K
        h = [model[1](model[0](ids))]
        for block in model[2:9]:
            h.append(block(h[-1]))
    plain = (h[-1].double().square().mean() / h[0].double().square().mean()).item()
    assert plain < 8
    np.testing.assert_allclose(stream["forward_growth_after_first"], plain, rtol=1e-4)


def test_weights_at_std_1e_minus_4_starve_the_layer_norms():
    model, example = corpus.build("gpt2")
    corpus.redraw_weights(model, 1e-4)
    report = initlab.check(model, example)
    assert "normalization-starved" in _kinds(report), report.text()
    assert report.result.coverage.uncovered == ()
    # plain PyTorch: the first LayerNorm's input variance is far below its eps (1e-5)
    captured = {}
    handle = model.transformer.h[0].ln_1.register_forward_hook(_second_moment_hook(captured, "var", "input-variance"))
    with torch.no_grad():
        model(**example)
    handle.remove()
    assert captured["var"] < 1e-6


def test_a_norm_free_transformer_at_he_scale_explodes_and_plain_torch_agrees():
    model, example = corpus.build("gpt2")
    for block in model.transformer.h:
        block.ln_1, block.ln_2 = nn.Identity(), nn.Identity()
    corpus.redraw_weights(model, lambda w: (2.0 / w.shape[0]) ** 0.5)
    report = initlab.check(model, example)
    assert "residual-stream-growth" in _kinds(report), report.text()
    assert report.result.coverage.uncovered == ()
    with torch.no_grad():
        hidden = model(**example, output_hidden_states=True).hidden_states
    plain_growth = (hidden[-2].double().square().mean() / hidden[0].double().square().mean()).item()
    assert plain_growth > 100  # the stream before the final norm, measured with no initlab code


def test_scaling_the_weights_before_batch_norm_changes_no_verdict():
    verdicts = set()
    for scale in (0.03, 0.3, 1.0, 3.0, 30.0):
        model, example = corpus.build("resnet-basic")
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, nn.Conv2d):
                    module.weight.mul_(scale)
        report = initlab.check(model, example)
        verdicts.add((report.healthy, report.verdict_forward, report.verdict_backward,
                      tuple(sorted(_kinds(report)))))
    assert verdicts == {(True, "healthy", "healthy", ())}, verdicts


def test_conv_batchnorm_stack_is_bit_for_bit_scale_free_and_so_are_its_verdicts():
    def stack(scale):
        torch.manual_seed(0)
        layers = []
        for position in range(8):
            conv = nn.Conv2d(3 if position == 0 else 16, 16, 3, padding=1, bias=False)
            nn.init.kaiming_normal_(conv.weight)
            with torch.no_grad():
                conv.weight.mul_(scale)
            layers += [conv, nn.BatchNorm2d(16), nn.ReLU()]
        return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))

    x = torch.randn(8, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    outputs = []
    for scale in (1.0, 0.3, 0.1, 0.03):
        model = stack(scale)
        report = initlab.check(model, x)
        assert report.healthy and report.findings == (), (scale, report.text())
        outputs.append(model(x).detach())
    for output in outputs[1:]:  # plain torch: the scale is normalized away, up to eps/Var ≤ 1e-2 at s = 0.03
        np.testing.assert_allclose(output.numpy(), outputs[0].numpy(), rtol=3e-2, atol=3e-3)


def test_a_plain_vgg_without_batchnorm_under_torch_default_init_vanishes():
    from architectures import vgg11
    torch.manual_seed(0)
    model = vgg11(width=8, batch_norm=False)
    report = initlab.check(model, torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0)))
    assert not report.healthy
    assert "torch-default-init" in _kinds(report), report.text()
    assert report.result.coverage.uncovered == () and len(report.result.coverage.covered) == 11


def test_a_deep_unnormalized_residual_net_under_kaiming_has_an_exploding_stream():
    from architectures import ResNet
    torch.manual_seed(0)
    model = initlab.apply_init(ResNet((16,), width=8, norm=False), "kaiming", seed=0)
    report = initlab.check(model, torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0)))
    assert "residual-stream-growth" in _kinds(report), report.text()
    assert report.result.coverage.uncovered == ()


def test_hugging_face_efficientnet_as_built_vanishes_through_its_small_batchnorm_weights():
    model, example = corpus.build("efficientnet")
    report = initlab.check(model, example)
    assert not report.healthy and report.verdict_forward == "vanishing"
    finding = next(f for f in report.findings if f.kind == "normalization-weight")
    assert finding.factor == pytest.approx(0.02 ** 2, rel=0.2)  # E[γ²] of N(0, 0.02) draws
    assert report.findings[0].kind == "normalization-weight"  # the cause comes first
    # plain PyTorch: the features reaching the classifier are ~0 next to the stem's output
    captured = {}
    model.efficientnet.embeddings.convolution.register_forward_hook(_second_moment_hook(captured, "stem"))
    model.efficientnet.encoder.top_conv.register_forward_hook(_second_moment_hook(captured, "top"))
    model.train()
    model(example)
    assert captured["top"] / captured["stem"] < 1e-12


def test_branch_plus_skip_and_skip_plus_branch_give_the_same_stream_as_plain_torch():
    class Block(nn.Module):
        def __init__(self, first):
            super().__init__()
            self.first, self.fc1, self.fc2 = first, nn.Linear(64, 64), nn.Linear(64, 64)

        def forward(self, x):
            branch = self.fc2(torch.relu(self.fc1(x))) * 0.5  # ends in an op the probe does not follow
            return branch + x if self.first == "branch" else x + branch

    growths = []
    for first in ("branch", "skip"):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(64, 64), *[Block(first) for _ in range(4)], nn.Linear(64, 10))
        initlab.apply_init(model, "kaiming", seed=0)
        x = torch.randn(32, 64, generator=torch.Generator().manual_seed(0))
        result = initlab.probe(model, x)
        sums = result.sums
        assert list(sums["stream"]) == [0, 0, 0, 0]
        growths.append(sums["stream_growth"].iloc[-1])
        with torch.no_grad():  # plain torch: E[s_4²]/E[x_0²] along the stream
            h0 = model[0](x)
            h = h0
            for block in model[1:5]:
                h = block(h)
        plain = (h.double().square().mean() / h0.double().square().mean()).item()
        np.testing.assert_allclose(growths[-1], plain, rtol=1e-4)
    np.testing.assert_allclose(growths[0], growths[1], rtol=1e-5)


def test_gelu_tanh_rotary_and_mask_adds_are_not_residual_sums():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(32, 32), nn.Linear(32, 32)

        def forward(self, x):
            h = self.fc1(x)
            h = 0.5 * h * (1.0 + torch.tanh(0.79788456 * (h + 0.044715 * torch.pow(h, 3.0))))  # GELU-tanh
            rotated = torch.cat([-h[..., 16:], h[..., :16]], dim=-1)
            h = h * 0.9 + rotated * 0.1  # a rotary-style add of two images of one tensor
            return self.fc2(h) + torch.zeros(32)  # a constant (mask-style) add

    result = initlab.probe(Net(), torch.randn(8, 32))
    assert result.sums.empty


def test_functional_layers_mha_conv_transpose_and_raw_matmuls_are_covered_and_named():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.attention = nn.MultiheadAttention(16, 2, batch_first=True)
            self.up = nn.ConvTranspose1d(16, 16, 2, stride=2)
            self.raw = nn.Parameter(torch.randn(16, 16) / 4)
            self.unused = nn.Parameter(torch.randn(16, 16))

        def forward(self, x):
            h, _ = self.attention(x, x, x, need_weights=False)
            h = self.up(h.transpose(1, 2)).transpose(1, 2)
            return h @ self.raw

    torch.manual_seed(0)
    report = initlab.check(Net(), torch.randn(4, 6, 16))
    coverage = report.result.coverage
    assert set(coverage.covered) == {"attention.in_proj", "attention.out_proj", "up", "raw"}
    assert coverage.uncovered == ("unused",)
    assert "4 of 5 weight layers covered; not covered: unused" in report.text()
    frame = report.result.to_frame().set_index("name")
    assert frame.loc["raw", "fan_in"] == 16 and frame.loc["up", "module_type"] == "ConvTranspose1d"


def _readme_text_model() -> tuple[str, list[str]]:
    """The README's text-model example: the ``textnet.py`` it shows and the check output it shows."""
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme[readme.index("**A real transformer.**"):]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    shown = section.split("```\n$ initlab check textnet.py:build", 1)[1].split("```", 1)[0]
    return code, shown.splitlines()[1:]


def test_token_models_check_and_probe_from_the_shell(tmp_path, capsys):
    from initlab.cli import main
    code, shown = _readme_text_model()
    path = tmp_path / "textnet.py"
    path.write_text(code)
    assert main(["check", f"{path}:build", "--input-shape", "16"]) == 0  # token ids in range, length 16
    text = capsys.readouterr().out
    assert text.splitlines() == shown  # the README's output, line for line
    assert "9 of 9 weight layers covered" in text
    assert main(["check", f"{path}:build", "--input-factory", f"{path}:batch"]) == 0
    capsys.readouterr()
    assert main(["probe", "--model", f"{path}:build", "--input-factory", f"{path}:batch", "--seeds", "1",
                 "--format", "json"]) == 0
    import json
    document = json.loads(capsys.readouterr().out)
    assert document["config"]["input_shape"] == [16] and len(document["layers"]) == 9
    assert main(["probe", "--model", f"{path}:build", "--input-shape", "16", "--seeds", "1"]) == 0
    capsys.readouterr()
    assert main(["check", f"{path}:build", "--input-shape", "16", "--init", "kaiming"]) == 0
    assert capsys.readouterr().err == ""  # traced: GPT-2's Conv1D layers are drawn too, nothing is left out


def _bert_attention_plain(model, example):
    """Plain PyTorch: the logits q·kᵀ/√d of every self-attention, from hooks on the query and key Linears."""
    captured, handles = {}, []
    for index, layer in enumerate(model.encoder.layer):
        attention = layer.attention.self
        for part in ("query", "key"):
            handles.append(getattr(attention, part).register_forward_hook(
                lambda m, a, o, key=(index, part): captured.__setitem__(key, o.detach().double()) and None))
    with torch.no_grad():
        model(**example)
    for handle in handles:
        handle.remove()
    heads = model.config.num_attention_heads
    logits = []
    for index in range(len(model.encoder.layer)):
        q, k = (captured[(index, part)] for part in ("query", "key"))
        q, k = (t.view(*t.shape[:2], heads, -1).transpose(1, 2) for t in (q, k))
        logits.append(q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5)
    return logits


def test_unit_gaussian_weights_saturate_attention_and_plain_torch_agrees():
    model, example = corpus.build("bert")
    healthy = initlab.check(model, example)
    assert "attention-saturated" not in _kinds(healthy)
    corpus.redraw_weights(model, 1.0)
    report = initlab.check(model, example)
    assert "attention-saturated" in _kinds(report) and not report.healthy, report.text()
    model.train()
    plain = _bert_attention_plain(model, example)
    measured = report.result.attention["logit_std"].to_numpy()
    actual = np.array([logits.std().item() for logits in plain])
    np.testing.assert_allclose(measured, actual, rtol=0.5)  # independent-q,k estimate: within a factor 1.5
    top = np.mean([logits.softmax(-1).amax(-1).mean().item() for logits in plain])
    assert top > 0.9  # plain torch: each query puts > 90 % of its weight on one key


def test_a_probe_leaves_a_hugging_face_model_exactly_as_found():
    import torch.nn.functional as F
    model, example = corpus.build("gpt2")
    model.eval()
    state = {key: value.clone() for key, value in model.state_dict().items()}
    rng = torch.get_rng_state()
    before = F.has_torch_function
    initlab.check(model, example)
    assert not model.training and all(not m.training for m in model.modules())
    assert all(torch.equal(state[key], value) for key, value in model.state_dict().items())
    assert torch.equal(torch.get_rng_state(), rng) and F.has_torch_function is before
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    assert all(p.grad is None for p in model.parameters())


def test_a_position_beyond_the_model_is_a_one_line_error(tmp_path, capsys):
    from initlab.cli import main
    code, _ = _readme_text_model()
    (tmp_path / "textnet.py").write_text(code)
    assert main(["probe", "--model", f"{tmp_path / 'textnet.py'}:build", "--input-shape", "100", "--seeds", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: the model's forward failed on an input of shape (64, 100): index out of range in self"]


@pytest.mark.parametrize("name", corpus.HEALTHY + corpus.BROKEN_AS_BUILT)
def test_kaiming_from_a_trace_fixes_unit_gaussian_weights_on_every_corpus_model(name):
    model, example = corpus.build(name)
    corpus.redraw_weights(model, 1.0)
    assert not initlab.check(model, example).healthy or name in ("resnet-basic", "resnet-bottleneck", "convnext")
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every weight layer is drawn: no UndrawnWeightsWarning
        initlab.apply_init(model, "kaiming", seed=0, example_input=example)
    report = initlab.check(model, example)
    if name in corpus.BROKEN_AS_BUILT:  # its BatchNorm weights (not weights of a layer) stay N(0, 0.02)
        assert {f.kind for f in report.findings} == {"normalization-weight", "normalization-starved"}
    else:
        assert report.healthy, report.text()


def test_kaiming_from_a_trace_draws_gpt2_conv1d_for_the_activation_next_to_it():
    model, example = corpus.build("gpt2")
    initlab.apply_init(model, "kaiming", seed=0, example_input=example)
    mlp = model.transformer.h[0].mlp
    n = mlp.c_fc.weight.shape[0]  # Conv1D stores (in, out)
    gelu = 0.4252  # E[gelu_new(z)²], z ~ N(0, 1): c_proj is fed by it
    assert mlp.c_fc.weight.detach().square().mean().item() == pytest.approx(1 / n, rel=0.03)  # after a LayerNorm: linear
    assert mlp.c_proj.weight.detach().square().mean().item() == pytest.approx(
        1 / (gelu * mlp.c_proj.weight.shape[0]), rel=0.03)
    assert torch.equal(model.lm_head.weight, model.transformer.wte.weight)  # the tied table is left alone


def test_kaiming_branch_scaled_draws_each_branch_end_at_one_over_k_as_gpt2_does():
    drawn = {}
    for spec in ("kaiming", "kaiming:branch=scaled"):
        model, example = corpus.build("llama")
        initlab.apply_init(model, spec, seed=0, example_input=example)
        layer = model.model.layers[1]
        drawn[spec] = [p.detach().square().mean().item() for p in
                       (layer.self_attn.o_proj.weight, layer.mlp.down_proj.weight, layer.self_attn.q_proj.weight)]
        assert initlab.check(model, example).healthy
    plain, scaled = drawn["kaiming"], drawn["kaiming:branch=scaled"]
    # 8 sums in the stream: each branch's last layer (o_proj, down_proj) at Var/8, the rest as before
    np.testing.assert_allclose([scaled[0] / plain[0], scaled[1] / plain[1], scaled[2] / plain[2]], [1 / 8, 1 / 8, 1],
                               rtol=1e-6)
    with pytest.raises(ValueError, match="give example_input"):
        initlab.apply_init(corpus.build("llama")[0], "kaiming:branch=scaled")
