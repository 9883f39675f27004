"""Search for one setting under which the paper's Figures 2 and 3 both hold at CPU scale.

The paper's inputs (Caffe, ImageNet) are mean-subtracted but not divided by the pixel standard
deviation, so their standard deviation is tens, not 1. Under Xavier the signal reaching the
classifier is the input scale times 2^-(L-1)/2: usable at 22 layers, lost at 30. This sweeps the
input scale s (standardized digits × s), the learning rate and the schedule for xavier-fanin and
kaiming at 22 and 30 layers, one run per cell, and appends one CSV row per run.

Run: python benchmarks/figure2_sweep.py OUT.csv "s,lr,schedule,epochs[,seed[,depth]]" ...   (one thread)
e.g. python benchmarks/figure2_sweep.py sweep.csv 40,0.001,step,20 30,0.001,constant,20,1,22
"""

from __future__ import annotations

import csv
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from initlab.data import load_dataset
from initlab.models import ModelRecipe
from initlab.reproduce import first_epoch_below
from initlab.train import TrainConfig, train_scheme

COLUMNS = ["scale", "lr", "schedule", "epochs", "seed", "depth", "init", "verdict", "val_error", "train_loss",
           "first_epoch_below_half", "seconds"]


def main() -> None:
    torch.set_num_threads(1)
    out = Path(sys.argv[1])
    base = load_dataset("digits", seed=0)
    new = not out.exists()
    with out.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, COLUMNS)
        if new:
            writer.writeheader()
        for cell in sys.argv[2:]:
            scale, lr, schedule, epochs, *rest = cell.split(",")
            seed = int(rest[0]) if rest else 0
            depths = (int(rest[1]),) if len(rest) > 1 else (22, 30)
            dataset = replace(base, train_x=base.train_x * float(scale), val_x=base.val_x * float(scale))
            for depth in depths:
                for init in ("xavier-fanin", "kaiming"):
                    started = time.perf_counter()
                    factory = ModelRecipe("plain", depth, 32, dataset.input_shape, "relu", 1,
                                          dataset.num_classes).factory()
                    config = TrainConfig(epochs=int(epochs), lr=float(lr), schedule=schedule, seed=seed)
                    result = train_scheme(factory, init, dataset, config)
                    row = {"scale": scale, "lr": lr, "schedule": schedule, "epochs": epochs, "seed": seed, "depth": depth,
                           "init": init, "verdict": result.verdict, "val_error": round(result.final_val_error, 4),
                           "train_loss": round(result.final_train_loss, 4),
                           "first_epoch_below_half": first_epoch_below(result.history, 0.45),
                           "seconds": round(time.perf_counter() - started, 1)}
                    writer.writerow(row)
                    handle.flush()
                    print(row, flush=True)


if __name__ == "__main__":
    main()
