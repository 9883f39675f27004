"""The paper's training claims, scaled to a CPU: Figures 2 and 3, Tables 1 and 2.

Settings are chosen once, for the digits dataset on two CPU cores, and not tuned per claim: plain
nets of width 32 with all 3×3 convs at 8×8 (one pooling stage; more stages would shrink the maps
to 2×2, where zero padding alone loses most of the signal), SGD momentum 0.9, lr 0.001, batch 64.
Figures 2 and 3 share one setting taken from the paper: its inputs are mean-subtracted pixels, not
divided by their standard deviation (≈ 57 on ImageNet's 0–255 scale), so the standardized digits
are multiplied by ``PAPER_INPUT_SCALE`` = 30, and the lr is constant (the figures show the epochs
before the paper's first lr drop). Under Xavier the signal reaching the classifier is that scale
times 2^-(L-1)/2: usable at 22 layers, lost at 30. The sweep that chose it is in docs/reproduction.md.
Tables 1 and 2 keep standardized inputs and the step schedule. What the small scale does not
reproduce is reported as measured.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from .data import Dataset, load_dataset, scaled_inputs
from .models import ModelRecipe
from .train import VERDICT_RULES, TrainConfig, TrainResult, slope_table, train_scheme


@dataclass(frozen=True)
class Experiment:
    """One comparison: a depth and activation, several inits or activations, one or more seeds.

    ``claim`` is the paper's statement, with the paper's depth; the depth run here is ``depth``
    (``quick_depth`` in a quick smoke run, distinct per experiment so that no two print the same run).
    """

    name: str
    claim: str
    depth: int
    runs: tuple[tuple[str, str], ...]  # (init, act) pairs
    seeds: tuple[int, ...] = (0,)
    epochs: int = 20
    lr: float = 0.001
    width: int = 32
    stages: int = 1
    quick_depth: int = 8
    input_scale: float = 1.0  # the standardized inputs × this (the paper's unnormalized pixel scale)
    schedule: str = "step"
    dataset: str = "digits"

    def quick(self) -> "Experiment":
        """Return the smoke-test form: 3 epochs, the first seed, ``quick_depth`` layers."""
        return replace(self, epochs=min(self.epochs, QUICK_EPOCHS), seeds=self.seeds[:1],
                       depth=min(self.depth, self.quick_depth))


QUICK_EPOCHS = 3
# The paper's inputs are mean-subtracted, not divided by their std (≈ 57 on ImageNet's 0–255 scale);
# 30 is the one scale of the sweep (docs/reproduction.md) under which Figures 2 and 3 both hold.
PAPER_INPUT_SCALE = 30.0
EXPERIMENTS = (
    Experiment("figure3", "plain ReLU net, 30 layers in the paper: Xavier stalls, He converges (paper Fig. 3)", 30,
               (("xavier-fanin", "relu"), ("kaiming", "relu")), quick_depth=8, input_scale=PAPER_INPUT_SCALE,
               schedule="constant"),
    Experiment("figure2", "plain ReLU net, 22 layers in the paper: both converge, He starts reducing error earlier "
               "(paper Fig. 2)", 22, (("xavier-fanin", "relu"), ("kaiming", "relu")), seeds=(0, 1, 2), quick_depth=6,
               input_scale=PAPER_INPUT_SCALE, schedule="constant"),
    Experiment("table2", "ReLU vs PReLU (channel-shared, channel-wise): PReLU reaches lower error (paper Table 2)",
               14, (("kaiming", "relu"), ("kaiming", "prelu-shared"), ("kaiming", "prelu")), seeds=(0, 1, 2, 3, 4),
               epochs=10, quick_depth=5),
    # Digits are learned before the slopes have a reason to move; on oriented gratings of either
    # polarity in noise a first layer that passes negative responses gains (docs/reproduction.md).
    Experiment("table1", "learned PReLU slopes, 14 layers: the first layer's slope is the largest (paper Table 1: "
               "0.681 channel-shared, 0.596 channel-wise)", 14, (("kaiming", "prelu-shared"), ("kaiming", "prelu")),
               seeds=(0, 1), epochs=15, lr=0.01, quick_depth=4, dataset="gratings"),
)


def describe_run(experiment: Experiment) -> str:
    """Return the settings actually run, e.g. 'depth 30, width 32, 20 epochs, lr 0.001 constant, inputs × 30,
    seeds 0, 1, 2'."""
    inputs = f", inputs × {experiment.input_scale:g}" if experiment.input_scale != 1 else ""
    inputs += f", on {experiment.dataset}" if experiment.dataset != "digits" else ""
    return (f"depth {experiment.depth}, width {experiment.width}, {experiment.epochs} epochs, lr {experiment.lr} "
            f"{experiment.schedule}{inputs}, "
            f"seed{'s' if len(experiment.seeds) > 1 else ''} {', '.join(map(str, experiment.seeds))}")


def format_comparison(table: pd.DataFrame, epochs: int) -> str:
    """Return ``table`` as text: errors to 3 decimals, the first epoch as a whole number, or 'never in
    N epochs' where no epoch got below half the chance error."""
    column = "first epoch below ½ chance error"
    shown = table.copy()
    shown[column] = [f"never in {epochs}" if pd.isna(v) else f"{v:g}" for v in table[column]]
    return shown.to_string(index=False, float_format=lambda v: f"{v:.3f}")


def run_experiment(experiment: Experiment, dataset: Dataset, *, device=None, out: Path | None = None,
                   on_run: Callable[[str], Callable | None] | None = None) -> dict[str, list[TrainResult]]:
    """Train every (init, act) of ``experiment`` over its seeds; return results by label."""
    results: dict[str, list[TrainResult]] = {}
    for init, act in experiment.runs:
        label = f"{init} / {act}"
        recipe = ModelRecipe("plain", experiment.depth, experiment.width, dataset.input_shape, act, experiment.stages,
                             dataset.num_classes)
        factory = recipe.factory()
        for seed in experiment.seeds:
            config = TrainConfig(epochs=experiment.epochs, lr=experiment.lr, schedule=experiment.schedule, seed=seed,
                                 input_scale=experiment.input_scale)
            directory = out / experiment.name / f"{init}_{act}_seed{seed}".replace(":", "_") if out else None
            if directory is not None:
                directory.mkdir(parents=True, exist_ok=True)
            result = train_scheme(factory, init, dataset, config, device=device,
                                  on_step=on_run(f"{experiment.name} {label} seed {seed}") if on_run else None)
            result.config.update({"depth": experiment.depth, "act": act, "width": experiment.width})
            if directory is not None:
                result.history.to_csv(directory / "history.csv", index=False)
                if not result.slopes.empty:
                    result.slopes.to_csv(directory / "slopes.csv", index=False)
            results.setdefault(label, []).append(result)
    return results


def first_epoch_below(history: pd.DataFrame, error: float) -> float:
    """Return the first epoch whose validation error is below ``error`` (NaN if none)."""
    below = history[history["val_error"] < error]
    return float(below["epoch"].iloc[0]) if len(below) else float("nan")


def comparison_table(results: dict[str, list[TrainResult]], num_classes: int) -> pd.DataFrame:
    """Return one row per run label: verdicts, final validation error (mean ± std over seeds), final
    training loss, and the first epoch whose validation error is below half the chance error."""
    halfway = 0.5 * (1.0 - 1.0 / num_classes)
    rows = []
    for label, runs in results.items():
        errors = np.array([r.final_val_error for r in runs])
        starts = [first_epoch_below(r.history, halfway) for r in runs]
        rows.append({
            "run": label,
            "seeds": len(runs),
            "verdicts": ", ".join(r.verdict for r in runs),
            "val error": float(errors.mean()),
            "± std": float(errors.std()) if len(runs) > 1 else 0.0,
            "train loss": float(np.mean([r.final_train_loss for r in runs])),
            "first epoch below ½ chance error": float(np.nanmean(starts)) if np.isfinite(starts).any()
            else float("nan"),
        })
    return pd.DataFrame(rows)


CONFIDENCE = 0.95  # of the paired interval on Table 2's error differences
SLOPES_MOVED = 0.05  # Table 1 is judged only where the slopes moved from their 0.25 init by more than this


def paired_difference(results: dict[str, list[TrainResult]], baseline: str, other: str) -> dict[str, float]:
    """The final validation error of ``other`` minus ``baseline``, paired by seed (the same data order
    and the same initial weights): mean, the ``CONFIDENCE`` t-interval of the mean, and the seeds.
    Negative: ``other`` reaches lower error."""
    from scipy import stats
    by_seed = {r.config["seed"]: r.final_val_error for r in results[baseline]}
    differences = np.array([r.final_val_error - by_seed[r.config["seed"]] for r in results[other]
                            if r.config["seed"] in by_seed])
    count = len(differences)
    mean = float(differences.mean()) if count else float("nan")
    if count < 2:
        return {"mean": mean, "low": float("nan"), "high": float("nan"), "seeds": count}
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, count - 1) * differences.std(ddof=1) / math.sqrt(count))
    return {"mean": mean, "low": mean - half, "high": mean + half, "seeds": count}


def _epochs_text(epochs: list[float]) -> str:
    return ", ".join("never" if not np.isfinite(e) else f"{e:g}" for e in epochs)


def _figure2_reason(he_converges: bool, xavier_converged: list[bool], he_earlier: list[bool]) -> str:
    """Why Figure 2 held or not, counting seeds: how many Xavier runs converged, in how many He started earlier."""
    seeds, converged, earlier = len(he_earlier), sum(xavier_converged), sum(he_earlier)
    if not he_converges:
        return "He does not converge"
    if not earlier:
        return "He does not start earlier"
    if converged == 0:
        return "He converges first, but Xavier does not get going within the epochs at this scale"
    every = " in every seed" if seeds > 1 else ""
    if converged == seeds:
        return f"both converge, He earlier{every}" if earlier == seeds else \
            f"both converge; He earlier in {earlier} of {seeds} seeds"
    return (f"He converges and starts earlier{every}" if earlier == seeds else
            f"He converges, earlier in {earlier} of {seeds} seeds") + f"; Xavier converges in {converged} of {seeds}"


def claims_table(outcome: dict) -> pd.DataFrame:
    """Return one row per claim of the paper: its statement, what was measured, and whether it held
    ("reproduced", "partly", "not reproduced") with the reason. The README's table and the report
    both come from this."""
    rows = []
    figure3 = outcome["figure3"]["results"]
    xavier, kaiming = figure3["xavier-fanin / relu"], figure3["kaiming / relu"]
    stalled = all(r.verdict == "stalled" for r in xavier)
    converged = all(r.verdict == "converged" for r in kaiming)
    rows.append({"claim": "Figure 3", "paper": "30 layers: Xavier stalls, He converges",
                 "measured": f"xavier-fanin {', '.join(r.verdict for r in xavier)}; kaiming "
                             f"{', '.join(r.verdict for r in kaiming)} (val error "
                             f"{np.mean([r.final_val_error for r in kaiming]):.3f})",
                 "held": "reproduced" if stalled and converged else "partly" if stalled or converged
                 else "not reproduced",
                 "reason": "both as the paper says" if stalled and converged else
                 "one of the two inits does not behave as the paper says"})
    figure2 = outcome["figure2"]["results"]
    xavier, kaiming = figure2["xavier-fanin / relu"], figure2["kaiming / relu"]
    both = all(r.verdict == "converged" for r in xavier + kaiming)
    he = all(r.verdict == "converged" for r in kaiming)
    halfway = 0.5 * (1.0 - 1.0 / 10)
    he_first = [first_epoch_below(r.history, halfway) for r in kaiming]
    xavier_first = [first_epoch_below(r.history, halfway) for r in xavier]
    earlier = [bool(np.isfinite(h) and (not np.isfinite(x) or h < x)) for h, x in zip(he_first, xavier_first)]
    rows.append({"claim": "Figure 2", "paper": "22 layers: both converge, He starts reducing error earlier",
                 "measured": f"xavier-fanin {', '.join(r.verdict for r in xavier)}; kaiming "
                             f"{', '.join(r.verdict for r in kaiming)}; first epoch below ½ chance error: He "
                             f"{_epochs_text(he_first)}, Xavier {_epochs_text(xavier_first)}",
                 "held": "reproduced" if both and all(earlier) else "partly" if he and any(earlier)
                 else "not reproduced",
                 "reason": _figure2_reason(he, [r.verdict == "converged" for r in xavier], earlier)})
    table2 = outcome["table2"]["results"]
    relu = "kaiming / relu"
    for act, name in (("prelu", "channel-wise"), ("prelu-shared", "channel-shared")):
        difference = paired_difference(table2, relu, f"kaiming / {act}")
        lower = difference["high"] < 0
        rows.append({"claim": f"Table 2 ({name})", "paper": f"PReLU ({name}) reaches lower error than ReLU",
                     "measured": f"val error PReLU − ReLU, paired by seed: {difference['mean']:+.4f} "
                                 f"({CONFIDENCE:.0%} interval {difference['low']:+.4f} to {difference['high']:+.4f}, "
                                 f"{difference['seeds']} seeds)",
                     "held": "reproduced" if lower else "partly" if difference["mean"] < 0 else "not reproduced",
                     "reason": "the interval lies below 0" if lower else
                     "lower on average, but the interval includes 0" if difference["mean"] < 0 else
                     "not lower on average"})
    table1 = outcome["table1"]["results"]
    for act, name, paper in (("prelu-shared", "channel-shared", 0.681), ("prelu", "channel-wise", 0.596)):
        runs = table1.get(f"kaiming / {act}", [])
        tables = [slope_table(r.slopes)["slope_mean"].to_numpy() for r in runs if not r.slopes.empty]
        if not tables or min(len(t) for t in tables) < 2:
            continue
        largest = [bool(t[0] > t[1:].max()) for t in tables]
        moved = max(float(t.max() - t.min()) for t in tables)
        held = "reproduced" if all(largest) and moved > SLOPES_MOVED else "partly" if any(largest) and \
            moved > SLOPES_MOVED else "not reproduced"
        rows.append({"claim": f"Table 1 ({name})", "paper": f"the first layer's learned slope is the largest ({paper})",
                     "measured": f"first layer {', '.join(f'{t[0]:.3f}' for t in tables)}; largest other "
                                 f"{', '.join(f'{t[1:].max():.3f}' for t in tables)} ({len(tables)} seeds)",
                     "held": held,
                     "reason": f"the slopes barely move from their 0.25 init (range {moved:.3f}) at this scale"
                     if moved <= SLOPES_MOVED else
                     "the first layer's is largest" + (" in every seed" if len(tables) > 1 else "") if all(largest)
                     else f"the first layer's is largest in {sum(largest)} of {len(tables)} seeds" if any(largest)
                     else "another layer's slope is larger"})
    return pd.DataFrame(rows, columns=["claim", "paper", "measured", "held", "reason"])


def learned_slopes(results: dict[str, list[TrainResult]]) -> pd.DataFrame:
    """Return the learned slopes per layer, channel-shared and channel-wise (Table 1 form): each
    layer's mean slope at the end of training, averaged over the seeds."""
    columns = {}
    for label, runs in results.items():
        tables = [slope_table(r.slopes).set_index("position") for r in runs if "prelu" in label and not r.slopes.empty]
        if not tables:
            continue
        kind = "channel_wise_mean" if label.endswith("/ prelu") else "channel_shared"
        columns[kind] = pd.concat([t["slope_mean"] for t in tables], axis=1).mean(axis=1)
        columns["layer"] = tables[0]["layer"]
    frame = pd.DataFrame(columns).reset_index()
    return frame[["position", "layer"] + [c for c in ("channel_shared", "channel_wise_mean") if c in frame]]


def reproduce(*, device=None, out: Path | None = None, quick: bool = False,
              on_run: Callable[[str], Callable | None] | None = None,
              on_experiment: Callable[[str, dict], None] | None = None) -> dict:
    """Run every experiment (``quick``: 3 epochs, one seed, 5–8 layers, a smoke test); return results and tables.

    ``on_run(label)`` may return an ``on_step`` callback for that run; ``on_experiment(name, part)``
    is called as each experiment finishes.
    """
    datasets = {name: load_dataset(name, seed=0) for name in dict.fromkeys(e.dataset for e in EXPERIMENTS)}
    dataset = datasets["digits"]
    outcome = {}
    for experiment in EXPERIMENTS:
        if quick:
            experiment = experiment.quick()
        results = run_experiment(experiment, datasets[experiment.dataset], device=device, out=out, on_run=on_run)
        outcome[experiment.name] = {"experiment": experiment, "results": results,
                                    "table": comparison_table(results, datasets[experiment.dataset].num_classes)}
        if on_experiment is not None:
            on_experiment(experiment.name, outcome[experiment.name])
    outcome["slopes"] = learned_slopes(outcome["table1"]["results"])
    outcome["claims"] = claims_table(outcome)
    outcome["probe"] = probe_trained_architecture(outcome["figure3"]["experiment"], dataset, device=device,
                                                  seeds=1 if quick else 3)
    return outcome


def default_runs(out: Path, inits: Sequence[str], *, device=None,
                 on_run: Callable[[str], Callable | None] | None = None,
                 experiment: Experiment | None = None) -> tuple[Path, Path]:
    """Run the default probe (``initlab probe``: the plain 30-layer net under each of ``inits``,
    3 seeds) and the Figure-3 training (``experiment``, by default ``EXPERIMENTS[0]``) into
    ``out/probe-run`` and ``out/train-run``, as ``probe --out`` and ``train --out`` write them;
    return the two folders (the sources of a report given none)."""
    from .folders import write_probe_folder, write_train_folder
    from .inputs import example_batch
    from .probe import probe
    experiment = experiment or EXPERIMENTS[0]
    recipe = ModelRecipe("plain", input_shape=(3, 32, 32))
    example = example_batch(None, recipe.example_shape(), 64)
    probes = {f"{init} / relu": probe(recipe.factory(), example, init=init, seeds=3, device=device,
                                      config={"model": "plain", "act": "relu"}) for init in inits}
    probe_folder, train_folder = out / "probe-run", out / "train-run"
    for folder in (probe_folder, train_folder):
        folder.mkdir(parents=True, exist_ok=True)
    write_probe_folder(probes, probe_folder, "plain")
    runs = run_experiment(experiment, load_dataset("digits", seed=0), device=device, on_run=on_run)
    write_train_folder({label.split(" / ")[0]: results[0] for label, results in runs.items()}, train_folder,
                       f"plain, {experiment.depth} layers, relu, digits")
    return probe_folder, train_folder


def probe_trained_architecture(experiment: Experiment, dataset: Dataset, *, device=None,
                               seeds: int = 3) -> dict[str, pd.DataFrame]:
    """Probe the net Figure 3 trains (same layout, digits-shaped batch) under each of its inits."""
    import torch

    from .probe import probe
    frames = {}
    example = scaled_inputs(dataset, experiment.input_scale).train_x[:64]
    for init, act in experiment.runs:
        recipe = ModelRecipe("plain", experiment.depth, experiment.width, dataset.input_shape, act, experiment.stages,
                             dataset.num_classes)
        frames[f"{init} / {act}"] = probe(recipe.factory(), example, init=init, seeds=seeds,
                                          device=device or torch.device("cpu")).frame
    return frames


def write_paper_report(outcome: dict, out: Path, quick: bool) -> Path:
    """Write ``out/index.html`` for a ``reproduce`` outcome: the probe, the three training comparisons,
    the paper's Tables 1 and 2 beside ours with the scale difference stated, and the verdict rules."""
    from .report import Section, paper_tables_section, probe_section, report_header, training_section, write_html

    figure3 = outcome["figure3"]["experiment"]
    scale = (f"Scale: the paper trains on ImageNet (224×224, ~80 epochs, 8 GPUs); here digits 8×8 (1797 images; Table 1 on "
             "generated 8×8 gratings, 4096 images), "
             f"plain nets of width {figure3.width} on two CPU cores, {figure3.epochs} epochs or fewer. Errors are "
             "validation fractions, not ImageNet top-1 percentages; compare directions, not values.")
    sections = [
        Section("What held", "Each of the paper's claims, what was measured here, and whether it held at this scale "
                "(Table 2's interval: the paired difference of final validation error over seeds, with the same data "
                f"order and initial weights for each activation, {CONFIDENCE:.0%} t-interval). " + scale,
                tables=[("The paper's claims", outcome["claims"])]),
        probe_section(outcome["probe"], out / "probe", f"Signal and gradient at init: the {figure3.depth}-layer net "
                      "of Figure 3", figure_title=f"{figure3.depth}-layer plain ReLU net, width {figure3.width}, "
                      "digits-shaped input 1×8×8"),
    ]
    for name in ("figure3", "figure2", "table2", "table1"):
        part = outcome[name]
        experiment = part["experiment"]
        heading = name.replace("figure", "Figure ").replace("table", "Table ")
        sections.append(training_section({label: runs[0] for label, runs in part["results"].items()}, out / name,
                                         f"{heading}: {experiment.claim}",
                                         f"Run here: {describe_run(experiment)}; curves of seed 0. " + scale,
                                         figure_title=f"{experiment.depth}-layer plain net on {experiment.dataset}, seed 0"))
    sections.append(paper_tables_section(outcome["table2"]["table"], outcome["slopes"], out / "tables", scale))
    sections.append(Section("Verdict rules", VERDICT_RULES))
    command = "initlab reproduce --out " + str(out) + (" --quick" if quick else "")
    header = report_header(command, {"dataset": "digits (scikit-learn, offline)",
                                     "status": "QUICK SMOKE RUN — not the claims" if quick else "full run"})
    return write_html(out / "index.html", "initlab: He et al. 2015 reproduced at CPU scale", header, sections)
