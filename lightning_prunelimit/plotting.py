"""Figures of the callbacks' results: spectrum, predicted limit, layer sparsity, sparsity sweep.

Every function returns a ``matplotlib.figure.Figure`` built directly (no ``pyplot``, so no
global figure registry, no backend switching and nothing left open); save it with
``figure.savefig(path)``, which renders with Agg.

Example:
    >>> from lightning_prunelimit.plotting import plot_layer_sparsity
    >>> figure = plot_layer_sparsity({"fc1.weight": 0.6, "fc2.weight": 0.2}, amount=0.5)
    >>> [text.get_text() for text in figure.axes[0].get_xticklabels()]
    ['fc1.weight', 'fc2.weight']
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

import torch
from matplotlib.figure import Figure

if TYPE_CHECKING:  # pragma: no cover
    from lightning_prunelimit.curvature import Spectrum
    from lightning_prunelimit.limit import LimitPrediction

__all__ = [
    "plot_layer_sparsity",
    "plot_pruning_limit",
    "plot_sparsity_sweep",
    "plot_spectrum",
    "spectrum_density_curve",
]


class _SweepResult(Protocol):
    sparsities: Sequence[float]
    accuracies: Sequence[float]
    losses: Sequence[float]
    actual_limit: float
    dense_accuracy: float
    max_drop: float
    metric: str


def spectrum_density_curve(
    spectrum: Spectrum, *, num_points: int = 1000, sigma: float | None = None
) -> tuple[list[float], list[float]]:
    """The smoothed spectral density on an even grid covering the Ritz values.

    The grid spans ``[min node - 5 sigma, max node + 5 sigma]``; the density is
    ``spectrum.density(grid, sigma)`` (Gaussian kernels on the Ritz nodes, weighted by the
    quadrature weights, averaged over probes).

    Args:
        spectrum: the SLQ spectrum.
        num_points: grid size (>= 2).
        sigma: kernel width; default 1/200 of the Ritz value range (1e-3 if all are equal).

    Returns:
        ``(grid, density)`` as lists of floats.

    Example:
        >>> import torch
        >>> from lightning_prunelimit.curvature import Spectrum
        >>> spectrum = Spectrum(torch.tensor([[0.0, 1.0]]), torch.tensor([[0.5, 0.5]]), dim=2)
        >>> grid, density = spectrum_density_curve(spectrum, num_points=11)
        >>> len(grid), round(grid[0] + grid[-1], 6)
        (11, 1.0)
    """
    if isinstance(num_points, bool) or not isinstance(num_points, int) or num_points < 2:
        raise ValueError(f"num_points must be an int >= 2, got {num_points!r}")
    nodes = spectrum.nodes.detach().to(torch.float64)
    low, high = float(nodes.min()), float(nodes.max())
    if sigma is None:
        sigma = (high - low) / 200 if high > low else 1e-3
    if not (math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be positive and finite, got {sigma}")
    grid = torch.linspace(low - 5 * sigma, high + 5 * sigma, num_points, dtype=torch.float64)
    density = spectrum.density(grid, sigma)
    return grid.tolist(), torch.as_tensor(density, dtype=torch.float64).reshape(-1).tolist()


def plot_spectrum(
    spectrum: Spectrum, *, num_points: int = 1000, sigma: float | None = None
) -> Figure:
    """Spectral density of the Hessian (log-scale y) with the Ritz values marked below.

    Args:
        spectrum: the SLQ spectrum.
        num_points: grid size of the density curve.
        sigma: kernel width, see :func:`spectrum_density_curve`.

    Example:
        >>> import torch
        >>> from lightning_prunelimit.curvature import Spectrum
        >>> spectrum = Spectrum(torch.tensor([[-0.1, 2.0]]), torch.tensor([[0.9, 0.1]]), dim=5)
        >>> plot_spectrum(spectrum).axes[0].get_yscale()
        'log'
    """
    grid, density = spectrum_density_curve(spectrum, num_points=num_points, sigma=sigma)
    peak = max(density) if density else 0.0
    floor = peak * 1e-10 if peak > 0 else 1e-300
    figure = Figure(figsize=(6.4, 4.0), layout="constrained")
    axes = figure.add_subplot()
    axes.plot(grid, [max(d, floor) for d in density], color="tab:blue", lw=1.2)
    nodes = spectrum.nodes.detach().to(torch.float64).reshape(-1).tolist()
    axes.plot(nodes, [floor] * len(nodes), "|", color="tab:red", ms=12, label="Ritz values")
    axes.set_yscale("log")
    axes.set_ylim(bottom=floor / 2)
    axes.set_xlabel("eigenvalue")
    axes.set_ylabel("density")
    num_probes, num_iters = tuple(spectrum.nodes.shape)
    axes.set_title(
        f"Hessian spectral density (D={spectrum.dim}, {num_iters} Lanczos steps, "
        f"{num_probes} probe{'s' if num_probes != 1 else ''})"
    )
    axes.legend(loc="upper right")
    axes.grid(alpha=0.3)
    return figure


def plot_pruning_limit(prediction: LimitPrediction) -> Figure:
    """The predicted limit: where the sparsity reached at distance R meets the width G(R).

    Both curves are drawn against R, the norm of the weights removed by global magnitude
    pruning: the sparsity ``1 - rho`` that removes weights of norm R, and ``G(R)``, the fraction
    of directions the loss sublevel set leaves free at that distance. Pruning is predicted to be
    possible while the sparsity stays below G(R); the crossing is the predicted limit.

    Example:
        >>> from lightning_prunelimit.limit import LimitPrediction
        >>> p = LimitPrediction(0.5, 0.5, 1.0, 0.5, 0.1, 0.0, 4, 2, "abs",
        ...     (0.0, 0.5, 1.0), (2.0, 1.0, 0.0), (0.2, 0.5, 1.0))
        >>> plot_pruning_limit(p).axes[0].get_xlabel()
        'distance R (norm of the removed weights)'
    """
    figure = Figure(figsize=(6.4, 4.0), layout="constrained")
    axes = figure.add_subplot()
    distances = list(prediction.curve_distances)
    axes.plot(
        distances,
        list(prediction.curve_sparsities),
        color="tab:blue",
        label="sparsity of magnitude pruning at R",
    )
    axes.plot(
        distances,
        list(prediction.curve_widths),
        color="tab:orange",
        label="G(R): free fraction of the sublevel set",
    )
    if prediction.curve_widths_low is not None and prediction.curve_widths_high is not None:
        axes.fill_between(
            distances,
            list(prediction.curve_widths_low),
            list(prediction.curve_widths_high),
            color="tab:orange",
            alpha=0.2,
            lw=0,
            label="G(R) bounds (quadrature + probes)",
        )
    label = f"predicted limit: sparsity {prediction.sparsity:.4f}"
    if prediction.sparsity_interval is not None:
        low, high = prediction.sparsity_interval
        axes.axhspan(low, high, color="black", alpha=0.08, lw=0)
        label += f" [{low:.4f}, {high:.4f}]"
    axes.plot(
        [prediction.distance], [prediction.sparsity], "o", color="black", zorder=3, label=label
    )
    axes.axhline(prediction.sparsity, color="black", lw=0.8, ls=":")
    axes.set_xlabel("distance R (norm of the removed weights)")
    axes.set_ylabel("fraction of weights")
    axes.set_ylim(-0.02, 1.02)
    axes.set_title(
        f"Pruning limit (epsilon={prediction.epsilon:.3g}, zero fraction="
        f"{prediction.zero_fraction:.3g}, N={prediction.num_weights})"
    )
    axes.legend(loc="best")
    axes.grid(alpha=0.3)
    return figure


def plot_layer_sparsity(per_layer: Mapping[str, float], *, amount: float | None = None) -> Figure:
    """Bar chart of the realised sparsity of each pruned tensor.

    Args:
        per_layer: sparsity per tensor, e.g. ``SparsityReport.per_layer``.
        amount: the requested global sparsity, drawn as a horizontal line.

    Example:
        >>> figure = plot_layer_sparsity({"a.weight": 0.9, "b.weight": 0.1}, amount=0.5)
        >>> [round(float(bar.get_height()), 2) for bar in figure.axes[0].patches]
        [0.9, 0.1]
    """
    if not per_layer:
        raise ValueError("per_layer is empty: pass the sparsity of at least one tensor")
    names = list(per_layer)
    figure = Figure(figsize=(max(6.4, 0.45 * len(names) + 2), 4.0), layout="constrained")
    axes = figure.add_subplot()
    axes.bar(range(len(names)), [float(per_layer[n]) for n in names], color="tab:blue")
    axes.set_xticks(
        range(len(names)),
        names,
        rotation=60 if len(names) > 4 else 0,
        ha="right" if len(names) > 4 else "center",
    )
    if amount is not None:
        axes.axhline(float(amount), color="black", ls="--", lw=1, label=f"requested {amount:.3g}")
        axes.legend(loc="best")
    axes.set_ylim(0, 1.02)
    axes.set_ylabel("sparsity (fraction pruned)")
    axes.set_title("Sparsity per layer after global magnitude pruning")
    axes.grid(alpha=0.3, axis="y")
    return figure


def plot_sparsity_sweep(
    result: _SweepResult,
    *,
    predicted_sparsity: float | None = None,
    predicted_interval: tuple[float, float] | None = None,
) -> Figure:
    """Accuracy (or loss) of the pruned models against sparsity, with the limits marked.

    Draws the metric against sparsity, the pass threshold (dense value minus / plus
    ``max_drop``), the actual limit found by the sweep with its interval (a band, when the
    result has ``actual_limit_interval``) and, when given, the predicted sparsity and its
    interval: prediction and reality on one plot. A result with a re-fit curve
    (``refit_accuracies``; NaN points, not re-fitted, are left out) also gets that curve and
    its limit with its interval.

    Args:
        result: a ``SparsitySweepResult``.
        predicted_sparsity: e.g. ``PruningLimit.prediction.sparsity``.
        predicted_interval: e.g. ``PruningLimit.prediction.sparsity_interval``, drawn as a band.

    Example:
        >>> from types import SimpleNamespace
        >>> result = SimpleNamespace(sparsities=(0.0, 0.5, 0.9), accuracies=(0.9, 0.9, 0.5),
        ...     losses=(0.3, 0.3, 1.0), actual_limit=0.5, dense_accuracy=0.9, max_drop=0.0,
        ...     metric="accuracy")
        >>> axes = plot_sparsity_sweep(result, predicted_sparsity=0.6).axes[0]
        >>> sorted(round(line.get_xdata()[0], 2) for line in axes.lines[2:])
        [0.5, 0.6]
    """
    loss = result.metric == "loss"
    values = list(result.losses if loss else result.accuracies)
    sparsities = list(result.sparsities)
    figure = Figure(figsize=(6.4, 4.0), layout="constrained")
    axes = figure.add_subplot()
    axes.plot(sparsities, values, "o-", ms=3, color="tab:blue", label=f"pruned, {result.metric}")
    dense = values[sparsities.index(0.0)] if 0.0 in sparsities else result.dense_accuracy
    max_drop = float(getattr(result, "max_drop", 0.0))
    threshold = dense + max_drop if loss else dense - max_drop
    axes.axhline(
        threshold, color="gray", ls=":", lw=1, label=f"dense {'+' if loss else '-'} max_drop"
    )
    axes.axvline(
        result.actual_limit,
        color="tab:green",
        ls="--",
        label=f"actual limit {result.actual_limit:.4f}",
    )
    _measured_band(axes, getattr(result, "actual_limit_interval", None), "tab:green", "actual")
    if predicted_sparsity is not None:
        axes.axvline(
            float(predicted_sparsity),
            color="tab:red",
            ls="-.",
            label=f"predicted limit {float(predicted_sparsity):.4f}",
        )
    if predicted_interval is not None:
        low, high = (float(x) for x in predicted_interval)
        axes.axvspan(
            low, high, color="tab:red", alpha=0.12, lw=0, label=f"predicted [{low:.3f}, {high:.3f}]"
        )
    refit_values = getattr(result, "refit_losses" if loss else "refit_accuracies", None)
    refit_limit = getattr(result, "refit_actual_limit", None)
    if refit_values is not None and refit_limit is not None:
        steps = getattr(result, "refit_steps", 0)
        shown = [(s, v) for s, v in zip(sparsities, refit_values) if v is not None and v == v]
        axes.plot(
            [s for s, _ in shown],
            [v for _, v in shown],
            "s-",
            ms=3,
            color="tab:orange",
            label=f"pruned, re-fitted {steps} steps, {result.metric}",
        )
        axes.axvline(
            refit_limit, color="tab:orange", ls="--", label=f"re-fit limit {refit_limit:.4f}"
        )
        _measured_band(
            axes, getattr(result, "refit_actual_limit_interval", None), "tab:orange", "re-fit"
        )
    axes.set_xlabel("sparsity (fraction of weights pruned)")
    axes.set_ylabel("mean loss" if loss else "top-1 accuracy")
    axes.set_xlim(-0.02, 1.0)
    axes.set_title(
        "One-shot global magnitude pruning"
        + (", with and without re-fit" if refit_values is not None else ", no fine-tuning")
    )
    axes.legend(loc="best")
    axes.grid(alpha=0.3)
    return figure


def _measured_band(axes: object, interval: Sequence[float] | None, color: str, name: str) -> None:
    """A measured limit's interval: hatched, so it reads apart from the predicted band."""
    if interval is None:
        return
    low, high = (float(x) for x in interval)
    axes.axvspan(  # type: ignore[attr-defined]
        low, high, facecolor="none", edgecolor=color, hatch="//", lw=0.0, alpha=0.6,
        label=f"{name} [{low:.3f}, {high:.3f}]",
    )  # fmt: skip


def plot_limit_trajectory(
    epochs: Sequence[int],
    sparsities: Sequence[float],
    intervals: Sequence[tuple[float, float] | None] | None = None,
) -> Figure:
    """The predicted limit over training: when the network became prunable.

    Args:
        epochs: the epochs at which the limit was predicted.
        sparsities: the predicted sparsity at each.
        intervals: its ``(lo, hi)`` interval at each (None entries allowed), drawn as a band.

    Example:
        >>> figure = plot_limit_trajectory([1, 2, 3], [0.2, 0.5, 0.7],
        ...     [(0.1, 0.3), (0.4, 0.6), (0.65, 0.75)])
        >>> figure.axes[0].get_ylabel()
        'predicted sparsity'
    """
    if len(epochs) != len(sparsities) or not epochs:
        raise ValueError(
            f"epochs and sparsities must be non-empty and of equal length, got {len(epochs)} "
            f"and {len(sparsities)}"
        )
    figure = Figure(figsize=(6.4, 4.0), layout="constrained")
    axes = figure.add_subplot()
    x = [int(e) for e in epochs]
    axes.plot(x, [float(s) for s in sparsities], "o-", ms=3, color="tab:red", label="predicted")
    if intervals is not None:
        pairs = [(e, i) for e, i in zip(x, intervals) if i is not None]
        if pairs:
            axes.fill_between(
                [e for e, _ in pairs],
                [float(i[0]) for _, i in pairs],
                [float(i[1]) for _, i in pairs],
                color="tab:red",
                alpha=0.15,
                lw=0,
                label="interval",
            )
    axes.set_xlabel("epoch")
    axes.set_ylabel("predicted sparsity")
    axes.set_ylim(-0.02, 1.02)
    axes.set_title("Predicted pruning limit during training")
    axes.legend(loc="best")
    axes.grid(alpha=0.3)
    return figure
