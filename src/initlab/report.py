"""Reports: figures (variance and per-layer factor against depth, training curves) and a
self-contained HTML page that embeds them, with the data behind each one beside it.

Figures use Okabe & Ito's colour-blind-safe palette; an init keeps its colour in every figure
(``init_colour``) and an activation its marker.
"""

from __future__ import annotations

import base64
import html
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # figures are files; never open a window
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .verdicts import SINGLE_STEP_DECADES, layer_summary, network_summary  # noqa: E402
from .files import atomic_write, atomic_write_text  # noqa: E402

# Okabe & Ito's colour-blind-safe palette; a label keeps its colour across figures.
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]
INIT_COLOURS = {"xavier-fanin": "#0072B2", "kaiming": "#D55E00", "xavier": "#56B4E9", "torch-default": "#CC79A7",
                "orthogonal": "#009E73", "normal": "#E69F00", "model's own": "#000000", "own": "#000000"}
ACT_MARKERS = {"relu": "o", "prelu": "s", "prelu-shared": "^", "leaky": "D"}


def init_colour(label: str) -> str:
    """Return the colour of the init a label starts with ("kaiming / relu" → kaiming's colour)."""
    init = label.split(" / ")[0].strip()
    name = init.split(":")[0]
    if name in INIT_COLOURS and init == name:
        return INIT_COLOURS[name]
    return PALETTE[sum(map(ord, init)) % len(PALETTE)]


ACT_COLOURS = {"relu": "#D55E00", "prelu": "#009E73", "prelu-shared": "#CC79A7", "leaky": "#E69F00"}


def run_colours(labels: list[str]) -> dict[str, str]:
    """Return a colour per run label: by init, or by activation when every run shares one init
    (Table 2's ReLU against PReLU under Kaiming), so that runs differ at a glance, not by marker only."""
    inits = {label.split(" / ")[0].strip() for label in labels}
    if len(inits) == 1 and len(labels) > 1:
        acts = [label.split(" / ")[-1].strip().split(":")[0] for label in labels]
        return {label: ACT_COLOURS.get(act, PALETTE[position % len(PALETTE)])
                for position, (label, act) in enumerate(zip(labels, acts))}
    return {label: init_colour(label) for label in labels}


def act_marker(label: str) -> str:
    """Return the marker of the activation a label ends with ("kaiming / prelu" → square)."""
    act = label.split(" / ")[-1].strip().split(":")[0] if " / " in label else "relu"
    return ACT_MARKERS.get(act, "o")


def _save(figure: plt.Figure, path: str | Path) -> Path:
    """Write ``figure`` as a PNG atomically, close it, and return the path."""
    path = Path(path)
    atomic_write(path, lambda temporary: figure.savefig(temporary, format="png", dpi=120))
    plt.close(figure)
    return path


def plot_variance_vs_depth(frames: dict[str, pd.DataFrame], path: str | Path, title: str = "") -> Path:
    """Write a two-panel PNG: forward E[y_l²] and backward E[Δx_l²] against layer index.

    ``frames`` maps a label (e.g. "kaiming / relu") to a probe's tidy frame. Solid line and
    shaded band: seed mean and min–max; dashed: the chain's prediction; crosses: layers whose
    verdict is not healthy. Log scale; written atomically.
    """
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.6), constrained_layout=True)
    panels = [("var_y", "var_y_pred", "forward: E[y_l²] (layer output)"),
              ("grad_var", "grad_var_pred", "backward: E[Δx_l²] (gradient at layer input)")]
    for label, frame in frames.items():
        colour, marker = init_colour(label), act_marker(label)
        per_layer = frame.groupby("index")
        summary = layer_summary(frame)
        for axis, (measured, predicted, heading) in zip(axes, panels):
            index = np.asarray(per_layer[measured].mean().index)
            axis.fill_between(index, per_layer[measured].min(), per_layer[measured].max(), color=colour, alpha=0.2,
                              linewidth=0)
            axis.plot(index, per_layer[measured].mean(), color=colour, marker=marker, markersize=3, linewidth=1.5,
                      label=f"{label}: measured")
            axis.plot(index, per_layer[predicted].mean(), color=colour, linestyle="--", linewidth=1.2,
                      label=f"{label}: predicted")
            bad = summary["verdict"].to_numpy() != "healthy"
            if bad.any():
                axis.scatter(index[bad], per_layer[measured].mean().to_numpy()[bad], marker="x", color=colour, s=28,
                             zorder=3)
            axis.set_title(heading, fontsize=11)
    for axis in axes:
        axis.set_yscale("log")
        axis.set_xlabel("layer index (Conv/Linear, forward order)")
        axis.set_ylabel("second moment (log scale)")
        axis.grid(True, which="major", alpha=0.3)
    axes[0].legend(fontsize=8, loc="best")
    if title:
        figure.suptitle(title + "   (× = not healthy; band = min–max over seeds)", fontsize=11)
    return _save(figure, path)


def plot_training_curves(results: dict, path: str | Path, title: str = "") -> Path:
    """Write a PNG of error against epoch, one colour per run (the paper's Figures 2 and 3).

    ``results`` maps a label to a ``TrainResult``. Solid: validation error; dashed: training
    error; the legend carries each run's verdict. Written atomically.
    """
    figure, axis = plt.subplots(figsize=(9, 4.2), constrained_layout=True)
    colours = run_colours(list(results))
    for label, result in results.items():
        colour = colours[label]
        history = result.history
        if history.empty:
            continue
        marker = act_marker(label)
        axis.plot(history["epoch"], history["val_error"], color=colour, linewidth=1.8, marker=marker, markersize=4,
                  label=f"{label}: validation ({result.verdict})")
        axis.plot(history["epoch"], history["train_error"], color=colour, linewidth=1.2, linestyle="--",
                  marker=marker, markersize=3, markerfacecolor="none", label=f"{label}: training")
    axis.set_xlabel("epoch")
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.set_ylabel("error (fraction misclassified)")
    axis.set_ylim(0, 1)
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=8, loc="best")
    if title:
        axis.set_title(title, fontsize=11)
    return _save(figure, path)


def plot_watch(frame: pd.DataFrame, path: str | Path, title: str = "") -> Path:
    """Write a PNG of a watch over training (``initlab.watch``, ``initlab train --watch-every``):
    layer × step maps of log10 E[y²] (each layer's output) and log10 E[Δy²] (the loss gradient at it),
    and the rectifier slopes after each layer over steps where any is not a fixed ReLU's 0."""
    frame = frame.sort_values(["step", "index"])
    steps = np.sort(frame["step"].unique())
    layers = frame.drop_duplicates("index").sort_values("index")
    slopes = frame.pivot_table(index="index", columns="step", values="slope", aggfunc="mean")
    learned = slopes.notna().any(axis=1) & (slopes.max(axis=1) != slopes.min(axis=1))
    panels = 3 if learned.any() else 2
    figure, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 4.4), constrained_layout=True)
    for axis, column, label in zip(axes, ("var_y", "grad_output_second_moment"),
                                   ("log10 E[y²]", "log10 E[Δy²] (loss gradient)")):
        grid = frame.pivot_table(index="index", columns="step", values=column, aggfunc="mean")
        with np.errstate(divide="ignore", invalid="ignore"):
            values = np.log10(grid.to_numpy(dtype=float))
        image = axis.imshow(np.where(np.isfinite(values), values, np.nan), aspect="auto", origin="lower",
                            cmap="viridis", extent=(steps[0] - 0.5, steps[-1] + 0.5, -0.5, len(grid) - 0.5),
                            interpolation="nearest")
        figure.colorbar(image, ax=axis, label=label)
        axis.set_xlabel("step")
        axis.set_ylabel("layer (call order)")
        axis.set_yticks(range(len(layers)))
        axis.set_yticklabels(layers["name"], fontsize=6)
    if panels == 3:
        axis = axes[2]
        for index in slopes.index[learned]:
            name = layers.set_index("index").loc[index, "name"]
            axis.plot(slopes.columns, slopes.loc[index], marker=".", label=str(name))
        axis.axhline(1.0, color="grey", linestyle=":", linewidth=1)
        axis.set_xlabel("step")
        axis.set_ylabel("rectifier slope after the layer")
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=6, ncol=2)
    if title:
        figure.suptitle(title, fontsize=11)
    return _save(figure, path)


def plot_layer_factors(frames: dict[str, pd.DataFrame], path: str | Path, title: str = "") -> Path:
    """Write a PNG of each layer's factor in the paper's chain against the ideal 1.

    Forward: ½(1+a²)·n_l·Var[w_l] (a: the rectifier feeding the layer); backward: ½(1+a²)·n̂_l·Var[w_l]
    (a: the rectifier after it). Log scale; a layer below the line loses signal, above it gains.
    """
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.2), constrained_layout=True)
    panels = [("forward_factor", "forward: ½(1+a²)·n·Var[w] (n = fan-in)"),
              ("backward_factor", "backward: ½(1+a²)·n̂·Var[w] (n̂ = fan-out)")]
    for label, frame in frames.items():
        summary = layer_summary(frame)
        for axis, (column, heading) in zip(axes, panels):
            axis.plot(summary["index"], summary[column], color=init_colour(label), marker=act_marker(label),
                      markersize=4, linewidth=1.2, label=label)
            axis.set_title(heading, fontsize=11)
    for axis in axes:
        axis.axhline(1.0, color="#555555", linewidth=1, linestyle=":", label="ideal (He): 1")
        axis.set_yscale("log")
        axis.set_ylabel("factor per layer (log scale)")
    return _finish_layer_panels(figure, axes, path, title)


def _finish_layer_panels(figure: plt.Figure, axes: Any, path: str | Path, title: str) -> Path:
    """Label the per-layer axes, put one legend entry per run on the first, title and save."""
    for axis in axes:
        axis.set_xlabel("layer index (Conv/Linear, forward order)")
        axis.grid(True, which="major", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    axes[0].legend(unique.values(), unique.keys(), fontsize=8, loc="best")
    if title:
        figure.suptitle(title, fontsize=11)
    return _save(figure, path)


def plot_correlation_vs_depth(frames: dict[str, pd.DataFrame], path: str | Path, title: str = "") -> Path:
    """Write a PNG of how alike examples become with depth: the mean cosine between the first examples'
    outputs and their effective rank per layer (seed means, solid), beside the mean-field map's one-step
    prediction from the layer before (dashed; ``correlation.rectifier_gram_map``)."""
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.2), constrained_layout=True)
    panels = [("example_correlation", "mean cosine between examples"),
              ("effective_rank", "effective rank of the batch (participation ratio)")]
    for label, frame in frames.items():
        summary = layer_summary(frame)
        for axis, (column, heading) in zip(axes, panels):
            colour = init_colour(label)
            axis.plot(summary["index"], summary[column], color=colour, marker=act_marker(label), markersize=4,
                      linewidth=1.2, label=label)
            axis.plot(summary["index"], summary[f"{column}_pred"], color=colour, linestyle="--", linewidth=1)
            axis.set_title(heading, fontsize=11)
    axes[0].set_ylim(-0.05, 1.02)
    axes[1].set_yscale("log")
    return _finish_layer_panels(figure, axes, path, title)


# -- the HTML page ----------------------------------------------------------------------------------

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; max-width: 1100px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ddd; }
header dl { display: grid; grid-template-columns: max-content auto; gap: 0.15em 1em; font-size: 0.9em; }
header dt { font-weight: 600; color: #555; } header dd { margin: 0; }
code, pre { font-family: "SFMono-Regular", Consolas, monospace; font-size: 0.88em; background: #f5f5f5; }
pre { padding: 0.6em; overflow-x: auto; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.9em; color: #444; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.6em 0; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
.note { font-size: 0.9em; color: #444; } .data { font-size: 0.85em; }
"""


@dataclass
class Section:
    """One part of a report: a heading, text, figures (PNG paths), tables and data files."""

    title: str
    text: str = ""
    figures: list = field(default_factory=list)  # (path, caption)
    tables: list = field(default_factory=list)  # (caption, DataFrame)
    data_files: list = field(default_factory=list)  # paths shown as links


def _embed(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def write_html(path: str | Path, title: str, header: dict[str, str], sections: list[Section]) -> Path:
    """Write a self-contained HTML page (figures embedded as base64, no JavaScript); return its path.

    Data files are linked relative to the page, so the folder can be moved or zipped whole.
    """
    path = Path(path)
    parts = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>",
             f"<style>{_CSS}</style></head><body><header><h1>{html.escape(title)}</h1><dl>"]
    for key, value in header.items():
        rendered = f"<code>{html.escape(value)}</code>" if key == "command" else html.escape(value)
        parts.append(f"<dt>{html.escape(key)}</dt><dd>{rendered}</dd>")
    parts.append("</dl></header>")
    for section in sections:
        parts.append(f"<section><h2>{html.escape(section.title)}</h2>")
        if section.text:
            parts.append(f"<p class=\"note\">{html.escape(section.text)}</p>")
        for figure_path, caption in section.figures:
            parts.append(f"<figure><img src=\"{_embed(figure_path)}\" alt=\"{html.escape(caption)}\">"
                         f"<figcaption>{html.escape(caption)}</figcaption></figure>")
        for caption, table in section.tables:
            parts.append(f"<p class=\"note\">{html.escape(caption)}</p>")
            parts.append(table.to_html(index=False, float_format=lambda v: f"{v:.3g}", na_rep="–", border=0))
        if section.data_files:
            links = " · ".join(f"<a href=\"{html.escape(os.path.relpath(file, path.parent))}\">"
                               f"{html.escape(Path(file).name)}</a>" for file in section.data_files)
            parts.append(f"<p class=\"data\">data: {links}</p>")
        parts.append("</section>")
    parts.append("</body></html>")
    return atomic_write_text(path, "\n".join(parts))


# -- report sections ---------------------------------------------------------------------------------

# The paper's numbers (He et al. 2015; ../shared/paper.md), for the tables beside ours. Kept as
# text so that they print exactly as published, whatever precision our own numbers get.
PAPER_TABLE1 = pd.DataFrame({
    "paper layer": ["conv1", "conv21", "conv22", "conv23", "conv24", "conv31", "conv32"],
    "paper channel-shared": ["0.681", "0.103", "0.099", "0.228", "0.561", "0.126", "0.089"],
    "paper channel-wise mean": ["0.596", "0.321", "0.204", "0.294", "0.464", "0.196", "0.152"],
})
PAPER_TABLE2 = pd.DataFrame({
    "paper model": ["ReLU", "PReLU, channel-shared", "PReLU, channel-wise"],
    "paper top-1 error %": ["33.82", "32.71", "32.64"],
    "paper top-5 error %": ["13.34", "12.87", "12.75"],
    "note": ["", "channel-shared figures unconfirmed in our summary of the paper", ""],
})


def probe_section(frames: dict[str, pd.DataFrame], folder: Path, title: str, text: str = "",
                  figure_title: str = "") -> Section:
    """Write the variance and factor figures and the per-layer summary of probes; return the section."""
    folder.mkdir(parents=True, exist_ok=True)
    variance = plot_variance_vs_depth(frames, folder / "variance_vs_depth.png", title=figure_title)
    factors = plot_layer_factors(frames, folder / "layer_factors.png", title=figure_title)
    correlations = plot_correlation_vs_depth(frames, folder / "correlation_vs_depth.png", title=figure_title)
    summaries, gains = [], []
    for label, frame in frames.items():
        summary = layer_summary(frame)
        summary.insert(0, "run", label)
        summaries.append(summary)
        gains.append({"run": label, **{k: v for k, v in network_summary(frame).items()
                                       if k in ("forward_gain", "forward_gain_pred", "backward_gain",
                                                "backward_gain_pred", "verdict")}})
    summary_file = atomic_write_text(folder / "layer_summary.csv", pd.concat(summaries).to_csv(index=False))
    frame_file = atomic_write_text(folder / "probe.csv", pd.concat(
        [f.assign(run=label) for label, f in frames.items()]).to_csv(index=False))
    return Section(title, text or (
        "Forward: second moment E[y_l²] of each layer's output; backward: E[Δx_l²] of the gradient at its input "
        "(backward pass of <output, g>, g ~ N(0, 1)). Solid: seed mean with min–max band; dashed: the paper's "
        "chain (exact at padded borders, re-anchored on the measurement after pooling); ×: not healthy."),
        figures=[(variance, f"{title}: measured vs predicted second moments against depth"),
                 (factors, "Per-layer factor ½(1+a²)·n·Var[w] against He's ideal 1: below the line a layer "
                           "loses signal, above it amplifies it"),
                 (correlations, "How alike the first 16 examples become: mean cosine between their outputs and "
                                "the batch's effective rank (solid, seed mean), and the mean-field map's one-step "
                                "prediction from the layer before (dashed; none across a pool)")],
        tables=[("Whole-network gains: forward E[y_L²]/E[y_1²], backward E[Δx_1²]/E[Δx_L²]", pd.DataFrame(gains))],
        data_files=[summary_file, frame_file])


def training_section(results: dict, folder: Path, title: str, text: str = "", figure_title: str = "") -> Section:
    """Write the error-vs-epoch figure and history table of training runs; return the section."""
    folder.mkdir(parents=True, exist_ok=True)
    curves = plot_training_curves(results, folder / "training_curves.png", title=figure_title)
    histories = pd.concat([r.history.assign(run=label) for label, r in results.items()], ignore_index=True)
    history_file = atomic_write_text(folder / "history.csv", histories.to_csv(index=False))
    verdicts = pd.DataFrame([{"run": label, "verdict": r.verdict, "final train loss": r.final_train_loss,
                              "final validation error": r.final_val_error, "why": r.reason}
                             for label, r in results.items()])
    from .folders import run_folder_name
    figures = [(curves, f"{title}: error against epoch (solid validation, dashed training)")]
    for label, result in results.items():  # a watched run: its layer × step maps
        if len(getattr(result, "watch", ())):
            figures.append((plot_watch(result.watch, folder / f"watch-{run_folder_name(label)}.png", title=label),
                            f"{label}: per-layer E[y²] and loss-gradient E[Δy²] over the watched steps "
                            "(initlab train --watch-every), and learned slopes"))
    return Section(title, text, figures=figures, tables=[("Verdicts", verdicts)], data_files=[history_file])


def paper_tables_section(table2: pd.DataFrame, table1: pd.DataFrame, folder: Path, scale: str) -> Section:
    """Return the ReLU-vs-PReLU and learned-slope tables beside the paper's (Tables 2 and 1)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = [atomic_write_text(folder / "table2_relu_vs_prelu.csv", table2.to_csv(index=False)),
             atomic_write_text(folder / "table1_learned_slopes.csv", table1.to_csv(index=False))]
    ours1 = table1.reset_index(drop=True)
    side_by_side = pd.concat([ours1, PAPER_TABLE1], axis=1)
    return Section("The paper's Tables 2 and 1, beside ours", scale, tables=[
        ("Table 2 form, ours: validation error (fraction) over seeds", table2),
        ("Table 2, the paper: ImageNet top-1/top-5 error (%), single model", PAPER_TABLE2),
        ("Table 1 form: learned slopes per layer at the end of training, ours (left) and the paper's 14-layer "
         "ImageNet model (right); rows pair by position only", side_by_side)], data_files=files)


def report_header(command: str, config: dict[str, str] | None = None, device: str = "cpu") -> dict[str, str]:
    """Return the header fields: command, date, versions, device, and any configuration."""
    import datetime
    import platform

    import torch

    from . import __version__
    header = {"command": command, "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
              "versions": f"initlab {__version__} · torch {torch.__version__} · numpy {np.__version__} · "
                          f"pandas {pd.__version__} · python {platform.python_version()}",
              "device": f"{device} ({platform.machine()}, {os.cpu_count()} CPU cores)"}
    header.update(config or {})
    return header


# -- reading output folders back ---------------------------------------------------------------------


def plot_check(report: Any, path: str | Path | None = None) -> plt.Figure:
    """Return a two-panel figure of a check: log10 chain gain per layer call, forward and backward,
    against He's 1 with the interval each layer is judged by (the finite-width band, at least ±1
    decade; ±3 for a lone layer step); crosses mark layers that are not healthy, grey
    dots layers not judged by their chain gain (inside residual branches, judged through the
    stream, or ending in a train-mode normalization, which removes their scale). Written as PNG to ``path``
    (atomically) when given; the figure stays open for a notebook."""
    layers = report.to_frame()
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.2), constrained_layout=True)
    for axis, direction in zip(axes, ("forward", "backward")):
        gains = layers[f"log10_{direction}_gain_layers"].to_numpy()
        index = layers["index"].to_numpy()
        # judged by their stream or removed by a normalization: not by the chain gain drawn here
        branch = (layers["judged_by"].to_numpy() != "chain") if "judged_by" in layers else \
            layers["in_residual_branch"].to_numpy(dtype=bool)
        if f"healthy_{direction}_low" in layers:  # the interval each layer is judged by (``verdicts.healthy_interval``)
            axis.fill_between(index, layers[f"healthy_{direction}_low"], layers[f"healthy_{direction}_high"],
                              step="mid", color="#2da44e", alpha=0.10, linewidth=0,
                              label="healthy: finite-width band, at least ±1 decade")
        else:
            axis.axhspan(-1, 1, color="#2da44e", alpha=0.08, linewidth=0)
        axis.axhline(0, color="#2da44e", linewidth=1, label="He: gain 1")
        lone = ~branch & (layers[f"{direction}_chain_steps"].to_numpy() <= 1) if f"{direction}_chain_steps" in layers \
            else np.zeros(len(index), dtype=bool)
        chained = ~branch & ~lone
        axis.plot(index[chained], gains[chained], marker="o", markersize=3, linewidth=1, color="#0969da",
                  label="chain gain since the last reset")
        if lone.any():  # a lone layer's factor is an output scale, judged at ±SINGLE_STEP_DECADES (its band above)
            axis.scatter(index[lone], gains[lone], marker="s", s=18, color="#0969da",
                         label=f"a lone layer step (band ±{SINGLE_STEP_DECADES:g} decades)")
        if branch.any():
            axis.scatter(index[branch], gains[branch], s=10, color="#8c959f",
                         label="judged by its stream or normalized away")
        bad = (layers[f"verdict_{direction}"].to_numpy() != "healthy") & ~branch
        if bad.any():
            axis.scatter(index[bad], gains[bad], marker="x", color="#cf222e", s=36, zorder=3, label="not healthy")
        axis.set_title(f"{direction}: {getattr(report, f'verdict_{direction}')}", fontsize=11)
        axis.set_xlabel("layer call (forward order)")
        axis.set_ylabel("log10 chain gain")
        axis.grid(True, alpha=0.3)
    axes[0].legend(fontsize=8, loc="best")
    if path is not None:
        path = Path(path)
        atomic_write(path, lambda temporary: figure.savefig(temporary, format="png", dpi=120))
    return figure
