"""Which ops multiply by a weight, found by the parameter rather than by the module type.

``nn.Linear`` and ``nn.Conv1d/2d/3d`` are hooked as modules (``layers``). Every other op that
multiplies its input by a weight parameter is covered here, where the probe's op tracker sees
it: ``F.linear`` (``nn.MultiheadAttention``'s projections, a user's own functional layer),
``torch.addmm`` (Hugging Face GPT-2's ``Conv1D``: ``x·W + b`` with W stored (in, out)),
``x @ W`` with a 2-D weight parameter, functional ``F.conv1d/2d/3d`` and the transposed
convolutions. Coverage is then stated as "N of M weight parameters", the rest named.

A transposed convolution is taken as a linear map with the fans it has at stride s: each output
sums (c_in/groups)·k^d/s^d inputs (its fan-in n), each input feeds (c_out/groups)·k^d outputs (n̂).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from .layers import LayerGeometry


def torch_functions(owner: Any, names: str) -> list:
    """The functions of ``owner`` (``torch``, ``torch.Tensor``, ``F``) by name, those this torch has."""
    return [getattr(owner, name) for name in names.split() if hasattr(owner, name)]



WEIGHT_OPS: dict[Any, str] = {
    F.linear: "linear",
    **{op: "addmm" for op in torch_functions(torch, "addmm") + torch_functions(torch.Tensor, "addmm")},
    **{op: "matmul" for op in torch_functions(torch, "matmul mm") + torch_functions(torch.Tensor, "matmul mm __matmul__")},
    **{op: "conv" for op in torch_functions(F, "conv1d conv2d conv3d")},
    **{op: "conv_transpose" for op in torch_functions(F, "conv_transpose1d conv_transpose2d conv_transpose3d")},
}
EMBEDDING_OPS = tuple(torch_functions(F, "embedding embedding_bag"))


@dataclass(frozen=True)
class WeightCall:
    """One call of a weight op: where its input is in the arguments, its weight and bias."""

    op: str
    input_position: int
    weight: torch.Tensor
    bias: torch.Tensor | None
    module_type: str  # what the report calls it: "F.linear", "addmm (Conv1D)", "ConvTranspose2d", ...


def _is_weight(value: Any, parameters: dict) -> bool:
    return isinstance(value, torch.Tensor) and value.dim() >= 2 and value in parameters


def call_argument(args: tuple, kwargs: dict, position: int, name: str, default: Any = None) -> Any:
    """A torch function's argument, given by keyword or by position, else ``default``."""
    if name in kwargs:
        return kwargs[name]
    return args[position] if len(args) > position else default



def weight_call(op: str, args: tuple, kwargs: dict, parameters: dict) -> WeightCall | None:
    """Return the ``WeightCall`` of a weight op whose weight is one of ``parameters`` (a dict keyed
    by parameter), or None (a product of two activations, a constant, a weight applied first)."""
    if op == "addmm":
        bias, source, weight = (call_argument(args, kwargs, 0, "input"), call_argument(args, kwargs, 1, "mat1"),
                                call_argument(args, kwargs, 2, "mat2"))
        if kwargs.get("beta", 1) != 1 or kwargs.get("alpha", 1) != 1 or not _is_weight(weight, parameters):
            return None
        return WeightCall(op, 1, weight, bias if isinstance(bias, torch.Tensor) and bias in parameters else None,
                          "addmm")
    if op == "matmul":
        source, weight = call_argument(args, kwargs, 0, "input"), call_argument(args, kwargs, 1, "other")
        if not (_is_weight(weight, parameters) and weight.dim() == 2 and isinstance(source, torch.Tensor)):
            return None
        return WeightCall(op, 0, weight, None, "matmul")
    weight = call_argument(args, kwargs, 1, "weight")
    if not _is_weight(weight, parameters):
        return None
    bias = call_argument(args, kwargs, 2, "bias")
    bias = bias if isinstance(bias, torch.Tensor) and bias in parameters else None
    names = {"linear": "F.linear", "conv": f"F.conv{weight.dim() - 2}d",
             "conv_transpose": f"ConvTranspose{weight.dim() - 2}d"}
    return WeightCall(op, 0, weight, bias, names[op])


def _tuple(value: Any, count: int) -> tuple[int, ...]:
    return tuple(int(v) for v in value) if isinstance(value, (tuple, list)) else (int(value),) * count


def call_geometry(call: WeightCall, args: tuple, kwargs: dict, x: torch.Tensor, y: torch.Tensor) -> LayerGeometry:
    """Return the ``LayerGeometry`` of a covered weight op from its weight and arguments."""
    weight = call.weight
    if call.op == "linear":
        return LayerGeometry("linear", weight.shape[1], weight.shape[0], 1, (), (), (), (), (), ())
    if call.op in ("addmm", "matmul"):  # x·W with W stored (in, out)
        return LayerGeometry("linear", weight.shape[0], weight.shape[1], 1, (), (), (), (), (), ())
    spatial_dims = weight.dim() - 2
    kernel = tuple(weight.shape[2:])
    stride = _tuple(call_argument(args, kwargs, 3, "stride", 1), spatial_dims)
    groups = int(call_argument(args, kwargs, 6, "groups", 1))  # 7th of conv and conv_transpose alike
    if call.op == "conv_transpose":  # weight (c_in, c_out/groups, k...): a linear map with its fans at stride s
        receptive = math.prod(kernel)
        in_channels, out_per_group = weight.shape[0], weight.shape[1]
        fan_in = max(1, round(in_channels // groups * receptive / math.prod(stride)))
        return LayerGeometry("linear", fan_in, out_per_group * receptive, 1, (), (), (), (), (), ())
    padding = call_argument(args, kwargs, 4, "padding", 0)
    dilation = _tuple(call_argument(args, kwargs, 5, "dilation", 1), spatial_dims)
    if isinstance(padding, str):  # "valid": none; "same": torch pads (total // 2) first
        padding = tuple(0 if padding == "valid" else d * (k - 1) // 2 for d, k in zip(dilation, kernel))
    return LayerGeometry("conv", weight.shape[1] * groups, weight.shape[0], groups, kernel, stride,
                         _tuple(padding, spatial_dims), dilation, tuple(x.shape[-spatial_dims:]),
                         tuple(y.shape[-spatial_dims:]))


def layer_name(parameter_name: str) -> str:
    """A layer's name from its weight's: ``h.0.attn.c_attn.weight`` → ``h.0.attn.c_attn``,
    ``attn.in_proj_weight`` → ``attn.in_proj``."""
    head, _, last = parameter_name.rpartition(".")
    if last == "weight":
        return head or last
    if last.endswith("_weight"):
        return f"{head}.{last[:-len('_weight')]}" if head else last[:-len("_weight")]
    return parameter_name


@dataclass(frozen=True)
class Coverage:
    """Which weight parameters (≥ 2-D) of a model the probe covered, as lookups or not at all."""

    covered: tuple[str, ...]
    embeddings: tuple[str, ...]  # lookup tables (F.embedding) and added (1, ...) tokens: not multiplications
    uncovered: tuple[str, ...]  # multiplied by an op the probe does not follow, or not used

    @property
    def total(self) -> int:
        return len(self.covered) + len(self.uncovered)

    def text(self) -> str:
        line = f"{len(self.covered)} of {self.total} weight layers covered"
        if self.embeddings:
            line += f" ({len(self.embeddings)} embedding table{'s' if len(self.embeddings) > 1 else ''} or tokens, not judged)"
        if self.uncovered:
            shown = ", ".join(self.uncovered[:6]) + (f", … {len(self.uncovered) - 6} more" if len(self.uncovered) > 6
                                                     else "")
            line += f"; not covered: {shown}"
        return line

    def to_dict(self) -> dict:
        return {"covered": len(self.covered), "total": self.total, "embeddings": list(self.embeddings),
                "uncovered": list(self.uncovered)}


def coverage(parameter_names: dict, covered: set, embedded: set) -> Coverage:
    """Return the ``Coverage`` of a model: ``parameter_names`` maps each parameter to its name;
    ``covered`` and ``embedded`` hold the parameters seen as layer weights and as lookup tables."""
    weights = [(name, p) for p, name in parameter_names.items() if p.dim() >= 2]
    # a (1, ...) parameter that no weight op used is an added table: a class token, position embeddings
    tables = {p for _, p in weights if p in embedded or (p.shape[0] == 1 and p not in covered)}
    return Coverage(tuple(layer_name(n) for n, p in weights if p in covered),
                    tuple(layer_name(n) for n, p in weights if p in tables and p not in covered),
                    tuple(layer_name(n) for n, p in weights if p not in covered and p not in tables))
