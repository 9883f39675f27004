"""The ``initlab`` command line: a thin typer layer over the library.

Errors from the library (``ValueError`` and its subclasses) become one line on stderr and exit
code 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path
from typing import Optional

import pandas as pd
import torch
import typer

from . import __version__
from .activations import ACTIVATIONS, parse_activation
from .files import atomic_write_text, check_writable_directory
from .models import BUILTIN_MODELS, ModelRecipe
from .probe import probe, resolve_device
from .report import plot_variance_vs_depth
from .schemes import INPUT_STREAM, SCHEMES, parse_scheme, stream_seed

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None, help="Does your network's initialization let signal and gradient through? "
                  "(He et al. 2015, 'Delving Deep into Rectifiers')")
_state = {"debug": False}

OWN_INIT = "own"
DEFAULT_INITS = "xavier-fanin,kaiming"


@app.callback()
def _main(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
          version: bool = typer.Option(False, "--version", help="Print the version and exit.")) -> None:
    _state["debug"] = debug
    if version:
        typer.echo(f"initlab {__version__} (torch {torch.__version__})")
        raise typer.Exit(0)


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
    if value is None or pd.isna(value):
        return "-"
    return f"{value:.3g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"


def _table(summary: pd.DataFrame) -> str:
    columns = {
        "index": "#", "name": "layer", "kind": "kind", "fan_in": "fan_in", "slope": "slope", "var_w": "Var[w]",
        "forward_factor": "factor", "var_y": "E[y²]", "var_y_pred": "pred", "log10_ratio_forward": "log10 m/p",
        "within_band_forward": "in band", "grad_var": "E[Δx²]", "grad_var_pred": "pred ",
        "log10_ratio_backward": "log10 m/p ", "within_band_backward": "in band ", "verdict": "verdict",
    }
    table = summary[list(columns)].rename(columns=columns)
    formatters = {name: _fmt for name in ("slope", "Var[w]", "factor", "E[y²]", "pred", "E[Δx²]", "pred ")}
    formatters.update({name: (lambda v: f"{v:+.2f}") for name in ("log10 m/p", "log10 m/p ")})
    formatters.update({name: (lambda v: "yes" if v else "NO") for name in ("in band", "in band ")})
    return table.to_string(index=False, formatters=formatters)


@app.command("probe")
def probe_command(
    model: str = typer.Option("plain", "--model", help="plain, mlp, paper-a/b/c/30, or package.module:factory "
                              "or path/to/file.py:factory"),
    depth: Optional[int] = typer.Option(None, "--depth", help="Weight layers incl. the 3 fc (plain: 30), or Linear "
                                        "layers (mlp: 10)."),
    width: Optional[int] = typer.Option(None, "--width", help="Base width: plain channels of stage 1 (16), mlp units "
                                        "(256)."),
    input_shape: Optional[str] = typer.Option(None, "--input-shape", help="One example's shape, e.g. 3,32,32 (plain "
                                              "default) or 784; required for a user model."),
    init: Optional[str] = typer.Option(None, "--init", help="Scheme(s), comma-separated: kaiming, xavier, "
                                       "xavier-fanin, torch-default, normal:STD, orthogonal, own (the model's own). "
                                       f"Options after ':' e.g. kaiming:a=0,mode=fan_out. Default {DEFAULT_INITS} "
                                       "(own for a user model)."),
    act: str = typer.Option("relu", "--act", help="Activation(s), comma-separated: relu, prelu, prelu-shared, "
                            "leaky:A (built-in models only)."),
    mode: Optional[str] = typer.Option(None, "--mode", help="fan_in or fan_out: Kaiming's fan mode where --init "
                                       "does not set one."),
    seeds: int = typer.Option(3, "--seeds", help="Seeds 0..N-1: each re-initializes and probes."),
    batch_size: int = typer.Option(64, "--batch-size", help="Examples in the probe batch (N(0,1) input)."),
    stages: int = typer.Option(3, "--stages", help="plain: pooling stages."),
    device: str = typer.Option("auto", "--device", help="auto (cuda when present), cpu or cuda."),
    output_format: str = typer.Option("table", "--format", help="table, json or csv."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write probe.csv, summary.csv, probe.json and "
                                       "variance_vs_depth.png here."),
) -> None:
    """Probe a network's per-layer signal and gradient against the paper's variance chain.

    \b
    Examples:
      initlab probe                                   # 30-layer plain ReLU net, xavier-fanin vs kaiming
      initlab probe --depth 22 --act relu,prelu --init kaiming --out reports/probe22
      initlab probe --model mlp --depth 50 --width 512 --init torch-default --format json
      initlab probe --model mypkg.nets:build --input-shape 3,224,224 --init own,kaiming
    """
    if output_format not in ("table", "json", "csv"):
        raise ValueError(f"--format must be table, json or csv, got {output_format!r}")
    if mode is not None and mode not in ("fan_in", "fan_out"):
        raise ValueError(f"--mode must be fan_in or fan_out, got {mode!r}")
    _check_range("--depth", depth, 1, 1000)
    _check_range("--width", width, 1, 65536)
    _check_range("--seeds", seeds, 1, 1000)
    _check_range("--batch-size", batch_size, 1, 1_000_000)
    _check_range("--stages", stages, 1, 10)
    shape = _parse_shape(input_shape)
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
        example = torch.randn((batch_size, *recipe.example_shape()),
                              generator=torch.Generator().manual_seed(stream_seed(0, INPUT_STREAM)))
        label = f"{init_spec} / {act_spec}" if not user_model else init_spec
        progress = None
        if sys.stderr.isatty():
            def progress(done: int, total: int, label: str = label) -> None:
                typer.echo(f"\rprobing {model} · {label} · seed {done}/{total} on {target}…", err=True,
                           nl=done == total)
        config = {"model": model, "depth": depth, "width": width, "act": act_spec if not user_model else None,
                  "stages": stages if model == "plain" else None, "torch": torch.__version__,
                  "input": "N(0, 1), its own generator stream"}
        results[label] = probe(factory, example, init=None if init_spec == OWN_INIT else init_spec, seeds=seeds,
                               device=target, config=config, progress=progress)

    documents = [result.to_dict() for result in results.values()]
    if output_format == "json":
        typer.echo(json.dumps(documents[0] if len(documents) == 1 else documents, indent=2))
    elif output_format == "csv":
        typer.echo(_combined_frame(results).to_csv(index=False), nl=False)
    else:
        for label, result in results.items():
            gains = result.gains()
            config = result.config
            typer.echo(f"\n== {model} · init {config['init']} · act {config.get('act') or 'own'} · "
                       f"{len(config['seeds'])} seed(s) · batch {config['batch_size']} · {config['device']}")
            typer.echo(_table(result.summary()))
            typer.echo(f"forward gain E[y_L²]/E[y_1²]: {_fmt(gains['forward_gain'])} (predicted "
                       f"{_fmt(gains['forward_gain_pred'])}) · backward gain E[Δx_1²]/E[Δx_L²]: "
                       f"{_fmt(gains['backward_gain'])} (predicted {_fmt(gains['backward_gain_pred'])}) · "
                       f"verdict: {gains['verdict']}")
        typer.echo(f"\n{documents[0]['config']['direction']}; E[·²] = second moment over all elements, seed mean; "
                   "band: finite-width 3σ band on log10(measured/predicted)")
    if out is not None:
        written = _write_outputs(results, out, model)
        typer.echo(f"wrote {', '.join(str(p) for p in written)}", err=True)


def _combined_frame(results: dict) -> pd.DataFrame:
    frames = []
    for label, result in results.items():
        frame = result.to_frame()
        frame.insert(0, "init", result.config["init"])
        frame.insert(1, "act", result.config.get("act"))
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def _write_outputs(results: dict, out: Path, model: str) -> list[Path]:
    summaries = []
    for label, result in results.items():
        summary = result.summary()
        summary.insert(0, "init", result.config["init"])
        summary.insert(1, "act", result.config.get("act"))
        summaries.append(summary)
    documents = [result.to_dict() for result in results.values()]
    return [
        atomic_write_text(out / "probe.csv", _combined_frame(results).to_csv(index=False)),
        atomic_write_text(out / "summary.csv", pd.concat(summaries, ignore_index=True).to_csv(index=False)),
        atomic_write_text(out / "probe.json", json.dumps(documents[0] if len(documents) == 1 else documents,
                                                           indent=2)),
        plot_variance_vs_depth({label: result.frame for label, result in results.items()},
                               out / "variance_vs_depth.png", title=f"{model}: variance vs depth"),
    ]


@app.command("list")
def list_command(what: str = typer.Argument("all", help="schemes, activations, models or all")) -> None:
    """List the registered init schemes, activations and models."""
    tables = {
        "schemes": {name: spec.summary for name, spec in SCHEMES.items()},
        "activations": {name: description for name, (_, description) in ACTIVATIONS.items()},
        "models": dict(BUILTIN_MODELS, **{"module:factory": "any nn.Module factory (package.module:fn or "
                                          "path/to/file.py:fn) with --input-shape"}),
    }
    if what != "all" and what not in tables:
        raise ValueError(f"unknown list {what!r}; valid: schemes, activations, models, all")
    for name, table in tables.items():
        if what in ("all", name):
            typer.echo(f"{name}:")
            for key, description in table.items():
                typer.echo(f"  {key:<16} {description}")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return its exit code (0 ok, 2 usage or input error)."""
    try:
        code = app(args=argv, standalone_mode=False, prog_name="initlab")
        return code if isinstance(code, int) else 0
    except typer.Exit as error:
        return error.exit_code
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("interrupted", err=True)
        return 130
    except (ValueError, OSError) as error:
        if _state["debug"]:
            raise
        typer.echo(f"error: {str(error).splitlines()[0] if str(error) else type(error).__name__}", err=True)
        return 2
    except Exception as error:
        # click's UsageError (bad option, missing value): vendored inside typer or not, it carries
        # exit_code 2 and format_message().
        if getattr(error, "exit_code", None) == 2 and hasattr(error, "format_message"):
            typer.echo(f"error: {error.format_message().splitlines()[0]}", err=True)
            return 2
        raise


def entry_point() -> None:
    sys.exit(main())
