"""Resuming a run whose dense training had already finished when it was interrupted."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

__all__ = ["FinishTrainingOnResume"]


class FinishTrainingOnResume(Callback):
    """Let a resumed fit end through ``on_train_end`` even when training had already finished.

    The periodic checkpoint of the last epoch is written at its end, after Lightning counted the
    epoch as processed; resuming from it, Lightning sees nothing left to do and skips the end of
    training, where the spectrum, the predicted limit and the sweep are computed. For that one
    case this callback marks the last epoch as not yet processed when the checkpoint is loaded:
    no batch is trained again (the epoch's batches are all done), the epoch-end hooks run, and
    the fit ends through ``on_train_end`` as an uninterrupted one does. Earlier checkpoints are
    left alone.

    Example:
        >>> progress = {"ready": 3, "started": 3, "processed": 3, "completed": 2}
        >>> checkpoint = {"loops": {"fit_loop": {"epoch_progress": {
        ...     "current": dict(progress), "total": dict(progress)}}}}
        >>> FinishTrainingOnResume().reopen_last_epoch(checkpoint, max_epochs=3)
        True
        >>> checkpoint["loops"]["fit_loop"]["epoch_progress"]["current"]["processed"]
        2
    """

    def reopen_last_epoch(self, checkpoint: dict[str, Any], max_epochs: int | None) -> bool:
        """Mark the last epoch of a finished training as not yet processed; ``True`` if done."""
        try:
            progress = checkpoint["loops"]["fit_loop"]["epoch_progress"]
        except (KeyError, TypeError):
            return False
        current = progress["current"]
        finished = max_epochs is not None and max_epochs >= 0 and current["processed"] >= max_epochs
        if not finished or current["processed"] <= current["completed"]:
            return False
        for part in ("current", "total"):
            progress[part]["processed"] = progress[part]["completed"]
        return True

    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        """Reopen the last epoch of a checkpoint written when training had finished."""
        self.reopen_last_epoch(checkpoint, trainer.max_epochs)
