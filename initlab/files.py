"""Atomic output: every file is written to a temporary sibling and renamed into place.

An interrupted run therefore leaves either the previous file or the complete new one, never a
truncated file.
"""

from __future__ import annotations

import math
import os
import tempfile
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
