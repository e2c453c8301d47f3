"""What the job prints while it trains: a line per epoch when the output is not a terminal."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.rank_zero import rank_zero_only

__all__ = ["EpochLines"]


class EpochLines(Callback):
    """Print one line per epoch with the epoch's metrics, in place of a progress bar.

    A progress bar written to a file or a pipe (a batch system's log) leaves every redraw behind;
    the job uses this callback instead when its output is not a terminal. Global rank zero only.

    Args:
        label: the word in front of the epoch number (``"epoch"``, ``"fine-tune epoch"``).
        prefixes: metrics whose name starts with one of these are shown.

    Example:
        >>> EpochLines().format(2, 60, {"train/loss": 0.51234, "val/acc": 0.6})
        'epoch 3/60  train/loss 0.5123  val/acc 0.6000'
    """

    def __init__(self, label: str = "epoch", prefixes: tuple[str, ...] = ("train/", "val/")):
        self.label = label
        self.prefixes = tuple(prefixes)

    def format(self, epoch: int, max_epochs: int | None, metrics: dict[str, float]) -> str:
        """The line for 0-based ``epoch``: its number, then the selected metrics in name order."""
        total = f"/{max_epochs}" if max_epochs is not None and max_epochs >= 0 else ""
        shown = [
            f"{name} {float(value):.4f}"
            for name, value in sorted(metrics.items())
            if name.startswith(self.prefixes)
        ]
        return "  ".join([f"{self.label} {epoch + 1}{total}", *shown])

    @rank_zero_only
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Print the line of the epoch that just ended (validation has run by now)."""
        metrics = {str(k): float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        print(self.format(trainer.current_epoch, trainer.max_epochs, metrics), flush=True)
