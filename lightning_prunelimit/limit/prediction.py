"""The predicted pruning limit: the smallest kept fraction rho with rho >= 1 - G(R(rho))."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from lightning_prunelimit.limit.distances import removed_weight_norms
from lightning_prunelimit.limit.integrand import check_negative
from lightning_prunelimit.limit.sublevel_width import (
    _check_confidence,
    _check_epsilon,
    _quadrature,
    flat_fraction,
    sublevel_width,
)
from lightning_prunelimit.limit.width_bounds import (
    DEFAULT_CONFIDENCE,
    QuadratureRules,
    quadrature_rules,
)

if TYPE_CHECKING:  # pragma: no cover
    from lightning_prunelimit.curvature import Spectrum

__all__ = ["LimitPrediction", "interval_stop", "predict_pruning_limit"]

_Interval = tuple[float, float]


def _interval(value: Any) -> _Interval | None:
    if value is None:
        return None
    low, high = (float(x) for x in value)
    return (low, high)


def _curve(value: Any) -> tuple[float, ...] | None:
    return None if value is None else tuple(float(x) for x in value)


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
        sparsity_interval: ``(lo, hi)`` bounds on the sparsity that the exact Hessian spectrum
            would predict, covering the Lanczos run's quadrature error and the probes'
            sampling error (see ``lightning_prunelimit.limit.width_bounds``); None when the
            spectrum carries no Lanczos coefficients (e.g. exact eigenvalues).
        kept_fraction_interval: the same bounds as kept fractions, ``(1 - hi, 1 - lo)``.
        quadrature_sparsity_interval: the bounds from the quadrature error alone (the part
            that more Lanczos steps shrink; more probes shrink the rest).
        confidence: standard deviations of the sampling error in ``sparsity_interval``.
        curve_widths_low, curve_widths_high: bounds on G at ``curve_distances`` (a band).
        sample_sparsity_interval: when the Hessian was taken over a sub-sample of the training
            data, the range around ``sparsity`` that the sample's own error spans (see
            ``lightning_prunelimit.limit.SampleError``); ``sparsity_interval`` then includes it
            and bounds what the Hessian of the whole training data would predict.

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
    sparsity_interval: _Interval | None = None
    kept_fraction_interval: _Interval | None = None
    quadrature_sparsity_interval: _Interval | None = None
    confidence: float | None = None
    curve_widths_low: tuple[float, ...] | None = None
    curve_widths_high: tuple[float, ...] | None = None
    sample_sparsity_interval: _Interval | None = None

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
    def sparsity_interval_length(self) -> float | None:
        """``hi - lo`` of ``sparsity_interval`` (None without an interval).

        Example:
            >>> LimitPrediction(0.5, 0.5, 1.0, 0.6, 0.1, 0.0, 4, 2, "abs", (0.0, 1.0), (2.0, 0.0),
            ...     (0.2, 1.0), sparsity_interval=(0.25, 0.75)).sparsity_interval_length
            0.5
        """
        if self.sparsity_interval is None:
            return None
        return self.sparsity_interval[1] - self.sparsity_interval[0]

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
            "sparsity_interval": _listed(self.sparsity_interval),
            "kept_fraction_interval": _listed(self.kept_fraction_interval),
            "quadrature_sparsity_interval": _listed(self.quadrature_sparsity_interval),
            "confidence": self.confidence,
            "curve_widths_low": _listed(self.curve_widths_low),
            "curve_widths_high": _listed(self.curve_widths_high),
            "sample_sparsity_interval": _listed(self.sample_sparsity_interval),
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
            sparsity_interval=_interval(data.get("sparsity_interval")),
            kept_fraction_interval=_interval(data.get("kept_fraction_interval")),
            quadrature_sparsity_interval=_interval(data.get("quadrature_sparsity_interval")),
            confidence=None if data.get("confidence") is None else float(data["confidence"]),
            curve_widths_low=_curve(data.get("curve_widths_low")),
            curve_widths_high=_curve(data.get("curve_widths_high")),
            sample_sparsity_interval=_interval(data.get("sample_sparsity_interval")),
        )


def _listed(values: Sequence[float] | None) -> list[float] | None:
    return None if values is None else [float(x) for x in values]


def _smallest_feasible(total: int, width: Callable[[int], float]) -> int:
    """The smallest k in [0, total] with k / total >= 1 - width(k), by bisection."""
    # Monotonicity of feasible(k): keeping k weights removes the m = N - k smallest, so
    # R(k)^2 = norms[N - k]^2 is a sum of m squares and R(k) is non-increasing in k. Each term
    # g(l, R) = 2 eps / (2 eps + |l| R^2) is non-increasing in R (|l| R^2 >= 0 grows with R)
    # and at most 1; the quadrature weights are non-negative, each probe's sum is divided by
    # its positive total and 1 - z > 0, so G(R) is non-increasing in R (G(0) = 1 is the
    # largest value) and G(R(k)) is non-decreasing in k. Hence 1 - G(R(k)) is non-increasing
    # in k while k/N is increasing: once k/N >= 1 - G(R(k)) holds it holds for every larger k.
    # These steps are monotone in floating point too (each rounding is monotone and the
    # evaluation order is fixed). At k = N, R = 0 and G = 1, so the condition holds there: the
    # answer exists. (The interval's bounds are monotone in R up to the sampling margin, which
    # varies slowly; bisection then finds a crossing of the bound.)
    low, high = 0, total  # invariant: feasible(high); every k < low is infeasible
    while low < high:
        middle = (low + high) // 2
        if middle / total >= 1.0 - width(middle):
            high = middle
        else:
            low = middle + 1
    return high


def predict_pruning_limit(
    spectrum: Spectrum,
    weights: Tensor | Sequence[Tensor],
    epsilon: float,
    *,
    zero_fraction: float = 0.0,
    negative: str = "abs",
    num_curve_points: int = 201,
    confidence: float | None = None,
) -> LimitPrediction:
    """Predict how sparse the weights can be pruned: the fixed point rho = 1 - G(R(rho)).

    Returns the smallest kept fraction ``rho = k/N`` (k = 0..N) with
    ``rho >= 1 - G(R(rho))``, where ``R(rho)`` is the norm of the weights removed by global
    magnitude pruning (``pruning_distances``) and ``G`` the sublevel-set width
    (``sublevel_width``). The condition is monotone in k (see the proof in the code), so k is
    found by bisection: O(log N) evaluations of G, after one sort of the weights.

    When the spectrum carries its Lanczos coefficients (``stochastic_lanczos_quadrature``
    attaches them), the same fixed point is also solved with the lower and upper bounds of G
    (``sublevel_width_interval``): ``sparsity_interval`` then bounds the sparsity that the exact
    Hessian spectrum would give, and ``quadrature_sparsity_interval`` its quadrature part.

    Args:
        spectrum: a ``lightning_prunelimit.curvature.Spectrum`` of the Hessian at the weights.
        weights: the N prunable weights: a tensor or a sequence of tensors.
        epsilon: the loss tolerance, a positive number (to use ``"batch_loss_std"``, resolve
            it first with ``resolve_epsilon``).
        zero_fraction: the fraction z in [0, 1) of zero-curvature directions (leave 0 for a
            spectrum that deflated its zero rows: it counts them itself).
        negative: ``"abs"`` or ``"flat"``, see ``sublevel_width``.
        num_curve_points: number of points of the kept-fraction grid on [0, 1] for the curves
            (at least 2).
        confidence: standard deviations of the probe-sampling error in the interval (default
            2).

    Example:
        >>> import torch
        >>> from types import SimpleNamespace
        >>> spectrum = SimpleNamespace(  # a Spectrum with the single eigenvalue 1
        ...     nodes=torch.tensor([[1.0]]), weights=torch.tensor([[1.0]]))
        >>> weights = torch.tensor([0.01, 0.02, 0.03, 1.0, 2.0])
        >>> prediction = predict_pruning_limit(spectrum, weights, epsilon=0.01)
        >>> prediction.kept_fraction, prediction.sparsity, prediction.sparsity_interval
        (0.4, 0.6, None)
    """
    eps = _check_epsilon(epsilon)
    check_negative(negative)
    _quadrature(spectrum, negative)  # validates the spectrum once, before any other work
    z = flat_fraction(spectrum, zero_fraction)
    level = DEFAULT_CONFIDENCE if confidence is None else _check_confidence(confidence)
    if isinstance(num_curve_points, bool) or not isinstance(num_curve_points, int):
        raise TypeError(f"num_curve_points must be an int >= 2, got {num_curve_points!r}")
    if num_curve_points < 2:
        raise ValueError(f"num_curve_points must be >= 2, got {num_curve_points}")

    norms = removed_weight_norms(weights)  # norms[m] = R when the m smallest |w| are removed
    total = norms.numel() - 1

    def width(num_kept: int) -> float:
        distance = norms[total - num_kept]
        return float(
            sublevel_width(spectrum, distance, eps, zero_fraction=zero_fraction, negative=negative)
        )

    num_kept = _smallest_feasible(total, width)
    grid = torch.linspace(0.0, 1.0, num_curve_points, dtype=torch.float64)
    removed = torch.round((1.0 - grid) * total).to(torch.int64).clamp_(0, total)
    curve_distances = norms[removed]
    curve_widths = sublevel_width(
        spectrum, curve_distances, eps, zero_fraction=zero_fraction, negative=negative
    )
    kept_fraction = num_kept / total
    intervals: dict[str, Any] = {}
    if getattr(spectrum, "has_coefficients", False):
        rules = quadrature_rules(spectrum)
        intervals = _intervals(rules, norms, total, eps, z, negative, level, curve_distances)
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
        **intervals,
    )


def _intervals(
    rules: QuadratureRules,
    norms: Tensor,
    total: int,
    eps: float,
    z: float,
    negative: str,
    level: float,
    curve_distances: Tensor | None = None,
    *,
    quadrature_only: bool = False,
) -> dict[str, Any]:
    """The fixed points of G's bounds: the quadrature-only and the full sparsity intervals."""
    cache: dict[int, tuple[float, ...]] = {}

    def bounds(num_kept: int) -> tuple[float, ...]:
        if num_kept not in cache:
            found = rules.width_bounds(norms[total - num_kept].reshape(1), eps, negative, level, z)
            cache[num_kept] = tuple(
                float(b[0])
                for b in (found.quadrature_low, found.quadrature_high, found.low, found.high)
            )
        return cache[num_kept]

    ends = range(2) if quadrature_only else range(4)
    kept = [_smallest_feasible(total, lambda k, i=i: bounds(k)[i]) for i in ends]
    # A lower G admits less pruning: the lower bound of G gives the largest kept fraction.
    out: dict[str, Any] = {
        "quadrature_sparsity_interval": (1 - kept[0] / total, 1 - kept[1] / total)
    }
    if quadrature_only:
        return out
    sparsity = (1.0 - kept[2] / total, 1.0 - kept[3] / total)
    out.update(
        sparsity_interval=sparsity,
        kept_fraction_interval=(1.0 - sparsity[1], 1.0 - sparsity[0]),
        confidence=level,
    )
    if curve_distances is not None:
        band = rules.width_bounds(curve_distances, eps, negative, level, z)
        out["curve_widths_low"] = tuple(band.low.tolist())
        out["curve_widths_high"] = tuple(band.high.tolist())
    return out


def interval_stop(
    weights: Tensor | Sequence[Tensor],
    epsilon: float,
    *,
    tolerance: float = 0.01,
    negative: str = "abs",
    zero_fraction: float = 0.0,
    min_iters: int = 16,
    check_every: int = 8,
) -> Callable[[Spectrum], bool]:
    """A ``stop`` rule for ``stochastic_lanczos_quadrature``: enough steps for the prediction.

    Returns a function of the spectrum so far that is True once the prediction's
    ``quadrature_sparsity_interval`` (the part of the interval that more Lanczos steps shrink)
    is at most ``tolerance`` wide. It checks after ``min_iters`` steps and then every
    ``check_every`` steps (each check costs a few small eigen-decompositions, no
    Hessian-vector product). The probes' sampling error is not shrunk by steps: more probes
    shrink it.

    Example:
        >>> import torch
        >>> from lightning_prunelimit.curvature import DenseOperator, stochastic_lanczos_quadrature
        >>> op = DenseOperator(torch.diag(torch.linspace(0.01, 1.0, 300, dtype=torch.float64)))
        >>> weights = torch.linspace(-1.0, 1.0, 300)
        >>> stop = interval_stop(weights, epsilon=0.05, tolerance=0.02)
        >>> spectrum = stochastic_lanczos_quadrature(op, 200, 2, stop=stop)
        >>> spectrum.num_iters < 200
        True
    """
    eps = _check_epsilon(epsilon)
    check_negative(negative)
    if (
        isinstance(tolerance, bool)
        or not isinstance(tolerance, (int, float))
        or not (0.0 < float(tolerance) < 1.0)
    ):
        raise ValueError(
            f"tolerance must be a number in (0, 1) (the widest acceptable interval of the "
            f"predicted sparsity), got {tolerance!r}"
        )
    for name, value in (("min_iters", min_iters), ("check_every", check_every)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    norms = removed_weight_norms(weights)
    total = norms.numel() - 1

    def stop(spectrum: Spectrum) -> bool:
        steps = spectrum.num_iters
        if steps < min_iters or (steps - min_iters) % check_every:
            return False
        z = flat_fraction(spectrum, zero_fraction)
        rules = quadrature_rules(spectrum)
        low, high = _intervals(rules, norms, total, eps, z, negative, 0.0, quadrature_only=True)[
            "quadrature_sparsity_interval"
        ]
        return high - low <= float(tolerance)

    return stop
