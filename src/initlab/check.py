"""Pre-training sanity check of any ``nn.Module``: does its initialization let signal and gradient through?

``check(model, example_input)`` probes the model as it is (its own weights, one forward and
backward pass), judges every layer's chain gain and every residual stream (``compare``), and
names the common misconfigurations with their numbers:

- PyTorch's default Conv/Linear init under a rectifier: n·Var[w] = 1/3, factor ½(1+a²)/3 per layer
  (1/6 for ReLU);
- Xavier under a rectifier: n·Var[w] = 1 (the paper's form) or 2n/(n+n̂) (Glorot), factor ½ for ReLU;
- Kaiming for a slope b ≠ the slope a of the PReLU/leaky ReLU actually there: factor (1+a²)/(1+b²);
- Kaiming in the fan mode of the other direction: factor n/n̂ per layer forward (n̂/n backward);
- dead ReLU units at init (never positive on the batch);
- a first layer fed unnormalized input (E[x²] far from 1, or channel means far from 0);
- residual streams that grow exponentially, and NaN/Inf;
- examples whose representations collapse (mean cosine → 1 faster than a critical He chain allows).

On request the report also gives the input–output Jacobian's mean squared singular value and
spread (``conditioning``), from a few random projections.

Each layer's init is identified from its sampled E[w²] against these candidates, within the
sampling error of a second moment over the layer's weights. The model, its buffers, train/eval
flags and the RNG state are left as found.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
from torch import nn

from .compare import slope_from_factor
from .verdicts import HEALTHY_DECADES, JUDGED_GROWTH, stream_summary
from .files import json_records, json_value
from .probe import ModelInput, ProbeResult, probe
from .schemes import DROPOUT_STREAM, stream_seed
from .theory import rectifier_factor

DIRECTIONS = ("forward", "backward")
MODES = ("train", "eval", "as-is")
# Fraction of a ReLU's units dead on the whole batch. A zero-mean input kills a unit with
# probability ~2^-batch; an all-positive input (after a global pool) can kill up to about half of
# them through the weights' signs alone, which training repairs. More than that is a bias or input problem.
DEAD_WARNING, DEAD_ERROR = 0.60, 0.90
INPUT_SECOND_MOMENT_WARNING = (0.1, 10.0)
INPUT_SECOND_MOMENT_ERROR = (0.01, 100.0)
ATTENTION_LOGIT_STD_ERROR = 10.0  # softmax logits spread beyond it: one-hot attention at init
NORM_WEIGHT_WARNING = 0.01  # E[γ²] of a normalization's affine weight below it (|γ| ≲ 0.1), not zero
NORM_UNDONE_ERROR = 0.5  # Var/(Var + eps) below it: the input's variance is under the normalization's eps
INPUT_MEAN_Z = 5.3  # two-sided 10⁻³ over 10⁴ units (Bonferroni): a channel mean beyond sampling error


class CheckError(ValueError):
    """A check that cannot run (bad direction or mode; probe errors are ``ProbeError``)."""


class UnhealthyInitError(AssertionError):
    """Raised by ``CheckReport.assert_healthy`` with the report's verdict lines and findings."""


@dataclass(frozen=True)
class Finding:
    """One named problem: what it is, where, its per-layer factor, and the fix."""

    kind: str  # e.g. "torch-default-init", "xavier-under-rectifier", "dead-units"
    severity: str  # "error" (the check fails) or "warning"
    message: str
    fix: str = ""
    layers: tuple[str, ...] = ()
    factor: float | None = None  # per-layer second-moment factor, where one applies

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "severity": self.severity, "message": self.message, "fix": self.fix,
                "layers": list(self.layers), "factor": self.factor}


# -- which init does a layer carry? --------------------------------------------------------------


def init_candidates(fan_in: int, fan_out: int, slope: float | None,
                    torch_fan_out: int | None = None) -> dict[str, float]:
    """Return n·E[w²] of each known init for a layer with these fans next to a rectifier of ``slope``.

    torch-default 1/3 (kaiming_uniform_(a=√5)); xavier-fanin 1 (Var[w] = 1/n); xavier 2n/(n+n̂);
    kaiming 2/(1+a²) (fan_in) and 2/(1+a²)·n/n̂ (fan_out); kaiming for ReLU, 2, where a ≠ 0.

    ``torch_fan_out``: torch's own fan_out, k^d·c_out, which ignores groups
    (``nn.init._calculate_fan_in_and_fan_out``); for a grouped or depthwise conv torch's
    ``kaiming_*_(mode="fan_out")`` and ``xavier_*_`` use it, and are named with ``(torch)``.
    """
    a = slope or 0.0
    he = 1.0 / float(rectifier_factor(a))  # n·Var[w] under He's condition, 2/(1+a²)
    candidates = {  # He's two modes first: where candidates coincide, the layer reads as He
        "kaiming": he,
        "kaiming:mode=fan_out": he * fan_in / fan_out,
        "xavier-fanin": 1.0,
        "xavier": 2.0 * fan_in / (fan_in + fan_out),
        "torch-default": 1.0 / 3.0,
    }
    if torch_fan_out is not None and torch_fan_out != fan_out:
        candidates["kaiming:mode=fan_out(torch)"] = he * fan_in / torch_fan_out
        candidates["xavier(torch)"] = 2.0 * fan_in / (fan_in + torch_fan_out)
    if a > 0:
        candidates["kaiming:a=0"] = 2.0
        if torch_fan_out is not None and torch_fan_out != fan_out:
            candidates["kaiming:mode=fan_out(torch):a=0"] = 2.0 * fan_in / torch_fan_out
    return candidates


def identify_init(fan_in: int, fan_out: int, weight_count: int, weight_second_moment: float,
                  slope: float | None, torch_fan_out: int | None = None) -> str:
    """Return the candidate init (``init_candidates``) whose n·Var[w] matches the sampled n·E[w²],
    or ``"other"``. Tolerance: 3 standard errors of a second moment over the layer's weights
    (√(2/count) relative for Gaussian weights), at least 8 %."""
    if not (weight_second_moment > 0 and math.isfinite(weight_second_moment)):
        return "other"
    measured = fan_in * weight_second_moment
    tolerance = max(0.08, 3.0 * math.sqrt(2.0 / max(weight_count, 1)))
    for name, value in init_candidates(fan_in, fan_out, slope, torch_fan_out).items():  # He first: ambiguity reads healthy
        if abs(math.log(measured / value)) <= math.log1p(tolerance):
            return name
    return "other"


# -- the report ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckReport:
    """Result of ``check``: verdicts, findings, the per-layer table and the probe behind them."""

    result: ProbeResult
    layers: pd.DataFrame
    findings: tuple[Finding, ...]
    gains: dict
    direction: str
    mode: str
    streams: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def verdict_forward(self) -> str:
        return self.gains["verdict_forward"] if self.gains["verdict"] != "non-finite" else "non-finite"

    @property
    def verdict_backward(self) -> str:
        return self.gains["verdict_backward"] if self.gains["verdict"] != "non-finite" else "non-finite"

    @property
    def healthy(self) -> bool:
        """True when both verdicts are healthy and no finding is an error."""
        return (self.verdict_forward == "healthy" and self.verdict_backward == "healthy"
                and not any(f.severity == "error" for f in self.findings))

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    def to_frame(self) -> pd.DataFrame:
        """Return one row per layer call: fans, identified init, factors, chain gains, verdict."""
        return self.layers.copy()

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict: verdicts, findings, layers, residual streams, configuration."""
        return {"healthy": self.healthy, "verdict_forward": self.verdict_forward,
                "verdict_backward": self.verdict_backward, "direction": self.direction, "mode": self.mode,
                "findings": [f.to_dict() for f in self.findings],
                "summary": {key: json_value(value) for key, value in self.gains.items()},
                "layers": json_records(self.layers), "residual_streams": json_records(self.streams),
                "coverage": self.result.coverage.to_dict() if self.result.coverage is not None else None,
                "config": self.result.config}

    def verdict_lines(self) -> list[str]:
        """Return the short verdict: one line per direction, and one per residual stream set."""
        from .render import check_verdict_lines
        return check_verdict_lines(self)

    def text(self) -> str:
        """Return the report as the CLI prints it: verdicts, then findings with their fixes."""
        from .render import check_text
        return check_text(self)

    def __str__(self) -> str:
        return self.text()

    def assert_healthy(self) -> None:
        """Raise ``UnhealthyInitError`` (an ``AssertionError``) with the report's text if not healthy."""
        if not self.healthy:
            raise UnhealthyInitError(self.text())

    def plot(self, path: str | None = None) -> Any:
        """Return a matplotlib Figure of chain gains against depth; also write it as PNG to ``path``."""
        from .report import plot_check
        return plot_check(self, path)

    def _repr_html_(self) -> str:
        from .render import check_html
        return check_html(self)


# -- the check -----------------------------------------------------------------------------------


def check(model: nn.Module, example_input: ModelInput | Callable[[], ModelInput], *, direction: str = "forward",
          mode: str = "train", device: str | None = None, seed: int = 0, input_drawn: bool = False,
          jacobian_projections: int = 0) -> CheckReport:
    """Return a ``CheckReport`` on whether ``model``'s current initialization lets signal and
    gradient through, with every misconfiguration found named with its numbers.

    ``example_input``: a batch (tensor), a tuple/list (positional) or dict (keyword arguments) of
    tensors, or a zero-argument factory returning one. ``direction``: which of He's conditions
    the init should satisfy ("forward": fan_in, eq. 10; "backward": fan_out, eq. 14); both
    verdicts are always judged. ``mode``: normalization layers in "train" mode (batch statistics,
    what the first training step sees; the default), "eval" mode (running statistics), or
    "as-is". ``seed`` draws the output direction of the backward pass and seeds the global RNG for
    the pass (train-mode dropout masks), which is restored after. ``input_drawn``: the input
    is a batch the caller drew (``initlab check --input-shape``), so no finding is made about it.
    ``jacobian_projections``: k > 0 also estimates the input–output Jacobian's spread from k random
    projections (each a backward and a forward-mode pass more, so off by default; 4–8 give it to
    10–20 %), in ``report.result.jacobian`` and the report's text.
    """
    if direction not in DIRECTIONS:
        raise CheckError(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
    if mode not in MODES:
        raise CheckError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if not isinstance(model, nn.Module):
        raise CheckError(f"check takes an nn.Module, got {type(model).__name__}")
    flags = {module: module.training for module in model.modules()}
    try:
        if mode != "as-is":
            model.train(mode == "train")
        # train-mode dropout draws its masks from the global RNG: seeded here (and restored after),
        # so the same model and input give the same report on every run
        cuda_devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=cuda_devices):
            torch.manual_seed(stream_seed(seed, DROPOUT_STREAM))
            result = probe(model, example_input, seeds=[seed], device=device, jacobian_projections=jacobian_projections,
                           config={"check_direction": direction, "normalization_mode": mode})
    finally:
        for module, training in flags.items():
            module.training = training
    return report_from_probe(result, direction, mode, input_drawn=input_drawn)


def report_from_probe(result: ProbeResult, direction: str = "forward", mode: str = "train",
                      input_drawn: bool = False) -> CheckReport:
    """Return the ``CheckReport`` of an existing probe result (its first seed's weights)."""
    summary = result.summary()
    frame = result.to_frame()
    first_seed = frame[frame["seed"] == frame["seed"].min()].sort_values("index")
    gains = result.gains()
    layers = _layer_table(summary, first_seed)
    streams = stream_summary(result.sums)
    findings = _findings(layers, first_seed, result, gains, streams, direction, input_drawn)
    return CheckReport(result, layers, tuple(findings), gains, direction, mode, streams)


def _layer_table(summary: pd.DataFrame, first_seed: pd.DataFrame) -> pd.DataFrame:
    rectifier_factor = first_seed["rectifier_factor_in"].to_numpy()
    has_rectifier = np.isfinite(rectifier_factor)
    feeding = [slope_from_factor(p) if r else None for p, r in zip(rectifier_factor, has_rectifier)]
    following = [None if pd.isna(s) else float(s) for s in summary["slope"]]
    slopes = [f if f is not None else g for f, g in zip(feeding, following)]
    torch_fan_out = first_seed["torch_fan_out"] if "torch_fan_out" in first_seed else summary["fan_out"]
    inits = [identify_init(int(n), int(m), int(c), float(w), s, int(t)) for n, m, c, w, s, t in
             zip(summary["fan_in"], summary["fan_out"], first_seed["weight_count"], summary["var_w_sampled"], slopes,
                 torch_fan_out)]
    table = summary[["index", "name", "kind", "link_in", "fan_in", "fan_out"]].copy()
    table["module"] = first_seed["module_type"].to_numpy()
    table["init"] = inits
    table["slope_in"] = [np.nan if s is None else s for s in feeding]
    table["slope_out"] = summary["slope"].to_numpy()
    table["var_w"] = summary["var_w_sampled"].to_numpy()
    table["fan_in_var_w"] = table["fan_in"] * table["var_w"]
    # He's per-layer factors, ½(1+a²)·n·Var[w] forward and ½(1+a²)·n̂·Var[w] backward, with the
    # rectifier feeding the layer and the one after it (1 where there is none)
    rectifier_in = np.where(has_rectifier, rectifier_factor, 1.0)
    rectifier_out = np.append(rectifier_in[1:], 1.0)
    table["factor_forward"] = rectifier_in * table["fan_in"] * table["var_w"]
    table["factor_backward"] = rectifier_out * table["fan_out"] * table["var_w"]
    table["segment"] = np.cumsum(first_seed["link_resets"].to_numpy(dtype=bool))
    for column in ("forward_factor", "backward_factor", "var_y", "grad_var", "log10_forward_gain_layers",
                   "log10_backward_gain_layers", "in_residual_branch", "judged_by", "forward_chain_steps",
                   "backward_chain_steps", "healthy_forward_low", "healthy_forward_high", "healthy_backward_low",
                   "healthy_backward_high", "verdict_forward",
                   "verdict_backward", "verdict"):
        table[column] = summary[column].to_numpy()
    table["rectifier_in"] = has_rectifier
    return table


def _over(rows: pd.DataFrame, factor: float) -> str:
    """Say what the factor compounds to over the longest run of such layers with no reset between."""
    longest = int(rows.groupby("segment").size().max())
    if longest <= 1:
        return "normalization or residual sums between them keep it from compounding"
    return f"10^{longest * math.log10(factor):.1f} over the longest chain of {longest} with no normalization between"


def _module_names(rows: pd.DataFrame) -> str:
    kinds = sorted(set(rows["module"]))
    return "/".join(kinds)


@dataclass(frozen=True)
class _Context:
    """What every finding rule reads: the check's frames and the facts several rules share."""

    layers: pd.DataFrame  # ``_layer_table``: one row per layer call
    first_seed: pd.DataFrame  # the probe frame's rows of the first seed
    result: ProbeResult
    gains: dict
    streams: pd.DataFrame
    direction: str
    input_drawn: bool
    any_unhealthy: bool
    compounding: pd.DataFrame  # layers of a chain of two or more, judged by their own gain
    rectified: pd.DataFrame  # those of them fed by a rectifier
    slope_text: str  # their rectifiers' slopes, e.g. "a=0, a=0.25"
    fix: str  # the Kaiming fix for this direction and those slopes


def _context(layers: pd.DataFrame, first_seed: pd.DataFrame, result: ProbeResult, gains: dict,
             streams: pd.DataFrame, direction: str, input_drawn: bool) -> _Context:
    # An init's factor matters where it compounds: layers of a chain of two or more that He's
    # condition judges. Under a normalization or inside a residual branch the scale is taken away
    # or judged by the stream (``verdicts.judged_by``); a lone layer's factor does not compound.
    chain_sizes = layers.groupby("segment")["segment"].transform("size")
    compounding = layers[(layers["judged_by"] == "chain") & (chain_sizes >= 2)]
    rectified = compounding[compounding["rectifier_in"]]
    slopes = rectified["slope_in"].round(3)
    slope_text = ", ".join(f"a={s:g}" for s in sorted(set(slopes))) if len(rectified) else "a=0"
    fix = (f"kaiming, mode {_fix_mode(direction)}"
           + (f", {slope_text} for the {_module_names(rectified)} layers' rectifiers" if (slopes > 0).any() else "")
           + f": initlab.apply_init(model, 'kaiming{':mode=fan_out' if direction == 'backward' else ''}') "
             "(reads each layer's rectifier slope)")
    any_unhealthy = (gains["verdict_forward"], gains["verdict_backward"]) != ("healthy", "healthy")
    return _Context(layers, first_seed, result, gains, streams, direction, input_drawn, any_unhealthy, compounding,
                    rectified, slope_text, fix)


def _fix_mode(direction: str) -> str:
    return "fan_in" if direction == "forward" else "fan_out"


# The misinitializations read off a layer's identified init: (init, finding kind, what is wrong).
# The message goes on with the factor; {factor} and {slope_text} are filled in per check.
MISINITS = (
    ("torch-default", "torch-default-init", "use PyTorch's default init: Var[w] = 1/(3·fan_in), factor ≈ {factor} "
                                            "per rectifier layer"),
    ("xavier-fanin", "xavier-under-rectifier", "use Xavier (Var[w] = 1/fan_in) under a rectifier: factor ≈ "
                                               "{factor} per layer (½(1+a²)·n·Var[w])"),
    ("xavier", "xavier-under-rectifier", "use Xavier (Var[w] = 2/(fan_in+fan_out)) under a rectifier: factor ≈ "
                                         "{factor} per layer (½(1+a²)·n·Var[w])"),
    ("xavier(torch)", "xavier-under-rectifier", "use torch's Xavier (Var[w] = 2/(fan_in+k·c_out), groups ignored) "
                                                "under a rectifier: factor ≈ {factor} per layer"),
    ("kaiming:a=0", "slope-mismatch", "follow a PReLU/leaky ReLU ({slope_text}) but are initialized for ReLU "
                                      "(a=0): factor (1+a²) ≈ {factor} per layer"),
)


def _misinit_findings(context: _Context) -> list[Finding]:
    """Rectifier layers whose identified init is one of ``MISINITS``, with the factor it compounds to."""
    found = []
    factor_column = "factor_forward" if context.direction == "forward" else "factor_backward"
    for init, kind, what in MISINITS:
        rows = context.rectified[context.rectified["init"] == init]
        if len(rows):
            factor = float(np.exp(np.log(rows[factor_column].to_numpy()).mean()))
            found.append(Finding(
                kind, "error" if context.any_unhealthy else "warning",
                f"{len(rows)} {_module_names(rows)} layers "
                f"{what.format(factor=f'{factor:.3g}', slope_text=context.slope_text)}, {_over(rows, factor)}",
                context.fix, tuple(rows["name"]), factor))
    return found


def _fan_mode_findings(context: _Context) -> list[Finding]:
    """Kaiming in the other direction's fan mode: a width ratio n/n̂ per layer (a warning)."""
    direction, compounding = context.direction, context.compounding
    wrong_modes = ("kaiming:mode=fan_out", "kaiming:mode=fan_out(torch)") if direction == "forward" else ("kaiming",)
    rows = compounding[compounding["init"].isin(wrong_modes) & (compounding["fan_in"] != compounding["fan_out"])]
    if not len(rows):
        return []
    ratio = rows["fan_in"] / rows["fan_out"] if direction == "forward" else rows["fan_out"] / rows["fan_in"]
    total = float(np.prod(ratio))
    other = "fan_out (backward, eq. 14)" if direction == "forward" else "fan_in (forward, eq. 10)"
    return [Finding(
        "fan-mode", "warning",
        f"{len(rows)} layers use Kaiming with mode {other} while the {direction} direction is checked: factor "
        f"{'n/n̂' if direction == 'forward' else 'n̂/n'} per layer ({ratio.min():.3g}–{ratio.max():.3g}), "
        f"{total:.3g} over them (a width ratio, not exponential in depth)",
        f"kaiming, mode {_fix_mode(direction)}", tuple(rows["name"]), float(np.exp(np.log(ratio).mean())))]


def _dead_unit_findings(context: _Context) -> list[Finding]:
    """ReLUs with more than ``DEAD_WARNING`` of their units zero on every example of the batch."""
    found = []
    dead = context.result.dead_units
    if dead.empty:
        return found
    for _, row in dead[dead["seed"] == dead["seed"].min()].iterrows():
        if row["dead_fraction"] > DEAD_WARNING:
            units = int(row["units"])
            count = int(round(row["dead_fraction"] * units))
            found.append(Finding(
                "dead-units", "error" if row["dead_fraction"] >= DEAD_ERROR else "warning",
                f"{count} of {units} units of ReLU {row['name']!r} are dead at init (zero on every example of "
                f"the batch of {context.result.config['batch_size']})",
                "zero biases and a centred input; check the init of the layer before it", (row["name"],), None))
    return found


def _input_findings(context: _Context) -> list[Finding]:
    """The model's own input far from E[x²] = 1, or with channel means beyond their sampling error."""
    first = context.first_seed.iloc[0]
    second, channel_mean = float(first["input_second_moment"]), float(first["input_unit_mean_abs_max"])
    # Only the model's own input is judged (not an embedding's output, nor a batch initlab drew), and
    # a channel mean only beyond its sampling error: the largest of up to 10⁴ unit means of a centred
    # input exceeds INPUT_MEAN_Z standard errors with probability ≈ 10⁻³.
    fed_by_input = bool(first.get("input_is_model_input", True)) and not context.input_drawn
    if not (math.isfinite(second) and fed_by_input):
        return []
    low, high = INPUT_SECOND_MOMENT_ERROR
    scale_error = not low <= second <= high
    low, high = INPUT_SECOND_MOMENT_WARNING
    scale_warning = not low <= second <= high
    count = max(float(first.get("input_count_per_unit", 1.0)), 1.0)
    spread = math.sqrt(max(second - float(first["input_mean"]) ** 2, 0.0))  # the elements' std about the mean
    offset = channel_mean > max(0.5 * math.sqrt(second), INPUT_MEAN_Z * spread / math.sqrt(count))
    if not (scale_error or scale_warning or offset):
        return []
    return [Finding(
        "unnormalized-input", "error" if scale_error else "warning",
        f"the first layer {first['name']!r} is fed unnormalized input: E[x²] = {second:.3g}, mean "
        f"{float(first['input_mean']):.3g}, channel means up to {channel_mean:.3g} in size (want E[x²] ≈ 1, "
        "means ≈ 0)", "normalize the input per channel to mean 0, std 1 (e.g. torchvision's Normalize)",
        (first["name"],), second)]


def _stream_findings(context: _Context) -> list[Finding]:
    """Residual streams the verdicts call exploding: growth beyond linear over their sums."""
    found = []
    for _, stream in context.streams.iterrows():
        for stream_direction in DIRECTIONS:
            if stream[f"verdict_{stream_direction}"] == "exploding":
                growth = stream[JUDGED_GROWTH[stream_direction]]
                count = int(stream["sums"])
                steps = count - 1  # judged from the first sum on (``verdicts.stream_summary``)
                found.append(Finding(
                    "residual-stream-growth", "error",
                    f"the residual stream from {stream['first']!r} to {stream['last']!r} grows ×{growth:.3g} "
                    f"{stream_direction} over the {steps} sums after its first (×{growth ** (1 / steps):.3g} per "
                    f"sum; linear growth would be at most ×{count})",
                    "scale each branch's last layer down (zero-init its last BatchNorm weight, Fixup/SkipInit, "
                    "or GPT-2's 1/√(2L) on the output projections), or normalize the branches",
                    (stream["first"], stream["last"]), float(growth ** (1 / steps))))
    return found


def _normalization_findings(context: _Context) -> list[Finding]:
    """Train-mode normalizations that cannot undo a scale (input variance below eps) and affine
    weights drawn small (0 < E[γ²] < NORM_WEIGHT_WARNING; a zero-init γ is a design)."""
    found: list[Finding] = []
    norms = context.result.norms
    if norms is None or norms.empty:
        return found
    first_norms = norms[norms["seed"] == norms["seed"].min()]
    starved = first_norms[first_norms["undone_fraction"] < NORM_UNDONE_ERROR]
    # random small affine weights (not a deliberate zero-init): each such norm scales its output by E[γ²]
    shrunk = first_norms[(first_norms["weight_second_moment"] > 0)
                         & (first_norms["weight_second_moment"] < NORM_WEIGHT_WARNING)]
    if len(shrunk):
        gamma = float(np.exp(np.log(shrunk["weight_second_moment"].to_numpy(dtype=float)).mean()))
        found.append(Finding(
            "normalization-weight", "error" if context.any_unhealthy or len(starved) else "warning",
            f"{len(shrunk)} normalization layers have affine weights drawn small, E[γ²] ≈ {gamma:.3g}: each scales "
            "its output by that factor, and where no residual stream carries the signal past them the factors "
            "compound", "initialize normalization weights to 1 and biases to 0 (nn.init.ones_ / zeros_)",
            tuple(shrunk["name"]), gamma))
    if len(starved):
        worst = starved.loc[starved["undone_fraction"].idxmin()]
        found.append(Finding(
            "normalization-starved", "error",
            f"{len(starved)} normalization(s) get an input whose variance is below their eps, so they cannot "
            f"undo its scale: at {worst['name']!r} Var = {worst['input_variance']:.3g} against eps "
            f"{worst['eps']:.3g}, output E[y²] ≈ ×{worst['undone_fraction']:.3g} of unit",
            "the weights before them are drawn far too small (e.g. std 1e-4): use the architecture's own init "
            "(std 0.02 for transformers) or kaiming", tuple(starved["name"]), float(worst["undone_fraction"])))
    return found


def _attention_findings(context: _Context) -> list[Finding]:
    """Attention calls whose logits spread beyond ATTENTION_LOGIT_STD_ERROR: a one-hot softmax at init."""
    attention = context.result.attention
    if attention is None or attention.empty:
        return []
    first_calls = attention[attention["seed"] == attention["seed"].min()]
    saturated = first_calls[first_calls["logit_std"] > ATTENTION_LOGIT_STD_ERROR]
    if not len(saturated):
        return []
    worst = saturated.loc[saturated["logit_std"].idxmax()]
    return [Finding(
        "attention-saturated", "error",
        f"{len(saturated)} of {len(first_calls)} attention calls have logits spread beyond "
        f"{ATTENTION_LOGIT_STD_ERROR:g} (up to {worst['logit_std']:.3g} at {worst['name']!r}): the softmax is "
        "one-hot at init and passes almost no gradient to the queries and keys",
        "the query and key projections are drawn far too large (e.g. std 1): use the architecture's own init "
        "(std 0.02) or Var[w] = 1/fan_in", tuple(saturated["name"]), float(worst["logit_std"]))]


def _collapse_findings(context: _Context) -> list[Finding]:
    """Examples' representations collapsed (``verdicts._collapse``): a mean cosine past 0.999 and 1 − c
    more than two decades below what critical ReLU layers would leave, step by step."""
    gains = context.gains
    if gains.get("verdict_correlation") != "collapsed":
        return []
    correlation, layer = gains["example_correlation"], gains["first_collapsed_layer"]
    return [Finding(
        "examples-collapse", "error",
        f"examples' correlation {correlation:.4f} after {layer!r}: inputs become indistinguishable (mean cosine "
        f"between examples; 1 − c is {10 ** gains['collapse_decades']:.3g}× smaller than He-initialized ReLU layers "
        "would leave it, step by step)",
        "He init with zero biases (initlab.apply_init(model, 'kaiming')) so that the weights, not the biases, "
        "carry the signal; normalization before the rectifiers; residual connections; or orthogonal init",
        (layer,), float(correlation))]


# The finding rules, in the order a report lists what they find; each reads the context alone.
FINDING_RULES: tuple[Callable[[_Context], list[Finding]], ...] = (
    _misinit_findings, _fan_mode_findings, _dead_unit_findings, _input_findings, _stream_findings,
    _normalization_findings, _attention_findings, _collapse_findings,
)


def _findings(layers: pd.DataFrame, first_seed: pd.DataFrame, result: ProbeResult, gains: dict,
              streams: pd.DataFrame, direction: str, input_drawn: bool = False) -> list[Finding]:
    """Every rule's findings; NaN/Inf first, and a verdict's own finding where no rule explains it."""
    context = _context(layers, first_seed, result, gains, streams, direction, input_drawn)
    findings = [finding for rule in FINDING_RULES for finding in rule(context)]
    if gains["verdict"] == "non-finite":
        findings.insert(0, Finding(
            "non-finite", "error",
            f"NaN/Inf appears: forward first at {gains['first_non_finite_forward']!r}, backward first at "
            f"{gains['first_non_finite_backward']!r}", "check the init scale and the input for inf/NaN",
            tuple(n for n in (gains["first_non_finite_forward"], gains["first_non_finite_backward"]) if n), None))
    for verdict_direction in DIRECTIONS:
        verdict = gains[f"verdict_{verdict_direction}"]
        if verdict in ("vanishing", "exploding") and not any(f.severity == "error" and f.kind != "dead-units"
                                                             for f in findings):
            layer = gains[f"worst_{verdict_direction}_layer"]
            gain = gains[f"{verdict_direction}_gain_layers"]
            findings.append(Finding(
                f"{verdict_direction}-{verdict}", "error",
                f"the {verdict_direction} signal is {verdict}: chain gain {gain:.3g} at {layer!r} (more than "
                f"{HEALTHY_DECADES:g} decade from He's 1 beyond the finite-width band)", context.fix, (layer,), None))
    return findings
