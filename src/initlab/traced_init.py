"""He's condition applied to the network as one forward pass traces it, not as its modules are listed.

``apply_init(model, scheme)`` reads each layer's neighbours in module registration order, which is
the forward order of a ``Sequential`` but not of Hugging Face's GPT-2 (``c_fc, c_proj, act``) or
Llama (``gate, up, down, act``) MLPs, and draws ``nn.Linear``/``nn.Conv*d`` modules only.
``init_from_trace(model, scheme, example_input)`` first probes the model as it is (nothing is
written), and then, for every weight layer the probe covered (GPT-2's ``Conv1D`` included), draws

    Var[w] = 1 / (c · n)        (kaiming; n = fan_in, or n̂ = fan_out with mode=fan_out)

where c = E[f(z)²], z ~ N(0, 1), is the factor of the activations on the path into the layer
(out of it, for fan_out) as the probe followed it: ½(1+a²) for a rectifier (the paper's eq. 10),
0.425 for GELU, 0.356 for SiLU, a product along a path. A layer with no activation next to it
(after a normalization, an attention product, an embedding) is linear: c = 1 (Var[w] = 1/n). Other
schemes take their own Var[w] with the same fans. Embedding tables and weights tied to them are
left alone; biases are zeroed.

``kaiming:branch=scaled`` also scales, in a residual stream of K sums, the last layer of every
branch (the layer whose output reaches the sum with no other weight layer between) to Var[w]/K:
the residual-branch scaling of GPT-2 (Radford et al. 2019: "the weights of residual layers at
initialization by a factor of 1/√N where N is the number of residual layers"; 1/√(2L) for L
blocks of two sums), so that K branches add what one would and the stream stays O(1) over depth
(Fixup, Zhang et al. 2019, and SkipInit, De & Smith 2020, take the same step further).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from .coverage import layer_name
from .probe import ModelInput, probe
from .schemes import (INIT_STREAM, Scheme, _fill, embedding_tables, fill_staged_, network_factor, parse_scheme,
                      stream_seed, warn_undrawn)

PER_MODULE_SCHEMES = ("torch-default", "orthogonal")  # drawn by a module's own method or a matrix factorization


def _layers_by_name(model: nn.Module) -> dict[str, tuple[torch.Tensor, torch.Tensor | None]]:
    """layer name (as the probe names a call) -> (weight, bias or None), every alias of a shared weight."""
    parameters = dict(model.named_parameters(remove_duplicate=False))
    found = {}
    for name, parameter in parameters.items():
        if parameter.dim() < 2:
            continue
        bias_name = name[:-len("weight")] + "bias" if name.endswith("weight") else None
        found[layer_name(name)] = (parameter, parameters.get(bias_name) if bias_name else None)
    return found


def _factor(value: float) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def init_from_trace(model: nn.Module, scheme: str | Scheme, example_input: ModelInput, *,
                    seed: int | None = None) -> nn.Module:
    """Initialize every weight layer a probe of ``model`` on ``example_input`` covers, in place, with
    ``scheme`` balanced for the activations the trace found next to each layer; return ``model``.

    ``seed`` as for ``apply_init`` (a CPU generator of its own stream: the same weights on every
    device). A weight parameter the probe did not cover is not drawn and an
    ``UndrawnWeightsWarning`` names it.
    """
    scheme = parse_scheme(scheme)
    if scheme.name in PER_MODULE_SCHEMES:
        raise ValueError(f"{scheme.name} is drawn per module: use apply_init(model, {str(scheme)!r}) without "
                         "example_input")
    result = probe(model, example_input)
    frame = result.to_frame()
    rows = frame[frame["seed"] == frame["seed"].min()].sort_values("index").reset_index(drop=True)
    branch_scale = _branch_scales(result.sums) if dict(scheme.options).get("branch", "none") == "scaled" else {}
    layers = _layers_by_name(model)
    tables = embedding_tables(model)
    generator = torch.Generator().manual_seed(stream_seed(seed, INIT_STREAM)) if seed is not None else None
    dist = dict(scheme.options).get("dist", "normal")
    drawn: set[int] = set()
    for position, row in rows.iterrows():
        weight, bias = layers.get(str(row["name"]).split("#")[0], (None, None))
        if weight is None or id(weight) in drawn or id(weight) in tables:
            continue
        feeding = _factor(row["activation_factor_in"])
        following, following_rectifier = None, True
        if position + 1 < len(rows) and not bool(rows.loc[position + 1, "link_resets"]):
            following = _factor(rows.loc[position + 1, "activation_factor_in"])
            following_rectifier = bool(np.isfinite(rows.loc[position + 1, "rectifier_factor_in"]))
        # a layer with no activation next to it is linear (c = 1): the trace knows, module order does not
        c = 1.0 if feeding is None and following is None else network_factor(scheme, feeding, following,
                                                                             following_rectifier)
        variance = scheme.weight_variance(tuple(weight.shape), int(row["fan_in"]), int(row["fan_out"]),
                                          network_factor=c) * branch_scale.get(str(row["name"]), 1.0)
        _draw(weight, variance, dist, generator)
        if bias is not None:
            with torch.no_grad():
                bias.zero_()
        drawn.add(id(weight))
    warn_undrawn(model, drawn, tables, "init_from_trace draws the layers a probe covers")
    return model


def _branch_scales(sums) -> dict[str, float]:
    """Layer name -> 1/K for the last layer of each branch of a residual stream of K sums."""
    if sums is None or sums.empty:
        return {}
    first = sums[sums["seed"] == sums["seed"].min()]
    scales: dict[str, float] = {}
    for _, stream in first.groupby("stream"):
        count = len(stream)
        for ends in stream["branch_ends"]:
            for name in str(ends).split():
                scales[name] = min(scales.get(name, 1.0), 1.0 / count)
    return scales


def _draw(weight: torch.Tensor, variance: float, dist: str, generator: torch.Generator | None) -> None:
    """Fill ``weight`` with N(0, Var) or the uniform of that variance; a seeded draw is made on the
    CPU in float32 and copied, so a seed gives the same weights on every device and dtype."""
    if not math.isfinite(variance) or variance < 0:
        raise ValueError(f"the scheme gives Var[w] = {variance} for a layer of shape {tuple(weight.shape)}")
    fill_staged_(weight, lambda target: _fill(target, variance, dist, generator), generator)


def redraw(model: nn.Module, scheme: str | Scheme, example_input: ModelInput, *, seed: int = 0) -> nn.Module:
    """Re-initialize ``model`` with ``scheme`` the way ``initlab check --init`` does: traced for the
    activations found next to each layer, every covered weight op included (``init_from_trace``),
    or per module for the schemes drawn from a module's own shape (``PER_MODULE_SCHEMES``)."""
    from .schemes import apply_init
    traced = parse_scheme(scheme).name not in PER_MODULE_SCHEMES
    return apply_init(model, scheme, seed=seed, example_input=example_input if traced else None)
