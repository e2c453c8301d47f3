"""Whether a predicted limit and a measured one agree, stated with both intervals."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

__all__ = ["IntervalAgreement", "interval_agreement"]


class IntervalAgreement(NamedTuple):
    """How two intervals of the same quantity (e.g. sparsity) sit against each other.

    Attributes:
        overlap: whether the intervals share at least one point.
        distance: the gap between them (0 when they overlap).

    Example:
        >>> IntervalAgreement(False, 0.05).distance
        0.05
    """

    overlap: bool
    distance: float

    def to_dict(self) -> dict[str, Any]:
        """``{"overlap": bool, "distance": float}``.

        Example:
            >>> IntervalAgreement(True, 0.0).to_dict()
            {'overlap': True, 'distance': 0.0}
        """
        return {"overlap": bool(self.overlap), "distance": float(self.distance)}


def _pair(name: str, interval: Sequence[float]) -> tuple[float, float]:
    if len(interval) != 2:
        raise ValueError(f"{name} must be a pair (lo, hi), got {interval!r}")
    low, high = float(interval[0]), float(interval[1])
    if not low <= high:
        raise ValueError(f"{name} must have lo <= hi, got {interval!r}")
    return low, high


def interval_agreement(predicted: Sequence[float], measured: Sequence[float]) -> IntervalAgreement:
    """Do a predicted interval and a measured one overlap, and how far apart are they if not?

    A point is an interval of zero width: pass ``(x, x)``.

    Example:
        >>> interval_agreement((0.80, 0.90), (0.85, 0.95))
        IntervalAgreement(overlap=True, distance=0.0)
        >>> agreement = interval_agreement((0.60, 0.70), (0.75, 0.80))
        >>> agreement.overlap, round(agreement.distance, 6)
        (False, 0.05)
    """
    p_low, p_high = _pair("predicted", predicted)
    m_low, m_high = _pair("measured", measured)
    gap = max(m_low - p_high, p_low - m_high, 0.0)
    return IntervalAgreement(overlap=gap == 0.0, distance=gap)
