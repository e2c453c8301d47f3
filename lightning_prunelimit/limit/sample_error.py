"""The sample's own error: a Hessian over a sub-sample is not the Hessian of the training data.

The prediction is a smooth function of the Hessian ``H_n`` of the ``n`` samples it was taken
over, and ``H_n`` is an unbiased estimate of ``H_N``, the Hessian of all ``N`` training samples.
Two errors follow:

* a **bias**, one-sided: ``tr f(H)`` with ``f(l) = 2 eps / (2 eps + |l| R^2)`` is convex in
  ``H`` (``1 / (1 + c x)`` is operator convex), so by Jensen's inequality a sub-sample predicts,
  on average, a *larger* removable fraction than the whole data: small samples overstate the
  sparsity. The bias shrinks like ``1/n - 1/N`` (the second-order term of a smooth function of a
  sample mean drawn without replacement);
* a **spread**: the first-order term, of standard deviation about ``sqrt(1/n - 1/N)``.

Both are read off two disjoint halves ``A`` and ``B`` of the sample, each run from the same
probe and for the same number of Lanczos steps as the whole sample (so the quadrature's own
error, which depends on the probe and the steps, largely cancels in the differences):

* the first-order terms of the two halves average to that of the whole sample, so
  ``(s_A + s_B) / 2 - s_n`` measures ``bias(n/2) - bias(n)``; with ``bias(m) = a (1/m - 1/N)``
  that is ``a / n``, hence ``bias(n) = ((s_A + s_B) / 2 - s_n) (1 - n / N)``;
* ``|s_A - s_B| / 2`` estimates the standard deviation of ``s_n`` (halves of size ``n/2``
  have twice the variance of the whole, and their difference twice that again), scaled by
  ``sqrt(1 - n / N)`` for sampling without replacement.

The sample part of the interval is ``[s_n - bias - z * spread, s_n + z * spread]``
(:class:`SampleError`); :func:`with_sample_error` adds it to a prediction's interval. With the
whole training data (``n = N``) it is empty.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lightning_prunelimit.limit.prediction import LimitPrediction

if TYPE_CHECKING:  # pragma: no cover
    from lightning_prunelimit.curvature import Spectrum

__all__ = ["SampleError", "estimate_sample_error", "with_sample_error"]

#: Standard deviations of the spread in the sample part of the interval.
DEFAULT_SAMPLE_CONFIDENCE = 2.0


@dataclass(frozen=True)
class SampleError:
    """How far a prediction from ``num_samples`` samples can be from the whole data's.

    Attributes:
        num_samples: ``n``, the samples the Hessian was taken over.
        dataset_size: ``N``, the samples of the whole training data (None if unknown).
        sparsity: the sample's predicted sparsity at the common step count.
        half_sparsities: the predicted sparsities of the two disjoint halves.
        num_iters: the common Lanczos step count of the three predictions.
        bias: the estimated overstatement ``s_n - s_N`` (at least 0).
        spread: the estimated standard deviation of ``s_n``.
        confidence: standard deviations of the spread in the interval.

    Example:
        >>> error = SampleError(512, 4000, 0.80, (0.83, 0.81), 96, 0.017, 0.009, 2.0)
        >>> round(error.low, 3), round(error.high, 3), round(error.interval_width, 3)
        (0.035, 0.018, 0.053)
    """

    num_samples: int
    dataset_size: int | None
    sparsity: float
    half_sparsities: tuple[float, float]
    num_iters: int
    bias: float
    spread: float
    confidence: float = DEFAULT_SAMPLE_CONFIDENCE

    @property
    def low(self) -> float:
        """How far below the prediction the whole data's may lie: ``bias + z * spread``."""
        return self.bias + self.confidence * self.spread

    @property
    def high(self) -> float:
        """How far above the prediction the whole data's may lie: ``z * spread``."""
        return self.confidence * self.spread

    @property
    def interval_width(self) -> float:
        """``low + high``: the width the sample adds to the sparsity interval."""
        return self.low + self.high

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form.

        Example:
            >>> SampleError(8, None, 0.5, (0.5, 0.5), 4, 0.0, 0.0).to_dict()["dataset_size"] is None
            True
        """
        return {
            "num_samples": int(self.num_samples),
            "dataset_size": None if self.dataset_size is None else int(self.dataset_size),
            "sparsity": float(self.sparsity),
            "half_sparsities": [float(x) for x in self.half_sparsities],
            "num_iters": int(self.num_iters),
            "bias": float(self.bias),
            "spread": float(self.spread),
            "confidence": float(self.confidence),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SampleError:
        """Rebuild from :meth:`to_dict` output.

        Example:
            >>> e = SampleError(8, 16, 0.5, (0.6, 0.55), 4, 0.04, 0.02)
            >>> SampleError.from_dict(e.to_dict()) == e
            True
        """
        size = data.get("dataset_size")
        low, high = (float(x) for x in data["half_sparsities"])
        return cls(
            num_samples=int(data["num_samples"]),
            dataset_size=None if size is None else int(size),
            sparsity=float(data["sparsity"]),
            half_sparsities=(low, high),
            num_iters=int(data["num_iters"]),
            bias=float(data["bias"]),
            spread=float(data["spread"]),
            confidence=float(data.get("confidence", DEFAULT_SAMPLE_CONFIDENCE)),
        )


def estimate_sample_error(
    predict: Callable[[Spectrum], float],
    whole: Spectrum,
    halves: tuple[Spectrum, Spectrum],
    *,
    num_samples: int,
    dataset_size: int | None,
    confidence: float = DEFAULT_SAMPLE_CONFIDENCE,
) -> SampleError:
    """The sample part of the prediction's error, from two disjoint halves of the sample.

    ``whole`` is the spectrum over the ``num_samples`` samples and ``halves`` the spectra over
    its two halves, all from the same first probe (and the same deflated rows); the three are
    compared at their common step count with ``predict`` (a spectrum's predicted sparsity,
    e.g. ``lambda s: predict_pruning_limit(s, weights, eps).sparsity``). See the module
    docstring for the estimates.

    Example:
        >>> import torch
        >>> from lightning_prunelimit.curvature import Spectrum
        >>> def rule(value):  # a one-node spectrum standing for a Lanczos run
        ...     return Spectrum(torch.tensor([[value]]), torch.tensor([[1.0]]), dim=10,
        ...                     alphas=torch.tensor([[value]]), betas=torch.tensor([[0.0]]),
        ...                     lengths=(1,))
        >>> error = estimate_sample_error(lambda s: float(s.nodes[0, 0]), rule(0.80),
        ...                               (rule(0.84), rule(0.82)), num_samples=500,
        ...                               dataset_size=1000)
        >>> round(error.bias, 4), round(error.spread, 4)
        (0.015, 0.0071)
    """
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 2:
        raise ValueError(f"num_samples must be an int >= 2, got {num_samples!r}")
    if dataset_size is not None and dataset_size < num_samples:
        raise ValueError(
            f"dataset_size ({dataset_size}) must be at least num_samples ({num_samples})"
        )
    if not (isinstance(confidence, (int, float)) and confidence > 0):
        raise ValueError(f"confidence must be a positive number, got {confidence!r}")
    first = [whole.probes([0]), halves[0].probes([0]), halves[1].probes([0])]
    steps = min(spectrum.num_iters for spectrum in first)
    s_n, s_a, s_b = (predict(spectrum.truncated(steps)) for spectrum in first)
    kept = 1.0 if dataset_size is None else 1.0 - num_samples / dataset_size
    bias = max(0.5 * (s_a + s_b) - s_n, 0.0) * kept
    spread = 0.5 * abs(s_a - s_b) * math.sqrt(kept)
    return SampleError(
        num_samples=num_samples,
        dataset_size=dataset_size,
        sparsity=float(s_n),
        half_sparsities=(float(s_a), float(s_b)),
        num_iters=int(steps),
        bias=float(bias),
        spread=float(spread),
        confidence=float(confidence),
    )


def with_sample_error(prediction: LimitPrediction, error: SampleError | None) -> LimitPrediction:
    """The prediction with the sample's error added to its interval (unchanged for None).

    ``sample_sparsity_interval`` becomes ``[sparsity - error.low, sparsity + error.high]`` and
    both ends of ``sparsity_interval`` move out by the same amounts (clipped to [0, 1]);
    ``kept_fraction_interval`` follows. A prediction without an interval gets the sample part
    around its point as its interval.

    Example:
        >>> p = LimitPrediction(0.2, 0.8, 1.0, 0.8, 0.1, 0.0, 10, 2, "abs", (0.0, 1.0),
        ...                     (1.0, 0.0), (0.5, 1.0), sparsity_interval=(0.79, 0.81))
        >>> e = SampleError(100, 1000, 0.8, (0.82, 0.8), 8, 0.01, 0.005)
        >>> [round(x, 3) for x in with_sample_error(p, e).sparsity_interval]
        [0.77, 0.82]
    """
    if error is None:
        return prediction
    s = prediction.sparsity
    low, high = prediction.sparsity_interval or (s, s)
    low, high = max(low - error.low, 0.0), min(high + error.high, 1.0)
    return dataclasses.replace(
        prediction,
        sparsity_interval=(low, high),
        kept_fraction_interval=(1.0 - high, 1.0 - low),
        sample_sparsity_interval=(max(s - error.low, 0.0), min(s + error.high, 1.0)),
    )
