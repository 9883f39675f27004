"""The order-to-chaos phase diagram of tanh nets, measured on finite nets beside the mean-field curve.

For each (σ_w², σ_b²) of a grid: a tanh net of ``--width`` units and ``--depth`` layers with
Var[w] = σ_w²/n and Var[b] = σ_b², its input drawn at the length fixed point q*, and a random
direction pushed through it by a Jacobian-vector product. The per-layer growth of the direction's
squared norm, (‖J·v‖²/‖v‖²)^(1/depth), is the measured χ₁ (geometric mean over seeds); the theory is
``correlation.chi1`` at q*, and the boundary χ₁ = 1 is ``correlation.critical_weight_variance``
(Poole et al. 2016, Fig. 1; Schoenholz et al. 2017, Fig. 1).

Run: python benchmarks/phase_diagram.py [--out reports/phase_diagram] [--width 512] [--depth 20]
Writes phase_diagram.png and phase_diagram.csv there and prints the grid's agreement.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from initlab import correlation
from initlab.files import atomic_write_text


def measured_growth(weight_variance: float, bias_variance: float, width: int, depth: int, seed: int) -> float:
    """(‖J·v‖²/‖v‖²)^(1/depth) of one random tanh net at its q*."""
    q = max(correlation.fixed_point_length(np.tanh, weight_variance, bias_variance), 1e-12)
    generator = torch.Generator().manual_seed(seed)
    weights = [torch.randn(width, width, generator=generator, dtype=torch.float64) * math.sqrt(weight_variance / width)
               for _ in range(depth)]
    biases = [torch.randn(width, generator=generator, dtype=torch.float64) * math.sqrt(bias_variance)
              for _ in range(depth)]
    x = torch.randn(width, generator=generator, dtype=torch.float64) * math.sqrt(q)
    direction = torch.randn(width, generator=generator, dtype=torch.float64)

    def net(h: torch.Tensor) -> torch.Tensor:
        for w, b in zip(weights, biases):
            h = w @ torch.tanh(h) + b
        return h
    _, pushed = torch.func.jvp(net, (x,), (direction,))
    return float(pushed.square().sum() / direction.square().sum()) ** (1.0 / depth)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("reports/phase_diagram"))
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=3)
    arguments = parser.parse_args()
    started = time.perf_counter()
    torch.set_num_threads(1)
    rows = []
    for bias_variance in np.linspace(0.0, 0.3, 7):
        for weight_variance in np.linspace(0.5, 3.5, 13):
            q = correlation.fixed_point_length(np.tanh, weight_variance, bias_variance)
            growth = [measured_growth(weight_variance, bias_variance, arguments.width, arguments.depth, seed)
                      for seed in range(arguments.seeds)]
            rows.append({"weight_variance": weight_variance, "bias_variance": bias_variance, "q_star": q,
                         "chi1": correlation.chi1(correlation.tanh_derivative, weight_variance, q),
                         "measured_growth": float(np.exp(np.mean(np.log(growth))))})
    table = pd.DataFrame(rows)
    table["phase"] = np.where(table["chi1"] > 1, "chaotic", "ordered")
    table["measured_phase"] = np.where(table["measured_growth"] > 1, "chaotic", "ordered")
    agree = float((table["phase"] == table["measured_phase"]).mean())
    error = float(np.median(np.abs(np.log(table["measured_growth"] / table["chi1"]))))
    arguments.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(arguments.out / "phase_diagram.csv", table.to_csv(index=False))

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figure, axis = plt.subplots(figsize=(6.5, 4.5))
    grid = table.pivot(index="bias_variance", columns="weight_variance", values="measured_growth")
    image = axis.pcolormesh(grid.columns, grid.index, np.log(grid.values), cmap="RdBu_r", vmin=-0.6, vmax=0.6,
                            shading="nearest")
    figure.colorbar(image, ax=axis, label="measured ln χ₁ (per-layer growth of a perturbation)")
    biases = np.linspace(0.005, 0.3, 30)
    axis.plot([correlation.critical_weight_variance(np.tanh, correlation.tanh_derivative, b) for b in biases], biases,
              color="black", lw=2, label="mean-field χ₁ = 1")
    axis.set_xlabel("σ_w²")
    axis.set_ylabel("σ_b²")
    axis.set_title(f"tanh nets, width {arguments.width}, depth {arguments.depth}: ordered (blue) / chaotic (red)")
    axis.legend(loc="upper left")
    figure.tight_layout()
    figure.savefig(arguments.out / "phase_diagram.png", dpi=110)
    print(f"{time.strftime('%Y-%m-%d')} · {len(table)} cells · width {arguments.width}, depth {arguments.depth}, "
          f"{arguments.seeds} seeds · {time.perf_counter() - started:.0f} s")
    print(f"phase (χ₁ above or below 1) agrees in {agree:.0%} of cells; median |ln(measured/theory)| {error:.3f}")
    print(f"wrote {arguments.out}/phase_diagram.png and phase_diagram.csv")


if __name__ == "__main__":
    main()
