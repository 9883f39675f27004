"""A/B of the probe's own cost against an earlier revision of ``src/initlab/probe.py``, in one process.

    python benchmarks/ab_probe.py HEAD~1                   # 300 interleaved pairs, plain-30, 2×3×8×8 input
    python benchmarks/ab_probe.py 3e02f83 --pairs 80 --size 32 --batch 64
    python benchmarks/ab_probe.py HEAD --pairs 300         # an A/A control: the same file twice

Separate runs of ``run.py --only host`` cannot show a change of a few milliseconds: on this
project's 2-core machine the bare pass alone moves by ~6 ms between processes. Here the
revision's ``probe.py`` (``git show REV:src/initlab/probe.py``) is loaded as a second module beside the
working tree's, and the two probe the same model in alternating order, so that drift hits both
alike. Prints the median probe time of each, the median of the per-pair ratios (new / old), and
whether the two return the same statistics (``torch.equal``). Only ``probe.py`` is swapped: the
other modules are the working tree's.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "benchmarks")]

from run import plain_model  # noqa: E402


def load_revision(revision: str, directory: Path):
    """``probe.py`` at ``revision``, imported as ``initlab._probe_ab`` (relative imports resolve in
    the working tree's package). Revisions before the ``src/`` layout hold it at ``initlab/probe.py``."""
    source = None
    for location in ("src/initlab/probe.py", "initlab/probe.py"):
        try:
            source = subprocess.run(["git", "show", f"{revision}:{location}"], cwd=ROOT, check=True,
                                    capture_output=True, text=True).stdout
            break
        except (subprocess.CalledProcessError, FileNotFoundError) as error:
            stderr = getattr(error, "stderr", "") or str(error)
    if source is None:
        raise SystemExit(f"error: cannot read initlab's probe.py at {revision!r}: {stderr.strip().splitlines()[-1]}")
    path = directory / "probe_ab.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("initlab._probe_ab", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("revision", help="git revision whose probe.py is the 'old' side")
    parser.add_argument("--pairs", type=int, default=300, help="interleaved pairs timed (default 300)")
    parser.add_argument("--size", type=int, default=8, help="input height and width (default 8)")
    parser.add_argument("--batch", type=int, default=2, help="batch size (default 2)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's own)")
    args = parser.parse_args()
    if args.pairs < 1 or args.size < 8 or args.batch < 1:
        parser.error("--pairs and --batch must be at least 1, --size at least 8 (the plain net pools three times)")
    if args.threads:
        torch.set_num_threads(args.threads)
    new = sys.modules["initlab.probe"]  # the package's name `probe` is the function
    with tempfile.TemporaryDirectory() as directory:
        old = load_revision(args.revision, Path(directory))
    model = plain_model(30, 16, torch.device("cpu"), size=args.size)
    x = torch.randn(args.batch, 3, args.size, args.size)
    same = torch.equal(old._probe_one(model, x, 0, None)[0], new._probe_one(model, x, 0, None)[0])
    passes = {"old": lambda: old._probe_one(model, x, 0, None)[0].cpu(),
              "new": lambda: new._probe_one(model, x, 0, None)[0].cpu()}
    for function in passes.values():
        for _ in range(5):
            function()
    times: dict[str, list[float]] = {"old": [], "new": []}
    for pair in range(args.pairs):
        for name in (("old", "new") if pair % 2 else ("new", "old")):
            start = time.perf_counter()
            passes[name]()
            times[name].append(time.perf_counter() - start)
    print(f"plain-30 width 16, input {args.batch}×3×{args.size}×{args.size}, {torch.get_num_threads()} threads, "
          f"{args.pairs} pairs; statistics equal: {same}")
    for name, label in (("old", args.revision), ("new", "working tree")):
        print(f"  {label:<14} median {statistics.median(times[name]) * 1e3:8.2f} ms")
    ratio = statistics.median(n / o for n, o in zip(times["new"], times["old"]))
    print(f"  median per-pair ratio new / old: {ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
