"""A/B of the probe's own cost against an earlier revision of the package, in one process.

    python benchmarks/ab_probe.py HEAD~1                   # 300 interleaved pairs, plain-30, 2×3×8×8 input
    python benchmarks/ab_probe.py HEAD~5 --pairs 80 --size 32 --batch 64
    python benchmarks/ab_probe.py HEAD --pairs 300         # an A/A control: the same code twice
    python benchmarks/ab_probe.py HEAD~3 --model transformer --size 64 --batch 8 --pairs 60
    python benchmarks/ab_probe.py HEAD~1 --model mlp --size 512 --batch 256 --pairs 60

Separate runs of ``run.py --only host`` cannot show a change of a few milliseconds: on this
project's 2-core machine the bare pass alone moves by ~6 ms between processes. Here the whole
package at the revision (``git archive REV src/initlab``, or ``initlab`` before the ``src/``
layout) is imported as ``initlab_ab`` beside the working tree's ``initlab``, and the two probe the
same model in alternating order, so that drift hits both alike, each round also timing a bare
forward+backward. Prints the median probe time of each and its ratio to the bare pass, the median
of the per-pair ratios (new / old), and whether the two return the same statistics
(``torch.equal``). ``--model``: plain-30 (default), ResNet-50, ``run.py``'s small transformer or a depth-10 MLP
(``--size``: its width).
"""

from __future__ import annotations

import argparse
import importlib
import io
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "benchmarks")]

from run import _bare_pass, _small_transformer, plain_model  # noqa: E402


def _one_pass(package: str):
    """The revision's one-seed probe pass, ``_probe_one(model, x, seed, scheme)``, wherever it lives."""
    for module in (f"{package}.probe.seeds", f"{package}.probe"):
        if module in sys.modules and hasattr(sys.modules[module], "_probe_one"):
            return sys.modules[module]._probe_one
    raise SystemExit(f"error: no _probe_one in {package}.probe")


def load_revision(revision: str, directory: Path):
    """The package at ``revision``, imported as ``initlab_ab``; return its one-seed probe pass."""
    archive = None
    for location in ("src/initlab", "initlab"):
        try:
            archive = subprocess.run(["git", "archive", revision, location], cwd=ROOT, check=True,
                                     capture_output=True).stdout
            break
        except (subprocess.CalledProcessError, FileNotFoundError) as error:
            stderr = (getattr(error, "stderr", b"") or b"").decode() or str(error)
    if archive is None:
        raise SystemExit(f"error: cannot read initlab's probe.py at {revision!r}: {stderr.strip().splitlines()[-1]}")
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(directory, filter="data")
    source = directory / location
    target = directory / "initlab_ab"
    source.rename(target)
    sys.path.insert(0, str(directory))
    importlib.import_module("initlab_ab")
    importlib.import_module("initlab_ab.probe")
    importlib.import_module("initlab_ab.cli")  # an eager old package imports everything; a lazy one, now
    try:
        importlib.import_module("initlab_ab.probe.seeds")
    except ImportError:
        pass
    return _one_pass("initlab_ab")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("revision", help="git revision whose probe.py is the 'old' side")
    parser.add_argument("--pairs", type=int, default=300, help="interleaved pairs timed (default 300)")
    parser.add_argument("--size", type=int, default=8, help="input height and width (default 8)")
    parser.add_argument("--batch", type=int, default=2, help="batch size (default 2)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's own)")
    parser.add_argument("--model", default="plain", choices=("plain", "resnet50", "transformer", "mlp"),
                        help="plain-30 width 16 (default); ResNet-50 (--size: image side); run.py's small transformer "
                             "(--size: sequence length); a depth-10 MLP (--size: its width)")
    args = parser.parse_args()
    if args.pairs < 1 or args.size < 8 or args.batch < 1:
        parser.error("--pairs and --batch must be at least 1, --size at least 8 (the plain net pools three times)")
    if args.threads:
        torch.set_num_threads(args.threads)
    import initlab.probe.seeds  # noqa: F401
    new = _one_pass("initlab")
    with tempfile.TemporaryDirectory() as directory:
        old = load_revision(args.revision, Path(directory))
    torch.manual_seed(0)
    if args.model == "plain":
        model, x, label = plain_model(30, 16, torch.device("cpu"), size=args.size), \
            torch.randn(args.batch, 3, args.size, args.size), "plain-30 width 16"
    elif args.model == "resnet50":
        from check_resnet50 import resnet50
        model, x, label = resnet50(), torch.randn(args.batch, 3, args.size, args.size), "ResNet-50"
    elif args.model == "mlp":
        from initlab.models import mlp
        model, x, label = mlp(depth=10, width=args.size), torch.randn(args.batch, args.size), \
            f"MLP depth 10 width {args.size}"
    else:
        model, x, label = _small_transformer(torch.device("cpu")), torch.randn(args.batch, args.size, 128), \
            "transformer 4×128"
    same = torch.equal(old(model, x, 0, None)[0], new(model, x, 0, None)[0])
    passes = {"old": lambda: old(model, x, 0, None)[0].cpu(), "new": lambda: new(model, x, 0, None)[0].cpu(),
              "bare": lambda: _bare_pass(model, x)}
    for function in passes.values():
        for _ in range(5):
            function()
    times: dict[str, list[float]] = {"old": [], "new": [], "bare": []}
    for pair in range(args.pairs):
        for name in (("old", "new", "bare") if pair % 2 else ("new", "old", "bare")):
            start = time.perf_counter()
            passes[name]()
            times[name].append(time.perf_counter() - start)
    print(f"{label}, input {'×'.join(map(str, x.shape))}, {torch.get_num_threads()} threads, "
          f"{args.pairs} pairs; statistics equal: {same}")
    bare = statistics.median(times["bare"])
    for name, side in (("old", args.revision), ("new", "working tree")):
        print(f"  {side:<14} median {statistics.median(times[name]) * 1e3:8.2f} ms  "
              f"({statistics.median(times[name]) / bare:.3f}× a bare forward+backward, {bare * 1e3:.2f} ms)")
    ratio = statistics.median(n / o for n, o in zip(times["new"], times["old"]))
    print(f"  median per-pair ratio new / old: {ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
