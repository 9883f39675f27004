"""Figures: variance against depth, measured (seed band) with the paper's chain overlaid."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # figures are files; never open a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .compare import layer_summary  # noqa: E402
from .files import atomic_write  # noqa: E402

# Okabe & Ito's colour-blind-safe palette; a label keeps its colour across figures.
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]


def plot_variance_vs_depth(frames: dict[str, pd.DataFrame], path: str | Path, title: str = "") -> Path:
    """Write a two-panel PNG: forward E[y_l²] and backward E[Δx_l²] against layer index.

    ``frames`` maps a label (e.g. "kaiming / relu") to a probe's tidy frame. Solid line and
    shaded band: seed mean and min–max; dashed: the chain's prediction; crosses: layers whose
    verdict is not healthy. Log scale; written atomically.
    """
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.6), constrained_layout=True)
    panels = [("var_y", "var_y_pred", "forward: E[y_l²] (layer output)"),
              ("grad_var", "grad_var_pred", "backward: E[Δx_l²] (gradient at layer input)")]
    for position, (label, frame) in enumerate(frames.items()):
        colour = PALETTE[position % len(PALETTE)]
        per_layer = frame.groupby("index")
        summary = layer_summary(frame)
        for axis, (measured, predicted, heading) in zip(axes, panels):
            index = np.asarray(per_layer[measured].mean().index)
            axis.fill_between(index, per_layer[measured].min(), per_layer[measured].max(), color=colour, alpha=0.2,
                              linewidth=0)
            axis.plot(index, per_layer[measured].mean(), color=colour, marker="o", markersize=3, linewidth=1.5,
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
    path = Path(path)
    atomic_write(path, lambda temporary: figure.savefig(temporary, format="png", dpi=120))
    plt.close(figure)
    return path


def plot_training_curves(results: dict, path: str | Path, title: str = "") -> Path:
    """Write a PNG of error against epoch, one colour per run (the paper's Figures 2 and 3).

    ``results`` maps a label to a ``TrainResult``. Solid: validation error; dashed: training
    error; the legend carries each run's verdict. Written atomically.
    """
    figure, axis = plt.subplots(figsize=(7.5, 4.6), constrained_layout=True)
    for position, (label, result) in enumerate(results.items()):
        colour = PALETTE[position % len(PALETTE)]
        history = result.history
        if history.empty:
            continue
        axis.plot(history["epoch"], history["val_error"], color=colour, linewidth=1.8,
                  label=f"{label}: validation ({result.verdict})")
        axis.plot(history["epoch"], history["train_error"], color=colour, linewidth=1.2, linestyle="--",
                  label=f"{label}: training")
    axis.set_xlabel("epoch")
    axis.set_ylabel("error (fraction misclassified)")
    axis.set_ylim(0, 1)
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=8, loc="best")
    if title:
        axis.set_title(title, fontsize=11)
    path = Path(path)
    atomic_write(path, lambda temporary: figure.savefig(temporary, format="png", dpi=120))
    plt.close(figure)
    return path
