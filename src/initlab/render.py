"""Text and HTML renderings of a check report (its figure is ``report.plot_check``)."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

    from .check import CheckReport


def check_verdict_lines(report: "CheckReport") -> list[str]:
    """Return the short verdict: one line per direction, and one per residual stream set."""
    gains = report.gains
    lines = [
        f"forward:  {report.verdict_forward:<10} worst chain gain {gains['forward_gain_layers']:.3g} "
        f"at {gains['worst_forward_layer']!r} (He: 1)",
        f"backward: {report.verdict_backward:<10} worst chain gain {gains['backward_gain_layers']:.3g} "
        f"at {gains['worst_backward_layer']!r} (He: 1)",
    ]
    if gains.get("residual_sums"):
        lines.append(f"residual: {gains['residual_sums']} sums in {len(report.streams)} stream(s); fastest growth "
                     f"after a stream's first sum ×{gains['stream_growth_forward']:.3g} forward, "
                     f"×{gains['stream_growth_backward']:.3g} backward (linear: at most ×K over K sums)")
        sums = report.result.sums
        ratios = sums.loc[sums["seed"] == sums["seed"].min(), "branch_ratio"].to_numpy(dtype=float)
        ratios = ratios[np.isfinite(ratios) & (ratios > 0)]
        if len(ratios):
            lines.append(f"branches: E[branch²]/E[skip²] {ratios.min():.2g}–{ratios.max():.2g} (median "
                         f"{np.median(ratios):.2g}); small branches (layer scale, 1/√(2L), zero-init) are a design")
    judged = report.layers["judged_by"].value_counts() if "judged_by" in report.layers else {}
    lines.append(f"judged: {judged.get('chain', 0)} layer(s) by their chain gain, {judged.get('stream', 0)} in "
                 f"residual branches by their stream, {judged.get('normalization', 0)} ending in a normalization "
                 "(which removes their scale)")
    lines += [line for line in (examples_line(gains), chi1_line(gains), jacobian_line(report.result.jacobian)) if line]
    if report.result.coverage is not None:
        lines.append(f"coverage: {report.result.coverage.text()}")
    return lines


def examples_line(gains: dict) -> str:
    """How alike the examples have become (the collapse verdict, ``verdicts._collapse``); '' unmeasured."""
    if not np.isfinite(gains.get("example_correlation", np.nan)):
        return ""
    return (f"examples: mean cosine {gains['example_correlation']:.4f} at {gains['example_correlation_layer']!r}, "
            f"{gains['verdict_correlation']} (1 − c is 10^{-gains['collapse_decades']:.2f} of what He-initialized ReLU "
            "layers would leave)")


def chi1_line(gains: dict) -> str:
    """The geometric mean of χ₁ over the chain-judged layers; '' where there is none."""
    if not np.isfinite(gains.get("chi1_geometric_mean", np.nan)):
        return ""
    return (f"chi1: {gains['chi1_geometric_mean']:.3g} per layer, geometric mean (perturbations grow by χ₁: "
            "1 critical, < 1 ordered, > 1 chaotic)")


def jacobian_line(jacobian: "pd.DataFrame | None") -> str:
    """The Jacobian's spectrum in one line, seed means (``ProbeResult.jacobian``), or why there is
    none; '' where it was not asked for. The ± is the projections' error of the mean."""
    if jacobian is None or jacobian.empty:
        return ""
    measured = jacobian[jacobian["reason"] == ""]
    if measured.empty:
        return f"jacobian: not measured ({jacobian['reason'].iloc[0]})"
    mean = measured["mean_squared_singular_value"].mean()
    if not measured["spread"].notna().any():
        return f"jacobian: mean squared singular value {mean:.3g}: no signal reaches the output, no spread to measure"
    seeds = len(measured)
    error = float(np.sqrt((measured["spread_standard_error"] ** 2).sum())) / seeds
    theory = measured["spread_pred"].mean()
    theory_text = f"; a zero-bias Gaussian ReLU chain of these widths: {theory:.3g}" if np.isfinite(theory) else ""
    over = f" over {seeds} seeds" if seeds > 1 else ""
    return (f"jacobian: mean squared singular value {mean:.3g}, spread s² = {measured['spread'].mean():.3g} ± "
            f"{error:.2g}{over}{theory_text} ({int(measured['projections'].iloc[0])} projections"
            f"{' each' if seeds > 1 else ''}; 0: an isometry)")


def check_text(report: "CheckReport") -> str:
    """Return the report as the CLI prints it: verdicts, then findings with their fixes."""
    status = "HEALTHY" if report.healthy else "UNHEALTHY"
    lines = [f"{status}: Check of {len(report.layers)} layer calls, "
             f"normalization in {report.mode} mode, direction checked: {report.direction}"]
    lines += ["  " + line for line in check_verdict_lines(report)]
    for finding in report.findings:
        lines.append(f"{finding.severity}: {finding.message}")
        if finding.fix:
            lines.append(f"  fix: {finding.fix}")
    if not report.findings:
        lines.append("no misconfiguration found")
    return "\n".join(lines)


def check_html(report: "CheckReport") -> str:
    """The report as a notebook shows it: status, verdicts, findings, and the layer table folded."""
    colour = "#1a7f37" if report.healthy else "#cf222e"
    items = "".join(f"<li><b>{html.escape(f.severity)}</b>: {html.escape(f.message)}"
                    + (f"<br><i>fix:</i> {html.escape(f.fix)}" if f.fix else "") + "</li>"
                    for f in report.findings) or "<li>no misconfiguration found</li>"
    columns = ["name", "kind", "init", "forward_factor", "backward_factor", "log10_forward_gain_layers",
               "log10_backward_gain_layers", "verdict"]
    table = report.layers[columns].to_html(index=False, float_format=lambda v: f"{v:.3g}", border=0)
    verdicts = "<br>".join(html.escape(line) for line in check_verdict_lines(report))
    return (f"<div><p style='color:{colour};font-weight:bold'>{'HEALTHY' if report.healthy else 'UNHEALTHY'}"
            f" (normalization in {html.escape(report.mode)} mode, direction {html.escape(report.direction)})</p>"
            f"<p style='font-family:monospace'>{verdicts}</p><ul>{items}</ul>"
            f"<details><summary>{len(report.layers)} layer calls</summary>{table}</details></div>")
