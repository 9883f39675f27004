"""Capture: the hooks and the op tracker of one probe pass.

Forward hooks on every covered module and a ``TorchFunctionMode`` (``_Tracker``) follow each tensor
from a weight layer's output through the ops after it (rectifiers, smooth activations, dropout,
views, pools, normalizations, residual sums) to the next weight layer. Tensor hooks on each layer's
output and input record the gradients (no full backward hooks, so in-place ReLUs are safe). What is
recorded are recipes (``reductions``): the device reductions are taken as the pass runs, the
arithmetic waits for the probe's one transfer.
"""

from __future__ import annotations

import math
import weakref
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from .. import dataflow
from ..activations import activation_factor
from ..compare import CLOSED_KINDS, RESET_KINDS
from ..coverage import (EMBEDDING_OPS, WEIGHT_OPS, WeightCall, call_argument as _argument, call_geometry, layer_name,
                        torch_functions as _functions, weight_call)
from ..layers import LayerGeometry, geometry, is_covered
from ..theory import gaussian_activation_factors, rectifier_factor, unit_second_moment
from .reductions import (_Derived, _RawStore, _Scratch, _dead_fraction, _device_second_moment, _float_data,
                         _largest_abs, _mean, _mean_per_seed, _moments, _moments_with_units, _output_moments,
                         _per_seed, _position_moments, _prelu_factor, _product, _second_moment, _unit_dim,
                         _unit_log_variance, _unit_second_moments, _unit_sums, _variance_from_moments, _divided)
from .stacking import one_seed_shape


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
    example_gram: Any = None  # the output's Gram matrix over the first examples (``_output_moments``)
    grad_output_map: torch.Tensor | None = None


def _link_closed(link: _Frontier | None, index: int) -> bool:
    """The link into call ``index`` is closed-form: the probe followed the previous call's output
    into it through closed-form ops only."""
    return link is not None and link.origin == index - 1 and link.closed


def closed_links(calls: list[_Call], in_degree: Counter) -> tuple[list[bool], list[bool]]:
    """(forward, backward) per call: is the link into it closed-form (``_link_closed``), and the
    link from the next call's input back to its output? Backward: the next call's forward link,
    where nothing else consumed the tensors on it (every node along it has one consumer in the
    autograd graph, ``in_degree``); never for the last call. Elsewhere the theory's chains
    re-anchor on the measurement."""
    forward = [_link_closed(c.link, c.index) for c in calls]
    backward = [forward[i + 1] and all(in_degree.get(node, 0) == 1 for node in calls[i + 1].link.nodes
                                       if node is not None)
                for i in range(len(calls) - 1)] + [False] * bool(calls)
    return forward, backward


def _needs_map(spatial_dims: int, closed: bool) -> bool:
    """Measure a conv layer's per-position E[x²] map of its input (E[Δy²] of its output gradient)
    only where the chain re-anchors on it: ``theory.forward_chains`` reads the measured input map
    of the first layer and after a link with no closed form, ``backward_chains`` the output-gradient
    map of the last layer and before such a link. Across a closed link the chain carries its own
    predicted map, and the measured one would go unread. Elsewhere the per-channel moments, which
    the bands need anyway, give E[x²] in one read, in place of a square into the scratch buffer and
    its sum over the batch; the record's map is that E[x²] at every position, as for a Linear
    layer. plain-30 re-anchors at 3 of its 27 convs each way, a ResNet at every conv."""
    return spatial_dims > 0 and not closed


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
        elif func is _SDPA and recorder.stacked == 1:
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


class _NormalizationsAndAttention:
    """The part of ``_Recorder`` that records train-mode normalizations (their input's variance
    against eps, E[γ²]) and attention logits; the state lives in ``_Recorder.__init__``."""

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
        mean, second = self._moments_of(source, mean=not rms)
        spread = second if rms else _Derived(_variance_from_moments, (second, mean))
        gamma = _second_moment(self.raw, weight.reshape(1, -1).expand(self.stacked, -1) if self.stacked > 1 else weight,
                               self.stacked) if isinstance(weight, torch.Tensor) and weight.numel() else float("nan")
        self.norms.append(_Norm(self._numbered(("norm", where), where), float(eps), spread, gamma))


class _OpFollowing:
    """The part of ``_Recorder`` that follows a tensor from one covered layer to the next through
    the ops between (closed-form factors, dead ReLU units, residual sums)."""

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
                    # a copy: the optimizer may change the parameter before the reductions are gathered (a watch)
                    slopes = _argument(args, kwargs, 1, "weight", None).detach().float().clone()
                    forward = _Derived(_prelu_factor, (self.raw.add(slopes.reshape(self.stacked, -1) if self.stacked > 1
                                                                     else slopes),))
                else:
                    slope = float(_argument(args, kwargs, 1, "negative_slope", 0.01)) if kind == "leaky" else 0.0
                    forward = rectifier_factor(slope)
                backward = forward
            elif kind == "smooth":
                forward, backward = map(self.raw.add, gaussian_activation_factors(func, args, kwargs,
                                                                      _device_second_moment(source, self.stacked)))
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

    def _in_stream(self, tensor: Any) -> bool:
        """True if ``tensor`` is the latest sum's output or its image under closed-form ops: a skip."""
        return isinstance(tensor, torch.Tensor) and any(
            _same_memory(tensor, alias) and tensor._version == version for alias, version in self.stream_aliases)

    def _record_dead(self, output: torch.Tensor) -> None:
        after_conv = bool(self.calls) and self.calls[-1].channels_first
        dim = _unit_dim(output, after_conv)
        where = self._where()
        name = self._numbered(("dead", where), where)
        units = output.shape[1] // self.stacked if self.stacked > 1 else int(output.shape[dim])
        # the unit sums the next layer takes of the same tensor for its input's unit means
        self.dead.append(_Dead(name, units, _Derived(_dead_fraction, (self._unit_sums_of(output, dim)[0],))))

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
        record.stats["skip_second_moment"] = self._moments_of(skip, mean=False)[1]
        record.stats["branch_second_moment"] = self._moments_of(branch, mean=False)[1]
        output = func(*args, **kwargs)
        record.stats["second_moment"] = self._moments_of(output, mean=False)[1]
        if output.requires_grad:
            self.tensor_handles.append(output.register_hook(lambda grad, r=record: r.stats.__setitem__(
                "grad_second_moment", _second_moment(self.raw, grad, self.stacked))))
        if output.grad_fn is not None:
            self.reset_nodes.add(output.grad_fn)
        self.sums.append(record)
        self.stream = record
        self.stream_aliases = [(output, output._version)]
        if on_layer_path:
            self.frontier.advance(output, "sum")
        return output


class _LayerRecording:
    """The part of ``_Recorder`` that records each covered layer call: its input and output
    moments and maps on the way forward, its gradients through tensor hooks on the way back."""

    # -- covered layers ------------------------------------------------------------------------

    def _on_layer_input(self, module: nn.Module, args: tuple) -> tuple | None:
        self.inside = module
        self.entered = (module, tuple(args[0].shape)) if args and isinstance(args[0], torch.Tensor) else None
        self.entered_input = args[0] if self.entered is not None else None  # the caller's tensor, not our view
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
            self.entered = self.entered_input = None

    def _record_layer(self, module: nn.Module, args: tuple, output: Any) -> None:
        x, y = args[0], output
        name = self._numbered(module, self.names.get(module, type(module).__name__) or type(module).__name__)
        reference = self.references.get(module, module)
        layer_geometry = geometry(reference, self._one_seed(x.shape), self._one_seed(y.shape))
        self._record_call(name, module, reference, module.weight, module.bias, layer_geometry,
                          type(reference).__name__, x, y, source=self.entered_input)

    def on_weight_op(self, func: Callable, call: WeightCall, args: tuple, kwargs: dict) -> Any:
        """A weight op outside a hooked layer (``coverage``): recorded as a layer call of its weight."""
        args = list(args)
        x = args[call.input_position] if len(args) > call.input_position else None
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            return func(*args, **kwargs)
        source, x = x, _gradient_view(x)  # as for a hooked layer (``_on_layer_input``)
        args[call.input_position] = x
        output = func(*args, **kwargs)
        if isinstance(output, torch.Tensor) and output.is_floating_point():
            name = self._numbered(call.weight, layer_name(self.parameter_names.get(call.weight, call.module_type)))
            self._record_call(name, None, None, call.weight, call.bias, call_geometry(call, args, kwargs, x, output),
                              call.module_type, x, output, channels_first=call.op in ("conv", "conv_transpose"),
                              source=source)
        return output

    def _record_call(self, name: str, module: nn.Module | None, reference: nn.Module | None, weight: torch.Tensor,
                     bias: torch.Tensor | None, layer_geometry: LayerGeometry, module_type: str, x: torch.Tensor,
                     y: torch.Tensor, channels_first: bool | None = None, source: torch.Tensor | None = None) -> None:
        """Record one layer call y = layer(x); ``source``: the tensor the caller passed, of which
        ``x`` is the probe's view (``_gradient_view``), under which a later op may meet it again."""
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
        unit_dim = _unit_dim(x, channels_first)
        call.input_map, call.stats["input_second_moment"], _, input_units, free_means = self._map(
            x, spatial_dims if _needs_map(spatial_dims, _link_closed(link, index)) else 0, unit_dim)
        call.stats["input_unit_log_variance"] = _Derived(_unit_log_variance, (input_units,))
        rectifiers = [f for f, kind in zip(call.prefix_factors, link.factor_kinds if link is not None else [])
                      if kind == "rectifier"]
        call.stats["input_rectifier_factor"] = _Derived(_product, tuple(rectifiers)) if rectifiers else float("nan")
        units = [u for u, kind in zip(link.unit_factors, link.factor_kinds) if kind in ("rectifier", "smooth")] \
            if link is not None else []
        call.stats["input_activation_factor"] = (float("nan") if not units or any(u is None for u in units)
                                                 else _Derived(_product, tuple(units)))
        unit_means = _divided(*self._unit_sums_of(source if source is not None else x, unit_dim, free_means))
        call.stats["input_mean"] = _Derived(_mean_per_seed, (unit_means,))
        call.stats["input_unit_mean_abs_max"] = _Derived(_largest_abs, (unit_means,))
        self._remember(source if source is not None else x, "moments",
                       (call.stats["input_mean"], call.stats["input_second_moment"]))
        units = x.shape[unit_dim] // (self.stacked if unit_dim == 1 else 1) if x.dim() else 1
        call.stats["input_count_per_unit"] = float(x.numel() // max(self.stacked, 1) // max(units, 1))
        call.stats["input_units"] = float(units)
        output_dim = _unit_dim(y, channels_first)
        call.stats["output_units"] = float(y.shape[output_dim] // (self.stacked if output_dim == 1 else 1)
                                           if y.dim() else 1)
        # fed by the model's own input (the same storage, through views): what an input finding may judge
        call.stats["input_is_model_input"] = float(x.untyped_storage().data_ptr() in self.input_storages)
        mean, second, units, call.example_gram = _output_moments(self.raw, y, output_dim, self.scratch, self.stacked,
                                                                 self.elementwise_variances)
        call.stats["output_variance"] = self._variance(second, mean)
        call.stats["output_second_moment"] = second
        call.stats["output_unit_log_variance"] = _Derived(_unit_log_variance, (units,))
        self._remember(y, "moments", (mean, second))
        call.stats["output_elements"] = float(y.numel() // y.shape[0] // self.stacked) if y.dim() >= 2 else float("nan")
        if y.requires_grad:
            self.tensor_handles.append(y.register_hook(lambda grad, c=call: self._on_grad_output(c, grad)))
        if x.requires_grad:
            self.tensor_handles.append(x.register_hook(lambda grad, c=call: self._on_grad_input(c, grad)))
            # An input computed with no weight upstream (an embedding's output) gets no gradient
            # unless asked for: the backward stops at the weights it differentiates.
            if not self._has_layer_upstream(x, link):
                self.grad_sources.append(x)
        self.calls.append(call)
        self.covered_weights.add(weight)
        if y.grad_fn is not None:
            self.layer_nodes[y.grad_fn] = index
        if link is not None:
            link.tensor = None
        self.frontier = _Frontier(index, y, y._version, nodes=[y.grad_fn])

    def _has_layer_upstream(self, x: torch.Tensor, link: _Frontier | None) -> bool:
        """True if ``x`` was computed from a covered layer call's output: ``dataflow.nearest_layers``
        finds one, walking the autograd graph back from ``x``. An input the probe followed from a
        layer's output (``link``) has that layer upstream, and the walk is skipped."""
        if link is not None and link.nodes[0] is not None:
            return True
        return x.grad_fn is not None and bool(dataflow.nearest_layers(x.grad_fn, self.layer_nodes, set(), first=True))

    def _on_grad_output(self, call: _Call, grad: torch.Tensor) -> None:
        closed = call.index < len(self.backward_closed) and self.backward_closed[call.index]
        call.grad_output_map, second, mean, units, _ = self._map(
            grad, call.spatial_dims if _needs_map(call.spatial_dims, closed) else 0,
            _unit_dim(grad, call.channels_first), self.elementwise_variances)
        call.stats["grad_output_unit_log_variance"] = _Derived(_unit_log_variance, (units,))
        if not self.elementwise_variances:
            mean = None  # a GPU's Welford pass gives it free: the columns are alike on every device
        elif mean is None:
            mean = _mean(self.raw, grad, self.stacked)
        call.stats["grad_output_second_moment"] = second
        call.stats["grad_output_variance"] = self._variance(second, mean)

    def _on_grad_input(self, call: _Call, grad: torch.Tensor) -> None:
        mean, second, units, _ = _moments_with_units(self.raw, grad, _unit_dim(grad, call.channels_first),
                                                     self.scratch, self.stacked, self.elementwise_variances)
        call.stats["grad_input_variance"] = self._variance(second, mean)
        call.stats["grad_input_second_moment"] = second
        call.stats["grad_input_unit_log_variance"] = _Derived(_unit_log_variance, (units,))

    def _map(self, tensor: torch.Tensor, spatial_dims: int, unit_dim: int,
             mean: bool = False) -> tuple[Any, Any, Any, Any, Any]:
        """(per-position E[x²] map, overall E[x²], overall E[x] where it came free or ``mean`` asks
        for it, else None, E[x²] per unit along ``unit_dim``, E[x] per unit where it came free, else
        None); a fully connected layer's map is the scalar itself."""
        if spatial_dims == 0:
            first, second, units, unit_means = _moments_with_units(self.raw, tensor, unit_dim, self.scratch,
                                                                   self.stacked, mean)
            return second, second, first, units, unit_means
        second_map, second, mean, units = _position_moments(self.raw, tensor, spatial_dims, self.scratch, self.stacked)
        if units is None:
            units = _unit_second_moments(self.raw, tensor, unit_dim, self.stacked)
        return second_map, second, mean, units, None

    @staticmethod
    def _variance(second: Any, mean: Any) -> Any:
        """Var = E[x²] − E[x]² where E[x] was taken (``elementwise_variances``), else NaN."""
        return float("nan") if mean is None else _Derived(_variance_from_moments, (second, mean))

    def _one_seed(self, shape: torch.Size) -> tuple[int, ...]:
        """The shape one seed sees: dim 1 divided by the number of stacked seeds."""
        return tuple(shape) if self.stacked == 1 else one_seed_shape(shape, self.stacked)


class _Recorder(_LayerRecording, _OpFollowing, _NormalizationsAndAttention):
    """Hooks and op tracking of one probe pass.

    ``stacked`` = S > 1: the model is S seeds stacked along dim 1 (``stacking.stack_models``) and
    every statistic is kept per seed, shape (S,) or (S, ...); ``references`` maps each stacked
    layer to one seed's layer, which gives the per-seed geometry and type.
    ``elementwise_variances``: also take E[x] of each layer's output and gradients, for their
    elementwise variances (else NaN); no verdict needs them, and on a CPU each is one more read.
    """

    def __init__(self, model: nn.Module, stacked: int = 1, references: dict[nn.Module, nn.Module] | None = None,
                 elementwise_variances: bool = False):
        self.stacked = stacked
        self.elementwise_variances = elementwise_variances  # also E[x] of outputs and gradients (one read each)
        self.references = references or {}
        self.calls: list[_Call] = []
        self.backward_closed: list[bool] = []  # per call, from ``end_forward``: ``closed_links``' backward
        self.sums: list[_Sum] = []
        self.dead: list[_Dead] = []
        self.frontier: _Frontier | None = None  # from the latest covered layer's output
        self.stream: _Sum | None = None  # the latest residual sum
        self.stream_aliases: list[tuple[torch.Tensor, int]] = []  # its output and images under closed-form ops
        self.names: dict[nn.Module, str] = {}
        self.parameter_names: dict[torch.Tensor, str] = {}  # as ``named_parameters`` names them
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
        self.known: dict[tuple[int, str], tuple[Any, int, Any]] = {}  # (id, what) -> (weakref, version, value)
        self.entered_input: torch.Tensor | None = None
        self.scratch = _Scratch()
        self.raw = _RawStore(stacked)
        self.handles: list = []
        self.tensor_handles: list = []
        self.stack: list[nn.Module] = []
        self.inside: nn.Module | None = None  # a covered layer whose forward is running
        self.entered: tuple[nn.Module, tuple[int, ...]] | None = None  # a covered layer that has not returned
        for name, module in model.named_modules():  # one walk: names, parameter names, hooks
            self.names[module] = name
            for parameter_name, parameter in module._parameters.items():
                if parameter is not None and parameter not in self.parameter_names:
                    self.parameter_names[parameter] = f"{name}.{parameter_name}" if name else parameter_name
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

    def end_forward(self, in_degree: Counter | None = None) -> None:
        """Drop every reference to a forward tensor (the backward frees them as it goes) and the
        scratch buffer, which the backward grows again from the small gradients at the output.
        ``in_degree`` (the forward's autograd graph): which backward links are closed-form, for the
        gradient hooks (``_needs_map``)."""
        if in_degree is not None:
            self.backward_closed = closed_links(self.calls, in_degree)[1]
        self.frontier = self.stream = None
        self.stream_aliases = []
        self.known = {}
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
                forward, backward = map(self.raw.add, gaussian_activation_factors(
                    lambda t: module.forward(t), (args[0],), {}, _device_second_moment(args[0], self.stacked)))
            follower.advance(output, "smooth", forward, backward, activation_factor(module))
        start = self.norm_ops_at.pop(module, None)
        if start is not None and start == self.norm_ops and args and isinstance(args[0], torch.Tensor) \
                and isinstance(output, torch.Tensor) and args[0].is_floating_point():
            # a normalization written in Python (Hugging Face's RMSNorm, T5's LayerNorm): no norm op was seen
            with torch._C.DisableTorchFunction():
                self._record_norm(args[0], output, _module_eps(module), _is_rms(module), getattr(module, "weight", None))

    # -- one reduction per tensor: statistics of a tensor that several records read ------------

    def _known(self, tensor: torch.Tensor, what: str) -> Any:
        """What ``_remember`` kept for this tensor object unchanged since (its version), or None."""
        entry = self.known.get((id(tensor), what))
        if entry is not None and entry[0]() is tensor and entry[1] == tensor._version:
            return entry[2]
        return None

    def _remember(self, tensor: torch.Tensor, what: str, value: Any) -> None:
        """Keep ``value`` for this tensor object: a weak reference, so a freed tensor's id cannot
        match another tensor's; an in-place op bumps its version and voids the entry."""
        self.known[(id(tensor), what)] = (weakref.ref(tensor), tensor._version, value)

    def _moments_of(self, tensor: torch.Tensor, mean: bool = True) -> tuple[Any, Any]:
        """(E[x] or None without ``mean``, E[x²]) of a tensor, taken once however many records read it
        (a layer's output is a normalization's input; a sum's operands are layer inputs and outputs)."""
        known = self._known(tensor, "moments")
        if known is None:
            known = _moments(self.raw, tensor, self.stacked) if mean else (None, _second_moment(self.raw, tensor,
                                                                                                self.stacked))
        elif mean and known[0] is None:
            known = (_mean(self.raw, tensor, self.stacked), known[1])
        self._remember(tensor, "moments", known)
        return known

    def _unit_sums_of(self, tensor: torch.Tensor, dim: int, means: Any = None) -> tuple[Any, int]:
        """``_unit_sums`` of a tensor along ``dim``, taken once: a ReLU's dead units and the next
        layer's input unit means read the same sums. ``means``: the per-unit means where a reduction
        gave them free (``_feature_moments``); they stand for the sums, with a count of 1."""
        what = f"unit_sums/{dim}"
        known = self._known(tensor, what)
        if known is None:
            known = (means, 1) if means is not None else _unit_sums(self.raw, tensor, dim, self.stacked)
            self._remember(tensor, what, known)
        return known

    def _where(self) -> str:
        """Name of the innermost module running now ('' for the model itself)."""
        for module in reversed(self.stack):
            name = self.names.get(module)
            if name:
                return name
        return "(model)"

    def _numbered(self, key: Any, name: str) -> str:
        """Return ``name``, with ``#k`` appended on the k-th (k ≥ 2) call counted under ``key``."""
        self.seen[key] += 1
        return name if self.seen[key] == 1 else f"{name}#{self.seen[key]}"
