"""Atomic output: every file is written to a temporary sibling and renamed into place.

An interrupted run therefore leaves either the previous file or the complete new one, never a
truncated file. ``BackgroundWriter`` runs such writes in a thread of their own, in order.
"""

from __future__ import annotations

import math
import os
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import numpy as np


def atomic_write(path: str | Path, write: Callable[[str], None]) -> Path:
    """Call ``write(temporary_path)``, then rename the temporary file onto ``path``; return ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        write(temporary)
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes it private; outputs get the usual mode
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (UTF-8); return ``path``."""
    return atomic_write(path, lambda temporary: Path(temporary).write_text(text, encoding="utf-8"))


class BackgroundWriter:
    """Runs writes in a background thread, one at a time, in the order they were submitted.

    ``submit`` first waits for the write before it and raises that write's error, so one write is
    in flight at most and files land in order. ``close`` waits for the last one and also raises its
    error; leaving a ``with`` block closes, also when an exception (Ctrl-C) propagates, so every
    submitted write is on disk when control leaves it. What is submitted must not change afterwards:
    pass copies.
    """

    def __init__(self, name: str = "initlab-writer") -> None:
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self.pending: Future | None = None

    def submit(self, write: Callable[..., None], *args: Any) -> None:
        self.wait()
        self.pending = self.executor.submit(write, *args)

    def wait(self) -> None:
        """Wait for the write in flight, if any; raise its error."""
        pending, self.pending = self.pending, None
        if pending is not None:
            pending.result()

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self.executor.shutdown(wait=True)

    def __enter__(self) -> "BackgroundWriter":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def check_writable_directory(path: str | Path) -> Path:
    """Create ``path`` if needed and check that files can be written there; return it.

    Raises ``ValueError`` with one line naming the directory when it cannot be written.
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        handle, probe_file = tempfile.mkstemp(prefix=".initlab-write-test.", dir=path)
        os.close(handle)
        os.unlink(probe_file)
    except OSError as error:
        raise ValueError(f"cannot write to output directory {str(path)!r}: {error.strerror or error}") from None
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def json_value(value: Any) -> Any:
    """Return ``value`` as a plain JSON value: NumPy scalars to Python, NaN and ±inf to None."""
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def json_records(frame: Any) -> list[dict[str, Any]]:
    """Return a DataFrame's rows as JSON-ready dicts (``json_value`` on every cell)."""
    return [{key: json_value(value) for key, value in row.items()} for row in frame.to_dict("records")]
