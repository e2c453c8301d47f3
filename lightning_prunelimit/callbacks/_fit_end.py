"""When the fit-end work runs, so that its results are where Lightning looks for them.

The spectrum, the predicted limit and the sweep are computed at the end of the **last training
batch** of the fit (recognised from ``max_steps``, ``max_epochs``, ``trainer.should_stop`` and
the epoch's batch count), before the last validation and the last ``on_train_epoch_end``: the
checkpoints ``ModelCheckpoint`` writes at the end of training (``last.ckpt`` included) hold
the results, and their scalars are in ``trainer.callback_metrics`` when monitors look.

When training stops at a point that cannot be foreseen (``max_time``, a stop requested during
validation), the work runs in ``on_train_end`` instead (in ``on_fit_end`` when a resumed fit
had nothing left to train), and the last of these callbacks rewrites the ``last.ckpt`` written
at that step so that it holds the results. Each callback computes in its own hook, in the order
of the callbacks list; one that needs another's result asks for it (``ensure_computed``), so the
order does not matter.

Results restored from a checkpoint count as computed at the global step they were computed
at: a resume that takes no step reuses them; any other recomputes at its own end.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.utilities.rank_zero import rank_zero_warn

from lightning_prunelimit.callbacks._lightning_internals import (
    last_checkpoint_step,
    launched_in_workers,
    put_callback_metrics,
)
from lightning_prunelimit.callbacks._lookup import training_point

__all__ = ["FitEndCallback", "is_final_training_batch"]


def _reached(current: int, maximum: int | None) -> bool:
    return maximum is not None and maximum != -1 and current >= maximum


def _can_stop_early(trainer: pl.Trainer) -> bool:
    """Whether ``min_epochs`` and ``min_steps`` allow a requested stop to end the fit now."""
    min_epochs, min_steps = trainer.min_epochs, trainer.min_steps
    met_epochs = not min_epochs or trainer.current_epoch >= min_epochs
    met_steps = not min_steps or trainer.global_step >= min_steps
    return met_epochs and met_steps


def is_final_training_batch(trainer: pl.Trainer, batch_idx: int) -> bool:
    """Whether the training batch ``batch_idx`` that just ended is the last one of this ``fit``.

    Call from ``on_train_batch_end``. ``max_time`` and stops requested after the batch (e.g.
    ``EarlyStopping`` at validation) cannot be foreseen: they end the fit without a final batch.
    Uses only public Trainer state: ``global_step``, ``max_steps``, ``should_stop``,
    ``min_epochs``/``min_steps``, ``is_last_batch``, ``num_training_batches``,
    ``current_epoch`` and ``max_epochs``.

    Example:
        >>> import lightning.pytorch as pl
        >>> is_final_training_batch(pl.Trainer(max_steps=0, logger=False), 0)
        True
    """
    if _reached(trainer.global_step, trainer.max_steps):
        return True
    if trainer.should_stop and _can_stop_early(trainer):
        return True
    last_in_epoch = trainer.is_last_batch or batch_idx + 1 >= trainer.num_training_batches
    return last_in_epoch and _reached(trainer.current_epoch + 1, trainer.max_epochs)


class FitEndCallback(pl.Callback):
    """Base of the callbacks that compute at the end of ``fit`` (spectrum, limit, sweep).

    Subclasses implement ``_has_result``, ``_compute`` (compute now, store, log) and
    ``metrics``; they may extend ``_check_partners`` (``setup``) and ``_check_fit``
    (``on_fit_start``, before the first training step).

    Example:
        >>> from lightning_prunelimit.callbacks import HessianSpectrum
        >>> isinstance(HessianSpectrum(), FitEndCallback)
        True
    """

    #: ``loss_fn`` and ``batch_to_xy`` of this callback are shared with the others.
    _shares_data_settings = True
    #: The attributes holding the results, named in messages.
    _result_names: tuple[str, ...] = ()

    def __init__(self) -> None:
        self._fit_index = 0
        self._computed_at: tuple[int, int] | None = None
        self._restored_step: int | None = None
        self._computed_late = False
        self._trained_this_fit = False

    # -- to implement -----------------------------------------------------------------------

    def _has_result(self) -> bool:
        raise NotImplementedError

    def _compute(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        raise NotImplementedError

    def metrics(self) -> dict[str, float]:
        """The scalars of the stored results (empty before any)."""
        raise NotImplementedError

    def _check_partners(self, trainer: pl.Trainer) -> None:
        """Raise when a callback this one needs is missing (``setup``)."""

    def _check_fit(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Raise on anything that would fail at the end of training (``on_fit_start``)."""

    # -- bookkeeping ------------------------------------------------------------------------

    def _is_current(self, trainer: pl.Trainer) -> bool:
        if not self._has_result():
            return False
        if self._restored_step is not None:
            return self._restored_step == trainer.global_step
        return self._computed_at == training_point(trainer, self._fit_index)

    def _mark_computed(self, trainer: pl.Trainer) -> None:
        self._computed_at = training_point(trainer, self._fit_index)
        self._restored_step = None

    def _ensure(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._is_current(trainer):
            self._compute(trainer, pl_module)

    def _point_state(self) -> dict[str, Any]:
        step = self._restored_step
        if step is None and self._computed_at is not None:
            step = self._computed_at[1]
        return {"computed_at_step": step}

    def _load_point_state(self, state_dict: Mapping[str, Any]) -> None:
        step = state_dict.get("computed_at_step")
        self._computed_at = None
        self._restored_step = int(step) if step is not None and self._has_result() else None

    # -- hooks ------------------------------------------------------------------------------

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Check the partner callbacks before anything else runs."""
        if stage == "fit":
            self._restored_step = None
            self._check_partners(trainer)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Start a new fit (results of earlier fits are not reused) and check the wiring."""
        self._fit_index += 1
        self._trained_this_fit = False
        self._check_fit(trainer, pl_module)
        if launched_in_workers(trainer) and trainer.is_global_zero:
            names = ", ".join(f"{type(self).__name__}.{n}" for n in self._result_names)
            rank_zero_warn(
                f"{type(self).__name__} runs in processes started by strategy="
                f"{type(trainer.strategy).__name__}: its results ({names}) stay in those "
                "processes and are None in the launching script. Read the scalars from "
                "trainer.callback_metrics (they come back), or the full results from a "
                "checkpoint: add ModelCheckpoint(save_last=True) and restore them with "
                "callback.load_state_dict(torch.load(path, weights_only=False)['callbacks']"
                "[callback.state_key]); or use strategy='ddp' (processes launched by the script)"
            )

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Training runs in this fit (a resumed fit with nothing left to train skips it)."""
        self._trained_this_fit = True

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        """After the last training batch of the fit: compute (unless already done)."""
        if is_final_training_batch(trainer, batch_idx):
            self._ensure(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Compute now if training stopped unforeseen; put the results into ``last.ckpt``."""
        self._finish(trainer, pl_module)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Last chance: a resumed fit that had nothing left to train skips ``on_train_end``."""
        self._finish(trainer, pl_module)

    def _finish(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._is_current(trainer):
            self._compute(trainer, pl_module)
            self._computed_late = True
        elif self._restored_step is not None:  # reused: the fit started with empty metrics
            put_callback_metrics(trainer, self.metrics())
        group = [c for c in trainer.callbacks if isinstance(c, FitEndCallback)]
        if group and group[-1] is self and any(c._computed_late for c in group):
            for callback in group:
                callback._computed_late = False
            _refresh_last_checkpoints(trainer, trained=self._trained_this_fit)


def _resumed_from(trainer: pl.Trainer, path: str) -> bool:
    """Whether this fit resumed from ``path`` (then, with no step taken, it is at this step)."""
    resumed = trainer.ckpt_path
    return bool(resumed) and Path(resumed).resolve() == Path(path).resolve()


def _refresh_last_checkpoints(trainer: pl.Trainer, *, trained: bool) -> None:
    """Rewrite the ``last.ckpt`` files written at this step so that they hold the results.

    That is a ``last.ckpt`` saved at the current global step, or the one a resumed fit that had
    nothing left to train started from (it holds this very step).
    """
    if trainer.fast_dev_run or trainer.sanity_checking:
        return
    written = False
    for callback in trainer.checkpoint_callbacks:
        path = getattr(callback, "last_model_path", "")
        at_this_step = last_checkpoint_step(callback) == trainer.global_step
        if path and (at_this_step or (not trained and _resumed_from(trainer, path))):
            trainer.save_checkpoint(path, weights_only=bool(callback.save_weights_only))
            written = True
    if not written and trainer.checkpoint_callbacks and trainer.global_step > 0:
        rank_zero_warn(
            "training stopped before its last planned batch, so the fit-end results were "
            "computed after the last checkpoint was written and no checkpoint holds them: pass "
            "ModelCheckpoint(save_last=True) to get them into last.ckpt"
        )
