"""Probe a network: one forward and backward pass, per-layer statistics kept on the device.

For every call of a Conv/Linear layer the probe records, in float32 on the model's device:
the input second moment E[x²] (and its per-position map for convs), the output's variance and
second moment, the gradient's variance and second moment at the layer's output (Δy, with its
per-position map) and input (Δx), and the variance of the weight gradient. Gradients come
from a random Gaussian direction g ~ N(0, 1) at the network's output: the backward pass of the
scalar ⟨output, g⟩. Statistics move to the host once per probe, in a single transfer for all seeds.
Only the reductions (sums, dot products, per-channel and per-position sums, Welford (Var, mean)
pairs on a GPU) run on the device; means, differences and ratios are host arithmetic on the
transferred sums, so a probe adds a few kernel launches per layer and no host-device sync.

Capture uses forward hooks plus tensor hooks (no full backward hooks), so in-place ReLUs are
safe: a tensor hook registered before an in-place op sees the gradient of the value before it.
The user's model is left as found: parameters are never written (gradients come from
``torch.autograd.grad``, so ``.grad`` fields stay untouched), buffers are restored, the RNG state
is forked, and every hook is removed, also when the forward raises.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from .compare import CLOSED_KINDS, RESET_KINDS, build_attention_frame, build_dead_frame, build_frame, build_norm_frame, build_sum_frame, layer_summary, network_summary, to_json_dict
from . import dataflow
from .coverage import (EMBEDDING_OPS, WEIGHT_OPS, Coverage, WeightCall, call_argument as _argument, call_geometry,
                       coverage, layer_name, torch_functions as _functions, weight_call)
from .layers import LayerGeometry, geometry, is_covered
from .stacking import StackingError, repeat_input, stack_models
from .activations import HERMITE_NODES, HERMITE_WEIGHTS, activation_factor, unit_second_moment
from .schemes import DIRECTION_STREAM, Scheme, adjacent_factors, apply_init, network_factor, parse_scheme, stream_seed

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


def _float_data(tensor: torch.Tensor) -> torch.Tensor:
    """The tensor detached, in float32 unless it is already float32 or float64."""
    data = tensor.detach() if tensor.requires_grad else tensor
    return data if data.dtype in (torch.float32, torch.float64) else data.float()


# -- raw reductions on the device, arithmetic on the host ---------------------------------------
#
# A statistic is a *recipe*: a float known on the host, a ``_Slot`` (a raw reduction taken on the
# device: Σx², a per-channel Σx, a Welford (Var, mean) pair) or a ``_Derived`` (host arithmetic on
# other recipes, done after the probe's one transfer). The device runs the reductions alone. A
# division, square or mean of a 0-d tensor would be one kernel launch each on a GPU, and a probe
# launched about forty of them per layer; as host arithmetic on the transferred sums they cost
# nothing there.


class _Slot:
    """A raw reduction's place in its pass's flat device tensor (one seed's row of it).

    Plain classes with ``__slots__`` rather than dataclasses: a probe of a 30-layer net makes
    about 400 slots and 800 derived recipes, and a frozen dataclass's ``__init__`` costs three
    times as much."""

    __slots__ = ("start", "shape", "size")

    def __init__(self, start: int, shape: tuple[int, ...]) -> None:
        self.start, self.shape, self.size = start, shape, math.prod(shape)


class _Derived:
    """A statistic computed on the host: ``function(*evaluated arguments)``."""

    __slots__ = ("function", "arguments")

    def __init__(self, function: Callable[..., Any], arguments: tuple) -> None:
        self.function, self.arguments = function, arguments


def _evaluate(recipe: Any, rows: np.ndarray) -> Any:
    """The value of a recipe for every seed at once, given the pass's flat statistics on the host
    as rows (S, size): a slot's values come with the seed along axis 0, and every ``_Derived``
    function works per seed along that axis."""
    if isinstance(recipe, _Slot):
        return rows[:, recipe.start:recipe.start + recipe.size].reshape(len(rows), *recipe.shape)
    if isinstance(recipe, _Derived):
        return recipe.function(*(_evaluate(argument, rows) for argument in recipe.arguments))
    return recipe


class _RawStore:
    """The raw device reductions of one pass, concatenated once at its end (``flat``).

    With ``groups`` = S stacked seeds each reduction has the seed along dim 0, and the flat tensor
    is (S, size): one row per seed, the same slots in each.
    """

    def __init__(self, groups: int = 1) -> None:
        self.groups = groups
        self.tensors: list[torch.Tensor] = []
        self.size = 0

    def add(self, tensor: torch.Tensor) -> _Slot:
        slot = _Slot(self.size, tuple(tensor.shape[1:]) if self.groups > 1 else tuple(tensor.shape))
        self.tensors.append(tensor.detach() if tensor.requires_grad else tensor)
        self.size += slot.size
        return slot

    def flat(self) -> torch.Tensor:
        """All reductions side by side in float32: one cat (which promotes mixed dtypes), one cast.

        One seed: ``flatten_dense_tensors``, the flatten-and-cat in one C++ call that DDP uses
        for its buckets (a Python ``reshape`` per reduction cost ~1 µs each, 400 per probe)."""
        if self.groups == 1:
            if len(self.tensors) == 1:  # flatten_dense_tensors would return a view of it, not a copy
                return self.tensors[0].reshape(-1).to(torch.float32, copy=True)
            return torch._utils._flatten_dense_tensors(self.tensors).to(torch.float32)
        return torch.cat([t.reshape(self.groups, -1) for t in self.tensors], dim=1).to(torch.float32)


def _divided(recipe: Any, count: int) -> _Derived:
    return _Derived(np.divide, (recipe, float(count)))


def _second_from_moments(variance: Any, mean: Any) -> Any:
    return variance + np.square(mean)


def _variance_from_moments(second: Any, mean: Any) -> Any:
    return second - np.square(mean)


def _per_seed(values: np.ndarray) -> np.ndarray:
    """(S, ...) as (S, M): each seed's values in one row."""
    return values.reshape(len(values), -1)


def _mean_per_seed(values: np.ndarray) -> np.ndarray:
    rows = _per_seed(values)
    return np.add.reduce(rows, axis=1) / rows.shape[1]  # np.mean's own arithmetic, without its overhead


def _largest_abs(values: np.ndarray) -> np.ndarray:
    return np.abs(_per_seed(values)).max(axis=1)


def _dead_fraction(largest: np.ndarray) -> np.ndarray:
    return (_per_seed(largest) <= 0).mean(axis=1)


def _product(*factors: Any) -> Any:
    return functools.reduce(np.multiply, factors)


def _prelu_factor(slopes: np.ndarray) -> np.ndarray:
    """(1 + a²)/2 averaged over the channels' slopes: the rectifier factor of Eq. 10."""
    return _mean_per_seed(0.5 * (1.0 + np.square(slopes)))


def _seed_blocks(data: torch.Tensor, groups: int) -> torch.Tensor:
    """A stacked tensor (N, S·C, ...) as (N, S, C·...): seed s's elements in [:, s] (``stacking``)."""
    return data.reshape(data.shape[0], groups, -1)


def _seed_sums(blocks: torch.Tensor) -> torch.Tensor:
    """Σ over dims 0 and 2 of (N, S, M): the contiguous inner dim first, a strided pass is slower."""
    return blocks.sum(dim=2).sum(dim=0)


def _welford(data: torch.Tensor) -> bool:
    """Reduce with one Welford pass (``torch.var_mean``) rather than a dot product and a sum.

    On a GPU one kernel beats two; on a CPU ``var_mean`` is 10–25× slower than a dot product and
    a sum together (measured on this project's 2-core CI machine, 4 MB tensors)."""
    return not data.is_cpu


def _moments(store: _RawStore, tensor: torch.Tensor, groups: int = 1) -> tuple[Any, Any]:
    """(E[x], E[x²]) over all elements; per seed with S stacked seeds (seeds along dim 1).

    GPU: Var and E[x] in one Welford pass, E[x²] = Var + E[x]². CPU: Σx² as a dot product and Σx
    as a sum, divided on the host."""
    data = _float_data(tensor)
    if _welford(data):
        blocks = _seed_blocks(data, groups) if groups > 1 else data
        variance, mean = torch.var_mean(blocks, dim=(0, 2) if groups > 1 else None, correction=0)
        mean_slot = store.add(mean)
        return mean_slot, _Derived(_second_from_moments, (store.add(variance), mean_slot))
    return _mean(store, data, groups), _second_moment(store, data, groups)


def _variance_and_second_moment(store: _RawStore, tensor: torch.Tensor, groups: int = 1) -> tuple[Any, Any]:
    """(Var[x], E[x²]) over all elements: Var = E[x²] − E[x]², on the host in float64."""
    mean, second = _moments(store, tensor, groups)
    return _Derived(_variance_from_moments, (second, mean)), second


def _mean(store: _RawStore, tensor: torch.Tensor, groups: int = 1) -> _Derived:
    """E[x] over all elements, as one sum divided on the host; per seed with S stacked seeds."""
    data = _float_data(tensor)
    if groups > 1:
        blocks = _seed_blocks(data, groups)
        return _divided(store.add(_seed_sums(blocks)), blocks.shape[0] * blocks.shape[2])
    return _divided(store.add(data.sum()), data.numel())


def _square_sums(tensor: torch.Tensor, groups: int = 1) -> tuple[torch.Tensor, int]:
    """(Σx² over all elements as a device tensor, the count of elements it sums): one dot product
    (one read of the tensor, no temporary); per seed (S,) with S stacked seeds."""
    data = _float_data(tensor)
    if groups > 1:
        blocks = _seed_blocks(data, groups)
        return _seed_sums(blocks.square()), blocks.shape[0] * blocks.shape[2]
    flat = data.reshape(-1)
    return torch.dot(flat, flat), flat.numel()


def _second_moment(store: _RawStore, tensor: torch.Tensor, groups: int = 1) -> _Derived:
    """E[x²] over all elements: ``_square_sums`` on the device, the division on the host."""
    sums, count = _square_sums(tensor, groups)
    return _divided(store.add(sums), count)


def _device_second_moment(tensor: torch.Tensor, groups: int = 1) -> torch.Tensor:
    """E[x²] as a device tensor, for arithmetic that stays on the device (``_smooth_factors``)."""
    sums, count = _square_sums(tensor, groups)
    return sums / count


def _parameter_moments(store: _RawStore, parameter: torch.Tensor, groups: int) -> tuple[Any, Any]:
    """(Var, E[x²]) of a weight, bias or weight gradient; per seed when S seeds are stacked along
    its dim 0."""
    data = _float_data(parameter)
    return _variance_and_second_moment(store, data.reshape(1, groups, -1) if groups > 1 else data, groups)


def _parameter_second_moments(store: _RawStore, parameters: list[torch.Tensor], groups: int) -> list[_Derived]:
    """E[w²] of each parameter from its L2 norm: one multi-tensor kernel for all of them
    (``torch._foreach_norm``, the kernel ``clip_grad_norm_`` uses); per seed row with stacked seeds."""
    data = [_float_data(p) for p in parameters]
    if groups > 1:
        rows = [d.reshape(groups, -1) for d in data]
        norms = [torch.linalg.vector_norm(r, dim=1) for r in rows]
        counts = [r.shape[1] for r in rows]
    else:
        norms = list(torch._foreach_norm(data)) if data else []
        counts = [d.numel() for d in data]
    return [_divided(_Derived(np.square, (store.add(norm),)), count) for norm, count in zip(norms, counts)]


class _Scratch:
    """One buffer reused for every elementwise square of a pass: no allocation per layer.

    Squaring into fresh memory costs page faults on a CPU each time; the buffer grows to the
    largest tensor squared and lives as long as the pass. A tensor of at most ``SMALL_BYTES`` is
    squared into fresh memory: the allocator's cached blocks serve it with no page fault, and
    slicing the buffer costs more than the square (9 against 2 µs for 2×16×8×8).
    """

    SMALL_BYTES = 1 << 16

    def __init__(self) -> None:
        self.buffer: torch.Tensor | None = None

    def square(self, data: torch.Tensor) -> torch.Tensor:
        if data.numel() * data.element_size() <= self.SMALL_BYTES:
            return torch.mul(data, data)
        if (self.buffer is None or self.buffer.numel() < data.numel() or self.buffer.dtype != data.dtype
                or self.buffer.device != data.device):
            self.buffer = torch.empty(data.numel(), dtype=data.dtype, device=data.device)
        return torch.mul(data, data, out=self.buffer[:data.numel()].view(data.shape))


def _position_moments(store: _RawStore, tensor: torch.Tensor, spatial_dims: int, scratch: _Scratch,
                      groups: int = 1) -> tuple[Any, Any, Any]:
    """(E[x²] per spatial position over batch and channels, overall E[x²], overall E[x] or None).

    GPU: per-position Var and E[x] in one Welford pass, which also gives E[x]. CPU: one
    elementwise square into the scratch buffer and one reduction over the leading dims (no E[x]).
    The overall moments are means of the maps: every position holds the same number of elements.
    With S stacked seeds each is per seed.
    """
    data = _float_data(tensor)
    spatial = tuple(data.shape[data.dim() - spatial_dims:])
    positions = math.prod(spatial)
    row = (groups,) if groups > 1 else ()
    if _welford(data):
        view = data.reshape(data.shape[0], groups, -1, positions) if groups > 1 else data.reshape(-1, positions)
        variance, mean = torch.var_mean(view, dim=(0, 2) if groups > 1 else 0, correction=0)
        mean_map = store.add(mean.view(*row, *spatial))
        second_map = _Derived(_second_from_moments, (store.add(variance.view(*row, *spatial)), mean_map))
        return second_map, _Derived(_mean_per_seed, (second_map,)), _Derived(_mean_per_seed, (mean_map,))
    squares = scratch.square(data.contiguous())
    if groups > 1:
        blocks = squares.view(data.shape[0], groups, -1, positions)
        sums, count = blocks.sum(dim=2).sum(dim=0), blocks.shape[0] * blocks.shape[2]
    else:
        squares = squares.view(-1, positions)
        sums, count = squares.sum(0), squares.shape[0]
    second_map = _divided(store.add(sums.view(*row, *spatial)), count)
    return second_map, _Derived(_mean_per_seed, (second_map,)), None


def _unit_means(store: _RawStore, tensor: torch.Tensor, dim: int, groups: int = 1) -> _Derived:
    """Mean of each unit (channel after a conv, feature otherwise) over every other dimension;
    per seed with S stacked seeds (units along dim 1). One reduction; the division on the host."""
    data = _float_data(tensor)
    if groups > 1:
        blocks = data.reshape(data.shape[0], groups, data.shape[1] // groups, -1)
        return _divided(store.add(blocks.sum(dim=(0, 3))), blocks.shape[0] * blocks.shape[3])
    if data.dim() <= 1:
        return _divided(store.add(data), 1)
    return _divided(store.add(data.sum(dim=[d for d in range(data.dim()) if d != dim])), data.numel() // data.shape[dim])


def _unit_dim(tensor: torch.Tensor, after_conv: bool) -> int:
    """Return the dimension that indexes units: channels (dim 1) after a conv, else features (last)."""
    return 1 if after_conv and tensor.dim() >= 3 else tensor.dim() - 1


def _gradient_view(x: torch.Tensor) -> torch.Tensor:
    """A layer's input as the probe passes it on: a view, so that its gradient hook sees what this
    layer hands back, not the sum over every consumer of the tensor (a residual skip adds its own
    gradient there). An input that needs no gradient (a one-hot of token ids, features computed
    under ``no_grad``) becomes a leaf that does, with the same values: else its gradient is never
    computed. Nothing else in the graph changes."""
    return x.view_as(x) if x.requires_grad else x.detach().requires_grad_(True)


def _same_memory(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a is b or (a.numel() == b.numel() and a.dtype == b.dtype and a.device == b.device
                      and a.data_ptr() == b.data_ptr())


# Op kinds that are rectifiers (link kind "rectifier"), and those a residual stream passes through.
_RECTIFIER_OPS = ("relu", "leaky", "prelu")
_STREAM_OPS = _RECTIFIER_OPS + ("smooth", "dropout", "view")


@dataclass
class _Frontier:
    """A tensor as it flows from its origin (a covered layer or a residual sum) through known ops."""

    origin: int
    tensor: torch.Tensor | None  # None once a layer consumed it: a probe holds no activation past its hooks
    version: int
    factors: list = field(default_factory=list)  # forward second-moment factors: floats or 0-d device tensors
    backward_factors: list = field(default_factory=list)
    kinds: list = field(default_factory=list)
    factor_kinds: list = field(default_factory=list)  # the kind of each entry of ``factors``
    unit_factors: list = field(default_factory=list)  # each entry's factor at unit input, E[f(z)²] (init's c)
    nodes: list = field(default_factory=list)  # autograd nodes along the path, for fan-out checks

    def matches(self, tensor: Any) -> bool:
        return isinstance(tensor, torch.Tensor) and self.tensor is not None and \
            _same_memory(tensor, self.tensor) and tensor._version == self.version

    def advance(self, output: torch.Tensor, kind: str, forward: Any = None, backward: Any = None,
                unit: Any = None) -> None:
        self.tensor, self.version = output, output._version
        self.kinds.append(kind)
        if forward is not None:
            self.factors.append(forward)
            self.backward_factors.append(backward)
            self.factor_kinds.append(kind)
            self.unit_factors.append(forward if unit is None else unit)
        self.nodes.append(output.grad_fn)

    @property
    def closed(self) -> bool:
        return all(kind in CLOSED_KINDS for kind in self.kinds)

    @property
    def resets(self) -> bool:
        return any(kind in RESET_KINDS for kind in self.kinds)


_RELU_OPS = _functions(F, "relu relu_") + _functions(torch, "relu relu_") + _functions(torch.Tensor, "relu relu_")
_OP_KINDS: dict[Any, str] = {
    **{op: "relu" for op in _RELU_OPS},
    **{op: "leaky" for op in _functions(F, "leaky_relu leaky_relu_")},
    torch.prelu: "prelu",
    **{op: "smooth" for op in _functions(F, "gelu silu mish elu elu_ selu celu softplus hardswish hardtanh hardtanh_ "
                                            "relu6 hardsigmoid softsign tanhshrink logsigmoid")
       + _functions(torch, "tanh tanh_ sigmoid sigmoid_") + _functions(torch.Tensor, "tanh tanh_ sigmoid sigmoid_")},
    **{op: "dropout" for op in _functions(F, "dropout dropout1d dropout2d dropout3d")},
    **{op: "view" for op in _functions(torch.Tensor, "view view_as reshape reshape_as flatten unflatten transpose "
                                                     "permute contiguous squeeze unsqueeze movedim swapaxes clone "
                                                     "float to type_as")
       + _functions(torch, "flatten reshape transpose permute squeeze unsqueeze movedim swapaxes clone")
       + _functions(F, "alpha_dropout feature_alpha_dropout")},
    **{op: "pool" for op in _functions(F, "max_pool1d max_pool2d max_pool3d avg_pool1d avg_pool2d avg_pool3d "
                                          "adaptive_avg_pool1d adaptive_avg_pool2d adaptive_avg_pool3d "
                                          "adaptive_max_pool1d adaptive_max_pool2d adaptive_max_pool3d "
                                          "lp_pool1d lp_pool2d lp_pool3d")
       + _functions(torch, "mean amax") + _functions(torch.Tensor, "mean amax")},
    **{op: "norm" for op in _functions(F, "batch_norm layer_norm group_norm instance_norm rms_norm "
                                          "local_response_norm normalize")},
    **{op: "sum" for op in [torch.add, torch.Tensor.add, torch.Tensor.add_]},
}

# Probabilists' Gauss–Hermite rule: E[h(z)] for z ~ N(0, 1) as Σ w_i·h(z_i), exact for polynomials
# of degree < 2·80; for the smooth activations' factors on a Gaussian pre-activation.
_HERMITE_NODES, _HERMITE_WEIGHTS = HERMITE_NODES, HERMITE_WEIGHTS


_HERMITE_ON_DEVICE: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}


def _hermite_rule(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The quadrature nodes and weights on ``device``, copied there once per process (a host-to-GPU
    copy synchronizes; once per layer it would stall the GPU at every smooth activation)."""
    if device not in _HERMITE_ON_DEVICE:
        _HERMITE_ON_DEVICE[device] = (torch.as_tensor(_HERMITE_NODES, dtype=torch.float32, device=device),
                                      torch.as_tensor(_HERMITE_WEIGHTS, dtype=torch.float32, device=device))
    return _HERMITE_ON_DEVICE[device]


def _smooth_factors(func: Callable, args: tuple, kwargs: dict, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (E[f(y)²]/E[y²], E[f'(y)²]) for y ~ N(0, q), by Gauss–Hermite quadrature on the device.

    The activation itself is applied to the quadrature nodes (its extra arguments kept), so any
    elementwise function is covered with no closed form per function and no host transfer.
    """
    device = q.device
    nodes, weights = _hermite_rule(device)
    scale = q.float().sqrt().detach().unsqueeze(-1)  # q may hold one moment per stacked seed
    with torch.enable_grad():
        points = (nodes * scale).requires_grad_(True)
        values = func(points * 1.0, *args[1:], **kwargs)  # * 1.0: in-place variants act on a copy
        (slope,) = torch.autograd.grad(values.sum(), points)
    forward = (weights * values.detach().square()).sum(-1) / q.float()
    backward = (weights * slope.square()).sum(-1)
    return forward, backward


_UNIT_FACTORS: dict[tuple, float] = {}


def _unit_factor(func: Callable, args: tuple, kwargs: dict) -> float | None:
    """E[f(z)²] for z ~ N(0, 1) of an elementwise activation (its extra arguments kept), on the host
    in float64 by the same Gauss–Hermite rule, cached per function and arguments: the factor c of
    He's condition c·n·Var[w] = 1 that an init balances (``init_from_trace``)."""
    try:
        key = (func, repr(args[1:]), repr(sorted(kwargs.items())))
    except Exception:
        return None
    if key not in _UNIT_FACTORS:
        _UNIT_FACTORS[key] = unit_second_moment(lambda z: func(z, *args[1:], **kwargs))
    return _UNIT_FACTORS[key]


@dataclass
class _Call:
    index: int
    name: str
    module: nn.Module
    reference: nn.Module  # the module itself, or one seed's layer when seeds are stacked
    geometry: LayerGeometry
    spatial_dims: int
    link: _Frontier | None
    prefix_factors: list  # closed-form factors on the path from the previous layer's output
    prefix_backward_factors: list
    prefix_kinds: list
    weight: torch.Tensor | None = None
    bias: torch.Tensor | None = None
    module_type: str = ""
    channels_first: bool = False  # units along dim 1 (a convolution's channels), else along the last dim
    ends_in: str = ""  # "norm": a train-mode normalization takes its output's scale; "branch": a residual branch
    stats: dict = field(default_factory=dict)
    input_map: torch.Tensor | None = None
    grad_output_map: torch.Tensor | None = None


@dataclass
class _Norm:
    """A train-mode normalization: its input's variance against its eps (can it undo a scale?)."""

    name: str
    eps: float
    variance: Any  # a recipe: Var of the normalized input over all its elements
    weight_second_moment: Any = float("nan")  # a recipe: E[γ²] of its affine weight (NaN: none)


@dataclass
class _Sum:
    """A residual sum s = skip + branch of two data-dependent tensors of one shape."""

    index: int
    name: str
    previous: int  # the sum whose output (through closed-form ops) is this one's skip; −1: none
    stats: dict = field(default_factory=dict)
    branch_layers: tuple = ()  # the indices of the weight-layer calls in its branch
    branch_ends: tuple = ()  # those whose output reaches the sum with no other weight layer between


@dataclass
class _Dead:
    name: str
    units: int
    fraction: Any  # a recipe: the fraction of units whose largest output is 0


# The normalizations that divide by their input's own spread: (eps position, eps default, weight position).
_NORMALIZATIONS: dict[Any, tuple[int, float | None, int]] = {
    F.batch_norm: (7, 1e-5, 3), F.layer_norm: (4, 1e-5, 2), F.group_norm: (4, 1e-5, 2), F.instance_norm: (7, 1e-5, 3),
    **({F.rms_norm: (3, 1e-6, 2)} if hasattr(F, "rms_norm") else {}),
}


def _is_norm_module(module: nn.Module) -> bool:
    """A module named for a normalization that divides by its input's spread (``*Norm``, ``*RMSNorm``)."""
    name = type(module).__name__.lower()
    return ("layernorm" in name or "rmsnorm" in name or "groupnorm" in name or "batchnorm" in name) \
        and not name.startswith("lazy")


def _is_rms(module: nn.Module) -> bool:
    return "rms" in type(module).__name__.lower()


def _module_eps(module: nn.Module) -> float | None:
    for attribute in ("eps", "variance_epsilon", "epsilon"):
        value = getattr(module, attribute, None)
        if isinstance(value, (int, float)):
            return float(value)
    return None


_SDPA = getattr(F, "scaled_dot_product_attention", None)


@dataclass
class _Attention:
    """One attention call: the second moment of its logits q·k·scale, from per-dimension moments."""

    name: str
    keys: int
    logit_second_moment: Any  # a recipe


def _logit_second_moment(query_moments: np.ndarray, key_moments: np.ndarray, scale_squared: float) -> np.ndarray:
    """E[(scale·q·k)²] ≈ scale²·Σ_d E[q_d²]·E[k_d²] for query and key drawn independently (per seed)."""
    return scale_squared * (_per_seed(query_moments) * _per_seed(key_moments)).sum(axis=1)


class _Tracker(TorchFunctionMode):
    """Follows tensors through torch functions during the probed forward (see ``_Recorder.on_op``)."""

    def __init__(self, recorder: "_Recorder"):
        super().__init__()
        self.recorder = recorder

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        recorder = self.recorder
        if recorder.inside is not None:
            return func(*args, **kwargs)
        op = WEIGHT_OPS.get(func)
        if op is not None:
            call = weight_call(op, args, kwargs, recorder.parameter_names)
            if call is not None:
                return recorder.on_weight_op(func, call, args, kwargs)
        elif func in EMBEDDING_OPS:
            table = _argument(args, kwargs, 1, "weight", None)
            if isinstance(table, torch.Tensor):
                recorder.embedded.add(table)
        elif func is F.multi_head_attention_forward:
            return self._descend(func, args, kwargs)
        elif func is _SDPA and recorder.groups == 1:
            recorder.on_attention(args, kwargs)
        kind = _OP_KINDS.get(func)
        if kind is None:
            return func(*args, **kwargs)
        return recorder.on_op(func, kind, args, kwargs)

    def _descend(self, func, args, kwargs):
        """Run a Python-level composite (``F.multi_head_attention_forward``) with the tracker on
        for the ops inside it, so that its projections (``F.linear`` on its weights) are covered.
        Its own first statement hands it back to the mode; that one check is answered no."""
        original = F.has_torch_function

        def once(*_: Any) -> bool:
            F.has_torch_function = original
            return False

        F.has_torch_function = once
        try:
            with self:
                return func(*args, **kwargs)
        finally:
            F.has_torch_function = original


class _Recorder:
    """Hooks and op tracking of one probe pass.

    ``groups`` = S > 1: the model is S seeds stacked along dim 1 (``stacking.stack_models``) and
    every statistic is kept per seed, shape (S,) or (S, ...); ``references`` maps each stacked
    layer to one seed's layer, which gives the per-seed geometry and type.
    """

    def __init__(self, model: nn.Module, groups: int = 1, references: dict[nn.Module, nn.Module] | None = None):
        self.groups = groups
        self.references = references or {}
        self.calls: list[_Call] = []
        self.sums: list[_Sum] = []
        self.dead: list[_Dead] = []
        self.frontier: _Frontier | None = None  # from the latest covered layer's output
        self.stream: _Sum | None = None  # the latest residual sum
        self.stream_aliases: list[tuple[torch.Tensor, int]] = []  # its output and images under closed-form ops
        self.names = {module: name for name, module in model.named_modules()}
        self.parameter_names = {parameter: name for name, parameter in model.named_parameters()}
        self.covered_weights: set = set()
        self.embedded: set = set()  # weights used as lookup tables (F.embedding)
        self.layer_nodes: dict = {}  # autograd node of each covered call's output -> call index
        self.reset_nodes: set = set()  # nodes of residual sums and normalizations: where a layer's scale stops
        self.norms: list[_Norm] = []
        self.attention: list[_Attention] = []
        self.grad_sources: list[torch.Tensor] = []  # layer inputs the backward must be asked for
        self.input_storages: set[int] = set()  # storages of the model's floating-point inputs
        self.norm_ops = 0  # normalization ops seen (a norm module that ran none is recorded at its exit)
        self.norm_ops_at: dict = {}
        self.activation_at: dict = {}  # activation modules entered on the followed path
        self.seen: Counter = Counter()
        self.scratch = _Scratch()
        self.raw = _RawStore(groups)
        self.handles: list = []
        self.tensor_handles: list = []
        self.stack: list[nn.Module] = []
        self.inside: nn.Module | None = None  # a covered layer whose forward is running
        self.entered: tuple[nn.Module, tuple[int, ...]] | None = None  # a covered layer that has not returned
        for module in model.modules():
            if is_covered(self.references.get(module, module)):
                self.handles.append(module.register_forward_pre_hook(self._on_layer_input))
                self.handles.append(module.register_forward_hook(self._on_layer))
            else:
                self.handles.append(module.register_forward_pre_hook(self._push))
                self.handles.append(module.register_forward_hook(self._pop))

    def remove(self) -> None:
        for handle in self.handles + self.tensor_handles:
            handle.remove()
        self.handles.clear()
        self.tensor_handles.clear()
        self.end_forward()

    def end_forward(self) -> None:
        """Drop every reference to a forward tensor (the backward frees them as it goes) and the
        scratch buffer, which the backward grows again from the small gradients at the output."""
        self.frontier = self.stream = None
        self.stream_aliases = []
        self.scratch = _Scratch()
        self.layer_nodes, self.reset_nodes = {}, set()  # graph nodes hold saved tensors: let the backward free them

    def _push(self, module: nn.Module, args: tuple) -> None:
        self.stack.append(module)
        if _is_norm_module(module):
            self.norm_ops_at[module] = self.norm_ops
        elif self.frontier is not None and args and self.frontier.matches(args[0]) \
                and activation_factor(module) is not None:
            self.activation_at[module] = self.frontier  # an activation module written in Python (GPT-2's gelu_new)

    def _pop(self, module: nn.Module, args: tuple, output: Any) -> None:
        if self.stack and self.stack[-1] is module:
            self.stack.pop()
        follower = self.activation_at.pop(module, None)
        if follower is not None and follower is self.frontier and follower.matches(args[0]) \
                and isinstance(output, torch.Tensor) and output.is_floating_point():
            # no op inside it was followed (its own tanh and products are not): the module is the activation
            with torch._C.DisableTorchFunction():
                forward, backward = map(self.raw.add, _smooth_factors(
                    lambda t: module.forward(t), (args[0],), {}, _device_second_moment(args[0], self.groups)))
            follower.advance(output, "smooth", forward, backward, activation_factor(module))
        start = self.norm_ops_at.pop(module, None)
        if start is not None and start == self.norm_ops and args and isinstance(args[0], torch.Tensor) \
                and isinstance(output, torch.Tensor) and args[0].is_floating_point():
            # a normalization written in Python (Hugging Face's RMSNorm, T5's LayerNorm): no norm op was seen
            with torch._C.DisableTorchFunction():
                self._record_norm(args[0], output, _module_eps(module), _is_rms(module), getattr(module, "weight", None))

    # -- attention -------------------------------------------------------------------------------

    def on_attention(self, args: tuple, kwargs: dict) -> None:
        """Record the logit scale of ``F.scaled_dot_product_attention``: a softmax of logits with a
        spread of ≳ 10 is one-hot, and the gradient through it to the query and key vanishes."""
        query, key = _argument(args, kwargs, 0, "query", None), _argument(args, kwargs, 1, "key", None)
        if not (isinstance(query, torch.Tensor) and isinstance(key, torch.Tensor) and query.dim() >= 2
                and query.shape[-1] == key.shape[-1] and query.is_floating_point()):
            return
        scale = _argument(args, kwargs, 6, "scale", None)
        scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else float(scale)
        moments = [self.raw.add(_float_data(t).reshape(-1, t.shape[-1]).square().mean(dim=0)) for t in (query, key)]
        where = self._where()
        self.attention.append(_Attention(self._numbered(("attention", where), where), int(key.shape[-2]),
                                         _Derived(_logit_second_moment, (*moments, scale * scale))))

    # -- normalizations ------------------------------------------------------------------------

    def _record_norm(self, source: torch.Tensor, output: torch.Tensor, eps: float | None, rms: bool,
                     weight: Any = None) -> None:
        """A normalization that takes away its input's scale: the layers whose output scale reaches
        it unchanged end in it (``ends_in = "norm"``); its input's variance is kept against eps."""
        if output.grad_fn is not None:
            self.reset_nodes.add(output.grad_fn)
        if source.grad_fn is not None and self.layer_nodes:
            for node in dataflow.nearest_layers(source.grad_fn, self.layer_nodes, self.reset_nodes):
                call = self.calls[self.layer_nodes[node]]
                call.ends_in = call.ends_in or "norm"
        if eps is None:
            return
        where = self._where()
        mean, second = _moments(self.raw, source, self.groups)
        spread = second if rms else _Derived(_variance_from_moments, (second, mean))
        gamma = _second_moment(self.raw, weight.reshape(1, -1).expand(self.groups, -1) if self.groups > 1 else weight,
                               self.groups) if isinstance(weight, torch.Tensor) and weight.numel() else float("nan")
        self.norms.append(_Norm(self._numbered(("norm", where), where), float(eps), spread, gamma))

    def _where(self) -> str:
        """Name of the innermost module running now ('' for the model itself)."""
        for module in reversed(self.stack):
            name = self.names.get(module)
            if name:
                return name
        return "(model)"

    # -- ops between covered layers ------------------------------------------------------------

    def on_op(self, func: Callable, kind: str, args: tuple, kwargs: dict) -> Any:
        if kind == "sum":
            return self._on_sum(func, args, kwargs)
        if func is F.batch_norm and not _argument(args, kwargs, 5, "training", False):
            kind = "affine"  # eval mode: running statistics, a fixed per-channel map that does not normalize
        source = args[0] if args else kwargs.get("input")
        if kind in ("norm", "affine"):
            self.norm_ops += 1
            if kind == "norm" and func in _NORMALIZATIONS and isinstance(source, torch.Tensor):
                output = func(*args, **kwargs)
                eps_position, default, weight_position = _NORMALIZATIONS[func]
                eps = _argument(args, kwargs, eps_position, "eps", default)
                self._record_norm(source, output, float(eps if eps is not None else torch.finfo(source.dtype).eps),
                                  func is getattr(F, "rms_norm", None),
                                  _argument(args, kwargs, weight_position, "weight", None))
                for follower in (self.frontier,):
                    if follower is not None and follower.matches(source):
                        follower.advance(output, kind)
                return output
        followers = [f for f in (self.frontier,) if f is not None and f.matches(source)]
        stream_alias = self.stream is not None and kind in _STREAM_OPS and self._in_stream(source)
        forward = backward = unit = None
        if followers:
            if kind in _RECTIFIER_OPS:
                if kind == "prelu":  # the slopes go to the host with the statistics; the factor is taken there
                    slopes = _argument(args, kwargs, 1, "weight", None).detach().float()
                    forward = _Derived(_prelu_factor, (self.raw.add(slopes.reshape(self.groups, -1) if self.groups > 1
                                                                     else slopes),))
                else:
                    slope = float(_argument(args, kwargs, 1, "negative_slope", 0.01)) if kind == "leaky" else 0.0
                    forward = 0.5 * (1.0 + slope * slope)
                backward = forward
            elif kind == "smooth":
                forward, backward = map(self.raw.add, _smooth_factors(func, args, kwargs,
                                                                      _device_second_moment(source, self.groups)))
                unit = _unit_factor(func, args, kwargs)
            elif kind == "dropout":
                p = float(_argument(args, kwargs, 1, "p", 0.5))
                training = bool(_argument(args, kwargs, 2, "training", True))
                if training and p >= 1.0:
                    followers = []  # everything dropped: no factor; the next layer re-anchors
                forward = backward = 1.0 / (1.0 - p) if training and 0 < p < 1 else 1.0
            elif kind == "view":
                forward = backward = 1.0
        output = func(*args, **kwargs)
        if kind == "relu" and isinstance(output, torch.Tensor) and output.dim() >= 2:
            self._record_dead(output)
        if isinstance(output, torch.Tensor) and output.is_floating_point():
            if stream_alias:
                self.stream_aliases.append((output, output._version))
            for follower in followers:
                link_kind = "rectifier" if kind in _RECTIFIER_OPS else kind
                follower.advance(output, link_kind, forward, backward, unit)
        return output

    def _numbered(self, key: Any, name: str) -> str:
        """Return ``name``, with ``#k`` appended on the k-th (k ≥ 2) call counted under ``key``."""
        self.seen[key] += 1
        return name if self.seen[key] == 1 else f"{name}#{self.seen[key]}"

    def _in_stream(self, tensor: Any) -> bool:
        """True if ``tensor`` is the latest sum's output or its image under closed-form ops: a skip."""
        return isinstance(tensor, torch.Tensor) and any(
            _same_memory(tensor, alias) and tensor._version == version for alias, version in self.stream_aliases)

    def _record_dead(self, output: torch.Tensor) -> None:
        after_conv = bool(self.calls) and self.calls[-1].channels_first
        dim = _unit_dim(output, after_conv)
        where = self._where()
        name = self._numbered(("dead", where), where)
        # a ReLU's output is ≥ 0, so a unit is dead exactly when its largest output is 0
        if self.groups > 1:
            units = output.shape[1] // self.groups
            largest = output.detach().reshape(output.shape[0], self.groups, units, -1).amax(dim=(0, 3))
        else:
            units = int(output.shape[dim])
            largest = output.detach().amax(dim=[d for d in range(output.dim()) if d != dim])
        self.dead.append(_Dead(name, units, _Derived(_dead_fraction, (self.raw.add(largest),))))

    def _on_sum(self, func: Callable, args: tuple, kwargs: dict) -> Any:
        first = args[0] if args else kwargs.get("input")
        second = args[1] if len(args) > 1 else kwargs.get("other")
        if not (isinstance(first, torch.Tensor) and isinstance(second, torch.Tensor) and first.shape == second.shape
                and first.is_floating_point() and second.is_floating_point() and first.grad_fn is not None
                and second.grad_fn is not None and kwargs.get("alpha", 1) == 1):
            return func(*args, **kwargs)  # a bias, a constant or a broadcast: not a sum of branches
        # Skip and branch from the data flow: the skip is the operand the branch was computed from
        # (their fork), and a residual branch multiplies by weights on the way (``dataflow``).
        fork = dataflow.fork(first.grad_fn, second.grad_fn, self.layer_nodes)
        layers_first, layers_second = fork.layers_first, fork.layers_second
        if not fork.found or not (layers_first or layers_second):
            return func(*args, **kwargs)  # x + 0.044715·x³, a rotary embedding: no weight between, not a sum
        if fork.first_is_fork or fork.second_is_fork:
            branch_is_first = fork.second_is_fork
        elif self._in_stream(first) or self._in_stream(second):
            branch_is_first = self._in_stream(second)
        else:  # two branches of one fork (a projection shortcut): the skip is the one with fewer layers
            branch_is_first = len(layers_first) > len(layers_second)
        skip, branch = (second, first) if branch_is_first else (first, second)
        stream = self.stream if self._in_stream(skip) else None
        on_layer_path = self.frontier is not None and (self.frontier.matches(first) or self.frontier.matches(second))
        where = self._where()
        record = _Sum(len(self.sums), self._numbered(("sum", where), where), stream.index if stream is not None else -1)
        record.branch_layers = tuple(sorted(self.layer_nodes[node] for node in
                                            (layers_first if branch_is_first else layers_second)))
        for position in record.branch_layers:
            self.calls[position].ends_in = "branch"
        if branch.grad_fn is not None:
            record.branch_ends = tuple(sorted(self.layer_nodes[node] for node in dataflow.nearest_layers(
                branch.grad_fn, self.layer_nodes, self.reset_nodes)))
        record.stats["skip_second_moment"] = _second_moment(self.raw, skip, self.groups)
        record.stats["branch_second_moment"] = _second_moment(self.raw, branch, self.groups)
        output = func(*args, **kwargs)
        record.stats["second_moment"] = _second_moment(self.raw, output, self.groups)
        if output.requires_grad:
            self.tensor_handles.append(output.register_hook(lambda grad, r=record: r.stats.__setitem__(
                "grad_second_moment", _second_moment(self.raw, grad, self.groups))))
        if output.grad_fn is not None:
            self.reset_nodes.add(output.grad_fn)
        self.sums.append(record)
        self.stream = record
        self.stream_aliases = [(output, output._version)]
        if on_layer_path:
            self.frontier.advance(output, "sum")
        return output

    # -- covered layers ------------------------------------------------------------------------

    def _on_layer_input(self, module: nn.Module, args: tuple) -> tuple | None:
        self.inside = module
        self.entered = (module, tuple(args[0].shape)) if args and isinstance(args[0], torch.Tensor) else None
        if self.entered is not None and args[0].is_floating_point():
            with torch._C.DisableTorchFunction():
                return (_gradient_view(args[0]), *args[1:])
        return None

    def _on_layer(self, module: nn.Module, args: tuple, output: Any) -> None:
        try:
            # The statistics' own torch calls bypass the tracker: through it each would cost a
            # Python dispatch (about 2,000 per probe of a 30-layer net, most of its host time).
            with torch._C.DisableTorchFunction():
                self._record_layer(module, args, output)
        finally:
            self.inside = None
            self.entered = None

    def _record_layer(self, module: nn.Module, args: tuple, output: Any) -> None:
        x, y = args[0], output
        name = self._numbered(module, self.names.get(module, type(module).__name__) or type(module).__name__)
        reference = self.references.get(module, module)
        layer_geometry = geometry(reference, self._one_seed(x.shape), self._one_seed(y.shape))
        self._record_call(name, module, reference, module.weight, module.bias, layer_geometry,
                          type(reference).__name__, x, y)

    def on_weight_op(self, func: Callable, call: WeightCall, args: tuple, kwargs: dict) -> Any:
        """A weight op outside a hooked layer (``coverage``): recorded as a layer call of its weight."""
        args = list(args)
        x = args[call.input_position] if len(args) > call.input_position else None
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            return func(*args, **kwargs)
        x = _gradient_view(x)  # as for a hooked layer (``_on_layer_input``)
        args[call.input_position] = x
        output = func(*args, **kwargs)
        if isinstance(output, torch.Tensor) and output.is_floating_point():
            name = self._numbered(call.weight, layer_name(self.parameter_names.get(call.weight, call.module_type)))
            self._record_call(name, None, None, call.weight, call.bias, call_geometry(call, args, kwargs, x, output),
                              call.module_type, x, output, channels_first=call.op in ("conv", "conv_transpose"))
        return output

    def _record_call(self, name: str, module: nn.Module | None, reference: nn.Module | None, weight: torch.Tensor,
                     bias: torch.Tensor | None, layer_geometry: LayerGeometry, module_type: str, x: torch.Tensor,
                     y: torch.Tensor, channels_first: bool | None = None) -> None:
        index = len(self.calls)
        spatial_dims = len(layer_geometry.kernel_size) if layer_geometry.kind == "conv" else 0
        channels_first = layer_geometry.kind == "conv" if channels_first is None else channels_first
        link = self.frontier if self.frontier is not None and self.frontier.matches(x) else None
        if link is not None and x.grad_fn is not None and (not link.nodes or link.nodes[-1] is not x.grad_fn):
            link.nodes.append(x.grad_fn)
        call = _Call(index, name, module, reference, layer_geometry, spatial_dims, link,
                     list(link.factors) if link is not None else [],
                     list(link.backward_factors) if link is not None else [],
                     list(link.kinds) if link is not None else [], weight, bias, module_type)
        call.channels_first = channels_first
        call.input_map, call.stats["input_second_moment"], _ = self._map(x, spatial_dims)
        rectifiers = [f for f, kind in zip(call.prefix_factors, link.factor_kinds if link is not None else [])
                      if kind == "rectifier"]
        call.stats["input_rectifier_factor"] = _Derived(_product, tuple(rectifiers)) if rectifiers else float("nan")
        units = [u for u, kind in zip(link.unit_factors, link.factor_kinds) if kind in ("rectifier", "smooth")] \
            if link is not None else []
        call.stats["input_activation_factor"] = (float("nan") if not units or any(u is None for u in units)
                                                 else _Derived(_product, tuple(units)))
        unit_means = _unit_means(self.raw, x, _unit_dim(x, channels_first), self.groups)
        call.stats["input_mean"] = _Derived(_mean_per_seed, (unit_means,))
        call.stats["input_unit_mean_abs_max"] = _Derived(_largest_abs, (unit_means,))
        unit_dim = _unit_dim(x, channels_first)
        units = x.shape[unit_dim] // (self.groups if unit_dim == 1 else 1) if x.dim() else 1
        call.stats["input_count_per_unit"] = float(x.numel() // max(self.groups, 1) // max(units, 1))
        # fed by the model's own input (the same storage, through views): what an input finding may judge
        call.stats["input_is_model_input"] = float(x.untyped_storage().data_ptr() in self.input_storages)
        call.stats["output_variance"], call.stats["output_second_moment"] = \
            _variance_and_second_moment(self.raw, y, self.groups)
        if y.requires_grad:
            self.tensor_handles.append(y.register_hook(lambda grad, c=call: self._on_grad_output(c, grad)))
        if x.requires_grad:
            self.tensor_handles.append(x.register_hook(lambda grad, c=call: self._on_grad_input(c, grad)))
            # An input computed with no weight upstream (an embedding's output) gets no gradient
            # unless asked for: the backward stops at the weights it differentiates.
            if x.grad_fn is None or not dataflow.nearest_layers(x.grad_fn, self.layer_nodes, set(), first=True):
                self.grad_sources.append(x)
        self.calls.append(call)
        self.covered_weights.add(weight)
        if y.grad_fn is not None:
            self.layer_nodes[y.grad_fn] = index
        if link is not None:
            link.tensor = None
        self.frontier = _Frontier(index, y, y._version, nodes=[y.grad_fn])

    def _on_grad_output(self, call: _Call, grad: torch.Tensor) -> None:
        call.grad_output_map, second, mean = self._map(grad, call.spatial_dims)
        if mean is None:
            mean = _mean(self.raw, grad, self.groups)
        call.stats["grad_output_second_moment"] = second
        call.stats["grad_output_variance"] = _Derived(_variance_from_moments, (second, mean))

    def _on_grad_input(self, call: _Call, grad: torch.Tensor) -> None:
        call.stats["grad_input_variance"], call.stats["grad_input_second_moment"] = \
            _variance_and_second_moment(self.raw, grad, self.groups)

    def _map(self, tensor: torch.Tensor, spatial_dims: int) -> tuple[Any, Any, Any]:
        """(per-position E[x²] map, overall E[x²], overall E[x] where it came free, else None); a
        fully connected layer's map is the scalar itself."""
        if spatial_dims == 0:
            mean, second = _moments(self.raw, tensor, self.groups)
            return second, second, mean
        return _position_moments(self.raw, tensor, spatial_dims, self.scratch, self.groups)

    def _one_seed(self, shape: torch.Size) -> tuple[int, ...]:
        """The shape one seed sees: dim 1 divided by the number of stacked seeds."""
        return tuple(shape) if self.groups == 1 else _one_seed_shape(shape, self.groups)


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
    stats: dict[str, np.ndarray]  # per-call arrays, keys _STAT_NAMES
    input_maps: list[Any]
    grad_output_maps: list[Any]
    forward_links: list[float | None]  # closed-form factor of the link into each call
    backward_links: list[float | None]  # closed-form factor from the next call back to this one
    link_kinds: list[str]
    link_resets: list[bool]  # the verdict chain restarts at this call (normalization, residual sum, other op)
    prefix_factors: list[float]  # product of the closed-form factors on the incoming path
    prefix_backward_factors: list[float]
    prefix_kinds: list[str]  # the kinds on that path, e.g. "rectifier+pool+view"
    sums: dict[str, np.ndarray]  # per residual sum: names, previous, second moments
    dead_units: dict[str, np.ndarray]  # per ReLU call: names, units, dead fraction
    module_types: list[str]
    nominal_weight_variance: np.ndarray | None = None  # the scheme's Var[w] per call; None: no scheme
    nominal_bias_second_moment: np.ndarray | None = None
    ends_in: list[str] = field(default_factory=list)  # per call: "norm" (its scale is normalized away), "branch", ""
    norms: dict[str, np.ndarray] = field(default_factory=dict)  # per train-mode normalization: name, eps, variance
    coverage: Coverage | None = None
    attention: dict[str, np.ndarray] = field(default_factory=dict)  # per attention call: name, keys, E[logit²]


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


def _run_pass(model: nn.Module, example_input: ModelInput, seed: int, stacked_seeds: Sequence[int] = (),
              references: dict[nn.Module, nn.Module] | None = None) -> tuple[torch.Tensor, _PassLayout, list[nn.Module]]:
    """One forward+backward with statistics. ``stacked_seeds``: the model is ``len(stacked_seeds)``
    seeds stacked along dim 1 (``stacking``); each gets its own output direction, and the flat
    statistics come back as one row per seed."""
    groups = max(1, len(stacked_seeds))
    recorder = _Recorder(model, groups, references)
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
        recorder.end_forward()
        # drawn on the CPU in float32: the same direction for a seed on every device and dtype
        if groups > 1:  # each seed's direction, drawn as the sequential probe draws it, side by side
            directions = [torch.cat([torch.randn(_one_seed_shape(t.shape, groups), generator=torch.Generator().manual_seed(
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
        layout = _layout(calls, recorder.sums, recorder.dead, in_degree)
        layout.scalars, layout.maps = _stack(calls, recorder.sums, recorder.dead, recorder.norms, weight_grads,
                                             recorder.raw, groups, recorder.attention)
        layout.attention_names = [a.name for a in recorder.attention]
        layout.attention_keys = [a.keys for a in recorder.attention]
        layout.size = recorder.raw.size
        layout.norm_names = [n.name for n in recorder.norms]
        layout.norm_eps = [n.eps for n in recorder.norms]
        layout.coverage = coverage(recorder.parameter_names, recorder.covered_weights, recorder.embedded)
        return recorder.raw.flat(), layout, [c.reference for c in calls]
    finally:
        recorder.remove()


def _one_seed_shape(shape: torch.Size, groups: int) -> tuple[int, ...]:
    return (shape[0], shape[1] // groups, *shape[2:])


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


_STAT_NAMES = list(_SCALARS) + ["input_rectifier_factor", "input_mean", "input_unit_mean_abs_max", "input_count_per_unit",
                                "input_is_model_input", "input_activation_factor", "weight_second_moment", "bias_second_moment",
                                "weight_grad_variance"]
_SUM_STATS = ("skip_second_moment", "branch_second_moment", "second_moment", "grad_second_moment")


def _stack(calls: list[_Call], sums: list[_Sum], dead: list[_Dead], norms: list[_Norm], weight_grads: dict,
           store: _RawStore, groups: int = 1, attention: list[_Attention] = ()) -> tuple[list, list]:
    """Take the parameter statistics and return the recipes of one pass: (scalars, maps).

    The scalars, in order: per call the ``_STAT_NAMES`` and the forward and backward closed-form
    factors of its incoming path; then ``_SUM_STATS`` per residual sum and the dead fraction per
    ReLU call, then the normalized input's variance per normalization. The maps: each call's input
    map and gradient-at-output map. ``_unpack`` evaluates
    them on a seed's row of ``store.flat()``, which is filled by then.
    """
    nan = float("nan")
    weights = [call.weight for call in calls]
    biases = [call.bias for call in calls if call.bias is not None]
    second_moments = _parameter_second_moments(store, weights + biases, groups)
    weight_moments, bias_moments = second_moments[:len(weights)], iter(second_moments[len(weights):])
    grad_variances: dict[int, Any] = {}
    scalars: list = []
    maps: list = []
    for call, weight_second_moment in zip(calls, weight_moments):
        call.stats["weight_second_moment"] = weight_second_moment
        call.stats["bias_second_moment"] = next(bias_moments) if call.bias is not None else 0.0
        grad = weight_grads.get(id(call.weight))
        if grad is not None and id(grad) not in grad_variances:  # a layer called twice has one gradient
            grad_variances[id(grad)] = _parameter_moments(store, grad, groups)[0]
        call.stats["weight_grad_variance"] = grad_variances[id(grad)] if grad is not None else nan
        scalars += [call.stats.get(name, nan) for name in _STAT_NAMES]
        scalars += call.prefix_factors + call.prefix_backward_factors
        maps += [call.input_map, call.grad_output_map if call.grad_output_map is not None else nan]
    scalars += [record.stats.get(name, nan) for record in sums for name in _SUM_STATS] + [d.fraction for d in dead]
    scalars += [norm.variance for norm in norms] + [norm.weight_second_moment for norm in norms]
    scalars += [record.logit_second_moment for record in attention]
    return scalars, maps


@dataclass
class _PassLayout:
    """What is needed to unpack a pass's flat statistics: recipes and names, no tensors held."""

    names: list[str]
    geometries: list[LayerGeometry]
    factor_slots: list[int]
    closed_forward: list[bool]  # the link into call l is closed-form
    closed_backward: list[bool]  # the link from call l+1 back to call l is closed-form
    link_kinds: list[str]
    link_resets: list[bool]
    prefix_kinds: list[str]
    sum_names: list[str]
    sum_previous: list[int]
    dead_names: list[str]
    dead_units: list[int]
    module_types: list[str]
    ends_in: list[str] = field(default_factory=list)  # per call: "norm", "branch" or ""
    sum_branch_ends: list[str] = field(default_factory=list)  # per sum: its branch's last layers, space-separated
    norm_names: list[str] = field(default_factory=list)
    norm_eps: list[float] = field(default_factory=list)
    attention_names: list[str] = field(default_factory=list)
    attention_keys: list[int] = field(default_factory=list)
    coverage: Coverage | None = None
    scalars: list = field(default_factory=list)  # recipes (``_evaluate``), in ``_stack``'s order
    maps: list = field(default_factory=list)
    size: int = 0  # length of one seed's row of the flat device tensor
    nominal_weight_variance: np.ndarray | None = None
    nominal_bias_second_moment: np.ndarray | None = None


def _layout(calls: list[_Call], sums: list[_Sum], dead: list[_Dead], in_degree: Counter) -> _PassLayout:
    closed_forward = [c.link is not None and c.link.origin == c.index - 1 and c.link.closed for c in calls]
    # A closed-form link carries gradients back only if nothing else consumed the tensors on it.
    closed_backward = [closed_forward[i + 1] and all(in_degree.get(node, 0) == 1 for node in calls[i + 1].link.nodes
                                                     if node is not None)
                       for i in range(len(calls) - 1)] + [False]
    link_kinds = ["input" if i == 0 else ("+".join(c.prefix_kinds) or "direct") if c.link is not None else "other"
                  for i, c in enumerate(calls)]
    link_resets = [i > 0 and (c.link is None or c.link.resets) for i, c in enumerate(calls)]
    return _PassLayout([c.name for c in calls], [c.geometry for c in calls],
                       [len(c.prefix_factors) for c in calls], closed_forward, closed_backward, link_kinds,
                       link_resets, ["+".join(c.prefix_kinds) for c in calls], [s.name for s in sums],
                       [s.previous for s in sums], [d.name for d in dead], [d.units for d in dead],
                       [c.module_type for c in calls], [c.ends_in for c in calls],
                       [" ".join(calls[i].name for i in s.branch_ends) for s in sums])


def _seed_maps(value: Any, seeds: int, shape: tuple[int, ...]) -> np.ndarray:
    """A map recipe's value as (S, *shape) floats: a host constant (NaN: no gradient) broadcast to
    every seed, a measured value with one row per seed (a scalar map broadcast over the positions)."""
    array = np.asarray(value, dtype=float)
    if array.ndim:
        array = array.reshape(seeds, -1)
        if array.shape[1] == math.prod(shape):
            return array.reshape(seeds, *shape)
        array = array.reshape(seeds, *(1,) * len(shape))
    return np.broadcast_to(array, (seeds, *shape))


def _unpack(rows: np.ndarray, layout: _PassLayout, seeds: Sequence[int]) -> list[PassRecord]:
    """Return one ``PassRecord`` per seed from a pass's host statistics, rows (S, size): every
    recipe is evaluated once for all seeds of the pass."""
    count, width = len(layout.names), len(seeds)
    scalars = np.empty((len(layout.scalars), width))
    for position, recipe in enumerate(layout.scalars):
        value = _evaluate(recipe, rows)  # (S,) measured, or a host constant the row broadcasts
        scalars[position] = value.reshape(width) if isinstance(value, np.ndarray) else value
    stats = {name: np.empty((count, width)) for name in _STAT_NAMES}
    prefix_factors, prefix_backward = np.empty((count, width)), np.empty((count, width))
    offset = 0
    for position in range(count):
        for name in _STAT_NAMES:
            stats[name][position] = scalars[offset]
            offset += 1
        slots = layout.factor_slots[position]
        prefix_factors[position] = np.prod(scalars[offset:offset + slots], axis=0)
        prefix_backward[position] = np.prod(scalars[offset + slots:offset + 2 * slots], axis=0)
        offset += 2 * slots
    maps = iter(layout.maps)
    map_rows = [[_seed_maps(_evaluate(next(maps), rows), width, shape)
                 for shape in (geometry_of_call.in_spatial, geometry_of_call.out_spatial)]
                for geometry_of_call in layout.geometries]
    sum_count = len(layout.sum_names)
    sum_block = scalars[offset:offset + sum_count * len(_SUM_STATS)].reshape(sum_count, len(_SUM_STATS), width)
    offset += sum_count * len(_SUM_STATS)
    dead_fractions = scalars[offset:offset + len(layout.dead_names)]
    offset += len(layout.dead_names)
    norm_variances = scalars[offset:offset + len(layout.norm_names)]
    norm_weights = scalars[offset + len(layout.norm_names):offset + 2 * len(layout.norm_names)]
    offset += 2 * len(layout.norm_names)
    logit_moments = scalars[offset:offset + len(layout.attention_names)]
    records = []
    for row, seed in enumerate(seeds):
        forward = [float(f) for f in prefix_factors[:, row]]
        backward = [float(f) for f in prefix_backward[:, row]]
        sums = {"name": np.array(layout.sum_names, dtype=object), "previous": np.array(layout.sum_previous, dtype=int),
                "branch_ends": np.array(layout.sum_branch_ends or [""] * len(layout.sum_names), dtype=object),
                **{name: sum_block[:, column, row].copy() for column, name in enumerate(_SUM_STATS)}}
        dead_units = {"name": np.array(layout.dead_names, dtype=object), "units": np.array(layout.dead_units, dtype=int),
                      "dead_fraction": dead_fractions[:, row].copy()}
        input_maps = [m[row].copy() if m.ndim > 1 else float(m[row]) for m, _ in map_rows]
        grad_output_maps = [m[row].copy() if m.ndim > 1 else float(m[row]) for _, m in map_rows]
        records.append(PassRecord(
            seed, layout.names, [g.kind for g in layout.geometries], layout.geometries,
            {name: values[:, row].copy() for name, values in stats.items()}, input_maps, grad_output_maps,
            [f if closed else None for f, closed in zip(forward, layout.closed_forward)],
            [backward[i + 1] if layout.closed_backward[i] else None for i in range(count - 1)] + [None],
            layout.link_kinds, layout.link_resets, forward, backward, layout.prefix_kinds, sums, dead_units,
            layout.module_types, layout.nominal_weight_variance, layout.nominal_bias_second_moment,
            layout.ends_in, {"name": np.array(layout.norm_names, dtype=object), "eps": np.array(layout.norm_eps),
                             "variance": norm_variances[:, row].copy(), "weight_second_moment":
                                 norm_weights[:, row].copy()}, layout.coverage,
            {"name": np.array(layout.attention_names, dtype=object), "keys": np.array(layout.attention_keys, dtype=int),
             "logit_second_moment": logit_moments[:, row].copy()}))
    return records


# -- the public probe --------------------------------------------------------------------------


def _nominal(record: _PassLayout, modules: list[nn.Module], model: nn.Module, scheme: Scheme) -> None:
    """Fill the scheme's nominal Var[w] and E[b²] for every call, slopes as ``apply_init`` chose them."""
    factors = adjacent_factors(model)
    nan = float("nan")  # a weight op outside a Conv/Linear module: apply_init does not draw it
    record.nominal_weight_variance = np.array([
        scheme.weight_variance(tuple(m.weight.shape), g.fan_in, g.fan_out,
                               network_factor=network_factor(scheme, *factors[m]))
        if m is not None and m in factors else nan for m, g in zip(modules, record.geometries)])
    record.nominal_bias_second_moment = np.array([
        scheme.bias_variance(g.fan_in, m.bias is not None) if m is not None else nan
        for m, g in zip(modules, record.geometries)])


def _probe_one(model: nn.Module, example_input: ModelInput, seed: int,
               scheme: Scheme | None) -> tuple[torch.Tensor, _PassLayout]:
    """Probe one model once; return its statistics (still on the device) and their layout."""
    buffers = {name: buffer.detach().clone() for name, buffer in model.named_buffers()}
    try:
        device = _model_device(model)
        flat, layout, modules_by_call = _run_pass(model, _map_tensors(example_input, lambda t: t.to(device)), seed)
    finally:
        with torch.no_grad():
            for name, buffer in model.named_buffers():
                if name in buffers:
                    buffer.copy_(buffers[name])
    if scheme is not None:
        _nominal(layout, modules_by_call, model, scheme)
    return flat, layout


def _probe_stacked(instances: list[nn.Module], example_input: ModelInput, seeds: list[int],
                   scheme: Scheme | None) -> tuple[torch.Tensor, _PassLayout]:
    """Probe S seeds' models in one pass of them stacked; return their statistics, one row per
    seed (still on the device), and the layout every row shares."""
    if not isinstance(example_input, torch.Tensor) or example_input.dim() < 2:
        raise StackingError("stacked seeds take one input tensor of shape (N, C, ...)")
    network, references = stack_models(instances)
    device = _model_device(instances[0])
    try:
        flat, layout, modules_by_call = _run_pass(network, repeat_input(example_input.to(device), len(seeds)),
                                                  seeds[0], seeds, references)
    except ProbeError:
        # The stacked net's shapes are S times one seed's: one seed's pass on the same input raises
        # the error in the model's own terms (a wrong input shape), as the sequential probe would.
        _probe_one(instances[0], example_input, seeds[0], None)
        raise
    if scheme is not None:
        _nominal(layout, modules_by_call, instances[0], scheme)
    return flat, layout


def _model_device(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def _resolve_input(example_input: Any) -> ModelInput:
    """Return the model input: a tensor, a tuple/list (positional) or dict (keyword) of tensors,
    or what a zero-argument input factory returns."""
    if callable(example_input) and not isinstance(example_input, torch.Tensor):
        try:
            example_input = example_input()
        except Exception as error:
            raise ProbeError(f"the input factory raised {type(error).__name__}: {error}") from error
    tensors = _input_tensors(example_input)
    if not tensors or not isinstance(example_input, (torch.Tensor, tuple, list, dict)):
        raise ProbeError("example_input must be a tensor, a tuple/list or dict of tensors, or a factory returning one; "
                         f"got {type(example_input).__name__}")
    return example_input


def probe(model: nn.Module | Callable[[], nn.Module], example_input: ModelInput | Callable[[], ModelInput], *,
          init: str | Scheme | None = None, seeds: int | Sequence[int] = 1,
          device: str | torch.device | None = None, config: dict | None = None,
          progress: Callable[[int, int], None] | None = None, batched: bool | None = None) -> "ProbeResult":
    """Return per-layer activation and gradient statistics of ``model`` on ``example_input``.

    ``model`` is an ``nn.Module`` or a zero-argument factory. With no other argument the module
    is probed as it is, its own weights, one pass. ``init`` (a scheme spec such as ``"kaiming"``)
    re-initializes a copy per seed with ``apply_init(copy, init, seed=s)``; a factory is called
    once per seed after ``torch.manual_seed(s)``. ``seeds`` is a count (0..N−1) or a list; the
    seed also draws the output direction. ``device``: ``"auto"``, ``"cpu"``, ``"cuda"``; by default
    the model's own. The user's module, its buffers and the global RNG state are left as found.
    ``progress(done, total)`` is called after each seed. ``config`` entries are added to the
    result's configuration.

    ``batched``: probe all seeds in one pass of the seeds stacked side by side
    (``stacking.stack_models``; ``nn.Sequential`` nets of Conv/Linear/elementwise layers, one
    input tensor), with the same numbers as one pass per seed. ``None`` (default): batched on a
    GPU when the model stacks, sequential on a CPU (where stacking does not pay); ``True``:
    batched or a ``ProbeError`` saying why not; ``False``: one pass per seed.
    """
    scheme = parse_scheme(init) if init is not None else None
    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not seed_list:
        raise ProbeError(f"seeds must be at least 1, got {seeds!r}")
    target = resolve_device(device)
    is_factory = not isinstance(model, nn.Module)
    if is_factory and not callable(model):
        raise ProbeError(f"model must be an nn.Module or a factory returning one, got {type(model).__name__}")
    device_used = target if target is not None else _model_device(model) if not is_factory else torch.device("cpu")
    cuda_devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    passes: list[tuple[torch.Tensor, _PassLayout, list[int]]] = []  # (statistics, layout, the seeds of its rows)
    with torch.random.fork_rng(devices=cuda_devices):
        example_input = _resolve_input(example_input)

        def instance_for(seed: int) -> nn.Module:
            if is_factory:
                torch.manual_seed(seed)
                instance = model()
                if not isinstance(instance, nn.Module):
                    raise ProbeError(f"the model factory returned {type(instance).__name__}, not an nn.Module")
            elif scheme is None and (target is None or target == _model_device(model)):
                return model  # probed in place: nothing is written but buffers, which are restored
            else:
                instance = copy.deepcopy(model)
            # On the CPU the init is drawn before the move: the CPU generator's draws land in the
            # weights themselves and cross to the device with them, not once more per layer
            # through a staging tensor (``Scheme.init_layer_``). The weights are the same.
            drawn_first = scheme is not None and _model_device(instance).type == "cpu"
            if drawn_first:
                apply_init(instance, scheme, seed=seed)
            if target is not None:
                instance = instance.to(target)
            if scheme is not None and not drawn_first:
                apply_init(instance, scheme, seed=seed)
            return instance

        instances: list[nn.Module] = []
        if batched or (batched is None and len(seed_list) > 1 and device_used.type == "cuda"):
            instances = [instance_for(seed) for seed in seed_list]
            try:
                passes = [(*_probe_stacked(instances, example_input, seed_list, scheme), seed_list)]
            except StackingError as error:
                if batched:
                    raise ProbeError(f"batched seeds: {error}; probe one pass per seed (batched=False, --batched off)") from None
            if passes and progress is not None:
                progress(len(seed_list), len(seed_list))
        if not passes:  # one pass per seed, reusing the instances built for a stacking that did not apply
            for position, seed in enumerate(seed_list):
                instance = instances[position] if instances else instance_for(seed)
                passes.append((*_probe_one(instance, example_input, seed, scheme), [seed]))
                if progress is not None:
                    progress(len(passes), len(seed_list))
    # every seed's statistics cross to the host in one transfer
    host = torch.cat([flat.reshape(-1).to(passes[0][0].device) for flat, _, _ in passes]).cpu().double().numpy()
    records, offset = [], 0
    for _, layout, seeds_of_pass in passes:
        end = offset + layout.size * len(seeds_of_pass)
        records += _unpack(host[offset:end].reshape(len(seeds_of_pass), layout.size), layout, seeds_of_pass)
        offset = end
    first = _input_tensors(example_input)[0]
    info = {"init": str(scheme) if scheme is not None else "model's own", "seeds": seed_list,
            "batch_size": int(first.shape[0]) if first.dim() else 1, "input_shape": list(first.shape[1:]), "device": str(device_used), "direction": DIRECTION}
    info.update(config or {})
    return ProbeResult(build_frame(records), info, build_sum_frame(records), build_dead_frame(records),
                       build_norm_frame(records), records[0].coverage, build_attention_frame(records))


@dataclass(frozen=True)
class ProbeResult:
    """Result of ``probe``: a tidy frame (one row per seed × layer) and the configuration."""

    frame: pd.DataFrame
    config: dict
    sums: pd.DataFrame = field(default_factory=pd.DataFrame)  # one row per seed × residual sum
    dead_units: pd.DataFrame = field(default_factory=pd.DataFrame)  # one row per seed × ReLU call
    norms: pd.DataFrame = field(default_factory=pd.DataFrame)  # one row per seed × train-mode normalization
    coverage: Coverage | None = None  # which weight parameters the probe covered
    attention: pd.DataFrame = field(default_factory=pd.DataFrame)  # one row per seed × attention call

    def to_frame(self) -> pd.DataFrame:
        """Return the tidy per-seed × per-layer frame of measurements and predictions."""
        return self.frame.copy()

    def summary(self) -> pd.DataFrame:
        """Return one row per layer: measured, predicted, log10 ratio, band and verdict."""
        return layer_summary(self.frame)

    def gains(self) -> dict:
        """Return the whole net's forward and backward gains, measured and predicted, and verdict."""
        return network_summary(self.frame, self.sums)

    def to_dict(self) -> dict:
        """Return a JSON-ready dict with keys ``config``, ``layers`` and ``summary``."""
        return to_json_dict(self)
