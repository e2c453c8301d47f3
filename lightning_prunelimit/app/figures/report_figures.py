"""The report's figures, drawn from a report alone (so they can be redrawn from report.json)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from lightning_prunelimit.app.reporting.report import JobReport

__all__ = ["plot_accuracy_vs_sparsity", "plot_sweep_limits", "write_report_figures"]

#: Sub-directory of the run directory that holds the report's figures.
FIGURE_DIR = "figures"


def write_report_figures(report: JobReport, run_dir: str | os.PathLike[str]) -> list[str]:
    """Draw every figure the report has data for into ``<run_dir>/figures/``.

    ``spectrum.png`` (Hessian spectral density), ``prune_limit.png`` (the fixed point behind
    the prediction), ``sparsity_sweep.png`` (accuracy against sparsity without fine-tuning, with
    the predicted and the actual limit), ``accuracy_vs_sparsity.png`` (the same curve with the
    dense network and the pruned, fine-tuned one) and ``layer_sparsity.png`` (realised sparsity
    of each pruned tensor).

    Returns:
        The paths written, relative to ``run_dir``.

    Example:
        >>> import tempfile
        >>> report = JobReport(status="completed",
        ...     pruned={"per_layer": {"fc.weight": 0.5}, "requested_sparsity": 0.5})
        >>> with tempfile.TemporaryDirectory() as d:
        ...     write_report_figures(report, d)
        ['figures/layer_sparsity.png']
    """
    from lightning_prunelimit.plotting import (
        plot_layer_sparsity,
        plot_pruning_limit,
        plot_sparsity_sweep,
        plot_spectrum,
    )

    figures: dict[str, Figure] = {}
    spectrum = report.hessian_spectrum()
    if spectrum is not None:
        figures["spectrum.png"] = plot_spectrum(spectrum)
    prediction = report.limit_prediction()
    if prediction is not None:
        figures["prune_limit.png"] = plot_pruning_limit(prediction)
    result = report.sweep_result()
    if result is not None:
        figures["sparsity_sweep.png"] = plot_sparsity_sweep(
            result,
            predicted_sparsity=report.value("prediction.sparsity"),
            predicted_interval=_interval(report),
        )
        figures["accuracy_vs_sparsity.png"] = plot_accuracy_vs_sparsity(report)
    if report.pruned and report.pruned.get("per_layer"):
        figures["layer_sparsity.png"] = plot_layer_sparsity(
            report.pruned["per_layer"], amount=report.pruned.get("requested_sparsity")
        )
    directory = Path(run_dir) / FIGURE_DIR
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, figure in figures.items():
        figure.savefig(directory / name, dpi=120)
        written.append(f"{FIGURE_DIR}/{name}")
    return written


def plot_accuracy_vs_sparsity(report: JobReport) -> Figure:
    """Test accuracy against sparsity: pruning without fine-tuning, and the job's pruned network.

    The curve is the sparsity sweep (one-shot global magnitude pruning of the dense network,
    no fine-tuning); markers show the dense network and the network pruned at the predicted
    sparsity and fine-tuned; vertical lines mark the predicted and the actual limit, a band the
    prediction's interval; with a re-fit sweep its curve and limit are drawn too.

    Example:
        >>> from lightning_prunelimit.pruning import SparsitySweepResult
        >>> sweep = SparsitySweepResult((0.0, 0.5, 0.9), (0.9, 0.9, 0.3), (0.3, 0.3, 1.5), 0.5,
        ...     0.9, 0.0)
        >>> report = JobReport(status="completed", dense={"accuracy": 0.9},
        ...     actual={"result": sweep.to_dict()}, pruned={"sparsity": 0.6, "accuracy": 0.88})
        >>> axes = plot_accuracy_vs_sparsity(report).axes[0]
        >>> [line.get_label() for line in axes.lines][:3]
        ['no fine-tuning (sweep)', 'dense', 'pruned + fine-tuned']
    """
    figure = Figure(figsize=(6.4, 4.0), layout="constrained")
    axes = figure.add_subplot()
    result = report.sweep_result()
    if result is not None:
        axes.plot(
            result.sparsities,
            result.accuracies,
            "o-",
            ms=3,
            color="tab:blue",
            label="no fine-tuning (sweep)",
        )
    if result is not None and result.refit_accuracies is not None:
        shown = [
            (s, a)
            for s, a in zip(result.sparsities, result.refit_accuracies)
            if a == a  # NaN: not re-fitted there
        ]
        axes.plot(
            [s for s, _ in shown],
            [a for _, a in shown],
            "s-",
            ms=3,
            color="tab:orange",
            label="kept weights re-fitted (sweep)",
        )
    dense = report.value("dense.accuracy")
    if dense is not None:
        axes.plot([0.0], [dense], "s", ms=8, color="black", label="dense")
    pruned_accuracy = report.value("pruned.accuracy")
    pruned_sparsity = report.value("pruned.sparsity")
    if pruned_accuracy is not None and pruned_sparsity is not None:
        axes.plot(
            [pruned_sparsity],
            [pruned_accuracy],
            "*",
            ms=14,
            color="tab:red",
            label="pruned + fine-tuned",
        )
    for key, color, style, label in (
        ("prediction.sparsity", "tab:red", "-.", "predicted limit"),
        ("actual.sparsity_limit", "tab:green", "--", "actual limit"),
        ("actual.refit_sparsity_limit", "tab:orange", "--", "re-fitted limit"),
    ):
        value = report.value(key)
        if value is not None:
            axes.axvline(value, color=color, ls=style, label=f"{label} {value:.4f}")
    interval = _interval(report)
    if interval is not None:
        axes.axvspan(
            *interval,
            color="tab:red",
            alpha=0.12,
            lw=0,
            label=f"predicted interval [{interval[0]:.4f}, {interval[1]:.4f}]",
        )
    for refit, color, name in ((False, "tab:green", "actual"), (True, "tab:orange", "re-fitted")):
        measured = report.measured_interval(refit=refit)
        if measured is not None:
            axes.axvspan(
                *measured,
                facecolor="none",
                edgecolor=color,
                hatch="//",
                lw=0.0,
                alpha=0.6,
                label=f"{name} interval [{measured[0]:.4f}, {measured[1]:.4f}]",
            )
    axes.set_xlabel("sparsity (fraction of weights pruned)")
    axes.set_ylabel("test accuracy")
    axes.set_xlim(-0.02, 1.0)
    axes.set_title("Accuracy against sparsity")
    axes.legend(loc="lower left")
    axes.grid(alpha=0.3)
    return figure


def plot_sweep_limits(rows: list[dict[str, Any]]) -> Figure:
    """Predicted sparsity against the actual limit, one point per job of a sweep.

    Points on the diagonal are exact predictions; below it the prediction is conservative.
    Vertical bars are the predicted intervals, horizontal ones the measured limits' intervals.

    Args:
        rows: sweep summary rows (``SweepSummary.rows``), with ``job``,
            ``predicted_sparsity`` and ``actual_sparsity_limit``.

    Example:
        >>> rows = [{"job": "0", "predicted_sparsity": 0.5, "actual_sparsity_limit": 0.6},
        ...         {"job": "1", "predicted_sparsity": None, "actual_sparsity_limit": 0.7}]
        >>> len(plot_sweep_limits(rows).axes[0].collections[0].get_offsets())
        1
    """
    points = [
        (row["actual_sparsity_limit"], row["predicted_sparsity"], str(row["job"]))
        for row in rows
        if row.get("actual_sparsity_limit") is not None
        and row.get("predicted_sparsity") is not None
    ]
    figure = Figure(figsize=(4.8, 4.8), layout="constrained")
    axes = figure.add_subplot()
    axes.plot([0, 1], [0, 1], color="gray", ls=":", lw=1, label="prediction = actual")
    axes.scatter([p[0] for p in points], [p[1] for p in points], color="tab:red", zorder=3)
    bars = [
        (row["actual_sparsity_limit"], row["predicted_sparsity"], lo, hi)
        for row in rows
        if row.get("actual_sparsity_limit") is not None
        and row.get("predicted_sparsity") is not None
        and (lo := row.get("predicted_sparsity_lo")) is not None
        and (hi := row.get("predicted_sparsity_hi")) is not None
    ]
    if bars:  # the prediction's interval as an error bar
        axes.errorbar(
            [b[0] for b in bars],
            [b[1] for b in bars],
            yerr=[[b[1] - b[2] for b in bars], [b[3] - b[1] for b in bars]],
            fmt="none",
            ecolor="tab:red",
            alpha=0.6,
            label="predicted interval",
        )
    measured = [
        (row["actual_sparsity_limit"], row["predicted_sparsity"], lo, hi)
        for row in rows
        if row.get("actual_sparsity_limit") is not None
        and row.get("predicted_sparsity") is not None
        and (lo := row.get("actual_sparsity_lo")) is not None
        and (hi := row.get("actual_sparsity_hi")) is not None
    ]
    if measured:  # the measured limit's interval as a horizontal error bar
        axes.errorbar(
            [b[0] for b in measured],
            [b[1] for b in measured],
            xerr=[[b[0] - b[2] for b in measured], [b[3] - b[0] for b in measured]],
            fmt="none",
            ecolor="tab:green",
            alpha=0.6,
            label="measured interval",
        )
    for actual, predicted, job in points:
        axes.annotate(job, (actual, predicted), textcoords="offset points", xytext=(4, 4))
    axes.set_xlabel("actual sparsity limit")
    axes.set_ylabel("predicted sparsity")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.set_title("Predicted against actual, by job")
    axes.legend(loc="upper left")
    axes.grid(alpha=0.3)
    return figure


def _interval(report: JobReport) -> tuple[float, float] | None:
    low, high = report.value("prediction.sparsity_lo"), report.value("prediction.sparsity_hi")
    return None if low is None or high is None else (low, high)
