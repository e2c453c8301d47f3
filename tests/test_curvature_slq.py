"""Stochastic Lanczos quadrature of real Hessians against their exact eigen-decomposition.

The function is the paper's f(l) = 2 eps / (2 eps + |l| R^2); writing c = R^2 / (2 eps),
f(l) = 1 / (1 + c |l|). "Small R": c |l|_max = 1; "large R": c |l|_max = 1e4, where f drops to
1/2 at |l| = 1e-4 |l|_max, deep inside the near-zero bulk (40-80% of the eigenvalues of these
Hessians lie within 1e-3 of zero), so f must be resolved inside the bulk.

Two errors are separated: the quadrature error of each probe (Lanczos estimate of v^T f(H) v
against the exact value from the eigen-decomposition), which shrinks with num_iters, and the
Monte Carlo error of averaging over probes, checked against its standard error.

Measured quadrature errors (max over probes, float64; f in [0, 1]):
  small R, 32 steps: tanh MLP 3.7e-5, ReLU MLP 3.7e-5.
  large R, tanh MLP (dim 1210): 64 steps 9e-2, 128: 8e-2, 256: 2e-2, 384: 3.8e-3, 512: 1.2e-3,
  768: 1.5e-5, 1210 (= dim): 8e-14.
  large R, ReLU MLP (dim 910, rank about 530): 64 steps 6.7e-2, 128: 9e-3, 256: 1.1e-4,
  384: 1.3e-8.
Tests below use 8 probes for the small R, and 2-4 probes with 256-512 steps for the large R.
"""

from __future__ import annotations

import math

import pytest
import torch
from _curvature_problems import Problem, build_problem, exact_hessian
from torch import Tensor, nn

from lightning_prunelimit.curvature import (
    DenseOperator,
    HessianOperator,
    Spectrum,
    rademacher,
    stochastic_lanczos_quadrature,
)

pytestmark = pytest.mark.usefixtures("one_thread")

cross_entropy = nn.functional.cross_entropy


def slq(op, *args, **kwargs) -> Spectrum:
    """SLQ over the full operator: per-probe checks need probes in the full space."""
    return stochastic_lanczos_quadrature(op, *args, deflate_zero_rows=False, **kwargs)


def width_function(eigenvalues: Tensor, ratio: float):
    """f(l) = 1 / (1 + c |l|) with c |l|_max = ratio."""
    c = ratio / float(eigenvalues.abs().max())
    return lambda x: 1.0 / (1.0 + c * x.abs())


def per_probe_errors(spectrum: Spectrum, hessian: Tensor, seed: int, f) -> tuple[Tensor, Tensor]:
    """(quadrature - exact v^T f(H) v per probe, exact values per probe)."""
    eigenvalues, eigenvectors = torch.linalg.eigh(hessian)
    dim = hessian.shape[0]
    probes = rademacher(spectrum.num_probes, dim, seed) / math.sqrt(dim)
    exact = ((probes @ eigenvectors) ** 2 * f(eigenvalues)).sum(dim=1)
    quadrature = (spectrum.weights * f(spectrum.nodes)).sum(dim=1)
    return quadrature - exact, exact


@pytest.mark.parametrize("name", ["tanh_mlp", "relu_mlp"])
def test_small_distance_converges_in_a_few_steps(name: str) -> None:
    problem = build_problem(name)
    op = HessianOperator(problem.model, cross_entropy, problem.batches)
    f = width_function(problem.eigenvalues, ratio=1.0)
    spectrum = slq(op, num_iters=32, num_probes=8, seed=0)
    errors, exact_per_probe = per_probe_errors(spectrum, problem.hessian, 0, f)
    assert float(errors.abs().max()) < 1e-4
    estimate = spectrum.trace_of(f) / op.dim
    truth = float(f(problem.eigenvalues).mean())
    standard_error = float(exact_per_probe.std()) / math.sqrt(8)
    assert abs(estimate - truth) < 4 * standard_error + 1e-4
    assert abs(estimate - truth) < 3e-3


def test_large_distance_relu_mlp_converges_with_256_steps() -> None:
    problem = build_problem("relu_mlp")
    op = HessianOperator(problem.model, cross_entropy, problem.batches)
    f = width_function(problem.eigenvalues, ratio=1e4)
    spectrum = slq(op, num_iters=256, num_probes=2, seed=1)
    errors, exact_per_probe = per_probe_errors(spectrum, problem.hessian, 1, f)
    assert float(errors.abs().max()) < 1e-3
    truth = float(f(problem.eigenvalues).mean())
    standard_error = float(exact_per_probe.std()) / math.sqrt(2)
    assert abs(spectrum.trace_of(f) / op.dim - truth) < 4 * standard_error + 1e-3


def test_large_distance_tanh_mlp_needs_many_steps() -> None:
    # The same Lanczos code on the exact Hessian (DenseOperator) to afford 512 steps; the
    # HessianOperator products are tested against this matrix elsewhere.
    problem = build_problem("tanh_mlp")
    f = width_function(problem.eigenvalues, ratio=1e4)
    op = DenseOperator(problem.hessian)
    coarse = slq(op, num_iters=64, num_probes=4, seed=2)
    fine = slq(op, num_iters=512, num_probes=4, seed=2)
    coarse_errors, exact_per_probe = per_probe_errors(coarse, problem.hessian, 2, f)
    fine_errors, _ = per_probe_errors(fine, problem.hessian, 2, f)
    assert float(fine_errors.abs().max()) < 3e-3
    assert float(coarse_errors.abs().max()) > 10 * float(fine_errors.abs().max())
    truth = float(f(problem.eigenvalues).mean())
    standard_error = float(exact_per_probe.std()) / 2
    assert abs(fine.trace_of(f) / op.dim - truth) < 4 * standard_error + 3e-3


def test_num_iters_at_dim_is_exact_for_a_hessian_operator() -> None:
    # The last layer of the tanh MLP (170 parameters), so that num_iters >= dim stays cheap.
    problem = build_problem("tanh_mlp")
    names = ["2.weight", "2.bias"]
    op = HessianOperator(problem.model, cross_entropy, problem.batches, params=names)
    hessian = exact_hessian(problem.model, problem.batches, params=names)
    eigenvalues = torch.linalg.eigvalsh(hessian)
    steps: list[int] = []
    spectrum = slq(
        op, num_iters=500, num_probes=2, seed=3, progress=lambda s, total: steps.append(total)
    )
    assert set(steps) == {170} and spectrum.num_iters <= 170
    for ratio in (1.0, 1e4):
        f = width_function(eigenvalues, ratio)
        errors, exact_per_probe = per_probe_errors(spectrum, hessian, 3, f)
        assert float(errors.abs().max()) < 1e-8
        assert spectrum.trace_of(f) / 170 == pytest.approx(float(exact_per_probe.mean()), abs=1e-8)


def test_seeded_probes_make_results_reproducible() -> None:
    problem: Problem = build_problem("relu_mlp")
    op = HessianOperator(problem.model, cross_entropy, problem.batches)
    first = slq(op, num_iters=8, num_probes=2, seed=5)
    again = slq(op, num_iters=8, num_probes=2, seed=5)
    other = slq(op, num_iters=8, num_probes=2, seed=6)
    torch.manual_seed(123)  # the global random state plays no part
    third = slq(op, num_iters=8, num_probes=2, seed=5)
    assert torch.equal(first.nodes, again.nodes) and torch.equal(first.nodes, third.nodes)
    assert not torch.equal(first.nodes, other.nodes)
    assert first.dim == op.dim and first.num_probes == 2 and first.num_iters == 8


def test_slq_argument_errors() -> None:
    op = DenseOperator(torch.eye(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="num_iters must be a positive int"):
        stochastic_lanczos_quadrature(op, num_iters=0)
    with pytest.raises(ValueError, match="num_probes must be a positive int"):
        stochastic_lanczos_quadrature(op, num_probes=0)
    with pytest.raises(TypeError, match="seed must be an int"):
        stochastic_lanczos_quadrature(op, seed=1.5)
