"""A PyTorch Lightning callback: ``initlab.watch`` over the fit, the first step checked.

    from initlab.integrations.lightning import InitlabCallback
    trainer = lightning.Trainer(callbacks=[InitlabCallback(every=100, on_unhealthy="fail")])

The watch is attached in ``on_train_start`` and removed in ``on_train_end`` and ``on_exception``
(as lightning-bolts' ``ModuleDataMonitor`` registers and removes its hooks). Once the first
step's backward is over (``on_before_optimizer_step``) its statistics are checked as
``initlab.check`` checks a model; ``on_unhealthy`` "fail" raises ``UnhealthyInitError`` (an
``AssertionError``, which stops the fit), "warn" warns, "ignore" does neither. With a
``TensorBoardLogger`` the watched statistics go to its ``SummaryWriter`` as they arrive.
``callback.frame()`` is the watch's tidy frame. A step is a forward of the LightningModule in
training mode, so the module's ``training_step`` should call ``self(...)``.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import pandas as pd

from ._common import WatchedFit


class InitlabCallback(pl.Callback):
    """Watch the LightningModule every ``every`` steps and check its first step."""

    def __init__(self, every: int = 100, on_unhealthy: str = "warn", direction: str = "forward") -> None:
        super().__init__()
        self.fit = WatchedFit(every, on_unhealthy, direction)

    def frame(self) -> pd.DataFrame:
        """The watch's frame: one row per watched step × layer call."""
        return self.fit.watch.frame() if self.fit.watch is not None else pd.DataFrame()

    @property
    def report(self) -> Any:
        """The first step's ``CheckReport`` (None before it)."""
        return self.fit.report

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.fit.start(pl_module)

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any) -> None:
        self.fit.after_backward()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        logger = trainer.logger
        if logger is not None and type(logger).__name__ == "TensorBoardLogger":
            self.fit.log(logger.experiment)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.on_train_batch_end(trainer, pl_module, None, None, -1)
        self.fit.stop()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self.fit.stop()
