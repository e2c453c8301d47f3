"""Per-epoch learning-rate factor: linear warm-up, then constant, multi-step or cosine decay."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.optim.lr_scheduler import LambdaLR

SCHEDULE_NAMES: tuple[str, ...] = ("constant", "multistep", "cosine")


@dataclass(frozen=True)
class EpochLRSchedule:
    """The factor that multiplies the base learning rate in each epoch (0-based).

    ``factor(epoch) = warmup(epoch) * decay(epoch)`` with

    * ``warmup(e) = (e + 1) / warmup_epochs`` for ``e < warmup_epochs``, else 1: the first epoch
      trains at ``lr / warmup_epochs`` and epoch ``warmup_epochs - 1`` reaches the full rate;
    * ``decay(e)``: ``"constant"``: 1; ``"multistep"``: ``gamma ** (number of milestones <= e)``,
      milestones counted in epochs from the start of training (warm-up included); ``"cosine"``:
      1 during warm-up, then ``(1 + cos(pi * (e - W) / (max_epochs - W))) / 2`` with
      ``W = warmup_epochs``, reaching 0 at epoch ``max_epochs`` (held at 0 beyond it).

    It is meant to be stepped once per epoch (``LambdaLR`` with ``interval="epoch"``); the
    reference code stepped its schedulers once per iteration, which made milestones and the
    cosine period count iterations.

    Args:
        schedule: ``"constant"``, ``"multistep"`` or ``"cosine"``.
        warmup_epochs: number of linear warm-up epochs (0: none).
        milestones: epochs at which ``"multistep"`` multiplies the rate by ``gamma``.
        gamma: multiplicative decay of ``"multistep"``.
        max_epochs: length of training; required for ``"cosine"``.

    Example:
        >>> s = EpochLRSchedule("multistep", warmup_epochs=2, milestones=(3,), gamma=0.1)
        >>> [s(e) for e in range(5)]
        [0.5, 1.0, 1.0, 0.1, 0.1]
    """

    schedule: str = "constant"
    warmup_epochs: int = 0
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    max_epochs: int | None = None

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULE_NAMES:
            raise ValueError(
                f"schedule must be one of {', '.join(SCHEDULE_NAMES)}, got {self.schedule!r}"
            )
        if int(self.warmup_epochs) != self.warmup_epochs or self.warmup_epochs < 0:
            raise ValueError(
                f"warmup_epochs must be a non-negative integer, got {self.warmup_epochs!r}"
            )
        if isinstance(self.milestones, (str, bytes)) or not isinstance(self.milestones, Sequence):
            raise ValueError(
                f"milestones must be a list of epochs, got {self.milestones!r}: e.g. [60, 120, 160]"
            )
        milestones = tuple(int(m) for m in self.milestones)
        if any(m < 1 or m != given for m, given in zip(milestones, self.milestones)):
            raise ValueError(f"milestones must be positive integer epochs, got {self.milestones!r}")
        object.__setattr__(self, "milestones", milestones)
        object.__setattr__(self, "warmup_epochs", int(self.warmup_epochs))
        if not (math.isfinite(self.gamma) and self.gamma > 0):
            raise ValueError(f"gamma must be a positive number, got {self.gamma!r}")
        if self.schedule == "cosine":
            if self.max_epochs is None or int(self.max_epochs) != self.max_epochs:
                raise ValueError(
                    f"the cosine schedule needs max_epochs (an integer), got {self.max_epochs!r}: "
                    "pass max_epochs or set the Trainer's max_epochs"
                )
            if self.max_epochs <= self.warmup_epochs:
                raise ValueError(
                    f"max_epochs ({self.max_epochs}) must exceed warmup_epochs "
                    f"({self.warmup_epochs}) for the cosine schedule: lower warmup_epochs"
                )
            object.__setattr__(self, "max_epochs", int(self.max_epochs))

    def __call__(self, epoch: int) -> float:
        """The learning-rate factor of 0-based ``epoch``."""
        if epoch < 0:
            raise ValueError(f"epoch must be non-negative, got {epoch}")
        warmup = (epoch + 1) / self.warmup_epochs if epoch < self.warmup_epochs else 1.0
        if self.schedule == "constant":
            decay = 1.0
        elif self.schedule == "multistep":
            decay = self.gamma ** sum(1 for m in self.milestones if epoch >= m)
        elif epoch < self.warmup_epochs:
            decay = 1.0
        else:
            assert self.max_epochs is not None
            period = self.max_epochs - self.warmup_epochs
            elapsed = min(epoch - self.warmup_epochs, period)
            decay = 0.5 * (1.0 + math.cos(math.pi * elapsed / period))
        return warmup * decay


def epoch_lr_scheduler(
    optimizer: torch.optim.Optimizer,
    schedule: str = "constant",
    warmup_epochs: int = 0,
    milestones: Sequence[int] = (),
    gamma: float = 0.1,
    max_epochs: int | None = None,
) -> LambdaLR:
    """A ``LambdaLR`` that follows :class:`EpochLRSchedule`, to be stepped once per epoch.

    This is the ``model.scheduler`` node of the app's configs (with ``_partial_: true``, Hydra
    makes it a function of the optimizer only).

    Example:
        >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
        >>> scheduler = epoch_lr_scheduler(opt, "multistep", milestones=[1], gamma=0.5)
        >>> opt.step(); scheduler.step()  # the end of epoch 0
        >>> round(opt.param_groups[0]["lr"], 6)
        0.05
    """
    factor = EpochLRSchedule(
        schedule=schedule,
        warmup_epochs=warmup_epochs,
        milestones=tuple(milestones),
        gamma=gamma,
        max_epochs=max_epochs if schedule == "cosine" else None,
    )
    return LambdaLR(optimizer, lr_lambda=factor)
