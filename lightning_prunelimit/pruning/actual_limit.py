"""The actual pruning limit: the largest sparsity a model can be one-shot pruned to.

Pure PyTorch (no Lightning). :func:`actual_pruning_limit` prunes a model's weights globally by
magnitude to each sparsity of a coarse grid (in place, restored exactly afterwards), asks an
``evaluate`` callable for the accuracy and the loss there, then refines between the largest
passing grid point and the next one by bisection. ``evaluate`` is called once per mask set
with the sparsity and the keep-masks in force. When it returns a
:class:`~lightning_prunelimit.pruning.SampleEvaluation` (each sample's correctness and loss),
the limit also gets its interval (a bootstrap over the evaluation samples, no further model
evaluations) and the ``"paired_test"`` criterion becomes available. With ``evaluate_refit`` a
second curve is measured (e.g. after re-fitting the kept weights for a few masked steps, the
limit the theory speaks of), only at the sparsities its own search needs.
:class:`SparsitySweepResult` holds the measured curves and the limits.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from lightning_prunelimit.pruning.evaluation import SampleEvaluation
from lightning_prunelimit.pruning.limit_statistics import (
    CRITERIA,
    DEFAULT_CONFIDENCE,
    DEFAULT_NUM_BOOTSTRAP,
    DEFAULT_SIGNIFICANCE,
    bootstrap_limit_interval,
    check_level,
    pass_table,
)
from lightning_prunelimit.pruning.masked_weights import MaskedWeights
from lightning_prunelimit.pruning.masks import num_to_prune

__all__ = [
    "CRITERIA",
    "DEFAULT_SPARSITIES",
    "METRICS",
    "SparsitySweepResult",
    "actual_pruning_limit",
    "check_search_settings",
    "check_sparsities",
]

#: The coarse grid of sparsities evaluated before refining.
DEFAULT_SPARSITIES: tuple[float, ...] = (
    0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99,
)  # fmt: skip

#: What is compared: ``"accuracy"`` (drop at most ``max_drop``) or ``"loss"`` (rise at most).
METRICS: tuple[str, ...] = ("accuracy", "loss")

#: ``evaluate(sparsity, keep_masks) -> (accuracy, loss)`` or a ``SampleEvaluation``, called
#: with the masks in force.
Evaluate = Callable[[float, Mapping[str, Tensor]], "tuple[float, float] | SampleEvaluation"]


def check_sparsities(sparsities: Sequence[float] | None) -> tuple[float, ...]:
    """Validate a grid of sparsities; return it sorted, deduplicated, with 0 (the dense model).

    ``None`` gives ``DEFAULT_SPARSITIES``.

    Example:
        >>> check_sparsities([0.9, 0.5, 0.5])
        (0.0, 0.5, 0.9)
    """
    if sparsities is None:
        return DEFAULT_SPARSITIES
    values = []
    for s in sparsities:
        if isinstance(s, bool) or not isinstance(s, numbers.Real) or not 0.0 <= float(s) < 1.0:
            raise ValueError(
                f"sparsities must be numbers in [0, 1), got {s!r}: pass fractions of weights "
                "to remove, e.g. (0.5, 0.9)"
            )
        values.append(float(s))
    if not values:
        raise ValueError("sparsities is empty: pass at least one sparsity, or None")
    return tuple(sorted(set(values) | {0.0}))


@dataclass(frozen=True)
class SparsitySweepResult:
    """Accuracy and loss of one-shot pruned copies of a model, sorted by sparsity.

    Attributes:
        sparsities: the evaluated sparsities, ascending, starting at 0 (the dense model).
        accuracies: top-1 accuracy at each sparsity (NaN when the outputs are not class
            scores).
        losses: mean loss at each sparsity.
        actual_limit: the largest evaluated sparsity that passes ``criterion``.
        dense_accuracy: the accuracy of the unpruned model.
        max_drop: the allowed accuracy drop (or loss rise) from the dense model.
        metric: ``"accuracy"`` or ``"loss"``: what is compared.
        num_samples: the number of samples each point was evaluated on.
        split: ``"val"`` or ``"train"``: the data evaluated.
        refit_accuracies: accuracy at each sparsity after re-fitting the kept weights
            (``SparsitySweep(refit_steps=n)``); at sparsity 0 the dense model's, NaN where the
            re-fit search did not need a re-fit. ``None`` without a re-fit.
        refit_losses: mean loss at each sparsity after the re-fit (NaN where none was made);
            ``None`` without one.
        refit_actual_limit: the largest re-fitted sparsity that passes the same criterion
            against the same dense model; ``None`` without a re-fit.
        refit_steps: the number of re-fit steps at each sparsity (0: none).
        criterion: ``"drop"`` (the paper's: the mean accuracy drop is at most ``max_drop``)
            or ``"paired_test"`` (not significantly worse than dense: a one-sided paired test
            on the same samples at level ``significance``); see
            :mod:`~lightning_prunelimit.pruning.limit_statistics`.
        significance: the level of the paired test.
        confidence: the level of the intervals.
        actual_limit_interval: ``(lo, hi)``: where the same search on a fresh evaluation
            sample of the same size would put ``actual_limit`` (a bootstrap over the samples,
            see :func:`~lightning_prunelimit.pruning.bootstrap_limit_interval`); ``None``
            without per-sample evaluations.
        refit_actual_limit_interval: the same for ``refit_actual_limit``.
        drop_limit: the limit under the ``"drop"`` criterion (``actual_limit`` when that is
            the criterion).
        paired_test_limit: the limit under the ``"paired_test"`` criterion; ``None`` without
            per-sample evaluations.
        refit_drop_limit: ``drop_limit`` of the re-fitted curve.
        refit_paired_test_limit: ``paired_test_limit`` of the re-fitted curve.

    Example:
        >>> result = SparsitySweepResult((0.0, 0.5), (0.9, 0.8), (0.3, 0.5), 0.5, 0.9, 0.1)
        >>> SparsitySweepResult.from_dict(result.to_dict()) == result
        True
    """

    sparsities: tuple[float, ...]
    accuracies: tuple[float, ...]
    losses: tuple[float, ...]
    actual_limit: float
    dense_accuracy: float
    max_drop: float
    metric: str = "accuracy"
    num_samples: int = 0
    split: str = "val"
    refit_accuracies: tuple[float, ...] | None = None
    refit_losses: tuple[float, ...] | None = None
    refit_actual_limit: float | None = None
    refit_steps: int = 0
    criterion: str = "drop"
    significance: float = DEFAULT_SIGNIFICANCE
    confidence: float = DEFAULT_CONFIDENCE
    actual_limit_interval: tuple[float, float] | None = None
    refit_actual_limit_interval: tuple[float, float] | None = None
    drop_limit: float | None = None
    paired_test_limit: float | None = None
    refit_drop_limit: float | None = None
    refit_paired_test_limit: float | None = None

    def __post_init__(self) -> None:
        lengths = {len(self.sparsities), len(self.accuracies), len(self.losses)}
        refit = (self.refit_accuracies, self.refit_losses, self.refit_actual_limit)
        if any(x is None for x in refit) and not all(x is None for x in refit):
            raise ValueError(
                "refit_accuracies, refit_losses and refit_actual_limit go together: give all "
                "three or none"
            )
        if self.refit_accuracies is not None and self.refit_losses is not None:
            lengths |= {len(self.refit_accuracies), len(self.refit_losses)}
        if len(lengths) != 1:
            raise ValueError(
                f"sparsities, accuracies and losses must have the same length, got {lengths}"
            )
        if list(self.sparsities) != sorted(self.sparsities):
            raise ValueError("sparsities must be sorted ascending")
        if self.metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {self.metric!r}")
        if self.criterion not in CRITERIA:
            raise ValueError(f"criterion must be one of {CRITERIA}, got {self.criterion!r}")
        if not self.sparsities or self.sparsities[0] != 0.0:
            raise ValueError("sparsities must start at 0.0 (the dense model)")
        for name in ("actual_limit_interval", "refit_actual_limit_interval"):
            interval = getattr(self, name)
            if interval is not None and not (
                len(interval) == 2 and float(interval[0]) <= float(interval[1])
            ):
                raise ValueError(f"{name} must be a pair (lo, hi) with lo <= hi, got {interval}")

    @property
    def dense_loss(self) -> float:
        """The loss of the unpruned model (sparsity 0).

        Example:
            >>> SparsitySweepResult((0.0, 0.5), (0.9, 0.8), (0.3, 0.5), 0.5, 0.9, 0.1).dense_loss
            0.3
        """
        return self.losses[0]

    @property
    def tolerance(self) -> float:
        """Deprecated name of :attr:`max_drop` (an accuracy drop, not an interval width).

        Example:
            >>> import warnings
            >>> with warnings.catch_warnings():
            ...     warnings.simplefilter("ignore")
            ...     SparsitySweepResult((0.0,), (1.0,), (0.1,), 0.0, 1.0, 0.02).tolerance
            0.02
        """
        warnings.warn(
            "SparsitySweepResult.tolerance is renamed max_drop (the allowed accuracy drop); "
            "the old name will be removed",
            FutureWarning,
            stacklevel=2,
        )
        return self.max_drop

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-friendly dictionary (floats, ints, strings and lists).

        Example:
            >>> SparsitySweepResult((0.0,), (1.0,), (0.1,), 0.0, 1.0, 0.0).to_dict()["losses"]
            [0.1]
        """
        return {
            "sparsities": [float(x) for x in self.sparsities],
            "accuracies": [float(x) for x in self.accuracies],
            "losses": [float(x) for x in self.losses],
            "actual_limit": float(self.actual_limit),
            "dense_accuracy": float(self.dense_accuracy),
            "max_drop": float(self.max_drop),
            "metric": str(self.metric),
            "num_samples": int(self.num_samples),
            "split": str(self.split),
            "refit_accuracies": _floats(self.refit_accuracies),
            "refit_losses": _floats(self.refit_losses),
            "refit_actual_limit": _float(self.refit_actual_limit),
            "refit_steps": int(self.refit_steps),
            "criterion": str(self.criterion),
            "significance": float(self.significance),
            "confidence": float(self.confidence),
            "actual_limit_interval": _floats(self.actual_limit_interval),
            "refit_actual_limit_interval": _floats(self.refit_actual_limit_interval),
            "drop_limit": _float(self.drop_limit),
            "paired_test_limit": _float(self.paired_test_limit),
            "refit_drop_limit": _float(self.refit_drop_limit),
            "refit_paired_test_limit": _float(self.refit_paired_test_limit),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SparsitySweepResult:
        """Rebuild a result from :meth:`to_dict` output (also the older ``tolerance`` key).

        Example:
            >>> d = SparsitySweepResult((0.0,), (1.0,), (0.1,), 0.0, 1.0, 0.0).to_dict()
            >>> SparsitySweepResult.from_dict(d).actual_limit
            0.0
        """
        max_drop = data["max_drop"] if "max_drop" in data else data["tolerance"]
        return cls(
            sparsities=tuple(float(x) for x in data["sparsities"]),
            accuracies=tuple(float(x) for x in data["accuracies"]),
            losses=tuple(float(x) for x in data["losses"]),
            actual_limit=float(data["actual_limit"]),
            dense_accuracy=float(data["dense_accuracy"]),
            max_drop=float(max_drop),
            metric=str(data.get("metric", "accuracy")),
            num_samples=int(data.get("num_samples", 0)),
            split=str(data.get("split", "val")),
            refit_accuracies=_tuple(data.get("refit_accuracies")),
            refit_losses=_tuple(data.get("refit_losses")),
            refit_actual_limit=_float(data.get("refit_actual_limit")),
            refit_steps=int(data.get("refit_steps", 0)),
            criterion=str(data.get("criterion", "drop")),
            significance=float(data.get("significance", DEFAULT_SIGNIFICANCE)),
            confidence=float(data.get("confidence", DEFAULT_CONFIDENCE)),
            actual_limit_interval=_pair(data.get("actual_limit_interval")),
            refit_actual_limit_interval=_pair(data.get("refit_actual_limit_interval")),
            drop_limit=_float(data.get("drop_limit")),
            paired_test_limit=_float(data.get("paired_test_limit")),
            refit_drop_limit=_float(data.get("refit_drop_limit")),
            refit_paired_test_limit=_float(data.get("refit_paired_test_limit")),
        )


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _floats(values: Sequence[float] | None) -> list[float] | None:
    return None if values is None else [float(x) for x in values]


def _tuple(values: Any) -> tuple[float, ...] | None:
    if values is None:
        return None
    return tuple(math.nan if x is None else float(x) for x in values)


def _pair(values: Any) -> tuple[float, float] | None:
    return None if values is None else (float(values[0]), float(values[1]))


def check_search_settings(metric: str, max_drop: float, refine_steps: int) -> None:
    """Raise unless ``metric`` is known, ``max_drop`` a finite number >= 0 and ``refine_steps``
    an int >= 0 (the settings of :func:`actual_pruning_limit`).

    Example:
        >>> check_search_settings("accuracy", 0.01, 8)
        >>> check_search_settings("top5", 0.01, 8)
        Traceback (most recent call last):
        ...
        ValueError: metric must be one of ('accuracy', 'loss'), got 'top5'
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    if isinstance(max_drop, bool) or not isinstance(max_drop, numbers.Real):
        raise TypeError(f"max_drop must be a number >= 0, got {max_drop!r}")
    if not (math.isfinite(float(max_drop)) and float(max_drop) >= 0):
        raise ValueError(f"max_drop must be finite and >= 0, got {max_drop}")
    if isinstance(refine_steps, bool) or not isinstance(refine_steps, int) or refine_steps < 0:
        raise ValueError(f"refine_steps must be an int >= 0, got {refine_steps!r}")


def resolve_max_drop(max_drop: float | None, tolerance: float | None, owner: str) -> float:
    """``max_drop``, or the deprecated ``tolerance`` keyword (with a ``FutureWarning``).

    Example:
        >>> resolve_max_drop(None, None, "SparsitySweep")
        0.0
    """
    if tolerance is not None:
        if max_drop is not None:
            raise ValueError(
                f"{owner}: pass max_drop only (tolerance is its deprecated name), got both"
            )
        warnings.warn(
            f"{owner}(tolerance=...) is renamed max_drop (the allowed accuracy drop; "
            "HessianSpectrum's tolerance is an interval width): pass max_drop",
            FutureWarning,
            stacklevel=3,
        )
        return tolerance
    return 0.0 if max_drop is None else max_drop


class _Point(NamedTuple):
    accuracy: float
    loss: float
    correct: Tensor | None
    losses: Tensor | None


def _point(value: Any) -> _Point:
    if isinstance(value, SampleEvaluation):
        return _Point(float(value.accuracy), float(value.loss), value.correct, value.losses)
    accuracy, loss = value
    return _Point(float(accuracy), float(loss), None, None)


def actual_pruning_limit(
    model: nn.Module,
    evaluate: Evaluate,
    *,
    sparsities: Sequence[float] | None = None,
    metric: str = "accuracy",
    max_drop: float | None = None,
    refine_steps: int = 8,
    parameter_names: Sequence[str] = ("weight",),
    parameters_to_prune: Sequence[tuple[nn.Module, str]] = (),
    progress: Callable[[int, int], None] | None = None,
    evaluate_refit: Evaluate | None = None,
    criterion: str = "drop",
    significance: float = DEFAULT_SIGNIFICANCE,
    confidence: float = DEFAULT_CONFIDENCE,
    num_bootstrap: int = DEFAULT_NUM_BOOTSTRAP,
    seed: int = 0,
    tolerance: float | None = None,
) -> SparsitySweepResult:
    """Measure the largest sparsity whose one-shot pruned model still passes.

    The prunable weights (Linear/Conv weights by default, see ``prunable_parameters``) are
    globally magnitude-pruned in place to each sparsity of the grid, ``evaluate(sparsity,
    keep_masks)`` is called, and the search is refined by bisection between the largest
    passing grid point and the next one (at most ``refine_steps`` more calls; it stops early
    when no model is left between them). The model's weights are restored exactly afterwards,
    also when ``evaluate`` raises.

    **Criteria.** ``criterion="drop"`` (default, the paper's): a sparsity passes when its
    accuracy is at least the dense accuracy minus ``max_drop`` (``metric="accuracy"``), or
    its loss at most the dense loss plus ``max_drop`` (``metric="loss"``).
    ``criterion="paired_test"``: it passes unless a one-sided paired test on the same samples
    shows it worse than dense by more than ``max_drop`` at level ``significance``; this needs
    ``evaluate`` to return a :class:`~lightning_prunelimit.pruning.SampleEvaluation`. With
    per-sample evaluations both criteria's limits are reported (``drop_limit``,
    ``paired_test_limit``), each refined by its own bisection.

    **Interval.** With per-sample evaluations, ``actual_limit_interval`` is the range where
    the same search on a fresh evaluation sample of the same size would put the limit, at
    level ``confidence`` (``num_bootstrap`` resamples of the samples, seeded by ``seed``; see
    :func:`~lightning_prunelimit.pruning.bootstrap_limit_interval`). No model is evaluated
    for it. ``num_bootstrap=0`` skips it.

    **Re-fit.** ``evaluate_refit`` is a second ``(sparsity, keep_masks) -> evaluation`` that
    must leave the weights as it found them (e.g. re-fit under ``restore_on_exit``); it is
    called only where its own search needs it (after ``evaluate`` at the same sparsity, so
    both curves share their sparsities): a binary search over the grid (starting at the
    largest grid point at or below the one-shot limit), then ``refine_steps`` bisection steps
    between the largest passing grid point and the next one. This assumes the re-fitted curve
    passes below its limit and fails above it; its limit is the largest re-fitted sparsity
    that passes (``refit_actual_limit``). ``refit_accuracies`` is NaN at sparsities that were
    not re-fitted.

    The result's ``num_samples`` and ``split`` are left at their defaults (the data is
    ``evaluate``'s business); set them with ``dataclasses.replace``.

    Args:
        model: the trained model.
        evaluate: ``(sparsity, keep_masks) -> (accuracy, loss)`` or a ``SampleEvaluation``,
            at the weights in force.
        sparsities: the coarse grid (0 is always added); default ``DEFAULT_SPARSITIES``.
        metric: ``"accuracy"`` or ``"loss"``.
        max_drop: allowed accuracy drop (or loss rise), >= 0; default 0.
        refine_steps: bisection steps after the grid.
        parameter_names: parameter names taken from each Linear/Conv module.
        parameters_to_prune: explicit ``(module, name)`` pairs to prune.
        progress: called as ``progress(done, total)`` after each evaluation (``total`` is an
            upper bound).
        evaluate_refit: the re-fitted evaluation, see above.
        criterion: ``"drop"`` or ``"paired_test"``.
        significance: level of the paired test, in (0, 1).
        confidence: level of the intervals, in (0, 1).
        num_bootstrap: resamples of the interval (0: no interval).
        seed: seed of the resampling.
        tolerance: deprecated name of ``max_drop`` (``FutureWarning``).

    Raises:
        ValueError: for bad settings, for ``metric="accuracy"`` when the dense accuracy is NaN
            (not a classifier), when the dense loss is not finite, and for
            ``criterion="paired_test"`` without per-sample evaluations.

    Example:
        >>> import torch
        >>> model = torch.nn.Linear(4, 1, bias=False)
        >>> with torch.no_grad():
        ...     _ = model.weight.copy_(torch.tensor([[0.01, 0.02, 1.0, 2.0]]))
        >>> def evaluate(sparsity, masks):  # "loss": how far the weights' sum moved
        ...     return float("nan"), abs(float(model.weight.detach().sum()) - 3.03)
        >>> result = actual_pruning_limit(model, evaluate, metric="loss", max_drop=0.05)
        >>> result.actual_limit, result.sparsities[:3]
        (0.6, (0.0, 0.1, 0.2))
    """
    drop = resolve_max_drop(max_drop, tolerance, "actual_pruning_limit")
    grid = check_sparsities(sparsities)
    check_search_settings(metric, drop, refine_steps)
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
    check_level("significance", significance)
    check_level("confidence", confidence)
    if isinstance(num_bootstrap, bool) or not isinstance(num_bootstrap, int) or num_bootstrap < 0:
        raise ValueError(f"num_bootstrap must be an int >= 0, got {num_bootstrap!r}")
    if not callable(evaluate):
        raise TypeError(f"evaluate must be callable, got {type(evaluate).__name__}")
    if evaluate_refit is not None and not callable(evaluate_refit):
        raise TypeError(f"evaluate_refit must be callable, got {type(evaluate_refit).__name__}")

    points: dict[float, _Point] = {}
    refit_points: dict[float, _Point] = {}
    total = len(grid) + 2 * refine_steps
    if evaluate_refit is not None:
        total += math.ceil(math.log2(len(grid) + 1)) + 1 + refine_steps
    calls = [0]

    def tick() -> None:
        calls[0] += 1
        if progress is not None:
            progress(calls[0], total)

    with MaskedWeights(model, parameter_names, parameters_to_prune) as weights:

        def measure(sparsity: float) -> None:
            if sparsity not in points:
                points[sparsity] = _point(evaluate(sparsity, weights.prune(sparsity)))
                tick()

        def measure_refit(sparsity: float) -> None:
            if sparsity not in refit_points:
                assert evaluate_refit is not None
                measure(sparsity)  # both curves share their sparsities
                refit_points[sparsity] = _point(evaluate_refit(sparsity, weights.prune(sparsity)))
                tick()

        for sparsity in grid:
            measure(sparsity)
        dense = points[0.0]
        if metric == "accuracy" and math.isnan(dense.accuracy):
            raise ValueError(
                "metric='accuracy' needs class scores (batch, classes) and integer targets "
                "(batch,): use metric='loss' for other outputs"
            )
        if not math.isfinite(dense.loss):
            raise ValueError(
                f"the dense model's loss is {dense.loss}: the trained model or its data has "
                "non-finite values, so no sparsity can be compared with it (check the learning "
                "rate and the inputs)"
            )
        per_sample = all(_has_samples(p, metric) for p in points.values())
        if criterion == "paired_test" and not per_sample:
            raise ValueError(
                "criterion='paired_test' compares pruned and dense sample by sample: evaluate "
                "must return a SampleEvaluation (see evaluate_samples), not (accuracy, loss)"
            )

        def passes(table: Mapping[float, _Point], sparsity: float, rule: str) -> bool:
            point = table[sparsity]
            if rule == "paired_test":
                if not _has_samples(point, metric):
                    raise ValueError(
                        "criterion='paired_test' needs per-sample evaluations at every "
                        f"sparsity, but sparsity {sparsity} returned (accuracy, loss)"
                    )
                column = _drops(dense, [point], metric)
                return bool(
                    pass_table(column, max_drop=drop, criterion=rule, significance=significance)
                )
            if metric == "loss":
                return point.loss <= dense.loss + drop
            return point.accuracy >= dense.accuracy - drop

        def limit(table: Mapping[float, _Point], rule: str) -> float:
            return max(s for s in table if passes(table, s, rule))

        def bisect(
            low: float, high: float, table: dict[float, _Point], rule: str, run: Callable
        ) -> None:
            for _ in range(refine_steps):
                middle = (low + high) / 2
                counts = {num_to_prune(s, weights.num_weights) for s in (low, middle, high)}
                if len(counts) < 3:  # no model between low and high is left to try
                    break
                run(middle)
                low, high = (middle, high) if passes(table, middle, rule) else (low, middle)

        rules = [criterion] + [r for r in CRITERIA if r != criterion and per_sample]
        for rule in rules:  # the criterion first; the other one refines on the same points
            low = max(s for s in grid if passes(points, s, rule))
            above = [s for s in grid if s > low]
            if above:
                bisect(low, min(above), points, rule, measure)

        if evaluate_refit is not None:
            refit_points[0.0] = dense  # nothing pruned: the dense model is its own re-fit
            one_shot = limit(points, criterion)
            index = [s for s in grid if s <= one_shot]
            low_i, high_i = 0, len(grid)  # grid[low_i] passes; grid[high_i:] fail or are absent
            start = len(index) - 1
            while high_i - low_i > 1:
                middle_i = start if low_i < start < high_i else (low_i + high_i) // 2
                measure_refit(grid[middle_i])
                if passes(refit_points, grid[middle_i], criterion):
                    low_i = middle_i
                else:
                    high_i = middle_i
            if high_i < len(grid):
                bisect(grid[low_i], grid[high_i], refit_points, criterion, measure_refit)

    ordered = sorted(points)
    limits = {rule: limit(points, rule) for rule in rules}
    refit_samples = all(_has_samples(p, metric) for p in refit_points.values())
    refit_rules = rules if refit_samples else [criterion]
    refit_limits = {rule: limit(refit_points, rule) for rule in refit_rules} if refit_points else {}
    interval = refit_interval = None
    if per_sample and num_bootstrap:
        settings = {
            "max_drop": drop, "criterion": criterion, "significance": significance,
            "confidence": confidence, "num_bootstrap": num_bootstrap, "seed": seed,
        }  # fmt: skip
        interval = _interval(dense, points, limits[criterion], metric, settings)
        if refit_points and refit_samples:
            refit_interval = _interval(
                dense, refit_points, refit_limits[criterion], metric, settings
            )
    nan = math.nan
    return SparsitySweepResult(
        sparsities=tuple(ordered),
        accuracies=tuple(points[s].accuracy for s in ordered),
        losses=tuple(points[s].loss for s in ordered),
        actual_limit=limits[criterion],
        dense_accuracy=dense.accuracy,
        max_drop=float(drop),
        metric=metric,
        refit_accuracies=(
            tuple(refit_points[s].accuracy if s in refit_points else nan for s in ordered)
            if refit_points
            else None
        ),
        refit_losses=(
            tuple(refit_points[s].loss if s in refit_points else nan for s in ordered)
            if refit_points
            else None
        ),
        refit_actual_limit=refit_limits.get(criterion),
        criterion=criterion,
        significance=float(significance),
        confidence=float(confidence),
        actual_limit_interval=interval,
        refit_actual_limit_interval=refit_interval,
        drop_limit=limits.get("drop"),
        paired_test_limit=limits.get("paired_test"),
        refit_drop_limit=refit_limits.get("drop"),
        refit_paired_test_limit=refit_limits.get("paired_test"),
    )


def _has_samples(point: _Point, metric: str) -> bool:
    return point.losses is not None and (metric == "loss" or point.correct is not None)


def _drops(dense: _Point, points: Sequence[_Point], metric: str) -> Tensor:
    """``(n, k)`` per-sample drops of ``points`` from ``dense``."""
    if metric == "loss":
        assert dense.losses is not None
        columns = [p.losses - dense.losses for p in points if p.losses is not None]
    else:
        assert dense.correct is not None
        columns = [dense.correct - p.correct for p in points if p.correct is not None]
    if len(columns) != len(points) or any(c.shape != columns[0].shape for c in columns):
        raise ValueError(
            "every evaluation must cover the same samples: evaluate returned per-sample "
            "vectors of different lengths"
        )
    return torch.stack([c.to(torch.float64) for c in columns], dim=1)


def _interval(
    dense: _Point,
    table: Mapping[float, _Point],
    limit: float,
    metric: str,
    settings: Mapping[str, Any],
) -> tuple[float, float]:
    ordered = sorted(table)
    drops = _drops(dense, [table[s] for s in ordered], metric)
    return bootstrap_limit_interval(ordered, drops, limit, **settings)
