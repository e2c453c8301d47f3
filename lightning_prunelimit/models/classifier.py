"""The LightningModule that trains any network of the zoo as a classifier (cross-entropy, SGD)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR
from torchmetrics.classification import MulticlassAccuracy

from lightning_prunelimit.models.lr_schedule import EpochLRSchedule


class ImageClassifier(L.LightningModule):
    """Cross-entropy classifier around ``net`` with the paper's SGD and an epoch-wise LR schedule.

    Batches are ``(inputs, targets)`` with integer class targets. Logs ``train/loss``,
    ``train/acc``, ``val/loss``, ``val/acc``, ``test/loss``, ``test/acc`` (top-1 accuracy over all
    samples of the epoch) with ``on_epoch=True``. The callbacks of this package find the loss as
    ``self.loss_fn`` (``torch.nn.CrossEntropyLoss``, mean reduction) and the network as
    ``self.net``.

    The optimiser is SGD(``lr``, ``momentum``, ``weight_decay``, ``nesterov``); the learning rate
    follows :class:`~lightning_prunelimit.models.lr_schedule.EpochLRSchedule` (linear warm-up over
    ``warmup_epochs``, then ``schedule``) through one ``LambdaLR`` stepped once per epoch.

    The hyper-parameters (all arguments but ``net``) are saved in checkpoints; reload with
    ``ImageClassifier.load_from_checkpoint(path, net=<a network of the same architecture>)``.

    Args:
        net: the network, mapping inputs to logits ``(batch, num_classes)``.
        num_classes: number of classes (for the accuracy metrics and the logit check).
        lr: base learning rate.
        momentum: SGD momentum.
        weight_decay: SGD weight decay (L2); the paper uses 0 with L1 regularisation.
        nesterov: Nesterov momentum (needs ``momentum > 0``).
        warmup_epochs: epochs of linear warm-up.
        schedule: ``"constant"``, ``"multistep"`` or ``"cosine"``.
        milestones: epochs at which ``"multistep"`` multiplies the rate by ``gamma``.
        gamma: decay factor of ``"multistep"``.
        max_epochs: cosine period end; default: the Trainer's ``max_epochs``.

    Example:
        >>> import torch
        >>> from lightning_prunelimit.models import small_mlp
        >>> model = ImageClassifier(small_mlp(in_features=40), num_classes=10, lr=0.05)
        >>> model(torch.zeros(3, 40)).shape
        torch.Size([3, 10])
        >>> model.loss_fn
        CrossEntropyLoss()
    """

    def __init__(
        self,
        net: nn.Module,
        num_classes: int,
        lr: float = 0.01,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        warmup_epochs: int = 0,
        schedule: str = "constant",
        milestones: Sequence[int] = (60, 120, 160),
        gamma: float = 0.2,
        max_epochs: int | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(net, nn.Module):
            raise TypeError(
                f"net must be a torch.nn.Module, got {type(net).__name__}: pass an instantiated "
                "network (with Hydra: a nested node with its own _target_)"
            )
        if int(num_classes) != num_classes or num_classes < 2:
            raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
        if not lr > 0:
            raise ValueError(f"lr must be positive, got {lr!r}")
        if momentum < 0:
            raise ValueError(f"momentum must be non-negative, got {momentum!r}")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be non-negative, got {weight_decay!r}")
        if nesterov and momentum <= 0:
            raise ValueError("nesterov=True needs momentum > 0: set momentum or nesterov=False")
        # Checks schedule, warm-up, milestones and gamma now rather than when fitting starts; a
        # cosine period left to the Trainer (max_epochs=None) is checked in configure_optimizers.
        checked = EpochLRSchedule(
            schedule=schedule,
            warmup_epochs=warmup_epochs,
            milestones=milestones,
            gamma=gamma,
            max_epochs=_placeholder_max_epochs(warmup_epochs) if max_epochs is None else max_epochs,
        )
        # Plain ints in the checkpoint, also when Hydra passes a ListConfig (which a
        # weights-only torch.load refuses).
        milestones = list(checked.milestones)
        self.save_hyperparameters(ignore=["net"])
        self.net = net
        self.num_classes = int(num_classes)
        self.loss_fn = nn.CrossEntropyLoss()
        self.train_acc = MulticlassAccuracy(self.num_classes, top_k=1, average="micro")
        self.val_acc = MulticlassAccuracy(self.num_classes, top_k=1, average="micro")
        self.test_acc = MulticlassAccuracy(self.num_classes, top_k=1, average="micro")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The logits of the wrapped network: ``net(x)``."""
        return self.net(x)

    def _step(self, batch: Any, stage: str, accuracy: MulticlassAccuracy) -> torch.Tensor:
        if not isinstance(batch, (tuple, list)) or len(batch) != 2:
            raise ValueError(
                f"ImageClassifier expects batches (inputs, targets), got {type(batch).__name__}"
                + (f" of length {len(batch)}" if isinstance(batch, (tuple, list)) else "")
            )
        inputs, targets = batch
        logits = self(inputs)
        if logits.dim() != 2 or logits.shape[1] != self.num_classes:
            raise ValueError(
                f"the network returned logits of shape {tuple(logits.shape)}, expected "
                f"(batch, {self.num_classes}): make the network's num_classes match the "
                "classifier's"
            )
        loss = self.loss_fn(logits, targets)
        accuracy(logits, targets)
        batch_size = targets.shape[0]
        # Epoch-level values only, so averaging the loss over processes (DDP) costs one
        # reduction per epoch; the accuracy metric synchronises its own counts.
        self.log(
            f"{stage}/loss",
            loss,
            on_step=False,
            on_epoch=True,
            batch_size=batch_size,
            sync_dist=True,
        )
        self.log(f"{stage}/acc", accuracy, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        """Cross-entropy on a training batch; logs ``train/loss`` and ``train/acc``."""
        return self._step(batch, "train", self.train_acc)

    def validation_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        """Cross-entropy on a validation batch; logs ``val/loss`` and ``val/acc``."""
        return self._step(batch, "val", self.val_acc)

    def test_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        """Cross-entropy on a test batch; logs ``test/loss`` and ``test/acc``."""
        return self._step(batch, "test", self.test_acc)

    def lr_schedule(self) -> EpochLRSchedule:
        """The per-epoch learning-rate factor; the cosine period defaults to the Trainer's.

        Example:
            >>> from lightning_prunelimit.models import small_mlp
            >>> model = ImageClassifier(small_mlp(), 10, warmup_epochs=2)
            >>> model.lr_schedule()(0)
            0.5
        """
        hp = self.hparams
        max_epochs = hp.max_epochs
        if max_epochs is None and hp.schedule == "cosine":
            trainer = self._trainer
            max_epochs = None if trainer is None else trainer.max_epochs
            if max_epochs is None or max_epochs < 0:
                raise ValueError(
                    "the cosine schedule needs a finite number of epochs: pass max_epochs to "
                    "ImageClassifier or set the Trainer's max_epochs"
                )
        return EpochLRSchedule(
            schedule=hp.schedule,
            warmup_epochs=hp.warmup_epochs,
            milestones=hp.milestones,
            gamma=hp.gamma,
            max_epochs=max_epochs if hp.schedule == "cosine" else None,
        )

    def configure_optimizers(self) -> dict[str, Any]:
        """SGD with the paper's settings and one ``LambdaLR`` stepped every epoch."""
        hp = self.hparams
        optimizer = torch.optim.SGD(
            self.parameters(),
            lr=hp.lr,
            momentum=hp.momentum,
            weight_decay=hp.weight_decay,
            nesterov=hp.nesterov,
        )
        scheduler = LambdaLR(optimizer, lr_lambda=self.lr_schedule())
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "epoch", "frequency": 1},
        }


def _placeholder_max_epochs(warmup_epochs: int) -> int:
    try:
        return int(warmup_epochs) + 1
    except (TypeError, ValueError):
        return 1
