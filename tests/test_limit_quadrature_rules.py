"""The anti-Gauss and averaged Gauss rules behind the alternative truncation estimates.

The measure is known exactly: Lanczos on a diagonal operator from a fixed unit start vector
``v`` builds the rules of ``sum_i v_i^2 delta(d_i)``, whose integrals are plain sums.
"""

from __future__ import annotations

import math

import pytest
import torch

from lightning_prunelimit.curvature import DenseOperator, stochastic_lanczos_quadrature
from lightning_prunelimit.curvature.lanczos import lanczos
from lightning_prunelimit.limit.width_bounds import (
    TRUNCATION_ESTIMATES,
    _anti_gauss,
    _averaged_gauss,
    _gauss,
    quadrature_rules,
)

pytestmark = pytest.mark.usefixtures("one_thread")

DIM = 300


def known_measure(low: float, high: float, steps: int) -> tuple[torch.Tensor, ...]:
    """Eigenvalues, the start vector's masses on them, and the Lanczos coefficients."""
    generator = torch.Generator().manual_seed(3)
    eigenvalues = torch.linspace(low, high, DIM, dtype=torch.float64)
    start = torch.rand(DIM, generator=generator, dtype=torch.float64) + 0.5
    start = start / torch.linalg.vector_norm(start)
    result = lanczos(DenseOperator(torch.diag(eigenvalues)), start[None], steps)
    return eigenvalues, start.square(), result.alphas[0], result.betas[0]


def integral(nodes: torch.Tensor, weights: torch.Tensor, f) -> float:
    return float((weights * f(nodes)).sum())


@pytest.mark.parametrize("n", [3, 6])
def test_anti_gauss_error_is_minus_the_gauss_error_on_polynomials(n: int) -> None:
    eigenvalues, masses, alphas, betas = known_measure(-0.4, 1.0, n + 2)
    for degree in (2 * n, 2 * n + 1):
        exact = integral(eigenvalues, masses, lambda x, k=degree: x**k)
        gauss = integral(*_gauss(alphas, betas, n), lambda x, k=degree: x**k)
        anti = integral(*_anti_gauss(alphas, betas, n), lambda x, k=degree: x**k)
        assert abs(exact - gauss) > 1e-8  # the Gauss rule is not exact at this degree
        assert exact - anti == pytest.approx(-(exact - gauss), rel=1e-8)
    # Below degree 2n both are exact.
    for degree in range(2 * n):
        exact = integral(eigenvalues, masses, lambda x, k=degree: x**k)
        anti = integral(*_anti_gauss(alphas, betas, n), lambda x, k=degree: x**k)
        assert anti == pytest.approx(exact, abs=1e-12)


def test_anti_gauss_and_gauss_bracket_a_smooth_integral_and_average_closer() -> None:
    eigenvalues, masses, alphas, betas = known_measure(0.0, 1.0, 8)

    def f(x: torch.Tensor) -> torch.Tensor:
        return torch.exp(-3.0 * x)

    exact = integral(eigenvalues, masses, f)
    for n in (2, 3, 4, 5):
        gauss = integral(*_gauss(alphas, betas, n), f)
        anti = integral(*_anti_gauss(alphas, betas, n), f)
        assert min(gauss, anti) < exact < max(gauss, anti), n
        assert abs((gauss + anti) / 2 - exact) < 0.05 * abs(gauss - exact), n


@pytest.mark.parametrize("n", [3, 6])
def test_averaged_gauss_rule_has_degree_2n_plus_2(n: int) -> None:
    eigenvalues, masses, alphas, betas = known_measure(-0.4, 1.0, n + 2)
    nodes, weights = _averaged_gauss(alphas, betas, n)
    assert nodes.numel() == 2 * n + 1
    assert float(weights.sum()) == pytest.approx(1.0, abs=1e-12)
    for degree in range(2 * n + 3):
        exact = integral(eigenvalues, masses, lambda x, k=degree: x**k)
        assert integral(nodes, weights, lambda x, k=degree: x**k) == pytest.approx(
            exact, abs=1e-12
        ), degree
    # One degree beyond the n-point Gauss rule's: the Gauss rule errs there, this rule not.
    top = 2 * n + 1
    gauss = integral(*_gauss(alphas, betas, n), lambda x: x**top)
    assert abs(gauss - integral(eigenvalues, masses, lambda x: x**top)) > 1e-8


@pytest.mark.parametrize("truncation", ["anti_gauss", "averaged"])
def test_alternative_truncations_bracket_the_point_and_one_step_runs(truncation: str) -> None:
    assert truncation in TRUNCATION_ESTIMATES
    op = DenseOperator(torch.diag(torch.linspace(-0.2, 1.0, 200, dtype=torch.float64)))
    distances = torch.tensor([0.5, 2.0, 8.0], dtype=torch.float64)
    for steps in (1, 2, 12):
        rules = quadrature_rules(
            stochastic_lanczos_quadrature(op, steps, 2, 0), truncation=truncation
        )
        assert rules.truncation == truncation
        bounds = rules.probed_bounds(distances, 0.05, "abs", 2.0)
        assert bool((bounds.quadrature_low <= bounds.estimate).all())
        assert bool((bounds.estimate <= bounds.quadrature_high).all())
        assert bool((bounds.low <= bounds.quadrature_low).all())
        assert bool((bounds.quadrature_high <= bounds.high).all())
        assert all(math.isfinite(float(v)) for b in bounds for v in b)
    with pytest.raises(ValueError, match="anti_gauss"):
        quadrature_rules(stochastic_lanczos_quadrature(op, 4, 1, 0), truncation="anti-gauss")
