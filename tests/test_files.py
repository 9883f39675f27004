"""Atomic and background writes, and JSON values: nothing half-written, errors raised where seen."""

import math
import os
import threading
import time

import numpy as np
import pandas as pd
import pytest

from initlab.files import BackgroundWriter, atomic_write, atomic_write_text, check_writable_directory, json_records, \
    json_value


def test_an_interrupted_write_leaves_the_previous_file_and_no_temporary(tmp_path):
    path = atomic_write_text(tmp_path / "out" / "a.txt", "first")  # the folder is created
    assert path.read_text() == "first"

    def half_then_fail(temporary):
        with open(temporary, "w") as handle:
            handle.write("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, half_then_fail)
    assert path.read_text() == "first" and os.listdir(path.parent) == ["a.txt"]
    mode = os.stat(path).st_mode & 0o777
    mask = os.umask(0)
    os.umask(mask)
    assert mode == 0o666 & ~mask  # the usual mode, not mkstemp's private one


def test_background_writes_land_in_order_and_raise_their_error_at_the_next_submit(tmp_path):
    landed = []

    def slow(number):
        time.sleep(0.05)
        landed.append((number, threading.current_thread().name))

    with BackgroundWriter("initlab-test") as writer:
        for number in range(4):
            writer.submit(slow, number)
    assert [number for number, _ in landed] == [0, 1, 2, 3]
    assert all(name.startswith("initlab-test") for _, name in landed)

    def fail():
        raise OSError(28, "No space left on device")

    writer = BackgroundWriter()
    writer.submit(fail)
    with pytest.raises(OSError, match="No space left"):
        writer.submit(slow, 9)
    writer.close()


def test_an_unwritable_directory_is_a_one_line_value_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match="cannot write to output directory"):
        check_writable_directory(blocker / "sub")
    assert check_writable_directory(tmp_path / "new") == tmp_path / "new" and not os.listdir(tmp_path / "new")


def test_json_values_are_plain_and_non_finite_numbers_are_null():
    assert json_value(np.float32(0.5)) == 0.5 and type(json_value(np.float32(0.5))) is float
    assert json_value(np.int64(3)) == 3 and type(json_value(np.int64(3))) is int
    assert json_value(np.bool_(True)) is True
    assert json_value(float("nan")) is None and json_value(math.inf) is None and json_value("x") == "x"
    frame = pd.DataFrame({"a": [1.0, float("nan")], "b": ["x", "y"]})
    assert json_records(frame) == [{"a": 1.0, "b": "x"}, {"a": None, "b": "y"}]
