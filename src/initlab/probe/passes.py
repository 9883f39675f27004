"""One probe pass: the model's forward under capture, then one backward for every gradient.

Gradients come from a random Gaussian direction g ~ N(0, 1) at the network's output (the backward
of the scalar ⟨output, g⟩), through ``torch.autograd.grad``, so ``.grad`` fields stay untouched.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import gc
from collections import Counter
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn

from ..coverage import coverage
from ..schemes import DIRECTION_STREAM, stream_seed
from .capture import _Recorder, _Tracker
from .errors import ProbeError
from .records import _PassLayout, _layout, _recipes_of_pass
from .stacking import one_seed_shape

_PROBING = contextvars.ContextVar("initlab_probing", default=False)


@contextlib.contextmanager
def probing() -> Iterator[None]:
    """Mark the passes inside as a probe's (its statistics pass, its Jacobian projections), so that a
    watch on the same model does not count them as training steps (``watch``)."""
    token = _PROBING.set(True)
    try:
        yield
    finally:
        _PROBING.reset(token)


def probing_now() -> bool:
    """True while a probe's passes run (``probing``)."""
    return _PROBING.get()


DIRECTION = "gradients: backward of <output, g> for a random Gaussian direction g ~ N(0, 1) at the network output"


def _output_tensors(output: Any) -> list[torch.Tensor]:
    """Return the floating-point tensors in a model output (tensor, sequence, dict, dataclass)."""
    if isinstance(output, torch.Tensor):
        return [output] if output.is_floating_point() or output.is_complex() else []
    if isinstance(output, dict):
        return [t for value in output.values() for t in _output_tensors(value)]
    if isinstance(output, (list, tuple)):
        return [t for value in output for t in _output_tensors(value)]
    if dataclasses.is_dataclass(output) and not isinstance(output, type):
        return [t for f in dataclasses.fields(output) for t in _output_tensors(getattr(output, f.name))]
    return []


def _in_degrees(roots: Sequence[Any]) -> Counter:
    """Return how many edges of the autograd graph point at each node (fan-out of its tensor)."""
    counts: Counter = Counter()
    seen, stack = set(), [root for root in roots if root is not None]
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        for successor, _ in node.next_functions:
            if successor is not None:
                counts[successor] += 1
                stack.append(successor)
    return counts




ModelInput = Any  # a tensor, a tuple/list of tensors (positional) or a dict of tensors (keywords)


def _map_tensors(value: Any, function: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    if isinstance(value, torch.Tensor):
        return function(value)
    if isinstance(value, dict):
        return {key: _map_tensors(item, function) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_map_tensors(item, function) for item in value)
    return value


def _input_tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        return [t for item in value.values() for t in _input_tensors(item)]
    if isinstance(value, (list, tuple)):
        return [t for item in value for t in _input_tensors(item)]
    return []


def _call_model(model: nn.Module, inputs: ModelInput) -> Any:
    if isinstance(inputs, dict):
        return model(**inputs)
    if isinstance(inputs, (list, tuple)):
        return model(*inputs)
    return model(inputs)


def _detached_input(value: torch.Tensor) -> torch.Tensor:
    copy_ = value.detach().clone()
    return copy_.requires_grad_(True) if copy_.is_floating_point() or copy_.is_complex() else copy_


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for the block, as ``timeit`` does around its
    timings, and resume it after where it was on. A pass makes thousands of small containers
    (records, recipes, hook closures); with the collector on, each 700 of them (its default
    threshold) start a collection while they are alive, and those that survive two are promoted
    until a full collection of the whole process's objects falls due. A pass leaves no reference
    cycle (a test), so what it drops is freed as it goes and the pause keeps nothing alive.
    Measured on this project's 2-core CPU, plain-30 width 16 at 2×3×8², 40 passes: collections
    148/13/1 (young, middle, full) and 3.4 ms of collector time a pass before, 37/3/0 and 0.16 ms
    after; the mean probe time over 400 passes in separate processes 17.1–17.8 against 15.2–15.7 ms."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _run_pass(model: nn.Module, example_input: ModelInput, seed: int, stacked_seeds: Sequence[int] = (),
              references: dict[nn.Module, nn.Module] | None = None,
              elementwise_variances: bool = False) -> tuple[torch.Tensor, _PassLayout, list[nn.Module]]:
    """``_recorded_pass`` with the garbage collector paused (``_collector_paused``)."""
    with _collector_paused():
        return _recorded_pass(model, example_input, seed, stacked_seeds, references, elementwise_variances)


def _recorded_pass(model: nn.Module, example_input: ModelInput, seed: int, stacked_seeds: Sequence[int] = (),
                   references: dict[nn.Module, nn.Module] | None = None,
                   elementwise_variances: bool = False) -> tuple[torch.Tensor, _PassLayout, list[nn.Module]]:
    """One forward+backward with statistics. ``stacked_seeds``: the model is ``len(stacked_seeds)``
    seeds stacked along dim 1 (``stacking``); each gets its own output direction, and the flat
    statistics come back as one row per seed. ``elementwise_variances``: ``capture._Recorder``'s."""
    stacked = max(1, len(stacked_seeds))
    recorder = _Recorder(model, stacked, references, elementwise_variances)
    calls = recorder.calls
    try:
        inputs = _map_tensors(example_input, _detached_input)
        input_tensors = [t for t in _input_tensors(inputs) if t.requires_grad]
        recorder.input_storages = {t.untyped_storage().data_ptr() for t in input_tensors}
        with torch.enable_grad():
            try:
                with _Tracker(recorder):
                    output = _call_model(model, inputs)
            except ProbeError:
                raise
            except Exception as error:  # the model's own forward failed: a wrong shape, an id out of range
                raise ProbeError(_shape_message(error, recorder, inputs)) from error
        if not calls:
            raise ProbeError("the model has no Conv1d/2d/3d or Linear layer on its forward path: nothing to probe")
        outputs = [t for t in _output_tensors(output) if t.requires_grad]
        if not outputs:
            raise ProbeError("the model's output does not require grad; no gradient can be probed")
        in_degree = _in_degrees([t.grad_fn for t in outputs])
        recorder.end_forward(in_degree)
        # drawn on the CPU in float32: the same direction for a seed on every device and dtype
        if stacked > 1:  # each seed's direction, drawn as the sequential probe draws it, side by side
            directions = [torch.cat([torch.randn(one_seed_shape(t.shape, stacked), generator=torch.Generator().manual_seed(
                stream_seed(s, DIRECTION_STREAM))) for s in stacked_seeds], dim=1).to(device=t.device, dtype=t.dtype)
                for t in outputs]
        else:
            generator = torch.Generator().manual_seed(stream_seed(seed, DIRECTION_STREAM))
            directions = [torch.randn(t.shape, generator=generator).to(device=t.device, dtype=t.dtype) for t in outputs]
        weights = list(dict.fromkeys(c.weight for c in calls if c.weight.requires_grad))
        sources = input_tensors + recorder.grad_sources + weights
        recorder.grad_sources = []
        grads = torch.autograd.grad(outputs, sources, directions, allow_unused=True)
        weight_grads = dict(zip(map(id, weights), grads[len(sources) - len(weights):]))
        del grads, sources
        recipes = _recipes_of_pass(calls, recorder.sums, recorder.dead, recorder.norms, weight_grads, recorder.raw,
                                   stacked, recorder.attention)
        return recorder.raw.flat(), finished_layout(recorder, in_degree, recipes), [c.reference for c in calls]
    finally:
        recorder.remove()


def finished_layout(recorder: _Recorder, in_degree: Counter, recipes: Any) -> _PassLayout:
    """Return the layout of a recorded pass whose recipes are taken (``records._recipes_of_pass``):
    what ``records._unpack`` needs to read its flat statistics, no tensor held."""
    layout = _layout(recorder.calls, recorder.sums, recorder.dead, in_degree)
    layout.recipes = recipes
    layout.attention_names = [a.name for a in recorder.attention]
    layout.attention_keys = [a.keys for a in recorder.attention]
    layout.size = recorder.raw.size
    layout.norm_names = [n.name for n in recorder.norms]
    layout.norm_eps = [n.eps for n in recorder.norms]
    layout.coverage = coverage(recorder.parameter_names, recorder.covered_weights, recorder.embedded)
    return layout


def _expected_input(module: nn.Module) -> str:
    if hasattr(module, "kernel_size") and hasattr(module, "in_channels"):
        spatial = ", ".join("H W D".split()[:len(module.kernel_size)])
        return f"(N, {module.in_channels}, {spatial})"
    if hasattr(module, "in_features"):
        return f"(..., {module.in_features})"
    return "of another shape"


def _shape_message(error: Exception, recorder: _Recorder, inputs: ModelInput) -> str:
    """One line: which layer failed, the input shape it expects and the one it got."""
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    shapes = [tuple(t.shape) for t in _input_tensors(inputs)]
    given = shapes[0] if len(shapes) == 1 else shapes
    if recorder.entered is not None:
        module, shape = recorder.entered
        name = recorder.names.get(module) or type(module).__name__
        return (f"layer {name!r} ({type(module).__name__}) expects input {_expected_input(module)} but got "
                f"{shape} (model input {given}): {first_line}")
    after = f" after layer {recorder.calls[-1].name!r}" if recorder.calls else ""
    return f"the model's forward failed on an input of shape {given}{after}: {first_line}"


