"""Top eigenvalues by Lanczos against exact eigenvalues of real Hessians."""

from __future__ import annotations

import warnings

import pytest
import torch
from _curvature_problems import Problem, three_level_diagonal
from torch import nn

from lightning_prunelimit.curvature import DenseOperator, HessianOperator, top_eigenvalues
from lightning_prunelimit.curvature.top_eigenvalues import default_top_eigenvalue_iters

pytestmark = pytest.mark.usefixtures("one_thread")


def test_top_three_match_the_exact_eigenvalues(problem: Problem) -> None:
    op = HessianOperator(problem.model, nn.functional.cross_entropy, problem.batches)
    steps = []

    class Counting:
        dim = op.dim
        dtype = op.dtype
        device = op.device

        def matvec(self, v):
            steps.append(v.shape[0])
            return op.matvec(v)

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # converges within the default budget, no warning
        top = top_eigenvalues(Counting(), k=3, seed=0)
    exact = problem.eigenvalues.flip(0)[:3]
    assert top.dtype == torch.float64 and top.shape == (3,)
    assert bool((top[:-1] >= top[1:]).all())
    torch.testing.assert_close(top, exact, rtol=1e-3, atol=0)
    # The convergence test (tol 1e-6) in fact gives far better than 1e-3.
    torch.testing.assert_close(top, exact, rtol=1e-6, atol=0)
    assert len(steps) < default_top_eigenvalue_iters(3, op.dim)  # stopped once converged


def test_an_exhausted_budget_warns() -> None:
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(200, 200, generator=generator, dtype=torch.float64)
    op = DenseOperator((a + a.T) / 2)
    with pytest.warns(UserWarning, match="not converged after 4 Lanczos steps"):
        top_eigenvalues(op, k=2, num_iters=4)


def test_repeated_eigenvalues_are_seen_once_with_a_warning() -> None:
    matrix, _ = three_level_diagonal()
    with pytest.warns(UserWarning, match="only 3 of the 5"):
        top = top_eigenvalues(DenseOperator(matrix), k=5)
    torch.testing.assert_close(top, torch.tensor([4.0, 0.5, -1.0], dtype=torch.float64))


def test_argument_errors() -> None:
    op = DenseOperator(torch.eye(4, dtype=torch.float64))
    with pytest.raises(ValueError, match="k must be an int in \\[1, dim=4\\]"):
        top_eigenvalues(op, k=5)
    with pytest.raises(ValueError, match="k must be"):
        top_eigenvalues(op, k=0)
    with pytest.raises(ValueError, match="num_iters must be an int >= k"):
        top_eigenvalues(op, k=2, num_iters=1)
    with pytest.raises(ValueError, match="tol must be a positive number"):
        top_eigenvalues(op, tol=0.0)
