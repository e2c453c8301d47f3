"""The predicted pruning limit: the smallest kept fraction rho with rho >= 1 - G(R(rho))."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from lightning_prunelimit.limit.distances import removed_weight_norms
from lightning_prunelimit.limit.sublevel_width import (
    _check_epsilon,
    _check_negative,
    _check_zero_fraction,
    _quadrature,
    sublevel_width,
)

if TYPE_CHECKING:  # pragma: no cover
    from lightning_prunelimit.curvature import Spectrum

__all__ = ["LimitPrediction", "predict_pruning_limit"]


@dataclass(frozen=True)
class LimitPrediction:
    """A predicted pruning limit and the curves behind it.

    Attributes:
        kept_fraction: the predicted limit rho* = k*/N, the smallest fraction of weights that
            must be kept.
        sparsity: ``1 - kept_fraction``, the largest fraction that can be pruned (the
            ``amount`` to pass to pruning).
        distance: R(rho*), the norm of the weights removed at the limit.
        width: G(R(rho*)), the removable fraction the geometry allows there.
        epsilon: the loss tolerance used.
        zero_fraction: the fraction of zero-curvature directions used.
        num_weights: N, the number of prunable weights.
        num_kept: k*, the number of weights kept at the limit.
        negative: how negative eigenvalues were treated (``"abs"`` or ``"flat"``).
        curve_kept_fractions: a grid of kept fractions on [0, 1] for plots.
        curve_distances: R at those kept fractions.
        curve_widths: G(R) at those distances. The limit is where the sparsity curve
            ``(curve_distances, curve_sparsities)`` crosses the width curve
            ``(curve_distances, curve_widths)``.

    Example:
        >>> p = LimitPrediction(0.5, 0.5, 1.0, 0.6, 0.1, 0.0, 4, 2, "abs",
        ...     (0.0, 1.0), (2.0, 0.0), (0.2, 1.0))
        >>> p.curve_sparsities
        (1.0, 0.0)
        >>> LimitPrediction.from_dict(p.to_dict()) == p
        True
    """

    kept_fraction: float
    sparsity: float
    distance: float
    width: float
    epsilon: float
    zero_fraction: float
    num_weights: int
    num_kept: int
    negative: str
    curve_kept_fractions: tuple[float, ...]
    curve_distances: tuple[float, ...]
    curve_widths: tuple[float, ...]

    def __post_init__(self) -> None:
        lengths = {
            len(self.curve_kept_fractions),
            len(self.curve_distances),
            len(self.curve_widths),
        }
        if len(lengths) != 1:
            raise ValueError(
                "curve_kept_fractions, curve_distances and curve_widths must have the same "
                f"length, got {sorted(lengths)}"
            )

    @property
    def curve_sparsities(self) -> tuple[float, ...]:
        """The sparsity grid ``1 - curve_kept_fractions`` (x: curve_distances).

        Example:
            >>> LimitPrediction(1.0, 0.0, 0.0, 1.0, 0.1, 0.0, 1, 1, "abs",
            ...     (0.25,), (0.0,), (1.0,)).curve_sparsities
            (0.75,)
        """
        return tuple(1.0 - rho for rho in self.curve_kept_fractions)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-friendly dictionary (floats, ints, strings and lists).

        Example:
            >>> LimitPrediction(1.0, 0.0, 0.0, 1.0, 0.1, 0.0, 1, 1, "abs",
            ...     (1.0,), (0.0,), (1.0,)).to_dict()["curve_widths"]
            [1.0]
        """
        return {
            "kept_fraction": float(self.kept_fraction),
            "sparsity": float(self.sparsity),
            "distance": float(self.distance),
            "width": float(self.width),
            "epsilon": float(self.epsilon),
            "zero_fraction": float(self.zero_fraction),
            "num_weights": int(self.num_weights),
            "num_kept": int(self.num_kept),
            "negative": str(self.negative),
            "curve_kept_fractions": [float(x) for x in self.curve_kept_fractions],
            "curve_distances": [float(x) for x in self.curve_distances],
            "curve_widths": [float(x) for x in self.curve_widths],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LimitPrediction:
        """Rebuild a prediction from ``to_dict()`` output.

        Example:
            >>> d = LimitPrediction(1.0, 0.0, 0.0, 1.0, 0.1, 0.0, 1, 1, "abs",
            ...     (1.0,), (0.0,), (1.0,)).to_dict()
            >>> LimitPrediction.from_dict(d).num_weights
            1
        """
        return cls(
            kept_fraction=float(data["kept_fraction"]),
            sparsity=float(data["sparsity"]),
            distance=float(data["distance"]),
            width=float(data["width"]),
            epsilon=float(data["epsilon"]),
            zero_fraction=float(data["zero_fraction"]),
            num_weights=int(data["num_weights"]),
            num_kept=int(data["num_kept"]),
            negative=str(data["negative"]),
            curve_kept_fractions=tuple(float(x) for x in data["curve_kept_fractions"]),
            curve_distances=tuple(float(x) for x in data["curve_distances"]),
            curve_widths=tuple(float(x) for x in data["curve_widths"]),
        )


def predict_pruning_limit(
    spectrum: Spectrum,
    weights: Tensor | Sequence[Tensor],
    epsilon: float,
    *,
    zero_fraction: float = 0.0,
    negative: str = "abs",
    num_curve_points: int = 201,
) -> LimitPrediction:
    """Predict how sparse the weights can be pruned: the fixed point rho = 1 - G(R(rho)).

    Returns the smallest kept fraction ``rho = k/N`` (k = 0..N) with
    ``rho >= 1 - G(R(rho))``, where ``R(rho)`` is the norm of the weights removed by global
    magnitude pruning (``pruning_distances``) and ``G`` the sublevel-set width
    (``sublevel_width``). The condition is monotone in k (see the proof in the code), so k is
    found by bisection: O(log N) evaluations of G, after one sort of the weights.

    Args:
        spectrum: a ``lightning_prunelimit.curvature.Spectrum`` of the Hessian at the weights.
        weights: the N prunable weights: a tensor or a sequence of tensors.
        epsilon: the loss tolerance, a positive number (to use ``"batch_loss_std"``, resolve
            it first with ``resolve_epsilon``).
        zero_fraction: the fraction z in [0, 1) of zero-curvature directions.
        negative: ``"abs"`` or ``"flat"``, see ``sublevel_width``.
        num_curve_points: number of points of the kept-fraction grid on [0, 1] for the curves
            (at least 2).

    Example:
        >>> import torch
        >>> from types import SimpleNamespace
        >>> spectrum = SimpleNamespace(  # a Spectrum with the single eigenvalue 1
        ...     nodes=torch.tensor([[1.0]]), weights=torch.tensor([[1.0]]))
        >>> weights = torch.tensor([0.01, 0.02, 0.03, 1.0, 2.0])
        >>> prediction = predict_pruning_limit(spectrum, weights, epsilon=0.01)
        >>> prediction.kept_fraction, prediction.sparsity
        (0.4, 0.6)
    """
    eps = _check_epsilon(epsilon)
    z = _check_zero_fraction(zero_fraction)
    _check_negative(negative)
    _quadrature(spectrum, negative)  # validates the spectrum once, before any other work
    if isinstance(num_curve_points, bool) or not isinstance(num_curve_points, int):
        raise TypeError(f"num_curve_points must be an int >= 2, got {num_curve_points!r}")
    if num_curve_points < 2:
        raise ValueError(f"num_curve_points must be >= 2, got {num_curve_points}")

    norms = removed_weight_norms(weights)  # norms[m] = R when the m smallest |w| are removed
    total = norms.numel() - 1

    def width(num_kept: int) -> float:
        return float(
            sublevel_width(
                spectrum, norms[total - num_kept], eps, zero_fraction=z, negative=negative
            )
        )

    def feasible(num_kept: int) -> bool:
        return num_kept / total >= 1.0 - width(num_kept)

    # Monotonicity of feasible(k): keeping k weights removes the m = N - k smallest, so
    # R(k)^2 = norms[N - k]^2 is a sum of m squares and R(k) is non-increasing in k. Each term
    # g(l, R) = 2 eps / (2 eps + |l| R^2) is non-increasing in R (|l| R^2 >= 0 grows with R)
    # and at most 1; the quadrature weights are non-negative, each probe's sum is divided by
    # its positive total and 1 - z > 0, so G(R) is non-increasing in R (G(0) = 1 is the
    # largest value) and G(R(k)) is non-decreasing in k. Hence 1 - G(R(k)) is non-increasing
    # in k while k/N is increasing: once k/N >= 1 - G(R(k)) holds it holds for every larger k.
    # These steps are monotone in floating point too (each rounding is monotone and the
    # evaluation order is fixed). At k = N, R = 0 and G = 1, so the condition holds there: the
    # answer exists.
    low, high = 0, total  # invariant: feasible(high); every k < low is infeasible
    while low < high:
        middle = (low + high) // 2
        if feasible(middle):
            high = middle
        else:
            low = middle + 1
    num_kept = high

    grid = torch.linspace(0.0, 1.0, num_curve_points, dtype=torch.float64)
    removed = torch.round((1.0 - grid) * total).to(torch.int64).clamp_(0, total)
    curve_distances = norms[removed]
    curve_widths = sublevel_width(
        spectrum, curve_distances, eps, zero_fraction=z, negative=negative
    )
    kept_fraction = num_kept / total
    return LimitPrediction(
        kept_fraction=kept_fraction,
        sparsity=1.0 - kept_fraction,
        distance=float(norms[total - num_kept]),
        width=width(num_kept),
        epsilon=eps,
        zero_fraction=z,
        num_weights=total,
        num_kept=num_kept,
        negative=negative,
        curve_kept_fractions=tuple(grid.tolist()),
        curve_distances=tuple(curve_distances.tolist()),
        curve_widths=tuple(curve_widths.tolist()),
    )
