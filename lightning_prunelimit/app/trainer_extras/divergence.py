"""Stopping a training run whose loss is no longer a number, with the settings to change."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from lightning_prunelimit.app.config.validation import ConfigError

__all__ = ["StopOnNonFiniteLoss"]


class StopOnNonFiniteLoss(Callback):
    """Raise a one-line :class:`ConfigError` at the first training batch with a NaN or inf loss.

    A diverging run (a learning rate or an L1 strength far too large) would otherwise train every
    remaining epoch on NaN weights and fail much later, somewhere else.

    Args:
        settings: the config keys that most likely caused it, with their values (named in the
            message as the settings to lower).

    Example:
        >>> guard = StopOnNonFiniteLoss({"model.optimizer.lr": 1e6})
        >>> print(guard.message(float("nan"), epoch=0, batch=3))
        ... # doctest: +NORMALIZE_WHITESPACE
        training diverged: the training loss is nan at epoch 1, batch 4; the learning rate or
        the L1 strength is too large for this network: lower model.optimizer.lr (now 1000000.0)
    """

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.settings = dict(settings)

    def message(self, loss: float, *, epoch: int, batch: int) -> str:
        """The error message for a ``loss`` seen at 0-based ``epoch`` and ``batch``."""
        keys = " or ".join(f"{k} (now {v})" for k, v in self.settings.items())
        return (
            f"training diverged: the training loss is {loss} at epoch {epoch + 1}, batch "
            f"{batch + 1}; the learning rate or the L1 strength is too large for this network: "
            f"lower {keys or 'the learning rate'}"
        )

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        """Check the loss the training step returned."""
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if isinstance(loss, torch.Tensor) and not bool(torch.isfinite(loss.detach()).all()):
            raise ConfigError(
                self.message(
                    float(loss.detach().float().mean()),
                    epoch=trainer.current_epoch,
                    batch=batch_idx,
                )
            )
