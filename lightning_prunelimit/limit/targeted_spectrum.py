"""A Hessian spectrum that spends only what the prediction's stated accuracy needs.

:func:`estimate_spectrum` takes one accuracy target, the widest acceptable interval of the
predicted sparsity (``tolerance``), and decides the three things that set the price of the
spectrum:

* **Lanczos steps**: the run stops once the quadrature part of the interval is narrow enough
  (:func:`interval_stop`), at most ``max_iters`` steps;
* **probes**: one first; more only when the probes' sampling part of the interval (which
  shrinks like ``1/sqrt(probes)``, and is small when the number of weights is large) is wider
  than its share; they are added to the first run (same probe stream, ``first_probe``);
* **samples**: the whole training data when it is small; otherwise a seeded sub-sample, whose
  own error (:mod:`~lightning_prunelimit.limit.sample_error`) is measured from two disjoint
  halves and added to the interval; with ``num_samples="auto"`` the sample doubles (nested:
  the larger sample contains the smaller) until that part is narrow enough, or the data is used
  up.

The tolerance is shared: with a sub-sample, half of it for the quadrature, a quarter each for
the probes and the sample; with the whole data, 70% and 30%. When the steps run out before the
quadrature part fits its share, no probes are added and the sample does not grow: the interval
cannot meet the tolerance anyway, and the budget that ran out is reported. The top eigenvalues
and the trace come from the same run (``curvature.ritz_top_eigenvalues``,
``curvature.spectrum_trace``).
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from torch import Tensor

from lightning_prunelimit.curvature import (
    FixedBatches,
    LinearOperator,
    Spectrum,
    stochastic_lanczos_quadrature,
)
from lightning_prunelimit.curvature.linear_operator import operator_dim
from lightning_prunelimit.curvature.zero_rows import find_zero_rows
from lightning_prunelimit.limit.distances import as_flat_weights
from lightning_prunelimit.limit.prediction import (
    LimitPrediction,
    interval_stop,
    predict_pruning_limit,
)
from lightning_prunelimit.limit.sample_error import SampleError, estimate_sample_error

__all__ = [
    "AUTO_ALL_SAMPLES",
    "AUTO_MAX_SAMPLES",
    "AUTO_START_SAMPLES",
    "DEFAULT_TOLERANCE",
    "IntervalPart",
    "LimitTarget",
    "SpectrumEstimate",
    "estimate_spectrum",
    "interval_parts",
    "probes_for_bound",
    "tolerance_shares",
]

#: The default accuracy target: the widest acceptable interval of the predicted sparsity.
DEFAULT_TOLERANCE = 0.03
#: ``num_samples="auto"`` takes the whole training data up to this many samples.
AUTO_ALL_SAMPLES = 4096
#: ``num_samples="auto"`` starts from this many samples on larger data.
AUTO_START_SAMPLES = 1024
#: ``num_samples="auto"`` grows the sample up to this many samples.
AUTO_MAX_SAMPLES = 16384
#: The most probes ``num_probes="auto"`` runs.
AUTO_MAX_PROBES = 16

Stage = Callable[[str, int], contextlib.AbstractContextManager[Callable[[int, int], None]]]


@contextlib.contextmanager
def _silent(description: str, total: int) -> Iterator[Callable[[int, int], None]]:
    yield lambda done, total: None


@dataclass(frozen=True)
class LimitTarget:
    """What a predicted limit needs besides the spectrum: the prunable weights and epsilon.

    Example:
        >>> import torch
        >>> from lightning_prunelimit.curvature import DenseOperator, stochastic_lanczos_quadrature
        >>> target = LimitTarget(torch.linspace(-1, 1, 50), epsilon=0.05)
        >>> op = DenseOperator(torch.diag(torch.linspace(0.0, 1.0, 50, dtype=torch.float64)))
        >>> 0 < target.sparsity(stochastic_lanczos_quadrature(op, num_iters=50)) < 1
        True
    """

    weights: Tensor
    epsilon: float
    negative: str = "abs"

    def __post_init__(self) -> None:
        object.__setattr__(self, "weights", as_flat_weights(self.weights))

    def predict(self, spectrum: Spectrum) -> LimitPrediction:
        """The predicted limit of ``spectrum`` (``predict_pruning_limit``)."""
        return predict_pruning_limit(spectrum, self.weights, self.epsilon, negative=self.negative)

    def sparsity(self, spectrum: Spectrum) -> float:
        """The predicted sparsity of ``spectrum``."""
        return float(self.predict(spectrum).sparsity)

    def stop_rule(self, tolerance: float) -> Callable[[Spectrum], bool]:
        """The Lanczos stop rule for a quadrature part at most ``tolerance`` wide."""
        return interval_stop(
            self.weights, self.epsilon, tolerance=tolerance, negative=self.negative
        )


@dataclass(frozen=True)
class SpectrumEstimate:
    """A spectrum, what it cost, and the sample part of its prediction's error.

    Attributes:
        spectrum: the spectrum over the sample (all probes).
        num_samples: the samples the Hessian was taken over.
        dataset_size: the samples of the whole training data (None if unknown).
        sample_error: the sample's own error (None with the whole data or without a target).
        timings: seconds per stage: ``"sample"`` (reading the data), ``"zero_rows"``,
            ``"lanczos"`` (first probe), ``"probes"`` (added probes), ``"sample_error"`` (the
            halves).
        exhausted: the budgets that ran out before the tolerance was met (e.g.
            ``"max_iters=256"``), empty when it was met or there was no target.
        fixed: the sample the spectrum was taken over (not serialised).

    Example:
        >>> import torch
        >>> from lightning_prunelimit.curvature import Spectrum
        >>> s = Spectrum(torch.tensor([[1.0]]), torch.tensor([[1.0]]), dim=2)
        >>> SpectrumEstimate(s, 10, 10, None).exhausted
        ()
    """

    spectrum: Spectrum
    num_samples: int
    dataset_size: int | None
    sample_error: SampleError | None
    timings: dict[str, float] = field(default_factory=dict)
    exhausted: tuple[str, ...] = ()
    fixed: FixedBatches | None = field(default=None, repr=False, compare=False)


def tolerance_shares(tolerance: float, *, sub_sample: bool) -> tuple[float, float, float]:
    """How ``tolerance`` is shared: ``(quadrature, probes, sample)`` widths.

    Example:
        >>> tolerance_shares(0.04, sub_sample=True)
        (0.02, 0.01, 0.01)
        >>> [round(x, 3) for x in tolerance_shares(0.04, sub_sample=False)]
        [0.028, 0.012, 0.0]
    """
    if sub_sample:
        return 0.5 * tolerance, 0.25 * tolerance, 0.25 * tolerance
    return 0.7 * tolerance, 0.3 * tolerance, 0.0


def probes_for_bound(dim: int, width: float, *, confidence: float = 2.0) -> int:
    """Probes whose sampling interval of a normalised trace ``(1/D) tr f(H)`` is ``<= width``.

    For ``0 <= f <= 1`` the variance of one Rademacher probe's estimate is at most ``1 / D``
    (``2 min(G, 1 - G) / D`` with ``G <= 1/2`` at worst), so ``P`` probes give a full width of
    at most ``2 confidence / sqrt(D P)``. Used when no prediction says how wide it really is.

    Example:
        >>> probes_for_bound(85_000, 0.03), probes_for_bound(2_000, 0.03)
        (1, 9)
    """
    if width <= 0:
        raise ValueError(f"width must be positive, got {width!r}")
    return max(1, math.ceil((2.0 * confidence / width) ** 2 / max(dim, 1)))


class IntervalPart(NamedTuple):
    """One part of the predicted sparsity's interval: its width and its share of the tolerance.

    Example:
        >>> part = IntervalPart("sample", 0.04, 0.0075)
        >>> part.over_share
        True
    """

    name: str
    width: float
    share: float

    @property
    def over_share(self) -> bool:
        """Whether the part is wider than its share (up to rounding)."""
        return self.width > self.share * (1 + 1e-9)


def _part_widths(prediction: LimitPrediction) -> tuple[float, float]:
    """The quadrature part's width and the probes' part (the rest of the interval)."""
    quadrature = probes = 0.0
    if prediction.quadrature_sparsity_interval is not None:
        low, high = prediction.quadrature_sparsity_interval
        quadrature = high - low
    if prediction.sparsity_interval is not None:
        low, high = prediction.sparsity_interval
        probes = max(high - low - quadrature, 0.0)
    return quadrature, probes


def interval_parts(
    prediction: LimitPrediction, sample_error: SampleError | None, tolerance: float
) -> tuple[IntervalPart, ...]:
    """The parts of a prediction's interval, each against its share of ``tolerance``.

    ``"quadrature"`` (what more Lanczos steps shrink), ``"probes"`` (the probes' sampling part:
    the rest of ``prediction``'s interval) and, with a sub-sample's ``sample_error``,
    ``"sample"``; the shares are :func:`tolerance_shares`. ``prediction`` is the prediction
    before the sample part was added (``with_sample_error``).

    Example:
        >>> from lightning_prunelimit.limit import LimitPrediction
        >>> p = LimitPrediction(0.2, 0.8, 1.0, 0.8, 0.1, 0.0, 10, 2, "abs", (0.0, 1.0),
        ...                     (1.0, 0.0), (0.5, 1.0), sparsity_interval=(0.75, 0.85),
        ...                     quadrature_sparsity_interval=(0.77, 0.83))
        >>> [(part.name, round(part.width, 3)) for part in interval_parts(p, None, 0.03)]
        [('quadrature', 0.06), ('probes', 0.04)]
    """
    quad_share, probe_share, sample_share = tolerance_shares(
        float(tolerance), sub_sample=sample_error is not None
    )
    quadrature, probes = _part_widths(prediction)
    parts = [
        IntervalPart("quadrature", quadrature, quad_share),
        IntervalPart("probes", probes, probe_share),
    ]
    if sample_error is not None:
        parts.append(IntervalPart("sample", sample_error.interval_width, sample_share))
    return tuple(parts)


def _check_choice(name: str, value: Any, allowed: tuple[Any, ...], minimum: int) -> None:
    if value in allowed and not isinstance(value, bool):
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        choices = " or ".join(repr(a) for a in allowed)
        raise ValueError(f"{name} must be {choices} or an int >= {minimum}, got {value!r}")


def estimate_spectrum(
    draw: Callable[[int | None], FixedBatches],
    make_operator: Callable[[FixedBatches], LinearOperator],
    *,
    dataset_size: int | None,
    target: LimitTarget | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    num_samples: int | str | None = "auto",
    num_probes: int | str = "auto",
    num_iters: int | str = "auto",
    max_iters: int = 256,
    max_probes: int = AUTO_MAX_PROBES,
    max_samples: int = AUTO_MAX_SAMPLES,
    fallback_iters: int = 128,
    seed: int = 0,
    memory_budget_gb: float | None = None,
    stage: Stage | None = None,
) -> SpectrumEstimate:
    """The Hessian spectrum, with steps, probes and samples chosen for ``tolerance``.

    See the module docstring. ``draw(n)`` returns the seeded sample of ``n`` training samples
    (``None``: all of them; samples of different sizes must be nested, as
    ``curvature.sample_batches`` draws them) and ``make_operator(sample)`` the Hessian over a
    sample. ``target`` (the weights and epsilon of the prediction) sizes the run; without it
    the probes follow :func:`probes_for_bound`, ``num_iters="auto"`` runs ``fallback_iters``
    steps and no sample error is estimated. An explicit int for ``num_samples``,
    ``num_probes`` or ``num_iters`` fixes that quantity; a sub-sample still gets its error
    estimated when there is a target. ``num_samples`` larger than the data uses all of it,
    with a warning. ``stage(description, total)`` is a context giving a ``progress(done,
    total)`` callable for each stage (e.g. a progress bar).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> from lightning_prunelimit.curvature import HessianOperator, sample_batches
        >>> _ = torch.manual_seed(0)
        >>> model = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 3)).double()
        >>> data = TensorDataset(torch.randn(300, 4, dtype=torch.float64),
        ...                      torch.randint(0, 3, (300,)))
        >>> loader = DataLoader(data, batch_size=32)
        >>> target = LimitTarget([model[0].weight, model[2].weight], epsilon=0.01)
        >>> estimate = estimate_spectrum(
        ...     lambda n: sample_batches(loader, num_samples=n, seed=0),
        ...     lambda fixed: HessianOperator(model, nn.functional.cross_entropy, fixed.batches),
        ...     dataset_size=300, target=target, tolerance=0.05, num_samples=128)
        >>> estimate.num_samples, estimate.sample_error is not None
        (128, True)
    """
    if not (isinstance(tolerance, (int, float)) and 0 < float(tolerance) < 1):
        raise ValueError(
            f"tolerance must be a number in (0, 1) (the widest acceptable interval of the "
            f"predicted sparsity), got {tolerance!r}"
        )
    _check_choice("num_samples", num_samples, ("auto", None), 1)
    _check_choice("num_probes", num_probes, ("auto",), 1)
    _check_choice("num_iters", num_iters, ("auto",), 1)
    stage = stage or _silent
    if isinstance(num_samples, int) and dataset_size is not None and num_samples >= dataset_size:
        if num_samples > dataset_size:
            warnings.warn(
                f"num_samples={num_samples} is more than the {dataset_size} training samples: "
                "the Hessian uses all of them",
                UserWarning,
                stacklevel=2,
            )
        num_samples = None
    if num_samples == "auto":
        small = dataset_size is not None and dataset_size <= AUTO_ALL_SAMPLES
        size: int | None = None if small else AUTO_START_SAMPLES
    else:
        size = num_samples  # type: ignore[assignment]

    timings: dict[str, float] = {}

    def timed(name: str, started: float) -> None:
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - started

    while True:
        exhausted: list[str] = []
        started = time.perf_counter()
        fixed = draw(size)
        timed("sample", started)
        drawn = fixed.total_samples if fixed.total_samples is not None else fixed.num_samples
        whole = (
            size is None
            or (dataset_size is not None and drawn >= dataset_size)
            or (dataset_size is None and drawn < size)  # an iterable that ran out
        )
        sub_sample = not whole and target is not None
        quad_tol, probe_tol, sample_tol = tolerance_shares(float(tolerance), sub_sample=sub_sample)
        op = make_operator(fixed)
        dim = operator_dim(op)
        started = time.perf_counter()
        zero = find_zero_rows(op, seed=seed)
        timed("zero_rows", started)
        stop = None
        if num_iters == "auto":
            steps = max_iters if target is not None else fallback_iters
            stop = target.stop_rule(quad_tol) if target is not None else None
        else:
            steps = int(num_iters)
        steps = max(1, min(steps, dim - int(zero.sum())))
        first = num_probes if isinstance(num_probes, int) else 1
        if num_probes == "auto" and target is None:
            first = min(probes_for_bound(dim, probe_tol or 0.3 * tolerance), max_probes)

        def run(
            probes: int,
            first_probe: int,
            label: str,
            op: LinearOperator = op,
            zero: Tensor = zero,
            length: int = steps,
            stop: Callable[[Spectrum], bool] | None = stop,
        ) -> Spectrum:
            with stage(label, probes * length) as progress:
                return stochastic_lanczos_quadrature(
                    op,
                    num_iters=length,
                    num_probes=probes,
                    seed=seed,
                    first_probe=first_probe,
                    zero_rows=zero,
                    progress=progress,
                    memory_budget_gb=memory_budget_gb,
                    stop=stop,
                )

        started = time.perf_counter()
        spectrum = run(first, 0, "Hessian spectrum (Lanczos)")
        timed("lanczos", started)
        prediction = target.predict(spectrum) if target is not None else None
        quadrature_width, probe_width = (
            _part_widths(prediction) if prediction is not None else (0.0, 0.0)
        )
        steps_ran_out = (
            prediction is not None
            and stop is not None
            and quadrature_width > quad_tol
            and spectrum.num_iters >= steps
        )
        if steps_ran_out:
            exhausted.append(f"max_iters={max_iters}")
        # more probes or samples cannot meet the tolerance once the steps ran out: the
        # quadrature part alone is wider than its share, so spend nothing more on them
        if (
            num_probes == "auto"
            and prediction is not None
            and not steps_ran_out
            and probe_width > probe_tol
        ):
            wanted = math.ceil(first * (probe_width / probe_tol) ** 2)
            if wanted > max_probes:
                exhausted.append(f"max_probes={max_probes}")
            total = min(wanted, max_probes)
            if total > first:
                started = time.perf_counter()
                more = run(total - first, first, "Hessian spectrum (more probes)")
                spectrum = spectrum.joined(more)
                timed("probes", started)
                prediction = target.predict(spectrum)  # type: ignore[union-attr]
        error: SampleError | None = None
        if sub_sample:
            assert target is not None
            started = time.perf_counter()
            length = spectrum.lengths[0] if spectrum.lengths else spectrum.num_iters
            halves = [
                run(
                    1,
                    0,
                    f"Sample error (half {i + 1} of 2)",
                    make_operator(part),
                    length=length,
                    stop=None,
                )
                for i, part in enumerate(fixed.split_at(drawn // 2))
            ]
            error = estimate_sample_error(
                target.sparsity,
                spectrum,
                (halves[0], halves[1]),
                num_samples=drawn,
                dataset_size=dataset_size,
            )
            timed("sample_error", started)
        del op
        if (
            num_samples != "auto"
            or error is None
            or error.interval_width <= sample_tol
            or steps_ran_out
        ):
            break
        grown = 2 * drawn
        if grown > max_samples:
            exhausted.append(f"max_samples={max_samples}")
            break
        size = None if dataset_size is not None and grown >= dataset_size else grown
    return SpectrumEstimate(
        spectrum=spectrum,
        num_samples=drawn,
        dataset_size=dataset_size if dataset_size is not None else (drawn if whole else None),
        sample_error=error,
        timings=timings,
        exhausted=tuple(exhausted),
        fixed=fixed,
    )
