"""The paper's variance chain, exact at padded borders, with finite-width error bands.

Pure functions: numbers, NumPy arrays and ``LayerGeometry`` in, numbers and arrays out. A "q"
is a second moment E[·²]; a "q-map" is the second moment per spatial position, averaged over
batch and channels (a float for a Linear layer).

Paper (He et al. 2015, §2.2):
- one layer, eq. (7) before the rectifier step: E[y_l²] = n_l·Var[w_l]·E[x_l²] (+ E[b²]);
- rectifier of slope a on a zero-symmetric y: E[f(y)²] = ½(1+a²)·E[y²];
- forward chain, eq. (9) with PReLU: Var[y_L] = Var[y_1]·∏_{l=2..L} ½(1+a²)·n_l·Var[w_l];
- backward chain, eq. (13): Var[Δx_l] = n̂_l·Var[w_l]·Var[Δy_l], Var[Δy_l] = ½(1+a²)·Var[Δx_{l+1}].
Zero padding: a border output sees fewer valid taps, so the exact expectation propagates the
q-map, q_y(p) = Var[w]·(c/groups)·Σ_{valid taps δ} q̄_x(p+δ), a convolution of the q-map with
a ones kernel (docs/theory.md); the paper's chain is its interior limit.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

from .layers import LayerGeometry

QMap = Union[float, np.ndarray]

BAND_SIGMAS = 3.0


def rectifier_factor(slope: float | np.ndarray) -> float | np.ndarray:
    """Return ½(1+a²), the rectifier's second-moment factor E[f(y)²]/E[y²] (paper §2.2)."""
    return 0.5 * (1.0 + np.square(slope))


def slope_from_factor(factor: float) -> float:
    """Return the slope a ≥ 0 with ½(1+a²) = ``factor``, i.e. √(2·factor − 1) (0 below ½)."""
    return math.sqrt(max(2.0 * factor - 1.0, 0.0))


def he_std(fan: int, slope: float = 0.0) -> float:
    """Return √(2/((1+a²)·n)), the std that makes ½(1+a²)·n·Var[w] = 1 (paper eqs. 10, 14)."""
    return math.sqrt(1.0 / (float(rectifier_factor(slope)) * fan))


def layer_factor(fan: int, weight_variance: float, slope: float = 0.0) -> float:
    """Return ½(1+a²)·n·Var[w], one layer's factor in the paper's chain (1 at He's condition)."""
    return float(rectifier_factor(slope)) * fan * weight_variance


def chain_gain(fans: Sequence[int], weight_variances: Sequence[float], slopes: Sequence[float]) -> float:
    """Return ∏_l ½(1+a_l²)·n_l·Var[w_l] over the given layers (paper eq. 9, PReLU form)."""
    return math.prod(layer_factor(n, v, a) for n, v, a in zip(fans, weight_variances, slopes))


def kappa(slope: float | np.ndarray) -> float | np.ndarray:
    """Return κ(a) = (5 − 2a² + 5a⁴)/(1+a²)², the relative variance of f(y)² for Gaussian y.

    Per layer of n units, ln of the signal's second moment wanders with variance κ(a)/n
    (docs/theory.md): 5 for ReLU, 2 for a linear layer (a = 1).
    """
    a2 = np.square(slope)
    return (5.0 - 2.0 * a2 + 5.0 * a2 * a2) / np.square(1.0 + a2)


# -- q-maps through one layer -----------------------------------------------------------------
#
# The chains run many q-maps at once (the seeds of one probe, nominal and sampled weights): a
# batch of maps is an array (B, *spatial), (B,) for a Linear layer, and every per-layer number
# is (B,). One layer step is then one ones-kernel convolution of the whole batch.


def _map_means(q_maps: np.ndarray) -> np.ndarray:
    """The mean of each map of a batch (B, *spatial) → (B,)."""
    return q_maps.reshape(q_maps.shape[0], -1).mean(axis=1)


def _per_map(values: np.ndarray, spatial: int) -> np.ndarray:
    """(B,) → (B, 1, …, 1): one value per map, broadcast over its ``spatial`` dims."""
    return values.reshape(-1, *([1] * spatial))


def _as_maps(q_maps: np.ndarray, spatial: Sequence[int]) -> np.ndarray:
    """A batch as maps (B, *spatial), a read-only view: (B,) values spread uniformly over each
    map, maps broadcast to the shape."""
    values = _per_map(q_maps, len(spatial)) if q_maps.ndim == 1 else q_maps
    return np.broadcast_to(values, (q_maps.shape[0], *spatial))


def _ones_conv(q_maps: np.ndarray, geometry: LayerGeometry, transpose: bool) -> np.ndarray:
    """Σ of each map over every valid tap of the layer's kernel (transposed: over every output that
    sees an input position), for a batch of maps (B, *spatial): one float64 convolution."""
    spatial = len(geometry.kernel_size)
    conv = (F.conv1d, F.conv2d, F.conv3d)[spatial - 1]
    conv_t = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[spatial - 1]
    q = torch.tensor(np.asarray(q_maps, dtype=np.float64)).unsqueeze(1)
    kernel = torch.ones((1, 1, *geometry.kernel_size), dtype=torch.float64)
    if not transpose:
        if geometry.padding_mode == "zeros":
            out = conv(q, kernel, stride=geometry.stride, padding=geometry.padding, dilation=geometry.dilation)
        else:
            pads = [p for pad in reversed(geometry.padding) for p in (pad, pad)]
            q = F.pad(q, pads, mode=geometry.padding_mode)
            out = conv(q, kernel, stride=geometry.stride, dilation=geometry.dilation)
        return out[:, 0].numpy()
    if geometry.padding_mode != "zeros":
        # Non-zero padding wraps or mirrors the border: every input position receives its full
        # k^d taps on average, so the interior factor applies (stride spreads them as 1/s^d).
        taps = geometry.receptive / math.prod(geometry.stride)
        return _as_maps(taps * _map_means(q_maps), geometry.in_spatial).copy()
    base = [(o - 1) * s - 2 * p + d * (k - 1) + 1 for o, s, p, d, k in
            zip(q_maps.shape[1:], geometry.stride, geometry.padding, geometry.dilation, geometry.kernel_size)]
    output_padding = [i - b for i, b in zip(geometry.in_spatial, base)]
    out = conv_t(q, kernel, stride=geometry.stride, padding=geometry.padding, output_padding=output_padding,
                 dilation=geometry.dilation)
    return out[:, 0].numpy()


def _forward_step(q_inputs: np.ndarray, geometry: LayerGeometry, weight_variances: np.ndarray,
                  bias_second_moments: np.ndarray) -> np.ndarray:
    """``forward_second_moment`` for a batch: q-maps (B, *in_spatial), Var[w] and E[b²] (B,)."""
    if geometry.kind == "linear":
        return weight_variances * geometry.in_channels * _map_means(q_inputs) + bias_second_moments
    spatial = len(geometry.in_spatial)
    q_maps = _as_maps(q_inputs, geometry.in_spatial)
    channels_per_group = geometry.in_channels / geometry.groups
    return (_per_map(weight_variances * channels_per_group, spatial) * _ones_conv(q_maps, geometry, transpose=False)
            + _per_map(bias_second_moments, spatial))


def _backward_step(q_grad_outputs: np.ndarray, geometry: LayerGeometry, weight_variances: np.ndarray) -> np.ndarray:
    """``backward_second_moment`` for a batch: q-maps (B, *out_spatial), Var[w] (B,)."""
    if geometry.kind == "linear":
        return weight_variances * geometry.out_channels * _map_means(q_grad_outputs)
    spatial = len(geometry.out_spatial)
    q_maps = _as_maps(q_grad_outputs, geometry.out_spatial)
    channels_per_group = geometry.out_channels / geometry.groups
    return _per_map(weight_variances * channels_per_group, spatial) * _ones_conv(q_maps, geometry, transpose=True)


def _one_map(q: QMap) -> np.ndarray:
    """A single q-map as a batch of one."""
    return np.asarray(q, dtype=np.float64)[None]


def forward_second_moment(q_input: QMap, geometry: LayerGeometry, weight_variance: float,
                          bias_second_moment: float = 0.0) -> QMap:
    """Return the q-map of a layer's output, E_w[y²], from the q-map of its input.

    Linear: n·Var[w]·E[x²] + E[b²] (paper eq. 7 before the rectifier). Conv: per position,
    Var[w]·(c/groups)·Σ_{valid taps} q̄_x + E[b²], exact in expectation over the weights at
    padded borders too. Equals n·Var[w]·E[x²] in the interior.
    """
    q_output = _forward_step(_one_map(q_input), geometry, np.array([weight_variance], dtype=np.float64),
                             np.array([bias_second_moment], dtype=np.float64))[0]
    return float(q_output) if geometry.kind == "linear" else q_output


def backward_second_moment(q_grad_output: QMap, geometry: LayerGeometry, weight_variance: float) -> QMap:
    """Return the q-map of the gradient at a layer's input, E_w[Δx²], from that at its output.

    Linear: n̂·Var[w]·E[Δy²] (paper eq. 13). Conv: per input position, Var[w]·(d/groups)·Σ over
    the output positions that see it of q̄_Δy, a transposed convolution with a ones kernel.
    """
    q_grad_input = _backward_step(_one_map(q_grad_output), geometry, np.array([weight_variance], dtype=np.float64))[0]
    return float(q_grad_input) if geometry.kind == "linear" else q_grad_input


def _adapt(q_maps: np.ndarray, spatial: tuple[int, ...]) -> np.ndarray:
    """Carry a batch of q-maps across a shape-only link (flatten, view): exact when shapes agree or
    one side is a Linear layer, whose outputs (and input gradients) are uniform in expectation."""
    if not spatial:
        return _map_means(q_maps)
    if q_maps.shape[1:] == tuple(spatial):
        return q_maps
    return _as_maps(_map_means(q_maps), spatial)


def _across_link(q_maps: np.ndarray, factors: Any, spatial: tuple[int, ...]) -> np.ndarray:
    """Carry a batch of q-maps across a link to a layer whose maps have shape ``spatial``: adapted
    to that shape, each chain's map times its link's closed-form factor (one factor or B)."""
    adapted = _adapt(q_maps, spatial)
    factor_per_chain = np.broadcast_to(np.asarray(factors, dtype=np.float64), (adapted.shape[0],))
    return _per_map(factor_per_chain, adapted.ndim - 1) * adapted


def _exact_over_interior(exact: np.ndarray, interior: np.ndarray) -> np.ndarray:
    """The padding factor of each chain: exact/interior where the interior value is positive and
    finite, else 1."""
    finite = (interior > 0) & (interior < np.inf)
    return np.where(finite, exact / np.where(finite, interior, 1.0), 1.0)


# -- the chains over a network ----------------------------------------------------------------


def forward_chains(geometries: Sequence[LayerGeometry], weight_variances: np.ndarray,
                   bias_second_moments: np.ndarray, link_factors: Sequence[np.ndarray | None],
                   measured_input_maps: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """``forward_chain`` for B chains through the same layers at once (the seeds of one probe).

    ``weight_variances`` and ``bias_second_moments`` are (B, L); ``link_factors[l]`` is None (every
    chain re-anchors there) or the B factors; ``measured_input_maps[l]`` the B maps (B, *spatial).
    Returns (predicted E[y_l²], padding factors), each (B, L).
    """
    weight_variances = np.asarray(weight_variances, dtype=np.float64)
    bias_second_moments = np.asarray(bias_second_moments, dtype=np.float64)
    chains, count = weight_variances.shape
    predicted, padding = np.zeros((chains, count)), np.ones((chains, count))
    q_output = np.zeros(chains)
    for index, geometry in enumerate(geometries):
        if index == 0 or link_factors[index] is None:
            q_input = np.asarray(measured_input_maps[index], dtype=np.float64)
        else:
            q_input = _across_link(q_output, link_factors[index], geometry.in_spatial)
        q_output = _forward_step(q_input, geometry, weight_variances[:, index], bias_second_moments[:, index])
        interior = weight_variances[:, index] * geometry.fan_in * _map_means(q_input) + bias_second_moments[:, index]
        predicted[:, index] = _map_means(q_output)
        padding[:, index] = _exact_over_interior(predicted[:, index], interior)
    return predicted, padding


def forward_chain(geometries: Sequence[LayerGeometry], weight_variances: Sequence[float],
                  bias_second_moments: Sequence[float], link_factors: Sequence[float | None],
                  measured_input_maps: Sequence[QMap]) -> tuple[np.ndarray, np.ndarray]:
    """Return (predicted E[y_l²] for every layer, padding factor of every layer).

    ``link_factors[l]`` is the closed-form factor of the link from layer l−1's output to layer
    l's input (½(1+a²) for a rectifier, 1 for a view); ``None`` marks a link with no closed form
    (pooling, normalization, a residual sum), where the chain re-anchors on the measured input
    of layer l. The first layer always starts from its measured input q-map. The padding factor
    is exact/interior for each layer's own step (1 for Linear layers and unpadded convs).
    """
    predicted, padding = forward_chains(geometries, np.asarray(weight_variances, dtype=np.float64)[None],
                                        np.asarray(bias_second_moments, dtype=np.float64)[None],
                                        link_factors, [_one_map(q) for q in measured_input_maps])
    return predicted[0], padding[0]


def backward_chains(geometries: Sequence[LayerGeometry], weight_variances: np.ndarray,
                    link_factors: Sequence[np.ndarray | None],
                    measured_grad_output_maps: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``backward_chain`` for B chains through the same layers at once; arguments as in
    ``forward_chains``. Returns (E[Δx_l²], E[Δy_l²], padding factors), each (B, L)."""
    weight_variances = np.asarray(weight_variances, dtype=np.float64)
    chains, count = weight_variances.shape
    grad_input, grad_output, padding = np.zeros((chains, count)), np.zeros((chains, count)), np.ones((chains, count))
    q_grad_input = np.zeros(chains)
    for index in reversed(range(count)):
        geometry = geometries[index]
        if index == count - 1 or link_factors[index] is None:
            q_grad_output = np.asarray(measured_grad_output_maps[index], dtype=np.float64)
        else:
            q_grad_output = _across_link(q_grad_input, link_factors[index], geometry.out_spatial)
        q_grad_input = _backward_step(q_grad_output, geometry, weight_variances[:, index])
        grad_output[:, index] = _map_means(q_grad_output)
        grad_input[:, index] = _map_means(q_grad_input)
        if geometry.kind == "conv":
            interior = (weight_variances[:, index] * geometry.fan_out / math.prod(geometry.stride)
                        * grad_output[:, index])
            padding[:, index] = _exact_over_interior(grad_input[:, index], interior)
    return grad_input, grad_output, padding


def backward_chain(geometries: Sequence[LayerGeometry], weight_variances: Sequence[float],
                   link_factors: Sequence[float | None],
                   measured_grad_output_maps: Sequence[QMap]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return predicted E[Δx_l²] at every layer's input, E[Δy_l²] at its output, and padding factors.

    Runs from the last layer down. ``link_factors[l]`` is the factor from the gradient at layer
    l+1's input to that at layer l's output (½(1+a²) for the rectifier between them); ``None``
    re-anchors on the measured gradient at layer l's output, as does the last layer. The padding
    factor is exact/interior for each layer's own step, the interior being
    Var[w]·(d/groups)·k^d/stride^d·E[Δy²] (each input position feeds k^d/stride^d outputs).
    """
    grad_input, grad_output, padding = backward_chains(geometries, np.asarray(weight_variances, dtype=np.float64)[None],
                                                       link_factors, [_one_map(q) for q in measured_grad_output_maps])
    return grad_input[0], grad_output[0], padding[0]


# -- finite-width bands ----------------------------------------------------------------------


def gaussian_unit_log_variance(units: float | np.ndarray, slope: float | None = None) -> float | np.ndarray:
    """Return Var[ln of a second moment averaged over ``units`` i.i.d. Gaussian units] for one example
    at one position: 2/n for a layer's outputs (χ²: Var[z²]/E[z²]² = 2), κ(a)/n for rectified units.

    The single-example limit of what ``forward_log_variance`` takes per layer (Hanin & Rolnick 2018):
    a batch of distinct examples, or positions of a map, can only average it down. The probe uses it
    where a layer has fewer than two units to measure the spread over.
    """
    factor = 2.0 if slope is None else kappa(slope)
    return factor / np.asarray(units, dtype=np.float64)


def forward_log_variance(output_terms: Sequence[float], input_terms: Sequence[float],
                         anchors: Sequence[bool]) -> np.ndarray:
    """Return Var[ln(measured E[y_l²] / predicted)] across seeds for every layer of a chain.

    ``output_terms[l]`` is v(y_l), the variance of ln E[y_l²] given layer l's input (its weights'
    doing alone); ``input_terms[l]`` is v(x_l), that of ln E[x_l²] given layer l−1's input: all that
    layer l−1's weights do to what layer l sees, its rectifier included; ``anchors[l]``: the chain
    re-anchors on the measured input of layer l (always at l = 0). Each layer's weights are drawn
    independently, so the variances add along the chain, layer l−1's own term replaced by what it
    becomes through the link:

        σ²_l = v(y_l) at an anchor, else σ²_{l−1} − v(y_{l−1}) + v(x_l) + v(y_l).

    For one example v(y) = 2/n and v(x) = κ(a)/n, so a run of equal widths adds κ(a)/n per layer
    (``gaussian_unit_log_variance``); the probe measures both terms over the layer's units
    (docs/theory.md).
    """
    variances, total = np.zeros(len(output_terms)), 0.0
    for index, output in enumerate(output_terms):
        if index == 0 or anchors[index]:
            total = float(output)
        else:
            total += float(input_terms[index]) - float(output_terms[index - 1]) + float(output)
        variances[index] = total
    return variances


def backward_log_variance(grad_input_terms: Sequence[float], grad_output_terms: Sequence[float],
                          anchors: Sequence[bool]) -> np.ndarray:
    """Return Var[ln(measured E[Δx_l²] / predicted)] across seeds for every layer's input gradient.

    Mirror of ``forward_log_variance``: ``grad_input_terms[l]`` is v(Δx_l) (layer l's weights
    carrying Δy_l back), ``grad_output_terms[l]`` v(Δy_l) (what layer l+1's weights and layer l's
    rectifier mask do to the gradient at layer l's output); ``anchors[l]``: the chain re-anchors on
    the measured gradient at layer l's output (always at the last layer):

        σ²_l = v(Δx_l) at an anchor, else σ²_{l+1} − v(Δx_{l+1}) + v(Δy_l) + v(Δx_l).
    """
    count = len(grad_input_terms)
    variances, total = np.zeros(count), 0.0
    for index in reversed(range(count)):
        if index == count - 1 or anchors[index]:
            total = float(grad_input_terms[index])
        else:
            total += (float(grad_output_terms[index]) - float(grad_input_terms[index + 1])
                      + float(grad_input_terms[index]))
        variances[index] = total
    return variances


def log10_band(log_variance: float | np.ndarray, seeds: int = 1,
               sigmas: float = BAND_SIGMAS) -> tuple[np.ndarray, np.ndarray]:
    """Return (low, high) of the band on the seed-mean of log10(measured/predicted).

    ln of a second moment is ≈ Gaussian with variance σ² and mean −σ²/2 (its expectation is
    exact), so the band is −σ²/2 ± sigmas·σ/√seeds, in decades.
    """
    log_variance = np.asarray(log_variance, dtype=np.float64)
    center = -0.5 * log_variance / math.log(10.0)
    half = sigmas * np.sqrt(log_variance / seeds) / math.log(10.0)
    return center - half, center + half


# -- Gaussian expectations of activations (Gauss–Hermite quadrature) ---------------------------

# Probabilists' Gauss–Hermite rule: E[h(z)] for z ~ N(0, 1) as Σ w_i·h(z_i), exact for polynomials
# of degree < 2·80; for the smooth activations' factors on a Gaussian pre-activation.
HERMITE_NODES, HERMITE_WEIGHTS = np.polynomial.hermite_e.hermegauss(80)
HERMITE_WEIGHTS = HERMITE_WEIGHTS / HERMITE_WEIGHTS.sum()


def unit_second_moment(function: Callable[[torch.Tensor], torch.Tensor]) -> float | None:
    """E[f(z)²] for z ~ N(0, 1) of an elementwise function, by the Gauss–Hermite rule on the host in
    float64; None when the function does not take a plain tensor. For an activation this is the
    factor c of He's condition c·n·Var[w] = 1."""
    nodes = torch.as_tensor(HERMITE_NODES, dtype=torch.float64)
    try:
        with torch.no_grad(), torch._C.DisableTorchFunction():
            values = function(nodes.clone()).double()
    except Exception:  # a function that takes something else: not one we can weigh
        return None
    return float((torch.as_tensor(HERMITE_WEIGHTS) * values.square()).sum())


_HERMITE_ON_DEVICE: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}


def _hermite_rule(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The quadrature nodes and weights on ``device``, copied there once per process (a host-to-GPU
    copy synchronizes; once per layer it would stall the GPU at every smooth activation)."""
    if device not in _HERMITE_ON_DEVICE:
        _HERMITE_ON_DEVICE[device] = (torch.as_tensor(HERMITE_NODES, dtype=torch.float32, device=device),
                                      torch.as_tensor(HERMITE_WEIGHTS, dtype=torch.float32, device=device))
    return _HERMITE_ON_DEVICE[device]


def gaussian_activation_factors(func: Callable, args: tuple, kwargs: dict, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
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
