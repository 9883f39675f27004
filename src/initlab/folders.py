"""The output folders of ``probe --out`` and ``train --out``: what is written there, atomically,
and how ``report`` reads it back.

A probe folder holds ``probe.csv`` (one row per init × act × seed × layer), ``summary.csv`` (one row
per init × act × layer), ``probe.json`` and ``variance_vs_depth.png``. A train folder holds
``train.json`` (one document per run), ``curves.png`` and per run ``<init>/history.{csv,json}``,
``slopes.csv`` and ``checkpoint.pt``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd

from .files import atomic_write_text


def tagged_frames(results: dict, frame_of: Callable) -> pd.DataFrame:
    """Return the frames ``frame_of(result)`` of several probe results, tagged with init and act."""
    frames = []
    for result in results.values():
        frame = frame_of(result)
        frame.insert(0, "init", result.config["init"])
        frame.insert(1, "act", result.config.get("act"))
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def probe_frame(results: dict) -> pd.DataFrame:
    """The tidy per-seed × per-layer frames of several probe results, one frame (``probe.csv``)."""
    return tagged_frames(results, lambda result: result.to_frame())


def probe_documents(results: dict) -> dict | list[dict]:
    """The JSON document of one probe result, or the list of several (``probe.json``)."""
    documents = [result.to_dict() for result in results.values()]
    return documents[0] if len(documents) == 1 else documents


def write_probe_folder(results: dict, out: Path, title: str) -> list[Path]:
    """Write the probe folder of ``results`` (label -> ProbeResult) into ``out``; return the paths."""
    from .report import plot_variance_vs_depth
    return [
        atomic_write_text(out / "probe.csv", probe_frame(results).to_csv(index=False)),
        atomic_write_text(out / "summary.csv", tagged_frames(results, lambda result: result.summary()).to_csv(index=False)),
        atomic_write_text(out / "probe.json", json.dumps(probe_documents(results), indent=2)),
        plot_variance_vs_depth({label: result.frame for label, result in results.items()},
                               out / "variance_vs_depth.png", title=f"{title}: variance vs depth"),
    ]


def write_history(directory: Path, history: pd.DataFrame, slopes: pd.DataFrame) -> None:
    """Write one run's ``history.csv``, ``history.json`` and (with PReLUs) ``slopes.csv``."""
    atomic_write_text(directory / "history.csv", history.to_csv(index=False))
    atomic_write_text(directory / "history.json", history.to_json(orient="records", indent=2))
    if not slopes.empty:
        atomic_write_text(directory / "slopes.csv", slopes.to_csv(index=False))


def run_folder_name(label: str) -> str:
    """The folder of one training run under ``--out``: its init label with other characters as '_'."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in label)


def write_train_folder(results: dict, out: Path, title: str) -> list[Path]:
    """Write ``train.json`` and ``curves.png`` of ``results`` (label -> TrainResult) into ``out``."""
    from .report import plot_training_curves
    from .report import plot_watch
    documents = [result.to_dict() for result in results.values()]
    written = [atomic_write_text(out / "train.json", json.dumps(documents, indent=2)),
               plot_training_curves(results, out / "curves.png", title=title)]
    for label, result in results.items():  # each run's watched steps, in its own folder
        if len(getattr(result, "watch", ())):
            directory = out / run_folder_name(label)
            directory.mkdir(parents=True, exist_ok=True)
            written += [atomic_write_text(directory / "watch.csv", result.watch.to_csv(index=False)),
                        plot_watch(result.watch, directory / "watch.png", title=f"{title} · {label}")]
    return written


def load_probe_folder(folder: Path) -> dict[str, pd.DataFrame]:
    """Return the probe frames of an ``initlab probe --out`` folder, by "init / act" label."""
    frame = pd.read_csv(Path(folder) / "probe.csv")
    labels = frame["init"] + (" / " + frame["act"].fillna("own") if "act" in frame else "")
    return {label: part.drop(columns=["init", "act"], errors="ignore") for label, part in frame.groupby(labels, sort=False)}


@dataclass
class StoredRun:
    """A finished training run read back from JSON (the fields reports use)."""

    history: pd.DataFrame
    slopes: pd.DataFrame
    verdict: str
    reason: str
    final_train_loss: float
    final_val_error: float
    watch: pd.DataFrame = field(default_factory=pd.DataFrame)  # the run's watch.csv, where it was watched


def stored_run(document: dict) -> StoredRun:
    """Return a ``StoredRun`` from one ``TrainResult.to_dict()`` document."""
    return StoredRun(pd.DataFrame(document["history"]), pd.DataFrame(document.get("slopes", [])),
                     document["verdict"], document.get("reason", ""),
                     float(document.get("final_train_loss") or float("nan")),
                     float(document.get("final_val_error") or float("nan")))


def load_train_folder(folder: Path) -> dict[str, StoredRun]:
    """Return the runs of an ``initlab train --out`` folder (its train.json), by init label."""
    documents = json.loads((Path(folder) / "train.json").read_text())
    runs = {d["config"].get("init", f"run {i}"): stored_run(d) for i, d in enumerate(documents)}
    for label, run in runs.items():
        watched = Path(folder) / run_folder_name(label) / "watch.csv"
        if watched.is_file():
            run.watch = pd.read_csv(watched)
    return runs
