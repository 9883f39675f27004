"""The command line as a user runs it: output formats, files, and one-line errors with exit code 2."""

import json
import subprocess
import sys
import textwrap

import pandas as pd
import pytest
import torch

from initlab.cli import main

SMALL = ["probe", "--model", "mlp", "--depth", "6", "--width", "32", "--seeds", "2", "--batch-size", "16"]


def run(capsys, *args):
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_json_has_the_documented_keys(capsys):
    code, out, _ = run(capsys, *SMALL, "--init", "kaiming", "--format", "json")
    assert code == 0
    document = json.loads(out)
    assert {"config", "layers", "summary"} <= document.keys()
    assert len(document["layers"]) == 6
    for key in ("index", "name", "kind", "fan_in", "fan_out", "slope", "var_w", "var_y", "var_y_pred", "grad_var",
                "grad_var_pred", "verdict"):
        assert key in document["layers"][0], key
    for key in ("forward_gain", "forward_gain_pred", "backward_gain", "backward_gain_pred", "verdict"):
        assert key in document["summary"], key
    assert "Gaussian direction" in document["config"]["direction"]
    assert document["summary"]["forward_gain_pred"] == pytest.approx(1.0)


def test_several_inits_and_acts_give_a_list_of_every_combination(capsys):
    code, out, _ = run(capsys, *SMALL, "--init", "xavier-fanin,kaiming", "--act", "relu,prelu", "--format", "json")
    assert code == 0
    documents = json.loads(out)
    assert [(d["config"]["init"], d["config"]["act"]) for d in documents] == [
        ("xavier-fanin", "relu"), ("xavier-fanin", "prelu"), ("kaiming", "relu"), ("kaiming", "prelu")]
    assert documents[0]["summary"]["forward_gain_pred"] == pytest.approx(2.0 ** -5)


def test_table_and_csv(capsys):
    code, out, _ = run(capsys, *SMALL, "--init", "torch-default")
    assert code == 0
    assert "verdict: vanishing" in out and "Gaussian direction" in out
    code, out, _ = run(capsys, *SMALL, "--format", "csv", "--mode", "fan_out")
    assert code == 0
    frame = pd.read_csv(__import__("io").StringIO(out))
    assert set(frame["init"]) == {"xavier-fanin", "kaiming:mode=fan_out"}
    assert len(frame) == 2 * 2 * 6  # inits × seeds × layers


def test_out_writes_csv_json_and_plot(capsys, tmp_path):
    code, _, err = run(capsys, *SMALL, "--out", str(tmp_path / "probe"))
    assert code == 0
    for name in ("probe.csv", "summary.csv", "probe.json"):
        assert (tmp_path / "probe" / name).stat().st_size > 100
    png = (tmp_path / "probe" / "variance_vs_depth.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    assert not list((tmp_path / "probe").glob(".*tmp"))  # no temporary files left behind
    assert "wrote" in err


def test_default_probe_is_the_30_layer_plain_net_under_xavier_and_kaiming(capsys):
    code, out, _ = run(capsys, "probe", "--format", "json", "--seeds", "1", "--batch-size", "16")
    assert code == 0
    documents = json.loads(out)
    assert [d["config"]["init"] for d in documents] == ["xavier-fanin", "kaiming"]
    assert all(len(d["layers"]) == 30 for d in documents)
    assert [d["summary"]["verdict"] for d in documents] == ["vanishing", "healthy"]


def test_user_model_file(capsys, tmp_path):
    path = tmp_path / "net.py"
    path.write_text(textwrap.dedent("""
        import torch.nn as nn
        def build():
            return nn.Sequential(nn.Conv1d(2, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 10, 3))
    """))
    code, out, _ = run(capsys, "probe", "--model", f"{path}:build", "--input-shape", "2,10", "--format", "json",
                       "--seeds", "2")
    assert code == 0
    document = json.loads(out)
    assert document["config"]["init"] == "model's own"
    assert [layer["kind"] for layer in document["layers"]] == ["conv", "linear"]


@pytest.mark.parametrize("args,message", [
    (["--init", "kaimng"], "did you mean 'kaiming'"),
    (["--act", "relo"], "did you mean 'relu'"),
    (["--input-shape", "3,x,4"], "--input-shape '3,x,4'"),
    (["--depth", "0"], "--depth must be between"),
    (["--seeds", "0"], "--seeds must be between"),
    (["--width", "0"], "--width must be between"),
    (["--batch-size", "0"], "--batch-size must be between"),
    (["--format", "xml"], "--format must be"),
    (["--model", "plian"], "did you mean 'plain'"),
    (["--model", "nopkg_abc.mod:build", "--input-shape", "4"], "importing nopkg_abc.mod failed"),
    (["--nonsense"], "No such option"),
    (["--depth"], "requires an argument"),
])
def test_bad_input_gives_one_line_and_exit_code_2(capsys, args, message):
    code, out, err = run(capsys, "probe", *args)
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_a_clear_error(capsys):
    code, _, err = run(capsys, *SMALL, "--device", "cuda")
    assert code == 2 and err.strip() == ("error: --device cuda was asked for but no CUDA GPU is available "
                                         "(use --device auto or cpu)")
    from initlab.probe import ProbeError, resolve_device
    with pytest.raises(ProbeError) as raised:  # the library names its parameter; the CLI names the flag
        resolve_device("cuda")
    assert "--" not in str(raised.value) and str(raised.value).startswith("device 'cuda' was asked for")


def test_unwritable_out_is_a_clear_error(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = run(capsys, *SMALL, "--out", str(blocker / "sub"))
    assert code == 2 and "cannot write to output directory" in err


def test_list_and_module_entry_point(capsys):
    code, out, _ = run(capsys, "list")
    assert code == 0 and "xavier-fanin" in out and "prelu-shared" in out and "paper-30" in out
    completed = subprocess.run([sys.executable, "-m", "initlab", "--help"], capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0 and "probe" in completed.stdout


TRAIN = ["train", "--depth", "6", "--width", "8", "--epochs", "2", "--quiet"]


def test_train_compare_json_and_outputs(capsys, tmp_path):
    code, out, _ = run(capsys, *TRAIN, "--compare", "xavier-fanin,kaiming", "--format", "json", "--out",
                       str(tmp_path / "run"))
    assert code == 0
    documents = json.loads(out)
    assert [d["config"]["init"] for d in documents] == ["xavier-fanin", "kaiming"]
    for document in documents:
        assert {"verdict", "history", "final_train_loss", "final_val_error", "rules"} <= document.keys()
        assert document["verdict"] in ("converged", "stalled", "diverged", "undecided")
        assert len(document["history"]) == 2
    for run_dir in ("xavier-fanin", "kaiming"):
        for name in ("history.csv", "history.json", "checkpoint.pt"):
            assert (tmp_path / "run" / run_dir / name).stat().st_size > 0
    assert (tmp_path / "run" / "curves.png").read_bytes()[:4] == b"\x89PNG"
    # resuming a finished run trains nothing more and reports the same history
    code, again, _ = run(capsys, *TRAIN, "--compare", "xavier-fanin,kaiming", "--format", "json", "--out",
                         str(tmp_path / "run"), "--resume")
    assert code == 0
    assert [d["history"] for d in json.loads(again)] == [d["history"] for d in documents]


def test_train_history_files_are_written_in_the_background_and_complete_at_exit(capsys, tmp_path, monkeypatch):
    import threading
    import time

    import initlab.folders as folders
    original, writers = folders.write_history, []

    def slow(directory, history, slopes):  # later than the next epoch's start: it trains meanwhile
        time.sleep(0.3)
        original(directory, history, slopes)
        writers.append((len(history), threading.current_thread().name))
    monkeypatch.setattr(folders, "write_history", slow)
    code, _, _ = run(capsys, *TRAIN, "--epochs", "3", "--out", str(tmp_path / "run"))
    assert code == 0
    assert [epochs for epochs, _ in writers] == [1, 2, 3]  # in order, the last one waited for
    assert all(name.startswith("initlab-history") for _, name in writers)
    assert len(pd.read_csv(tmp_path / "run" / "kaiming" / "history.csv")) == 3
    assert not any(t.name.startswith("initlab-") for t in threading.enumerate())

    def full_disk(directory, history, slopes):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(folders, "write_history", full_disk)
    code, _, err = run(capsys, *TRAIN, "--out", str(tmp_path / "full"))
    assert code == 2 and err.strip().splitlines() == ["error: [Errno 28] No space left on device"]


def test_train_table_prints_verdict_and_rules(capsys):
    code, out, _ = run(capsys, *TRAIN, "--act", "prelu")
    assert code == 0 and "verdict:" in out and "rules: diverged:" in out


@pytest.mark.parametrize("args,message", [
    (["--resume"], "--resume needs --out"),
    (["--dataset", "npz:/nonexistent.npz"], "file not found"),
    (["--dataset", "imgnet"], "unknown dataset"),
    (["--schedule", "linear"], "schedule must be"),
    (["--lr", "-1"], "lr must be a positive number"),
    (["--init", "kaiming:mode=up"], "mode must be one of"),
])
def test_train_bad_input_is_one_line_exit_2(capsys, args, message):
    code, _, err = run(capsys, *TRAIN, *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_train_resume_from_a_corrupt_checkpoint_is_a_clear_error(capsys, tmp_path):
    (tmp_path / "kaiming").mkdir()
    (tmp_path / "kaiming" / "checkpoint.pt").write_bytes(b"garbage")
    code, _, err = run(capsys, *TRAIN, "--out", str(tmp_path), "--resume")
    assert code == 2 and err.startswith("error: --resume: ") and "not a readable checkpoint" in err


@pytest.mark.slow
def test_reproduce_quick_writes_every_table_and_figure(capsys, tmp_path):
    code, out, _ = run(capsys, "reproduce", "--quick", "--quiet", "--out", str(tmp_path))
    assert code == 0
    for name in ("figure3.csv", "figure2.csv", "table2.csv", "table1.csv", "slopes.csv", "reproduce.json", "index.html",
                 "figure3/training_curves.png", "figure2/training_curves.png", "table2/training_curves.png",
                 "table1/training_curves.png",
                 "probe/variance_vs_depth.png", "probe/layer_factors.png", "tables/table1_learned_slopes.csv"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert "table1: learned PReLU slopes" in out
    assert "QUICK SMOKE RUN" in (tmp_path / "index.html").read_text(encoding="utf-8")
    # each heading says what ran, and the quick runs differ from one another
    ran = [line.strip() for line in out.splitlines() if line.strip().startswith("run here:")]
    assert ran == ["run here: depth 8, width 32, 3 epochs, lr 0.001 constant, inputs × 30, seed 0 (quick smoke run: not the claim)",
                   "run here: depth 6, width 32, 3 epochs, lr 0.001 constant, inputs × 30, seed 0 (quick smoke run: not the claim)",
                   "run here: depth 5, width 32, 3 epochs, lr 0.001 step, seed 0 (quick smoke run: not the claim)",
                   "run here: depth 4, width 32, 3 epochs, lr 0.01 step, on gratings, seed 0 (quick smoke run: not the "
                   "claim)"]
    assert "30-layer" not in out and "3 seeds" not in out and "NaN" not in out
    figure3, figure2 = (pd.read_csv(tmp_path / f"{name}.csv") for name in ("figure3", "figure2"))
    assert not figure3["val error"].equals(figure2["val error"])
    assert (figure3["seeds"] == 1).all()


def test_version(capsys):
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.startswith("initlab 0.1.0 (torch ")


def test_report_with_no_runs_runs_the_default_probe_and_training_and_reports_both(monkeypatch, tmp_path, capsys):
    from dataclasses import replace

    import initlab.reproduce as reproduce
    short = replace(reproduce.EXPERIMENTS[0], depth=6, epochs=1)  # Figure 3's runs, shortened for the test
    monkeypatch.setattr(reproduce, "EXPERIMENTS", (short, *reproduce.EXPERIMENTS[1:]))
    code, out, err = run(capsys, "report", "--out", str(tmp_path / "r"), "--quiet")
    assert code == 0 and out == "" and err.startswith("report: ")
    probe_runs = pd.read_csv(tmp_path / "r" / "probe-run" / "probe.csv")
    assert set(probe_runs["init"]) == {"xavier-fanin", "kaiming"} and probe_runs["seed"].nunique() == 3
    trained = json.loads((tmp_path / "r" / "train-run" / "train.json").read_text())
    assert [document["config"]["init"] for document in trained] == ["xavier-fanin", "kaiming"]
    assert all(len(document["history"]) == 1 for document in trained)
    page = (tmp_path / "r" / "index.html").read_text(encoding="utf-8")
    assert "Probe: " in page and "Training: " in page


def test_a_package_in_the_working_directory_is_importable_as_with_python_m(monkeypatch, tmp_path, capsys):
    import sys
    package = tmp_path / "mynets_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "nets.py").write_text("from torch import nn\n\ndef build():\n    return nn.Sequential(nn.Linear(8, 8), "
                                     "nn.ReLU(), nn.Linear(8, 2))\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    assert main(["check", "mynets_pkg.nets:build", "--input-shape", "8"]) in (0, 1)
    assert "No module named" not in capsys.readouterr().err


def test_the_probe_prints_the_chain_gain_its_verdict_judges(capsys):
    assert main(["probe", "--depth", "8", "--seeds", "1", "--init", "xavier-fanin"]) == 0
    out = capsys.readouterr().out.replace("\n  ", " ")  # the footer wraps at 100 columns, continuation indented
    verdict = next(line for line in out.splitlines() if line.startswith("verdict: "))
    from initlab.models import plain_net  # the same probe in Python: the printed gain is the judged one
    import initlab
    from initlab.schemes import INPUT_STREAM, stream_seed
    x = torch.randn((64, 3, 32, 32), generator=torch.Generator().manual_seed(stream_seed(0, INPUT_STREAM)))
    gains = initlab.probe(lambda: plain_net(depth=8, width=16), x, init="xavier-fanin", seeds=1).gains()
    assert verdict.startswith(f"verdict: {gains['verdict']} ")
    assert f"worst forward {gains['forward_gain_layers']:.3g} at {gains['worst_forward_layer']!r}" in verdict


def test_version_and_help_answer_without_importing_torch():
    script = ("import sys; from initlab.cli import main\n"
              "codes = [main(['--version']), main(['--help']), main(['-h']), main(['probe', '--help']), main([])]\n"
              "print(codes, sorted(m for m in ('torch', 'pandas', 'matplotlib') if m in sys.modules))")
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.splitlines()[-1] == "[0, 0, 0, 0, 0] []"
    assert "Usage: initlab [OPTIONS] COMMAND" in completed.stdout  # bare `initlab` prints the whole help
    assert "Commands:" in completed.stdout or "probe" in completed.stdout.split("Usage: initlab [OPTIONS] COMMAND")[-1]


def test_version_works_from_the_folder_that_holds_the_clone(tmp_path):
    # `git clone …/initlab` and staying put: the clone's folder `initlab/` must not shadow the package
    (tmp_path / "initlab" / "initlab").mkdir(parents=True)
    (tmp_path / "initlab" / "README.md").write_text("a clone\n")
    completed = subprocess.run([sys.executable, "-m", "initlab", "--version"], capture_output=True, text=True,
                               timeout=60, cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.startswith("initlab 0.1.0 (torch ")


def test_the_public_names_stay_functions_after_their_submodules_are_imported():
    import initlab
    import initlab.check  # noqa: F401  (the import machinery sets the submodule on the package)
    import initlab.probe  # noqa: F401
    from initlab.check import CheckReport
    from initlab.probe import ProbeResult
    assert callable(initlab.probe) and callable(initlab.check)
    assert initlab.CheckReport is CheckReport and initlab.ProbeResult is ProbeResult
    assert set(initlab.__all__) <= set(dir(initlab))
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        initlab.nonexistent


def test_long_work_reports_progress_on_stderr_when_piped_unless_quiet(capsys):
    code, out, err = run(capsys, *SMALL, "--init", "kaiming")  # capsys: stderr is not a terminal, as in a pipe
    assert code == 0
    assert err.splitlines() == [line for line in err.splitlines() if line.startswith("probing mlp · kaiming / relu · seeds: ")]
    assert [line.split(": ")[1].split()[0] for line in err.splitlines()] == ["1/2", "2/2"]
    assert "\r" not in err and "seeds: 1/2" not in out
    code, _, err = run(capsys, *SMALL, "--init", "kaiming", "--quiet")
    assert code == 0 and err == ""
    code, _, err = run(capsys, "train", "--depth", "6", "--width", "8", "--epochs", "2")
    assert code == 0 and err.splitlines()[0].startswith("training kaiming · steps: 1/")
    assert err.splitlines()[-1].startswith("training kaiming · steps: ") and len(err.splitlines()) <= 5


def test_the_probe_table_fits_a_100_column_terminal(capsys):
    assert main(["probe", "--depth", "8", "--seeds", "1", "--init", "kaiming", "--quiet"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in lines) <= 100
    header = next(line for line in lines if line.startswith("layer"))
    assert header.split() == ["layer", "kind", "fan_in", "factor", "E[y²]", "pred", "in", "band", "E[Δx²]", "pred",
                              "in", "band", "verdict"]
    assert "NaN" not in "\n".join(lines)


def test_library_errors_name_parameters_and_the_cli_names_flags(capsys):
    from initlab.cli import _in_cli_terms
    from initlab.models import ModelError, ModelRecipe
    with pytest.raises(ModelError) as raised:
        ModelRecipe("mypkg.nets:build").example_shape()
    assert "--" not in str(raised.value) and "needs input_shape" in str(raised.value)
    assert "needs --input-shape" in _in_cli_terms(str(raised.value))
    assert _in_cli_terms("batched seeds: x; probe one pass per seed (batched=False)").endswith("(--batched off)")
    assert _in_cli_terms("resume: checkpoint was written with different settings: lr 1 in the checkpoint, 2 now "
                         "(run with the checkpoint's settings, or write elsewhere)") == (
        "--resume: checkpoint was written with different settings: lr 1 in the checkpoint, 2 now "
        "(run with the checkpoint's settings, or a new --out)")
    code, _, err = run(capsys, "check", "tests_no_such_module_xyz:build")
    assert code == 2 and "--" not in err.replace("--input-shape", "").replace("--debug", "")
