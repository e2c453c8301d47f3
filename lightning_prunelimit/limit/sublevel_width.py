"""Normalised squared Gaussian width G(R) of the loss sublevel set seen from distance R.

In the quadratic model L(w) ~ L(w*) + 1/2 (w - w*)^T H (w - w*), the sublevel set
S(eps) = {w : L(w) <= L(w*) + eps} is an ellipsoid with semi-axes r_i^2 = 2 eps / l_i. Seen from
a point at distance R from its centre, the fraction of directions it spans is

    G(R) = z + (1 - z) * (1/D) tr[2 eps / (2 eps + |H| R^2)]
         = z + (1 - z) * (1/D) sum_i r_i^2 / (r_i^2 + R^2),

where z is the fraction of exactly flat (zero-curvature) directions, counted separately because a
Lanczos spectrum cannot resolve them. A spectrum from ``stochastic_lanczos_quadrature`` removes
the exactly-zero Hessian rows before its run and records them (``Spectrum.deflated``): then
z = deflated / D exactly, and the trace runs over the probed rest. Flat directions are counted
once: a deflated spectrum refuses an extra ``zero_fraction``. The trace is estimated by
stochastic Lanczos quadrature, (1/D) tr f(H) ~ mean over probes of sum_j w_j f(node_j), summed
directly over the Ritz values (no binning onto a density grid).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from lightning_prunelimit.limit.epsilon import check_epsilon
from lightning_prunelimit.limit.integrand import (
    NEGATIVE_MODES,
    check_negative,
    curvature,
    mix_flat_fraction,
    width_integrand,
)
from lightning_prunelimit.limit.width_bounds import DEFAULT_CONFIDENCE, quadrature_rules

if TYPE_CHECKING:  # pragma: no cover
    from lightning_prunelimit.curvature import Spectrum

__all__ = ["NEGATIVE_MODES", "sublevel_width", "sublevel_width_interval"]

# Bound on the number of (distance, node) pairs evaluated at once, to cap memory.
_CHUNK_ELEMENTS = 1 << 22


def _check_epsilon(epsilon: float) -> float:
    if isinstance(epsilon, str):
        raise TypeError(
            f"epsilon must be a positive number here, got the string {epsilon!r}: resolve it "
            "first with lightning_prunelimit.limit.resolve_epsilon(epsilon, model, loss_fn, "
            "batches)"
        )
    return float(check_epsilon(epsilon))


def _check_zero_fraction(zero_fraction: float) -> float:
    if isinstance(zero_fraction, bool) or not isinstance(zero_fraction, numbers.Real):
        raise TypeError(f"zero_fraction must be a number in [0, 1), got {zero_fraction!r}")
    value = float(zero_fraction)
    if math.isnan(value) or not 0.0 <= value < 1.0:
        raise ValueError(
            f"zero_fraction must be in [0, 1), got {value}: pass the fraction of zero-curvature "
            "directions (e.g. ZeroCurvature.fraction), or 0.0"
        )
    return value


def _quadrature(spectrum: Spectrum, negative: str) -> tuple[Tensor, Tensor, Tensor]:
    """Curvatures and quadrature weights ``(num_probes, m)``, and each probe's weight sum."""
    nodes = getattr(spectrum, "nodes", None)
    weights = getattr(spectrum, "weights", None)
    if not isinstance(nodes, Tensor) or not isinstance(weights, Tensor):
        raise TypeError(
            f"spectrum must have tensor attributes 'nodes' and 'weights' (a Spectrum), got "
            f"{type(spectrum).__name__}"
        )
    if nodes.shape != weights.shape or nodes.dim() != 2 or nodes.numel() == 0:
        raise ValueError(
            f"spectrum nodes and weights must both have shape (num_probes, m), got "
            f"{tuple(nodes.shape)} and {tuple(weights.shape)}"
        )
    nodes = nodes.detach().to(device="cpu", dtype=torch.float64)
    weights = weights.detach().to(device="cpu", dtype=torch.float64)
    if not (bool(torch.isfinite(nodes).all()) and bool(torch.isfinite(weights).all())):
        raise ValueError("spectrum nodes or weights contain NaN or inf")
    if bool((weights < 0).any()):
        raise ValueError("spectrum quadrature weights must be non-negative")
    sums = weights.sum(dim=1)
    if bool((sums <= 0).any()):
        raise ValueError("every probe of the spectrum needs a positive total quadrature weight")
    return curvature(nodes, negative), weights, sums


def flat_fraction(spectrum: Spectrum, zero_fraction: float) -> float:
    """The flat fraction z of ``G``: the spectrum's deflated rows, or ``zero_fraction``, once.

    Example:
        >>> import torch
        >>> from lightning_prunelimit.curvature import Spectrum
        >>> flat_fraction(Spectrum(torch.ones(1, 1), torch.ones(1, 1), dim=4, deflated=1), 0.0)
        0.25
    """
    z = _check_zero_fraction(zero_fraction)
    deflated = float(getattr(spectrum, "deflated_fraction", 0.0))
    if deflated > 0.0 and z > 0.0:
        raise ValueError(
            f"the spectrum already counts {deflated:.4f} of the directions as exactly flat (its "
            f"deflated zero rows), so zero_fraction={z} would count flat directions twice: pass "
            "zero_fraction=0.0 with a deflated spectrum"
        )
    return deflated if deflated > 0.0 else z


def _as_distances(distance: float | Sequence[float] | Tensor) -> Tensor:
    if isinstance(distance, bool):
        raise TypeError("distance must be a number or numbers >= 0, got a bool")
    if isinstance(distance, Tensor):
        values = distance.detach().to(device="cpu", dtype=torch.float64)
    else:
        values = torch.as_tensor(distance, dtype=torch.float64)
    bad = ~torch.isfinite(values) | (values < 0)
    if bool(bad.any()):
        raise ValueError(
            f"distance must be finite and >= 0, got {values[bad].flatten()[:5].tolist()}: pass "
            "R, the norm of the removed weights (see pruning_distances)"
        )
    return values


def sublevel_width(
    spectrum: Spectrum,
    distance: float | Sequence[float] | Tensor,
    epsilon: float,
    *,
    zero_fraction: float = 0.0,
    negative: str = "abs",
) -> Tensor:
    """Fraction of directions the loss sublevel set spans from distance R: G(R).

    ``G(R) = z + (1 - z) * (1/D) tr[2 eps / (2 eps + |H| R^2)]``, the trace estimated from the
    spectrum as the mean over probes of ``sum_j w_j g(node_j)``. G is 1 at R = 0 and falls
    towards z as R grows; it is the fraction of weights the geometry allows to remove.

    Each probe's sum is divided by the probe's total weight (which a ``Spectrum`` already
    keeps within 1e-6 of 1), so the quadrature is a weighted average, and G(0) is exactly 1
    (the centre of the sublevel set sees every direction), not 1 up to rounding.

    Args:
        spectrum: a ``lightning_prunelimit.curvature.Spectrum`` (``nodes`` and ``weights`` of
            shape ``(num_probes, m)``, weights non-negative).
        distance: R, a float, a sequence or a tensor of distances >= 0.
        epsilon: the loss tolerance eps > 0.
        zero_fraction: the fraction z in [0, 1) of exactly flat directions (0 for a spectrum
            with deflated rows, which carries its own z).
        negative: ``"abs"`` uses |l| for negative eigenvalues; ``"flat"`` treats them as zero
            curvature (their term is 1).

    Returns:
        A float64 CPU tensor with the shape of ``distance``.

    Example:
        >>> import torch
        >>> from types import SimpleNamespace
        >>> spectrum = SimpleNamespace(  # a Spectrum: one probe, eigenvalues 1 and 3
        ...     nodes=torch.tensor([[1.0, 3.0]]), weights=torch.tensor([[0.5, 0.5]]))
        >>> sublevel_width(spectrum, [0.0, 1.0], epsilon=0.5)
        tensor([1.0000, 0.3750], dtype=torch.float64)
    """
    eps = _check_epsilon(epsilon)
    check_negative(negative)
    curvatures, weights, sums = _quadrature(spectrum, negative)
    z = flat_fraction(spectrum, zero_fraction)
    distances = _as_distances(distance)

    flat = distances.reshape(-1)
    squared = flat.square()
    out = torch.empty_like(squared)
    step = max(1, _CHUNK_ELEMENTS // curvatures.numel())
    for start in range(0, squared.numel(), step):
        chunk = squared[start : start + step, None, None]
        terms = width_integrand(curvatures, chunk, eps)  # (chunk, num_probes, m)
        out[start : start + step] = ((terms * weights).sum(dim=2) / sums).mean(dim=1)
    return mix_flat_fraction(out, z, flat).reshape(distances.shape)


def sublevel_width_interval(
    spectrum: Spectrum,
    distance: float | Sequence[float] | Tensor,
    epsilon: float,
    *,
    zero_fraction: float = 0.0,
    negative: str = "abs",
    confidence: float | None = None,
) -> tuple[Tensor, Tensor]:
    """Lower and upper bounds on the exact-spectrum G(R) around an SLQ estimate.

    The bounds cover the quadrature error of the spectrum's Lanczos runs and the sampling error
    of its probes (``confidence`` standard deviations, default 2); the method and its tested
    coverage are described in ``lightning_prunelimit.limit.width_bounds``. Needs a spectrum
    from ``stochastic_lanczos_quadrature`` (it carries the Lanczos coefficients).

    Example:
        >>> import torch
        >>> from lightning_prunelimit.curvature import DenseOperator, stochastic_lanczos_quadrature
        >>> eigenvalues = torch.linspace(0.0, 2.0, 200, dtype=torch.float64)
        >>> spectrum = stochastic_lanczos_quadrature(DenseOperator(torch.diag(eigenvalues)), 24, 4)
        >>> low, high = sublevel_width_interval(spectrum, [3.0], epsilon=0.1)
        >>> exact = float((0.2 / (0.2 + eigenvalues * 9.0)).mean())
        >>> bool(low[0] <= exact <= high[0])
        True
    """
    eps = _check_epsilon(epsilon)
    check_negative(negative)
    _quadrature(spectrum, negative)
    z = flat_fraction(spectrum, zero_fraction)
    level = DEFAULT_CONFIDENCE if confidence is None else _check_confidence(confidence)
    distances = _as_distances(distance)
    bounds = quadrature_rules(spectrum).width_bounds(distances, eps, negative, level, z)
    return bounds.low.reshape(distances.shape), bounds.high.reshape(distances.shape)


def _check_confidence(confidence: float) -> float:
    if isinstance(confidence, bool) or not isinstance(confidence, numbers.Real):
        raise TypeError(
            f"confidence must be a number >= 0 (standard deviations), got {confidence!r}"
        )
    value = float(confidence)
    if not math.isfinite(value) or value < 0:
        raise ValueError(
            f"confidence must be a finite number >= 0 (standard deviations of the probe "
            f"sampling error; 2 is about 95%), got {confidence!r}"
        )
    return value
