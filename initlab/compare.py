"""Measured against predicted: the tidy frame, per-layer summaries, verdicts, network gains.

Columns follow the paper's notation. ``var_y`` is the second moment E[y_l²] of a layer's output
over all its elements (the paper's Var[y_l], which eq. 7 predicts: weights are zero-mean);
``grad_var`` is E[Δx_l²], the gradient at the layer's input (eq. 13). The elementwise variance
of each is kept too (``output_variance``, ``grad_input_variance``); the per-unit variance across
the batch is never compared with the chain (THEORY.md §4).

Verdicts. A layer's forward gain is E[y_l²]/E[y_1²]; its backward gain E[Δx_l²]/E[Δx_L²] (the
gradient a layer hands back, over what the last layer hands back, so that He's init gives 1 in
both directions). Verdicts judge these gains through the init-controlled chain: across links
with no closed form (pooling, normalization) only the layers' own steps count. A gain more than
t decades below its finite-width median (−σ²/2 in ln) is ``vanishing``, more than t above it
``exploding``, else ``healthy``, with t = max(1 decade, the 3σ band of the whole chain up to the
layer) — a He net at finite width wanders by about that much. A layer with a NaN/Inf statistic is
``non-finite`` and the network summary names the layer where it first appears in each direction.
Statistics are float32: a second moment below ~1e−38 (about 125 layers halving the signal)
underflows to 0 and reads ``vanishing``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from . import theory
from .files import json_value

HEALTHY_DECADES = 1.0
# Seed means of these are geometric (so that log10(var_y / var_y_pred) is the mean log ratio);
# ``var_y_mean`` and ``grad_var_mean`` keep the arithmetic means.
GEOMETRIC_COLUMNS = ("var_y", "var_y_pred", "var_y_pred_sampled", "grad_var", "grad_var_pred", "grad_var_pred_sampled")


def _slope_from_factor(factor: float | None) -> float | None:
    """Return the slope a with ½(1+a²) = factor (1 for a view, a linear link)."""
    return None if factor is None else math.sqrt(max(2.0 * factor - 1.0, 0.0))


def build_frame(records: list) -> pd.DataFrame:
    """Return the tidy frame (one row per seed × layer call) with the chain's predictions.

    Predictions use the scheme's nominal Var[w] (``*_pred``) where a scheme was applied, else the
    sampled weights; ``*_pred_sampled`` always uses the sampled weights' E[w²].
    """
    frames = []
    for record in records:
        stats = record.stats
        geometries = record.geometries
        count = len(geometries)
        sampled_w = stats["weight_second_moment"]
        sampled_b = stats["bias_second_moment"]
        has_nominal = record.nominal_weight_variance is not None
        var_w = record.nominal_weight_variance if has_nominal else sampled_w
        bias = record.nominal_bias_second_moment if has_nominal else sampled_b
        var_y_pred, padding = theory.forward_chain(geometries, var_w, bias, record.forward_links, record.input_maps)
        var_y_pred_sampled, _ = theory.forward_chain(geometries, sampled_w, sampled_b, record.forward_links,
                                                     record.input_maps)
        grad_pred, grad_output_pred, padding_backward = theory.backward_chain(geometries, var_w, record.backward_links,
                                                            record.grad_output_maps)
        grad_pred_sampled, _, _ = theory.backward_chain(geometries, sampled_w, record.backward_links,
                                                     record.grad_output_maps)
        forward_slopes = [_slope_from_factor(f) for f in record.forward_links]
        backward_slopes = [_slope_from_factor(f) for f in record.backward_links]
        fan_in = np.array([g.fan_in for g in geometries], dtype=float)
        fan_out = np.array([g.fan_out for g in geometries], dtype=float)
        # The closed-form part of each incoming link: all of it, or the rectifier before a pool.
        prefix = np.array(record.prefix_factors)
        prefix[0] = 1.0
        link_back = np.append(prefix[1:], 1.0)
        slope_after = [_slope_from_factor(prefix[i + 1]) if i + 1 < count and "rectifier" in record.prefix_kinds[i + 1]
                       else None for i in range(count)]
        frames.append(pd.DataFrame({
            "seed": record.seed,
            "index": np.arange(count),
            "name": record.names,
            "kind": record.kinds,
            "fan_in": fan_in.astype(int),
            "fan_out": fan_out.astype(int),
            "slope": [np.nan if s is None else s for s in slope_after],
            "link_in": record.link_kinds,
            "link_prefix_factor": record.prefix_factors,
            "backward_link_closed": [f is not None for f in record.backward_links],
            "var_w": var_w,
            "var_w_nominal": record.nominal_weight_variance if has_nominal else np.full(count, np.nan),
            "var_w_sampled": sampled_w,
            "bias_second_moment": sampled_b,
            "input_second_moment": stats["input_second_moment"],
            "output_variance": stats["output_variance"],
            "var_y": stats["output_second_moment"],
            "var_y_pred": var_y_pred,
            "var_y_pred_sampled": var_y_pred_sampled,
            "padding_factor": padding,
            "padding_factor_backward": padding_backward,
            "forward_factor": prefix * fan_in * var_w,
            "grad_output_variance": stats["grad_output_variance"],
            "grad_output_second_moment": stats["grad_output_second_moment"],
            "grad_output_pred": grad_output_pred,
            "grad_input_variance": stats["grad_input_variance"],
            "grad_var": stats["grad_input_second_moment"],
            "grad_var_pred": grad_pred,
            "grad_var_pred_sampled": grad_pred_sampled,
            "backward_factor": link_back * fan_out * var_w,
            "weight_grad_variance": stats["weight_grad_variance"],
            "forward_log_variance": theory.forward_log_variance(geometries, forward_slopes),
            "backward_log_variance": theory.backward_log_variance(geometries, backward_slopes),
            # the layer-chain gains judged by the verdicts accumulate over every step, anchors too
            "forward_log_variance_chain": theory.forward_log_variance(
                geometries, [None] + [_slope_from_factor(f) for f in prefix[1:]]),
            "backward_log_variance_chain": theory.backward_log_variance(
                geometries, [_slope_from_factor(f) for f in prefix[1:]] + [None]),
        }))
    return pd.concat(frames, ignore_index=True)


def _log10(values: pd.Series | np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log10(np.asarray(values, dtype=float))


def _verdict(log10_gain: float, log_variance: float, seeds: int) -> str:
    """Judge a log10 gain against He's 1, allowing the finite-width drift and spread of the chain."""
    if np.isnan(log10_gain):
        return "non-finite"
    if not np.isfinite(log10_gain):
        return "vanishing" if log10_gain == -np.inf else "exploding"
    low, high = theory.log10_band(log_variance, seeds)
    center = 0.5 * (low + high)
    tolerance = max(HEALTHY_DECADES, 0.5 * (high - low))
    if log10_gain < center - tolerance:
        return "vanishing"
    if log10_gain > center + tolerance:
        return "exploding"
    return "healthy"


def _layer_chain_gains(seed_frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Return log10 forward and backward gains through the init-controlled chain of one seed.

    Steps over closed-form links are the measured ratios; across a link with no closed form
    (pooling, normalization, a residual sum) only its closed-form prefix (the rectifier before
    the pool) and the next layer's own measured step count. Each step is divided by the layer's
    exact zero-padding factor. Neither chain counts the first layer's own step on the raw input. So an architecture's pooling and borders (both reported on their
    own) do not pass for an init problem. This is what the verdicts judge.
    """
    var_y = seed_frame["var_y"].to_numpy()
    grad = seed_frame["grad_var"].to_numpy()
    closed = (seed_frame["link_in"] != "measured").to_numpy()
    prefix = seed_frame["link_prefix_factor"].to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        forward = np.where(closed, var_y / np.roll(var_y, 1),
                           prefix * var_y / seed_frame["input_second_moment"].to_numpy())
        forward /= seed_frame["padding_factor"].to_numpy()
        forward[0] = 1.0
        back_closed = seed_frame["backward_link_closed"].to_numpy()
        backward = np.where(back_closed, grad / np.roll(grad, -1),
                            np.roll(prefix, -1) * grad / seed_frame["grad_output_second_moment"].to_numpy())
        backward /= seed_frame["padding_factor_backward"].to_numpy()
        backward[-1] = 1.0
        # As the paper's eq. 13 (which stops at Δx_2), the first layer's own step onto the raw
        # input does not count: that gradient reaches no parameter. The forward chain likewise
        # starts at y_1, after the first layer's own step.
        backward[0] = 1.0
        forward_gain = _accumulate(np.log10(forward), var_y)
        backward_gain = _accumulate(np.log10(backward)[::-1], grad[::-1])[::-1]
    return forward_gain, backward_gain


def _accumulate(log_steps: np.ndarray, measured: np.ndarray) -> np.ndarray:
    """Return the running sum of log10 steps; −inf from the first statistic that underflowed to 0
    (float32 holds second moments down to ~1e−38) and NaN from the first non-finite one."""
    total, out = 0.0, np.empty(len(log_steps))
    for position, (step, value) in enumerate(zip(log_steps, measured)):
        if not np.isfinite(value) or np.isnan(total):
            total = np.nan
        elif value == 0 or total == -np.inf:
            total = -np.inf
        elif np.isfinite(step):
            total += step
        out[position] = total
    return out


def _with_gains(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.sort_values(["seed", "index"]).copy()
    # positional first/last: groupby's "first"/"last" would skip a NaN and use an earlier layer
    first = frame.groupby("seed")["var_y"].transform(lambda v: v.iloc[0])
    last_grad = frame.groupby("seed")["grad_var"].transform(lambda v: v.iloc[-1])
    frame["log10_forward_gain"] = _log10(frame["var_y"] / first)
    frame["log10_backward_gain"] = _log10(frame["grad_var"] / last_grad)
    forward, backward = [], []
    for _, seed_frame in frame.groupby("seed", sort=True):
        chain_forward, chain_backward = _layer_chain_gains(seed_frame)
        forward.append(chain_forward)
        backward.append(chain_backward)
    frame["log10_forward_gain_layers"] = np.concatenate(forward)
    frame["log10_backward_gain_layers"] = np.concatenate(backward)
    frame["log10_ratio_forward"] = _log10(frame["var_y"] / frame["var_y_pred"])
    frame["log10_ratio_backward"] = _log10(frame["grad_var"] / frame["grad_var_pred"])
    return frame


def layer_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Return one row per layer: seed means, predictions, log10 ratio, band, verdict.

    ``var_y``/``grad_var`` and their predictions are geometric means over seeds, so
    ``log10_ratio_*`` = log10(var_y/var_y_pred) is the seed mean of the per-seed log ratios,
    checked against the finite-width band (``band_*_low/high``, ``within_band_*``).
    ``var_y_mean``/``grad_var_mean`` are arithmetic means (unbiased for the chain's expectation).
    """
    frame = _with_gains(frame)
    seeds = frame["seed"].nunique()
    grouped = frame.groupby("index", sort=True)
    first = grouped.first()
    mean = grouped.mean(numeric_only=True)
    summary = pd.DataFrame({
        "index": mean.index,
        "name": first["name"].values,
        "kind": first["kind"].values,
        "link_in": first["link_in"].values,
        "fan_in": first["fan_in"].values,
        "fan_out": first["fan_out"].values,
    })
    logs = frame.assign(**{column: _log10(frame[column]) for column in GEOMETRIC_COLUMNS}).groupby("index", sort=True)
    for column in ("slope", "var_w", "var_w_sampled", "var_y", "var_y_pred", "var_y_pred_sampled", "padding_factor",
                   "padding_factor_backward", "forward_factor", "grad_var", "grad_var_pred", "grad_var_pred_sampled",
                   "backward_factor", "weight_grad_variance", "log10_forward_gain", "log10_backward_gain",
                   "log10_forward_gain_layers", "log10_backward_gain_layers", "log10_ratio_forward",
                   "log10_ratio_backward"):
        summary[column] = (10.0 ** logs[column].mean().values if column in GEOMETRIC_COLUMNS
                           else mean[column].values)
    summary["var_y_mean"] = mean["var_y"].values
    summary["grad_var_mean"] = mean["grad_var"].values
    for direction in ("forward", "backward"):
        low, high = theory.log10_band(mean[f"{direction}_log_variance"].values, seeds)
        summary[f"band_{direction}_low"] = low
        summary[f"band_{direction}_high"] = high
        ratio = summary[f"log10_ratio_{direction}"]
        summary[f"within_band_{direction}"] = (ratio >= low) & (ratio <= high)
        summary[f"verdict_{direction}"] = [_verdict(g, v, seeds) for g, v in
                                           zip(summary[f"log10_{direction}_gain_layers"],
                                               mean[f"{direction}_log_variance_chain"].values)]
    summary["verdict"] = [f if f != "healthy" else b for f, b in
                          zip(summary["verdict_forward"], summary["verdict_backward"])]
    non_finite = ~np.isfinite(frame.groupby("index")[["var_y", "grad_var"]].agg(lambda v: v.to_numpy().sum()))
    summary.loc[non_finite.any(axis=1).to_numpy(), "verdict"] = "non-finite"
    return summary


def network_summary(frame: pd.DataFrame) -> dict[str, Any]:
    """Return forward/backward gains of the whole net, measured and predicted, with verdicts.

    forward_gain = E[y_L²]/E[y_1²]; backward_gain = E[Δx_1²]/E[Δx_L²]; each is the geometric
    mean over seeds, and so is its prediction (the chain's own ratio). ``*_gain_layers`` are the
    same through the init-controlled chain only (see ``_layer_chain_gains``); verdicts use them.
    """
    seeds = frame["seed"].nunique()
    frame = _with_gains(frame)
    first = frame.groupby("seed").head(1).set_index("seed")
    last = frame.groupby("seed").tail(1).set_index("seed")

    def geometric(values: pd.Series) -> float:
        return float(10.0 ** np.mean(_log10(values)))

    forward = geometric(last["var_y"] / first["var_y"])
    backward = geometric(first["grad_var"] / last["grad_var"])
    summary = {
        "forward_gain": forward,
        "forward_gain_pred": geometric(last["var_y_pred"] / first["var_y_pred"]),
        "backward_gain": backward,
        "backward_gain_pred": geometric(first["grad_var_pred"] / last["grad_var_pred"]),
        "forward_gain_layers": float(10.0 ** last["log10_forward_gain_layers"].mean()),
        "backward_gain_layers": float(10.0 ** first["log10_backward_gain_layers"].mean()),
        "layers": int(frame["index"].nunique()),
        "seeds": seeds,
    }
    summary["verdict_forward"] = _verdict(float(last["log10_forward_gain_layers"].mean()),
                                          float(last["forward_log_variance_chain"].mean()), seeds)
    summary["verdict_backward"] = _verdict(float(first["log10_backward_gain_layers"].mean()),
                                           float(first["backward_log_variance_chain"].mean()), seeds)
    summary["verdict"] = summary["verdict_forward"] if summary["verdict_forward"] != "healthy" \
        else summary["verdict_backward"]
    # where NaN/Inf first appears: the earliest layer going forward, the latest going backward
    bad_forward = frame.loc[~np.isfinite(frame["var_y"]), "index"]
    bad_backward = frame.loc[~np.isfinite(frame["grad_var"]), "index"]
    names = frame.groupby("index")["name"].first()
    summary["first_non_finite_forward"] = names[bad_forward.min()] if len(bad_forward) else None
    summary["first_non_finite_backward"] = names[bad_backward.max()] if len(bad_backward) else None
    if len(bad_forward) or len(bad_backward):
        summary["verdict"] = "non-finite"
    return summary


def to_json_dict(result: Any) -> dict[str, Any]:
    """Return ``{"config", "layers", "summary"}`` of a probe result, JSON-ready (NaN → null)."""
    layers = [{key: json_value(value) for key, value in row.items()} for row in result.summary().to_dict("records")]
    summary = {key: json_value(value) for key, value in result.gains().items()}
    return {"config": result.config, "layers": layers, "summary": summary}
