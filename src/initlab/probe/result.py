"""``ProbeResult``: the probe's tidy frames and configuration, and its summaries."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from ..compare import to_json_dict
from ..verdicts import layer_summary, network_summary
from ..coverage import Coverage


@dataclass(frozen=True)
class ProbeResult:
    """Result of ``probe``: a tidy frame (one row per seed × layer) and the configuration."""

    frame: pd.DataFrame
    config: dict
    sums: pd.DataFrame = field(default_factory=pd.DataFrame)  # one row per seed × residual sum
    dead_units: pd.DataFrame = field(default_factory=pd.DataFrame)  # one row per seed × ReLU call
    norms: pd.DataFrame = field(default_factory=pd.DataFrame)  # one row per seed × train-mode normalization
    coverage: Coverage | None = None  # which weight parameters the probe covered
    attention: pd.DataFrame = field(default_factory=pd.DataFrame)  # one row per seed × attention call
    jacobian: pd.DataFrame = field(default_factory=pd.DataFrame)  # one row per seed: Jacobian spectrum (if asked)

    def to_frame(self) -> pd.DataFrame:
        """Return the tidy per-seed × per-layer frame of measurements and predictions."""
        return self.frame.copy()

    def summary(self) -> pd.DataFrame:
        """Return one row per layer: measured, predicted, log10 ratio, band and verdict."""
        return layer_summary(self.frame)

    def gains(self) -> dict:
        """Return the whole net's forward and backward gains, measured and predicted, and verdict."""
        return network_summary(self.frame, self.sums)

    def to_dict(self) -> dict:
        """Return a JSON-ready dict with keys ``config``, ``layers`` and ``summary``."""
        return to_json_dict(self)
