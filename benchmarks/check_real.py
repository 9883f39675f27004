"""Time ``initlab.check`` on real-sized models against one bare forward+backward of the same model
and batch, side by side in one process, interleaved (bare, check, bare, check, ...), medians.

- BERT-base-sized: Hugging Face ``BertModel`` from a config (hidden 768, 12 layers, 12 heads,
  intermediate 3072), random init, token ids of sequence length 128, batch 8;
- ResNet-50: torchvision's layout (``check_resnet50.resnet50``), 224×224, batch 8.

Target: each ratio ≤ 1.5. Prints one line per model and exits 1 on a miss. With
``--jacobian-projections K`` it also times a check that estimates the input–output Jacobian's
spread from K projections, in the same interleaved rounds (printed, no target: it is opt-in).

    python benchmarks/check_real.py [--rounds 3] [--only bert|resnet50] [--jacobian-projections 4]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

import initlab

sys.path.insert(0, str(Path(__file__).parent))
TARGET = 1.5


def bert_base():
    import transformers
    transformers.logging.set_verbosity_error()
    config = transformers.BertConfig(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                                     intermediate_size=3072, hidden_dropout_prob=0.0,
                                     attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    model = transformers.BertModel(config)
    ids = torch.randint(0, config.vocab_size, (8, 128), generator=torch.Generator().manual_seed(0))
    return model, {"input_ids": ids}


def resnet50():
    from check_resnet50 import resnet50 as build
    torch.manual_seed(0)
    return build(), torch.randn(8, 3, 224, 224, generator=torch.Generator().manual_seed(0))


def _outputs(value):
    if isinstance(value, torch.Tensor):
        return [value] if value.requires_grad else []
    if isinstance(value, dict):
        return [t for item in value.values() for t in _outputs(item)]
    if isinstance(value, (list, tuple)):
        return [t for item in value for t in _outputs(item)]
    return []


def bare_pass(model, example) -> None:
    output = model(**example) if isinstance(example, dict) else model(example)
    outputs = _outputs(output)
    torch.autograd.grad(outputs, [p for p in model.parameters() if p.requires_grad],
                        [torch.randn_like(t) for t in outputs], allow_unused=True)


def measure(name: str, build, rounds: int, projections: int = 0) -> float:
    model, example = build()
    model.train()
    bare_pass(model, example)  # warm-up: allocator, kernels
    initlab.check(model, example, jacobian_projections=projections)
    bare, checked, projected = [], [], []
    for _ in range(rounds):
        start = time.perf_counter()
        bare_pass(model, example)
        bare.append(time.perf_counter() - start)
        start = time.perf_counter()
        report = initlab.check(model, example)
        checked.append(time.perf_counter() - start)
        if projections:
            start = time.perf_counter()
            initlab.check(model, example, jacobian_projections=projections)
            projected.append(time.perf_counter() - start)
    ratio = statistics.median(checked) / statistics.median(bare)
    verdict = "met" if ratio <= TARGET else "MISSED"
    print(f"{name}: bare fwd+bwd {statistics.median(bare):.2f} s · check {statistics.median(checked):.2f} s · "
          f"ratio {ratio:.2f} (target ≤ {TARGET}, {verdict}) · {'HEALTHY' if report.healthy else 'UNHEALTHY'} · "
          f"{rounds} interleaved rounds, {torch.get_num_threads()} threads")
    if projections:
        print(f"  with --jacobian-projections {projections}: {statistics.median(projected):.2f} s, ratio "
              f"{statistics.median(projected) / statistics.median(bare):.2f} to the bare pass (no target)")
    return ratio


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", choices=("bert", "resnet50"))
    parser.add_argument("--jacobian-projections", type=int, default=0)
    args = parser.parse_args()
    models = {"bert": ("BERT-base (seq 128, batch 8)", bert_base), "resnet50": ("ResNet-50 (224², batch 8)", resnet50)}
    ratios = [measure(label, build, args.rounds, args.jacobian_projections) for key, (label, build) in models.items()
              if args.only in (None, key)]
    return 0 if all(r <= TARGET for r in ratios) else 1


if __name__ == "__main__":
    sys.exit(main())
