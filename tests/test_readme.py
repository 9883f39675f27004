"""Every example the README and ``--help`` show runs as shown.

Shell examples run in a scratch folder holding the files they name (the README's own ``nets.py`` and
``textnet.py``, and a small ``mypkg`` package and ``data.npz`` for the ``--help`` examples), at small
sizes: options appended per command (``--seeds 1``, ``--steps 2``, ``--quick``) override the shown
ones, as typer takes the last value given. Examples that need a GPU run only where CUDA is present.
Python blocks run as pasted, each in a fresh interpreter.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from initlab.cli import main

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
COMMANDS = ("probe", "check", "train", "reproduce", "report", "list")
SMALL = {  # appended to an example of each command: a seed, a few steps, the quick reproduction
    "probe": ["--seeds", "1", "--batch-size", "4", "--quiet"],
    "check": [],
    "train": ["--steps", "2", "--quiet"],
    "reproduce": ["--quick", "--quiet"],
    "report": ["--quiet"],
    "list": [],
}
MYPKG_NETS = """
from torch import nn


def build():
    return nn.Sequential(nn.Conv2d(3, 8, 3, stride=4, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))


build_net = build
"""
MYPKG_TEXT = """
import torch
from torch import nn


class TinyText(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed, self.mix, self.head = nn.Embedding(100, 32), nn.Linear(32, 32), nn.Linear(32, 100)

    def forward(self, ids):
        return self.head(torch.relu(self.mix(self.embed(ids))))


def build():
    return TinyText()


def batch():
    return torch.randint(0, 100, (4, 16), generator=torch.Generator().manual_seed(0))
"""


def fenced_blocks(text: str) -> list[tuple[str, str, int]]:
    """Return the Markdown fenced blocks of ``text`` as (language, content, offset of the opening fence)."""
    blocks, language, start, content = [], None, 0, []
    offset = 0
    for line in text.splitlines(keepends=True):
        if line.startswith("```"):
            if language is None:
                language, start, content = line[3:].strip(), offset, []
            else:
                blocks.append((language, "".join(content), start))
                language = None
        elif language is not None:
            content.append(line)
        offset += len(line)
    return blocks


def _python_blocks(text: str) -> list[tuple[str | None, str]]:
    """Return the README's python blocks as (file name or None, code): a block introduced by
    "With `NAME.py` holding" is that file's content; any other block is a script to run."""
    blocks = []
    for language, code, start in fenced_blocks(text):
        if language == "python":
            named = re.findall(r"With `([\w/]+\.py)` holding", text[max(0, start - 400):start])
            blocks.append((named[-1] if named else None, code))
    return blocks


def readme_shell_examples(text: str = README) -> list[str]:
    """Return each command line of the README's bash blocks and of its ``$ initlab`` output blocks."""
    lines = []
    for language, content, _ in fenced_blocks(text):
        for line in content.splitlines():
            line = line.strip()
            if language == "bash" and line and not line.startswith("#"):
                lines.append(line)
            elif language == "" and line.startswith("$ initlab "):
                lines.append(line[2:])
    return [line for line in lines if not line.startswith("make ")]  # make: the two quick-start commands, CI's own


def help_examples() -> list[str]:
    """Return the example lines under "Examples:" in every command's --help."""
    import contextlib
    import io
    examples = []
    for command in COMMANDS:
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            assert main([command, "--help"]) == 0
        text = buffer.getvalue()
        if "Examples:" in text:
            for line in text.split("Examples:", 1)[1].splitlines()[1:]:
                if not line.strip():
                    break
                examples.append(line.strip())
    return examples


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """A scratch folder holding the files the examples name; the working directory while they run."""
    for name, code in _python_blocks(README):
        if name is not None:
            (tmp_path / name).write_text(code)
    package = tmp_path / "mypkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "nets.py").write_text(MYPKG_NETS)
    (package / "text.py").write_text(MYPKG_TEXT)
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "data.npz", x=rng.standard_normal((256, 64)).astype(np.float32),
             y=rng.integers(0, 4, 256))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [str(tmp_path)] + sys.path)
    return tmp_path


def _run_example(line: str, capsys) -> tuple[int | None, str]:
    """Run one example line at small size; return (exit code, stderr), or (None, reason) when skipped."""
    argv = shlex.split(line, comments=True)
    if "cuda" in argv and not torch.cuda.is_available():
        return None, "needs CUDA"
    if argv[0] == "torchrun":
        position = argv.index("initlab")
        command = argv[position + 1]
        runner = [sys.executable, "-m", "torch.distributed.run", "--standalone", *argv[1:position - 1], "-m", "initlab"]
        completed = subprocess.run(runner + argv[position + 1:] + SMALL[command], capture_output=True, text=True,
                                   timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"))
        return completed.returncode, completed.stderr
    assert argv[0] == "initlab", line
    command = next((word for word in argv[1:] if word in COMMANDS), None)
    code = main(argv[1:] + (SMALL[command] if command and "--help" not in argv and "-h" not in argv else []))
    return code, capsys.readouterr().err


def _expected_code(line: str) -> set[int]:
    # `initlab check` exits 1 on an unhealthy model: the README's nets.py is one, on purpose
    return {0, 1} if " check " in f" {line} " else {0}


def _same_run(line: str) -> tuple[str, ...]:
    """The example's arguments without its comment (and, for ``reproduce``, which always runs
    ``--quick`` here, its --out folder): examples with the same run run once."""
    argv = shlex.split(line, comments=True)
    if "reproduce" in argv and "--out" in argv:
        position = argv.index("--out")
        argv = argv[:position] + argv[position + 2:]
    return tuple(argv)


@pytest.mark.slow
def test_every_readme_and_help_example_runs(workspace, capsys, monkeypatch):
    from dataclasses import replace

    import initlab.reproduce as reproduce
    short = replace(reproduce.EXPERIMENTS[0], depth=8, epochs=1)  # `report` with no --from trains Figure 3 first
    monkeypatch.setattr(reproduce, "EXPERIMENTS", (short, *reproduce.EXPERIMENTS[1:]))
    readme, helps = readme_shell_examples(), help_examples()
    assert len(readme) >= 25 and any(line.startswith("initlab check nets.py") for line in readme)
    assert {line.split()[1] for line in helps if line.startswith("initlab")} == {"probe", "check", "train", "report"}
    assert main(["probe", "--out", "reports/probe", "--seeds", "1", "--quiet"]) == 0  # what `make run` leaves
    # README order (its report example reads the train example's folder), then --help's, reports last
    examples = list(dict.fromkeys(readme + helps))
    examples.sort(key=lambda line: line.startswith("initlab report"))
    ran, skipped = set(), []
    for line in examples:
        if _same_run(line) in ran:
            continue
        ran.add(_same_run(line))
        code, stderr = _run_example(line, capsys)
        if code is None:
            skipped.append(line)
            continue
        assert code in _expected_code(line), f"{line}: exit {code}: {stderr}"
        assert "Traceback" not in stderr, line
    assert skipped == [] or all("cuda" in line for line in skipped)  # nothing else is left out
    assert len(ran) >= 30
    assert (workspace / "reports" / "mynet" / "index.html").is_file()
    assert (workspace / "reports" / "default" / "index.html").is_file()
    assert (workspace / "reports" / "check" / "check.png").is_file()


def test_every_readme_python_block_runs_as_pasted(workspace):
    scripts = [code for name, code in _python_blocks(README) if name is None]
    assert len(scripts) == 3
    outputs = []
    for code in scripts:
        completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                                   cwd=workspace)
        assert completed.returncode == 0, f"{code}\n{completed.stderr}"
        assert completed.stdout.strip(), "a README example prints what it shows"
        outputs.append(completed.stdout)
    assert outputs[0].strip() == "False"  # the README's nets.py is unhealthy on purpose
    api = outputs[1].splitlines()
    assert api[0].startswith("UNHEALTHY: ") and "True" in api and any(line.startswith("vanishing ") for line in api)
    watched = outputs[2].splitlines()
    assert "True" in watched and watched[-1] == "True [0, 2]"  # step 0 healthy in both; Lightning's steps
    assert any(line.startswith("step 10: ") and "dead" in line for line in watched)  # the loop's own failure


def test_the_readme_names_no_issue_numbers_or_commit_hashes():
    for text in [README] + [path.read_text(encoding="utf-8") for path in (ROOT / "docs").glob("*.md")]:
        assert not re.search(r"\bissue \d+|#\d{2,}\b", text)
        assert not re.search(r"\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{7,40}\b", text)
    for link in re.findall(r"\]\(((?:docs|reports)/[^)#]+)", README):
        assert (ROOT / link).exists(), link


def test_a_parsed_example_keeps_its_arguments_and_drops_its_comment():
    lines = readme_shell_examples(textwrap.dedent("""\
        ```bash
        initlab probe --depth 22   # a comment
        # a comment line
        make run
        ```
        ```
        $ initlab check nets.py:build_net --input-shape 3,32,32
        HEALTHY: ...
        ```
        """))
    assert lines == ["initlab probe --depth 22   # a comment", "initlab check nets.py:build_net --input-shape 3,32,32"]
    assert shlex.split(lines[0], comments=True) == ["initlab", "probe", "--depth", "22"]


def test_the_readme_claims_table_is_the_committed_reports_claims():
    import pandas as pd
    claims = pd.read_csv(ROOT / "reports" / "paper" / "claims.csv")
    section = README[README.index("| claim | the paper | measured here | held |"):].split("\n\n", 1)[0]
    rows = [line.split(" | ") for line in section.splitlines()[2:]]
    assert [row[0].strip("| ") for row in rows] == list(claims["claim"])
    assert [row[-1].strip("| ").split(":")[0] for row in rows] == list(claims["held"])
