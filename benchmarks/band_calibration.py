"""Calibration of the finite-width bands: the band's σ against the seed-to-seed σ it predicts.

For each net of the grid (MLPs and plain conv stacks over widths 16–512, batches 1–256, maps
4×4–32×32, ReLU and leaky slopes), probe S seeds of the Kaiming init (new weights per seed, one fixed
batch, as a probe does) and compare, per layer and direction, the empirical standard deviation over seeds of
ln(measured/predicted) with the band's σ (√ of the seed-mean of ``forward_log_variance`` or
``backward_log_variance``). A calibrated band gives a ratio near 1; the sampling error of a σ from
S seeds is about 1/√(2S) (9 % at S = 64).

Run: python benchmarks/band_calibration.py [--seeds 64] [--figure docs/band_calibration.png]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
import torch

import initlab

GRID = (  # (kind, width, depth, batch, side, act)
    ("mlp", 16, 20, 1, 0, "relu"), ("mlp", 64, 20, 8, 0, "relu"), ("mlp", 64, 20, 256, 0, "relu"),
    ("mlp", 512, 10, 64, 0, "relu"), ("mlp", 64, 20, 32, 0, "leaky:0.25"),
    ("conv", 16, 12, 32, 8, "relu"), ("conv", 24, 14, 32, 16, "relu"), ("conv", 16, 10, 1, 4, "relu"),
    ("conv", 16, 8, 4, 32, "relu"), ("conv", 32, 10, 16, 8, "leaky:0.25"),
)


def build(kind: str, width: int, depth: int, side: int, act: str):
    if kind == "mlp":
        return lambda: initlab.mlp(depth=depth, width=width, act=act)
    return lambda: initlab.plain_net(depth=depth, width=width, input_shape=(3, side, side), act=act, stages=1)


def calibrate(kind: str, width: int, depth: int, batch: int, side: int, act: str, seeds: int) -> pd.DataFrame:
    """One row per layer × direction: the empirical σ over seeds, the band's σ, their ratio."""
    shape = (batch, width) if kind == "mlp" else (batch, 3, side, side)
    batch_input = torch.randn(*shape, generator=torch.Generator().manual_seed(10_000))
    frame = initlab.probe(build(kind, width, depth, side, act), batch_input, init="kaiming", seeds=seeds).to_frame()
    rows = []
    for direction, measured, predicted in (("forward", "var_y", "var_y_pred"), ("backward", "grad_var", "grad_var_pred")):
        frame["log_ratio"] = np.log(frame[measured] / frame[predicted])
        grouped = frame.groupby("index")
        empirical = grouped["log_ratio"].std()
        band = np.sqrt(grouped[f"{direction}_log_variance"].mean())
        kinds = grouped["kind"].first()
        for index in empirical.index:
            # a layer anchored on what it measures has no spread to compare: the first layer's input
            # (forward) is the anchor; the last layer's input gradient (backward) is one step from it
            rows.append({"net": f"{kind} w{width} L{depth} B{batch}" + (f" {side}×{side}" if side else "") + f" {act}",
                         "direction": direction, "index": index, "layer_kind": kinds[index],
                         "empirical_sigma": empirical[index], "band_sigma": band[index],
                         "ratio": empirical[index] / band[index]})
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=64)
    parser.add_argument("--figure", default=None, help="write the calibration figure here (PNG)")
    parser.add_argument("--csv", default=None, help="write the per-layer rows here")
    arguments = parser.parse_args()
    started = time.perf_counter()
    table = pd.concat([calibrate(*cell, seeds=arguments.seeds) for cell in GRID], ignore_index=True)
    print(f"{time.strftime('%Y-%m-%d')} · torch {torch.__version__} · {arguments.seeds} seeds per net · "
          f"{time.perf_counter() - started:.0f} s")
    summary = table.groupby(["net", "direction"], sort=False)["ratio"].describe()[["50%", "min", "max"]]
    print("empirical σ / band σ per layer (median, min, max):")
    print(summary.round(2).to_string())
    if arguments.csv:
        table.to_csv(arguments.csv, index=False)
    if arguments.figure:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        figure, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
        for axis, direction in zip(axes, ("forward", "backward")):
            part = table[table["direction"] == direction]
            for position, (net, rows) in enumerate(part.groupby("net", sort=False)):
                axis.scatter(rows["ratio"], np.full(len(rows), position) + np.linspace(-0.2, 0.2, len(rows)),
                             s=10, alpha=0.7)
            axis.axvspan(0.8, 1.25, color="0.9", zorder=0)
            axis.axvline(1.0, color="0.4", lw=1)
            axis.set_xlabel("empirical σ over seeds / band σ (per layer)")
            axis.set_title(direction)
            axis.set_xlim(0.4, 1.8)
        names = list(dict.fromkeys(table["net"]))
        axes[0].set_yticks(range(len(names)), names, fontsize=8)
        figure.suptitle(f"finite-width band calibration, Kaiming nets, {arguments.seeds} seeds each "
                        "(shaded: 0.8–1.25)")
        figure.tight_layout()
        figure.savefig(arguments.figure, dpi=110)


if __name__ == "__main__":
    main()
