"""The hooks a model's modules hold: a probe, a check or a watch must leave none behind."""

from torch import nn


def hook_count(model: nn.Module) -> int:
    """The forward, forward-pre and backward hooks on every module of ``model``."""
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())
