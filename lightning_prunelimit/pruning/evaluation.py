"""Top-1 accuracy and mean loss of a model on fixed batches, as the actual-limit search needs."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn

from lightning_prunelimit.curvature import evaluation_mode, move_batch

__all__ = ["evaluate_model"]


def _is_classification(outputs: Any, targets: Any) -> bool:
    return (
        isinstance(outputs, Tensor)
        and outputs.ndim == 2
        and isinstance(targets, Tensor)
        and targets.ndim == 1
        and not targets.is_floating_point()
    )


def evaluate_model(
    model: nn.Module,
    loss_fn: Callable[[Any, Any], Tensor],
    batches: Iterable[tuple[Any, Any]],
    *,
    reduce: Callable[[Tensor], Tensor] | None = None,
) -> tuple[float, float]:
    """Top-1 accuracy and sample-mean loss of ``model`` over ``(inputs, targets)`` batches.

    The model runs in eval mode without gradients and is left as found (each submodule's
    training flag is restored). Inputs and targets are moved to the device of the model's
    parameters, floating-point ones cast to their dtype (float32 data feeds a float64 model).
    The accuracy is NaN when the outputs are not class scores ``(batch, classes)`` with integer
    targets ``(batch,)``.

    Args:
        model: the model.
        loss_fn: ``loss_fn(outputs, targets) -> scalar`` batch-mean loss.
        batches: the data.
        reduce: applied to the float64 sums ``(correct, loss * size, size, non-class batches)``
            before dividing, e.g. an all-reduce over ranks that each hold a share of the data.

    Returns:
        ``(accuracy, loss)``.

    Example:
        >>> import torch
        >>> model = torch.nn.Linear(2, 2, bias=False)
        >>> with torch.no_grad():
        ...     _ = model.weight.copy_(torch.eye(2))
        >>> batches = [(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0]))]
        >>> accuracy, loss = evaluate_model(model, torch.nn.functional.cross_entropy, batches)
        >>> accuracy
        0.5
    """
    first = next(iter(model.parameters()), None)
    device = first.device if first is not None else torch.device("cpu")
    dtype = first.dtype if first is not None and first.is_floating_point() else None
    sums = torch.zeros(4, dtype=torch.float64, device=device)
    with torch.no_grad(), evaluation_mode(model):
        for inputs, targets in batches:
            inputs, targets = move_batch(inputs, device, dtype), move_batch(targets, device, dtype)
            outputs = model(inputs)
            size = targets.shape[0] if isinstance(targets, Tensor) else len(targets)
            sums[1] += float(loss_fn(outputs, targets)) * size
            sums[2] += size
            if _is_classification(outputs, targets):
                sums[0] += float((outputs.argmax(dim=1) == targets).sum())
            else:
                sums[3] += 1
    if reduce is not None:
        sums = reduce(sums)
    correct, loss, count, other = sums.tolist()
    if count == 0:
        raise ValueError("no samples to evaluate: pass at least one non-empty batch")
    return (math.nan if other else correct / count), loss / count
