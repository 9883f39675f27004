"""Probe a network: one forward and backward pass, per-layer statistics kept on the device.

For every call of a Conv/Linear layer the probe records, in float32 on the model's device:
the input second moment E[x²] (and its per-position map for convs), the output's variance and
second moment, the gradient's variance and second moment at the layer's output (Δy, with its
per-position map) and input (Δx), and the variance of the weight gradient. Gradients come
from a random Gaussian direction g ~ N(0, 1) at the network's output: the backward pass of the
scalar ⟨output, g⟩. Statistics move to the host once per probe, in a single transfer for all seeds.

Capture uses forward hooks plus tensor hooks (no full backward hooks), so in-place ReLUs are
safe: a tensor hook registered before an in-place op sees the gradient of the value before it.
The user's model is left as found: parameters are never written (gradients come from
``torch.autograd.grad``, so ``.grad`` fields stay untouched), buffers are restored, the RNG state
is forked, and every hook is removed, also when the forward raises.
"""

from __future__ import annotations

import copy
import dataclasses
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from .activations import is_rectifier, variance_factor
from .compare import build_frame, layer_summary, network_summary, to_json_dict
from .layers import LayerGeometry, geometry, is_covered
from .schemes import DIRECTION_STREAM, Scheme, adjacent_slopes, apply_init, network_slope, parse_scheme, stream_seed

DIRECTION = "gradients: backward of <output, g> for a random Gaussian direction g ~ N(0, 1) at the network output"

_SCALARS = ("input_second_moment", "output_variance", "output_second_moment", "grad_output_variance",
            "grad_output_second_moment", "grad_input_variance", "grad_input_second_moment")


class ProbeError(ValueError):
    """The model and input cannot be probed (no covered layers, shape mismatch, no gradient)."""


def resolve_device(spec: str | torch.device | None) -> torch.device | None:
    """Return the torch device for ``auto``/``cpu``/``cuda[:N]``; ``auto`` prefers CUDA."""
    if spec is None or isinstance(spec, torch.device):
        return spec
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise ProbeError(f"unknown device {spec!r}; valid: auto, cpu, cuda, cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ProbeError("--device cuda was asked for but no CUDA GPU is available (use --device auto or cpu)")
    return device


# -- capture ---------------------------------------------------------------------------------


def _moments(tensor: torch.Tensor, spatial_dims: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return (variance, second moment, per-position second-moment map) of a tensor, in float32.

    E[x²] per position (averaged over batch and channels) and the overall mean are two plain
    reductions, several times faster on a CPU than ``torch.var_mean`` over the same dims; the
    variance over all elements follows as E[x²] − E[x]².
    """
    data = tensor.detach()
    if data.dtype != torch.float32 and data.dtype != torch.float64:
        data = data.float()
    reduce = tuple(range(data.dim() - spatial_dims)) if spatial_dims else tuple(range(data.dim()))
    second_map = data.square().mean(dim=reduce)
    second = second_map.mean()
    mean = data.mean()
    return second - mean.square(), second, second_map


def _same_memory(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a is b or (a.numel() == b.numel() and a.dtype == b.dtype and a.device == b.device
                      and a.data_ptr() == b.data_ptr())


@dataclass
class _Frontier:
    """The latest covered layer's output as it flows through closed-form link modules."""

    origin: int
    tensor: torch.Tensor
    version: int
    factors: list = field(default_factory=list)  # floats or 0-d device tensors
    kinds: list = field(default_factory=list)
    nodes: list = field(default_factory=list)  # autograd nodes along the path, for fan-out checks
    pending: bool = False

    def matches(self, tensor: torch.Tensor) -> bool:
        return _same_memory(tensor, self.tensor) and tensor._version == self.version


_LINK_TYPES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.Identity, nn.Flatten, nn.Unflatten)


def _is_link(module: nn.Module) -> bool:
    """True for modules a closed-form link may pass through (rectifiers, dropout, views)."""
    return is_rectifier(module) or isinstance(module, _LINK_TYPES)


def _link_factor(module: nn.Module) -> tuple[str, Any] | None:
    """Return (kind, second-moment factor) of a closed-form link module, None for any other."""
    if is_rectifier(module):
        return "rectifier", variance_factor(module)
    if isinstance(module, (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)):
        if not module.training or module.p == 0:
            return "view", 1.0
        return ("dropout", 1.0 / (1.0 - module.p)) if module.p < 1 else None
    if isinstance(module, (nn.Identity, nn.Flatten, nn.Unflatten)):
        return "view", 1.0
    return None


@dataclass
class _Call:
    index: int
    name: str
    module: nn.Module
    geometry: LayerGeometry
    spatial_dims: int
    link: _Frontier | None
    prefix_factors: list  # closed-form factors of the previous layer's output before the chain broke
    prefix_kinds: list
    stats: dict = field(default_factory=dict)
    input_map: torch.Tensor | None = None
    grad_output_map: torch.Tensor | None = None


class _Recorder:
    def __init__(self, model: nn.Module):
        self.calls: list[_Call] = []
        self.frontier: _Frontier | None = None
        self.names = {module: name for name, module in model.named_modules()}
        self.seen: Counter = Counter()
        self.handles: list = []
        self.tensor_handles: list = []
        self.entered: tuple[nn.Module, tuple[int, ...]] | None = None  # a covered layer that has not returned
        for module in model.modules():
            if is_covered(module):
                self.handles.append(module.register_forward_pre_hook(self._on_layer_input))
                self.handles.append(module.register_forward_hook(self._on_layer))
            elif _is_link(module):
                self.handles.append(module.register_forward_pre_hook(self._on_link_input))
                self.handles.append(module.register_forward_hook(self._on_link_output))

    def remove(self) -> None:
        for handle in self.handles + self.tensor_handles:
            handle.remove()
        self.handles.clear()
        self.tensor_handles.clear()
        self.frontier = None

    def _on_link_input(self, module: nn.Module, args: tuple) -> None:
        frontier = self.frontier
        if frontier is not None:
            frontier.pending = bool(args) and isinstance(args[0], torch.Tensor) and frontier.matches(args[0])

    def _on_link_output(self, module: nn.Module, args: tuple, output: Any) -> None:
        frontier = self.frontier
        if frontier is None or not frontier.pending:
            return
        frontier.pending = False
        link = _link_factor(module)
        if link is None or not isinstance(output, torch.Tensor):
            return  # e.g. dropout with p = 1: the chain breaks here and the next layer re-anchors
        kind, factor = link
        frontier.tensor, frontier.version = output, output._version
        frontier.factors.append(factor)
        frontier.kinds.append(kind)
        frontier.nodes.append(output.grad_fn)

    def _on_layer_input(self, module: nn.Module, args: tuple) -> None:
        self.entered = (module, tuple(args[0].shape)) if args and isinstance(args[0], torch.Tensor) else None

    def _on_layer(self, module: nn.Module, args: tuple, output: Any) -> None:
        self.entered = None
        x = args[0]
        y = output
        index = len(self.calls)
        name = self.names.get(module, type(module).__name__) or type(module).__name__
        self.seen[module] += 1
        if self.seen[module] > 1:
            name = f"{name}#{self.seen[module]}"
        layer_geometry = geometry(module, tuple(x.shape), tuple(y.shape))
        spatial_dims = len(layer_geometry.kernel_size) if layer_geometry.kind == "conv" else 0
        link = None
        if self.frontier is not None and self.frontier.matches(x):
            link = self.frontier
            if x.grad_fn is not None and (not link.nodes or link.nodes[-1] is not x.grad_fn):
                link.nodes.append(x.grad_fn)
        prefix = list(self.frontier.factors) if self.frontier is not None else []
        prefix_kinds = list(self.frontier.kinds) if self.frontier is not None else []
        call = _Call(index, name, module, layer_geometry, spatial_dims, link, prefix, prefix_kinds)
        _, call.stats["input_second_moment"], call.input_map = _moments(x, spatial_dims)
        call.stats["output_variance"], call.stats["output_second_moment"], _ = _moments(y, spatial_dims)
        if y.requires_grad:
            self.tensor_handles.append(y.register_hook(lambda grad, c=call: self._on_grad_output(c, grad)))
        if x.requires_grad:
            self.tensor_handles.append(x.register_hook(lambda grad, c=call: self._on_grad_input(c, grad)))
        self.calls.append(call)
        self.frontier = _Frontier(index, y, y._version, nodes=[y.grad_fn])

    @staticmethod
    def _on_grad_output(call: _Call, grad: torch.Tensor) -> None:
        call.stats["grad_output_variance"], call.stats["grad_output_second_moment"], call.grad_output_map = \
            _moments(grad, call.spatial_dims)

    @staticmethod
    def _on_grad_input(call: _Call, grad: torch.Tensor) -> None:
        call.stats["grad_input_variance"], call.stats["grad_input_second_moment"], _ = _moments(grad, 0)


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


@dataclass
class PassRecord:
    """Host-side measurements of one probe pass (one seed), after the single transfer."""

    seed: int
    names: list[str]
    kinds: list[str]
    geometries: list[LayerGeometry]
    stats: dict[str, np.ndarray]  # per-call arrays, keys _SCALARS + weight/bias/grad stats
    input_maps: list[Any]
    grad_output_maps: list[Any]
    forward_links: list[float | None]  # closed-form factor of the link into each call
    backward_links: list[float | None]  # closed-form factor from the next call back to this one
    link_kinds: list[str]
    prefix_factors: list[float]  # closed-form part of each incoming link (all of it where forward_links has it)
    prefix_kinds: list[str]  # the closed-form modules in that part, e.g. "rectifier"
    nominal_weight_variance: np.ndarray | None = None  # the scheme's Var[w] per call; None: no scheme
    nominal_bias_second_moment: np.ndarray | None = None


def _run_pass(model: nn.Module, example_input: torch.Tensor,
              seed: int) -> tuple[torch.Tensor, _PassLayout, list[nn.Module]]:
    recorder = _Recorder(model)
    calls = recorder.calls
    try:
        x = example_input.detach().clone()
        if x.is_floating_point():
            x.requires_grad_(True)
        with torch.enable_grad():
            try:
                output = model(x)
            except RuntimeError as error:
                raise ProbeError(_shape_message(error, recorder, x)) from error
        if not calls:
            raise ProbeError("the model has no Conv1d/2d/3d or Linear layer on its forward path: nothing to probe")
        outputs = [t for t in _output_tensors(output) if t.requires_grad]
        if not outputs:
            raise ProbeError("the model's output does not require grad; no gradient can be probed")
        in_degree = _in_degrees([t.grad_fn for t in outputs])
        # drawn on the CPU in float32: the same direction for a seed on every device and dtype
        generator = torch.Generator().manual_seed(stream_seed(seed, DIRECTION_STREAM))
        directions = [torch.randn(t.shape, generator=generator).to(device=t.device, dtype=t.dtype) for t in outputs]
        weights = list(dict.fromkeys(c.module.weight for c in calls if c.module.weight.requires_grad))
        sources = ([x] if x.requires_grad else []) + weights
        grads = torch.autograd.grad(outputs, sources, directions, allow_unused=True)
        weight_grads = dict(zip(map(id, weights), grads[len(sources) - len(weights):]))
        return _stack(calls, weight_grads), _layout(calls, in_degree, seed), [c.module for c in calls]
    finally:
        recorder.remove()


def _expected_input(module: nn.Module) -> str:
    if isinstance(module, nn.Linear):
        return f"(..., {module.in_features})"
    spatial = ", ".join("H W D".split()[:len(module.kernel_size)])
    return f"(N, {module.in_channels}, {spatial})"


def _shape_message(error: RuntimeError, recorder: _Recorder, x: torch.Tensor) -> str:
    """One line: which layer failed, the input shape it expects and the one it got."""
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if recorder.entered is not None:
        module, shape = recorder.entered
        name = recorder.names.get(module) or type(module).__name__
        return (f"layer {name!r} ({type(module).__name__}) expects input {_expected_input(module)} but got "
                f"{shape} (model input {tuple(x.shape)}): {first_line}")
    after = f" after layer {recorder.calls[-1].name!r}" if recorder.calls else ""
    return f"the model's forward failed on an input of shape {tuple(x.shape)}{after}: {first_line}"


def _stack(calls: list[_Call], weight_grads: dict) -> torch.Tensor:
    """Return every statistic of one pass as one flat float32 tensor on the model's device.

    Layout, per call: the scalars (``_STAT_NAMES``), then the call's closed-form link factors;
    after all calls, each call's input map and gradient-at-output map. ``_unpack`` reads it back.
    """
    device = calls[0].module.weight.device
    nan = torch.tensor(float("nan"), device=device)
    rows, maps = [], []
    for call in calls:
        weight = call.module.weight.detach()
        bias = call.module.bias
        values = [call.stats.get(name, nan) for name in _SCALARS]
        values.append(weight.float().square().mean())
        values.append(bias.detach().float().square().mean() if bias is not None else torch.zeros((), device=device))
        grad = weight_grads.get(id(call.module.weight))
        values.append(grad.float().var(correction=0) if grad is not None else nan)
        values += call.prefix_factors
        rows.append(torch.stack([torch.as_tensor(v).to(device=device, dtype=torch.float32).reshape(())
                                 for v in values]))
        maps.append(call.input_map)
        maps.append(call.grad_output_map if call.grad_output_map is not None
                    else torch.full(call.geometry.out_spatial, float("nan"), device=device))
    return torch.cat(rows + [m.reshape(-1).float() for m in maps])


_STAT_NAMES = list(_SCALARS) + ["weight_second_moment", "bias_second_moment", "weight_grad_variance"]


@dataclass
class _PassLayout:
    """What is needed to unpack a pass's flat statistics, with no tensors held."""

    seed: int
    names: list[str]
    geometries: list[LayerGeometry]
    factor_slots: list[int]
    closed_forward: list[bool]  # the link into call l is closed-form
    closed_backward: list[bool]  # the link from call l+1 back to call l is closed-form
    link_kinds: list[str]
    prefix_kinds: list[str]
    nominal_weight_variance: np.ndarray | None = None
    nominal_bias_second_moment: np.ndarray | None = None

    @property
    def size(self) -> int:
        maps = sum(int(np.prod(g.in_spatial)) + int(np.prod(g.out_spatial)) for g in self.geometries)
        return len(self.names) * len(_STAT_NAMES) + sum(self.factor_slots) + maps


def _layout(calls: list[_Call], in_degree: Counter, seed: int) -> _PassLayout:
    closed_forward = [c.link is not None and c.link.origin == c.index - 1 for c in calls]
    # A closed-form link carries gradients back only if nothing else consumed the tensors on it.
    closed_backward = [closed_forward[i + 1] and all(in_degree.get(node, 0) == 1 for node in calls[i + 1].link.nodes
                                                     if node is not None)
                       for i in range(len(calls) - 1)] + [False]
    link_kinds = ["input" if i == 0 else ("measured" if not closed_forward[i] else
                  ("+".join(calls[i].link.kinds) or "direct")) for i in range(len(calls))]
    return _PassLayout(seed, [c.name for c in calls], [c.geometry for c in calls],
                       [len(c.prefix_factors) for c in calls], closed_forward, closed_backward, link_kinds,
                       ["+".join(c.prefix_kinds) for c in calls])


def _unpack(flat: np.ndarray, layout: _PassLayout) -> PassRecord:
    """Return the ``PassRecord`` of one pass from its slice of the host copy of the statistics."""
    count = len(layout.names)
    stats = {name: np.empty(count) for name in _STAT_NAMES}
    offset = 0
    prefix_factors: list[float] = []
    for position in range(count):
        for name in _STAT_NAMES:
            stats[name][position] = flat[offset]
            offset += 1
        slots = layout.factor_slots[position]
        prefix_factors.append(float(np.prod(flat[offset:offset + slots])))
        offset += slots
    input_maps, grad_output_maps = [], []
    for geometry_of_call in layout.geometries:
        for target, shape in ((input_maps, geometry_of_call.in_spatial), (grad_output_maps, geometry_of_call.out_spatial)):
            size = int(np.prod(shape)) if shape else 1
            block = flat[offset:offset + size]
            target.append(block.reshape(shape) if shape else float(block[0]))
            offset += size
    forward_links = [f if closed else None for f, closed in zip(prefix_factors, layout.closed_forward)]
    backward_links = [prefix_factors[i + 1] if layout.closed_backward[i] else None for i in range(count - 1)] + [None]
    return PassRecord(layout.seed, layout.names, [g.kind for g in layout.geometries], layout.geometries, stats,
                      input_maps, grad_output_maps, forward_links, backward_links, layout.link_kinds, prefix_factors,
                      layout.prefix_kinds, layout.nominal_weight_variance, layout.nominal_bias_second_moment)


# -- the public probe --------------------------------------------------------------------------


def _nominal(record: _PassLayout, modules: list[nn.Module], model: nn.Module, scheme: Scheme) -> None:
    """Fill the scheme's nominal Var[w] and E[b²] for every call, slopes as ``apply_init`` chose them."""
    slopes = adjacent_slopes(model)
    record.nominal_weight_variance = np.array([
        scheme.weight_variance(tuple(m.weight.shape), g.fan_in, g.fan_out, network_slope(scheme, *slopes[m]))
        for m, g in zip(modules, record.geometries)])
    record.nominal_bias_second_moment = np.array([
        scheme.bias_variance(g.fan_in, m.bias is not None) for m, g in zip(modules, record.geometries)])


def _probe_one(model: nn.Module, example_input: torch.Tensor, seed: int,
               scheme: Scheme | None) -> tuple[torch.Tensor, _PassLayout]:
    """Probe one model once; return its statistics (still on the device) and their layout."""
    buffers = {name: buffer.detach().clone() for name, buffer in model.named_buffers()}
    try:
        flat, layout, modules_by_call = _run_pass(model, example_input.to(_model_device(model)), seed)
    finally:
        with torch.no_grad():
            for name, buffer in model.named_buffers():
                if name in buffers:
                    buffer.copy_(buffers[name])
    if scheme is not None:
        _nominal(layout, modules_by_call, model, scheme)
    return flat, layout


def _model_device(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def probe(model: nn.Module | Callable[[], nn.Module], example_input: torch.Tensor, *,
          init: str | Scheme | None = None, seeds: int | Sequence[int] = 1,
          device: str | torch.device | None = None, config: dict | None = None,
          progress: Callable[[int, int], None] | None = None) -> "ProbeResult":
    """Return per-layer activation and gradient statistics of ``model`` on ``example_input``.

    ``model`` is an ``nn.Module`` or a zero-argument factory. With no other argument the module
    is probed as it is, its own weights, one pass. ``init`` (a scheme spec such as ``"kaiming"``)
    re-initializes a copy per seed with ``apply_init(copy, init, seed=s)``; a factory is called
    once per seed after ``torch.manual_seed(s)``. ``seeds`` is a count (0..N−1) or a list; the
    seed also draws the output direction. ``device``: ``"auto"``, ``"cpu"``, ``"cuda"``; by default
    the model's own. The user's module, its buffers and the global RNG state are left as found.
    ``progress(done, total)`` is called after each seed. ``config`` entries are added to the
    result's configuration.
    """
    scheme = parse_scheme(init) if init is not None else None
    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not seed_list:
        raise ProbeError(f"seeds must be at least 1, got {seeds!r}")
    if not isinstance(example_input, torch.Tensor):
        raise ProbeError(f"example_input must be a tensor, got {type(example_input).__name__}")
    target = resolve_device(device)
    is_factory = not isinstance(model, nn.Module)
    if is_factory and not callable(model):
        raise ProbeError(f"model must be an nn.Module or a factory returning one, got {type(model).__name__}")
    cuda_devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    passes: list[tuple[torch.Tensor, _PassLayout]] = []
    with torch.random.fork_rng(devices=cuda_devices):
        for seed in seed_list:
            if is_factory:
                torch.manual_seed(seed)
                instance = model()
                if not isinstance(instance, nn.Module):
                    raise ProbeError(f"the model factory returned {type(instance).__name__}, not an nn.Module")
                if target is not None:
                    instance = instance.to(target)
            elif scheme is None and (target is None or target == _model_device(model)):
                instance = model  # probed in place: nothing is written but buffers, which are restored
            else:
                instance = copy.deepcopy(model)
                if target is not None:
                    instance = instance.to(target)
            if scheme is not None:
                apply_init(instance, scheme, seed=seed)
            passes.append(_probe_one(instance, example_input, seed, scheme))
            if progress is not None:
                progress(len(passes), len(seed_list))
    # every seed's statistics cross to the host in one transfer
    host = torch.cat([flat.to(passes[0][0].device) for flat, _ in passes]).cpu().double().numpy()
    records, offset = [], 0
    for _, layout in passes:
        records.append(_unpack(host[offset:offset + layout.size], layout))
        offset += layout.size
    device_used = str(target) if target is not None else str(_model_device(model) if not is_factory else "cpu")
    info = {"init": str(scheme) if scheme is not None else "model's own", "seeds": seed_list,
            "batch_size": int(example_input.shape[0]) if example_input.dim() else 1,
            "input_shape": list(example_input.shape[1:]), "device": device_used, "direction": DIRECTION}
    info.update(config or {})
    return ProbeResult(build_frame(records), info)


@dataclass(frozen=True)
class ProbeResult:
    """Result of ``probe``: a tidy frame (one row per seed × layer) and the configuration."""

    frame: pd.DataFrame
    config: dict

    def to_frame(self) -> pd.DataFrame:
        """Return the tidy per-seed × per-layer frame of measurements and predictions."""
        return self.frame.copy()

    def summary(self) -> pd.DataFrame:
        """Return one row per layer: measured, predicted, log10 ratio, band and verdict."""
        return layer_summary(self.frame)

    def gains(self) -> dict:
        """Return the whole net's forward and backward gains, measured and predicted, and verdict."""
        return network_summary(self.frame)

    def to_dict(self) -> dict:
        """Return a JSON-ready dict with keys ``config``, ``layers`` and ``summary``."""
        return to_json_dict(self)
