"""Stack S copies of one architecture (S seeds) into one network that runs them side by side.

Seeds are grouped along the channel dimension: a Conv with C→D channels becomes one Conv with
S·C→S·D channels and ``groups·S`` groups, a Linear becomes a batched matrix product over S
blocks, and channelwise layers (activations, pools, BatchNorm) stack their per-channel
parameters. The input is repeated S times along dim 1, so seed s owns channels [s·C, (s+1)·C) of
every tensor, and the stacked net's output is the S outputs side by side. One forward+backward of
the stacked net is S forwards+backwards in a few large kernels instead of S·L small ones, which
is what a GPU needs; on a CPU the arithmetic is the same and grouped kernels are not faster.

Only ``nn.Sequential`` nets of the layers in ``STACKABLE`` are stacked (the paper's plain nets,
MLPs); ``stack_models`` raises ``StackingError`` naming the first layer it cannot stack.
"""

from __future__ import annotations

import copy
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_ELEMENTWISE = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.Softplus, nn.Identity,
                nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
                nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool2d)
STACKABLE = "Sequential of Conv1d/2d/3d, Linear, PReLU, BatchNorm, Flatten(1), Dropout(p=0 or eval), " \
            "and elementwise activations and pools"


class StackingError(ValueError):
    """The models cannot be stacked (a layer with cross-channel mixing other than Conv/Linear)."""


class GroupedLinear(nn.Module):
    """S Linear layers side by side: input (N, S·in) → output (N, S·out), block s by weight s.

    ``weight`` is (S·out, in) (the S weights stacked along dim 0, as a grouped Conv's), ``bias``
    (S·out,). y[:, s] = x[:, s] @ W[s]ᵀ + b[s], one batched matrix product.
    """

    def __init__(self, linears: Sequence[nn.Linear]):
        super().__init__()
        self.groups = len(linears)
        self.in_features, self.out_features = linears[0].in_features, linears[0].out_features
        self.weight = nn.Parameter(torch.cat([m.weight.detach() for m in linears]),
                                   requires_grad=linears[0].weight.requires_grad)
        self.bias = (nn.Parameter(torch.cat([m.bias.detach() for m in linears]),
                                  requires_grad=linears[0].bias.requires_grad)
                     if linears[0].bias is not None else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        blocks = x.reshape(batch, self.groups, self.in_features).transpose(0, 1)  # (S, N, in)
        weight = self.weight.view(self.groups, self.out_features, self.in_features).transpose(1, 2)
        if self.bias is None:
            out = torch.bmm(blocks, weight)
        else:
            out = torch.baddbmm(self.bias.view(self.groups, 1, self.out_features), blocks, weight)
        return out.transpose(0, 1).reshape(batch, self.groups * self.out_features)


class GroupedSharedPReLU(nn.Module):
    """S single-slope PReLUs side by side: seed s's channels use slope a_s (``weight`` is (S,))."""

    def __init__(self, prelus: Sequence[nn.PReLU]):
        super().__init__()
        self.groups = len(prelus)
        self.weight = nn.Parameter(torch.cat([m.weight.detach() for m in prelus]),
                                   requires_grad=prelus[0].weight.requires_grad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.prelu(x, self.weight.repeat_interleave(x.shape[1] // self.groups))


def _stack_parameter(tensors: Sequence[torch.Tensor | None], like: torch.Tensor | None) -> nn.Parameter | None:
    if like is None:
        return None
    return nn.Parameter(torch.cat([t.detach().reshape(-1) if t.dim() == 0 else t.detach() for t in tensors]),
                        requires_grad=like.requires_grad)


def _stack_layer(layers: Sequence[nn.Module], name: str) -> nn.Module:
    first = layers[0]
    count = len(layers)
    if any(type(layer) is not type(first) for layer in layers):
        raise StackingError(f"layer {name!r} differs between the models")
    if isinstance(first, _CONVS):
        stacked = copy.deepcopy(first)
        stacked.in_channels, stacked.out_channels = first.in_channels * count, first.out_channels * count
        stacked.groups = first.groups * count
        stacked.weight = _stack_parameter([m.weight for m in layers], first.weight)
        stacked.bias = _stack_parameter([m.bias for m in layers], first.bias)
        return stacked
    if isinstance(first, nn.Linear):
        return GroupedLinear(layers)
    if isinstance(first, nn.PReLU):
        stacked = copy.deepcopy(first)
        channels = first.num_parameters
        if channels == 1:
            return GroupedSharedPReLU(layers)
        stacked.num_parameters = channels * count
        stacked.weight = _stack_parameter([m.weight for m in layers], first.weight)
        return stacked
    if isinstance(first, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)):
        stacked = copy.deepcopy(first)
        stacked.num_features = first.num_features * count
        stacked.weight = _stack_parameter([m.weight for m in layers], first.weight)
        stacked.bias = _stack_parameter([m.bias for m in layers], first.bias)
        for buffer in ("running_mean", "running_var"):
            if getattr(first, buffer) is not None:
                setattr(stacked, buffer, torch.cat([getattr(m, buffer) for m in layers]))
        return stacked
    if isinstance(first, nn.Flatten):
        if first.start_dim != 1 or first.end_dim != -1:
            raise StackingError(f"layer {name!r}: only Flatten(1, -1) keeps each seed's features together")
        return copy.deepcopy(first)
    if isinstance(first, nn.Dropout):
        if first.p > 0 and first.training:
            raise StackingError(f"layer {name!r}: train-mode dropout draws masks per call, not per seed")
        return copy.deepcopy(first)
    if isinstance(first, _ELEMENTWISE):
        return copy.deepcopy(first)
    raise StackingError(f"layer {name!r} ({type(first).__name__}) cannot be stacked; stackable: {STACKABLE}")


def stack_models(models: Sequence[nn.Module]) -> tuple[nn.Sequential, dict[nn.Module, nn.Module]]:
    """Return (the S models as one ``nn.Sequential``, each stacked layer → the first model's layer).

    Layer names (indices) are those of the models, so the stacked net's layers are named as each
    seed's. The models are not modified.
    """
    if not models:
        raise StackingError("no models to stack")
    if not all(isinstance(model, nn.Sequential) for model in models):
        raise StackingError(f"only nn.Sequential models can be stacked, not {type(models[0]).__name__}")
    names = [name for name, _ in models[0].named_children()]
    if any([name for name, _ in model.named_children()] != names for model in models):
        raise StackingError("the models differ in their layers")
    stacked = nn.Sequential()
    references: dict[nn.Module, nn.Module] = {}
    for name in names:
        layers = [getattr(model, name) for model in models]
        if isinstance(layers[0], nn.Sequential):
            raise StackingError(f"layer {name!r} is a nested Sequential; flatten the model first")
        layer = _stack_layer(layers, name)
        layer.train(layers[0].training)
        stacked.add_module(name, layer)
        references[layer] = layers[0]
    stacked.train(models[0].training)
    return stacked, references


def repeat_input(x: torch.Tensor, count: int) -> torch.Tensor:
    """The input of every seed side by side along dim 1: (N, C, ...) → (N, S·C, ...)."""
    return x.repeat(1, count, *([1] * (x.dim() - 2)))


def one_seed_shape(shape: torch.Size, stacked: int) -> tuple[int, ...]:
    """The shape one seed sees of a tensor of ``stacked`` seeds side by side along dim 1."""
    return (shape[0], shape[1] // stacked, *shape[2:])
