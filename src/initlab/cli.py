"""The ``initlab`` command line: a thin typer layer over the library.

Errors from the library (``ValueError`` and its subclasses) become one line on stderr and exit
code 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import itertools
import json
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from . import __version__

if TYPE_CHECKING:
    import pandas as pd

    from .files import BackgroundWriter

# Library modules (and with them torch, pandas, matplotlib) are imported inside the commands, so
# that --help and --version answer in a fraction of a second.

app = typer.Typer(add_completion=False, no_args_is_help=True, context_settings={"help_option_names": ["-h", "--help"]}, pretty_exceptions_enable=False,
                  rich_markup_mode=None, help="Does your network's initialization let signal and gradient through? "
                  "(He et al. 2015, 'Delving Deep into Rectifiers')")
_state = {"debug": False}

# Library errors name Python parameters (``device='cuda'``, ``resume``, ``input_shape``,
# ``batched=False``); on the command line they are flags, and ``main`` says so.
_CLI_TERMS = ((r"^device '([^']*)' was asked for", r"--device \1 was asked for"), (r"\(use 'auto' or 'cpu'\)",
              "(use --device auto or cpu)"), (r"^resume: ", "--resume: "), (r"needs input_shape", "needs --input-shape"),
              (r"\(batched=False\)", "(--batched off)"), (r"^input_scale ", "--input-scale "), (r"or write elsewhere\)", "or a new --out)"))

INPUT_FACTORY_HELP = ("package.module:fn or file.py:fn returning the batch: a tensor, a tuple (positional) or dict "
                      "(keyword arguments) of tensors.")
OWN_INIT = "own"
INTERRUPTED = "interrupted: files written so far are complete (train: up to the last finished epoch; --resume continues)"
DEFAULT_INITS = "xavier-fanin,kaiming"


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version
        try:
            torch_version = version("torch")
        except PackageNotFoundError:
            torch_version = "not installed"
        typer.echo(f"initlab {__version__} (torch {torch_version})")
        raise typer.Exit(0)


@app.callback()
def _main(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
          version: bool = typer.Option(False, "--version", help="Print the version and exit.",
                                       callback=_print_version, is_eager=True)) -> None:
    _state["debug"] = debug


def _split(values: str) -> list[str]:
    return [v.strip() for v in values.split(",") if v.strip()]


def _parse_shape(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        shape = tuple(int(part) for part in text.replace("x", ",").split(","))
    except ValueError:
        raise ValueError(f"--input-shape {text!r}: expected comma-separated positive integers, e.g. 3,32,32") from None
    if not shape or any(size < 1 for size in shape):
        raise ValueError(f"--input-shape {text!r}: every size must be a positive integer")
    return shape


def _init_specs(init: str | None, mode: str | None, user_model: bool) -> list[str]:
    from .schemes import parse_scheme

    specs = _split(init) if init else ([OWN_INIT] if user_model else _split(DEFAULT_INITS))
    if not specs:
        raise ValueError("--init is empty; give at least one scheme, e.g. kaiming")
    resolved = []
    for spec in specs:
        if spec in (OWN_INIT, "model"):
            resolved.append(OWN_INIT)
            continue
        scheme = parse_scheme(spec)
        if mode is not None and scheme.name == "kaiming" and "mode=" not in spec:
            scheme = parse_scheme(f"{spec}{',' if ':' in spec else ':'}mode={mode}")
        resolved.append(str(scheme))
    return resolved


def _check_range(name: str, value: int | None, low: int, high: int) -> None:
    if value is not None and not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}, got {value}")


def _fmt(value: float) -> str:
    import pandas as pd

    if value is None or pd.isna(value):
        return "-"
    return f"{value:.3g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"


def _table(summary: "pd.DataFrame") -> str:
    """The probe's per-layer table, about 90 characters wide: the chain factor, then forward and
    backward second moments with their predictions and band test, then the verdict (the CSV and JSON
    carry every column, slope, Var[w] and log10 measured/predicted included)."""
    columns = {
        "name": "layer", "kind": "kind", "fan_in": "fan_in", "forward_factor": "factor", "var_y": "E[y²]",
        "var_y_pred": "pred", "within_band_forward": "in band", "grad_var": "E[Δx²]", "grad_var_pred": "pred ",
        "within_band_backward": "in band ", "verdict": "verdict",
    }
    table = summary[list(columns)].rename(columns=columns)
    formatters = {name: _fmt for name in ("factor", "E[y²]", "pred", "E[Δx²]", "pred ")}
    formatters.update({name: (lambda v: "yes" if v else "NO") for name in ("in band", "in band ")})
    return table.to_string(index=False, formatters=formatters)


def _wrapped(text: str) -> str:
    import textwrap
    return textwrap.fill(text, width=100, subsequent_indent="  ", break_on_hyphens=False)


def _probe_text(results: dict, model: str) -> str:
    """The probe's table output: per result a heading, the per-layer table, its gains and verdict;
    then what the columns mean."""
    from .render import chi1_line, examples_line, jacobian_line
    blocks = []
    for result in results.values():
        gains, config = result.gains(), result.config
        blocks += [
            f"\n== {model} · init {config['init']} · act {config.get('act') or 'own'} · "
            f"{len(config['seeds'])} seed(s) · batch {config['batch_size']} · {config['device']}",
            _table(result.summary()),
            _wrapped(f"forward gain E[y_L²]/E[y_1²]: {_fmt(gains['forward_gain'])} (predicted "
                     f"{_fmt(gains['forward_gain_pred'])}) · backward gain E[Δx_1²]/E[Δx_L²]: "
                     f"{_fmt(gains['backward_gain'])} (predicted {_fmt(gains['backward_gain_pred'])})"),
            _wrapped(f"verdict: {gains['verdict']} · judged on the chain gain through the layers' own steps "
                     f"(normalizations, pools and strides divided out): worst forward "
                     f"{_fmt(gains['forward_gain_layers'])} at {gains['worst_forward_layer']!r} "
                     f"({gains['verdict_forward']}), worst backward {_fmt(gains['backward_gain_layers'])} at "
                     f"{gains['worst_backward_layer']!r} ({gains['verdict_backward']}); He's init gives 1"),
        ]
        blocks += [_wrapped(line) for line in (examples_line(gains), chi1_line(gains), jacobian_line(result.jacobian))
                   if line]
    blocks.append("\n" + _wrapped(f"{next(iter(results.values())).config['direction']}; E[·²] = second moment over "
                                  "all elements, geometric mean over seeds; factor = ½(1+a²)·n·Var[w], the layer's "
                                  "step of the chain; 'in band': measured within the finite-width 3σ band of the "
                                  "chain's prediction (is the theory right?), a test apart from the verdict (does "
                                  "the signal get through?)"))
    return "\n".join(blocks)


@app.command("probe")
def probe_command(
    model: str = typer.Option("plain", "--model", help="plain, mlp, paper-a/b/c/30, or package.module:factory "
                              "or path/to/file.py:factory"),
    depth: Optional[int] = typer.Option(None, "--depth", help="Weight layers incl. the 3 fc (plain: 30), or Linear "
                                        "layers (mlp: 10)."),
    width: Optional[int] = typer.Option(None, "--width", help="Base width: plain channels of stage 1 (16), mlp units "
                                        "(256)."),
    input_shape: Optional[str] = typer.Option(None, "--input-shape", help="One example's shape, e.g. 3,32,32 (plain "
                                              "default) or 784 (token ids, a sequence length, for a model whose "
                                              "first layer is an Embedding); a user model needs it or "
                                              "--input-factory."),
    input_factory: Optional[str] = typer.Option(None, "--input-factory", help=INPUT_FACTORY_HELP),
    init: Optional[str] = typer.Option(None, "--init", help="Scheme(s), comma-separated: kaiming, xavier, "
                                       "xavier-fanin, torch-default, normal:STD, orthogonal, own (the model's own). "
                                       f"Options after ':' e.g. kaiming:a=0,mode=fan_out. Default {DEFAULT_INITS} "
                                       "(own for a user model)."),
    act: str = typer.Option("relu", "--act", help="Activation(s), comma-separated: relu, prelu, prelu-shared, "
                            "leaky:A (built-in models only)."),
    mode: Optional[str] = typer.Option(None, "--mode", help="fan_in or fan_out: Kaiming's fan mode where --init "
                                       "does not set one."),
    seeds: int = typer.Option(3, "--seeds", help="Seeds 0..N-1: each re-initializes and probes."),
    batched: str = typer.Option("auto", "--batched", help="Seeds in one stacked pass: auto (on a GPU, for "
                                "Sequential nets), on, off. Same numbers either way."),
    batch_size: int = typer.Option(64, "--batch-size", help="Examples in the probe batch (N(0,1) input)."),
    stages: int = typer.Option(3, "--stages", help="plain: pooling stages."),
    device: str = typer.Option("auto", "--device", help="auto (cuda when present), cpu or cuda."),
    jacobian_projections: int = typer.Option(0, "--jacobian-projections", help="Also estimate the input–output "
                                             "Jacobian's spread from N random projections per seed (each a backward "
                                             "and a forward-mode pass); 0: not measured."),
    elementwise_variances: bool = typer.Option(False, "--elementwise-variances", help="Also record each layer's "
                                               "output_variance, grad_output_variance and grad_input_variance "
                                               "(one more read of each tensor on a CPU; no verdict needs them)."),
    output_format: str = typer.Option("table", "--format", help="table, json or csv."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write probe.csv, summary.csv, probe.json and "
                                       "variance_vs_depth.png here."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress on stderr."),
) -> None:
    """Probe a network's per-layer signal and gradient against the paper's variance chain.

    \b
    Examples:
      initlab probe                                   # 30-layer plain ReLU net, xavier-fanin vs kaiming
      initlab probe --depth 22 --act relu,prelu --init kaiming --out reports/probe22
      initlab probe --model mlp --depth 50 --width 512 --init torch-default --format json
      initlab probe --model mypkg.nets:build --input-shape 3,224,224 --init own,kaiming
      initlab probe --model mypkg/text.py:build --input-factory mypkg/text.py:batch
      initlab probe --seeds 64 --batched on --device cuda   # 64 seeds in one stacked pass
      initlab probe --model mlp --depth 20 --init kaiming,orthogonal --jacobian-projections 8
      initlab probe --depth 22 --init kaiming --seeds 1 --elementwise-variances --format csv
    """
    import torch

    from .activations import parse_activation
    from .files import check_writable_directory
    from .inputs import example_batch
    from .folders import probe_documents, probe_frame, write_probe_folder
    from .models import ModelRecipe, build_reproducibly, load_factory
    from .probe import probe, resolve_device

    if output_format not in ("table", "json", "csv"):
        raise ValueError(f"--format must be table, json or csv, got {output_format!r}")
    if batched not in ("auto", "on", "off"):
        raise ValueError(f"--batched must be auto, on or off, got {batched!r}")
    if mode is not None and mode not in ("fan_in", "fan_out"):
        raise ValueError(f"--mode must be fan_in or fan_out, got {mode!r}")
    _check_range("--depth", depth, 1, 1000)
    _check_range("--width", width, 1, 65536)
    _check_range("--seeds", seeds, 1, 1000)
    _check_range("--batch-size", batch_size, 1, 1_000_000)
    _check_range("--stages", stages, 1, 10)
    _check_range("--jacobian-projections", jacobian_projections, 0, 10_000)
    if input_factory is not None and input_shape is not None:
        raise ValueError("give --input-shape or --input-factory, not both")
    shape = _parse_shape(input_shape) if input_factory is None else (1,)
    acts = _split(act) or ["relu"]
    for spec in acts:
        parse_activation(spec)
    user_model = ":" in model
    if user_model and act != "relu":
        raise ValueError("--act applies to built-in models; a user model brings its own activations")
    inits = _init_specs(init, mode, user_model)
    target = resolve_device(device)
    if out is not None:
        check_writable_directory(out)

    results = {}
    for init_spec, act_spec in itertools.product(inits, acts):
        recipe = ModelRecipe(model, depth, width, shape, act_spec, stages)
        factory = recipe.factory()
        if input_factory is not None:
            example = load_factory(input_factory)
        else:  # a user model is built once to see whether it takes token ids
            example = example_batch(build_reproducibly(factory) if user_model else None, recipe.example_shape(),
                                    batch_size)
        label = f"{init_spec} / {act_spec}" if not user_model else init_spec
        progress = _progress_printer(f"probing {model} · {label} · seeds", _progress_style(quiet))
        config = {"model": model, "depth": depth, "width": width, "act": act_spec if not user_model else None,
                  "stages": stages if model == "plain" else None, "torch": torch.__version__,
                  "input": "N(0, 1), its own generator stream"}
        results[label] = probe(factory, example, init=None if init_spec == OWN_INIT else init_spec, seeds=seeds,
                               device=target, config=config, progress=progress,
                               batched={"auto": None, "on": True, "off": False}[batched],
                               jacobian_projections=jacobian_projections,
                               elementwise_variances=elementwise_variances)

    if output_format == "json":
        typer.echo(json.dumps(probe_documents(results), indent=2))
    elif output_format == "csv":
        typer.echo(probe_frame(results).to_csv(index=False), nl=False)
    else:
        typer.echo(_probe_text(results, model))
    if out is not None:
        written = write_probe_folder(results, out, model)
        typer.echo(f"wrote {', '.join(str(p) for p in written)}", err=True)


@app.command("check")
def check_command(
    model: str = typer.Argument(..., help="package.module:factory, path/to/file.py:factory, or a built-in model "
                                "(plain, mlp, paper-a/b/c/30)."),
    input_shape: Optional[str] = typer.Option(None, "--input-shape", help="One example's shape, e.g. 3,224,224 "
                                              "(the batch is N(0,1); token ids in range, shape = sequence length, "
                                              "for a model whose first layer is an Embedding); required for a user "
                                              "model without --input-factory."),
    input_factory: Optional[str] = typer.Option(None, "--input-factory", help=INPUT_FACTORY_HELP),
    batch_size: int = typer.Option(8, "--batch-size", help="Examples in the N(0,1) batch built from --input-shape."),
    direction: str = typer.Option("forward", "--direction", help="forward (He fan_in, eq. 10) or backward (fan_out, "
                                  "eq. 14): the condition the init should meet; both verdicts are always judged."),
    mode: str = typer.Option("train", "--mode", help="Normalization layers in train (batch statistics), eval "
                             "(running statistics) or as-is mode."),
    init: Optional[str] = typer.Option(None, "--init", help="Re-initialize first with this scheme (e.g. kaiming) "
                                       "to see whether a fix works, for the activations a traced pass finds next "
                                       "to each layer; default: the model's own init."),
    device: str = typer.Option("auto", "--device", help="auto (cuda when present), cpu or cuda."),
    jacobian_projections: int = typer.Option(0, "--jacobian-projections", help="Also estimate the input–output "
                                             "Jacobian's spread from N random projections (each a backward and a "
                                             "forward-mode pass; 4–8 give it to 10–20 %); 0: not measured."),
    output_format: str = typer.Option("text", "--format", help="text or json."),
    out: Optional[Path] = typer.Option(None, "--out", help="Also write check.json, layers.csv and check.png here."),
) -> None:
    """Pre-training sanity check of any network's init: exit 0 healthy, 1 unhealthy, 2 usage error.

    \b
    Examples:
      initlab check mypkg.nets:build --input-shape 3,224,224
      initlab check mypkg/text.py:build --input-factory mypkg/text.py:batch --mode eval
      initlab check mypkg.text:build --input-shape 128      # token ids, sequence length 128
      initlab check plain --init kaiming --format json
      initlab check mlp --jacobian-projections 8     # and the input–output Jacobian's spread

    A user factory is called after torch.manual_seed(0), so its own init gives the same weights each run.
    """
    from .check import check
    from .files import atomic_write_text, check_writable_directory
    from .inputs import example_batch
    from .models import ModelRecipe, build_reproducibly, load_factory
    from .probe import resolve_device
    from .schemes import UndrawnWeightsWarning, parse_scheme
    from .traced_init import redraw

    if output_format not in ("text", "json"):
        raise ValueError(f"--format must be text or json, got {output_format!r}")
    if input_factory is not None and input_shape is not None:
        raise ValueError("give --input-shape or --input-factory, not both")
    _check_range("--batch-size", batch_size, 1, 1_000_000)
    _check_range("--jacobian-projections", jacobian_projections, 0, 10_000)
    if init is not None:
        parse_scheme(init)
    target = resolve_device(device)
    if out is not None:
        check_writable_directory(out)
    recipe = ModelRecipe(model, input_shape=_parse_shape(input_shape) if input_factory is None else (1,))
    # its own init: the same weights each run (the recipe is resolved after the seed too: a built-in
    # model is built once there to check its layout)
    network = build_reproducibly(lambda: recipe.factory()(), device=target)
    if input_factory is not None:
        example = load_factory(input_factory)
    else:
        example = example_batch(network, recipe.example_shape(), batch_size)
    if init is not None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UndrawnWeightsWarning)
            redraw(network, init, example)
        for warning in caught:  # one line, not Python's warning with its source line
            typer.echo(f"warning: {warning.message}", err=True)
    report = check(network, example, direction=direction, mode=mode, device=target,
                   input_drawn=input_factory is None, jacobian_projections=jacobian_projections)
    if output_format == "json":
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        typer.echo(report.text())
    if out is not None:
        written = [atomic_write_text(out / "check.json", json.dumps(report.to_dict(), indent=2)),
                   atomic_write_text(out / "layers.csv", report.to_frame().to_csv(index=False)),
                   out / "check.png"]
        report.plot(out / "check.png")
        typer.echo(f"wrote {', '.join(str(p) for p in written)}", err=True)
    if not report.healthy:
        raise typer.Exit(1)


TRAIN_DEFAULTS = dict(depth=30, width=32, stages=1, epochs=20, lr=0.001)


def _progress_style(quiet: bool) -> str | None:
    """Return how long work shows progress on stderr: a redrawn bar on a terminal, a line per
    quarter of the work when stderr is a file or a pipe (CI logs, ``| tee``), nothing with --quiet."""
    if quiet:
        return None
    return "bar" if sys.stderr.isatty() else "lines"


def _progress_printer(label: str, style: str | None):
    """Return an on_step(step, total) callback drawing progress on stderr in ``style``, or None."""
    if style is None:
        return None
    import time
    started = time.perf_counter()
    quarters_shown = set()

    def on_step(step: int, total: int) -> None:
        if style == "bar":
            if step == total or step % max(1, total // 50) == 0:
                filled = int(30 * step / total)
                typer.echo(f"\r{label} [{'#' * filled}{'.' * (30 - filled)}] {step}/{total}", err=True,
                           nl=step == total)
            return
        quarter = 4 * step // total
        if step == 1 or (quarter not in quarters_shown and quarter > 0):
            quarters_shown.add(quarter)
            typer.echo(f"{label}: {step}/{total} ({time.perf_counter() - started:.1f} s)", err=True)
    return on_step


def _history_writer(directory: Path, writes: "BackgroundWriter"):
    """``on_epoch`` for ``train``: the epoch's history and slope files, written by ``writes`` in the
    background while the next epoch trains (the frames are new each epoch, nothing changes them)."""
    def on_epoch(history: "pd.DataFrame", slopes: "pd.DataFrame") -> None:
        from .folders import write_history
        writes.submit(write_history, directory, history, slopes)
    return on_epoch


def _training_text(results: dict, model: str, where: str) -> str:
    """The training table output: per run its history, learned slopes and verdict; then the rules."""
    from .train import VERDICT_RULES, slope_table
    blocks = []
    for label, result in results.items():
        table = result.history[["epoch", "train_loss", "train_error", "val_error", "seconds"]].copy()
        table.insert(4, "lr (first→last step)", [f"{first:.3g}" if first == last else f"{first:.3g}→{last:.3g}"
                                                  for first, last in zip(result.history["lr"], result.history["lr_end"])])
        blocks += [f"\n== {model} · init {label} · {where}", table.to_string(index=False, float_format=lambda v: f"{v:.4g}")]
        if not result.slopes.empty:
            blocks += ["learned PReLU slopes (last epoch; mean and spread over channels):",
                       slope_table(result.slopes).to_string(index=False, float_format=lambda v: f"{v:.3f}")]
        blocks.append(f"verdict: {result.verdict} — {result.reason}")
    blocks.append(f"\nrules: {VERDICT_RULES}")
    return "\n".join(blocks)


@app.command("train")
def train_command(
    model: str = typer.Option("plain", "--model", help="plain, mlp, paper-a/b/c/30, or a module:factory."),
    depth: int = typer.Option(TRAIN_DEFAULTS["depth"], "--depth", help="Weight layers incl. the 3 fc (plain)."),
    width: int = typer.Option(TRAIN_DEFAULTS["width"], "--width", help="plain: channels of stage 1; mlp: units."),
    stages: int = typer.Option(TRAIN_DEFAULTS["stages"], "--stages", help="plain: pooling stages (8×8 digits: 1)."),
    act: str = typer.Option("relu", "--act", help="relu, prelu, prelu-shared, leaky:A."),
    init: str = typer.Option("kaiming", "--init", help="Init scheme (or 'own')."),
    compare: Optional[str] = typer.Option(None, "--compare", help="Several inits, comma-separated, trained from the "
                                          "same seed on the same data order, e.g. xavier-fanin,kaiming."),
    dataset: str = typer.Option("digits", "--dataset", help="digits, synthetic, npz:PATH, imagefolder:PATH, "
                                "cifar10:ROOT."),
    input_shape: Optional[str] = typer.Option(None, "--input-shape", help="synthetic: one example's shape."),
    epochs: int = typer.Option(TRAIN_DEFAULTS["epochs"], "--epochs", help="Epochs."),
    steps: Optional[int] = typer.Option(None, "--steps", help="A budget of optimizer steps instead of --epochs."),
    lr: float = typer.Option(TRAIN_DEFAULTS["lr"], "--lr", help="Initial learning rate."),
    batch_size: int = typer.Option(64, "--batch-size", help="Global batch size (split over torchrun processes)."),
    momentum: float = typer.Option(0.9, "--momentum", help="SGD momentum."),
    weight_decay: float = typer.Option(5e-4, "--weight-decay", help="On Conv/Linear weights only (never slopes)."),
    schedule: str = typer.Option("step", "--schedule", help="step (÷10 at 50% and 75%), cosine or constant."),
    input_scale: float = typer.Option(1.0, "--input-scale", help="Multiply the standardized inputs by this (the "
                                      "paper's pixels are mean-subtracted, not divided by their std: reproduce uses 30)."),
    seed: int = typer.Option(0, "--seed", help="Seeds the split, the init and the data order."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    output_format: str = typer.Option("table", "--format", help="table or json."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write history, slopes, checkpoints and curves.png here."),
    resume: bool = typer.Option(False, "--resume", help="Continue each run from its checkpoint under --out."),
    watch_every: Optional[int] = typer.Option(None, "--watch-every", help="Record the probe's per-layer statistics "
                                              "of every N-th step from the step's own passes (watch.csv and "
                                              "watch.png per run under --out), and name the first step each goes "
                                              "wrong."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress on stderr."),
) -> None:
    """Train briefly and say whether each init converges, stalls or diverges.

    \b
    Examples:
      initlab train --model plain --depth 30 --compare xavier-fanin,kaiming --out reports/fig3
      initlab train --depth 14 --act prelu --epochs 10 --format json
      initlab train --depth 22 --compare xavier-fanin,kaiming --input-scale 30 --schedule constant
      initlab train --dataset npz:data.npz --model mlp --depth 8 --width 128
      initlab train --depth 14 --act prelu --epochs 3 --watch-every 20 --out reports/watch
      torchrun --nproc_per_node=2 -m initlab train --depth 22 --out reports/ddp
    """
    from .activations import parse_activation
    from .data import load_dataset
    from .files import BackgroundWriter, check_writable_directory
    from .models import ModelRecipe
    from .probe import resolve_device
    from .folders import run_folder_name, write_train_folder
    from .train import TrainConfig, start_distributed, stop_distributed, train_scheme

    if output_format not in ("table", "json"):
        raise ValueError(f"--format must be table or json, got {output_format!r}")
    if resume and out is None:
        raise ValueError("--resume needs --out (the directory holding the checkpoints)")
    _check_range("--depth", depth, 1, 1000)
    _check_range("--width", width, 1, 65536)
    _check_range("--epochs", epochs, 1, 100_000)
    _check_range("--batch-size", batch_size, 1, 1_000_000)
    _check_range("--watch-every", watch_every, 1, 10_000_000)
    parse_activation(act)
    config = TrainConfig(epochs=epochs, lr=lr, batch_size=batch_size, momentum=momentum, weight_decay=weight_decay,
                         schedule=schedule, seed=seed, steps=steps, input_scale=input_scale)
    inits = _init_specs(compare or init, None, False)
    rank, world, ddp_device = start_distributed()
    completed = False
    try:
        target = ddp_device or resolve_device(device)
        data = load_dataset(dataset, seed=seed, input_shape=_parse_shape(input_shape))
        recipe = ModelRecipe(model, depth, width, data.input_shape, act, stages, data.num_classes)
        factory = recipe.factory()
        if out is not None and rank == 0:
            check_writable_directory(out)
        progress_style = _progress_style(quiet) if rank == 0 else None
        results = {}
        with BackgroundWriter("initlab-history") as history_writes:  # on disk when the block is left, Ctrl-C too
            for init_spec in inits:
                directory = out / run_folder_name(init_spec) if out is not None else None
                if directory is not None and rank == 0:
                    directory.mkdir(parents=True, exist_ok=True)
                results[init_spec] = train_scheme(
                    factory, None if init_spec == OWN_INIT else init_spec, data, config, device=target,
                    checkpoint=directory / "checkpoint.pt" if directory is not None else None,
                    resume=resume and directory is not None and (directory / "checkpoint.pt").exists(),
                    on_step=_progress_printer(f"training {init_spec} · steps", progress_style),
                    on_epoch=(_history_writer(directory, history_writes) if directory is not None and rank == 0
                              else None),
                    watch_every=watch_every)
                results[init_spec].config.update({"model": model, "depth": depth, "width": width, "stages": stages,
                                                  "act": act, "dataset": dataset, "device": str(target),
                                                  "world_size": world})
        completed = True
    finally:
        stop_distributed(completed)  # before rank 0 writes: no rank exits with the group still open
    if rank != 0:
        return
    documents = [result.to_dict() for result in results.values()]
    if output_format == "json":
        typer.echo(json.dumps(documents[0] if len(documents) == 1 else documents, indent=2))
    else:
        typer.echo(_training_text(results, f"{model} depth {depth} · act {act}",
                                  f"{dataset} · seed {seed} · {world} process(es) on {target}"))
    if out is not None:
        write_train_folder(results, out, f"{model}, {depth} layers, {act}, {dataset}")
        watched = ", watch.csv and watch.png" if watch_every else ""
        typer.echo(f"wrote {out}/train.json, {out}/curves.png and per-run history, slopes{watched}, checkpoints",
                   err=True)


@app.command("reproduce")
def reproduce_command(
    out: Path = typer.Option(Path("reports/paper"), "--out", help="Where the tables, curves and runs go."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    quick: bool = typer.Option(False, "--quick", help="3 epochs, one seed, 5–8 layers: a smoke test, not the claims."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress on stderr."),
) -> None:
    """Reproduce the paper's training claims at CPU scale (Figures 2 and 3, Tables 1 and 2).

    \b
    Runs on digits and gratings (about 10 minutes on 2 CPU cores), and says which claims held:
      figure3  30-layer plain ReLU net, xavier-fanin vs kaiming  (paper: Xavier stalls, He converges)
      figure2  22-layer plain ReLU net, xavier-fanin vs kaiming, 3 seeds  (paper: both converge, He earlier)
      table2   14 layers, ReLU vs PReLU (shared, channel-wise), 5 seeds paired  (paper: PReLU lower error)
      table1   learned PReLU slopes per layer on gratings, 2 seeds  (paper: first layer's slope largest)
    Figures 2 and 3 take the paper's input scale (standardized inputs × 30: its pixels are
    mean-subtracted, not divided by their std) and a constant lr.
    """
    from .files import atomic_write_text, check_writable_directory
    from .probe import resolve_device
    from .reproduce import describe_run, format_comparison, reproduce, write_paper_report

    target = resolve_device(device)
    check_writable_directory(out)
    style = _progress_style(quiet)
    summary = {}

    def report(name: str, part: dict) -> None:
        experiment, table = part["experiment"], part["table"]
        typer.echo(f"\n== {name}: {experiment.claim}")
        typer.echo(f"   run here: {describe_run(experiment)}"
                   + (" (quick smoke run: not the claim)" if quick else ""))
        typer.echo(format_comparison(table, experiment.epochs))
        atomic_write_text(out / f"{name}.csv", table.to_csv(index=False))
        summary[name] = {"claim": experiment.claim, "table": table.to_dict("records"),
                         "runs": {label: [r.to_dict() for r in runs] for label, runs in part["results"].items()}}

    outcome = reproduce(device=target, out=out, quick=quick, on_run=lambda label: _progress_printer(f"{label} · steps", style),
                        on_experiment=report)
    typer.echo("\n== what held (the paper's claims at this scale)" + (" — quick smoke run: not the claims" if quick else ""))
    typer.echo(outcome["claims"].to_string(index=False))
    atomic_write_text(out / "claims.csv", outcome["claims"].to_csv(index=False))
    summary["claims"] = outcome["claims"].to_dict("records")
    typer.echo("\n== table1: learned PReLU slopes at the end of training (mean over seeds)")
    typer.echo(outcome["slopes"].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    atomic_write_text(out / "slopes.csv", outcome["slopes"].to_csv(index=False))
    summary["slopes"] = outcome["slopes"].to_dict("records")
    atomic_write_text(out / "reproduce.json", json.dumps(summary, indent=2, default=str))
    page = write_paper_report(outcome, out, quick)
    typer.echo(f"report: {page}", err=True)
    typer.echo(f"wrote {out}/{{claims,figure3,figure2,table2,table1,slopes}}.csv and reproduce.json", err=True)


@app.command("report")
def report_command(
    out: Path = typer.Option(..., "--out", help="Folder of the report (index.html, PNGs, CSV/JSON)."),
    sources: list[Path] = typer.Option([], "--from", help="An output folder of initlab probe or train; "
                                       "repeatable. Without it, the default probe and Figure-3 training are run."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress on stderr."),
) -> None:
    """Write a self-contained HTML report (figures embedded, data files beside it).

    \b
    Examples:
      initlab report --out reports/mynet --from reports/probe --from reports/fig3
      initlab report --out reports/default          # runs the default probe and training first
    """
    from .files import check_writable_directory
    from .folders import load_probe_folder, load_train_folder
    from .probe import resolve_device
    from .report import probe_section, report_header, training_section, write_html
    from .reproduce import default_runs

    check_writable_directory(out)
    command = "initlab report --out " + str(out) + "".join(f" --from {s}" for s in sources)
    sections = []
    if not sources:
        style = _progress_style(quiet)
        sources = list(default_runs(out, _split(DEFAULT_INITS), device=resolve_device("auto"),
                                    on_run=lambda label: _progress_printer(f"{label} · steps", style)))
    for source in sources:
        if (source / "probe.csv").is_file():
            sections.append(probe_section(load_probe_folder(source), out / f"probe-{source.name}",
                                          f"Probe: {source}"))
        elif (source / "train.json").is_file():
            sections.append(training_section(load_train_folder(source), out / f"train-{source.name}",
                                             f"Training: {source}"))
        else:
            raise ValueError(f"--from {source}: no probe.csv or train.json there (an initlab probe/train --out folder)")
    page = write_html(out / "index.html", f"initlab report: {out.name}", report_header(command), sections)
    typer.echo(f"report: {page}", err=True)


@app.command("list")
def list_command(what: str = typer.Argument("all", help="schemes, activations, models or all")) -> None:
    """List the registered init schemes, activations and models."""
    from .activations import ACTIVATIONS
    from .data import DATASETS
    from .models import BUILTIN_MODELS
    from .schemes import SCHEMES

    tables = {
        "schemes": {name: spec.summary for name, spec in SCHEMES.items()},
        "activations": {name: description for name, (_, description) in ACTIVATIONS.items()},
        "datasets": DATASETS,
        "models": dict(BUILTIN_MODELS, **{"module:factory": "any nn.Module factory (package.module:fn or "
                                          "path/to/file.py:fn) with --input-shape"}),
    }
    if what != "all" and what not in tables:
        raise ValueError(f"unknown list {what!r}; valid: {', '.join(tables)}, all")
    for name, table in tables.items():
        if what in ("all", name):
            typer.echo(f"{name}:")
            for key, description in table.items():
                typer.echo(f"  {key:<16} {description}")


def _in_cli_terms(message: str) -> str:
    """A library error's message with its parameter names as the command line's flags."""
    import re
    for pattern, flag in _CLI_TERMS:
        message = re.sub(pattern, flag, message)
    return message


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return its exit code (0 ok, 1 check found the init unhealthy, 2 usage or input error)."""
    _state["debug"] = False  # set again by --debug; never carried over from an earlier call
    try:
        code = app(args=argv, standalone_mode=False, prog_name="initlab")
        if code == 130:  # typer turns Ctrl-C into exit code 130
            typer.echo(INTERRUPTED, err=True)
        return code if isinstance(code, int) else 0
    except typer.Exit as error:
        if error.exit_code == 130:  # typer turns Ctrl-C into Exit(130)
            typer.echo(INTERRUPTED, err=True)
        return error.exit_code
    except (typer.Abort, KeyboardInterrupt):
        typer.echo(INTERRUPTED, err=True)
        return 130
    except (ValueError, OSError) as error:
        if _state["debug"]:
            raise
        typer.echo(f"error: {_in_cli_terms(str(error).splitlines()[0]) if str(error) else type(error).__name__}", err=True)
        return 2
    except RuntimeError as error:  # e.g. a user model that does not fit the data, met mid-training
        if _state["debug"]:
            raise
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        typer.echo(f"error: {type(error).__name__}: {first_line} (initlab --debug … shows the traceback)", err=True)
        return 2
    except Exception as error:
        # click's UsageError (bad option, missing value): vendored inside typer or not, it carries
        # exit_code 2 and format_message().
        if type(error).__name__ == "NoArgsIsHelpError":  # bare `initlab`: the help, whole, as click prints it
            typer.echo(error.format_message())
            return 0
        if getattr(error, "exit_code", None) == 2 and hasattr(error, "format_message"):
            typer.echo(f"error: {error.format_message().splitlines()[0]}", err=True)
            return 2
        raise


def entry_point() -> None:
    code = main()
    from .torchrun import end_worker_process, launched_as_worker

    if launched_as_worker():  # under torchrun: no finalization, where gloo's threads could abort it
        end_worker_process(code)
    sys.exit(code)
