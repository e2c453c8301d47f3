"""Re-fit the kept weights of a pruned model: masked optimizer steps, pruned weights held at 0.

The paper's limit is the sparsity at which *some* k-sparse weight vector has a loss within
epsilon of the trained one; one-shot magnitude pruning only tries the trained values of the
kept weights. :func:`refit_kept_weights` searches that sparse subspace for a better point with a
few hundred optimizer steps, which is what the measured limit has to do to speak of the same
quantity as the prediction.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from lightning_prunelimit.curvature.move_batch import move_batch
from lightning_prunelimit.pruning.apply import _as_keep_mask, _resolve

__all__ = [
    "DEFAULT_REFIT_LR",
    "REFIT_OPTIMIZERS",
    "RefitResult",
    "check_refit_lr",
    "refit_kept_weights",
]

#: Default learning rate of the re-fit (Adam).
DEFAULT_REFIT_LR: float = 1e-3

#: Optimizers ``refit_kept_weights`` accepts.
REFIT_OPTIMIZERS: tuple[str, ...] = ("adam", "sgd")


@dataclass(frozen=True)
class RefitResult:
    """What a re-fit did.

    Attributes:
        steps: the number of optimizer steps taken.
        lr: the learning rate.
        optimizer: ``"adam"`` or ``"sgd"``.
        losses: the batch loss at the start of each step (before the update), so
            ``losses[0]`` is the one-shot pruned model's loss on the first batch.
        num_trained: the number of scalar parameters that were free to move (kept entries of
            the masked tensors, plus the unmasked trainable parameters when they were trained).

    Example:
        >>> result = RefitResult(2, 1e-3, "adam", (0.9, 0.7), 10)
        >>> RefitResult.from_dict(result.to_dict()) == result
        True
    """

    steps: int
    lr: float
    optimizer: str
    losses: tuple[float, ...]
    num_trained: int

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-friendly dictionary.

        Example:
            >>> RefitResult(1, 0.1, "sgd", (0.5,), 3).to_dict()["losses"]
            [0.5]
        """
        return {
            "steps": int(self.steps),
            "lr": float(self.lr),
            "optimizer": str(self.optimizer),
            "losses": [float(x) for x in self.losses],
            "num_trained": int(self.num_trained),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RefitResult:
        """Rebuild a result from :meth:`to_dict` output.

        Example:
            >>> RefitResult.from_dict({"steps": 0, "lr": 0.1, "optimizer": "sgd",
            ...     "losses": [], "num_trained": 0}).steps
            0
        """
        return cls(
            steps=int(data["steps"]),
            lr=float(data["lr"]),
            optimizer=str(data["optimizer"]),
            losses=tuple(float(x) for x in data["losses"]),
            num_trained=int(data["num_trained"]),
        )


def _check_steps(steps: int) -> int:
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 0:
        raise ValueError(f"steps must be an int >= 0, got {steps!r}: pass the number of steps")
    return int(steps)


def check_refit_lr(lr: float) -> float:
    """Validate a re-fit learning rate (positive and finite) and return it as a float.

    Example:
        >>> check_refit_lr(1e-3)
        0.001
    """
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real):
        raise TypeError(f"lr must be a positive number, got {lr!r}")
    value = float(lr)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"lr must be positive and finite, got {value}: pass e.g. 1e-3")
    return value


@contextmanager
def _mode(model: nn.Module, train: bool) -> Iterator[None]:
    flags = [(module, module.training) for module in model.modules()]
    try:
        model.train(train)
        yield
    finally:
        for module, training in flags:
            module.training = training


def refit_kept_weights(
    model: nn.Module,
    masks: Mapping[str, Tensor],
    loss_fn: Callable[[Any, Any], Tensor],
    batches: Iterable[Any],
    *,
    steps: int,
    lr: float = DEFAULT_REFIT_LR,
    optimizer: str = "adam",
    seed: int = 0,
    train_unmasked: bool = True,
    train_mode: bool = False,
) -> RefitResult:
    """Prune ``model`` with keep-masks and re-fit what is kept for ``steps`` optimizer steps.

    The entries a mask removes are set to zero first and stay exactly zero throughout: their
    gradient is masked before each step and the mask is re-applied after it. A parameter that
    carries a ``torch.nn.utils.prune`` reparametrisation is trained through ``<name>_orig``
    (its own ``<name>_mask`` keeps applying in the forward pass as well). The model is changed
    in place: wrap the call in :func:`~lightning_prunelimit.pruning.restore_on_exit` to get it
    back exactly afterwards. ``.grad`` of every parameter is left as found.

    **What moves.** The kept entries of every masked tensor and, when ``train_unmasked``
    (default), every other parameter that requires grad (biases, normalisation layers): the
    theory's sublevel set lives in the space of all parameters the Hessian covers, and only the
    masked entries are constrained to zero. Parameters with ``requires_grad=False`` never move.

    **Data.** ``batches`` (an iterable of ``(inputs, targets)``, read once into a list) are
    used in order and cycled; step ``t`` uses batch ``t mod len(batches)``. Tensors are moved
    to the device and floating-point dtype of the model's first parameter.

    **Mode.** By default the model runs in eval mode (BatchNorm uses its running statistics,
    dropout is off): the loss being re-fitted is then the very function whose Hessian predicts
    the limit. ``train_mode=True`` re-fits in training mode instead (running statistics are
    updated, dropout is on; random draws come from ``seed``, the global random state is left
    untouched).

    **Optimizer.** Adam (``optimizer="adam"``, betas (0.9, 0.999), no weight decay) with
    ``lr=1e-3`` by default. Adam's per-coordinate normalisation moves each kept weight by about
    ``lr`` per step whatever the scale of its gradient, so one setting works across sparsities:
    after heavy pruning the gradients and the curvature of the remaining weights change by
    orders of magnitude, and an SGD step size that re-fits well at one sparsity stalls or
    diverges at another. With Adam, ``steps`` x ``lr`` bounds how far a weight can travel (0.2
    for 200 steps at 1e-3, the scale of the weights of small MLPs), so a few hundred steps
    re-fit effectively without leaving the neighbourhood of the trained model. Masked entries
    get zero gradients, hence zero Adam moments and zero updates. ``optimizer="sgd"`` (plain
    SGD, no momentum) is available for comparison.

    Args:
        model: the model, changed in place.
        masks: keep-masks (``True`` = kept) keyed ``"<module>.<param>"``, e.g. from
            ``global_magnitude_masks``.
        loss_fn: ``loss_fn(outputs, targets) -> scalar`` mean loss.
        batches: an iterable of ``(inputs, targets)``, cycled.
        steps: the number of optimizer steps (0: only zero the pruned entries).
        lr: the learning rate, positive.
        optimizer: ``"adam"`` or ``"sgd"``.
        seed: seed of the random draws made during the re-fit (dropout in ``train_mode``).
        train_unmasked: also re-fit the parameters that have no mask.
        train_mode: re-fit in training mode rather than eval mode.

    Returns:
        A :class:`RefitResult` with the batch losses seen at each step.

    Example:
        >>> import torch
        >>> from lightning_prunelimit.pruning import global_magnitude_masks, restore_on_exit
        >>> _ = torch.manual_seed(0)
        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(),
        ...                             torch.nn.Linear(8, 3))
        >>> batches = [(torch.randn(32, 4), torch.randint(0, 3, (32,)))]
        >>> masks = global_magnitude_masks(model, 0.5)
        >>> with restore_on_exit(model):
        ...     result = refit_kept_weights(model, masks, torch.nn.functional.cross_entropy,
        ...                                 batches, steps=50, lr=1e-2)
        ...     zeros = int((model[0].weight == 0).sum() + (model[2].weight == 0).sum())
        >>> zeros, result.losses[-1] < result.losses[0]
        (28, True)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(masks, Mapping):
        raise TypeError(f"masks must be a mapping of '<module>.<param>' to tensors, got {masks!r}")
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable as loss_fn(outputs, targets), got {loss_fn!r}")
    count = _check_steps(steps)
    rate = check_refit_lr(lr)
    if optimizer not in REFIT_OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {REFIT_OPTIMIZERS}, got {optimizer!r}")
    data = list(batches)
    if count > 0 and not data:
        raise ValueError("batches is empty: pass at least one (inputs, targets) batch")
    for index, batch in enumerate(data):
        if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
            raise ValueError(
                f"batch {index} is not an (inputs, targets) pair: pass batches as an iterable "
                "of (inputs, targets)"
            )

    keeps: dict[int, tuple[nn.Parameter, Tensor]] = {}
    for key, mask in masks.items():
        _, _, param = _resolve(model, key)
        keeps[id(param)] = (param, _as_keep_mask(key, mask, param))
    with torch.no_grad():
        for param, keep in keeps.values():
            param.mul_(keep)

    trainable = [param for param, _ in keeps.values() if param.requires_grad]
    if train_unmasked:
        seen = set(keeps)
        for param in model.parameters():
            if param.requires_grad and id(param) not in seen:
                trainable.append(param)
                seen.add(id(param))
    num_trained = sum(
        int(keeps[id(p)][1].sum()) if id(p) in keeps else p.numel() for p in trainable
    )
    losses: list[float] = []
    if count == 0 or not trainable:
        return RefitResult(0, rate, optimizer, (), num_trained)

    first = trainable[0]
    device, dtype = first.device, first.dtype
    kept = [keeps[id(p)][1] if id(p) in keeps else None for p in trainable]
    grads_before = [p.grad for p in trainable]
    opt: torch.optim.Optimizer
    if optimizer == "adam":
        opt = torch.optim.Adam(trainable, lr=rate)
    else:
        opt = torch.optim.SGD(trainable, lr=rate)
    rng_devices = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=rng_devices), _mode(model, train_mode):
            torch.manual_seed(seed)
            for step in range(count):
                inputs, targets = data[step % len(data)]
                inputs = move_batch(inputs, device, dtype)
                targets = move_batch(targets, device, dtype)
                loss = loss_fn(model(inputs), targets)
                if not isinstance(loss, Tensor) or loss.numel() != 1:
                    raise ValueError(
                        f"loss_fn must return a scalar tensor (the mean loss), got {loss!r}"
                    )
                value = float(loss.detach())
                if not math.isfinite(value):
                    raise ValueError(
                        f"the loss is {value} at re-fit step {step}: lower lr (now {rate}) or "
                        "check the model and the data"
                    )
                losses.append(value)
                grads = torch.autograd.grad(loss, trainable, allow_unused=True)
                for param, grad, keep in zip(trainable, grads, kept):
                    if grad is None:
                        grad = torch.zeros_like(param)
                    param.grad = grad if keep is None else grad * keep
                opt.step()
                with torch.no_grad():
                    for param, keep in zip(trainable, kept):
                        if keep is not None:
                            param.mul_(keep)
    finally:
        for param, grad in zip(trainable, grads_before):
            param.grad = grad
    return RefitResult(count, rate, optimizer, tuple(losses), num_trained)
