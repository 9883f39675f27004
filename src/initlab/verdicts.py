"""Verdict rules: healthy, vanishing or exploding, per layer, per residual stream, per network.

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

from . import correlation, theory
from .compare import CLOSED_KINDS, GEOMETRIC_COLUMNS, _log10, _ratio

HEALTHY_DECADES = 1.0
# Collapse: examples' mean cosine past COLLAPSE_CORRELATION (1 − c ≤ 10⁻³) and 1 − c more than
# COLLAPSE_DECADES below what critical ReLU layers would leave, step by step (``_collapse``).
COLLAPSE_CORRELATION, COLLAPSE_DECADES = 0.999, 2.0
# The stream growth each direction's verdict judges (``stream_summary``): forward from the first sum on.
JUDGED_GROWTH = {"forward": "forward_growth_after_first", "backward": "backward_growth"}
SINGLE_STEP_DECADES = 3.0  # a chain of one layer step: a fixed scale, not a product over depth (``_judge``)


def _judge(log10_gain: float, log_variance: float, seeds: int, log10_fan_ratio: float = 0.0,
           steps: int = 2) -> tuple[str, float]:
    """Return (verdict, excess): a log10 gain judged against He's 1, allowing the finite-width drift
    and spread of the chain; excess is how many decades beyond the tolerance it lies (≤ 0: healthy).

    Anything between 1 and the chain's telescoped fan ratio (∏ n/n̂ forward, ∏ n̂/n backward) is
    He-healthy too: that is what He's init for the other direction gives (paper §2.2, c_2/d_L).

    A chain of one step (a lone layer between normalizations, sums or ops the probe cannot follow:
    a classifier, a pooler, an attention projection) does not compound: its factor is a fixed
    output scale (a logit or attention temperature), and He's condition is about the product over
    depth. It is judged with ``SINGLE_STEP_DECADES``, which still catches a unit error (std 1
    instead of 1/√n at width ≥ 1000, std 1e-4).
    """
    if np.isnan(log10_gain):
        return "non-finite", np.inf
    if not np.isfinite(log10_gain):
        return ("vanishing" if log10_gain == -np.inf else "exploding"), np.inf
    healthy_low, healthy_high, center = healthy_interval(log_variance, seeds, log10_fan_ratio, steps)
    excess = max(healthy_low - log10_gain, log10_gain - healthy_high)
    if excess <= 0:
        return "healthy", excess
    return ("vanishing" if log10_gain < center else "exploding"), excess


def healthy_interval(log_variance: float, seeds: int, log10_fan_ratio: float = 0.0,
                     steps: int = 2) -> tuple[float, float, float]:
    """Return (low, high, center) of the log10 chain gains ``_judge`` calls healthy: the chain's
    finite-width median ± max(tolerance decades, the 3σ band's half-width), stretched over the
    telescoped fan ratio. The band widens with depth, so the same gain can be vanishing at layer 5
    and within a He net's wandering at layer 25; a check's plot draws this interval per layer."""
    low, high = theory.log10_band(log_variance, seeds)
    center = 0.5 * (low + high)
    tolerance = max(HEALTHY_DECADES if steps > 1 else SINGLE_STEP_DECADES, 0.5 * (high - low))
    return (center + min(0.0, log10_fan_ratio) - tolerance, center + max(0.0, log10_fan_ratio) + tolerance, center)


def _layer_chain_gains(seed_frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return log10 forward and backward gains through the init-controlled chain of one seed.

    Steps over closed-form links are the measured ratios. Across a pool (no closed form) only
    the closed-form factors on the path (the rectifier before the pool) and the next layer's own
    measured step count. A normalization, a residual sum or an op the probe cannot follow resets
    the chain: the gain restarts with the next layer's own step (the residual stream is judged on
    its own, see ``network_summary``). Each step is divided by the layer's exact zero-padding
    factor. Neither chain counts the first layer's own step on the raw input. So an
    architecture's pooling, borders and normalizations (reported on their own) do not pass for an
    init problem. This is what the verdicts judge.
    """
    var_y = seed_frame["var_y"].to_numpy()
    grad = seed_frame["grad_var"].to_numpy()
    closed = seed_frame["link_in"].map(_is_closed).to_numpy() & ~seed_frame["link_resets"].to_numpy(dtype=bool)
    resets = seed_frame["link_resets"].to_numpy(dtype=bool)
    prefix = seed_frame["link_prefix_factor"].to_numpy()
    prefix_backward = seed_frame["link_prefix_factor_backward"].to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        forward = np.where(closed, var_y / np.roll(var_y, 1),
                           prefix * var_y / seed_frame["input_second_moment"].to_numpy())
        forward /= seed_frame["padding_factor"].to_numpy()
        forward[0] = 1.0
        back_closed = seed_frame["backward_link_closed"].to_numpy()
        backward = np.where(back_closed, grad / np.roll(grad, -1),
                            np.roll(prefix_backward, -1) * grad / seed_frame["grad_output_second_moment"].to_numpy())
        # a stride s spreads each output's gradient over 1/s^d of the input positions: subsampling,
        # like a pool, not the init (He's n̂ = k²·d counts every output a position feeds at stride 1)
        backward /= seed_frame["padding_factor_backward"].to_numpy() * seed_frame["stride_factor"].to_numpy()
        backward[-1] = 1.0
        # As the paper's eq. 13 (which stops at Δx_2), the first layer's own step onto the raw
        # input does not count: that gradient reaches no parameter. The forward chain likewise
        # starts at y_1, after the first layer's own step.
        backward[0] = 1.0
        forward_gain = _accumulate(np.log10(forward), var_y, resets)
        # going down, layer l restarts where the link into layer l+1 resets
        backward_resets = np.append(resets[1:], False)[::-1]
        backward_gain = _accumulate(np.log10(backward)[::-1], grad[::-1], backward_resets)[::-1]
    # the same chains' telescoped fan ratios, for the other direction's He init
    fan_ratio = np.log10(seed_frame["fan_in"].to_numpy(dtype=float) / seed_frame["fan_out"].to_numpy(dtype=float))
    forward_steps, backward_steps = fan_ratio.copy(), -fan_ratio
    forward_steps[0] = backward_steps[0] = backward_steps[-1] = 0.0
    ones = np.ones(len(fan_ratio))
    forward_ratio = _accumulate(forward_steps, ones, resets)
    backward_ratio = _accumulate(backward_steps[::-1], ones, backward_resets)[::-1]
    return forward_gain, backward_gain, forward_ratio, backward_ratio


def _segments(seed_frame: pd.DataFrame) -> np.ndarray:
    """Number each layer's verdict chain: a new one starts where the link into a layer resets."""
    return np.cumsum(seed_frame["link_resets"].to_numpy(dtype=bool))


def judged_by(seed_frame: pd.DataFrame) -> np.ndarray:
    """Return, per layer, what judges its chain: "chain" (its own gain, He's condition), "stream"
    (the chain is part of a residual branch: its gain is the branch's weight in the stream, which
    the stream's growth judges, ``stream_summary``) or "normalization" (the chain ends in a
    train-mode normalization, which divides its scale away in both directions: E[y²] and the
    gradient reaching its input are the same for any scale of its weights).

    Branches and normalized ends are read off the data flow by the probe (``ends_in``)."""
    ends = np.array(["" if pd.isna(e) else str(e) for e in seed_frame["ends_in"]], dtype=object) \
        if "ends_in" in seed_frame else np.full(len(seed_frame), "", dtype=object)
    segments = _segments(seed_frame)
    result = np.full(len(ends), "chain", dtype=object)
    for segment in np.unique(segments):
        members = np.flatnonzero(segments == segment)
        if any(ends[m] == "branch" for m in members):
            result[members] = "stream"
        elif ends[members[-1]] == "norm":
            result[members] = "normalization"
    return result


def _chain_steps(seed_frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The number of layer steps each layer's whole chain (its segment between resets) multiplies,
    forward and backward (the network's first layer's own step and its last layer's backward step
    are not counted): a chain of one step is a lone layer's output scale (``_judge``), and the
    early layers of a long chain are judged as the chain they start."""
    segments = _segments(seed_frame)
    count = len(segments)
    forward, backward = np.zeros(count, dtype=int), np.zeros(count, dtype=int)
    for segment in np.unique(segments):
        members = np.flatnonzero(segments == segment)
        forward[members] = len(members) - (1 if members[0] == 0 else 0)
        backward[members] = len(members) - (1 if members[-1] == count - 1 else 0)
    return forward, backward


def _is_closed(link_kind: str) -> bool:
    return link_kind not in ("input", "other") and all(kind in CLOSED_KINDS for kind in link_kind.split("+"))


def _accumulate(log_steps: np.ndarray, measured: np.ndarray, resets: np.ndarray) -> np.ndarray:
    """Return the running sum of log10 steps, restarted where ``resets``; −inf from the first
    statistic that underflowed to 0 (float32 holds second moments down to ~1e−38) and NaN from the
    first non-finite one."""
    total, out = 0.0, np.empty(len(log_steps))
    for position, (step, value) in enumerate(zip(log_steps, measured)):
        if resets[position] and np.isfinite(total):
            total = 0.0
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
    chains = [_layer_chain_gains(seed_frame) for _, seed_frame in frame.groupby("seed", sort=True)]
    for position, column in enumerate(("log10_forward_gain_layers", "log10_backward_gain_layers",
                                       "log10_forward_fan_ratio", "log10_backward_fan_ratio")):
        frame[column] = np.concatenate([chain[position] for chain in chains])
    seed_frames = [seed_frame for _, seed_frame in frame.groupby("seed", sort=True)]
    frame["judged_by"] = np.concatenate([judged_by(seed_frame) for seed_frame in seed_frames])
    frame["in_residual_branch"] = frame["judged_by"] == "stream"
    steps = [_chain_steps(seed_frame) for seed_frame in seed_frames]
    frame["forward_chain_steps"] = np.concatenate([forward for forward, _ in steps])
    frame["backward_chain_steps"] = np.concatenate([backward for _, backward in steps])
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
                   "log10_forward_gain_layers", "log10_backward_gain_layers", "log10_forward_fan_ratio",
                   "log10_backward_fan_ratio", "log10_ratio_forward", "log10_ratio_backward", "example_correlation",
                   "example_correlation_pred", "effective_rank", "effective_rank_pred", "chi1"):
        summary[column] = (10.0 ** logs[column].mean().values if column in GEOMETRIC_COLUMNS
                           else mean[column].values)
    summary["in_residual_branch"] = grouped["in_residual_branch"].first().values
    summary["judged_by"] = grouped["judged_by"].first().values
    summary["forward_chain_steps"] = grouped["forward_chain_steps"].first().values
    summary["backward_chain_steps"] = grouped["backward_chain_steps"].first().values
    summary["ends_in"] = grouped["ends_in"].first().values
    summary["var_y_mean"] = mean["var_y"].values
    summary["grad_var_mean"] = mean["grad_var"].values
    for direction in ("forward", "backward"):
        low, high = theory.log10_band(mean[f"{direction}_log_variance"].values, seeds)
        summary[f"band_{direction}_low"] = low
        summary[f"band_{direction}_high"] = high
        ratio = summary[f"log10_ratio_{direction}"]
        summary[f"within_band_{direction}"] = (ratio >= low) & (ratio <= high)
        summary[f"verdict_{direction}"] = [_judge(g, v, seeds, r, n)[0] if by == "chain" else "healthy"
                                           for g, v, r, n, by in
                                           zip(summary[f"log10_{direction}_gain_layers"],
                                               mean[f"{direction}_log_variance_chain"].values,
                                               summary[f"log10_{direction}_fan_ratio"],
                                               first[f"{direction}_chain_steps"].values, first["judged_by"].values)]
        intervals = [healthy_interval(v, seeds, r, n) for v, r, n in
                     zip(mean[f"{direction}_log_variance_chain"].values, summary[f"log10_{direction}_fan_ratio"],
                         first[f"{direction}_chain_steps"].values)]
        summary[f"healthy_{direction}_low"] = [low for low, _, _ in intervals]
        summary[f"healthy_{direction}_high"] = [high for _, high, _ in intervals]
    summary["verdict"] = [f if f != "healthy" else b for f, b in
                          zip(summary["verdict_forward"], summary["verdict_backward"])]
    reference, excess, verdict = _collapse(summary["example_correlation"].to_numpy(dtype=float),
                                           summary["link_in"].astype(str).to_numpy(), summary["kind"].to_numpy())
    summary["example_correlation_reference"] = reference
    summary["collapse_decades"] = excess
    summary["verdict_correlation"] = verdict
    non_finite = ~np.isfinite(frame.groupby("index")[["var_y", "grad_var"]].agg(lambda v: v.to_numpy().sum()))
    summary.loc[non_finite.any(axis=1).to_numpy(), "verdict"] = "non-finite"
    return summary


def _collapse(measured: np.ndarray, links: np.ndarray, kinds_of_layer: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                                                            np.ndarray]:
    """Return, per layer, the one-step reference correlation, the decades by which 1 − c has fallen
    below the references so far (``collapse_decades``) and the verdict.

    The reference of a layer fed through a rectifier or smooth activation (and views) is what a
    critical ReLU layer (He's init, no bias) makes of the previous layer's measured correlation,
    F(c_{l−1}) (``correlation.rectifier_correlation_map``; ReLU's map contracts fastest of the
    critical rectifiers, so the reference is the quickest approach to 1 He's condition allows);
    across a view alone it is c_{l−1} (a zero-mean layer keeps c). A local pool into a conv counts
    as part of the rectifier's step (He-initialized VGG-11, four max-pools among eight convs, stays
    1.3 decades from the references). Steps across a pool into a Linear layer (a global pool: its
    average of rectified features is alike across examples in every CNN at init), a
    normalization, a sum or an op the probe cannot follow have no reference and add nothing.
    ``collapsed``: c past ``COLLAPSE_CORRELATION`` and the excess past ``COLLAPSE_DECADES``;
    ``unmeasured`` without a correlation."""
    count = len(measured)
    previous = np.concatenate([[np.nan], measured[:-1]])
    kinds = [set(str(kind).split("+")) for kind in links]
    followed = [set(CLOSED_KINDS) | ({"pool"} if layer == "conv" else set()) for layer in kinds_of_layer]
    contracting = np.array([position > 0 and bool(k & {"rectifier", "smooth"}) and k <= allowed
                            for position, (k, allowed) in enumerate(zip(kinds, followed))])
    keeping = np.array([position > 0 and k <= {"view", "direct", "dropout"} for position, k in enumerate(kinds)])
    with np.errstate(divide="ignore", invalid="ignore"):
        reference = np.where(contracting, correlation.rectifier_correlation_map(previous),
                             np.where(keeping, previous, np.nan))
        steps = np.log10(np.clip(1.0 - reference, 1e-12, None) / np.clip(1.0 - measured, 1e-12, None))
    excess = np.cumsum(np.where(np.isfinite(steps), steps, 0.0)) if count else np.zeros(0)
    collapsed = (measured >= COLLAPSE_CORRELATION) & (excess > COLLAPSE_DECADES)
    verdict = np.where(np.isfinite(measured), np.where(collapsed, "collapsed", "healthy"), "unmeasured")
    return reference, excess, verdict.astype(object)


def _worst_layer(per_layer: pd.DataFrame, direction: str, seeds: int) -> tuple[str, float, int]:
    """Return (verdict, log10 chain gain, index) of the layer whose chain gain is furthest outside
    its tolerance (the most deviating layer when all are healthy)."""
    judged = [_judge(gain, variance, seeds, ratio, steps) if by == "chain" else ("healthy", -np.inf)
              for gain, variance, ratio, steps, by in
              zip(per_layer[f"log10_{direction}_gain_layers"], per_layer[f"{direction}_log_variance_chain"],
                  per_layer[f"log10_{direction}_fan_ratio"], per_layer[f"{direction}_chain_steps"],
                  per_layer["judged_by"])]
    position = int(np.argmax([excess for _, excess in judged]))
    return judged[position][0], float(per_layer[f"log10_{direction}_gain_layers"].iloc[position]), position


def stream_summary(sums: pd.DataFrame) -> pd.DataFrame:
    """Return one row per residual stream (a chain of sums, skip to output): its sums K, forward
    growth E[s_K²]/E[skip_1²], the same from the first sum on, E[s_K²]/E[s_1²]
    (``forward_growth_after_first``), backward growth E[Δs_1²]/E[Δs_K²] (geometric means over
    seeds), and verdicts.

    A stream whose branches add what the stream holds grows exponentially (2^K for an
    unnormalized He ResNet); a normalized branch adds a fixed amount b, so the stream grows
    linearly: s_K = s_0 + K·b ≤ K·s_1 whatever the first skip s_0 holds. The first sum's own
    jump, s_1/s_0 = 1 + b/s_0, is the branch's size against the stream's start (an embedding
    at std 0.02 under a wide model's branches), not growth, and is not judged. So the verdicts
    judge the K − 1 sums after the first: growth more than ``HEALTHY_DECADES`` above K (forward
    from s_1, backward from Δs_K to Δs_1) is ``exploding``; a stream of one sum is not judged.
    """
    columns = ["stream", "sums", "first", "last", "forward_growth", JUDGED_GROWTH["forward"], JUDGED_GROWTH["backward"],
               "verdict_forward", "verdict_backward"]
    if sums is None or sums.empty:
        return pd.DataFrame(columns=columns)
    rows = []
    for stream, group in sums.groupby("stream", sort=True):
        forward, after_first, backward = [], [], []
        for _, chain in group.groupby("seed"):
            chain = chain.sort_values("depth")
            forward.append(chain["stream_growth"].iloc[-1])
            after_first.append(float(_ratio(chain["second_moment"].iloc[-1], chain["second_moment"].iloc[0])))
            backward.append(chain["grad_second_moment"].iloc[0] / chain["grad_second_moment"].iloc[-1])
        count = int(group["depth"].max())
        row = {"stream": stream, "sums": count, "first": group.sort_values("depth")["name"].iloc[0],
               "last": group.sort_values("depth")["name"].iloc[-1],
               "forward_growth": float(10.0 ** np.mean(_log10(forward))),
               "forward_growth_after_first": float(10.0 ** np.mean(_log10(after_first))),
               "backward_growth": float(10.0 ** np.mean(_log10(backward)))}
        limit = math.log10(count) + HEALTHY_DECADES
        for direction, key in JUDGED_GROWTH.items():
            growth = math.log10(row[key]) if row[key] > 0 else -np.inf
            row[f"verdict_{direction}"] = ("non-finite" if np.isnan(growth) else
                                           "exploding" if count > 1 and growth > limit else "healthy")
        rows.append(row)
    return pd.DataFrame(rows, columns=columns)


def network_summary(frame: pd.DataFrame, sums: pd.DataFrame | None = None) -> dict[str, Any]:
    """Return forward/backward gains of the whole net, measured and predicted, with verdicts.

    forward_gain = E[y_L²]/E[y_1²]; backward_gain = E[Δx_1²]/E[Δx_L²]; each is the geometric
    mean over seeds, and so is its prediction (the chain's own ratio). ``*_gain_layers`` are the
    gains through the init-controlled chain (see ``_layer_chain_gains``) at the layer furthest
    from healthy (``worst_*_layer``); the verdicts judge every layer's chain gain and every
    residual stream's growth (``stream_summary``) and report the worst.
    """
    seeds = frame["seed"].nunique()
    frame = _with_gains(frame)
    first = frame.groupby("seed").head(1).set_index("seed")
    last = frame.groupby("seed").tail(1).set_index("seed")

    def geometric(values: pd.Series) -> float:
        return float(10.0 ** np.mean(_log10(values)))

    per_layer = frame.groupby("index", sort=True)[["log10_forward_gain_layers", "log10_backward_gain_layers",
                                                   "forward_log_variance_chain", "backward_log_variance_chain",
                                                   "log10_forward_fan_ratio", "log10_backward_fan_ratio",
                                                   "in_residual_branch", "judged_by", "forward_chain_steps",
                                                   "backward_chain_steps"]].agg(
        {"log10_forward_gain_layers": "mean", "log10_backward_gain_layers": "mean",
         "forward_log_variance_chain": "mean", "backward_log_variance_chain": "mean",
         "log10_forward_fan_ratio": "mean", "log10_backward_fan_ratio": "mean", "in_residual_branch": "first",
         "judged_by": "first", "forward_chain_steps": "first", "backward_chain_steps": "first"})
    names = frame.groupby("index")["name"].first()
    summary = {
        "forward_gain": geometric(last["var_y"] / first["var_y"]),
        "forward_gain_pred": geometric(last["var_y_pred"] / first["var_y_pred"]),
        "backward_gain": geometric(first["grad_var"] / last["grad_var"]),
        "backward_gain_pred": geometric(first["grad_var_pred"] / last["grad_var_pred"]),
        "layers": int(frame["index"].nunique()),
        "seeds": seeds,
    }
    for direction in ("forward", "backward"):
        verdict, log_gain, position = _worst_layer(per_layer, direction, seeds)
        summary[f"{direction}_gain_layers"] = float(10.0 ** log_gain)
        summary[f"worst_{direction}_layer"] = names.iloc[position]
        summary[f"verdict_{direction}"] = verdict
    streams = stream_summary(sums)
    summary["residual_sums"] = int(sums["index"].nunique()) if sums is not None and not sums.empty else 0
    for direction in ("forward", "backward"):
        if streams.empty:
            summary[f"stream_growth_{direction}"] = None
            summary[f"verdict_stream_{direction}"] = "healthy"
            continue
        judged = streams[JUDGED_GROWTH[direction]].to_numpy()
        with np.errstate(divide="ignore", invalid="ignore"):
            excess = np.log10(judged) - np.log10(streams["sums"].to_numpy(dtype=float))
        excess[streams["sums"].to_numpy() < 2] = -np.inf
        worst = streams.iloc[int(np.nanargmax(excess)) if np.isfinite(excess).any() else 0]
        # the judged growth: forward from the first sum's output on, backward over the stream
        summary[f"stream_growth_{direction}"] = float(worst[JUDGED_GROWTH[direction]])
        summary[f"stream_sums_{direction}"] = int(worst["sums"])
        summary[f"verdict_stream_{direction}"] = worst[f"verdict_{direction}"]
        if summary[f"verdict_{direction}"] == "healthy":
            summary[f"verdict_{direction}"] = worst[f"verdict_{direction}"]
    summary["verdict"] = summary["verdict_forward"] if summary["verdict_forward"] != "healthy" \
        else summary["verdict_backward"]
    by_layer = frame.groupby("index", sort=True)
    measured = by_layer["example_correlation"].mean().to_numpy(dtype=float)
    _, excess, verdicts = _collapse(measured, by_layer["link_in"].first().astype(str).to_numpy(),
                                    by_layer["kind"].first().to_numpy())
    collapsed = np.flatnonzero(verdicts == "collapsed")
    # the first collapsed layer, else the last layer: its correlation beside the critical chain's
    at = int(collapsed[0]) if len(collapsed) else len(measured) - 1
    summary["verdict_correlation"] = "collapsed" if len(collapsed) else str(verdicts[at])
    summary["first_collapsed_layer"] = names.iloc[at] if len(collapsed) else None
    summary["example_correlation_layer"] = names.iloc[at]
    summary["example_correlation"] = float(measured[at])
    summary["collapse_decades"] = float(excess[at])
    # over the network: the geometric mean per layer of the layers judged by their own chain (in a
    # residual branch the stream carries a perturbation past the branch; a normalization rescales it),
    # after the first, whose step on the raw input has no activation in front (1: critical)
    chi1 = frame.loc[(frame["index"] > 0) & (frame["judged_by"] == "chain"), "chi1"].to_numpy(dtype=float)
    chi1 = chi1[np.isfinite(chi1) & (chi1 > 0)]
    summary["chi1_geometric_mean"] = float(np.exp(np.mean(np.log(chi1)))) if len(chi1) else float("nan")
    # where NaN/Inf first appears: the earliest layer going forward, the latest going backward
    bad_forward = frame.loc[~np.isfinite(frame["var_y"]), "index"]
    bad_backward = frame.loc[~np.isfinite(frame["grad_var"]), "index"]
    summary["first_non_finite_forward"] = names[bad_forward.min()] if len(bad_forward) else None
    summary["first_non_finite_backward"] = names[bad_backward.max()] if len(bad_backward) else None
    if len(bad_forward) or len(bad_backward):
        summary["verdict"] = "non-finite"
    return summary
