"""Spectrum: quadrature sums, smoothed density, serialisation and validation."""

from __future__ import annotations

import json
import math
import warnings

import pytest
import torch

from lightning_prunelimit.curvature import DenseOperator, Spectrum, stochastic_lanczos_quadrature

pytestmark = pytest.mark.usefixtures("one_thread")


def example() -> Spectrum:
    nodes = torch.tensor([[-0.5, 0.0, 2.0], [0.1, 1.0, 1.0]], dtype=torch.float64)
    weights = torch.tensor([[0.2, 0.5, 0.3], [0.6, 0.4, 0.0]], dtype=torch.float64)
    return Spectrum(nodes, weights, dim=10)


def test_shape_properties() -> None:
    spectrum = example()
    assert (spectrum.num_probes, spectrum.num_iters) == (2, 3)
    assert (spectrum.min_node, spectrum.max_node) == (-0.5, 2.0)
    assert spectrum.nodes.dtype == spectrum.weights.dtype == torch.float64


def test_trace_of_is_dim_times_the_probe_mean_of_the_quadrature() -> None:
    spectrum = example()
    by_hand = 10 * ((0.2 * 0.25 + 0.5 * 0.0 + 0.3 * 4.0) + (0.6 * 0.01 + 0.4 * 1.0)) / 2
    assert spectrum.trace_of(torch.square) == pytest.approx(by_hand, rel=1e-14)
    assert spectrum.trace_of(lambda x: torch.ones_like(x)) == pytest.approx(10.0, rel=1e-14)


def test_trace_of_identity_equals_the_trace_of_a_dense_operator() -> None:
    # Rademacher probes see every diagonal entry with the same mass, so for a diagonal matrix
    # (any basis-aligned operator) the identity quadrature is the trace, probe by probe.
    generator = torch.Generator().manual_seed(0)
    diagonal = torch.randn(30, generator=generator, dtype=torch.float64)
    spectrum = stochastic_lanczos_quadrature(DenseOperator(torch.diag(diagonal)), 30, 3, seed=1)
    assert spectrum.trace_of(lambda x: x) == pytest.approx(float(diagonal.sum()), abs=1e-12)
    # and with num_iters = dim the quadrature is exact for every f: here tr exp(D).
    assert spectrum.trace_of(torch.exp) == pytest.approx(float(diagonal.exp().sum()), rel=1e-10)


def test_trace_of_ignores_padding_even_where_f_is_infinite() -> None:
    spectrum = Spectrum(torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0]]), dim=2)
    assert spectrum.trace_of(lambda x: 1.0 / x) == 2.0


def test_trace_of_rejects_non_elementwise_functions() -> None:
    with pytest.raises(ValueError, match="elementwise"):
        example().trace_of(lambda x: x.sum(dim=1))


def test_density_integrates_to_one_and_matches_the_formula() -> None:
    spectrum = example()
    sigma = 0.05
    grid = torch.linspace(-3.0, 5.0, 20001, dtype=torch.float64)
    density = spectrum.density(grid, sigma)
    assert density.shape == grid.shape and bool((density >= 0).all())
    assert float(torch.trapezoid(density, grid)) == pytest.approx(1.0, abs=1e-9)
    # At t = 2 only the node 2.0 (weight 0.3 in probe 0) matters: 0.3 / 2 * N(0; 0, sigma^2).
    peak = float(spectrum.density([2.0], sigma)[0])
    assert peak == pytest.approx(0.15 / (sigma * math.sqrt(2 * math.pi)), rel=1e-9)
    with pytest.raises(ValueError, match="sigma must be a positive number"):
        spectrum.density(grid, 0.0)


def test_to_dict_from_dict_round_trip_through_json() -> None:
    spectrum = example()
    data = json.loads(json.dumps(spectrum.to_dict()))
    assert set(data) == {"nodes", "weights", "dim", "deflated"}
    again = Spectrum.from_dict(data)
    assert again == spectrum
    assert again != Spectrum(spectrum.nodes, spectrum.weights, dim=11)
    assert again != Spectrum(spectrum.nodes, spectrum.weights, dim=10, deflated=1)
    with pytest.raises(ValueError, match="lacks"):
        Spectrum.from_dict({"nodes": [[1.0]]})


def test_spectrum_is_frozen() -> None:
    spectrum = example()
    with pytest.raises(AttributeError):
        spectrum.dim = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("nodes", "weights", "dim", "message"),
    [
        ([[0.0, 1.0]], [[0.5, 0.4]], 2, "must sum to 1"),
        ([[0.0, 1.0]], [[1.5, -0.5]], 2, "non-negative"),
        ([[0.0, 1.0]], [[1.0]], 2, "shape"),
        ([0.0, 1.0], [0.5, 0.5], 2, "shape"),
        ([[0.0, math.nan]], [[0.5, 0.5]], 2, "finite"),
        ([[0.0, 1.0]], [[0.5, 0.5]], 0, "dim must be a positive int"),
        ([[0.0, 1.0]], [[0.5, 0.5]], 2.0, "dim must be a positive int"),
    ],
)
def test_validation(nodes, weights, dim, message) -> None:
    with pytest.raises(ValueError, match=message):
        Spectrum(torch.tensor(nodes), torch.tensor(weights), dim=dim)


def test_slq_spectrum_round_trips_with_coefficients_and_deflation() -> None:
    diagonal = torch.tensor([0.0, 0.0, 0.5, 1.0, 2.0, 0.0, 3.0], dtype=torch.float64)
    spectrum = stochastic_lanczos_quadrature(DenseOperator(torch.diag(diagonal)), 8, 2, seed=0)
    assert spectrum.deflated == 3 and spectrum.has_coefficients
    assert spectrum.lengths == (4, 4)  # four distinct non-zero eigenvalues remain
    again = Spectrum.from_dict(json.loads(json.dumps(spectrum.to_dict())))
    assert again == spectrum
    # The deflated zeros are added exactly: tr(H) and the number of zero eigenvalues.
    assert spectrum.trace_of(lambda x: x) == pytest.approx(6.5, abs=1e-12)
    assert spectrum.trace_of(lambda x: (x == 0).double()) == pytest.approx(3.0, abs=1e-12)
    grid = torch.linspace(-2.0, 6.0, 4001, dtype=torch.float64)
    assert float(torch.trapezoid(spectrum.density(grid, 0.05), grid)) == pytest.approx(
        1.0, abs=1e-6
    )
    with pytest.raises(ValueError, match="deflated must be an int in"):
        Spectrum(spectrum.nodes, spectrum.weights, dim=7, deflated=7)
    with pytest.raises(ValueError, match="go together"):
        Spectrum(spectrum.nodes, spectrum.weights, dim=7, alphas=spectrum.alphas)


def test_float32_probe_that_stops_early_warns() -> None:
    # Two clusters a float32 basis cannot separate: 1 and 1 + 1e-9 look identical to it.
    diagonal = torch.cat([torch.ones(50), torch.full((50,), 1.0 + 1e-9), torch.tensor([5.0])])
    op32 = DenseOperator(torch.diag(diagonal).float())
    with pytest.warns(RuntimeWarning, match="stopped after .* steps.*float64"):
        stochastic_lanczos_quadrature(op32, 20, 1, seed=0)
    op64 = DenseOperator(torch.diag(torch.linspace(1.0, 2.0, 101, dtype=torch.float64)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        stochastic_lanczos_quadrature(op64, 20, 1, seed=0)
