"""The actual pruning limit: accuracy of one-shot pruned copies of the trained model."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor, nn

from lightning_prunelimit.callbacks._batches import (
    FixedBatches,
    collect_batches,
    token_num_samples,
)
from lightning_prunelimit.callbacks._fit_checks import check_forward, eager
from lightning_prunelimit.callbacks._fit_end import FitEndCallback
from lightning_prunelimit.callbacks._lookup import (
    BatchToXY,
    LossFn,
    check_data_settings,
    find_callback,
    resolve_batch_to_xy,
    resolve_loss_fn,
)
from lightning_prunelimit.callbacks._output import (
    log_scalars,
    log_wandb,
    save_figure,
    stage,
    stop_if_asked,
)
from lightning_prunelimit.callbacks.pruning_limit import PruningLimit
from lightning_prunelimit.plotting import plot_sparsity_sweep
from lightning_prunelimit.pruning import (
    CRITERIA,
    DEFAULT_CONFIDENCE,
    DEFAULT_REFIT_LR,
    DEFAULT_SIGNIFICANCE,
    DEFAULT_SPARSITIES,
    SampleEvaluation,
    SparsitySweepResult,
    actual_pruning_limit,
    check_level,
    check_refit_lr,
    check_search_settings,
    check_sparsities,
    evaluate_samples,
    prunable_parameters,
    refit_kept_weights,
    restore_on_exit,
)
from lightning_prunelimit.pruning.actual_limit import resolve_max_drop

__all__ = ["DEFAULT_SPARSITIES", "SparsitySweep"]

#: The grid of a ``fast_dev_run``: two points, no refinement.
FAST_DEV_RUN_SPARSITIES: tuple[float, ...] = (0.0, 0.5)


class SparsitySweep(FitEndCallback):
    """Measure the actual pruning limit: accuracy against sparsity without fine-tuning.

    At the end of the last training batch of the fit (so the result is in the checkpoints
    written at the end, ``last.ckpt`` included, and its scalars in ``trainer.callback_metrics``)
    the trained model is evaluated with its prunable weights (Linear/Conv weights by default)
    globally magnitude-pruned to each sparsity of a coarse grid; the search is then refined by
    bisection between the largest passing grid point and the next one (``refine_steps`` more
    evaluations; about 20 in all by default). The search is
    :func:`lightning_prunelimit.pruning.actual_pruning_limit`; this callback feeds it the
    Trainer's data. The model itself is never changed: weights are swapped in place for the
    evaluation and restored exactly afterwards. Under ``fast_dev_run`` two points are
    evaluated on two batches. Before training, one batch of the evaluation data goes through
    ``batch_to_xy``, ``forward`` and the loss.

    **Criterion.** By default (``criterion="drop"``, the paper's) a sparsity *passes* when its
    top-1 accuracy is at least the dense accuracy minus ``max_drop`` (``metric="accuracy"``),
    or its mean loss at most the dense loss plus ``max_drop`` (``metric="loss"``).
    ``criterion="paired_test"`` asks instead that it be *not significantly worse than dense*:
    a one-sided paired test on the same samples (each sample's correctness, or loss, pruned
    against dense) does not show a drop above ``max_drop`` at level ``significance``, so a
    sparsity does not fail on the noise of a few samples. The **actual limit** is the largest
    evaluated sparsity that passes the criterion; the limits of both criteria are kept
    (``result.drop_limit``, ``result.paired_test_limit``).

    **Interval.** ``result.actual_limit_interval`` is where the same search on another
    evaluation sample of the same size would put the limit, at level ``confidence``: each
    sample's correctness and loss are kept at every evaluated sparsity and resampled (a
    bootstrap, no further model evaluations; see
    :func:`~lightning_prunelimit.pruning.bootstrap_limit_interval`).

    **Loss and layout.** ``loss_fn`` and ``batch_to_xy`` given here or to any callback of the
    Trainer, else the module's ``loss_fn`` / ``criterion`` (and ``batch_to_xy``). Inputs are
    cast to the model's floating dtype (``precision="64-true"`` with float32 data works).

    **Data.** The validation data (``trainer.val_dataloaders``, or the validation loader the
    module / datamodule defines), or the training data without augmentation when there is none;
    ``num_samples`` samples drawn once with ``seed`` (default all). Under DDP each rank
    evaluates a disjoint share and the sums (correct predictions, summed loss, sample count)
    are all-reduced, so every rank gets the one-process result.

    **Re-fit.** The theory's limit is the sparsity at which *some* sparse weight vector keeps
    the loss, i.e. with the kept weights re-fitted. With ``refit_steps > 0``, every probed
    sparsity (except 0) is also evaluated after
    :func:`~lightning_prunelimit.pruning.refit_kept_weights`: that many masked Adam steps at
    ``refit_lr`` on the training data (the same ``num_samples`` and ``seed``, every rank on
    the whole sample so all ranks re-fit the same model), pruned weights held at zero, the
    model restored exactly afterwards. The re-fit curve gets its own bisection, with the same
    criterion against the same dense model, and its limit is reported beside the one-shot one
    (``result.refit_actual_limit``, logged as ``sparsity_sweep/refit_actual_limit``, with its
    interval). Each re-fitted point costs ``refit_steps`` training steps, so only the points
    the re-fitted curve's own search needs are re-fitted: a binary search over the grid
    starting at the one-shot limit, then ``refine_steps`` bisection steps (about 10 re-fits
    instead of one at every evaluated sparsity; ``result.refit_accuracies`` is NaN elsewhere).

    **Logs** to every logger: ``sparsity_sweep/actual_limit`` with ``_lo`` and ``_hi`` (its
    interval), ``sparsity_sweep/drop_limit``, ``sparsity_sweep/paired_test_limit``,
    ``sparsity_sweep/dense_accuracy`` and ``sparsity_sweep/dense_loss`` (and
    ``sparsity_sweep/refit_actual_limit``, ``_lo``, ``_hi``, ``refit_drop_limit``,
    ``refit_paired_test_limit``). Saves
    ``sparsity_sweep.png`` (accuracy against sparsity, with the actual limit and, when a
    ``PruningLimit`` is in the Trainer, the predicted sparsity and its interval: prediction and
    reality on one plot) in the run's log directory; with a
    ``WandbLogger`` also the image, the curve as a table (``sparsity_sweep/curve``) and a line
    plot (``sparsity_sweep/accuracy``).

    **Result** (also saved in checkpoints): ``result``, a :class:`SparsitySweepResult`.

    Args:
        sparsities: the coarse grid (0 is always added); default ``DEFAULT_SPARSITIES``
            (0, 0.1, ..., 0.9, 0.95, 0.99).
        metric: ``"accuracy"`` or ``"loss"``.
        max_drop: allowed accuracy drop (or loss rise) from the dense model, >= 0; default 0
            (at least the dense accuracy).
        refine_steps: bisection steps after the grid.
        num_samples: evaluation samples; ``None`` uses all.
        seed: seed of the sample draw.
        loss_fn: the loss; default the module's ``loss_fn`` / ``criterion``.
        batch_to_xy: maps a batch to ``(inputs, targets)``.
        parameters_to_prune: explicit ``(module, name)`` pairs to prune.
        parameter_names: parameter names taken from each Linear/Conv module.
        refit_steps: masked optimizer steps re-fitting the kept weights at each sparsity (0:
            one-shot only).
        refit_lr: learning rate of the re-fit (Adam).
        criterion: ``"drop"`` (default, the paper's) or ``"paired_test"``.
        significance: level of the paired test (``criterion="paired_test"``; the
            ``paired_test_limit`` is reported with either criterion).
        confidence: level of the measured limit's interval.
        tolerance: deprecated name of ``max_drop`` (``FutureWarning``).

    Example:
        >>> import lightning.pytorch as pl
        >>> sweep = SparsitySweep(max_drop=0.01)
        >>> trainer = pl.Trainer(max_epochs=1, callbacks=[sweep], logger=False)
        >>> sweep.result is None  # filled in at the end of trainer.fit(...)
        True
    """

    def __init__(
        self,
        *,
        sparsities: Sequence[float] | None = None,
        metric: str = "accuracy",
        max_drop: float | None = None,
        refine_steps: int = 8,
        num_samples: int | None = None,
        seed: int = 0,
        loss_fn: LossFn | None = None,
        batch_to_xy: BatchToXY | None = None,
        parameters_to_prune: Sequence[tuple[nn.Module, str]] = (),
        parameter_names: Sequence[str] = ("weight",),
        refit_steps: int = 0,
        refit_lr: float = DEFAULT_REFIT_LR,
        criterion: str = "drop",
        significance: float = DEFAULT_SIGNIFICANCE,
        confidence: float = DEFAULT_CONFIDENCE,
        tolerance: float | None = None,
    ) -> None:
        super().__init__()
        max_drop = resolve_max_drop(max_drop, tolerance, "SparsitySweep")
        if criterion not in CRITERIA:
            raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
        self.criterion = criterion
        self.significance = check_level("significance", significance)
        self.confidence = check_level("confidence", confidence)
        if isinstance(refit_steps, bool) or not isinstance(refit_steps, int) or refit_steps < 0:
            raise ValueError(f"refit_steps must be an int >= 0, got {refit_steps!r}")
        self.refit_steps = refit_steps
        self.refit_lr = check_refit_lr(refit_lr)
        self.sparsities = check_sparsities(sparsities)
        check_search_settings(metric, max_drop, refine_steps)
        if num_samples is not None and (
            isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1
        ):
            raise ValueError(f"num_samples must be a positive int or None, got {num_samples!r}")
        if isinstance(parameter_names, str):
            raise TypeError(f"parameter_names must be a sequence, pass ({parameter_names!r},)")
        check_data_settings(loss_fn, batch_to_xy)
        self.metric = metric
        self.max_drop = float(max_drop)
        self.refine_steps = refine_steps
        self.num_samples = num_samples
        self.seed = seed
        self.loss_fn = loss_fn
        self.batch_to_xy = batch_to_xy
        self.parameters_to_prune = tuple(parameters_to_prune)
        self.parameter_names = tuple(parameter_names)
        self.result: SparsitySweepResult | None = None

    @property
    def state_key(self) -> str:
        """Key of this callback's state in checkpoints."""
        if self.criterion == "drop":  # the key of checkpoints written before `criterion`
            return self._generate_state_key(metric=self.metric, tolerance=self.max_drop)
        return self._generate_state_key(
            metric=self.metric, tolerance=self.max_drop, criterion=self.criterion
        )

    @property
    def tolerance(self) -> float:
        """Deprecated name of :attr:`max_drop`."""
        warnings.warn(
            "SparsitySweep.tolerance is renamed max_drop (the allowed accuracy drop)",
            FutureWarning,
            stacklevel=2,
        )
        return self.max_drop

    # -- computation ------------------------------------------------------------------------

    _result_names = ("result",)

    def sweep(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> SparsitySweepResult:
        """Run the sweep now; store, log and plot the result.

        Must be called on every rank under DDP (the sums are all-reduced).
        """
        loss_fn = resolve_loss_fn(self.loss_fn, pl_module, trainer)
        batch_to_xy = resolve_batch_to_xy(self.batch_to_xy, pl_module, trainer)

        def sample(split: str, shard: bool) -> FixedBatches:
            return collect_batches(
                trainer,
                pl_module,
                split=split,
                num_samples=token_num_samples(trainer, self.num_samples, split),
                seed=self.seed,
                batch_to_xy=batch_to_xy,
                shard=shard,
            )

        fixed = sample("val", shard=True)
        sparsities, refine_steps = self.sparsities, self.refine_steps
        if trainer.fast_dev_run:  # check the wiring at a token size
            sparsities, refine_steps = FAST_DEV_RUN_SPARSITIES, 0

        def reduce(sums: Tensor) -> Tensor:
            return trainer.strategy.reduce(sums, reduce_op="sum")

        gather = None
        if trainer.world_size > 1:

            def gather(values: Tensor) -> Tensor:
                return _gather_shards(trainer, values)

        def evaluate(sparsity: float, masks: Mapping[str, Tensor]) -> SampleEvaluation:
            return evaluate_samples(pl_module, loss_fn, fixed.batches, reduce=reduce, gather=gather)

        evaluate_refit = None
        refit_steps = min(self.refit_steps, 2) if trainer.fast_dev_run else self.refit_steps
        if refit_steps:
            refit_batches = sample("train", shard=False).batches  # every rank: the same re-fit

            def refit_loss(outputs: Any, targets: Tensor) -> Tensor:
                stop_if_asked(trainer)  # once per re-fit step: SIGTERM stops within one
                return loss_fn(outputs, targets)

            def evaluate_refit(sparsity: float, masks: Mapping[str, Tensor]) -> SampleEvaluation:
                with restore_on_exit(pl_module), torch.inference_mode(False), torch.enable_grad():
                    refit_kept_weights(
                        pl_module, masks, refit_loss, refit_batches, steps=refit_steps,
                        lr=self.refit_lr, seed=self.seed,
                    )  # fmt: skip
                    return evaluate(sparsity, masks)

        total = len(sparsities) + 2 * refine_steps + (refine_steps + 5 if refit_steps else 0)
        with eager(), stage(trainer, total, "Sparsity sweep") as progress:
            try:
                result = actual_pruning_limit(
                    pl_module,
                    evaluate,
                    sparsities=sparsities,
                    metric=self.metric,
                    max_drop=self.max_drop,
                    refine_steps=refine_steps,
                    parameter_names=self.parameter_names,
                    parameters_to_prune=self.parameters_to_prune,
                    progress=progress,
                    evaluate_refit=evaluate_refit,
                    criterion=self.criterion,
                    significance=self.significance,
                    confidence=self.confidence,
                    seed=self.seed,
                )
            except ValueError as error:
                raise ValueError(f"SparsitySweep on the {fixed.split} data: {error}") from None
        self.result = dataclasses.replace(
            result,
            num_samples=fixed.total_samples or fixed.num_samples,
            split=fixed.split,
            refit_steps=refit_steps,
        )
        self._mark_computed(trainer)
        self._report(trainer, pl_module)
        return self.result

    def _has_result(self) -> bool:
        return self.result is not None

    def _compute(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.sweep(trainer, pl_module)

    def _check_fit(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        prunable_parameters(pl_module, self.parameter_names, self.parameters_to_prune)
        loss_fn = resolve_loss_fn(self.loss_fn, pl_module, trainer)
        batch_to_xy = resolve_batch_to_xy(self.batch_to_xy, pl_module, trainer)
        check_forward("SparsitySweep", trainer, pl_module, loss_fn, batch_to_xy, split="val")

    # -- reporting --------------------------------------------------------------------------

    def metrics(self) -> dict[str, float]:
        """The scalars this callback logs (empty before the sweep).

        Example:
            >>> SparsitySweep().metrics()
            {}
        """
        if self.result is None:
            return {}
        result = self.result
        values = {
            "sparsity_sweep/actual_limit": result.actual_limit,
            "sparsity_sweep/dense_accuracy": result.dense_accuracy,
            "sparsity_sweep/dense_loss": result.dense_loss,
        }
        for name in ("actual_limit", "refit_actual_limit"):
            limit = getattr(result, name)
            if limit is None:
                continue
            values[f"sparsity_sweep/{name}"] = limit
            interval = getattr(result, f"{name}_interval")
            if interval is not None:
                values[f"sparsity_sweep/{name}_lo"] = interval[0]
                values[f"sparsity_sweep/{name}_hi"] = interval[1]
        for name in ("drop_limit", "paired_test_limit", "refit_drop_limit"):
            if getattr(result, name) is not None:
                values[f"sparsity_sweep/{name}"] = getattr(result, name)
        if result.refit_paired_test_limit is not None:
            values["sparsity_sweep/refit_paired_test_limit"] = result.refit_paired_test_limit
        return values

    def _report(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        result = self.result
        assert result is not None
        limit = find_callback(trainer, PruningLimit)
        predicted = interval = None
        if limit is not None:
            prediction = limit.ensure_predicted(trainer, pl_module)
            predicted, interval = prediction.sparsity, prediction.sparsity_interval
        log_scalars(trainer, self.metrics(), progress_bar=["sparsity_sweep/actual_limit"])
        save_figure(
            trainer,
            lambda: plot_sparsity_sweep(
                result, predicted_sparsity=predicted, predicted_interval=interval
            ),
            "sparsity_sweep.png",
            "sparsity_sweep/figure",
        )
        rows = [list(row) for row in zip(result.sparsities, result.accuracies, result.losses)]

        def media(wandb: Any) -> dict[str, Any]:
            table = wandb.Table(columns=["sparsity", "accuracy", "loss"], data=rows)
            return {
                "sparsity_sweep/curve": table,
                "sparsity_sweep/accuracy": wandb.plot.line(
                    table, "sparsity", "accuracy", title="Accuracy against sparsity"
                ),
            }

        log_wandb(trainer, media)

    # -- state ------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The result as plain data (floats and lists)."""
        return {
            "result": None if self.result is None else self.result.to_dict(),
            **self._point_state(),
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore the result saved by :meth:`state_dict`."""
        result = state_dict.get("result")
        self.result = None if result is None else SparsitySweepResult.from_dict(result)
        self._load_point_state(state_dict)


def _gather_shards(trainer: pl.Trainer, values: Tensor) -> Tensor:
    """Every rank's per-sample vector, back in the one-process order of the sample.

    Rank ``r`` of ``W`` holds sample positions ``r, r + W, ...`` (see ``collect_batches``);
    the shares are padded to one length for the all-gather and interleaved back.
    """
    world = trainer.world_size
    count = torch.tensor([values.numel()], device=values.device)
    counts = trainer.strategy.all_gather(count).reshape(world).tolist()
    longest = max(int(c) for c in counts)
    padded = torch.zeros(longest, dtype=values.dtype, device=values.device)
    padded[: values.numel()] = values
    shares = trainer.strategy.all_gather(padded).reshape(world, longest)
    whole = torch.empty(sum(int(c) for c in counts), dtype=values.dtype, device=values.device)
    for rank, size in enumerate(counts):
        whole[rank::world][: int(size)] = shares[rank, : int(size)]
    return whole
