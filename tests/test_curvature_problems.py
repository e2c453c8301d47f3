"""Checks of the shared curvature problems' exact Hessians (the oracle of the curvature tests)."""

from __future__ import annotations

import pytest
import torch
from _curvature_problems import Problem
from torch import Tensor, nn

from lightning_prunelimit.curvature import select_parameters

pytestmark = pytest.mark.usefixtures("one_thread")


def test_exact_hessian_is_symmetric_and_matches_gradient_differences(problem: Problem) -> None:
    # The oracle itself: central differences of the autograd gradient along a random direction.
    selected = select_parameters(problem.model)
    torch.manual_seed(4)
    direction = torch.randn(problem.dim, dtype=torch.float64)
    assert torch.allclose(problem.hessian, problem.hessian.T, atol=1e-12)

    def gradient_at(shift: float) -> Tensor:
        offsets = direction.split([p.numel() for _, p in selected])
        with torch.no_grad():
            for (_, p), d in zip(selected, offsets):
                p.add_(shift * d.view(p.shape))
        try:
            total = sum(len(y) for _, y in problem.batches)
            loss = sum(
                nn.functional.cross_entropy(problem.model(x), y) * len(y)
                for x, y in problem.batches
            )
            grads = torch.autograd.grad(loss / total, [p for _, p in selected])
            return torch.cat([g.reshape(-1) for g in grads])
        finally:
            with torch.no_grad():
                for (_, p), d in zip(selected, offsets):
                    p.sub_(shift * d.view(p.shape))

    h = 1e-5
    finite_difference = (gradient_at(h) - gradient_at(-h)) / (2 * h)
    assert torch.allclose(finite_difference, problem.hessian @ direction, rtol=1e-5, atol=1e-8)


def test_problems_have_the_hard_near_zero_bulk(problem: Problem) -> None:
    # The SLQ tests rely on spectra with a large near-zero bulk and a few large outliers.
    eigenvalues = problem.eigenvalues
    near_zero = float((eigenvalues.abs() < 1e-3).double().mean())
    if problem.name.endswith("mlp"):
        assert 0.4 < near_zero < 0.8
    assert float(eigenvalues[-1]) > 0.5
    assert float(eigenvalues[0]) < 0.0  # indefinite, as trained networks are
