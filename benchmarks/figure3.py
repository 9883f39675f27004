"""The paper's Figure 3 at CPU scale: 30-layer plain ReLU net, xavier-fanin vs kaiming on digits.

Prints both verdicts, the final errors and the wall time (the target: xavier-fanin
`stalled`, kaiming `converged`, under 5 minutes on 2 CPU cores). Run: python benchmarks/figure3.py
"""

from __future__ import annotations

import platform
import time

import torch

from initlab.data import load_dataset
from initlab.reproduce import EXPERIMENTS, run_experiment


def main() -> None:
    experiment = next(e for e in EXPERIMENTS if e.name == "figure3")
    dataset = load_dataset("digits", seed=0)
    started = time.perf_counter()
    results = run_experiment(experiment, dataset, device=torch.device("cpu"))
    elapsed = time.perf_counter() - started
    print(f"{time.strftime('%Y-%m-%d')} · {platform.processor() or platform.machine()} · "
          f"{torch.get_num_threads()} threads · torch {torch.__version__}")
    print(f"figure 3: depth {experiment.depth}, width {experiment.width}, {experiment.epochs} epochs, "
          f"lr {experiment.lr}, digits")
    for label, (result,) in results.items():
        print(f"  {label:<22} {result.verdict:<10} final train loss {result.final_train_loss:.3f} · "
              f"final val error {result.final_val_error:.3f}")
    verdicts = {label.split(" /")[0]: runs[0].verdict for label, runs in results.items()}
    met = verdicts.get("xavier-fanin") == "stalled" and verdicts.get("kaiming") == "converged" and elapsed < 300
    print(f"total {elapsed:.0f} s · target (xavier-fanin stalled, kaiming converged, < 300 s): "
          f"{'met' if met else 'NOT met'}")
    raise SystemExit(0 if met else 1)


if __name__ == "__main__":
    main()
