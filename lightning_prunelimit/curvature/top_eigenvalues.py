"""The largest eigenvalues of a symmetric operator, by Lanczos with a convergence test."""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor

from lightning_prunelimit.curvature.lanczos import LanczosResult, lanczos
from lightning_prunelimit.curvature.linear_operator import LinearOperator, operator_dim
from lightning_prunelimit.curvature.rademacher import rademacher
from lightning_prunelimit.curvature.spectrum import Spectrum


def default_top_eigenvalue_iters(k: int, dim: int) -> int:
    """The default Lanczos step budget of :func:`top_eigenvalues`: ``min(dim, max(100, 20 k))``.

    Example:
        >>> default_top_eigenvalue_iters(3, 10_000), default_top_eigenvalue_iters(3, 50)
        (100, 50)
    """
    return min(dim, max(100, 20 * k))


def _top_converged(result: LanczosResult, k: int, tol: float) -> bool:
    if result.lengths[0] < k:
        return False
    nodes, _, bounds = result.ritz()
    top = nodes[0, -k:]
    reference = max(float(top.abs().max()), torch.finfo(torch.float64).tiny)
    return bool((bounds[0, -k:] <= tol * reference).all())


def top_eigenvalues(
    op: LinearOperator,
    k: int = 1,
    *,
    num_iters: int | None = None,
    seed: int = 0,
    tol: float = 1e-6,
) -> Tensor:
    """The ``k`` largest (algebraic) eigenvalues of ``op``, descending, as a float64 tensor.

    Lanczos with full reorthogonalisation runs from one seeded Rademacher probe until the Ritz
    error bounds of the top ``k`` values are at most ``tol`` times the largest of them in
    magnitude, or until ``num_iters`` steps (default :func:`default_top_eigenvalue_iters`,
    ``min(dim, max(100, 20 k))``); a warning says when that budget ran out first. Each step is
    one ``matvec`` (one pass over the data for a :class:`HessianOperator`).

    A single start vector sees each distinct eigenvalue once: a repeated eigenvalue is returned
    once, and if the probe's Krylov space has fewer than ``k`` dimensions, fewer than ``k`` values
    come back (with a warning).

    Example:
        >>> import torch
        >>> from lightning_prunelimit.curvature import DenseOperator, top_eigenvalues
        >>> op = DenseOperator(torch.diag(torch.arange(10, dtype=torch.float64)))
        >>> top_eigenvalues(op, k=3).round(decimals=8).tolist()
        [9.0, 8.0, 7.0]
    """
    dim = operator_dim(op)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= dim:
        raise ValueError(f"k must be an int in [1, dim={dim}], got {k!r}")
    if num_iters is None:
        num_iters = default_top_eigenvalue_iters(k, dim)
    if isinstance(num_iters, bool) or not isinstance(num_iters, int) or num_iters < k:
        raise ValueError(f"num_iters must be an int >= k={k}, got {num_iters!r}")
    if not (isinstance(tol, (int, float)) and math.isfinite(tol) and tol > 0):
        raise ValueError(f"tol must be a positive number, got {tol!r}")
    start = rademacher(1, dim, seed)
    result = lanczos(op, start, num_iters, stop=lambda r: _top_converged(r, k, tol))
    nodes, _, bounds = result.ritz()
    found = result.lengths[0]
    values = nodes[0, :found].flip(0)[:k]
    if found < k:
        warnings.warn(
            f"top_eigenvalues: the probe's Krylov space has only {found} dimensions, so only "
            f"{found} of the {k} requested eigenvalues are returned (repeated eigenvalues are "
            "seen once)",
            stacklevel=2,
        )
    elif not _top_converged(result, k, tol) and found < dim:
        worst = float(bounds[0, :found].flip(0)[:k].max())
        warnings.warn(
            f"top_eigenvalues: not converged after {found} Lanczos steps (error bound {worst:.3g}"
            f", tol {tol} relative): pass a larger num_iters",
            stacklevel=2,
        )
    return values


def ritz_top_eigenvalues(spectrum: Spectrum, k: int = 1) -> tuple[Tensor, Tensor]:
    """The ``k`` largest eigenvalues from an SLQ run's own Ritz values, with error bounds.

    No further product: for each rank ``i`` the largest ``i``-th largest Ritz value over the
    probes is taken (each is at most the ``i``-th largest eigenvalue, by interlacing), with its
    residual bound ``|beta_L s_L|`` (the distance from that Ritz value to *some* eigenvalue;
    when the bound is small against the gaps, to ``lambda_i``). Outlying eigenvalues converge
    within a few dozen steps, so a quadrature run of the usual length has them to many digits;
    for a tighter bound run :func:`top_eigenvalues` with a larger budget. Needs the spectrum's
    Lanczos coefficients (``Spectrum.has_coefficients``).

    Returns:
        ``(values, bounds)``: float64, descending values; at most ``k`` of them (fewer when every
        probe's Krylov space is smaller).

    Example:
        >>> import torch
        >>> from lightning_prunelimit.curvature import DenseOperator, stochastic_lanczos_quadrature
        >>> op = DenseOperator(torch.diag(torch.arange(1.0, 31.0, dtype=torch.float64)))
        >>> spectrum = stochastic_lanczos_quadrature(op, num_iters=30)
        >>> values, bounds = ritz_top_eigenvalues(spectrum, k=2)
        >>> values.round(decimals=6).tolist(), bool(bounds.max() < 1e-6)
        ([30.0, 29.0], True)
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    if not spectrum.has_coefficients:
        raise ValueError(
            "the spectrum carries no Lanczos coefficients (an old or hand-made spectrum): run "
            "top_eigenvalues(op, k) on the operator instead"
        )
    assert spectrum.alphas is not None and spectrum.betas is not None
    assert spectrum.lengths is not None
    result = LanczosResult(spectrum.alphas, spectrum.betas, spectrum.lengths, spectrum.probed_dim)
    nodes, _, bounds = result.ritz()
    best_values, best_bounds = [], []
    for i in range(k):
        candidates = [
            (float(nodes[p, n - 1 - i]), float(bounds[p, n - 1 - i]))
            for p, n in enumerate(result.lengths)
            if n > i
        ]
        if not candidates:
            break
        value, bound = max(candidates)
        best_values.append(value)
        best_bounds.append(bound)
    return (
        torch.tensor(best_values, dtype=torch.float64),
        torch.tensor(best_bounds, dtype=torch.float64),
    )
