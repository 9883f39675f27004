"""Would ``torch.compile`` pay for the probe's statistics? Eager reductions against one compiled graph.

    python benchmarks/compiled_reductions.py                  # CUDA when present, else the CPU
    python benchmarks/compiled_reductions.py --device cpu --tensors 24

The statistics of a conv layer's input (the probe reads them from each tensor it records): the
(channel, position) map of Σx² over the batch, from which the position map and the per-channel
Σx² follow, and the per-channel Σx. Eager, as ``probe.reductions`` takes them on a CPU (one
square into a reused buffer, its sum over the batch, the two small sums, one sum per channel);
compiled, the same expressions in one ``torch.compile`` graph, which Inductor may fuse into fewer
passes over the tensor. Times are medians over ``--tensors`` distinct tensors of 64×16×32×32 (more
than the last-level cache holds, so that each is read from memory as in a probe), cycled
``--rounds`` times; the first compiled call's time (the compilation) is printed apart. Prints the
largest relative difference between the two: a compiled path is kept only if it pays and its
numbers are the eager path's.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from initlab.probe import resolve_device  # noqa: E402
from run import _sync  # noqa: E402


def conv_input_statistics(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(position map of Σx², per-channel Σx², per-channel Σx, (channel, position) map of Σx²) of an (N, C, H, W) tensor."""
    by_channel = (x * x).sum(0)
    return by_channel.sum(0), by_channel.sum((1, 2)), x.sum((0, 2, 3)), by_channel


def _median_time(function, tensors: list[torch.Tensor], rounds: int, device: torch.device) -> float:
    times = []
    for _ in range(rounds):
        for tensor in tensors:
            _sync(device)
            start = time.perf_counter()
            function(tensor)
            _sync(device)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda")
    parser.add_argument("--tensors", type=int, default=24, help="distinct input tensors cycled (default 24)")
    parser.add_argument("--rounds", type=int, default=5, help="passes over them (default 5)")
    args = parser.parse_args()
    try:
        device = resolve_device(args.device)
    except ValueError as error:
        parser.error(str(error))
    shape = (64, 16, 32, 32)
    generator = torch.Generator().manual_seed(0)
    tensors = [torch.randn(shape, generator=generator).to(device) for _ in range(args.tensors)]
    compiled = torch.compile(conv_input_statistics, dynamic=False)
    start = time.perf_counter()
    try:
        compiled_values = compiled(tensors[0])
        _sync(device)
    except Exception as error:  # no C++ compiler, no Triton: the compiled path is not available here
        print(f"torch.compile failed on {device}: {type(error).__name__}: {str(error).splitlines()[0]}")
        return 1
    compile_seconds = time.perf_counter() - start
    eager_values = conv_input_statistics(tensors[0])
    difference = max(float(((a - b).abs().max() / b.abs().max()).item()) for a, b in zip(compiled_values, eager_values))
    eager = _median_time(conv_input_statistics, tensors, args.rounds, device)
    fused = _median_time(compiled, tensors, args.rounds, device)
    read = _median_time(lambda t: t.sum(), tensors, args.rounds, device)
    print(f"{time.strftime('%Y-%m-%d')} · {device} · torch {torch.__version__} · {torch.get_num_threads()} threads · "
          f"{args.tensors} tensors of {'×'.join(map(str, shape))}")
    print(f"first compiled call (compilation): {compile_seconds:.1f} s")
    print(f"eager statistics     {eager * 1e3:7.3f} ms")
    print(f"compiled statistics  {fused * 1e3:7.3f} ms   ({fused / eager:.2f}× eager)")
    print(f"one read (x.sum())   {read * 1e3:7.3f} ms   ({read / eager:.2f}× eager): the limit of a fused pass")
    print(f"largest relative difference, compiled against eager: {difference:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
