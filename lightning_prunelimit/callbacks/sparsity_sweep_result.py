"""The measured accuracy-against-sparsity curve and the actual pruning limit it shows."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["SparsitySweepResult"]


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
        if self.metric not in ("accuracy", "loss"):
            raise ValueError(f"metric must be 'accuracy' or 'loss', got {self.metric!r}")
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
