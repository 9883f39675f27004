"""What the framework callbacks share: the watch's life, the first step's check, the logging."""

from __future__ import annotations

import warnings
from typing import Any

from torch import nn

from ..check import UnhealthyInitError
from ..watch import Watch, watch

ON_UNHEALTHY = ("fail", "warn", "ignore")


class UnhealthyInitWarning(UserWarning):
    """The first training step's check found the init unhealthy (``on_unhealthy="warn"``)."""


class WatchedFit:
    """A watch over one fit: attached at its start, the first step checked once its backward is
    over, the watched rows handed to a TensorBoard writer as they arrive, removed at its end."""

    def __init__(self, every: int, on_unhealthy: str, direction: str = "forward") -> None:
        if on_unhealthy not in ON_UNHEALTHY:
            raise ValueError(f"on_unhealthy must be one of {', '.join(ON_UNHEALTHY)}, got {on_unhealthy!r}")
        self.every, self.on_unhealthy, self.direction = every, on_unhealthy, direction
        self.watch: Watch | None = None
        self.report: Any = None  # the first step's CheckReport
        self._written = 0  # rows of the frame already given to TensorBoard
        self._logged_step = -1  # the latest watched step handed to TensorBoard

    def start(self, model: nn.Module) -> None:
        self.stop()
        self.watch = watch(model, every=self.every)
        self.report, self._written, self._logged_step = None, 0, -1

    def after_backward(self) -> None:
        """Check the first step once (its gradients are in); fail or warn as asked."""
        if self.watch is None or self.report is not None or self.on_unhealthy == "ignore":
            return
        if 0 not in {int(step) for step in self.watch.frame().get("step", [])}:
            return
        self.report = self.watch.report(0, self.direction)
        if self.report.healthy:
            return
        if self.on_unhealthy == "fail":
            self.stop()
            raise UnhealthyInitError(self.report.text())
        warnings.warn(f"initlab: the first training step's init is unhealthy: "
                      f"{'; '.join(f.message for f in self.report.errors) or self.report.verdict_lines()[0]}",
                      UnhealthyInitWarning, stacklevel=2)

    def log(self, writer: Any) -> None:
        """Write the watched rows not yet written to a TensorBoard ``SummaryWriter``."""
        if self.watch is None or writer is None or not hasattr(writer, "add_scalar") or not self.watch.steps_seen:
            return
        latest = (self.watch.steps_seen - 1) // self.every * self.every
        if latest == self._logged_step:  # no watched step since: no transfer, no sync
            return
        frame = self.watch.frame()
        self._logged_step = int(frame["step"].max()) if len(frame) else -1
        if len(frame) > self._written:
            from .tensorboard import write_watch
            write_watch(frame.iloc[self._written:], writer)
            self._written = len(frame)

    def stop(self) -> None:
        if self.watch is not None:
            self.watch.remove()
