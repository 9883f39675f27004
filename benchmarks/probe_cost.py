"""Probe overhead: one probe pass over one plain forward+backward, same model and batch, side by side.

Prints the ratio (issue 6's target is 1.05). Run: `make bench` or `python benchmarks/probe_cost.py`.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import initlab
from initlab.probe import _probe_one, resolve_device


def _bare(model: torch.nn.Module, x: torch.Tensor) -> None:
    x = x.detach().requires_grad_(True)
    output = model(x)
    torch.autograd.grad(output, [x] + list(model.parameters()), torch.randn_like(output))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(depth: int, width: int, batch: int, repeats: int, device: torch.device) -> tuple[float, float]:
    torch.manual_seed(0)
    model = initlab.plain_net(depth=depth, width=width).to(device)
    initlab.apply_init(model, "kaiming", seed=0)
    x = torch.randn(batch, 3, 32, 32, device=device)
    bare_times, probe_times = [], []
    for _ in range(2):  # warm-up
        _bare(model, x)
        _probe_one(model, x, 0, None)[0].cpu()
    for _ in range(repeats):  # interleaved, so drift hits both alike
        _sync(device)
        start = time.perf_counter()
        _bare(model, x)
        _sync(device)
        bare_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        _probe_one(model, x, 0, None)[0].cpu()
        _sync(device)
        probe_times.append(time.perf_counter() - start)
    return statistics.median(bare_times), statistics.median(probe_times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--depth", type=int, default=30)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    bare, probed = measure(args.depth, args.width, args.batch, args.repeats, device)
    print(f"device {device} · torch {torch.__version__} · threads {torch.get_num_threads()}")
    print(f"plain net depth {args.depth} width {args.width} batch {args.batch} 32×32, median of {args.repeats}")
    print(f"forward+backward {bare * 1e3:.1f} ms · probe pass (stats + host transfer) {probed * 1e3:.1f} ms · "
          f"ratio {probed / bare:.3f} (issue 6 target ≤ 1.05)")


if __name__ == "__main__":
    main()
