"""Measured against predicted: the tidy frames of a probe, built from its per-pass records.

Columns follow the paper's notation. ``var_y`` is the second moment E[y_l²] of a layer's output
over all its elements (the paper's Var[y_l], which eq. 7 predicts: weights are zero-mean);
``grad_var`` is E[Δx_l²], the gradient at the layer's input (eq. 13). The elementwise variance
of each is kept too (``output_variance``, ``grad_input_variance``); the per-unit variance across
the batch is never compared with the chain (docs/theory.md).

Verdicts on these frames are in ``verdicts``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from . import conditioning, correlation, theory
from .files import json_records, json_value

# Link kinds (the ops between two covered layers, ``link_in`` joins them with "+"). Closed-form
# kinds carry the chain's prediction across (their second-moment factors are known); a pool or an
# eval-mode BatchNorm ("affine") breaks the prediction but not the verdict chain (the layers' own
# steps still multiply); a normalization or a residual sum resets the verdict chain, as does any
# op the probe cannot follow ("other").
CLOSED_KINDS = ("rectifier", "smooth", "dropout", "view", "direct")
RESET_KINDS = ("norm", "sum", "other")
# Seed means of these are geometric (so that log10(var_y / var_y_pred) is the mean log ratio);
# ``var_y_mean`` and ``grad_var_mean`` keep the arithmetic means.
GEOMETRIC_COLUMNS = ("var_y", "var_y_pred", "var_y_pred_sampled", "grad_var", "grad_var_pred", "grad_var_pred_sampled")


def slope_from_factor(factor: float | None) -> float | None:
    """Return the slope a with ½(1+a²) = factor (1 for a view, a linear link)."""
    return None if factor is None else theory.slope_from_factor(factor)


def _chain_weights(record: Any) -> tuple[np.ndarray, np.ndarray]:
    """(Var[w], E[b²]) per layer for the record's nominal chain: the init's nominal values where
    it has them, else the sampled weights' second moments."""
    if record.nominal_weight_variance is not None:
        return record.nominal_weight_variance, record.nominal_bias_second_moment
    return record.stats["weight_second_moment"], record.stats["bias_second_moment"]


def _chain_key(record: Any) -> tuple:
    """What chains must share to run as one batch: the layers, where links re-anchor, map shapes."""
    return (tuple(record.geometries), tuple(f is None for f in record.forward_links),
            tuple(f is None for f in record.backward_links),
            tuple(np.shape(q) for q in record.input_maps), tuple(np.shape(q) for q in record.grad_output_maps))


def _batched_links(links: list[list[float | None]], copies: int) -> list[np.ndarray | None]:
    """Per layer: None where the chains re-anchor, else each chain's factor, the records repeated."""
    return [None if column[0] is None else np.tile(np.array(column, dtype=np.float64), copies)
            for column in zip(*links)]


def _batched_maps(maps: list[list[Any]], copies: int) -> list[np.ndarray]:
    return [np.tile(np.stack([np.asarray(q, dtype=np.float64) for q in column]),
                    (copies, *([1] * np.ndim(column[0])))) for column in zip(*maps)]


def _predictions(records: list) -> list[dict[str, np.ndarray]]:
    """Each record's chain predictions, nominal Var[w] (``*_pred``) and sampled (``*_sampled``).

    The records of one architecture (the seeds of a probe) run as one batch of 2·R chains, the R
    nominal then the R sampled, so each layer step is one ones-kernel convolution for all of them.
    """
    groups: dict[tuple, list[int]] = {}
    for position, record in enumerate(records):
        groups.setdefault(_chain_key(record), []).append(position)
    predictions: list[dict[str, np.ndarray]] = [{} for _ in records]
    for positions in groups.values():
        group = [records[p] for p in positions]
        count = len(group)
        nominal = [_chain_weights(r) for r in group]
        weight_variances = np.stack([w for w, _ in nominal] + [r.stats["weight_second_moment"] for r in group])
        bias_second_moments = np.stack([b for _, b in nominal] + [r.stats["bias_second_moment"] for r in group])
        geometries = group[0].geometries
        forward, padding = theory.forward_chains(
            geometries, weight_variances, bias_second_moments,
            _batched_links([r.forward_links for r in group], 2), _batched_maps([r.input_maps for r in group], 2))
        grad_input, grad_output, padding_backward = theory.backward_chains(
            geometries, weight_variances, _batched_links([r.backward_links for r in group], 2),
            _batched_maps([r.grad_output_maps for r in group], 2))
        for row, position in enumerate(positions):
            predictions[position] = {
                "var_y_pred": forward[row], "var_y_pred_sampled": forward[count + row], "padding_factor": padding[row],
                "grad_var_pred": grad_input[row], "grad_var_pred_sampled": grad_input[count + row],
                "grad_output_pred": grad_output[row], "padding_factor_backward": padding_backward[row]}
    return predictions


def _measured_or(measured: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    return np.where(np.isfinite(measured), measured, fallback)


def _one_example_link_ratio(link_slopes: list[float | None]) -> np.ndarray:
    """v(x)/v(y) across each link for one example, κ(a)/2 (1 where the chain re-anchors): the
    fallback where a link's units cannot be measured."""
    return np.array([1.0 if s is None else float(theory.kappa(s)) / 2.0 for s in link_slopes])


def _forward_log_variance(stats: dict[str, np.ndarray], link_slopes: list[float | None]) -> np.ndarray:
    """``theory.forward_log_variance`` from the spreads measured over each layer's units.

    ``link_slopes[l]`` is the slope of the link into layer l, None where the chain re-anchors. A
    layer with fewer than two units takes the one-example closed form; an input whose units are not
    the previous layer's outputs' (a flatten between) takes v(x) = κ(a)/2·v(y) of the one-example
    ratio, since its features are not independent units."""
    units_in, units_out = stats["input_units"], stats["output_units"]
    output_terms = _measured_or(stats["output_unit_log_variance"], theory.gaussian_unit_log_variance(units_out))
    through_link = _one_example_link_ratio(link_slopes) * np.roll(output_terms, 1)
    same_units = np.append(False, units_in[1:] == units_out[:-1])
    input_terms = np.where(same_units, _measured_or(stats["input_unit_log_variance"], through_link), through_link)
    return theory.forward_log_variance(output_terms, input_terms, [s is None for s in link_slopes])


def _backward_log_variance(stats: dict[str, np.ndarray], link_slopes: list[float | None]) -> np.ndarray:
    """``theory.backward_log_variance`` from the spreads measured over each layer's units; mirror of
    ``_forward_log_variance`` (``link_slopes[l]``: the link from layer l+1 back to layer l)."""
    units_in, units_out = stats["input_units"], stats["output_units"]
    grad_input_terms = _measured_or(stats["grad_input_unit_log_variance"],
                                    theory.gaussian_unit_log_variance(units_in))
    through_link = _one_example_link_ratio(link_slopes) * np.roll(grad_input_terms, -1)
    same_units = np.append(units_out[:-1] == units_in[1:], False)
    grad_output_terms = np.where(same_units, _measured_or(stats["grad_output_unit_log_variance"], through_link),
                                 through_link)
    return theory.backward_log_variance(grad_input_terms, grad_output_terms, [s is None for s in link_slopes])


def _example_correlations(record: Any) -> dict[str, np.ndarray]:
    """Per call: the measured mean cosine between examples and effective rank of its output (over the
    first examples), and their one-step predictions from the previous call's Gram matrix across a
    rectifier or view link (``correlation.rectifier_gram_map``); NaN where there is no closed link."""
    count = len(record.names)
    measured, rank, predicted, predicted_rank = (np.full(count, np.nan) for _ in range(4))
    grams = record.example_grams or [None] * count
    for index, gram in enumerate(grams):
        if gram is None:
            continue
        measured[index], rank[index] = correlation.gram_statistics(gram)
        previous = grams[index - 1] if index else None
        kinds = set(record.prefix_kinds[index].split("+")) - {""}
        if (previous is None or record.forward_links[index] is None or not kinds <= {"rectifier", "view"}
                or previous.shape != gram.shape):
            continue
        slope = slope_from_factor(record.prefix_factors[index]) if "rectifier" in kinds else 1.0
        expected = correlation.rectifier_gram_map(
            previous, float(record.stats["output_elements"][index - 1]), slope,
            record.geometries[index].fan_in * float(record.stats["weight_second_moment"][index]),
            float(record.stats["bias_second_moment"][index]))
        predicted[index], predicted_rank[index] = correlation.gram_statistics(expected)
    return {"example_correlation": measured, "example_correlation_pred": predicted, "effective_rank": rank,
            "effective_rank_pred": predicted_rank}


def build_frame(records: list) -> pd.DataFrame:
    """Return the tidy frame (one row per seed × layer call) with the chain's predictions.

    Predictions use the scheme's nominal Var[w] (``*_pred``) where a scheme was applied, else the
    sampled weights; ``*_pred_sampled`` always uses the sampled weights' E[w²].
    """
    frames = []
    for record, predicted in zip(records, _predictions(records)):
        stats = record.stats
        geometries = record.geometries
        count = len(geometries)
        sampled_w = stats["weight_second_moment"]
        sampled_b = stats["bias_second_moment"]
        has_nominal = record.nominal_weight_variance is not None
        var_w, _ = _chain_weights(record)
        forward_slopes = [slope_from_factor(f) for f in record.forward_links]
        backward_slopes = [slope_from_factor(f) for f in record.backward_links]
        fan_in = np.array([g.fan_in for g in geometries], dtype=float)
        fan_out = np.array([g.fan_out for g in geometries], dtype=float)
        # The closed-form part of each incoming path (all of it, or e.g. the rectifier before a pool).
        prefix = np.array(record.prefix_factors)
        prefix[0] = 1.0
        prefix_backward = np.array(record.prefix_backward_factors)
        prefix_backward[0] = 1.0
        link_back = np.append(prefix_backward[1:], 1.0)
        resets = np.array(record.link_resets, dtype=bool)
        slope_after = [slope_from_factor(prefix[i + 1]) if i + 1 < count and "rectifier" in record.prefix_kinds[i + 1]
                       else None for i in range(count)]
        chain_slopes = [slope_from_factor(f) for f in prefix]
        frames.append(pd.DataFrame({
            "seed": record.seed,
            "index": np.arange(count),
            "name": record.names,
            "kind": record.kinds,
            "module_type": record.module_types,
            "ends_in": record.ends_in if record.ends_in else [""] * count,
            "weight_count": [g.fan_in * g.out_channels for g in geometries],
            "fan_in": fan_in.astype(int),
            "fan_out": fan_out.astype(int),
            "torch_fan_out": [g.receptive * g.out_channels for g in geometries],  # k^d·c_out: torch's, groups ignored
            "slope": [np.nan if s is None else s for s in slope_after],
            "link_in": record.link_kinds,
            "link_resets": resets,
            "link_prefix_factor": prefix,
            "link_prefix_factor_backward": prefix_backward,
            "backward_link_closed": [f is not None for f in record.backward_links],
            "var_w": var_w,
            "var_w_nominal": record.nominal_weight_variance if has_nominal else np.full(count, np.nan),
            "var_w_sampled": sampled_w,
            "bias_second_moment": sampled_b,
            "input_second_moment": stats["input_second_moment"],
            "input_mean": stats["input_mean"],
            "rectifier_factor_in": stats["input_rectifier_factor"],
            # the activations on the closed path in, at unit input: the c of He's c·n·Var[w] = 1
            "activation_factor_in": stats["input_activation_factor"],
            "input_unit_mean_abs_max": stats["input_unit_mean_abs_max"],
            "input_count_per_unit": stats["input_count_per_unit"],
            "input_is_model_input": stats["input_is_model_input"] > 0,
            "output_variance": stats["output_variance"],
            "output_elements": stats["output_elements"],  # per example
            "var_y": stats["output_second_moment"],
            "var_y_pred": predicted["var_y_pred"],
            "var_y_pred_sampled": predicted["var_y_pred_sampled"],
            "padding_factor": predicted["padding_factor"],
            "padding_factor_backward": predicted["padding_factor_backward"],
            "stride_factor": [1.0 / math.prod(g.stride) if g.stride else 1.0 for g in geometries],
            "forward_factor": prefix * fan_in * var_w,
            "grad_output_variance": stats["grad_output_variance"],
            "grad_output_second_moment": stats["grad_output_second_moment"],
            "grad_output_pred": predicted["grad_output_pred"],
            "grad_input_variance": stats["grad_input_variance"],
            "grad_var": stats["grad_input_second_moment"],
            "grad_var_pred": predicted["grad_var_pred"],
            "grad_var_pred_sampled": predicted["grad_var_pred_sampled"],
            "backward_factor": link_back * fan_out * var_w,
            # χ₁ = n·E[w²]·E[f'(h)²] over the closed link in (E[f'²] at the measured pre-activation for a
            # smooth activation, ½(1+a²) for a rectifier): the mean growth of a small perturbation
            "chi1": np.where([i == 0 or record.forward_links[i] is not None for i in range(count)],
                             prefix_backward * fan_in * sampled_w, np.nan),
            "weight_grad_variance": stats["weight_grad_variance"],
            "output_unit_log_variance": stats["output_unit_log_variance"],
            "input_unit_log_variance": stats["input_unit_log_variance"],
            "grad_output_unit_log_variance": stats["grad_output_unit_log_variance"],
            "grad_input_unit_log_variance": stats["grad_input_unit_log_variance"],
            **_example_correlations(record),
            "forward_log_variance": _forward_log_variance(stats, forward_slopes),
            "backward_log_variance": _backward_log_variance(stats, backward_slopes),
            # the layer-chain gains judged by the verdicts accumulate over every step since the last reset
            "forward_log_variance_chain": _forward_log_variance(
                stats, [None if i == 0 or resets[i] else chain_slopes[i] for i in range(count)]),
            "backward_log_variance_chain": _backward_log_variance(
                stats, [None if i + 1 == count or resets[i + 1] else chain_slopes[i + 1] for i in range(count)]),
        }))
    return pd.concat(frames, ignore_index=True)


def build_sum_frame(records: list) -> pd.DataFrame:
    """Return one row per seed × residual sum s = skip + branch, with the sum-of-branches prediction.

    For a branch whose last weights are zero-mean and drawn independently of the skip,
    E[(skip + branch)²] = E[skip²] + E[branch²] in expectation (the cross term averages to 0);
    ``second_moment_pred`` is that sum. ``stream`` numbers the chains of sums linked skip to
    output (a residual stream); ``stream_growth`` is E[s²]/E[skip²] of the stream's first sum, so
    the stream's last row holds its whole growth. ``grad_second_moment`` is E[Δs²] at the sum.
    """
    frames = []
    for record in records:
        sums = record.sums
        count = len(sums["name"])
        if not count:
            continue
        stream, first_skip, depth = np.zeros(count, dtype=int), np.zeros(count), np.zeros(count, dtype=int)
        streams = 0
        for position in range(count):
            previous = sums["previous"][position]
            if previous < 0:
                stream[position], first_skip[position], depth[position] = streams, sums["skip_second_moment"][position], 1
                streams += 1
            else:
                stream[position], first_skip[position] = stream[previous], first_skip[previous]
                depth[position] = depth[previous] + 1
        frames.append(pd.DataFrame({
            "seed": record.seed,
            "index": np.arange(count),
            "name": sums["name"],
            "stream": stream,
            "depth": depth,
            "skip_second_moment": sums["skip_second_moment"],
            "branch_second_moment": sums["branch_second_moment"],
            "second_moment": sums["second_moment"],
            "second_moment_pred": sums["skip_second_moment"] + sums["branch_second_moment"],
            "branch_ratio": _ratio(sums["branch_second_moment"], sums["skip_second_moment"]),
            "stream_growth": _ratio(sums["second_moment"], first_skip),
            "grad_second_moment": sums["grad_second_moment"],
            "branch_ends": sums.get("branch_ends", np.full(count, "", dtype=object)),  # the branch's last layers
        }))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=SUM_COLUMNS)


SUM_COLUMNS = ["seed", "index", "name", "stream", "depth", "skip_second_moment", "branch_second_moment",
               "second_moment", "second_moment_pred", "branch_ratio", "stream_growth", "grad_second_moment", "branch_ends"]


def build_norm_frame(records: list) -> pd.DataFrame:
    """Return one row per seed × train-mode normalization: its eps, the variance of its input
    (E[x²] for an RMS norm) and the factor Var/(Var + eps) by which it falls short of unit output:
    a normalization undoes any scale of its input only while Var ≫ eps."""
    frames = [pd.DataFrame({"seed": record.seed, "name": record.norms["name"], "eps": record.norms["eps"],
                            "input_variance": record.norms["variance"],
                            "weight_second_moment": record.norms["weight_second_moment"]})
              for record in records if record.norms and len(record.norms["name"])]
    if not frames:
        return pd.DataFrame(columns=["seed", "name", "eps", "input_variance", "weight_second_moment",
                                     "undone_fraction"])
    frame = pd.concat(frames, ignore_index=True)
    variance = frame["input_variance"].clip(lower=0.0)  # E[x²] − E[x]² of a near-zero input can round below 0
    frame["undone_fraction"] = variance / (variance + frame["eps"])
    return frame


def build_attention_frame(records: list) -> pd.DataFrame:
    """Return one row per seed × attention call (``F.scaled_dot_product_attention``): its keys and
    the spread of its logits, √E[(scale·q·k)²] ≈ scale·√(Σ_d E[q_d²]·E[k_d²])."""
    frames = [pd.DataFrame({"seed": record.seed, "name": record.attention["name"], "keys": record.attention["keys"],
                            "logit_std": np.sqrt(np.asarray(record.attention["logit_second_moment"], dtype=float))})
              for record in records if record.attention and len(record.attention["name"])]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["seed", "name", "keys",
                                                                                      "logit_std"])


def build_dead_frame(records: list) -> pd.DataFrame:
    """Return one row per seed × ReLU call: its units (channels after a conv, features after a
    Linear) and the fraction that is zero on every example and position of the batch."""
    frames = [pd.DataFrame({"seed": record.seed, "name": record.dead_units["name"], "units": record.dead_units["units"],
                            "dead_fraction": record.dead_units["dead_fraction"]})
              for record in records if len(record.dead_units["name"])]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["seed", "name", "units", "dead_fraction"])


JACOBIAN_COLUMNS = ["seed", "projections", "outputs", "mean_squared_singular_value",
                    "mean_squared_singular_value_pred", "spread", "spread_standard_error", "spread_pred", "reason"]


def build_jacobian_frame(frame: pd.DataFrame, measured: dict[int, np.ndarray | str], init: str,
                         batch_size: int) -> pd.DataFrame:
    """Return one row per seed: the input–output Jacobian's mean squared singular value and spread
    from its random projections (``conditioning.jacobian_spectrum``), beside the closed form of a
    fully connected chain (``_jacobian_prediction``); ``reason`` says why a seed has no estimate."""
    rows = []
    for seed, rows_or_reason in measured.items():
        seed_frame = frame[frame["seed"] == seed].sort_values("index")
        if isinstance(rows_or_reason, str):
            rows.append({"seed": seed, "projections": 0, "reason": rows_or_reason})
            continue
        with np.errstate(divide="ignore", invalid="ignore"):
            spectrum = conditioning.jacobian_spectrum(rows_or_reason[:, 0], rows_or_reason[:, 1],
                                                      int(rows_or_reason[0, 2]))
        mean_pred, spread_pred = _jacobian_prediction(seed_frame, init, spectrum.outputs, batch_size)
        rows.append({"seed": seed, "projections": spectrum.projections, "outputs": spectrum.outputs,
                     "mean_squared_singular_value": spectrum.mean_squared_singular_value,
                     "mean_squared_singular_value_pred": mean_pred, "spread": spectrum.spread,
                     "spread_standard_error": spectrum.spread_standard_error, "spread_pred": spread_pred,
                     "reason": ""})
    return pd.DataFrame(rows, columns=JACOBIAN_COLUMNS)


def _jacobian_prediction(seed_frame: pd.DataFrame, init: str, outputs: int, batch_size: int) -> tuple[float, float]:
    """Return the closed-form (m₁, s²) of ``conditioning`` where the net is one fully connected chain:
    nn.Linear layers joined by rectifiers or views only, from the model's input to its output (the
    last layer's output is all the model returns); (NaN, NaN) elsewhere. An ``orthogonal`` init
    takes the orthogonal recursion; the model's own weights are taken as i.i.d."""
    nan = (float("nan"), float("nan"))
    kinds = [set(str(k).split("+")) for k in seed_frame["link_in"].iloc[1:]]
    elements = seed_frame["output_elements"].to_numpy(dtype=float)
    if (not len(seed_frame) or not (seed_frame["module_type"] == "Linear").all()
            or not bool(seed_frame["input_is_model_input"].iloc[0])
            or any(not k <= {"rectifier", "view"} for k in kinds) or seed_frame["link_resets"].iloc[1:].any()
            or not math.isclose(outputs, batch_size * elements[-1])):
        return nan
    widths = [int(seed_frame["fan_in"].iloc[0])] + [int(n) for n in seed_frame["fan_out"]]
    slopes = [slope_from_factor(f) if "rectifier" in k else None
              for f, k in zip(seed_frame["link_prefix_factor"].iloc[1:], kinds)] + [None]
    gains = (seed_frame["fan_in"] * seed_frame["var_w_sampled"]).to_numpy(dtype=float)
    spread = conditioning.jacobian_spread(widths, slopes, orthogonal=init.startswith("orthogonal"))
    return conditioning.jacobian_mean_squared_singular_value(gains, slopes), spread


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator/denominator, NaN where both underflowed to 0 (a signal gone before the sum)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(numerator, dtype=float) / np.asarray(denominator, dtype=float)


def _log10(values: pd.Series | np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log10(np.asarray(values, dtype=float))


def to_json_dict(result: Any) -> dict[str, Any]:
    """Return ``{"config", "layers", "summary"}`` of a probe result, JSON-ready (NaN → null)."""
    summary = {key: json_value(value) for key, value in result.gains().items()}
    return {"config": result.config, "layers": json_records(result.summary()), "summary": summary,
            "residual_sums": json_records(result.sums),
            "normalizations": json_records(result.norms) if getattr(result, "norms", None) is not None else [],
            "coverage": result.coverage.to_dict() if getattr(result, "coverage", None) is not None else None,
            "jacobian": json_records(result.jacobian) if getattr(result, "jacobian", None) is not None else []}
