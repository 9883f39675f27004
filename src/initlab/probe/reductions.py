"""The statistics of a probe: raw reductions on the device, arithmetic on the host.

A statistic is a *recipe*: a float known on the host, a ``_Slot`` (a raw reduction taken on the
device: Σx², a per-channel Σx, a Welford (Var, mean) pair) or a ``_Derived`` (host arithmetic on
other recipes, done after the probe's one transfer). The device runs the reductions alone. A
division, square or mean of a 0-d tensor would be one kernel launch each on a GPU, and a probe
launched about forty of them per layer; as host arithmetic on the transferred sums they cost
nothing there.

Each statistic reads as its formula (E[x²] = Σx²/N: ``_second_moment``); the speed tricks sit
behind one seam each: ``_uses_welford`` (one fused ``var_mean`` pass on a GPU, dot product and sum
on a CPU), ``_Scratch`` (one reused buffer for the elementwise squares), ``_reads_channels_once``
(a CPU's per-channel Σx² from each (example, channel) row's L2 norm, ``_channel_square_sums``),
``_reads_features_once`` (a CPU's per-feature moments in one op, ``_feature_moments``),
``_shares_channel_grams`` (a CPU's per-channel Σy² and examples' Gram from one product, ``_channel_grams``),
``_accumulates_examples`` (a CPU's Σ over the batch of x² as a running sum one example at a time,
``_example_square_sums``), ``_RawStore.flat``
(one concatenation of every reduction) and ``_parameter_second_moments`` (one multi-tensor norm).
With ``stacked`` = S > 1 seeds stacked side by side (``stacking``) every statistic is per seed.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable

import numpy as np
import torch

from ..theory import rectifier_factor


def _float_data(tensor: torch.Tensor) -> torch.Tensor:
    """The tensor detached, in float32 unless it is already float32 or float64."""
    data = tensor.detach() if tensor.requires_grad else tensor
    return data if data.dtype in (torch.float32, torch.float64) else data.float()


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

    With ``stacked`` = S stacked seeds each reduction has the seed along dim 0, and the flat tensor
    is (S, size): one row per seed, the same slots in each.
    """

    def __init__(self, stacked: int = 1) -> None:
        self.stacked = stacked
        self.tensors: list[torch.Tensor] = []
        self.size = 0

    def add(self, tensor: torch.Tensor) -> _Slot:
        slot = _Slot(self.size, tuple(tensor.shape[1:]) if self.stacked > 1 else tuple(tensor.shape))
        self.tensors.append(tensor.detach() if tensor.requires_grad else tensor)
        self.size += slot.size
        return slot

    def flat(self) -> torch.Tensor:
        """All reductions side by side in float32: one cat (which promotes mixed dtypes), one cast.

        One seed: ``flatten_dense_tensors``, the flatten-and-cat in one C++ call that DDP uses
        for its buckets (a Python ``reshape`` per reduction cost ~1 µs each, 400 per probe)."""
        if self.stacked == 1:
            if len(self.tensors) == 1:  # flatten_dense_tensors would return a view of it, not a copy
                return self.tensors[0].reshape(-1).to(torch.float32, copy=True)
            return torch._utils._flatten_dense_tensors(self.tensors).to(torch.float32)
        return torch.cat([t.reshape(self.stacked, -1) for t in self.tensors], dim=1).to(torch.float32)


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


def _dead_fraction(unit_sums: np.ndarray) -> np.ndarray:
    """The fraction of a ReLU's units that are 0 on every element: the output is ≥ 0, so a unit is
    dead exactly when its sum is 0 (a sum of non-negative floats cancels nothing)."""
    return (_per_seed(unit_sums) <= 0).mean(axis=1)


def _product(*factors: Any) -> Any:
    return functools.reduce(np.multiply, factors)


def _prelu_factor(slopes: np.ndarray) -> np.ndarray:
    """½(1+a²) averaged over the channels' slopes, per seed: the rectifier factor of eq. 10."""
    return _mean_per_seed(rectifier_factor(slopes))


def _seed_blocks(data: torch.Tensor, stacked: int) -> torch.Tensor:
    """A stacked tensor (N, S·C, ...) as (N, S, C·...): seed s's elements in [:, s] (``stacking``)."""
    return data.reshape(data.shape[0], stacked, -1)


def _seed_sums(blocks: torch.Tensor) -> torch.Tensor:
    """Σ over dims 0 and 2 of (N, S, M): the contiguous inner dim first, a strided pass is slower."""
    return blocks.sum(dim=2).sum(dim=0)


def _uses_welford(data: torch.Tensor) -> bool:
    """Reduce with one Welford pass (``torch.var_mean``) rather than a dot product and a sum.

    On a GPU one kernel beats two; on a CPU ``var_mean`` is 10–25× slower than a dot product and
    a sum together (measured on this project's 2-core CI machine, 4 MB tensors)."""
    return not data.is_cpu


def _moments(store: _RawStore, tensor: torch.Tensor, stacked: int = 1) -> tuple[Any, Any]:
    """(E[x], E[x²]) over all elements; per seed with S stacked seeds (seeds along dim 1).

    GPU: Var and E[x] in one Welford pass, E[x²] = Var + E[x]². CPU: Σx² as a dot product and Σx
    as a sum, divided on the host."""
    data = _float_data(tensor)
    if _uses_welford(data):
        blocks = _seed_blocks(data, stacked) if stacked > 1 else data
        variance, mean = torch.var_mean(blocks, dim=(0, 2) if stacked > 1 else None, correction=0)
        mean_slot = store.add(mean)
        return mean_slot, _Derived(_second_from_moments, (store.add(variance), mean_slot))
    return _mean(store, data, stacked), _second_moment(store, data, stacked)


def _variance_and_second_moment(store: _RawStore, tensor: torch.Tensor, stacked: int = 1) -> tuple[Any, Any]:
    """(Var[x], E[x²]) over all elements: Var = E[x²] − E[x]², on the host in float64."""
    mean, second = _moments(store, tensor, stacked)
    return _Derived(_variance_from_moments, (second, mean)), second


def _mean(store: _RawStore, tensor: torch.Tensor, stacked: int = 1) -> _Derived:
    """E[x] over all elements, as one sum divided on the host; per seed with S stacked seeds."""
    data = _float_data(tensor)
    if stacked > 1:
        blocks = _seed_blocks(data, stacked)
        return _divided(store.add(_seed_sums(blocks)), blocks.shape[0] * blocks.shape[2])
    return _divided(store.add(data.sum()), data.numel())


def _square_sums(tensor: torch.Tensor, stacked: int = 1) -> tuple[torch.Tensor, int]:
    """(Σx² over all elements as a device tensor, the count of elements it sums): one dot product
    (one read of the tensor, no temporary); per seed (S,) with S stacked seeds."""
    data = _float_data(tensor)
    if stacked > 1:
        blocks = _seed_blocks(data, stacked)
        return _seed_sums(blocks.square()), blocks.shape[0] * blocks.shape[2]
    flat = data.reshape(-1)
    return torch.dot(flat, flat), flat.numel()


def _second_moment(store: _RawStore, tensor: torch.Tensor, stacked: int = 1) -> _Derived:
    """E[x²] over all elements: ``_square_sums`` on the device, the division on the host."""
    sums, count = _square_sums(tensor, stacked)
    return _divided(store.add(sums), count)


def _device_second_moment(tensor: torch.Tensor, stacked: int = 1) -> torch.Tensor:
    """E[x²] as a device tensor, for arithmetic that stays on the device (``_smooth_factors``)."""
    sums, count = _square_sums(tensor, stacked)
    return sums / count


def _parameter_moments(store: _RawStore, parameter: torch.Tensor, stacked: int) -> tuple[Any, Any]:
    """(Var, E[x²]) of a weight, bias or weight gradient; per seed when S seeds are stacked along
    its dim 0."""
    data = _float_data(parameter)
    return _variance_and_second_moment(store, data.reshape(1, stacked, -1) if stacked > 1 else data, stacked)


def _parameter_second_moments(store: _RawStore, parameters: list[torch.Tensor], stacked: int) -> list[_Derived]:
    """E[w²] of each parameter from its L2 norm: one multi-tensor kernel for all of them
    (``torch._foreach_norm``, the kernel ``clip_grad_norm_`` uses); per seed row with stacked seeds."""
    data = [_float_data(p) for p in parameters]
    if stacked > 1:
        rows = [d.reshape(stacked, -1) for d in data]
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

    @classmethod
    def is_small(cls, data: torch.Tensor) -> bool:
        """At most ``SMALL_BYTES``: a tensor on which an op's fixed cost outweighs its read (the
        threshold of the square here, ``_channel_square_sums`` and ``_reads_features_once``)."""
        return data.numel() * data.element_size() <= cls.SMALL_BYTES

    def square(self, data: torch.Tensor) -> torch.Tensor:
        if self.is_small(data):
            return torch.mul(data, data)
        if (self.buffer is None or self.buffer.numel() < data.numel() or self.buffer.dtype != data.dtype
                or self.buffer.device != data.device):
            self.buffer = torch.empty(data.numel(), dtype=data.dtype, device=data.device)
        return torch.mul(data, data, out=self.buffer[:data.numel()].view(data.shape))


def _position_moments(store: _RawStore, tensor: torch.Tensor, spatial_dims: int, scratch: _Scratch,
                      stacked: int = 1) -> tuple[Any, Any, Any, Any]:
    """(E[x²] per spatial position over batch and channels, overall E[x²], overall E[x] or None, E[x²]
    per channel or None where the tensor has no batch and channel dims).

    GPU: per-position Var and E[x] in one Welford pass, which also gives E[x]. CPU: one
    elementwise square into the scratch buffer and one reduction over the leading dims (no E[x]).
    The overall moments are means of the maps: every position holds the same number of elements.
    With S stacked seeds each is per seed.
    """
    data = _float_data(tensor)
    spatial = tuple(data.shape[data.dim() - spatial_dims:])
    positions = math.prod(spatial)
    row = (stacked,) if stacked > 1 else ()
    if _uses_welford(data):
        view = data.reshape(data.shape[0], stacked, -1, positions) if stacked > 1 else data.reshape(-1, positions)
        variance, mean = torch.var_mean(view, dim=(0, 2) if stacked > 1 else 0, correction=0)
        mean_map = store.add(mean.view(*row, *spatial))
        second_map = _Derived(_second_from_moments, (store.add(variance.view(*row, *spatial)), mean_map))
        units = _unit_second_moments(store, data, 1, stacked) if data.dim() == spatial_dims + 2 else None
        return second_map, _Derived(_mean_per_seed, (second_map,)), _Derived(_mean_per_seed, (mean_map,)), units
    if data.dim() == spatial_dims + 2:
        # one reduction over the batch gives the (channel, position) map; the position map and the
        # per-channel moments are its two small sums
        batch, channels = data.shape[0], data.shape[1] // stacked
        examples = data.contiguous().view(batch, stacked * channels * positions)
        if _accumulates_examples(examples):
            by_channel = _example_square_sums(examples, scratch)
        else:
            by_channel = scratch.square(examples).sum(0)
        by_channel = by_channel.view(*row, channels, positions)
        sums, count = by_channel.sum(-2), batch * channels
        units = _divided(store.add(by_channel.sum(-1)), batch * positions)
    else:
        squares = scratch.square(data.contiguous())
        units = None
        if stacked > 1:
            blocks = squares.view(data.shape[0], stacked, -1, positions)
            sums, count = blocks.sum(dim=2).sum(dim=0), blocks.shape[0] * blocks.shape[2]
        else:
            squares = squares.view(-1, positions)
            sums, count = squares.sum(0), squares.shape[0]
    second_map = _divided(store.add(sums.view(*row, *spatial)), count)
    return second_map, _Derived(_mean_per_seed, (second_map,)), None, units


EXAMPLE_ELEMENTS = 1 << 16  # an example at least this large is accumulated (``_accumulates_examples``)


def _accumulates_examples(examples: torch.Tensor) -> bool:
    """Take a CPU (N, M) tensor's Σ over examples of x² as ``_example_square_sums`` where each example
    holds at least ``EXAMPLE_ELEMENTS``: the square and sum over a scratch buffer as large as the
    tensor write and reread all of it, while a running sum the size of one example stays in cache.
    Measured on this project's 2-core CPU, tensors not in cache: 2.22 against 1.05 ms for 4×256×56²,
    0.76 against 0.64 for 8×256×28² (200 K an example); below the threshold the N dispatches cost
    more (0.52 against 0.89 ms for 64×16×32², 16 K an example)."""
    return not _uses_welford(examples) and examples.dim() == 2 and examples.shape[1] >= EXAMPLE_ELEMENTS


def _example_square_sums(examples: torch.Tensor, scratch: _Scratch) -> torch.Tensor:
    """Σ over dim 0 of x² for an (N, M) tensor as a running sum, one example at a time, in the
    scratch buffer (valid until its next square). The plain formula: ``examples.square().sum(0)``."""
    total = scratch.square(examples[0])
    for example in examples[1:]:
        total.addcmul_(example, example)
    return total


def _unit_sums(store: _RawStore, tensor: torch.Tensor, dim: int, stacked: int = 1) -> tuple[_Slot, int]:
    """(Σx of each unit, channel after a conv, feature otherwise, over every other dimension, the
    count of elements each sums); per seed with S stacked seeds (units along dim 1). One reduction."""
    data = _float_data(tensor)
    if stacked > 1:
        blocks = data.reshape(data.shape[0], stacked, data.shape[1] // stacked, -1)
        return store.add(blocks.sum(dim=(0, 3))), blocks.shape[0] * blocks.shape[3]
    if data.dim() <= 1:
        return store.add(data), 1
    return store.add(data.sum(dim=[d for d in range(data.dim()) if d != dim])), data.numel() // data.shape[dim]


def _reads_channels_once(data: torch.Tensor, dim: int) -> bool:
    """Take a CPU tensor's per-channel Σx² as ``_channel_square_sums`` (units along dim 1 of a
    contiguous (N, C, ...) tensor): one read and no temporary, against a square into the scratch
    buffer and its sum (A/B on plain-30 at batch 64: the probe 4 % faster)."""
    return not _uses_welford(data) and dim == 1 and data.dim() >= 3 and data.is_contiguous()


def _channel_square_sums(data: torch.Tensor) -> torch.Tensor:
    """Σ over every dim but 1 of x² for a contiguous (N, C, ...) tensor, from its (n, c) rows of P
    positions: each row's L2 norm (a reduction over the contiguous dim), squared and summed over n.
    The plain formula: ``data.square().sum(dim=(0, 2, ...))``. Measured on this project's 2-core CPU
    (best of three medians, tensors not in cache) against each row's dot product with itself as one
    batched matrix product (N·C products of 1×P by P×1), whose kernel is slow on short rows: 62
    against 153 µs for 64×32×16², 34 against 47 for 64×64×8², 135 against 296 for 4×1024×14²; equal
    within 6 % from P = 1024 up (140 against 135 for 64×16×32², 582 against 551 for 4×256×56²). At
    ``_Scratch.SMALL_BYTES`` and below the product stays: one op fewer (6.2 against 7.1 for 2×16×8²)."""
    if _Scratch.is_small(data):
        rows = data.reshape(data.shape[0] * data.shape[1], 1, -1)
        return torch.bmm(rows, rows.transpose(1, 2)).view(data.shape[0], data.shape[1]).sum(0)
    rows = data.reshape(data.shape[0] * data.shape[1], -1)
    return torch.linalg.vector_norm(rows, dim=1).view(data.shape[0], data.shape[1]).square().sum(0)


def _unit_second_moments(store: _RawStore, tensor: torch.Tensor, dim: int, stacked: int = 1,
                         squares: torch.Tensor | None = None) -> _Derived:
    """E[x²] of each unit (channel after a conv, feature otherwise) over every other dimension, (S, U)
    per seed; ``squares``: the tensor's elementwise squares where a pass already made them.

    CPU: Σx² per unit as a sum of the squares, or for channels along dim 1 ``_channel_square_sums``.
    GPU: the units' L2 norms in one kernel, squared on the host (``_parameter_second_moments``' trick)."""
    data = _float_data(tensor)
    if squares is None and _reads_channels_once(data, dim):
        sums = _channel_square_sums(data)
        return _divided(store.add(sums.view(stacked, -1) if stacked > 1 else sums), data.numel() // data.shape[1])
    if data.dim() <= 1:
        return _divided(store.add(data.square().reshape(stacked, -1) if stacked > 1 else data.square()), 1)
    if stacked > 1:
        data = data.reshape(data.shape[0], stacked, data.shape[1] // stacked, -1)
        squares = squares.view(data.shape) if squares is not None else None
        dims: tuple[int, ...] = (0, 3)
    else:
        dims = tuple(d for d in range(data.dim()) if d != dim)
    count = data.numel() // (math.prod(data.shape[d] for d in range(data.dim()) if d not in dims))
    if squares is None and _uses_welford(data):
        return _divided(_Derived(np.square, (store.add(torch.linalg.vector_norm(data, dim=dims)),)), count)
    if squares is None:
        squares = torch.mul(data, data)
    return _divided(store.add(squares.sum(dim=dims)), count)


def _reads_features_once(data: torch.Tensor, dim: int, stacked: int = 1) -> bool:
    """Take a CPU tensor's per-unit moments as ``_feature_moments`` where the units are its last dim
    (a Linear layer's features), it is larger than ``_Scratch.SMALL_BYTES`` and one seed is probed:
    one op giving each feature's mean and variance, against a square into the scratch buffer, its
    sum per feature and a sum per feature for the means. Measured on this project's 2-core CPU,
    tensors not in cache: 43 against 90 µs for 512×128, 106 against 142 µs for 512×512, 1.1 against
    2.2 ms for 4096×768; at 64 KB and below its fixed cost loses (14.5 against 11.4 µs for 64×256).
    Channels along dim 1 of an (N, C, H, W) tensor are 3–7× slower this way (``_reads_channels_once``)."""
    return (not _uses_welford(data) and stacked == 1 and data.dim() >= 2 and dim == data.dim() - 1
            and not _Scratch.is_small(data))


def _feature_moments(data: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(E[x], Var[x]) of each feature (the last dim) of a tensor over every other dim:
    ``torch.batch_norm_update_stats`` of its (rows, features) view (a copy where the layout has
    none): batch normalization's own per-channel statistics kernel, fast on this layout, where the
    features are the contiguous dim (``_reads_features_once``). The plain formula: ``x.mean(dims)``
    and ``x.var(dims, correction=0)``; E[x²] = Var + E[x]² on the host."""
    return torch.batch_norm_update_stats(data.reshape(-1, data.shape[-1]), None, None, 0.0)


def _moments_with_units(store: _RawStore, tensor: torch.Tensor, dim: int, scratch: _Scratch,
                        stacked: int = 1, mean: bool = True) -> tuple[Any, Any, Any, Any]:
    """(E[x] or None without ``mean``, E[x²], E[x²] per unit along ``dim``, E[x] per unit where it
    came free, else None); per seed with S stacked seeds.

    E[x²] is the units' mean (each unit holds the same number of elements). CPU: features along
    the last dim in one op (``_feature_moments``, which gives their means too); else one square
    into the scratch buffer summed per unit, and one sum for E[x]. GPU: the units' norms, and with
    ``mean`` ``_moments``' Welford pass instead. Elsewhere E[x] costs one more read of the tensor on
    a CPU: only the elementwise variances need it (``elementwise_variances``), no verdict does."""
    data = _float_data(tensor)
    if data.dim() <= 1 or (mean and _uses_welford(data)):
        first, second = _moments(store, data, stacked)
        return first if mean else None, second, _unit_second_moments(store, data, dim, stacked), None
    if _reads_features_once(data, dim, stacked):
        unit_means, unit_variances = map(store.add, _feature_moments(data))
        units = _Derived(_second_from_moments, (unit_variances, unit_means))
        first = _Derived(_mean_per_seed, (unit_means,)) if mean else None
        return first, _Derived(_mean_per_seed, (units,)), units, unit_means
    squares = None if _uses_welford(data) or _reads_channels_once(data, dim) else scratch.square(data.contiguous())
    units = _unit_second_moments(store, data, dim, stacked, squares)
    return _mean(store, data, stacked) if mean else None, _Derived(_mean_per_seed, (units,)), units, None


CORRELATION_EXAMPLES = 16  # the examples whose pairwise inner products a layer's output records


def _example_gram(store: _RawStore, tensor: torch.Tensor, stacked: int = 1) -> _Slot | None:
    """The Gram matrix Σ_d y_b,d·y_c,d of the first ``CORRELATION_EXAMPLES`` examples' flattened
    outputs, (S, k, k) per seed; None for fewer than two examples. One k×k matrix product per layer
    (k²·D multiply-adds: a sixteenth of the whole batch's at batch 64)."""
    data = _float_data(tensor)
    if data.dim() < 2 or data.shape[0] < 2:
        return None
    head = data[:CORRELATION_EXAMPLES]
    if stacked > 1:
        blocks = head.reshape(head.shape[0], stacked, -1)
        return store.add(torch.einsum("bsd,csd->sbc", blocks, blocks))
    flat = head.reshape(head.shape[0], -1)
    return store.add(flat @ flat.T)


GRAM_POSITIONS = 64  # a channel with fewer positions takes its Gram apart (``_shares_channel_grams``)


def _shares_channel_grams(data: torch.Tensor, dim: int, stacked: int = 1) -> bool:
    """Take a CPU layer output's per-channel Σy² and its examples' Gram matrix from one batched
    product (``_channel_grams``): channels along dim 1 of a contiguous (N, C, ...) CPU tensor
    (``_reads_channels_once``), a batch of at most ``CORRELATION_EXAMPLES`` (so the Gram covers every
    example), at least ``GRAM_POSITIONS`` positions per channel, one seed. One read in place of two, and a (k × D) by (D × k) product with
    D in the hundreds of thousands is slow on its own. Measured on this project's 2-core CPU, tensors
    not in cache, the per-channel sums (then batched row dot products) and the Gram against the shared
    product: 2.58 against 0.77 ms for 4×256×56², 1.06 against 0.55 for 4×512×28², 0.97 against 0.57
    for 16×64×32², 0.037 against 0.028 for 2×16×8²; with 49 positions it loses (0.32 against 0.39 for
    4×2048×7²)."""
    return (_reads_channels_once(data, dim) and stacked == 1 and 2 <= data.shape[0] <= CORRELATION_EXAMPLES
            and math.prod(data.shape[2:]) >= GRAM_POSITIONS)


def _channel_grams(data: torch.Tensor) -> torch.Tensor:
    """Each channel's Gram matrix over the examples, G_c[n, m] = Σ_p y_n,c,p·y_m,c,p, (C, N, N), of a
    contiguous (N, C, ...) tensor: one batched matrix product over the channels of (N × P) by
    (P × N), read in place. Their sum over c is the examples' Gram matrix Σ_d y_n,d·y_m,d, and each
    diagonal summed over n is that channel's Σy². The plain formulas: ``flat @ flat.T`` of the
    (N, C·P) flattening and ``data.square().sum(dim=(0, 2, ...))``."""
    per_channel = data.reshape(data.shape[0], data.shape[1], -1).transpose(0, 1)
    return torch.bmm(per_channel, per_channel.transpose(1, 2))


def _output_moments(store: _RawStore, tensor: torch.Tensor, dim: int, scratch: _Scratch, stacked: int = 1,
                    mean: bool = True) -> tuple[Any, Any, Any, _Slot | None]:
    """(E[y] or None without ``mean``, E[y²], E[y²] per unit along ``dim``, the examples' Gram
    matrix or None) of a layer's output: ``_moments_with_units`` and ``_example_gram``, or both the
    per-unit moments and the Gram from ``_channel_grams`` where ``_shares_channel_grams``."""
    data = _float_data(tensor)
    if _shares_channel_grams(data, dim, stacked):
        grams = _channel_grams(data)
        units = _divided(store.add(grams.diagonal(dim1=1, dim2=2).sum(1)), data.numel() // data.shape[1])
        first = _mean(store, data) if mean else None
        return first, _Derived(_mean_per_seed, (units,)), units, store.add(grams.sum(0))
    first, second, units, _ = _moments_with_units(store, data, dim, scratch, stacked, mean)
    return first, second, units, _example_gram(store, data, stacked)


def _unit_log_variance(unit_second_moments: np.ndarray) -> np.ndarray:
    """Var[ln of the mean over U units] of a second moment whose units are exchangeable, per seed:
    v = D/(1−D), D = s²/(U·m²), from the units' second moments (mean m, sample variance s²).

    Each unit's weights are drawn independently, so given the layer's input the units are i.i.d. and
    the seed-to-seed variance of their mean is s²/U whatever the batch, positions or correlations
    between examples (docs/theory.md, "Finite-width bands"). D/(1−D) replaces m² by its unbiased
    estimate m² − s²/U (m² itself is biased up by as much, and the same units set both); D is
    capped at ½ (a step wandering by more than a nat either way). NaN for fewer than 2 units."""
    rows = _per_seed(np.asarray(unit_second_moments, dtype=np.float64))
    if rows.shape[1] < 2:
        return np.full(len(rows), np.nan)
    mean = rows.mean(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        dispersion = np.minimum(rows.var(axis=1, ddof=1) / (rows.shape[1] * np.square(mean)), 0.5)
    return dispersion / (1.0 - dispersion)


def _unit_dim(tensor: torch.Tensor, after_conv: bool) -> int:
    """Return the dimension that indexes units: channels (dim 1) after a conv, else features (last)."""
    return 1 if after_conv and tensor.dim() >= 3 else tensor.dim() - 1
