"""The one place that reaches into Lightning where it offers no public way.

Everything else in the callbacks and the app uses Lightning's public API (hooks,
``trainer.is_last_batch``, ``trainer.num_training_batches``, ``trainer.train_dataloader``,
``LightningModule.log``, ``Logger.log_metrics``, ``ModelCheckpoint.last_model_path``). What
remains here, and why:

* :func:`put_callback_metrics`: results computed in ``on_train_end`` / ``on_fit_end`` (training
  stopped by ``max_time`` or during validation, a resume with nothing left to train) must reach
  ``trainer.callback_metrics``, but ``LightningModule.log`` is refused in those hooks.
* :func:`defined_loader`: the loaders given to ``trainer.fit(model, train_loader, val_loader)``
  are only reachable through the fit loop's data sources before Lightning loads them (the
  checks before the first training step need one batch).
* :func:`last_checkpoint_step`: the step at which a ``ModelCheckpoint`` last wrote
  ``last.ckpt``, so that only a ``last.ckpt`` written at the final step is rewritten with the
  late results (rewriting an older one would move it to a later step).
* :func:`launched_in_workers`: whether the strategy starts its own processes (``ddp_spawn``,
  ``ddp_fork``), whose callback objects are copies; the launcher class is not public.

Each function is tested on the lowest supported Lightning and on the pinned one
(``tests/test_lightning_internals.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:  # pragma: no cover
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import ModelCheckpoint

__all__ = [
    "defined_loader",
    "last_checkpoint_step",
    "launched_in_workers",
    "put_callback_metrics",
]


def put_callback_metrics(trainer: pl.Trainer, metrics: Mapping[str, float]) -> None:
    """Set scalars in ``trainer.callback_metrics`` outside the hooks that may log.

    Example:
        >>> import lightning.pytorch as pl
        >>> trainer = pl.Trainer(logger=False, enable_progress_bar=False)
        >>> put_callback_metrics(trainer, {"a/b": 1.0})
        >>> float(trainer.callback_metrics["a/b"])
        1.0
    """
    trainer.callback_metrics.update({k: torch.tensor(float(v)) for k, v in metrics.items()})


def defined_loader(trainer: pl.Trainer, split: str) -> Any:
    """The loader given to ``fit`` or defined by the module / datamodule for ``split``, or None.

    ``split`` is ``"train"`` or ``"val"``. Calls the defining hook (e.g.
    ``train_dataloader()``) when the loader is defined rather than given.

    Example:
        >>> import lightning.pytorch as pl
        >>> defined_loader(pl.Trainer(logger=False, enable_progress_bar=False), "train") is None
        True
    """
    loop = trainer.fit_loop if split == "train" else trainer.fit_loop.epoch_loop.val_loop
    source = loop._data_source
    if source.instance is None or not source.is_defined():
        return None
    return source.dataloader()


def last_checkpoint_step(callback: ModelCheckpoint) -> int:
    """The global step at which ``callback`` last saved a checkpoint (0 before any).

    Example:
        >>> from lightning.pytorch.callbacks import ModelCheckpoint
        >>> last_checkpoint_step(ModelCheckpoint())
        0
    """
    return int(callback._last_global_step_saved)


def launched_in_workers(trainer: pl.Trainer) -> bool:
    """Whether ``fit`` runs in processes started for it (``ddp_spawn``, ``ddp_fork``, notebooks).

    Their callback objects are copies: results computed there do not come back to the
    launching script's callbacks.

    Example:
        >>> import lightning.pytorch as pl
        >>> launched_in_workers(pl.Trainer(logger=False, enable_progress_bar=False))
        False
    """
    from lightning.pytorch.strategies.launchers.multiprocessing import _MultiProcessingLauncher

    return isinstance(getattr(trainer.strategy, "launcher", None), _MultiProcessingLauncher)
