"""Hutchinson's trace estimate against the exact trace of real Hessians."""

from __future__ import annotations

import pytest
import torch
from _curvature_problems import Problem
from torch import nn

from lightning_prunelimit.curvature import DenseOperator, HessianOperator, hutchinson_trace

pytestmark = pytest.mark.usefixtures("one_thread")


def test_estimate_is_within_four_standard_errors_of_the_exact_trace(problem: Problem) -> None:
    op = HessianOperator(problem.model, nn.functional.cross_entropy, problem.batches)
    estimate, standard_error = hutchinson_trace(op, num_probes=64, seed=0, block_size=16)
    exact = float(problem.hessian.trace())
    assert standard_error > 0
    assert abs(estimate - exact) < 4 * standard_error


def test_blocks_change_nothing_but_speed_and_seed_reproduces() -> None:
    generator = torch.Generator().manual_seed(1)
    a = torch.randn(50, 50, generator=generator, dtype=torch.float64)
    op = DenseOperator(a + a.T)
    together = hutchinson_trace(op, num_probes=20, seed=3, block_size=20)
    one_by_one = hutchinson_trace(op, num_probes=20, seed=3, block_size=1)
    uneven = hutchinson_trace(op, num_probes=20, seed=3, block_size=7)
    assert together == pytest.approx(one_by_one, rel=1e-12)
    assert together == pytest.approx(uneven, rel=1e-12)
    assert hutchinson_trace(op, num_probes=20, seed=4) != together


def test_standard_error_is_that_of_the_probe_samples() -> None:
    # For a diagonal matrix z^T D z = tr D for every Rademacher z: no spread at all.
    diagonal = torch.tensor([1.0, -2.0, 5.0], dtype=torch.float64)
    assert hutchinson_trace(DenseOperator(torch.diag(diagonal)), num_probes=5) == (4.0, 0.0)
    # Off-diagonal entries make z^T A z = tr A + 2 a_01 z_0 z_1: samples tr A +- 2 a_01.
    matrix = torch.tensor([[1.0, 1.5], [1.5, 2.0]], dtype=torch.float64)
    estimate, standard_error = hutchinson_trace(DenseOperator(matrix), num_probes=400, seed=0)
    signs = (estimate - 3.0) / 3.0  # mean of z_0 z_1 over the probes
    assert -1.0 <= signs <= 1.0
    expected = 3.0 * (1 - signs**2) ** 0.5 * (400 / 399) ** 0.5 / 20
    assert standard_error == pytest.approx(expected, rel=1e-10)


def test_argument_errors() -> None:
    op = DenseOperator(torch.eye(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="num_probes must be an int >= 2"):
        hutchinson_trace(op, num_probes=1)
    with pytest.raises(ValueError, match="block_size must be a positive int"):
        hutchinson_trace(op, block_size=0)


def test_the_estimate_does_not_depend_on_the_block_size() -> None:
    generator = torch.Generator().manual_seed(0)
    matrix = torch.randn(30, 30, dtype=torch.float64, generator=generator)
    op = DenseOperator(matrix + matrix.T)
    results = {hutchinson_trace(op, num_probes=20, seed=4, block_size=b) for b in (1, 3, 16, 64)}
    assert len(results) == 1
