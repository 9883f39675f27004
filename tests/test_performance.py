"""The performance work's correctness side: batched seed sweeps equal sequential probes, a probe holds no
activation past its hooks, and (where CUDA is present) no host-device sync per layer. The speed and
memory ratios themselves are measured by benchmarks/run.py, not asserted here."""

import gc
import statistics
import subprocess
import sys
import time
import warnings
import weakref
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import initlab
from initlab.probe import ProbeError
from initlab.probe.stacking import StackingError, repeat_input, stack_models

ROOT = Path(__file__).resolve().parents[1]


def _input(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _assert_same_probe(sequential, batched):
    assert len(sequential.frame) > 0
    for name in ("frame", "dead_units", "sums"):
        a, b = getattr(sequential, name), getattr(batched, name)
        assert list(a.columns) == list(b.columns) and len(a) == len(b)
        numeric = a.select_dtypes("number").columns
        # the spread over units is a small difference of per-unit float32 moments, so their
        # ~1e-6 reordering error grows by up to 1/(spread); the bands built on it are compared to 1e-3
        spread = [c for c in numeric if "log_variance" in c]
        numeric = [c for c in numeric if c not in spread]
        # float32 statistics reduced in a different order: agreement to ~1e-6 relative
        np.testing.assert_allclose(b[numeric].to_numpy(float), a[numeric].to_numpy(float), rtol=1e-5, atol=1e-30)
        np.testing.assert_allclose(b[spread].to_numpy(float), a[spread].to_numpy(float), rtol=1e-3, atol=1e-30)
        for column in a.columns.difference(numeric + spread):
            assert a[column].astype(str).tolist() == b[column].astype(str).tolist(), column
    pd.testing.assert_frame_equal(sequential.summary()[["verdict"]], batched.summary()[["verdict"]])


@pytest.mark.parametrize("factory, init, shape", [
    (lambda: initlab.plain_net(depth=10, width=8, input_shape=(3, 16, 16)), "kaiming", (12, 3, 16, 16)),
    (lambda: initlab.plain_net(depth=8, width=4, act="prelu", input_shape=(3, 16, 16)), "kaiming:a=0.25",
     (12, 3, 16, 16)),
    (lambda: initlab.plain_net(depth=8, width=4, act="leaky:0.1", input_shape=(3, 16, 16)), "xavier",
     (12, 3, 16, 16)),
    (lambda: initlab.mlp(depth=6, width=32, input_shape=(3, 8, 8), act="prelu-shared"), "torch-default",
     (20, 3, 8, 8)),
], ids=["plain-relu", "plain-prelu", "plain-leaky", "mlp-prelu-shared"])
def test_batched_seed_sweep_equals_sequential_probes(factory, init, shape):
    x = _input(*shape)
    seeds = [0, 3, 7]
    sequential = initlab.probe(factory, x, init=init, seeds=seeds, batched=False)
    batched = initlab.probe(factory, x, init=init, seeds=seeds, batched=True)
    assert sequential.frame["seed"].unique().tolist() == seeds
    _assert_same_probe(sequential, batched)


def test_batched_sweep_of_a_given_module_uses_its_own_weights_and_leaves_it_untouched():
    torch.manual_seed(1)
    model = initlab.plain_net(depth=6, width=4, input_shape=(3, 8, 8))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x = _input(8, 3, 8, 8)
    _assert_same_probe(initlab.probe(model, x, seeds=3, batched=False), initlab.probe(model, x, seeds=3, batched=True))
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_stacked_model_computes_each_seed_side_by_side():
    models = [initlab.mlp(depth=3, width=6, input_shape=(5,)) for _ in range(3)]
    for seed, model in enumerate(models):
        initlab.apply_init(model, "kaiming", seed=seed)
    stacked, references = stack_models(models)
    x = _input(4, 5)
    expected = torch.cat([model(x) for model in models], dim=1)
    torch.testing.assert_close(stacked(repeat_input(x, 3)), expected, rtol=1e-6, atol=1e-6)
    assert set(references.values()) <= set(models[0].modules())


def test_unstackable_models_get_a_clear_error_or_the_sequential_path():
    sys.path.insert(0, str(ROOT / "tests"))
    from architectures import resnet18

    x = _input(2, 3, 16, 16)
    with pytest.raises(ProbeError, match="batched seeds: only nn.Sequential models can be stacked.*batched=False"):
        initlab.probe(resnet18, x, seeds=2, batched=True)
    assert len(initlab.probe(resnet18, x, seeds=2).frame) > 0  # auto: sequential on a CPU, no error
    with pytest.raises(StackingError, match="train-mode dropout"):
        stack_models([nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.5))] * 2)


def test_a_probe_holds_no_activation_past_its_hooks():
    # A late conv's output must be freed once the backward has passed it: when the first layer's
    # weight gradient is computed, nothing of the probe still references it.
    torch.manual_seed(0)
    model = initlab.plain_net(depth=12, width=8, input_shape=(3, 16, 16))
    late = [m for m in model if isinstance(m, nn.Conv2d)][-2]
    references, alive_at_first_layer = [], []
    forward_handle = late.register_forward_hook(lambda module, args, output: references.append(weakref.ref(output)))
    grad_handle = model[0].weight.register_hook(
        lambda grad: alive_at_first_layer.append(gc.collect() >= 0 and references[-1]() is not None))
    try:
        initlab.probe(model, _input(8, 3, 16, 16))
    finally:
        forward_handle.remove()
        grad_handle.remove()
    assert alive_at_first_layer == [False]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="runs where CUDA is present")
def test_cuda_probe_synchronizes_no_more_with_more_layers_and_batched_equals_sequential():
    x = _input(16, 3, 16, 16).cuda()

    def syncs(depth):
        model = initlab.plain_net(depth=depth, width=8, input_shape=(3, 16, 16)).cuda()
        initlab.probe(model, x)  # warm-up: one-time copies (quadrature nodes, kernels)
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                initlab.probe(model, x)
        finally:
            torch.cuda.set_sync_debug_mode("default")
        return sum("synchroniz" in str(w.message) for w in caught)

    assert syncs(20) == syncs(8)  # the count per probe does not grow with depth: zero per layer
    factory = lambda: initlab.plain_net(depth=8, width=8, input_shape=(3, 16, 16))
    # TF32 convolutions (cuDNN's default) round products to 10-bit mantissas: grouped and plain
    # convolutions then differ by up to 5e-2 in a weight-gradient variance (measured on an H100).
    # In float32 they agree to 5e-7, and with the CPU to 1.3e-6.
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        on_gpu = initlab.probe(factory, x, init="kaiming", seeds=4, batched=False, device="cuda")
        _assert_same_probe(on_gpu, initlab.probe(factory, x, init="kaiming", seeds=4, device="cuda"))  # auto: batched
        _assert_same_probe(on_gpu, initlab.probe(factory, x.cpu(), init="kaiming", seeds=4, device="cpu"))
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32


def test_the_gpu_reductions_give_the_cpu_numbers(monkeypatch):
    """The GPU path (one Welford ``var_mean`` per statistic, the units' norms; run here on the CPU)
    equals the CPU path (dot products, sums, per-row norms) on plain, batched, PReLU and
    residual nets, with and without the elementwise variances."""
    reductions = sys.modules["initlab.probe.reductions"]
    sys.path.insert(0, str(ROOT / "tests"))
    from architectures import resnet18

    x = _input(8, 3, 16, 16)
    cases = [(lambda: initlab.plain_net(depth=8, width=8, input_shape=(3, 16, 16)), "kaiming", False),
             (lambda: initlab.plain_net(depth=8, width=4, act="prelu", input_shape=(3, 16, 16)), "kaiming", True),
             (lambda: resnet18(width=8), "kaiming", False)]
    for (factory, init, batched), variances in zip(cases, (False, True, True)):
        reference = initlab.probe(factory, x, init=init, seeds=2, batched=batched, elementwise_variances=variances)
        with monkeypatch.context() as patch:
            patch.setattr(reductions, "_uses_welford", lambda data: True)
            welford = initlab.probe(factory, x, init=init, seeds=2, batched=batched, elementwise_variances=variances)
        _assert_same_probe(reference, welford)
        assert welford.frame["output_variance"].notna().all() == variances


def test_benchmark_script_runs_and_reports_each_ratio_against_its_target(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--only",
                             "probe,host,sweep,ops,widths", "--json", str(tmp_path / "bench.json")],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode in (0, 1), result.stderr
    import json
    rows = json.loads((tmp_path / "bench.json").read_text())
    # the host figure is printed with no target and does not count towards the exit code; a target
    # out of reach on this machine (a bound measured in the same run) does not either
    assert [row["target"] for row in rows] == ["≤ 1.05", "≥ 1.5"] + [None] * 8
    # the probe's ≤ 1.05 is never excused; the sweep's ≥ 1.5 may be, by the bound measured beside it
    assert rows[0]["met"] is not None and all(row["met"] is None for row in rows[2:])
    ops = {row["name"]: row["value"] for row in rows if row["name"].startswith("device ops")}
    assert list(ops) == ["device ops per pass, plain-30", "device ops per pass, ResNet-50",
                         "device ops per pass, transformer 4×128"] and min(ops.values()) > 100
    assert all(row["value"] > 0 for row in rows)
    widths = {row["name"]: row["value"] for row in rows if row["name"].startswith("widths")}
    assert list(widths) == [f"widths transformer d={d} 8×16: {name}" for d in (64, 128)
                            for name in ("monitor hooks (fwd+bwd)", "initlab probe")]
    # the probe records every layer call (both sides, and the norms, sums and attention): slower than a bare pass
    assert all(value > 1.0 for name, value in widths.items() if name.endswith("initlab probe"))
    assert all(row["status"] == ("met" if row["met"] else row["status"]) for row in rows if row["target"])
    assert all(row["status"] in ("met", "missed", "out of reach") for row in rows if row["target"])
    assert "info host work per probe" in result.stdout and "any batching ≤ ×" in result.stdout
    assert "one read per tensor ×" in result.stdout and "page faults per pass: bare " in result.stdout
    assert "allocator system" in result.stdout.splitlines()[0]
    assert result.returncode == (1 if any(row["status"] == "missed" for row in rows) else 0)
    bad = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--only", "nothing"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown benchmark nothing" in bad.stderr


def test_benchmark_peers_judge_each_model_and_print_the_paired_ratio_and_the_statistics_time(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--only", "peers",
                             "--device", "cpu", "--json", str(tmp_path / "bench.json")],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode in (0, 1), result.stderr
    import json
    rows = json.loads((tmp_path / "bench.json").read_text())
    judged = [row for row in rows if row["target"]]
    assert [row["name"] for row in judged] == ["probe vs peers, plain-30 b64", "probe vs peers, ResNet-50 b2 112²",
                                               "probe vs peers, transformer 4×128 b8"]
    assert all(row["target"].startswith("≤ fwd+bwd peer ") for row in judged)
    statistics_ms = [row["value"] for row in rows if row["name"].endswith("the probe's statistics ops (ms)")]
    assert len(statistics_ms) == 3 and all(value > 0 for value in statistics_ms)
    lines = [line for line in result.stdout.splitlines() if line[:5] in ("ok   ", "MISS ") and "probe vs peers" in line]
    assert len(lines) == 3
    for line, row in zip(lines, judged):
        paired = line.split("probe / monitor within each round: median ")[1]
        median, below = float(paired.split(",")[0]), paired.split("≤ 1 in ")[1].split(" ")
        assert median > 0 and 0 <= int(below[0]) <= int(below[2]) == 3  # --quick: 3 rounds
        assert f"×{row['value']:.3f}" in line and "timed inside the pass" in line
    assert result.returncode == (1 if any(row["status"] == "missed" for row in judged) else 0)


def _bare_faults_per_pass(stdout: str) -> int:
    """A bare pass's page faults, from the probe benchmark's line."""
    line = next(line for line in stdout.splitlines() if "probe overhead, plain-30" in line)
    return int(line.split("page faults per pass: bare ")[1].split(",")[0])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc tunables")
def test_benchmark_steady_allocator_reruns_the_script_with_no_page_faults_after_warm_up():
    script = str(ROOT / "benchmarks" / "run.py")
    result = subprocess.run([sys.executable, script, "--quick", "--only", "probe", "--allocator", "steady"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode in (0, 1), result.stderr
    assert "allocator steady" in result.stdout.splitlines()[0]
    # glibc keeps freed memory: a warm bare pass of plain-30 at batch 64 maps no new page (each of its
    # 4 MB activations can take 1,024 under the system allocator's trimming: quick runs took 4,064–23,555
    # a pass); 64 leaves room for Python's own arenas. The probe's median is 1–3, but 514 in one run
    # of 6: not asserted
    assert _bare_faults_per_pass(result.stdout) <= 64


def _benchmark_script():
    """benchmarks/run.py as a module, for its helpers."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import run
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return run


def test_benchmark_allocator_environments_add_and_take_away_only_their_own_tunables(monkeypatch):
    run = _benchmark_script()
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.tcache_count=0")
    monkeypatch.delenv(run.STEADY_MARK, raising=False)
    steady = run._steady_environment()
    assert steady["GLIBC_TUNABLES"] == "glibc.malloc.tcache_count=0:" + run.STEADY_TUNABLES
    assert steady[run.STEADY_MARK] == "1"
    monkeypatch.setattr(run.os, "environ", steady)
    system = run._system_environment()
    assert system["GLIBC_TUNABLES"] == "glibc.malloc.tcache_count=0" and run.STEADY_MARK not in system
    monkeypatch.setattr(run.os, "environ", {run.STEADY_MARK: "1", "GLIBC_TUNABLES": run.STEADY_TUNABLES})
    assert run._system_environment() == {}


def test_benchmark_steady_allocator_without_glibc_is_a_one_line_error(monkeypatch, capsys):
    run = _benchmark_script()
    monkeypatch.setattr(run.platform, "libc_ver", lambda: ("", ""))
    monkeypatch.delenv(run.STEADY_MARK, raising=False)
    monkeypatch.setattr(sys, "argv", ["run.py", "--allocator", "steady", "--only", "probe", "--device", "cpu"])
    monkeypatch.setattr(run.os, "execve", lambda *args: pytest.fail("reran without glibc"))
    with pytest.raises(SystemExit) as exit_:
        run.main()
    assert exit_.value.code == 2
    assert "--allocator steady needs glibc" in capsys.readouterr().err


@pytest.mark.skipif(not (ROOT / ".git").exists(), reason="needs a git checkout (reads probe.py at a revision)")
def test_ab_script_compares_a_revision_with_the_working_tree():
    script = str(ROOT / "benchmarks" / "ab_probe.py")
    result = subprocess.run([sys.executable, script, "HEAD", "--pairs", "3"], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert "statistics equal: True" in result.stdout and "median per-pair ratio new / old:" in result.stdout
    bad = subprocess.run([sys.executable, script, "no-such-revision"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1 and bad.stderr.startswith("error: cannot read initlab's probe.py at 'no-such-revision'")
    assert "Traceback" not in bad.stderr


def test_the_running_sum_over_examples_gives_the_probe_of_the_square_and_sum(monkeypatch):
    """A CPU's position maps summed over the batch one example at a time (``_example_square_sums``,
    taken for examples of at least ``EXAMPLE_ELEMENTS``; here for every one, with a map at every conv) equal
    the square into the scratch buffer and its sum, on plain (sequential and stacked seeds) and residual nets."""
    reductions, capture = sys.modules["initlab.probe.reductions"], sys.modules["initlab.probe.capture"]
    monkeypatch.setattr(capture, "_needs_map", lambda spatial, closed: spatial > 0)  # a map at every conv
    sys.path.insert(0, str(ROOT / "tests"))
    from architectures import resnet18

    x = _input(8, 3, 16, 16)
    cases = [(lambda: initlab.plain_net(depth=8, width=8, input_shape=(3, 16, 16)), False),
             (lambda: initlab.plain_net(depth=8, width=8, input_shape=(3, 16, 16)), True),
             (lambda: resnet18(width=8), False)]
    for factory, batched in cases:
        reference = initlab.probe(factory, x, init="kaiming", seeds=2, batched=batched)
        summed = []
        with monkeypatch.context() as patch:
            patch.setattr(reductions, "EXAMPLE_ELEMENTS", 1)
            running_sum = reductions._example_square_sums
            patch.setattr(reductions, "_example_square_sums", lambda *a: summed.append(1) or running_sum(*a))
            accumulated = initlab.probe(factory, x, init="kaiming", seeds=2, batched=batched)
        _assert_same_probe(reference, accumulated)
        # the running sum took each pass's input map and output-gradient map of every conv (the frame
        # has a row per seed and conv; stacked seeds share one pass)
        conv_rows = int((accumulated.frame["kind"] == "conv").sum())
        assert conv_rows > 0 and len(summed) == 2 * conv_rows // (2 if batched else 1)


def test_the_features_moments_in_one_op_give_the_probe_of_the_square_and_sum(monkeypatch):
    """A CPU's per-feature moments of Linear layers' inputs, outputs and gradients in one op
    (``_feature_moments``, taken past 64 KB; here for every tensor) equal the square into the scratch
    buffer, its sum and the per-feature sums, on an MLP and a transformer encoder (attention's
    projections inside ``F.multi_head_attention_forward``), with and without the elementwise
    variances; each column to float32 rounding of its own scale."""
    reductions = sys.modules["initlab.probe.reductions"]

    def encoder():
        layer = torch.nn.TransformerEncoderLayer(32, 4, dim_feedforward=64, dropout=0.0, batch_first=True)
        return torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)

    cases = [(lambda: initlab.mlp(depth=6, width=64), _input(48, 64), False),
             (encoder, _input(4, 12, 32), True)]
    for factory, x, variances in cases:
        reference = initlab.probe(factory, x, init=None, seeds=2, elementwise_variances=variances)
        taken = []
        with monkeypatch.context() as patch:
            patch.setattr(reductions._Scratch, "SMALL_BYTES", 0)
            moments = reductions._feature_moments
            patch.setattr(reductions, "_feature_moments", lambda data: taken.append(1) or moments(data))
            feature = initlab.probe(factory, x, init=None, seeds=2, elementwise_variances=variances)
        # each Linear call's input, output and two gradients, per seed
        assert len(taken) == 4 * len(feature.frame) and len(feature.frame) > 0
        for name in ("frame", "sums"):
            a, b = getattr(reference, name), getattr(feature, name)
            assert list(a.columns) == list(b.columns) and len(a) == len(b)
            text = a.select_dtypes(exclude="number").columns
            assert a[text].astype(str).equals(b[text].astype(str))
            for column in a.select_dtypes("number").columns:
                before, after = a[column].to_numpy(float), b[column].to_numpy(float)
                scale = np.nanmax(np.abs(before[np.isfinite(before)]), initial=0.0)
                tolerance = 1e-3 if "log_variance" in column else 1e-5  # a spread over units: see _assert_same_probe
                np.testing.assert_allclose(after, before, rtol=tolerance, atol=1e-6 * scale, err_msg=column)
        assert feature.frame["output_variance"].notna().all() == variances
        pd.testing.assert_frame_equal(reference.summary()[["name", "verdict"]], feature.summary()[["name", "verdict"]])


def test_the_shared_channel_grams_give_the_probe_of_the_moments_and_gram_apart(monkeypatch):
    """A CPU conv output's per-channel Σy² and examples' Gram from one product over the channels
    (``_channel_grams``, for a batch of at most 16; here at every size) equal the per-channel sums
    and ``flat @ flat.T`` taken apart, on plain and residual nets: the same verdicts, the
    correlations and every other column to float32 rounding."""
    reductions = sys.modules["initlab.probe.reductions"]
    sys.path.insert(0, str(ROOT / "tests"))
    from architectures import resnet18

    x = _input(8, 3, 16, 16)
    for factory in (lambda: initlab.plain_net(depth=8, width=8, input_shape=(3, 16, 16)), lambda: resnet18(width=8)):
        probes, taken = {}, []
        for positions in (10 ** 9, 1):  # never; every conv output
            with monkeypatch.context() as patch:
                patch.setattr(reductions, "GRAM_POSITIONS", positions)
                grams = reductions._channel_grams
                patch.setattr(reductions, "_channel_grams", lambda data: taken.append(positions) or grams(data))
                probes[positions] = initlab.probe(factory, x, init="kaiming", seeds=2)
        conv_rows = int((probes[1].frame["kind"] == "conv").sum())
        assert conv_rows > 0 and taken == [1] * conv_rows  # each seed's every conv output, and only where asked
        _assert_same_probe(probes[10 ** 9], probes[1])
        assert probes[1].frame["example_correlation"].notna().sum() > 0
        pd.testing.assert_frame_equal(probes[10 ** 9].summary()[["name", "verdict"]],
                                      probes[1].summary()[["name", "verdict"]])


def test_maps_measured_only_where_the_chain_re_anchors_give_the_probe_of_maps_everywhere(monkeypatch):
    """A conv layer's per-position maps, taken only where the theory's chain re-anchors on them
    (``_needs_map``), give the probe of maps taken at every conv: the same predictions, padding
    factors, verdicts and every other column to float32 rounding, on plain nets (sequential and
    stacked seeds; ReLU links are closed, the max-pooling ones are not) and a residual net (a
    batch norm before every conv: each re-anchors, so every map is taken)."""
    capture = sys.modules["initlab.probe.capture"]
    sys.path.insert(0, str(ROOT / "tests"))
    from architectures import resnet18

    x = _input(8, 3, 16, 16)
    plain = lambda: initlab.plain_net(depth=8, width=8, input_shape=(3, 16, 16))  # noqa: E731
    cases = [(plain, False, False), (plain, True, False), (lambda: resnet18(width=8), False, True)]
    for factory, batched, all_anchored in cases:
        probes, maps = {}, {}
        for everywhere in (True, False):
            taken = []
            needs_map = capture._needs_map
            with monkeypatch.context() as patch:
                patch.setattr(capture, "_needs_map", lambda spatial, closed, every=everywhere: taken.append(
                    spatial > 0 and (every or needs_map(spatial, closed))) or taken[-1])
                probes[everywhere] = initlab.probe(factory, x, init="kaiming", seeds=2, batched=batched)
            maps[everywhere] = sum(taken)
        _assert_same_probe(probes[True], probes[False])
        frame = probes[False].frame
        assert np.isfinite(frame["padding_factor"]).all() and (frame["padding_factor"] < 0.99).any()
        conv_rows = int((frame["kind"] == "conv").sum())
        assert maps[True] == 2 * conv_rows // (2 if batched else 1)  # an input and an output-gradient map each
        assert maps[False] == maps[True] if all_anchored else 0 < maps[False] < maps[True]


def test_benchmark_times_the_statistics_ops_inside_the_pass_and_nothing_of_a_bare_pass():
    run = _benchmark_script()
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(32, 4, dim_feedforward=64, dropout=0.0, batch_first=True)
    model = nn.Sequential(nn.TransformerEncoder(layer, 2, enable_nested_tensor=False), nn.Linear(32, 8))
    x = _input(2, 6, 32)
    assert run.statistics_op_seconds(lambda: run._bare_pass(model, x), 1) == (0.0, 0)
    seconds, ops = run.statistics_op_seconds(lambda: run._probe_pass(model, x), 3)
    # two layers of in/out projections, two FFN Linears and the head: 9 layer calls, each with at least
    # its input's and output's moments
    assert ops >= 2 * 9
    passes = []
    for _ in range(3):
        start = time.perf_counter()
        run._probe_pass(model, x)
        passes.append(time.perf_counter() - start)
    assert 0.0 < seconds < statistics.median(passes)  # a part of the pass, the model's own ops not counted
