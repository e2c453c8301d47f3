"""Stochastic Lanczos quadrature (SLQ): the spectral density of a Hessian from a few probes."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import torch

from lightning_prunelimit.curvature.lanczos import LanczosResult, lanczos
from lightning_prunelimit.curvature.linear_operator import (
    LinearOperator,
    operator_dim,
    operator_dtype,
)
from lightning_prunelimit.curvature.rademacher import rademacher
from lightning_prunelimit.curvature.spectrum import Spectrum
from lightning_prunelimit.curvature.zero_rows import DeflatedOperator, find_zero_rows


def stochastic_lanczos_quadrature(
    op: LinearOperator,
    num_iters: int = 128,
    num_probes: int = 1,
    seed: int = 0,
    *,
    deflate_zero_rows: bool = True,
    stop: Callable[[Spectrum], bool] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Spectrum:
    """Estimate the spectrum of ``op`` by Lanczos quadrature from random Rademacher probes.

    Exactly-zero rows of ``op`` (exact zero eigenvalues, see :func:`find_zero_rows`) are first
    removed at the price of one block product, unless ``deflate_zero_rows=False``; the spectrum
    records their number (``Spectrum.deflated``) and every estimate adds them exactly, so flat
    directions are counted once. The probes are drawn on the CPU from ``seed`` (so the result
    does not depend on the device), normalised, and run in lockstep on the remaining
    coordinates: each Lanczos step multiplies all of them with one ``op.matvec`` call.
    ``num_iters`` is capped at the remaining dimension; with ``num_iters >= dim`` the quadrature
    of every probe is exact. ``spectrum.trace_of(f)`` then estimates ``tr f(H)``. Cost:
    ``num_iters`` products of a ``(num_probes, dim)`` block (one data pass each for a
    :class:`HessianOperator`), and a basis of ``num_probes * num_iters * dim`` entries. The
    Lanczos coefficients are attached to the spectrum, so that the quadrature error can be
    bounded (``lightning_prunelimit.limit``).

    Args:
        op: a symmetric :class:`LinearOperator` (e.g. a :class:`HessianOperator`).
        num_iters: Lanczos steps per probe (nodes per probe); the most steps when ``stop`` is
            given.
        num_probes: number of random probes (their quadratures are averaged).
        seed: seed of the probes.
        deflate_zero_rows: remove exactly-zero rows before the run.
        stop: called after each step with the spectrum so far; returning True ends the run
            (e.g. once an error bound is small enough).
        progress: called as ``progress(step, total)`` after each Lanczos step.

    Example:
        >>> import torch
        >>> from lightning_prunelimit.curvature import DenseOperator, stochastic_lanczos_quadrature
        >>> op = DenseOperator(torch.diag(torch.tensor([0.0, 0.0, 1.0, 3.0], dtype=torch.float64)))
        >>> spectrum = stochastic_lanczos_quadrature(op, num_iters=4, num_probes=2)
        >>> spectrum.deflated  # the two zero rows
        2
        >>> round(spectrum.trace_of(lambda x: x), 10)  # Rademacher probes: exact for a diagonal
        4.0
    """
    dim = operator_dim(op)
    if isinstance(num_iters, bool) or not isinstance(num_iters, int) or num_iters < 1:
        raise ValueError(f"num_iters must be a positive int (Lanczos steps), got {num_iters!r}")
    if isinstance(num_probes, bool) or not isinstance(num_probes, int) or num_probes < 1:
        raise ValueError(f"num_probes must be a positive int, got {num_probes!r}")
    deflated = 0
    if deflate_zero_rows:
        zero = find_zero_rows(op, seed=seed)
        deflated = int(zero.sum())
        if deflated:
            op = DeflatedOperator(op, ~zero)
    probes = rademacher(num_probes, dim - deflated, seed) / math.sqrt(dim - deflated)

    def as_spectrum(result: LanczosResult) -> Spectrum:
        return result.spectrum(dim=dim, deflated=deflated)

    stopped = []

    def lanczos_stop(result: LanczosResult) -> bool:
        if stop is not None and stop(as_spectrum(result)):
            stopped.append(True)
        return bool(stopped)

    result = lanczos(op, probes, num_iters, progress=progress, stop=lanczos_stop)
    _warn_on_early_float32_stop(result, min(num_iters, dim - deflated), operator_dtype(op), stopped)
    return as_spectrum(result)


def _warn_on_early_float32_stop(
    result: LanczosResult, expected: int, dtype: torch.dtype, stopped: list[bool]
) -> None:
    """A float32 run that stops before its steps on a breakdown is usually rounding, not luck."""
    if stopped or dtype == torch.float64 or min(result.lengths) >= expected:
        return
    warnings.warn(
        f"a {dtype} Lanczos probe stopped after {min(result.lengths)} of {expected} steps "
        "because its new residual fell to rounding level: in single precision this usually "
        "means the curvature scale spans more than float32 resolves, not an exactly invariant "
        "subspace, and the spectrum's small eigenvalues may be lumped together. Compute the "
        "spectrum in float64 (e.g. model.double() for the analysis, or Trainer(precision="
        "'64-true')) to check it",
        RuntimeWarning,
        stacklevel=3,
    )
