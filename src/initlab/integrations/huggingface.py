"""A Hugging Face ``transformers.TrainerCallback``: ``initlab.watch`` over ``Trainer.train()``, the
first step checked.

    from initlab.integrations.huggingface import InitlabCallback
    trainer = transformers.Trainer(model=model, args=args, train_dataset=data,
                                   callbacks=[InitlabCallback(every=100, on_unhealthy="fail")])

The watch is attached in ``on_train_begin`` and removed in ``on_train_end``. The first step is
checked in ``on_pre_optimizer_step``: after the backward and gradient clipping, before the
optimizer (by ``on_step_end`` the gradients are gone). "fail" raises ``UnhealthyInitError``, which
stops ``train()`` (a callback cannot stop it otherwise); "warn" warns. ``tensorboard_dir``: write
the watched statistics there as TensorBoard scalars at every step end. A step is a forward of
the model in training mode: a micro-batch under gradient accumulation. If ``train()`` raises,
``on_train_end`` is not called: call ``callback.remove()`` (the hooks act on that model only).
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from transformers import TrainerCallback

from ._common import WatchedFit


class InitlabCallback(TrainerCallback):
    """Watch the model every ``every`` forwards in training mode and check its first step."""

    def __init__(self, every: int = 100, on_unhealthy: str = "warn", direction: str = "forward",
                 tensorboard_dir: str | None = None) -> None:
        self.fit = WatchedFit(every, on_unhealthy, direction)
        self.tensorboard_dir = tensorboard_dir
        self._writer: Any = None

    def frame(self) -> pd.DataFrame:
        """The watch's frame: one row per watched step × layer call."""
        return self.fit.watch.frame() if self.fit.watch is not None else pd.DataFrame()

    @property
    def report(self) -> Any:
        """The first step's ``CheckReport`` (None before it)."""
        return self.fit.report

    def remove(self) -> None:
        self.fit.stop()
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        self.fit.start(model)
        if self.tensorboard_dir is not None:
            from torch.utils.tensorboard import SummaryWriter
            self._writer = SummaryWriter(log_dir=self.tensorboard_dir)

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.fit.after_backward()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.fit.log(self._writer)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.fit.log(self._writer)
        self.remove()
