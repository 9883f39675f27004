"""Correlation between examples through depth: the mean-field maps of signal propagation.

He et al.'s chain keeps each example's second moment q at the right size; these maps say whether
two examples stay different. For pre-activations h = W·f(h_prev) + b of a wide net with
Var[w] = σ_w²/n and Var[b] = σ_b² (Poole et al. 2016; Schoenholz et al. 2017):

    q_{l+1}  = σ_w²·E[f(√q·z)²] + σ_b²                                   (the length map)
    c_{l+1}  = (σ_w²·E[f(u₁)f(u₂)] + σ_b²) / q_{l+1}                     (the correlation map)
    χ₁       = σ_w²·E[f'(√q*·z)²]                                        (its slope at c = 1)

with z ~ N(0, 1) and (u₁, u₂) Gaussian of variance q and correlation c. χ₁ < 1: ordered
(correlations go to 1, inputs become indistinguishable, gradients vanish); χ₁ > 1: chaotic;
χ₁ = 1: critical. For a rectifier without bias the correlation map is the normalized arc-cosine
kernel (Cho & Saul 2009) in closed form, and He's init makes it critical in every slope: χ₁ = 1
exactly, so correlations approach 1 only polynomially in depth. Pure functions; smooth
activations by Gauss–Hermite quadrature in one and two dimensions.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
from scipy import optimize

from .theory import HERMITE_NODES, HERMITE_WEIGHTS, rectifier_factor

Activation = Callable[[np.ndarray], np.ndarray]


def rectifier_correlation_map(correlation: float | np.ndarray, slope: float = 0.0) -> float | np.ndarray:
    """Return F(c) = E[f(u₁)f(u₂)] / E[f(u)²] for a leaky rectifier of slope a, (u₁, u₂) standard
    Gaussian with correlation c: the correlation after the rectifier and a zero-mean layer.

    f(z) = ((1+a)/2)·z + ((1−a)/2)·|z| and E[|u₁||u₂|] = (2/π)(√(1−c²) + c·arcsin c), so

        F(c) = [(1+a)²/4 · c + (1−a)²/(2π) · (√(1−c²) + c·arcsin c)] / ((1+a²)/2).

    ReLU (a = 0): c/2 + (√(1−c²) + c·arcsin c)/π, Cho & Saul's arc-cosine kernel of degree 1
    normalized; a linear layer (a = 1): c. F(1) = 1 and F(0) = (1−a)²/(π(1+a²)).
    """
    c = np.clip(np.asarray(correlation, dtype=np.float64), -1.0, 1.0)
    odd, even = (1.0 + slope) ** 2 / 4.0, (1.0 - slope) ** 2 / (2.0 * math.pi)
    value = (odd * c + even * (np.sqrt(1.0 - c * c) + c * np.arcsin(c))) / rectifier_factor(slope)
    return float(value) if value.ndim == 0 else value


def rectifier_correlation_slope(correlation: float | np.ndarray, slope: float = 0.0) -> float | np.ndarray:
    """Return F'(c) = [(1+a)²/4 + (1−a)²/(2π)·arcsin c] / ((1+a²)/2), the derivative of
    ``rectifier_correlation_map``; F'(1) = χ₁ = 1 for every slope (He's init is critical)."""
    c = np.clip(np.asarray(correlation, dtype=np.float64), -1.0, 1.0)
    value = ((1.0 + slope) ** 2 / 4.0 + (1.0 - slope) ** 2 / (2.0 * math.pi) * np.arcsin(c)) / rectifier_factor(slope)
    return float(value) if value.ndim == 0 else value


def correlation_through_depth(correlation: float, depth: int, slope: float = 0.0) -> np.ndarray:
    """Return c_1 … c_depth: the correlation of two examples' pre-activations after each of ``depth``
    He-initialized rectifier layers (no bias), from c_0 = ``correlation``, by iterating F."""
    values, c = np.empty(depth), float(correlation)
    for index in range(depth):
        c = rectifier_correlation_map(c, slope)
        values[index] = c
    return values


def _gaussian_expectation(function: Activation, variance: float) -> float:
    return float(np.sum(HERMITE_WEIGHTS * function(math.sqrt(variance) * HERMITE_NODES)))


def length_map(activation: Activation, weight_variance: float, bias_variance: float, q: float) -> float:
    """Return q_{l+1} = σ_w²·E[f(√q·z)²] + σ_b² (Gauss–Hermite quadrature, 80 nodes)."""
    return weight_variance * _gaussian_expectation(lambda h: activation(h) ** 2, q) + bias_variance


def correlation_map(activation: Activation, weight_variance: float, bias_variance: float, q: float,
                    correlation: float) -> float:
    """Return c_{l+1} = (σ_w²·E[f(u₁)f(u₂)] + σ_b²) / q_{l+1} for two inputs of length q and
    correlation c, by two-dimensional Gauss–Hermite quadrature: u₁ = √q·z₁, u₂ = √q·(c·z₁ + √(1−c²)·z₂)."""
    c = min(max(float(correlation), -1.0), 1.0)
    z1, z2 = HERMITE_NODES[:, None], HERMITE_NODES[None, :]
    weights = HERMITE_WEIGHTS[:, None] * HERMITE_WEIGHTS[None, :]
    u1, u2 = math.sqrt(q) * z1, math.sqrt(q) * (c * z1 + math.sqrt(max(1.0 - c * c, 0.0)) * z2)
    cross = weight_variance * float(np.sum(weights * activation(u1) * activation(u2))) + bias_variance
    return cross / length_map(activation, weight_variance, bias_variance, q)


def fixed_point_length(activation: Activation, weight_variance: float, bias_variance: float, q: float = 1.0,
                       iterations: int = 500, tolerance: float = 1e-12) -> float:
    """Return q*, the fixed point of ``length_map`` reached from ``q`` (0 where the signal dies)."""
    for _ in range(iterations):
        following = length_map(activation, weight_variance, bias_variance, q)
        if abs(following - q) <= tolerance * max(q, 1e-300):
            return following
        q = following
    return q


def chi1(derivative: Activation, weight_variance: float, q: float) -> float:
    """Return χ₁ = σ_w²·E[f'(√q·z)²], the slope of the correlation map at c = 1 for inputs of length
    q (Schoenholz et al. 2017, eq. 3): < 1 ordered, > 1 chaotic, 1 critical."""
    return weight_variance * _gaussian_expectation(lambda h: derivative(h) ** 2, q)


def critical_weight_variance(activation: Activation, derivative: Activation, bias_variance: float,
                             bracket: tuple[float, float] = (0.5, 10.0)) -> float:
    """Return the σ_w² at which χ₁(q*) = 1 for the given σ_b²: the order-to-chaos boundary of the
    (σ_w², σ_b²) phase diagram (Poole et al. 2016, Fig. 1; Schoenholz et al. 2017, Fig. 1). For tanh:
    1.42 at σ_b² = 0.01, 1.76 at 0.05, 1.99 at 0.1, 2.51 at 0.3. At σ_b² = 0 the fixed point q* = 0 is
    approached only as 1/l, so 500 iterations give 1.01 rather than the exact 1."""
    def excess(weight_variance: float) -> float:
        q = fixed_point_length(activation, weight_variance, bias_variance)
        return chi1(derivative, weight_variance, q) - 1.0
    return float(optimize.brentq(excess, *bracket, xtol=1e-10))


def tanh_derivative(h: np.ndarray) -> np.ndarray:
    """f'(h) = 1 − tanh²(h), for ``chi1`` of tanh."""
    return 1.0 - np.tanh(h) ** 2


# -- what a probe measures: a batch's Gram matrix --------------------------------------------


def gram_statistics(gram: np.ndarray) -> tuple[float, float]:
    """Return (mean cosine similarity over pairs of distinct examples, effective rank) of a Gram
    matrix G_bc = y_b·y_c. The effective rank is the participation ratio (tr G)²/tr(G²) of its
    eigenvalues: k for k orthogonal examples of equal length, 1 when all are parallel."""
    gram = np.asarray(gram, dtype=np.float64)
    lengths = np.sqrt(np.clip(np.diag(gram), 1e-300, None))
    cosines = gram / np.outer(lengths, lengths)
    count = len(gram)
    mean_cosine = float((cosines.sum() - np.trace(cosines)) / (count * (count - 1)))
    rank = float(np.trace(gram) ** 2 / np.sum(gram * gram)) if np.any(gram) else float("nan")
    return mean_cosine, rank


def rectifier_gram_map(gram: np.ndarray, elements: int, slope: float, weight_gain: float,
                       bias_second_moment: float) -> np.ndarray:
    """Return the expected per-element Gram matrix of a layer's outputs, M'_bc = E[y'_b·y'_c]/D', from
    the previous layer's Gram ``gram`` over its ``elements`` elements per example, a rectifier of
    ``slope`` between them and the layer's n·E[w²] = ``weight_gain`` and E[b²]:

        M'_bc = n·E[w²]·½(1+a²)·√(q_b·q_c)·F(c_bc) + E[b²],  q_b = G_bb/D,  c_bc = G_bc/√(G_bb·G_cc)

    (f is positively homogeneous, so E[f(u)f(v)] = √(q_b·q_c)·½(1+a²)·F(c)). Exact in expectation for a
    fully connected layer; for a convolution it treats every position as having the flattened
    correlation and ignores the zero padding's loss at the borders (a common factor)."""
    gram = np.asarray(gram, dtype=np.float64)
    q = np.clip(np.diag(gram), 1e-300, None) / elements
    cosines = np.clip(gram / elements / np.sqrt(np.outer(q, q)), -1.0, 1.0)
    return (weight_gain * float(rectifier_factor(slope)) * np.sqrt(np.outer(q, q))
            * rectifier_correlation_map(cosines, slope) + bias_second_moment)
