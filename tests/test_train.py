"""Training: verdict rules, determinism, the no-decay rule, resume == uninterrupted, and 2-process DDP."""

import json
import math
import os
import subprocess
import sys

import pandas as pd
import pytest
import torch
from torch import nn

import initlab
from initlab.data import load_dataset
from initlab.train import (CONVERGED_ERROR_FRACTION, STALL_LOSS_FRACTION, TrainConfig, learning_rate, make_optimizer,
                           train_scheme, verdict)

CHANCE = math.log(10)


def _history(losses, errors):
    return pd.DataFrame({"epoch": range(1, len(losses) + 1), "train_loss": losses, "val_error": errors})


@pytest.mark.parametrize("losses,errors,expected", [
    ([2.31, 2.30, 2.30, 2.29], [0.9] * 4, "stalled"),
    ([2.30, STALL_LOSS_FRACTION * CHANCE + 1e-6], [0.9, 0.9], "stalled"),
    ([2.30, 1.2, 0.4], [0.9, 0.3, 0.1], "converged"),
    ([2.30, 1.9, 1.8], [0.9, 0.6, 0.6], "undecided"),
    ([2.30, float("nan")], [0.9, 0.9], "diverged"),
    ([2.30, 40.0, 1.0], [0.9, 0.9, 0.1], "diverged"),
    ([2.30, 2.0], [0.9, CONVERGED_ERROR_FRACTION * 0.9], "converged"),
])
def test_verdict_rules_on_crafted_histories(losses, errors, expected):
    outcome, reason = verdict(_history(losses, errors), 10)
    assert outcome == expected
    assert reason


def test_learning_rate_schedules():
    config = TrainConfig(lr=0.1, schedule="step")
    assert [learning_rate(config, s, 100) for s in (0, 49, 50, 74, 75, 99)] == pytest.approx(
        [0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
    cosine = TrainConfig(lr=0.1, schedule="cosine")
    assert learning_rate(cosine, 0, 100) == pytest.approx(0.1)
    assert learning_rate(cosine, 50, 100) == pytest.approx(0.05)
    with pytest.raises(ValueError, match="schedule must be"):
        TrainConfig(schedule="linear")


def test_no_weight_decay_on_prelu_slopes_or_biases():
    model = initlab.plain_net(depth=6, width=4, input_shape=(1, 8, 8), act="prelu", stages=1)
    optimizer = make_optimizer(model, TrainConfig(weight_decay=1e-3))
    decayed, free = optimizer.param_groups
    slopes = {id(m.weight) for m in model.modules() if isinstance(m, nn.PReLU)}
    assert decayed["weight_decay"] == 1e-3 and free["weight_decay"] == 0.0
    assert slopes <= {id(p) for p in free["params"]}
    assert not slopes & {id(p) for p in decayed["params"]}
    assert {id(m.weight) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))} == \
        {id(p) for p in decayed["params"]}


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", seed=0)


def _factory():
    return initlab.plain_net(depth=6, width=8, input_shape=(1, 8, 8), act="prelu", stages=1)


def test_training_is_deterministic_for_a_seed(digits):
    config = TrainConfig(epochs=2, lr=0.01, seed=3)
    first = train_scheme(_factory, "kaiming", digits, config)
    second = train_scheme(_factory, "kaiming", digits, config)
    pd.testing.assert_frame_equal(first.history.drop(columns="seconds"), second.history.drop(columns="seconds"))
    pd.testing.assert_frame_equal(first.slopes, second.slopes)
    assert len(first.slopes) == 3 * 5  # epochs 0..2 × 5 PReLU layers


def test_resume_after_an_interrupt_ends_where_an_uninterrupted_run_ends(digits, tmp_path):
    config = TrainConfig(epochs=4, lr=0.01, seed=1)
    reference = train_scheme(_factory, "kaiming", digits, config, checkpoint=tmp_path / "full.pt")

    def interrupt_after_two(history, slopes):
        if len(history) == 2:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        train_scheme(_factory, "kaiming", digits, config, checkpoint=tmp_path / "run.pt", on_epoch=interrupt_after_two)
    assert torch.load(tmp_path / "run.pt", weights_only=True)["epoch"] == 2
    resumed = train_scheme(_factory, "kaiming", digits, config, checkpoint=tmp_path / "run.pt", resume=True)
    pd.testing.assert_frame_equal(resumed.history.drop(columns="seconds"), reference.history.drop(columns="seconds"))
    final = torch.load(tmp_path / "run.pt", weights_only=True)["model"]
    expected = torch.load(tmp_path / "full.pt", weights_only=True)["model"]
    assert all(torch.equal(final[k], expected[k]) for k in expected)


def _slow_checkpoints(monkeypatch, folder):
    """Delay each background checkpoint write by 0.3 s (the next epoch trains meanwhile) and keep a
    copy of every epoch's file; return the list of (epoch, thread name) of the writes."""
    import shutil
    import threading
    import time

    import initlab.train as train_module
    original, writes = train_module._write_checkpoint, []

    def slow(path, state, copied):
        time.sleep(0.3)
        original(path, state, copied)
        shutil.copy(path, folder / f"epoch{state['epoch']}.pt")
        writes.append((state["epoch"], threading.current_thread().name))
    monkeypatch.setattr(train_module, "_write_checkpoint", slow)
    return writes


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs CUDA: non-blocking copies into pinned memory, then an event"))])
def test_a_checkpoint_holds_its_epochs_state_while_later_epochs_train(digits, tmp_path, monkeypatch, device):
    import threading

    from initlab.train import train
    writes = _slow_checkpoints(monkeypatch, tmp_path)
    torch.manual_seed(3)
    model = _factory()
    seen = {}

    def remember(history, slopes):  # called right after the epoch's write is handed to the writer
        seen[len(history)] = {key: value.cpu().clone() for key, value in model.state_dict().items()}
    train(model, digits, TrainConfig(epochs=3, lr=0.05), device=torch.device(device), checkpoint=tmp_path / "run.pt",
          on_epoch=remember)
    assert [epoch for epoch, _ in writes] == [1, 2, 3]  # in order, each one on disk when train returns
    assert all(name.startswith("initlab-checkpoint") for _, name in writes)
    assert not any(t.name.startswith("initlab-checkpoint") for t in threading.enumerate())
    for epoch in (1, 2, 3):
        saved = torch.load(tmp_path / f"epoch{epoch}.pt", weights_only=True)
        assert saved["epoch"] == epoch and len(saved["history"]) == epoch
        assert saved["model"]._metadata == model.state_dict()._metadata  # module versions for load_state_dict
        # written 0.3 s late, while the next epoch changed the live weights: the file holds a copy
        assert all(torch.equal(saved["model"][key], seen[epoch][key]) for key in seen[epoch])
    assert not torch.equal(seen[1]["0.weight"], seen[3]["0.weight"])


def test_ctrl_c_waits_for_the_checkpoint_being_written(digits, tmp_path, monkeypatch):
    _slow_checkpoints(monkeypatch, tmp_path)

    def interrupt_after_two(history, slopes):
        if len(history) == 2:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        train_scheme(_factory, "kaiming", digits, TrainConfig(epochs=4), checkpoint=tmp_path / "run.pt",
                     on_epoch=interrupt_after_two)
    assert torch.load(tmp_path / "run.pt", weights_only=True)["epoch"] == 2
    assert not list(tmp_path.glob(".*tmp"))


def test_a_failed_checkpoint_write_is_raised_not_lost(digits, tmp_path, monkeypatch, capsys):
    import initlab.train as train_module
    from initlab.cli import main

    def full_disk(path, state, copied):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(train_module, "_write_checkpoint", full_disk)
    with pytest.raises(OSError, match="No space left"):
        train_scheme(_factory, "kaiming", digits, TrainConfig(epochs=1), checkpoint=tmp_path / "run.pt")
    assert main(["train", "--depth", "4", "--width", "8", "--epochs", "1", "--quiet", "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == ["error: [Errno 28] No space left on device"]


def test_resume_refuses_other_settings_and_foreign_files(digits, tmp_path):
    train_scheme(_factory, "kaiming", digits, TrainConfig(epochs=1, seed=0), checkpoint=tmp_path / "c.pt")
    with pytest.raises(ValueError, match=r"different settings: lr 0\.02 in the checkpoint, 0\.5 now \("):
        train_scheme(_factory, "kaiming", digits, TrainConfig(epochs=1, seed=0, lr=0.5), checkpoint=tmp_path / "c.pt",
                     resume=True)
    with pytest.raises(ValueError, match=r"different settings: input_scale 1\.0 in the checkpoint, 30\.0 now"):
        train_scheme(_factory, "kaiming", digits, TrainConfig(epochs=1, seed=0, input_scale=30.0),
                     checkpoint=tmp_path / "c.pt", resume=True)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        train_scheme(_factory, "kaiming", digits, TrainConfig(epochs=1), checkpoint=tmp_path / "junk.pt", resume=True)


def test_a_huge_learning_rate_is_called_diverged(digits):
    result = train_scheme(_factory, "kaiming", digits, TrainConfig(epochs=3, lr=50.0, schedule="constant"))
    assert result.verdict == "diverged"


def _cli(args, env_extra=None, runner=None):
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    command = (runner or [sys.executable, "-m", "initlab"]) + args
    completed = subprocess.run(command, capture_output=True, text=True, timeout=240, env=env)
    # a failing worker's own lines come first, torchrun's summary of the failure last
    assert completed.returncode == 0, completed.stderr[:3000] + "\n[...]\n" + completed.stderr[-2000:]
    return json.loads(completed.stdout)


def test_two_gloo_processes_match_one_process(tmp_path):
    args = ["train", "--model", "mlp", "--depth", "3", "--width", "32", "--dataset", "synthetic", "--input-shape",
            "16", "--epochs", "2", "--batch-size", "32", "--lr", "0.05", "--format", "json", "--quiet",
            "--device", "cpu"]
    single = _cli(args)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "initlab"]
    double = _cli(args + ["--out", str(tmp_path / "ddp")], runner=torchrun)
    assert double["config"]["world_size"] == 2 and single["config"]["world_size"] == 1
    for a, b in zip(single["history"], double["history"]):
        # same global batch, gradients averaged by all-reduce: equal up to float summation order
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4)
        assert b["val_error"] == pytest.approx(a["val_error"], abs=1e-9)
    assert (tmp_path / "ddp" / "kaiming" / "checkpoint.pt").exists()


def test_stop_distributed_leaves_the_process_group_and_is_a_no_op_without_one(tmp_path):
    import torch.distributed as dist

    from initlab.train import stop_distributed
    stop_distributed(True)  # one process, no group: nothing to leave
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    assert dist.is_initialized()
    stop_distributed(True)  # a barrier of one rank, then the group is destroyed
    assert not dist.is_initialized()
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store2'}", rank=0, world_size=1)
    stop_distributed(False)  # a rank that failed leaves with no barrier
    assert not dist.is_initialized()


def _entry_point_run(argv, world):
    """``initlab argv`` through the console script's entry point, in a process whose finalization
    writes 'finalized' to stderr (an atexit handler) and whose stdout holds a line not yet flushed
    (as a user's model may print); ``world`` as torchrun's WORLD_SIZE, or none."""
    script = ("import atexit, os, sys; atexit.register(lambda: os.write(2, b'finalized')); "
              "sys.stdout.write('written before, not flushed\\n'); "
              f"sys.argv = ['initlab', *{argv!r}]; from initlab.cli import entry_point; entry_point()")
    env = {key: value for key, value in os.environ.items() if key not in ("WORLD_SIZE", "PYTHONUNBUFFERED")}
    if world is not None:
        env["WORLD_SIZE"] = world
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.parametrize("argv, code", [(["list"], 0), (["list", "--bogus"], 2)])
def test_a_torchrun_worker_ends_without_finalizing_and_its_output_arrives_whole(argv, code):
    """Under torchrun (WORLD_SIZE above 1) the command line ends the process with os._exit once it
    is done, skipping the finalization in which gloo's threads can abort it; what it printed to
    its pipes (block-buffered) arrives whole, and the exit code is kept. Alone, it finalizes."""
    alone, worker = _entry_point_run(argv, None), _entry_point_run(argv, "2")
    assert alone.returncode == worker.returncode == code
    assert alone.stderr.endswith("finalized") and "finalized" not in worker.stderr
    assert worker.stdout == alone.stdout and worker.stderr == alone.stderr.removesuffix("finalized")
    assert worker.stdout.startswith("written before, not flushed\n")
    if code == 0:
        assert worker.stdout.count("\n") >= 10  # the listing, after the line written before
    else:
        assert worker.stderr == "error: No such option: --bogus\n"


def test_ctrl_c_leaves_history_and_checkpoint_intact(tmp_path):
    import signal
    import time
    out = tmp_path / "run"
    process = subprocess.Popen([sys.executable, "-m", "initlab", "train", "--depth", "10", "--width", "16",
                                "--epochs", "200", "--quiet", "--out", str(out)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=dict(os.environ, OMP_NUM_THREADS="1"))
    history = out / "kaiming" / "history.csv"
    deadline = time.time() + 120
    while not history.exists() and time.time() < deadline:
        time.sleep(0.2)
    assert history.exists(), process.communicate(timeout=30)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130 and "interrupted" in err
    frame = pd.read_csv(history)
    state = torch.load(out / "kaiming" / "checkpoint.pt", weights_only=True)
    assert len(frame) >= 1 and state["epoch"] >= len(frame)  # a later epoch may have been saved just before
    assert not list((out / "kaiming").glob(".*tmp"))


def test_a_step_budget_replaces_epochs(digits):
    seen = []
    result = train_scheme(_factory, "kaiming", digits, TrainConfig(steps=30, lr=0.01, epochs=99),
                          on_step=lambda step, total: seen.append((step, total)))
    assert seen[-1] == (30, 30) and len(seen) == 30
    assert len(result.history) == 2  # 23 steps per epoch of digits at batch 64: one full epoch and a partial one
    with pytest.raises(ValueError, match="steps must be at least 1"):
        TrainConfig(steps=0)


def test_history_lr_is_the_rate_of_the_epochs_first_and_last_step(digits):
    config = TrainConfig(epochs=4, seed=0, lr=0.01, schedule="step")
    result = train_scheme(_factory, "kaiming", digits, config)
    steps_per_epoch = math.ceil(len(digits.train_x) / config.batch_size)
    total = 4 * steps_per_epoch
    for row in result.history.itertuples():
        first_step, last_step = (row.epoch - 1) * steps_per_epoch, row.epoch * steps_per_epoch - 1
        assert row.lr == learning_rate(config, first_step, total)
        assert row.lr_end == learning_rate(config, last_step, total)
    assert list(result.history["lr"]) == [0.01, 0.01, 0.001, 0.0001]  # ÷10 at 50 % and 75 %: epochs 3 and 4 start there


def test_input_scale_multiplies_the_inputs_the_model_sees(digits):
    # A bias-free linear model's first-step output scales with the input: compare the logits the
    # model saw at step 1 under input_scale 30 with a plain forward of 30 × the same batch.
    seen = []
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10, bias=False))
    model.register_forward_hook(lambda module, args, output: seen.append(args[0].detach().clone()))
    initlab.train.train(model, digits, TrainConfig(epochs=1, steps=1, input_scale=30.0, seed=0))
    assert float(seen[0].std()) == pytest.approx(30 * float(digits.train_x.std()), rel=0.2)
    with pytest.raises(ValueError, match="input_scale must be a positive number"):
        TrainConfig(input_scale=0.0)


def test_a_watched_run_records_every_nth_step_over_the_whole_run_and_resumes_the_count(digits, tmp_path):
    config = TrainConfig(epochs=2, lr=0.01, seed=1)
    steps_per_epoch = math.ceil(len(digits.train_x) / config.batch_size)
    watched = train_scheme(_factory, "kaiming", digits, config, watch_every=10)
    assert sorted(watched.watch["step"].unique()) == list(range(0, 2 * steps_per_epoch, 10))
    assert (watched.watch.groupby("step")["name"].nunique() == 6).all()  # the 6 weight layers at each
    assert watched.to_dict()["watch_findings"] == watched.watch_findings == []  # a healthy He run
    unwatched = train_scheme(_factory, "kaiming", digits, config)
    assert unwatched.watch.empty and "watch_findings" not in unwatched.to_dict()
    # watching changes nothing about the training itself
    pd.testing.assert_frame_equal(watched.history.drop(columns="seconds"), unwatched.history.drop(columns="seconds"))

    def stop_after_the_first_epoch(history, slopes):
        if len(history) == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_scheme(_factory, "kaiming", digits, config, checkpoint=tmp_path / "run.pt",
                     on_epoch=stop_after_the_first_epoch, watch_every=10)
    resumed = train_scheme(_factory, "kaiming", digits, config, checkpoint=tmp_path / "run.pt", resume=True,
                           watch_every=10)
    assert sorted(resumed.watch["step"].unique()) == list(range(steps_per_epoch, 2 * steps_per_epoch, 10))
