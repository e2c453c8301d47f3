from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lightning_prunelimit.curvature import Spectrum
from lightning_prunelimit.limit import sublevel_width


def exact_spectrum(eigenvalues: np.ndarray) -> Spectrum:
    """One probe, nodes = the exact eigenvalues, uniform weights 1/D: the exact trace."""
    dim = len(eigenvalues)
    nodes = torch.tensor(eigenvalues, dtype=torch.float64).reshape(1, dim)
    return Spectrum(nodes, torch.full((1, dim), 1.0 / dim, dtype=torch.float64), dim)


def direct_width(eigenvalues, distance, eps, zero_fraction=0.0, negative="abs") -> float:
    """G(R) = z + (1 - z) (1/D) sum_i 2 eps / (2 eps + c_i R^2), term by term in Python."""
    terms = []
    for value in eigenvalues:
        curvature = abs(value) if negative == "abs" else max(value, 0.0)
        terms.append(2 * eps / (2 * eps + curvature * distance**2))
    return zero_fraction + (1 - zero_fraction) * math.fsum(terms) / len(terms)


DISTANCES = [0.0, 1e-3, 0.05, 0.3, 1.0, 2.5, 10.0, 1e3]


@pytest.mark.parametrize("seed", [0, 1])
def test_exact_eigenvalues_against_the_formula(seed: int) -> None:
    rng = np.random.default_rng(seed)
    eigenvalues = np.concatenate([rng.uniform(0.01, 1.0, 60), rng.uniform(5, 50, 4), [0.0]])
    spectrum = exact_spectrum(eigenvalues)
    for eps in (1e-3, 0.07, 2.0):
        widths = sublevel_width(spectrum, torch.tensor(DISTANCES, dtype=torch.float64), eps)
        assert widths.dtype == torch.float64 and widths.shape == (len(DISTANCES),)
        expected = [direct_width(eigenvalues, r, eps) for r in DISTANCES]
        assert widths.tolist() == pytest.approx(expected, rel=1e-13, abs=1e-15)
    assert float(sublevel_width(spectrum, 0.0, 0.1)) == 1.0


def test_negative_modes() -> None:
    eigenvalues = np.array([-2.0, -0.1, 0.0, 0.5, 3.0])
    spectrum = exact_spectrum(eigenvalues)
    for negative in ("abs", "flat"):
        widths = sublevel_width(spectrum, DISTANCES, 0.05, negative=negative)
        expected = [direct_width(eigenvalues, r, 0.05, negative=negative) for r in DISTANCES]
        assert widths.tolist() == pytest.approx(expected, rel=1e-13)
    # far away, only the flat directions remain: 1 zero eigenvalue (abs) or 3 (flat)
    assert float(sublevel_width(spectrum, 1e8, 0.05)) == pytest.approx(1 / 5, rel=1e-9)
    assert float(sublevel_width(spectrum, 1e8, 0.05, negative="flat")) == pytest.approx(3 / 5)


def test_zero_fraction_mixes_in_flat_directions() -> None:
    eigenvalues = np.array([0.2, 1.0, 4.0])
    spectrum = exact_spectrum(eigenvalues)
    widths = sublevel_width(spectrum, DISTANCES, 0.01, zero_fraction=0.3)
    expected = [direct_width(eigenvalues, r, 0.01, zero_fraction=0.3) for r in DISTANCES]
    assert widths.tolist() == pytest.approx(expected, rel=1e-13)
    assert float(sublevel_width(spectrum, 1e9, 0.01, zero_fraction=0.3)) == pytest.approx(0.3)


def test_several_probes_are_averaged_and_agree_with_trace_of() -> None:
    torch.manual_seed(0)
    nodes = torch.rand(3, 7, dtype=torch.float64) * 4 - 0.5
    weights = torch.rand(3, 7, dtype=torch.float64)
    weights /= weights.sum(dim=1, keepdim=True)
    spectrum = Spectrum(nodes, weights, 50)
    eps, distance = 0.02, 0.4
    per_probe = [
        sum(
            float(w) * 2 * eps / (2 * eps + abs(float(x)) * distance**2)
            for x, w in zip(nodes[p], weights[p])
        )
        for p in range(3)
    ]
    width = float(sublevel_width(spectrum, distance, eps))
    assert width == pytest.approx(sum(per_probe) / 3, rel=1e-13)
    trace = spectrum.trace_of(lambda x: 2 * eps / (2 * eps + x.abs() * distance**2))
    assert width == pytest.approx(float(trace) / spectrum.dim, rel=1e-12)


def test_width_falls_with_distance_and_keeps_input_shape() -> None:
    spectrum = exact_spectrum(np.array([0.1, 1.0, 10.0]))
    grid = torch.linspace(0, 5, 101, dtype=torch.float64)
    widths = sublevel_width(spectrum, grid, 0.01)
    assert bool((widths[1:] < widths[:-1]).all())
    assert sublevel_width(spectrum, grid.reshape(1, 101, 1), 0.01).shape == (1, 101, 1)
    assert sublevel_width(spectrum, 0.5, 0.01).shape == ()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"epsilon": 0.0}, ValueError, "positive and finite"),
        ({"epsilon": -1.0}, ValueError, "positive and finite"),
        ({"epsilon": math.inf}, ValueError, "positive and finite"),
        ({"epsilon": math.nan}, ValueError, "positive and finite"),
        ({"epsilon": "batch_loss_std"}, TypeError, "resolve_epsilon"),
        ({"epsilon": True}, TypeError, "positive number"),
        ({"zero_fraction": 1.0}, ValueError, r"\[0, 1\)"),
        ({"zero_fraction": -0.1}, ValueError, r"\[0, 1\)"),
        ({"zero_fraction": math.nan}, ValueError, r"\[0, 1\)"),
        ({"negative": "clip"}, ValueError, "'abs', 'flat'"),
        ({"distance": -1.0}, ValueError, ">= 0"),
        ({"distance": [0.5, math.nan]}, ValueError, ">= 0"),
        ({"distance": math.inf}, ValueError, "finite"),
    ],
)
def test_bad_arguments(kwargs: dict, error: type, match: str) -> None:
    arguments = {"distance": 0.5, "epsilon": 0.1, **kwargs}
    spectrum = exact_spectrum(np.array([1.0, 2.0]))
    with pytest.raises(error, match=match):
        sublevel_width(spectrum, **arguments)


def test_bad_spectrum() -> None:
    with pytest.raises(TypeError, match="Spectrum"):
        sublevel_width(torch.ones(3), 0.5, 0.1)  # type: ignore[arg-type]


def test_width_at_zero_distance_and_for_a_flat_spectrum_is_exactly_one() -> None:
    torch.manual_seed(1)
    weights = torch.full((3, 7), 1 / 7, dtype=torch.float64)  # rows sum to 1 up to rounding
    curved = Spectrum(torch.rand(3, 7, dtype=torch.float64) - 0.2, weights, 10)
    flat = Spectrum(torch.zeros(3, 7, dtype=torch.float64), weights, 10)
    for z in (0.0, 0.1, 0.3, 0.7, 0.123456789):
        assert float(sublevel_width(curved, 0.0, 0.1, zero_fraction=z)) == 1.0
        assert float(sublevel_width(flat, 5.0, 0.1, zero_fraction=z)) == 1.0
    assert float(sublevel_width(curved, 1.0, 0.1)) < 1.0
