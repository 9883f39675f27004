"""Records: what one pass measured, by name, from the recipes to per-seed host arrays.

``collect_recipes`` names every recipe of a pass (per layer call, per residual sum, per ReLU, per
normalization, per attention call); ``unpack`` evaluates them on the host rows, one per seed, into
``PassRecord``s, which ``compare.build_frame`` turns into the tidy frame.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..coverage import Coverage
from ..layers import LayerGeometry
from .capture import _Attention, _Call, _Dead, _Norm, _Sum, closed_links
from .reductions import _RawStore, _evaluate, _parameter_moments, _parameter_second_moments

_SCALARS = ("input_second_moment", "output_variance", "output_second_moment", "grad_output_variance",
            "grad_output_second_moment", "grad_input_variance", "grad_input_second_moment")


@dataclass
class PassRecord:
    """Host-side measurements of one probe pass (one seed), after the single transfer."""

    seed: int
    names: list[str]
    kinds: list[str]
    geometries: list[LayerGeometry]
    stats: dict[str, np.ndarray]  # per-call arrays, keys _STAT_NAMES
    input_maps: list[Any]  # per call: E[x²] per position; uniform where the chain carries its own (``_needs_map``)
    grad_output_maps: list[Any]  # per call: E[Δy²] per position, likewise
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
    example_grams: list = field(default_factory=list)  # per call: its output's Gram over the first examples, or None


_STAT_NAMES = list(_SCALARS) + ["input_rectifier_factor", "input_mean", "input_unit_mean_abs_max", "input_count_per_unit",
                                "input_is_model_input", "input_activation_factor", "weight_second_moment", "bias_second_moment",
                                "weight_grad_variance", "input_units", "output_units", "input_unit_log_variance",
                                "output_unit_log_variance", "grad_output_unit_log_variance", "grad_input_unit_log_variance", "output_elements"]
_SUM_STATS = ("skip_second_moment", "branch_second_moment", "second_moment", "grad_second_moment")


@dataclass
class _PassRecipes:
    """Every recipe of one pass, by name: ``unpack`` evaluates each list into an array (one row per
    entry, one column per seed). Nothing is positional across groups, so no offset can drift."""

    calls: dict[str, list]  # per ``_STAT_NAMES`` name: one recipe per layer call
    forward_prefix: list[list]  # per call: the closed-form forward factors on its incoming path
    backward_prefix: list[list]  # per call: the same path's backward factors
    input_maps: list  # per call: E[x²] per position (a scalar for a fully connected layer, and where the chain
    # does not re-anchor on the map: ``capture._needs_map``)
    grad_output_maps: list  # per call: E[Δy²] per position, likewise (NaN: no gradient reached it)
    example_grams: list  # per call: the output's Gram matrix over the first examples (None: fewer than two)
    sums: dict[str, list]  # per ``_SUM_STATS`` name: one recipe per residual sum
    dead_fraction: list  # per ReLU call
    norm_variance: list  # per train-mode normalization: its input's variance (E[x²] for an RMSNorm)
    norm_weight_second_moment: list  # per normalization: E[γ²] (NaN: no affine weight)
    attention_logit_second_moment: list  # per attention call


def _recipes_of_pass(calls: list[_Call], sums: list[_Sum], dead: list[_Dead], norms: list[_Norm], weight_grads: dict,
                     store: _RawStore, stacked: int = 1, attention: list[_Attention] = ()) -> _PassRecipes:
    """Take the parameter statistics (weights, biases, weight gradients) and return every recipe of
    one pass by name. ``unpack`` evaluates them on the rows of ``store.flat()``, filled by then."""
    nan = float("nan")
    weights = [call.weight for call in calls]
    biases = [call.bias for call in calls if call.bias is not None]
    second_moments = _parameter_second_moments(store, weights + biases, stacked)
    weight_moments, bias_moments = second_moments[:len(weights)], iter(second_moments[len(weights):])
    grad_variances: dict[int, Any] = {}
    for call, weight_second_moment in zip(calls, weight_moments):
        call.stats["weight_second_moment"] = weight_second_moment
        call.stats["bias_second_moment"] = next(bias_moments) if call.bias is not None else 0.0
        grad = weight_grads.get(id(call.weight))
        if grad is not None and id(grad) not in grad_variances:  # a layer called twice has one gradient
            grad_variances[id(grad)] = _parameter_moments(store, grad, stacked)[0]
        call.stats["weight_grad_variance"] = grad_variances[id(grad)] if grad is not None else nan
    return _PassRecipes(
        calls={name: [call.stats.get(name, nan) for call in calls] for name in _STAT_NAMES},
        forward_prefix=[call.prefix_factors for call in calls],
        backward_prefix=[call.prefix_backward_factors for call in calls],
        input_maps=[call.input_map for call in calls],
        grad_output_maps=[call.grad_output_map if call.grad_output_map is not None else nan for call in calls],
        example_grams=[call.example_gram for call in calls],
        sums={name: [record.stats.get(name, nan) for record in sums] for name in _SUM_STATS},
        dead_fraction=[d.fraction for d in dead],
        norm_variance=[norm.variance for norm in norms],
        norm_weight_second_moment=[norm.weight_second_moment for norm in norms],
        attention_logit_second_moment=[record.logit_second_moment for record in attention])


@dataclass
class _PassLayout:
    """What is needed to unpack a pass's flat statistics: recipes and names, no tensors held."""

    names: list[str]
    geometries: list[LayerGeometry]
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
    recipes: _PassRecipes | None = None
    size: int = 0  # length of one seed's row of the flat device tensor
    nominal_weight_variance: np.ndarray | None = None
    nominal_bias_second_moment: np.ndarray | None = None


def _layout(calls: list[_Call], sums: list[_Sum], dead: list[_Dead], in_degree: Counter) -> _PassLayout:
    closed_forward, closed_backward = closed_links(calls, in_degree)
    return _PassLayout(
        names=[c.name for c in calls], geometries=[c.geometry for c in calls], closed_forward=closed_forward,
        closed_backward=closed_backward,
        link_kinds=["input" if i == 0 else ("+".join(c.prefix_kinds) or "direct") if c.link is not None else "other"
                    for i, c in enumerate(calls)],
        link_resets=[i > 0 and (c.link is None or c.link.resets) for i, c in enumerate(calls)],
        prefix_kinds=["+".join(c.prefix_kinds) for c in calls], sum_names=[s.name for s in sums],
        sum_previous=[s.previous for s in sums], dead_names=[d.name for d in dead], dead_units=[d.units for d in dead],
        module_types=[c.module_type for c in calls], ends_in=[c.ends_in for c in calls],
        sum_branch_ends=[" ".join(calls[i].name for i in s.branch_ends) for s in sums])


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


def _values(recipes: list, rows: np.ndarray) -> np.ndarray:
    """Evaluate scalar recipes for every seed: (len(recipes), S), a host constant in every column."""
    values = np.empty((len(recipes), len(rows)))
    for position, recipe in enumerate(recipes):
        value = _evaluate(recipe, rows)  # (S,) measured, or a host constant the row broadcasts
        values[position] = value.reshape(len(rows)) if isinstance(value, np.ndarray) else value
    return values


def _path_products(paths: list[list], rows: np.ndarray) -> np.ndarray:
    """The product of each path's factors for every seed: (len(paths), S), 1 for an empty path.
    All factors are evaluated in one pass over their recipes (one array, not one per path)."""
    values = _values([recipe for path in paths for recipe in path], rows)
    bounds = np.cumsum([0] + [len(path) for path in paths])
    return np.array([np.prod(values[start:end], axis=0) for start, end in zip(bounds[:-1], bounds[1:])])


def _unpack(rows: np.ndarray, layout: _PassLayout, seeds: Sequence[int]) -> list[PassRecord]:
    """Return one ``PassRecord`` per seed from a pass's host statistics, rows (S, size): every
    recipe is evaluated once for all seeds of the pass."""
    recipes = layout.recipes
    stats = {name: _values(recipes.calls[name], rows) for name in _STAT_NAMES}
    prefix_factors = _path_products(recipes.forward_prefix, rows)
    prefix_backward = _path_products(recipes.backward_prefix, rows)
    width = len(seeds)
    input_maps = [_seed_maps(_evaluate(recipe, rows), width, g.in_spatial)
                  for recipe, g in zip(recipes.input_maps, layout.geometries)]
    grad_output_maps = [_seed_maps(_evaluate(recipe, rows), width, g.out_spatial)
                        for recipe, g in zip(recipes.grad_output_maps, layout.geometries)]
    example_grams = [None if recipe is None else _evaluate(recipe, rows) for recipe in recipes.example_grams]
    sum_stats = {name: _values(recipes.sums[name], rows) for name in _SUM_STATS}
    dead_fractions = _values(recipes.dead_fraction, rows)
    norm_variances = _values(recipes.norm_variance, rows)
    norm_weights = _values(recipes.norm_weight_second_moment, rows)
    logit_moments = _values(recipes.attention_logit_second_moment, rows)
    count = len(layout.names)
    records = []
    for row, seed in enumerate(seeds):
        forward = [float(f) for f in prefix_factors[:, row]]
        backward = [float(f) for f in prefix_backward[:, row]]
        records.append(PassRecord(
            seed=seed, names=layout.names, kinds=[g.kind for g in layout.geometries], geometries=layout.geometries,
            stats={name: values[:, row].copy() for name, values in stats.items()},
            input_maps=[m[row].copy() if m.ndim > 1 else float(m[row]) for m in input_maps],
            grad_output_maps=[m[row].copy() if m.ndim > 1 else float(m[row]) for m in grad_output_maps],
            example_grams=[None if g is None else g[row].astype(np.float64) for g in example_grams],
            forward_links=[f if closed else None for f, closed in zip(forward, layout.closed_forward)],
            backward_links=[backward[i + 1] if layout.closed_backward[i] else None for i in range(count - 1)] + [None],
            link_kinds=layout.link_kinds, link_resets=layout.link_resets, prefix_factors=forward,
            prefix_backward_factors=backward, prefix_kinds=layout.prefix_kinds,
            sums={"name": np.array(layout.sum_names, dtype=object), "previous": np.array(layout.sum_previous, dtype=int),
                  "branch_ends": np.array(layout.sum_branch_ends or [""] * len(layout.sum_names), dtype=object),
                  **{name: values[:, row].copy() for name, values in sum_stats.items()}},
            dead_units={"name": np.array(layout.dead_names, dtype=object),
                        "units": np.array(layout.dead_units, dtype=int), "dead_fraction": dead_fractions[:, row].copy()},
            module_types=layout.module_types, nominal_weight_variance=layout.nominal_weight_variance,
            nominal_bias_second_moment=layout.nominal_bias_second_moment, ends_in=layout.ends_in,
            norms={"name": np.array(layout.norm_names, dtype=object), "eps": np.array(layout.norm_eps),
                   "variance": norm_variances[:, row].copy(), "weight_second_moment": norm_weights[:, row].copy()},
            coverage=layout.coverage,
            attention={"name": np.array(layout.attention_names, dtype=object),
                       "keys": np.array(layout.attention_keys, dtype=int),
                       "logit_second_moment": logit_moments[:, row].copy()}))
    return records
