"""Global one-shot magnitude pruning, then fine-tuning with the pruned weights held at zero."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_warn
from torch import Tensor, nn
from torch.nn.utils import prune

from lightning_prunelimit.callbacks._lookup import find_callback, require_callback
from lightning_prunelimit.callbacks._output import log_scalars, log_wandb, save_figure
from lightning_prunelimit.callbacks.pruning_limit import PruningLimit
from lightning_prunelimit.plotting import plot_layer_sparsity
from lightning_prunelimit.pruning import (
    SparsityReport,
    align_pruning_keys,
    apply_masks,
    check_amount,
    check_parameter_names,
    fold_pruned_entries,
    is_pruned,
    prunable_parameters,
    prune_globally,
    sparsity_report,
)

__all__ = ["GlobalOneShotPruning"]

PREDICTED = "predicted"


def _check_amount(amount: float | str) -> float | str:
    if amount == PREDICTED:
        return PREDICTED
    try:
        return check_amount(amount)  # type: ignore[arg-type]
    except TypeError as error:
        raise TypeError(f"{error} (or the string 'predicted')") from None


class GlobalOneShotPruning(pl.Callback):
    """Prune the smallest weights of the whole network once, then fine-tune with them at zero.

    Global magnitude masks (``lightning_prunelimit.pruning.global_magnitude_masks``: exactly
    ``round(amount * N)`` of the N prunable weights removed, smallest ``|w|`` first) are applied
    once through ``torch.nn.utils.prune``: at the start of training (``on_train_start``), or at
    the start of epoch ``apply_at_epoch``. The rest of training fine-tunes the kept weights.
    The forward pass uses ``weight = weight_orig * weight_mask``, so the pruned entries are zero
    whatever the optimizer does to ``weight_orig`` (momentum, weight decay) and their gradient
    is zero. There is no lottery-ticket rewind, and only Linear/Conv weights are pruned by
    default (no biases, no normalisation layers).

    **amount.** A float in [0, 1), or ``"predicted"``: the sparsity predicted by the
    ``PruningLimit`` callback of the same Trainer. With ``apply_at_epoch`` the spectrum and the
    prediction are computed at that epoch (the other callbacks' compute methods are called);
    without it, a prediction must already exist when training starts (from an earlier fit with
    the same ``PruningLimit`` object, or restored from a checkpoint).

    **Checkpoints.** The masks are kept in the callback's state (CPU bool tensors). Saved model
    weights are written in plain form (``weight = weight_orig * weight_mask``, the live model
    is not touched), so every checkpoint loads into a fresh, unpruned module; on resume the
    masks are re-applied when training starts and fine-tuning continues with the same masks.
    While the callback is attached, checkpoints holding ``weight_orig`` / ``weight_mask`` keys
    (e.g. weights-only saves) also load into a module of either form. With
    ``make_pruning_permanent`` the reparametrisation is removed at ``on_train_end`` (the model
    keeps its zeros); files already written are never modified. ``HessianSpectrum`` /
    ``PruningLimit`` / ``SparsitySweep`` compute after the last training batch, before that,
    so they analyse the reparametrised model (pruned entries held at zero, with zero
    curvature); only when training stops unforeseen do they compute in ``on_train_end``, where
    those listed after this callback see plain weights.

    **DDP.** The masks are computed on rank zero and broadcast, so every rank holds the same.

    **Logs** to every logger: ``pruning/sparsity`` (realised global sparsity, from the masks),
    ``pruning/amount`` (requested) and ``pruning/sparsity/<layer>``. Saves
    ``pruning_sparsity.png`` (per-layer bars) in the run's log directory; with a
    ``WandbLogger`` also the image and a per-layer table (``pruning/layers``). ``verbose=1``
    prints the global sparsity, ``verbose=2`` also each layer's (rank zero).

    Args:
        amount: fraction of the prunable weights to remove, or ``"predicted"``.
        apply_at_epoch: prune at the start of this epoch instead of at the start of training.
        parameters_to_prune: explicit ``(module, name)`` pairs, as for Lightning's
            ``ModelPruning``.
        parameter_names: parameter names taken from each Linear/Conv module.
        make_pruning_permanent: remove the reparametrisation at the end of training.
        verbose: 0, 1 or 2.

    Example:
        >>> import lightning.pytorch as pl
        >>> pruning = GlobalOneShotPruning(amount=0.9)
        >>> trainer = pl.Trainer(max_epochs=5, callbacks=[pruning], logger=False)
        >>> pruning.masks is None  # set when training starts
        True
    """

    def __init__(
        self,
        *,
        amount: float | str,
        apply_at_epoch: int | None = None,
        parameters_to_prune: Sequence[tuple[nn.Module, str]] = (),
        parameter_names: Sequence[str] = ("weight",),
        make_pruning_permanent: bool = True,
        verbose: int = 0,
    ) -> None:
        self.amount = _check_amount(amount)
        if apply_at_epoch is not None and (
            isinstance(apply_at_epoch, bool)
            or not isinstance(apply_at_epoch, int)
            or apply_at_epoch < 0
        ):
            raise ValueError(
                f"apply_at_epoch must be None or an epoch index >= 0, got {apply_at_epoch!r}"
            )
        if verbose not in (0, 1, 2):
            raise ValueError(f"verbose must be 0, 1 or 2, got {verbose!r}")
        self.apply_at_epoch = apply_at_epoch
        self.parameters_to_prune = tuple(parameters_to_prune)
        self.parameter_names = check_parameter_names(parameter_names)
        self.make_pruning_permanent = bool(make_pruning_permanent)
        self.verbose = verbose

        self.masks: dict[str, Tensor] | None = None
        self.applied_amount: float | None = None
        self.report: SparsityReport | None = None
        self._restored = False
        self._applied_this_fit = False
        self._hook: Any = None

    @property
    def state_key(self) -> str:
        """Key of this callback's state in checkpoints."""
        return self._generate_state_key(
            amount=self.amount,
            apply_at_epoch=self.apply_at_epoch,
            parameter_names=self.parameter_names,
        )

    # -- pruning ----------------------------------------------------------------------------

    def _resolve_amount(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> float:
        if self.amount != PREDICTED:
            return float(self.amount)
        limit = find_callback(trainer, PruningLimit)
        if limit is None:
            raise ValueError(
                "amount='predicted' needs a PruningLimit callback (and a HessianSpectrum) in "
                "the same Trainer: add them, or pass a number as amount"
            )
        if self.apply_at_epoch is not None:
            prediction = limit.ensure_predicted(trainer, pl_module)
        elif limit.prediction is None:
            raise ValueError(
                "amount='predicted' but the PruningLimit has no prediction when training "
                "starts: pass apply_at_epoch=<epoch> to predict during this fit, or fit once "
                "with PruningLimit first and pass amount=limit.prediction.sparsity"
            )
        else:
            prediction = limit.prediction
        if not prediction.sparsity < 1.0:
            raise ValueError(
                f"the predicted sparsity is {prediction.sparsity}: pruning every weight is not "
                "possible; check the HessianSpectrum and PruningLimit settings"
            )
        return float(prediction.sparsity)

    def prune(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Tensor]:
        """Compute the global magnitude masks now (rank zero, broadcast) and apply them.

        Must be called on every rank under DDP.

        Returns:
            The keep-masks (CPU bool tensors keyed ``"<module>.<param>"``), also ``self.masks``.
        """
        prunable_parameters(pl_module, self.parameter_names, self.parameters_to_prune)
        amount = self._resolve_amount(trainer, pl_module)
        masks = prune_globally(
            pl_module,
            amount,
            parameter_names=self.parameter_names,
            parameters_to_prune=self.parameters_to_prune,
            share=lambda computed: trainer.strategy.broadcast(computed, src=0),  # rank zero's
        )
        self._record(trainer, masks, amount)
        return masks

    def _apply(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        masks: dict[str, Tensor],
        amount: float,
    ) -> None:
        apply_masks(pl_module, masks)
        self._record(trainer, masks, amount)

    def _record(self, trainer: pl.Trainer, masks: dict[str, Tensor], amount: float) -> None:
        self.masks = masks
        self.applied_amount = amount
        self._applied_this_fit = True
        self.report = sparsity_report(masks)
        self._report(trainer)

    # -- reporting --------------------------------------------------------------------------

    def metrics(self) -> dict[str, float]:
        """The scalars this callback logs (empty before pruning).

        Example:
            >>> GlobalOneShotPruning(amount=0.5).metrics()
            {}
        """
        if self.report is None or self.applied_amount is None:
            return {}
        values = {
            "pruning/sparsity": self.report.global_sparsity,
            "pruning/amount": self.applied_amount,
        }
        for key, value in self.report.per_layer.items():
            values[f"pruning/sparsity/{key}"] = value
        return values

    def _report(self, trainer: pl.Trainer) -> None:
        report, amount = self.report, self.applied_amount
        assert report is not None and amount is not None
        log_scalars(trainer, self.metrics())
        if self.verbose >= 1:
            rank_zero_info(
                f"GlobalOneShotPruning: pruned {report.num_pruned}/{report.num_total} weights, "
                f"sparsity {report.global_sparsity:.4f} (amount {amount:.4f})"
            )
        if self.verbose >= 2:
            for key, value in report.per_layer.items():
                rank_zero_info(
                    f"GlobalOneShotPruning: {key}: sparsity {value:.4f} "
                    f"of {report.per_layer_sizes.get(key, 0)} weights"
                )
        save_figure(
            trainer,
            lambda: plot_layer_sparsity(report.per_layer, amount=amount),
            "pruning_sparsity.png",
            "pruning/figure",
        )
        rows = [
            [key, value, report.per_layer_sizes.get(key, 0)]
            for key, value in report.per_layer.items()
        ]
        log_wandb(
            trainer,
            lambda wandb: {
                "pruning/layers": wandb.Table(columns=["layer", "sparsity", "size"], data=rows)
            },
        )

    # -- hooks and state --------------------------------------------------------------------

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Let checkpoints of either form (pruned or plain keys) load; reset per-fit flags."""
        if self._hook is None:
            self._hook = pl_module.register_load_state_dict_pre_hook(align_pruning_keys)
        if stage == "fit":  # runs before a checkpoint's state is restored into this callback
            self._restored = False
            self._applied_this_fit = False
            self.masks, self.applied_amount, self.report = None, None, None
            if self.amount == PREDICTED:
                require_callback(trainer, PruningLimit, "GlobalOneShotPruning(amount='predicted')")

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Check, before the first training step, that there is something to prune and an amount."""
        prunable_parameters(pl_module, self.parameter_names, self.parameters_to_prune)
        if self.amount == PREDICTED and self.apply_at_epoch is None and not self._restored:
            limit = require_callback(
                trainer, PruningLimit, "GlobalOneShotPruning(amount='predicted')"
            )
            if limit.prediction is None:
                raise ValueError(
                    "amount='predicted' but the PruningLimit has no prediction when training "
                    "starts: pass apply_at_epoch=<epoch> to predict during this fit, or fit once "
                    "with PruningLimit first and pass amount=limit.prediction.sparsity"
                )

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Remove the load hook."""
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Re-apply restored masks, or prune now when no ``apply_at_epoch`` is set."""
        if self._restored and self.masks is not None:
            amount = self.applied_amount
            self._apply(trainer, pl_module, self.masks, amount if amount is not None else 0.0)
        elif self.apply_at_epoch is None:
            self.prune(trainer, pl_module)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Prune at the start of epoch ``apply_at_epoch`` (or the first epoch after it)."""
        if (
            self.apply_at_epoch is not None
            and trainer.current_epoch >= self.apply_at_epoch
            and not self._applied_this_fit
        ):
            self.prune(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Fold this callback's masks into the weights when ``make_pruning_permanent``."""
        if not self._applied_this_fit:
            rank_zero_warn(
                f"GlobalOneShotPruning never pruned: training ended at epoch "
                f"{trainer.current_epoch} before apply_at_epoch={self.apply_at_epoch}; lower "
                "apply_at_epoch or raise max_epochs"
            )
        if not (self.make_pruning_permanent and self.masks):
            return
        for key in self.masks:
            module_name, _, name = key.rpartition(".")
            module = pl_module.get_submodule(module_name) if module_name else pl_module
            if is_pruned(module, name):
                prune.remove(module, name)

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        """Write the saved weights in plain form (``orig * mask``); the live model is untouched."""
        state = checkpoint.get("state_dict")
        if state is None or not self.masks:
            return
        fold_pruned_entries(state, self.masks)

    def state_dict(self) -> dict[str, Any]:
        """The masks (CPU bool tensors) and the amount that produced them."""
        return {
            "masks": None if self.masks is None else dict(self.masks),
            "applied_amount": self.applied_amount,
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore the masks; they are re-applied when training starts."""
        masks = state_dict.get("masks")
        self.masks = None if masks is None else {k: v.to("cpu").bool() for k, v in masks.items()}
        amount = state_dict.get("applied_amount")
        self.applied_amount = None if amount is None else float(amount)
        self.report = None if self.masks is None else sparsity_report(self.masks)
        self._restored = self.masks is not None
