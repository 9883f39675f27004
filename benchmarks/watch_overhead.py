"""The cost of ``initlab.watch`` in a training loop: steps per second with the watch attached over
the same loop without it, side by side in one process, interleaved rounds, medians.

- plain-30 (width 16, 32×32 inputs, batch 64, SGD), the paper's 30-layer plain net;
- a small transformer: Hugging Face GPT-2 from a config (4 layers, 128 wide, 4 heads), sequence 64,
  batch 8, AdamW.

Two identical models are trained in turn, step by step (watched, bare, watched, …), each step timed:
the ratio of their total times is the watch's cost, and drift of the machine hits both alike. Target:
at most 2 % more time with ``every=100`` (the final ``frame()`` included); ``every=1`` is printed as
measured. Exits 1 on a miss.

    python benchmarks/watch_overhead.py [--steps 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Callable

import torch
import torch.nn.functional as F

import initlab

TARGET = 1.02


def plain_30() -> tuple[torch.nn.Module, Callable[[torch.nn.Module, int], torch.Tensor], torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = initlab.apply_init(initlab.plain_net(depth=30, width=16, input_shape=(3, 32, 32)), "kaiming")
    x = torch.randn(64, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 10, (64,), generator=torch.Generator().manual_seed(1))
    return model, lambda m, step: F.cross_entropy(m(x), y), torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)


def small_transformer():
    import transformers
    transformers.logging.set_verbosity_error()
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=1000, n_embd=128, n_layer=4, n_head=4, n_positions=64, use_cache=False)
    model = transformers.GPT2LMHeadModel(config)
    ids = torch.randint(0, 1000, (8, 64), generator=torch.Generator().manual_seed(0))
    return model, lambda m, step: m(input_ids=ids, labels=ids).loss, torch.optim.AdamW(model.parameters(), lr=1e-4)


def paired(build, steps: int, every: int) -> float:
    """Return time(watched) / time(bare) over ``steps`` training steps of two identical models trained
    step by step in turn (watched, bare, watched, …), so that drift of the machine hits both alike.
    The watched model's time includes its watched steps and the final ``frame()`` (the transfer)."""
    watched_model, watched_loss, watched_optimizer = build()
    bare_model, bare_loss, bare_optimizer = build()
    watched_model.train()
    bare_model.train()
    totals = [0.0, 0.0]
    watched = initlab.watch(watched_model, every=every)
    try:
        for step in range(steps):
            for position, (model, loss_of, optimizer) in enumerate(((watched_model, watched_loss, watched_optimizer),
                                                                    (bare_model, bare_loss, bare_optimizer))):
                start = time.perf_counter()
                loss = loss_of(model, step)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                totals[position] += time.perf_counter() - start
        start = time.perf_counter()
        watched.frame()  # the statistics reach the host: part of the watch's cost
        totals[0] += time.perf_counter() - start
    finally:
        watched.remove()
    return totals[0] / totals[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    missed = False
    for label, build in (("plain-30 (batch 64, 32×32)", plain_30), ("GPT-2 4×128 (seq 64, batch 8)", small_transformer)):
        paired(build, 3, 1)  # warm-up
        ratio_100 = statistics.median(paired(build, args.steps, 100) for _ in range(args.rounds))
        ratio_1 = statistics.median(paired(build, max(args.steps // 10, 5), 1) for _ in range(args.rounds))
        met = ratio_100 <= TARGET
        missed |= not met
        print(f"{label}: watch(every=100) ×{ratio_100:.3f} over {args.steps} steps (target ≤ {TARGET}, "
              f"{'met' if met else 'MISSED'}) · watch(every=1) ×{ratio_1:.2f} · median of {args.rounds} paired runs "
              f"(watched and bare models stepped in turn), {torch.get_num_threads()} threads", flush=True)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
