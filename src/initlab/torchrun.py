"""A process that torchrun started as one of several: how to tell, and how it ends.

Kept apart from ``train`` (which imports torch and the models) so that the command line's entry
point can ask at every exit without paying for those imports.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import NoReturn


def launched_as_worker() -> bool:
    """True in a process that torchrun started as one of several (``WORLD_SIZE`` above 1): the
    processes that ``start_distributed`` puts in a process group."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def end_worker_process(code: int) -> NoReturn:
    """End a torchrun worker with exit ``code`` without the interpreter's finalization: flush
    stdout, stderr and logging, then ``os._exit``. Call it once every file is written and closed.

    Why: gloo runs the collectives on its own worker threads, which drop a collective's tensors
    only after it has completed. A tensor that Python has seen holds a Python object, and dropping
    it takes the GIL. Where that drop lands while the interpreter finalizes (rank 1 exits as soon
    as the closing barrier returns), the thread is stopped inside a destructor and the process
    aborts ("terminate called without an active exception", SIGABRT), which torchrun reports as a
    failed run. ``destroy_process_group`` does not prevent it: the group stays referenced after it,
    so its threads are not joined before exit."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more can reach it
            pass
    os._exit(code)
