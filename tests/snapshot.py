"""Save, or compare, the outputs of a fixed corpus: the guard of a restructuring with no change in
behaviour.

    python tests/snapshot.py save before.pkl       # before the change
    python tests/snapshot.py save after.pkl        # after it
    python tests/snapshot.py compare before.pkl after.pkl   # exit 0 when every output is bit-identical

The corpus: the paper's plain nets (four activations, five inits, sequential and stacked seeds), MLPs,
the ResNet-18/VGG-11/ViT/Mixer-style networks of ``tests/architectures.py`` (own init and Kaiming),
and the Hugging Face models of ``tests/corpus.py`` as the library builds them. For each: the probe's
frame, summary, gains, sums, norms, attention and coverage; the check's document and per-layer frame;
and the CLI's JSON for a probe and a check. DataFrames are compared exactly (NaN equal to NaN), other
outputs by their JSON text.
"""

from __future__ import annotations

import contextlib
import io
import json
import pickle
import sys
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import initlab  # noqa: E402
from initlab.cli import main  # noqa: E402


def _x(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def _probe_outputs(result) -> dict:
    return {"frame": result.to_frame(), "summary": result.summary(), "gains": result.gains(), "sums": result.sums,
            "norms": result.norms, "attention": result.attention, "coverage": result.coverage.text(),
            "document": result.to_dict()}


def _check_outputs(model, example) -> dict:
    report = initlab.check(model, example)
    return {"check": report.to_dict(), "check_frame": report.to_frame(), "check_text": report.text()}


def _cli(args: list[str]) -> str:
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(io.StringIO()):
        code = main(args)
    return f"exit {code}\n{buffer.getvalue()}"


def corpus() -> dict[str, dict]:
    import architectures
    outputs: dict[str, dict] = {}
    image = _x(4, 3, 16, 16)
    for act in ("relu", "prelu", "prelu-shared", "leaky:0.1"):
        for init in ("kaiming", "xavier-fanin", "torch-default", "kaiming:mode=fan_out", "orthogonal"):
            factory = (lambda act=act: initlab.plain_net(depth=8, width=8, input_shape=(3, 16, 16), act=act,
                                                         stages=2))
            for batched in (False, True):
                result = initlab.probe(factory, image, init=init, seeds=3, batched=batched)
                outputs[f"plain/{act}/{init}/batched={batched}"] = _probe_outputs(result)
    for init in ("kaiming", "xavier"):
        for batched in (False, True):
            result = initlab.probe(lambda: initlab.mlp(depth=10, width=64, input_shape=(32,)), _x(16, 32), init=init,
                                   seeds=3, batched=batched)
            outputs[f"mlp/{init}/batched={batched}"] = _probe_outputs(result)
    networks = {
        "resnet18": lambda: architectures.resnet18(width=8), "resnet18-nonorm": lambda: architectures.resnet18(
            width=8, norm=False),
        "vgg11": lambda: architectures.vgg11(), "vgg11-bn": lambda: architectures.vgg11(batch_norm=True),
        "vit": lambda: architectures.ViT(image=32, dim=32, depth=2), "mixer": lambda: architectures.Mixer(
            image=32, dim=32, depth=2),
    }
    image = _x(2, 3, 32, 32)
    for name, factory in networks.items():
        for init in (None, "kaiming"):
            result = initlab.probe(factory, image, init=init, seeds=2)
            outputs[f"{name}/{init}"] = _probe_outputs(result)
        torch.manual_seed(0)
        outputs[f"{name}/check"] = _check_outputs(factory(), image)
    import corpus as hf
    for name in hf.HEALTHY + hf.BROKEN_AS_BUILT:
        model, example = hf.build(name)
        outputs[f"hf/{name}"] = {**_probe_outputs(initlab.probe(model, example)), **_check_outputs(model, example)}
    outputs["cli/probe"] = {"json": _cli(["probe", "--depth", "8", "--seeds", "2", "--format", "json", "--quiet"])}
    outputs["cli/check"] = {"json": _cli(["check", "plain", "--format", "json"]),
                            "text": _cli(["check", "plain", "--init", "kaiming"])}
    return outputs


def _text(value) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def differences(before: dict, after: dict) -> list[str]:
    """Return one line per output that is not bit-identical between two saved corpora."""
    found = [f"{case}: only before" for case in before.keys() - after.keys()]
    found += [f"{case}: only after" for case in after.keys() - before.keys()]
    for case in sorted(before.keys() & after.keys()):
        for key in sorted(before[case].keys() | after[case].keys()):
            old, new = before[case].get(key), after[case].get(key)
            if isinstance(old, pd.DataFrame) and isinstance(new, pd.DataFrame):
                try:
                    pd.testing.assert_frame_equal(old, new, check_exact=True)
                except AssertionError as error:
                    found.append(f"{case} {key}: {str(error).splitlines()[0]}")
            elif _text(old) != _text(new):
                found.append(f"{case} {key}: differs")
    return found


def main_(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "save":
        outputs = corpus()
        Path(argv[1]).write_bytes(pickle.dumps(outputs))
        print(f"saved {len(outputs)} cases to {argv[1]}")
        return 0
    if len(argv) == 3 and argv[0] == "compare":
        before, after = (pickle.loads(Path(path).read_bytes()) for path in argv[1:])
        found = differences(before, after)
        print("\n".join(found) if found else f"all {len(before)} cases bit-identical")
        return 1 if found else 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main_(sys.argv[1:]))
