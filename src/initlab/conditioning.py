"""Conditioning of the input–output Jacobian J at init: the spread of its squared singular values.

A net can keep every layer's E[y²] right (He's condition: the *mean* squared singular value of J
is 1 per layer) while J stretches some directions far more than others; learning then follows
the stretched ones. The spectrum of JJᵀ is summarized by its first two moments over the N output
coordinates, m₁ = tr(JJᵀ)/N and m₂ = tr((JJᵀ)²)/N, and its spread

    s² = m₂/m₁² − 1        (0 for an isometry up to scale: dynamical isometry)

For a chain of layers with i.i.d. weights (Pennington, Schoenholz, Ganguli 2017, by free
probability) the moments propagate as

    Gaussian weight layer n → n':   s² ← ((n'+1)/n)·(1 + s²)      (any n·Var[w]; exact in expectation
                                                                      by Wick's theorem, → n'/n wide)
    orthogonal layer, n' ≤ n:       s² ← (n'/n)·s²                  (a free compression: the spectrum's
                                                                      free cumulants κ_k scale by t^(k−1))
    orthogonal layer, n' > n:       s² ← (n'/n)·(1 + s²) − 1        (the same spectrum and n' − n zeros)
    rectifier of slope a:           s² ← s² + v(a),  v(a) = 2(1+a⁴)/(1+a²)² − 1      (ReLU: 1)

so a wide square Gaussian ReLU net of L layers (L − 1 rectifiers between them) has s² = 2L − 1,
linear in depth, and an orthogonal one L − 1; a linear orthogonal net is isometric. v(a) is the
spread of D², the diagonal of the rectifier's derivatives (1 or a², each with probability ½ for a
zero-mean pre-activation); the rectifier step holds for wide layers. A circular convolution obeys
the same recursion with n = c_in, n' = c_out (it is block-diagonal over frequencies); zero padding
adds spread at the borders.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .theory import rectifier_factor


def rectifier_spectrum_spread(slope: float = 0.0) -> float:
    """Return v(a) = E[d⁴]/E[d²]² − 1 for d² ∈ {1, a²} with probability ½ each: 2(1+a⁴)/(1+a²)² − 1,
    the spread a rectifier of slope a adds to JJᵀ (ReLU 1, leaky 0.25 ≈ 0.78, linear 0)."""
    return 2.0 * (1.0 + slope ** 4) / (1.0 + slope ** 2) ** 2 - 1.0


def jacobian_spread(widths: Sequence[int], slopes_after: Sequence[float | None], orthogonal: bool = False) -> float:
    """Return s² = m₂/m₁² − 1 of JJᵀ for a chain of weight layers of widths n_0 → n_1 → … → n_L
    (``widths``, L + 1 entries; for convolutions the channels), layer l followed by a rectifier of
    slope ``slopes_after[l]`` (None: no rectifier), by the recursion in the module docstring, with
    Gaussian (i.i.d.) or ``orthogonal`` weights."""
    if len(widths) != len(slopes_after) + 1:
        raise ValueError(f"one slope (or None) per layer: {len(widths) - 1} layers, {len(slopes_after)} slopes")
    spread = 0.0
    for width_in, width_out, slope in zip(widths[:-1], widths[1:], slopes_after):
        if orthogonal:
            ratio = width_out / width_in
            spread = ratio * spread if ratio <= 1 else ratio * (1.0 + spread) - 1.0
        else:
            spread = (width_out + 1) / width_in * (1.0 + spread)
        if slope is not None:
            spread += rectifier_spectrum_spread(slope)
    return spread


def jacobian_mean_squared_singular_value(fan_in_weight_gains: Sequence[float],
                                         slopes_after: Sequence[float | None]) -> float:
    """Return m₁ = tr(JJᵀ)/N = ∏ n·E[w²] · ∏ ½(1+a²) over the chain: He's forward factors, the
    mean growth of a random direction through the net (χ₁ per layer for a rectifier)."""
    value = float(np.prod(fan_in_weight_gains))
    for slope in slopes_after:
        if slope is not None:
            value *= float(rectifier_factor(slope))
    return value


@dataclass(frozen=True)
class JacobianSpectrum:
    """The Jacobian's moments estimated from random projections (``probe.projections``)."""

    projections: int
    outputs: int  # N: output coordinates the traces are divided by
    mean_squared_singular_value: float  # m₁ = tr(JJᵀ)/N
    spread: float  # s² = m₂/m₁² − 1
    spread_standard_error: float  # jackknife over the projections (NaN for one)


def jacobian_spectrum(pulled: np.ndarray, pushed: np.ndarray, outputs: int) -> JacobianSpectrum:
    """Return the ``JacobianSpectrum`` from per-projection ‖Jᵀr‖² (``pulled``) and ‖JJᵀr‖² (``pushed``)
    for r ~ N(0, I): m₁ = mean‖Jᵀr‖²/N and m₂ = mean‖JJᵀr‖²/N (Hutchinson: E[rᵀAr] = tr A); the
    spread is NaN where J is 0 to float64 precision."""
    pulled, pushed = np.asarray(pulled, dtype=np.float64), np.asarray(pushed, dtype=np.float64)
    count = len(pulled)

    def spread_of(first: np.ndarray, second: np.ndarray) -> float:
        if not (first.mean() > 0 and second.mean() > 0):  # J = 0 to float64 precision: no spread to speak of
            return float("nan")
        return float(outputs * second.mean() / first.mean() ** 2 - 1.0)

    spread = spread_of(pulled, pushed)
    if count > 1:
        leave_one_out = np.array([spread_of(np.delete(pulled, i), np.delete(pushed, i)) for i in range(count)])
        error = float(math.sqrt((count - 1) / count * np.sum((leave_one_out - leave_one_out.mean()) ** 2)))
    else:
        error = float("nan")
    return JacobianSpectrum(count, int(outputs), float(pulled.mean() / outputs), spread, error)
