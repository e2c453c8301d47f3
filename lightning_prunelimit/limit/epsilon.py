"""The loss tolerance epsilon: how much loss increase counts as "the same loss".

The reference pipeline uses the spread of the training loss over mini-batches: the standard
deviation of the batch-mean losses at the trained weights. A loss change smaller than that is
indistinguishable from batch-to-batch noise.

That spread depends on how batches are formed (their size, and the order of the data: class-sorted
batches inflate it). Here it is defined by the samples and one explicit batch size alone: with
per-sample losses ``l_1..l_n`` (population variance ``s^2``), the mean loss of a batch of ``b``
samples drawn without replacement has variance ``(s^2 / b) (n - b) / (n - 1)``. ``batch_loss_std``
returns its square root, which is what a seeded shuffle into batches of size ``b`` estimates, but
exactly: it does not change with the order of the data or a seed.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn

from lightning_prunelimit.curvature.evaluation_mode import evaluation_mode
from lightning_prunelimit.curvature.move_batch import move_batch

__all__ = [
    "DEFAULT_EPSILON_BATCH_SIZE",
    "EPSILON_METHODS",
    "batch_loss_std",
    "check_epsilon",
    "resolve_epsilon",
]

#: Names accepted by ``resolve_epsilon`` in place of a number.
EPSILON_METHODS: tuple[str, ...] = ("batch_loss_std",)

#: Batch size of ``batch_loss_std`` (the paper's experiments train with batches of 128).
DEFAULT_EPSILON_BATCH_SIZE = 128


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


def _sample_losses(
    model: nn.Module, loss_fn: Callable[[Any, Any], Tensor], batches: Iterable[Any]
) -> Tensor:
    """Per-sample losses at the current weights, eval mode, no grad; model restored after.

    The model runs once per batch; ``loss_fn`` is then applied to each sample's output and
    target (a slice of length 1), so it must be a mean over samples, like the loss the Hessian
    is taken of.
    """
    first = next(iter(model.parameters()), None)
    device = first.device if first is not None else torch.device("cpu")
    dtype = first.dtype if first is not None and first.is_floating_point() else None
    losses: list[Tensor] = []
    with evaluation_mode(model), torch.no_grad():
        for index, batch in enumerate(batches):
            if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
                raise ValueError(
                    f"batch {index} is not an (inputs, targets) pair: pass batches as an "
                    "iterable of (inputs, targets)"
                )
            inputs = move_batch(batch[0], device, dtype)
            targets = move_batch(batch[1], device, dtype)
            outputs = model(inputs)
            if not isinstance(outputs, Tensor) or not isinstance(targets, Tensor):
                raise ValueError(
                    f"batch {index}: epsilon='batch_loss_std' needs tensor outputs and targets "
                    "to take per-sample losses; pass epsilon as a number"
                )
            for i in range(int(targets.shape[0])):
                loss = loss_fn(outputs[i : i + 1], targets[i : i + 1])
                if not isinstance(loss, Tensor) or loss.numel() != 1:
                    raise ValueError(
                        f"loss_fn must return a scalar tensor (the batch-mean loss), got "
                        f"{loss!r} on batch {index}"
                    )
                losses.append(loss.detach().reshape(()).to("cpu", torch.float64))
    if not losses:
        raise ValueError("batches is empty: pass (inputs, targets) batches with samples")
    values = torch.stack(losses)
    bad = ~torch.isfinite(values)
    if bool(bad.any()):
        raise ValueError(
            f"{int(bad.sum())} of {values.numel()} samples have a non-finite loss (first: "
            f"{float(values[bad][0])}): the model or the data produce non-finite losses, so "
            "epsilon cannot be estimated"
        )
    return values


def _check_batch_size(batch_size: int) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"epsilon_batch_size must be a positive int, got {batch_size!r}")
    return batch_size


def batch_loss_std(
    model: nn.Module,
    loss_fn: Callable[[Any, Any], Tensor],
    batches: Iterable[Any],
    *,
    batch_size: int = DEFAULT_EPSILON_BATCH_SIZE,
) -> float:
    """Standard deviation of the mean loss of a random batch of ``batch_size`` samples.

    ``sqrt((s^2 / b) * (n - b) / (n - 1))`` with ``s^2`` the population variance of the ``n``
    per-sample losses in ``batches`` and ``b = batch_size``: the spread of batch-mean losses
    over batches drawn without replacement (see the module docstring). It depends on the
    samples and ``batch_size`` only, not on their order or on how ``batches`` split them.

    The model is evaluated at its current weights in eval mode without gradients and is left
    exactly as found (every module's training flag is restored). Inputs and targets that are
    tensors are moved to the device of the model's parameters.

    Args:
        model: the model.
        loss_fn: ``loss_fn(outputs, targets) -> scalar`` mean loss over the samples.
        batches: an iterable of ``(inputs, targets)``; more than ``batch_size`` samples.
        batch_size: the batch size ``b`` (default 128).

    Example:
        >>> import torch
        >>> _ = torch.manual_seed(0)
        >>> model = torch.nn.Linear(3, 1)
        >>> batches = [(torch.randn(40, 3), torch.randn(40, 1)) for _ in range(5)]
        >>> value = batch_loss_std(model, torch.nn.functional.mse_loss, batches, batch_size=16)
        >>> value == batch_loss_std(model, torch.nn.functional.mse_loss, batches[::-1],
        ...                         batch_size=16)
        True
    """
    b = _check_batch_size(batch_size)
    losses = _sample_losses(model, loss_fn, batches)
    n = losses.numel()
    if n <= b:
        raise ValueError(
            f"epsilon='batch_loss_std' with epsilon_batch_size={b} needs more than {b} samples, "
            f"got {n}: lower epsilon_batch_size or use more samples (e.g. num_samples)"
        )
    # Sorting first makes the sum independent of the order of the samples, to the last bit.
    losses = losses.sort().values
    if float(losses[-1]) == float(losses[0]):
        return 0.0
    variance = float(losses.var(unbiased=False)) / b * (n - b) / (n - 1)
    return math.sqrt(max(variance, 0.0))


def resolve_epsilon(
    epsilon: float | str,
    model: nn.Module | None = None,
    loss_fn: Callable[[Any, Any], Tensor] | None = None,
    batches: Iterable[Any] | None = None,
    *,
    batch_size: int = DEFAULT_EPSILON_BATCH_SIZE,
) -> float:
    """Turn an epsilon setting into a positive number.

    Args:
        epsilon: a positive finite number (returned as is), or ``"batch_loss_std"`` to use
            ``batch_loss_std(model, loss_fn, batches, batch_size=batch_size)``.
        model: the model (needed for ``"batch_loss_std"``).
        loss_fn: ``loss_fn(outputs, targets) -> scalar`` batch-mean loss (idem).
        batches: an iterable of ``(inputs, targets)`` (idem).
        batch_size: the batch size of ``"batch_loss_std"`` (default 128).

    Example:
        >>> resolve_epsilon(0.01)
        0.01
        >>> import torch
        >>> _ = torch.manual_seed(0)
        >>> batches = [(torch.randn(40, 3), torch.randn(40, 1)) for _ in range(3)]
        >>> eps = resolve_epsilon("batch_loss_std", torch.nn.Linear(3, 1),
        ...                       torch.nn.functional.mse_loss, batches, batch_size=32)
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
        value = batch_loss_std(model, loss_fn, batches, batch_size=batch_size)
        if not math.isfinite(value) or value <= 0:
            raise ValueError(
                f"the batch loss std is {value}: every sample has the same loss, so epsilon "
                "cannot be estimated from its spread; pass epsilon as a number"
            )
        return value
    return check_epsilon(epsilon)  # type: ignore[return-value]
