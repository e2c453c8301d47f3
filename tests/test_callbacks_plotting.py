from __future__ import annotations

import matplotlib.pyplot as plt
import pytest
import torch
from matplotlib.figure import Figure

from lightning_prunelimit.callbacks import SparsitySweepResult
from lightning_prunelimit.curvature import Spectrum
from lightning_prunelimit.limit import LimitPrediction
from lightning_prunelimit.plotting import (
    plot_layer_sparsity,
    plot_pruning_limit,
    plot_sparsity_sweep,
    plot_spectrum,
    spectrum_density_curve,
)

SPECTRUM = Spectrum(
    torch.tensor([[-0.5, 0.1, 2.0, 9.0], [0.0, 0.2, 1.0, 8.0]], dtype=torch.float64),
    torch.tensor([[0.1, 0.6, 0.2, 0.1], [0.3, 0.3, 0.3, 0.1]], dtype=torch.float64),
    dim=100,
)


def test_density_curve_covers_the_ritz_values_and_integrates_to_one():
    grid, density = spectrum_density_curve(SPECTRUM, num_points=4001, sigma=0.05)
    assert grid[0] == pytest.approx(-0.5 - 0.25) and grid[-1] == pytest.approx(9.0 + 0.25)
    torch.testing.assert_close(
        torch.tensor(density, dtype=torch.float64),
        SPECTRUM.density(torch.tensor(grid, dtype=torch.float64), 0.05),
        rtol=0,
        atol=0,
    )
    assert torch.trapezoid(torch.tensor(density), torch.tensor(grid)) == pytest.approx(1, abs=1e-4)
    default_grid, _ = spectrum_density_curve(SPECTRUM)
    assert len(default_grid) == 1000 and default_grid[0] == pytest.approx(-0.5 - 5 * 9.5 / 200)
    with pytest.raises(ValueError, match="num_points"):
        spectrum_density_curve(SPECTRUM, num_points=1)


def test_figures_never_touch_pyplot_and_save_as_png(tmp_path):
    before = plt.get_fignums()
    figure = plot_spectrum(SPECTRUM, sigma=0.1)
    assert isinstance(figure, Figure) and plt.get_fignums() == before
    axes = figure.axes[0]
    assert axes.get_yscale() == "log"
    curve, ritz = axes.lines[:2]
    assert list(ritz.get_xdata()) == SPECTRUM.nodes.reshape(-1).tolist()
    assert max(curve.get_ydata()) == pytest.approx(
        float(SPECTRUM.density(torch.tensor(curve.get_xdata()), 0.1).max())
    )
    figure.savefig(tmp_path / "spectrum.png")
    assert (tmp_path / "spectrum.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_pruning_limit_figure_shows_both_curves_and_their_crossing():
    prediction = LimitPrediction(
        0.4, 0.6, 1.5, 0.6, 0.01, 0.0, 10, 4, "abs",
        (0.0, 0.4, 1.0), (3.0, 1.5, 0.0), (0.1, 0.6, 1.0),
    )  # fmt: skip
    axes = plot_pruning_limit(prediction).axes[0]
    sparsity, width, crossing = axes.lines[:3]
    assert list(sparsity.get_xdata()) == [3.0, 1.5, 0.0]
    assert list(sparsity.get_ydata()) == pytest.approx([1.0, 0.6, 0.0])
    assert list(width.get_ydata()) == [0.1, 0.6, 1.0]
    assert (crossing.get_xdata()[0], crossing.get_ydata()[0]) == (1.5, 0.6)


def test_layer_sparsity_bars():
    figure = plot_layer_sparsity({"a.weight": 0.25, "b.weight": 0.75, "c.weight": 0.5}, amount=0.5)
    axes = figure.axes[0]
    assert [bar.get_height() for bar in axes.patches] == [0.25, 0.75, 0.5]
    assert [t.get_text() for t in axes.get_xticklabels()] == ["a.weight", "b.weight", "c.weight"]
    assert axes.lines[0].get_ydata()[0] == 0.5
    with pytest.raises(ValueError, match="per_layer is empty"):
        plot_layer_sparsity({})


@pytest.mark.parametrize("metric", ["accuracy", "loss"])
def test_sweep_figure_marks_the_actual_and_the_predicted_limit(metric):
    result = SparsitySweepResult(
        (0.0, 0.5, 0.75, 0.9),
        (0.9, 0.9, 0.85, 0.3),
        (0.2, 0.21, 0.4, 2.0),
        0.5,
        0.9,
        0.01,
        metric=metric,
    )
    axes = plot_sparsity_sweep(result, predicted_sparsity=0.7).axes[0]
    curve, threshold, actual, predicted = axes.lines
    expected = result.losses if metric == "loss" else result.accuracies
    assert list(curve.get_ydata()) == list(expected)
    assert threshold.get_ydata()[0] == pytest.approx(0.21 if metric == "loss" else 0.89)
    assert actual.get_xdata()[0] == 0.5 and predicted.get_xdata()[0] == 0.7
    assert len(plot_sparsity_sweep(result).axes[0].lines) == 3
