"""Top-1 accuracy and mean loss of a model on fixed batches, as the actual-limit search needs.

:func:`evaluate_model` returns the two numbers; :func:`evaluate_samples` also keeps each
sample's correctness and loss (:class:`SampleEvaluation`), so that the limit search can state
how far the finite evaluation set lets the measured limit move (a bootstrap over samples) and
compare a pruned model with the dense one sample by sample (a paired test), with no further
model evaluations.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from lightning_prunelimit.curvature import evaluation_mode, move_batch

__all__ = ["SampleEvaluation", "evaluate_model", "evaluate_samples"]


@dataclass(frozen=True)
class SampleEvaluation:
    """A model's accuracy and loss on fixed data, with each sample's share kept.

    Attributes:
        accuracy: top-1 accuracy (NaN when the outputs are not class scores).
        loss: sample-mean loss (batch losses weighted by batch size).
        correct: ``(n,)`` float64, 1 where the top-1 prediction is right; ``None`` when the
            outputs are not class scores.
        losses: ``(n,)`` float64, each sample's loss (the batch's mean loss for each of its
            samples when the loss cannot be taken sample by sample).

    The samples are in the same order at every call on the same batches, which is what lets
    two evaluations be compared sample by sample.

    Example:
        >>> import torch
        >>> e = SampleEvaluation(0.5, 0.7, torch.tensor([1.0, 0.0]), torch.tensor([0.2, 1.2]))
        >>> e.num_samples, tuple(e)
        (2, (0.5, 0.7))
    """

    accuracy: float
    loss: float
    correct: Tensor | None
    losses: Tensor

    @property
    def num_samples(self) -> int:
        """The number of samples evaluated."""
        return int(self.losses.numel())

    def __iter__(self) -> Any:
        """``accuracy, loss = evaluation`` works as with :func:`evaluate_model`."""
        return iter((self.accuracy, self.loss))


def _is_classification(outputs: Any, targets: Any) -> bool:
    return (
        isinstance(outputs, Tensor)
        and outputs.ndim == 2
        and isinstance(targets, Tensor)
        and targets.ndim == 1
        and not targets.is_floating_point()
    )


def _per_sample_losses(
    loss_fn: Callable[[Any, Any], Tensor], outputs: Any, targets: Any, mean: float, size: int
) -> Tensor:
    """Each sample's loss, ``loss_fn`` applied to one sample at a time (vectorised)."""
    if isinstance(outputs, Tensor) and isinstance(targets, Tensor) and size > 0:
        unreduced = _unreduced(loss_fn)
        if unreduced is not None:  # a torch loss: its own per-sample values, no vmap
            values = unreduced(outputs, targets)
            if values.shape == (size,):
                return values.detach().to(torch.float64)
        try:
            values = torch.func.vmap(lambda o, t: loss_fn(o[None], t[None]))(outputs, targets)
            if values.shape == (size,):
                return values.detach().to(torch.float64)
        except Exception:  # a loss vmap cannot batch: fall back to the batch's mean
            pass
    return torch.full((size,), mean, dtype=torch.float64)


def _unreduced(loss_fn: Callable[[Any, Any], Tensor]) -> Callable[[Any, Any], Tensor] | None:
    """The same torch loss without the batch mean (``reduction="none"``), if it is one."""
    if loss_fn in (nn.functional.cross_entropy, nn.functional.nll_loss):
        return lambda o, t: loss_fn(o, t, reduction="none")  # type: ignore[call-arg]
    if (
        isinstance(loss_fn, (nn.CrossEntropyLoss, nn.NLLLoss))
        and loss_fn.reduction == "mean"
        and loss_fn.weight is None
    ):
        unreduced = copy.copy(loss_fn)
        unreduced.reduction = "none"
        return unreduced
    return None


def _run(
    model: nn.Module,
    loss_fn: Callable[[Any, Any], Tensor],
    batches: Iterable[tuple[Any, Any]],
    keep_samples: bool,
) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    first = next(iter(model.parameters()), None)
    device = first.device if first is not None else torch.device("cpu")
    dtype = first.dtype if first is not None and first.is_floating_point() else None
    sums = torch.zeros(4, dtype=torch.float64, device=device)
    correct: list[Tensor] = []
    losses: list[Tensor] = []
    with torch.no_grad(), evaluation_mode(model):
        for inputs, targets in batches:
            inputs, targets = move_batch(inputs, device, dtype), move_batch(targets, device, dtype)
            outputs = model(inputs)
            size = targets.shape[0] if isinstance(targets, Tensor) else len(targets)
            mean = float(loss_fn(outputs, targets))
            sums[1] += mean * size
            sums[2] += size
            classes = _is_classification(outputs, targets)
            if classes:
                hits = outputs.argmax(dim=1) == targets
                sums[0] += float(hits.sum())
            else:
                sums[3] += 1
            if keep_samples:
                losses.append(_per_sample_losses(loss_fn, outputs, targets, mean, size))
                if classes:
                    correct.append(hits.to(torch.float64))
    return sums, correct, losses


def _finish(sums: Tensor) -> tuple[float, float, bool]:
    correct, loss, count, other = sums.tolist()
    if count == 0:
        raise ValueError("no samples to evaluate: pass at least one non-empty batch")
    return (math.nan if other else correct / count), loss / count, not other


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
    sums, _, _ = _run(model, loss_fn, batches, keep_samples=False)
    if reduce is not None:
        sums = reduce(sums)
    accuracy, loss, _ = _finish(sums)
    return accuracy, loss


def evaluate_samples(
    model: nn.Module,
    loss_fn: Callable[[Any, Any], Tensor],
    batches: Iterable[tuple[Any, Any]],
    *,
    reduce: Callable[[Tensor], Tensor] | None = None,
    gather: Callable[[Tensor], Tensor] | None = None,
) -> SampleEvaluation:
    """:func:`evaluate_model`, keeping each sample's correctness and loss.

    ``accuracy`` and ``loss`` are exactly those of :func:`evaluate_model`. Each sample's loss
    is ``loss_fn`` on that sample alone (``torch.func.vmap`` over the batch); a loss that
    cannot be taken one sample at a time gives every sample of a batch the batch's mean.

    Args:
        model: the model.
        loss_fn: ``loss_fn(outputs, targets) -> scalar`` batch-mean loss.
        batches: the data.
        reduce: as in :func:`evaluate_model`.
        gather: applied to this process's per-sample vectors ``(n_local,)`` to get the
            vectors of all the data ``(n,)``, e.g. an all-gather over ranks; it must put the
            samples in the same order at every call.

    Example:
        >>> import torch
        >>> model = torch.nn.Linear(2, 2, bias=False)
        >>> with torch.no_grad():
        ...     _ = model.weight.copy_(torch.eye(2))
        >>> batches = [(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0]))]
        >>> result = evaluate_samples(model, torch.nn.functional.cross_entropy, batches)
        >>> result.accuracy, result.correct.tolist()
        (0.5, [1.0, 0.0])
    """
    sums, correct, losses = _run(model, loss_fn, batches, keep_samples=True)
    if reduce is not None:
        sums = reduce(sums)
    accuracy, loss, classes = _finish(sums)
    device = sums.device
    sample_losses = torch.cat(losses) if losses else torch.zeros(0, dtype=torch.float64)
    sample_correct = None
    if classes:
        sample_correct = torch.cat(correct) if correct else torch.zeros(0, dtype=torch.float64)
    if gather is not None:
        sample_losses = gather(sample_losses.to(device))
        if sample_correct is not None:
            sample_correct = gather(sample_correct.to(device))
    return SampleEvaluation(
        accuracy=accuracy,
        loss=loss,
        correct=None if sample_correct is None else sample_correct.detach().cpu(),
        losses=sample_losses.detach().cpu(),
    )
