"""The actual pruning limit: the largest sparsity a model can be one-shot pruned to.

Pure PyTorch (no Lightning). :func:`actual_pruning_limit` prunes a model's weights globally by
magnitude to each sparsity of a coarse grid (in place, restored exactly afterwards), asks an
``evaluate`` callable for the accuracy and the loss there, then refines between the largest
passing grid point and the next one by bisection. ``evaluate`` is called once per mask set
with the sparsity and the keep-masks in force. With ``evaluate_refit`` a second curve is
measured at the same sparsities (e.g. after re-fitting the kept weights for a few masked steps,
the limit the theory speaks of) and refined by its own bisection.
:class:`SparsitySweepResult` holds the measured curves and the limits.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from lightning_prunelimit.pruning.masked_weights import MaskedWeights
from lightning_prunelimit.pruning.masks import num_to_prune

__all__ = [
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

#: The pass criteria: ``"accuracy"`` (drop at most ``tolerance``) or ``"loss"`` (rise at most).
METRICS: tuple[str, ...] = ("accuracy", "loss")

#: ``evaluate(sparsity, keep_masks) -> (accuracy, loss)``, called with the masks in force.
Evaluate = Callable[[float, Mapping[str, Tensor]], tuple[float, float]]


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
        actual_limit: the largest evaluated sparsity that passes: accuracy at least
            ``dense_accuracy - tolerance`` (``metric="accuracy"``) or loss at most
            ``dense_loss + tolerance`` (``metric="loss"``).
        dense_accuracy: the accuracy of the unpruned model.
        tolerance: the allowed drop (accuracy) or rise (loss).
        metric: ``"accuracy"`` or ``"loss"``, the criterion of ``actual_limit``.
        num_samples: the number of samples each point was evaluated on.
        split: ``"val"`` or ``"train"``: the data evaluated.
        refit_accuracies: accuracy at each sparsity after re-fitting the kept weights
            (``SparsitySweep(refit_steps=n)``); at sparsity 0 the dense model's. ``None``
            without a re-fit.
        refit_losses: mean loss at each sparsity after the re-fit; ``None`` without one.
        refit_actual_limit: the largest evaluated sparsity whose re-fitted model passes the
            same criterion against the same dense model; ``None`` without a re-fit.
        refit_steps: the number of re-fit steps at each sparsity (0: none).

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
    tolerance: float
    metric: str = "accuracy"
    num_samples: int = 0
    split: str = "val"
    refit_accuracies: tuple[float, ...] | None = None
    refit_losses: tuple[float, ...] | None = None
    refit_actual_limit: float | None = None
    refit_steps: int = 0

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
        if not self.sparsities or self.sparsities[0] != 0.0:
            raise ValueError("sparsities must start at 0.0 (the dense model)")

    @property
    def dense_loss(self) -> float:
        """The loss of the unpruned model (sparsity 0).

        Example:
            >>> SparsitySweepResult((0.0, 0.5), (0.9, 0.8), (0.3, 0.5), 0.5, 0.9, 0.1).dense_loss
            0.3
        """
        return self.losses[0]

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
            "tolerance": float(self.tolerance),
            "metric": str(self.metric),
            "num_samples": int(self.num_samples),
            "split": str(self.split),
            "refit_accuracies": _floats(self.refit_accuracies),
            "refit_losses": _floats(self.refit_losses),
            "refit_actual_limit": _float(self.refit_actual_limit),
            "refit_steps": int(self.refit_steps),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SparsitySweepResult:
        """Rebuild a result from :meth:`to_dict` output.

        Example:
            >>> d = SparsitySweepResult((0.0,), (1.0,), (0.1,), 0.0, 1.0, 0.0).to_dict()
            >>> SparsitySweepResult.from_dict(d).actual_limit
            0.0
        """
        return cls(
            sparsities=tuple(float(x) for x in data["sparsities"]),
            accuracies=tuple(float(x) for x in data["accuracies"]),
            losses=tuple(float(x) for x in data["losses"]),
            actual_limit=float(data["actual_limit"]),
            dense_accuracy=float(data["dense_accuracy"]),
            tolerance=float(data["tolerance"]),
            metric=str(data.get("metric", "accuracy")),
            num_samples=int(data.get("num_samples", 0)),
            split=str(data.get("split", "val")),
            refit_accuracies=_tuple(data.get("refit_accuracies")),
            refit_losses=_tuple(data.get("refit_losses")),
            refit_actual_limit=_float(data.get("refit_actual_limit")),
            refit_steps=int(data.get("refit_steps", 0)),
        )


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _floats(values: tuple[float, ...] | None) -> list[float] | None:
    return None if values is None else [float(x) for x in values]


def _tuple(values: Any) -> tuple[float, ...] | None:
    return None if values is None else tuple(float(x) for x in values)


def check_search_settings(metric: str, tolerance: float, refine_steps: int) -> None:
    """Raise unless ``metric`` is known, ``tolerance`` a finite number >= 0 and ``refine_steps``
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
    if isinstance(tolerance, bool) or not isinstance(tolerance, numbers.Real):
        raise TypeError(f"tolerance must be a number >= 0, got {tolerance!r}")
    if not (math.isfinite(float(tolerance)) and float(tolerance) >= 0):
        raise ValueError(f"tolerance must be finite and >= 0, got {tolerance}")
    if isinstance(refine_steps, bool) or not isinstance(refine_steps, int) or refine_steps < 0:
        raise ValueError(f"refine_steps must be an int >= 0, got {refine_steps!r}")


def actual_pruning_limit(
    model: nn.Module,
    evaluate: Evaluate,
    *,
    sparsities: Sequence[float] | None = None,
    metric: str = "accuracy",
    tolerance: float = 0.0,
    refine_steps: int = 8,
    parameter_names: Sequence[str] = ("weight",),
    parameters_to_prune: Sequence[tuple[nn.Module, str]] = (),
    progress: Callable[[int, int], None] | None = None,
    evaluate_refit: Evaluate | None = None,
) -> SparsitySweepResult:
    """Measure the largest sparsity whose one-shot pruned model still passes.

    The prunable weights (Linear/Conv weights by default, see ``prunable_parameters``) are
    globally magnitude-pruned in place to each sparsity of the grid, ``evaluate(sparsity,
    keep_masks)`` is called, and the search is refined by bisection between the largest
    passing grid point and the next one (at most ``refine_steps`` more calls; it stops early
    when no model is left between them). The model's weights are restored exactly afterwards,
    also when ``evaluate`` raises.

    A sparsity *passes* when its accuracy is at least the dense accuracy minus ``tolerance``
    (``metric="accuracy"``), or its loss at most the dense loss plus ``tolerance``
    (``metric="loss"``). The result's ``num_samples`` and ``split`` are left at their defaults
    (the data is ``evaluate``'s business); set them with ``dataclasses.replace``.

    Args:
        model: the trained model.
        evaluate: ``(sparsity, keep_masks) -> (accuracy, loss)`` at the weights in force.
        sparsities: the coarse grid (0 is always added); default ``DEFAULT_SPARSITIES``.
        metric: ``"accuracy"`` or ``"loss"``.
        tolerance: allowed accuracy drop (or loss rise), >= 0.
        refine_steps: bisection steps after the grid.
        parameter_names: parameter names taken from each Linear/Conv module.
        parameters_to_prune: explicit ``(module, name)`` pairs to prune.
        progress: called as ``progress(done, total)`` after each evaluation.
        evaluate_refit: a second ``(sparsity, keep_masks) -> (accuracy, loss)``, called at
            every measured sparsity but 0 after ``evaluate`` (it must leave the weights as it
            found them, e.g. re-fit under ``restore_on_exit``); its curve gets its own
            bisection (``refine_steps`` more points, measured with both) and its limit is
            ``refit_actual_limit``.

    Raises:
        ValueError: for bad settings, for ``metric="accuracy"`` when the dense accuracy is NaN
            (not a classifier), and when the dense loss is not finite.

    Example:
        >>> import torch
        >>> model = torch.nn.Linear(4, 1, bias=False)
        >>> with torch.no_grad():
        ...     _ = model.weight.copy_(torch.tensor([[0.01, 0.02, 1.0, 2.0]]))
        >>> def evaluate(sparsity, masks):  # "loss": how far the weights' sum moved
        ...     return float("nan"), abs(float(model.weight.detach().sum()) - 3.03)
        >>> result = actual_pruning_limit(model, evaluate, metric="loss", tolerance=0.05)
        >>> result.actual_limit, result.sparsities[:3]
        (0.6, (0.0, 0.1, 0.2))
    """
    grid = check_sparsities(sparsities)
    check_search_settings(metric, tolerance, refine_steps)
    if not callable(evaluate):
        raise TypeError(f"evaluate must be callable, got {type(evaluate).__name__}")

    if evaluate_refit is not None and not callable(evaluate_refit):
        raise TypeError(f"evaluate_refit must be callable, got {type(evaluate_refit).__name__}")
    points: dict[float, tuple[float, float]] = {}
    refit_points: dict[float, tuple[float, float]] = {}
    total = len(grid) + refine_steps * (1 if evaluate_refit is None else 2)
    with MaskedWeights(model, parameter_names, parameters_to_prune) as weights:

        def measure(sparsity: float) -> None:
            masks = weights.prune(sparsity)
            accuracy, loss = evaluate(sparsity, masks)
            points[sparsity] = (float(accuracy), float(loss))
            if evaluate_refit is not None:
                if sparsity == 0.0:  # nothing pruned: the dense model is its own re-fit
                    refit_points[sparsity] = points[sparsity]
                else:
                    accuracy, loss = evaluate_refit(sparsity, masks)
                    refit_points[sparsity] = (float(accuracy), float(loss))
            if progress is not None:
                progress(len(points), total)

        for sparsity in grid:
            measure(sparsity)
        dense_accuracy, dense_loss = points[0.0]
        if metric == "accuracy" and math.isnan(dense_accuracy):
            raise ValueError(
                "metric='accuracy' needs class scores (batch, classes) and integer targets "
                "(batch,): use metric='loss' for other outputs"
            )
        if not math.isfinite(dense_loss):
            raise ValueError(
                f"the dense model's loss is {dense_loss}: the trained model or its data has "
                "non-finite values, so no sparsity can be compared with it (check the learning "
                "rate and the inputs)"
            )

        def passes(sparsity: float, table: Mapping[float, tuple[float, float]]) -> bool:
            accuracy, loss = table[sparsity]
            if metric == "loss":
                return loss <= dense_loss + tolerance
            return accuracy >= dense_accuracy - tolerance

        def search(table: dict[float, tuple[float, float]]) -> None:
            low = max(s for s in table if passes(s, table))
            above = [s for s in table if s > low]
            if not above:
                return
            high = min(above)
            for _ in range(refine_steps):
                middle = (low + high) / 2
                counts = {num_to_prune(s, weights.num_weights) for s in (low, middle, high)}
                if len(counts) < 3:  # no model between low and high is left to try
                    break
                measure(middle)
                low, high = (middle, high) if passes(middle, table) else (low, middle)

        search(points)
        if evaluate_refit is not None:
            search(refit_points)
    # The largest passing evaluated sparsity of each curve (the re-fit search adds points).
    low = max(s for s in points if passes(s, points))
    refit_low = None
    if evaluate_refit is not None:
        refit_low = max(s for s in refit_points if passes(s, refit_points))
    ordered = sorted(points)
    return SparsitySweepResult(
        sparsities=tuple(ordered),
        accuracies=tuple(points[s][0] for s in ordered),
        losses=tuple(points[s][1] for s in ordered),
        actual_limit=low,
        dense_accuracy=dense_accuracy,
        tolerance=float(tolerance),
        metric=metric,
        refit_accuracies=tuple(refit_points[s][0] for s in ordered) if refit_points else None,
        refit_losses=tuple(refit_points[s][1] for s in ordered) if refit_points else None,
        refit_actual_limit=refit_low,
    )
