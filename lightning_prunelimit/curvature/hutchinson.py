"""Hutchinson's stochastic trace estimator, with its standard error."""

from __future__ import annotations

import math
import numbers

import torch

from lightning_prunelimit.curvature.linear_operator import (
    LinearOperator,
    operator_device,
    operator_dim,
    operator_dtype,
)
from lightning_prunelimit.curvature.rademacher import rademacher
from lightning_prunelimit.curvature.spectrum import Spectrum


def hutchinson_trace(
    op: LinearOperator,
    num_probes: int = 100,
    seed: int = 0,
    *,
    block_size: int = 16,
) -> tuple[float, float]:
    """Estimate ``tr(H)`` as the mean of ``z^T H z`` over Rademacher probes ``z``.

    Probes are drawn on the CPU from ``seed``, one block of ``block_size`` at a time, and each
    block is multiplied with one ``matvec`` call (one pass over the data for a
    :class:`HessianOperator`); the result does not depend on ``block_size``.

    Returns:
        ``(estimate, standard_error)``: the mean and the standard error of the mean (sample
        standard deviation over ``sqrt(num_probes)``).

    Example:
        >>> import torch
        >>> from lightning_prunelimit.curvature import DenseOperator, hutchinson_trace
        >>> estimate, error = hutchinson_trace(
        ...     DenseOperator(torch.diag(torch.tensor([1.0, 2.0], dtype=torch.float64))), 8)
        >>> estimate, error  # exact for a diagonal matrix
        (3.0, 0.0)
    """
    dim = operator_dim(op)
    if isinstance(num_probes, bool) or not isinstance(num_probes, int) or num_probes < 2:
        raise ValueError(
            f"num_probes must be an int >= 2 (the standard error needs two), got {num_probes!r}"
        )
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size must be a positive int, got {block_size!r}")
    dtype, device = operator_dtype(op), operator_device(op)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an int, got {seed!r}")
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    samples = []
    for begin in range(0, num_probes, block_size):  # probes drawn block by block (memory)
        size = min(block_size, num_probes - begin)
        block = rademacher(size, dim, generator, dtype=dtype, device=device)
        product = op.matvec(block)
        samples.append((block.double() * product.double()).sum(dim=1).cpu())
    values = torch.cat(samples)
    return float(values.mean()), float(values.std() / math.sqrt(num_probes))


def spectrum_trace(spectrum: Spectrum) -> tuple[float, float]:
    """The Hessian trace from an SLQ run's own probes, and a bound on its standard error.

    The Gauss quadrature of a probe reproduces its first two moments exactly:
    ``sum_j w_j node_j = q^T H q`` and ``sum_j w_j node_j^2 = ||H q||^2`` for the unit probe
    ``q``. So ``spectrum.trace_of(x)`` is Hutchinson's estimate with the SLQ probes (deflated
    zero rows add 0), at no further product. For a Rademacher probe ``z`` the variance of
    ``z^T H z`` is ``2 sum_{i != j} H_ij^2 <= 2 tr(H^2)``, and ``tr(H^2)`` is estimated the same
    way, so the standard error of the mean over ``P`` probes is at most about
    ``sqrt(2 tr(H^2) / P)``; that bound is returned (it does not need two probes). Run
    :func:`hutchinson_trace` for an empirical error from many probes.

    Returns:
        ``(estimate, standard_error_bound)``.

    Example:
        >>> import torch
        >>> from lightning_prunelimit.curvature import DenseOperator, stochastic_lanczos_quadrature
        >>> op = DenseOperator(torch.diag(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)))
        >>> estimate, error = spectrum_trace(stochastic_lanczos_quadrature(op, num_iters=3))
        >>> round(estimate, 10), round(error, 4)  # exact for a diagonal; bound sqrt(2 * 14)
        (6.0, 5.2915)
    """
    estimate = spectrum.trace_of(lambda x: x)
    squares = max(spectrum.trace_of(lambda x: x * x), 0.0)
    return float(estimate), math.sqrt(2.0 * squares / spectrum.num_probes)
