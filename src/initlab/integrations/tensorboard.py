"""A watch's statistics as TensorBoard scalars, through ``torch.utils.tensorboard.SummaryWriter``
(which needs the ``tensorboard`` package, an optional extra: ``pip install tensorboard``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

# frame column -> the tag's statistic; one scalar per layer and watched step
SCALARS = {"var_y": "output_second_moment", "grad_output_second_moment": "grad_second_moment", "slope": "slope",
           "example_correlation": "example_correlation"}


def write_watch(frame: pd.DataFrame, writer: Any, prefix: str = "initlab") -> int:
    """Add every watched step × layer's statistics to ``writer`` (a ``SummaryWriter``, or a log
    directory to open one in) as scalars ``{prefix}/{statistic}/{layer}`` at ``global_step`` = the
    step; return how many were written. NaN statistics (no rectifier after a layer) are skipped."""
    own = not hasattr(writer, "add_scalar")
    if own:
        from torch.utils.tensorboard import SummaryWriter
        writer = SummaryWriter(log_dir=str(Path(writer)))
    written = 0
    try:
        for row in frame.itertuples(index=False):
            for column, statistic in SCALARS.items():
                value = getattr(row, column, float("nan"))
                if pd.notna(value):
                    writer.add_scalar(f"{prefix}/{statistic}/{row.name}", float(value), global_step=int(row.step))
                    written += 1
        writer.flush()
    finally:
        if own:
            writer.close()
    return written
