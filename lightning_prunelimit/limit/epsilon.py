"""The loss tolerance epsilon: how much loss increase counts as "the same loss".

The reference pipeline uses the spread of the training loss over mini-batches: the population
standard deviation of the batch-mean losses at the trained weights. A loss change smaller than
that is indistinguishable from batch-to-batch noise.
"""

from __future__ import annotations

import math
import numbers
import statistics
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn

from lightning_prunelimit.curvature.evaluation_mode import evaluation_mode
from lightning_prunelimit.curvature.move_batch import move_batch

__all__ = ["EPSILON_METHODS", "batch_loss_std", "check_epsilon", "resolve_epsilon"]

#: Names accepted by ``resolve_epsilon`` in place of a number.
EPSILON_METHODS: tuple[str, ...] = ("batch_loss_std",)


def check_epsilon(epsilon: float | str) -> float | str:
    """Validate a loss tolerance: a positive finite number, or a method name such as
    ``"batch_loss_std"`` (returned unchanged, to be resolved by :func:`resolve_epsilon`).

    Example:
        >>> check_epsilon(0.05), check_epsilon("batch_loss_std")
        (0.05, 'batch_loss_std')
    """
    if isinstance(epsilon, str):
        if epsilon not in EPSILON_METHODS:
            raise ValueError(
                f"unknown epsilon {epsilon!r}: epsilon must be a positive number or one of "
                f"{EPSILON_METHODS}"
            )
        return epsilon
    if isinstance(epsilon, bool) or not isinstance(epsilon, numbers.Real):
        raise TypeError(
            f"epsilon must be a positive number or one of {EPSILON_METHODS}, got {epsilon!r}"
        )
    value = float(epsilon)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(
            f"epsilon must be positive and finite, got {value}: pass the loss tolerance, e.g. "
            "0.01, or 'batch_loss_std'"
        )
    return value


def _batch_losses(
    model: nn.Module, loss_fn: Callable[[Any, Any], Tensor], batches: Iterable[Any]
) -> list[float]:
    """Batch-mean losses at the current weights, eval mode, no grad; model restored after."""
    first = next(iter(model.parameters()), None)
    device = first.device if first is not None else torch.device("cpu")
    dtype = first.dtype if first is not None and first.is_floating_point() else None
    losses: list[float] = []
    with evaluation_mode(model), torch.no_grad():
        for index, batch in enumerate(batches):
            if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
                raise ValueError(
                    f"batch {index} is not an (inputs, targets) pair: pass batches as an "
                    "iterable of (inputs, targets)"
                )
            inputs = move_batch(batch[0], device, dtype)
            targets = move_batch(batch[1], device, dtype)
            loss = loss_fn(model(inputs), targets)
            if not isinstance(loss, Tensor) or loss.numel() != 1:
                raise ValueError(
                    f"loss_fn must return a scalar tensor (the batch-mean loss), got {loss!r} "
                    f"on batch {index}"
                )
            value = float(loss)
            if not math.isfinite(value):
                raise ValueError(
                    f"the loss on batch {index} is {value}: the model or the data produce "
                    "non-finite losses, so epsilon cannot be estimated"
                )
            losses.append(value)
    return losses


def batch_loss_std(
    model: nn.Module, loss_fn: Callable[[Any, Any], Tensor], batches: Iterable[Any]
) -> float:
    """Population standard deviation (ddof 0) of the batch-mean loss over the batches.

    The model is evaluated at its current weights in eval mode without gradients and is left
    exactly as found (every module's training flag is restored). Inputs and targets that are
    tensors are moved to the device of the model's parameters.

    Args:
        model: the model.
        loss_fn: ``loss_fn(outputs, targets) -> scalar`` batch-mean loss.
        batches: an iterable of ``(inputs, targets)``.

    Returns:
        The std of the batch losses; 0.0 for a single batch.

    Example:
        >>> import torch
        >>> _ = torch.manual_seed(0)
        >>> model = torch.nn.Linear(3, 1)
        >>> batches = [(torch.randn(4, 3), torch.randn(4, 1)) for _ in range(5)]
        >>> batch_loss_std(model, torch.nn.functional.mse_loss, batches) > 0
        True
    """
    losses = _batch_losses(model, loss_fn, batches)
    if not losses:
        raise ValueError("batches is empty: pass at least two (inputs, targets) batches")
    return float(statistics.pstdev(losses))


def resolve_epsilon(
    epsilon: float | str,
    model: nn.Module | None = None,
    loss_fn: Callable[[Any, Any], Tensor] | None = None,
    batches: Iterable[Any] | None = None,
) -> float:
    """Turn an epsilon setting into a positive number.

    Args:
        epsilon: a positive finite number (returned as is), or ``"batch_loss_std"`` to use
            ``batch_loss_std(model, loss_fn, batches)``.
        model: the model (needed for ``"batch_loss_std"``).
        loss_fn: ``loss_fn(outputs, targets) -> scalar`` batch-mean loss (idem).
        batches: an iterable of ``(inputs, targets)`` (idem).

    Example:
        >>> resolve_epsilon(0.01)
        0.01
        >>> import torch
        >>> _ = torch.manual_seed(0)
        >>> batches = [(torch.randn(4, 3), torch.randn(4, 1)) for _ in range(3)]
        >>> eps = resolve_epsilon(
        ...     "batch_loss_std", torch.nn.Linear(3, 1), torch.nn.functional.mse_loss, batches)
        >>> eps > 0
        True
    """
    epsilon = check_epsilon(epsilon)
    if isinstance(epsilon, str):
        if model is None or loss_fn is None or batches is None:
            raise ValueError(
                "epsilon='batch_loss_std' needs model, loss_fn and batches: pass them, or pass "
                "epsilon as a number"
            )
        batches = list(batches) if not isinstance(batches, (list, tuple)) else batches
        value = batch_loss_std(model, loss_fn, batches)
        if not math.isfinite(value) or value <= 0:
            raise ValueError(
                f"the batch loss std is {value} over {len(batches)} batch(es): need at least two "
                "batches with different losses to estimate epsilon, or pass epsilon as a number"
            )
        return value
    return check_epsilon(epsilon)  # type: ignore[return-value]
