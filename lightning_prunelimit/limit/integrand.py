"""The integrand of the sublevel width G(R), defined once.

``G(R) = z + (1 - z) * (1/D) tr f(H)`` with

* the integrand ``f(l) = 2 eps / (2 eps + c(l) R^2)`` (:func:`width_integrand`),
* the curvature ``c(l)`` of an eigenvalue ``l``: ``|l|`` (``negative="abs"``) or ``max(l, 0)``
  (``negative="flat"``, negative curvature read as none) (:func:`curvature`),
* the flat fraction ``z`` of exactly zero-curvature directions mixed in, and ``G(0) = 1``
  exactly (:func:`mix_flat_fraction`).

Every estimate and bound of G in this package goes through these three functions.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "NEGATIVE_MODES",
    "check_negative",
    "curvature",
    "mix_flat_fraction",
    "width_integrand",
]

#: How negative eigenvalues enter G: ``"abs"`` uses |l|, ``"flat"`` treats them as zero curvature.
NEGATIVE_MODES: tuple[str, ...] = ("abs", "flat")


def check_negative(negative: str) -> str:
    """Return ``negative`` if it is one of :data:`NEGATIVE_MODES`, else raise ValueError.

    Example:
        >>> check_negative("flat")
        'flat'
    """
    if negative not in NEGATIVE_MODES:
        raise ValueError(
            f"negative must be one of {NEGATIVE_MODES}, got {negative!r}: 'abs' uses |l| for "
            "negative eigenvalues, 'flat' treats them as zero curvature"
        )
    return negative


def curvature(eigenvalues: Tensor, negative: str) -> Tensor:
    """The curvature that enters G for each eigenvalue: ``|l|`` or ``max(l, 0)``.

    Example:
        >>> import torch
        >>> eigenvalues = torch.tensor([-2.0, 3.0])
        >>> curvature(eigenvalues, "abs"), curvature(eigenvalues, "flat")
        (tensor([2., 3.]), tensor([0., 3.]))
    """
    return eigenvalues.abs() if negative == "abs" else eigenvalues.clamp(min=0.0)


def width_integrand(curvatures: Tensor, squared_distances: Tensor, epsilon: float) -> Tensor:
    """``f = 2 eps / (2 eps + c R^2)`` for curvatures ``c >= 0``, broadcast against ``R^2``.

    Example:
        >>> import torch
        >>> width_integrand(torch.tensor([0.0, 1.0]), torch.tensor(4.0), 0.5)
        tensor([1.0000, 0.2000])
    """
    two_eps = 2.0 * float(epsilon)
    return two_eps / (two_eps + squared_distances * curvatures)


def mix_flat_fraction(probed: Tensor, flat_fraction: float, distances: Tensor) -> Tensor:
    """``G = z + (1 - z) * probed``, and exactly 1 where the distance is 0.

    ``probed`` is ``(1/D') tr f`` over the probed (not exactly flat) part, one value per
    distance; ``z = flat_fraction`` the fraction of exactly flat directions (their ``f`` is 1).

    Example:
        >>> import torch
        >>> mix_flat_fraction(torch.tensor([0.3, 0.5]), 0.5, torch.tensor([0.0, 2.0]))
        tensor([1.0000, 0.7500])
    """
    z = float(flat_fraction)
    return torch.where(distances == 0, 1.0, z + (1.0 - z) * probed)
