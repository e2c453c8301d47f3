"""The actual pruning limit: accuracy of one-shot pruned copies of the trained model."""

from __future__ import annotations

import contextlib
import math
import numbers
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor, nn

from lightning_prunelimit.callbacks._shared import (
    BatchToXY,
    FixedBatches,
    LossFn,
    collect_batches,
    eval_mode,
    find_callback,
    is_pruned,
    log_scalars,
    log_wandb,
    progress_bar,
    resolve_loss_fn,
    save_figure,
)
from lightning_prunelimit.callbacks.pruning_limit import PruningLimit
from lightning_prunelimit.callbacks.sparsity_sweep_result import SparsitySweepResult
from lightning_prunelimit.plotting import plot_sparsity_sweep
from lightning_prunelimit.pruning import (
    DEFAULT_REFIT_LR,
    check_refit_lr,
    effective_parameter,
    global_magnitude_masks,
    num_to_prune,
    prunable_parameters,
    refit_kept_weights,
    restore_on_exit,
)

__all__ = ["DEFAULT_SPARSITIES", "SparsitySweep"]

#: The coarse grid of sparsities evaluated before refining.
DEFAULT_SPARSITIES: tuple[float, ...] = (
    0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99,
)  # fmt: skip


def _check_sparsities(sparsities: Sequence[float] | None) -> tuple[float, ...]:
    if sparsities is None:
        return DEFAULT_SPARSITIES
    values = []
    for s in sparsities:
        if isinstance(s, bool) or not isinstance(s, numbers.Real) or not 0.0 <= float(s) < 1.0:
            raise ValueError(
                f"sparsities must be numbers in [0, 1), got {s!r}: pass fractions of weights "
                "to remove, e.g. (0.5, 0.9)"
            )
        values.append(float(s))
    if not values:
        raise ValueError("sparsities is empty: pass at least one sparsity, or None")
    return tuple(sorted(set(values) | {0.0}))


class _MaskedWeights:
    """Temporarily replaces the prunable weights by globally magnitude-pruned copies.

    One stable sort of all ``|w|`` (the effective values, so weights already pruned by torch
    prune rank first) serves every sparsity: the ``round(s * N)`` first positions of the order
    are zeroed, which are exactly the masks of ``global_magnitude_masks`` (ties go by position).
    The original values are restored exactly by :meth:`restore`.
    """

    def __init__(self, entries: list[tuple[str, nn.Module, str]]) -> None:
        self._targets: list[tuple[nn.Module, str, Tensor, Tensor, Any]] = []
        magnitudes = []
        for _, module, name in entries:
            param, attribute = module._parameters.get(name), None
            if is_pruned(module, name):  # the forward uses weight = weight_orig * weight_mask
                param = module._parameters[name + "_orig"]
                attribute = getattr(module, name)  # recomputed at each forward; put back after
            self._targets.append((module, name, param, param.detach().clone(), attribute))
            magnitudes.append(effective_parameter(module, name).reshape(-1).abs().to(torch.float64))
        flat = torch.cat(magnitudes)
        self.num_weights = flat.numel()
        self._order = torch.sort(flat, stable=True).indices

    @torch.no_grad()
    def prune(self, sparsity: float) -> None:
        """Zero the ``round(sparsity * N)`` smallest weights (from the original values)."""
        keep = torch.ones(self.num_weights, dtype=torch.bool, device=self._order.device)
        keep[self._order[: num_to_prune(sparsity, self.num_weights)]] = False
        offset = 0
        for _, _, param, original, _ in self._targets:
            size = original.numel()
            part = keep[offset : offset + size].view_as(original).to(original.device)
            param.copy_(original * part)
            offset += size

    @torch.no_grad()
    def restore(self) -> None:
        """Put every weight (and torch prune's cached attribute) back exactly as found."""
        for module, name, param, original, attribute in self._targets:
            param.copy_(original)
            if attribute is not None:
                setattr(module, name, attribute)


@contextlib.contextmanager
def _masked_weights(entries: list[tuple[str, nn.Module, str]]) -> Iterator[_MaskedWeights]:
    weights = _MaskedWeights(entries)
    try:
        yield weights
    finally:
        weights.restore()


class SparsitySweep(pl.Callback):
    """Measure the actual pruning limit: accuracy against sparsity without fine-tuning.

    At ``on_train_end`` the trained model is evaluated with its prunable weights (Linear/Conv
    weights by default) globally magnitude-pruned to each sparsity of a coarse grid; the search
    is then refined by bisection between the largest passing grid point and the next one
    (``refine_steps`` more evaluations; about 20 in all by default). The model itself is never
    changed: weights are swapped in place for the evaluation and restored exactly afterwards.
    One global sort of ``|w|`` serves every sparsity.

    A sparsity *passes* when its top-1 accuracy is at least the dense accuracy minus
    ``tolerance`` (``metric="accuracy"``), or its mean loss at most the dense loss plus
    ``tolerance`` (``metric="loss"``). The **actual limit** is the largest evaluated sparsity
    that passes.

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
    (``result.refit_actual_limit``, logged as ``sparsity_sweep/refit_actual_limit``). Each
    re-fitted point costs ``refit_steps`` training steps.

    **Logs** to every logger: ``sparsity_sweep/actual_limit``, ``sparsity_sweep/dense_accuracy``
    and ``sparsity_sweep/dense_loss``. Saves ``sparsity_sweep.png`` (accuracy against
    sparsity, with the actual limit and, when a ``PruningLimit`` is in the Trainer, the
    predicted sparsity: prediction and reality on one plot) in the run's log directory; with a
    ``WandbLogger`` also the image, the curve as a table (``sparsity_sweep/curve``) and a line
    plot (``sparsity_sweep/accuracy``).

    **Result** (also saved in checkpoints): ``result``, a :class:`SparsitySweepResult`.

    Args:
        sparsities: the coarse grid (0 is always added); default ``DEFAULT_SPARSITIES``
            (0, 0.1, ..., 0.9, 0.95, 0.99).
        metric: ``"accuracy"`` or ``"loss"``.
        tolerance: allowed accuracy drop (or loss rise), >= 0.
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

    Example:
        >>> import lightning.pytorch as pl
        >>> sweep = SparsitySweep(tolerance=0.01)
        >>> trainer = pl.Trainer(max_epochs=1, callbacks=[sweep], logger=False)
        >>> sweep.result is None  # filled in at the end of trainer.fit(...)
        True
    """

    def __init__(
        self,
        sparsities: Sequence[float] | None = None,
        metric: str = "accuracy",
        tolerance: float = 0.0,
        refine_steps: int = 8,
        *,
        num_samples: int | None = None,
        seed: int = 0,
        loss_fn: LossFn | None = None,
        batch_to_xy: BatchToXY | None = None,
        parameters_to_prune: Sequence[tuple[nn.Module, str]] = (),
        parameter_names: Sequence[str] = ("weight",),
        refit_steps: int = 0,
        refit_lr: float = DEFAULT_REFIT_LR,
    ) -> None:
        self.sparsities = _check_sparsities(sparsities)
        if metric not in ("accuracy", "loss"):
            raise ValueError(f"metric must be 'accuracy' or 'loss', got {metric!r}")
        if isinstance(tolerance, bool) or not isinstance(tolerance, numbers.Real):
            raise TypeError(f"tolerance must be a number >= 0, got {tolerance!r}")
        if not (math.isfinite(float(tolerance)) and float(tolerance) >= 0):
            raise ValueError(f"tolerance must be finite and >= 0, got {tolerance}")
        if isinstance(refine_steps, bool) or not isinstance(refine_steps, int) or refine_steps < 0:
            raise ValueError(f"refine_steps must be an int >= 0, got {refine_steps!r}")
        if num_samples is not None and (
            isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1
        ):
            raise ValueError(f"num_samples must be a positive int or None, got {num_samples!r}")
        if isinstance(parameter_names, str):
            raise TypeError(f"parameter_names must be a sequence, pass ({parameter_names!r},)")
        if isinstance(refit_steps, bool) or not isinstance(refit_steps, int) or refit_steps < 0:
            raise ValueError(f"refit_steps must be an int >= 0, got {refit_steps!r}")
        self.refit_steps = refit_steps
        self.refit_lr = check_refit_lr(refit_lr)
        self.metric = metric
        self.tolerance = float(tolerance)
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
        return self._generate_state_key(metric=self.metric, tolerance=self.tolerance)

    # -- computation ------------------------------------------------------------------------

    def _evaluate(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        loss_fn: LossFn,
        fixed: FixedBatches,
    ) -> tuple[float, float]:
        """Top-1 accuracy (NaN if the outputs are not class scores) and mean loss."""
        device = next(pl_module.parameters()).device
        sums = torch.zeros(4, dtype=torch.float64, device=device)  # correct, loss, count, bad
        with torch.no_grad(), eval_mode(pl_module):
            for inputs, targets in fixed.batches:
                outputs = pl_module(inputs)
                size = targets.shape[0]
                sums[1] += float(loss_fn(outputs, targets)) * size
                sums[2] += size
                if (
                    isinstance(outputs, Tensor)
                    and outputs.ndim == 2
                    and targets.ndim == 1
                    and not targets.is_floating_point()
                ):
                    sums[0] += float((outputs.argmax(dim=1) == targets).sum())
                else:
                    sums[3] += 1
        sums = trainer.strategy.reduce(sums, reduce_op="sum")
        correct, loss, count, bad = sums.tolist()
        accuracy = math.nan if bad else correct / count
        return accuracy, loss / count

    def sweep(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> SparsitySweepResult:
        """Run the sweep now; store, log and plot the result.

        Must be called on every rank under DDP (the sums are all-reduced).
        """
        entries = prunable_parameters(pl_module, self.parameter_names, self.parameters_to_prune)
        loss_fn = resolve_loss_fn(self.loss_fn, pl_module)
        fixed = collect_batches(
            trainer,
            pl_module,
            split="val",
            num_samples=self.num_samples,
            seed=self.seed,
            batch_to_xy=self.batch_to_xy,
        )
        refit_batches = None
        if self.refit_steps:
            refit_batches = collect_batches(
                trainer,
                pl_module,
                split="train",
                num_samples=self.num_samples,
                seed=self.seed,
                batch_to_xy=self.batch_to_xy,
                shard=False,
            ).batches
        points: dict[float, tuple[float, float]] = {}
        refit_points: dict[float, tuple[float, float]] = {}
        total = len(self.sparsities) + self.refine_steps * (2 if self.refit_steps else 1)
        with (
            _masked_weights(entries) as weights,
            progress_bar(trainer, total, "Sparsity sweep") as progress,
        ):

            def evaluate(sparsity: float) -> None:
                weights.prune(sparsity)
                points[sparsity] = self._evaluate(trainer, pl_module, loss_fn, fixed)
                if refit_batches is not None and sparsity == 0.0:
                    refit_points[sparsity] = points[sparsity]
                elif refit_batches is not None:
                    masks = global_magnitude_masks(
                        pl_module,
                        sparsity,
                        parameter_names=self.parameter_names,
                        parameters_to_prune=self.parameters_to_prune,
                    )
                    with restore_on_exit(pl_module):
                        refit_kept_weights(
                            pl_module,
                            masks,
                            loss_fn,
                            refit_batches,
                            steps=self.refit_steps,
                            lr=self.refit_lr,
                            seed=self.seed,
                        )
                        refit_points[sparsity] = self._evaluate(trainer, pl_module, loss_fn, fixed)
                progress(len(points), total)

            for sparsity in self.sparsities:
                evaluate(sparsity)
            dense_accuracy, dense_loss = points[0.0]
            if self.metric == "accuracy" and math.isnan(dense_accuracy):
                raise ValueError(
                    "metric='accuracy' needs class scores (batch, classes) and integer "
                    "targets (batch,): use metric='loss' for other outputs"
                )
            if not math.isfinite(dense_loss):
                raise ValueError(
                    f"the dense model's loss on the {fixed.split} data is {dense_loss}: the "
                    "trained model or its data has non-finite values, so no sparsity can be "
                    "compared with it (check the learning rate and the inputs)"
                )

            def passes(sparsity: float, table: dict[float, tuple[float, float]]) -> bool:
                accuracy, loss = table[sparsity]
                if self.metric == "loss":
                    return loss <= dense_loss + self.tolerance
                return accuracy >= dense_accuracy - self.tolerance

            def search(table: dict[float, tuple[float, float]]) -> float:
                low = max(s for s in table if passes(s, table))
                above = [s for s in table if s > low]
                if above:
                    high = min(above)
                    for _ in range(self.refine_steps):
                        middle = (low + high) / 2
                        counts = {num_to_prune(s, weights.num_weights) for s in (low, middle, high)}
                        if len(counts) < 3:  # no model between low and high is left to try
                            break
                        evaluate(middle)
                        low, high = (middle, high) if passes(middle, table) else (low, middle)
                return max(s for s in table if passes(s, table))

            low = search(points)
            refit_low = search(refit_points) if refit_batches is not None else None
            low = max(s for s in points if passes(s, points))  # the re-fit search adds points
        ordered = sorted(points)
        self.result = SparsitySweepResult(
            sparsities=tuple(ordered),
            accuracies=tuple(points[s][0] for s in ordered),
            losses=tuple(points[s][1] for s in ordered),
            actual_limit=low,
            dense_accuracy=dense_accuracy,
            tolerance=self.tolerance,
            metric=self.metric,
            num_samples=fixed.total_samples or fixed.num_samples,
            split=fixed.split,
            refit_accuracies=tuple(refit_points[s][0] for s in ordered) if refit_points else None,
            refit_losses=tuple(refit_points[s][1] for s in ordered) if refit_points else None,
            refit_actual_limit=refit_low,
            refit_steps=self.refit_steps,
        )
        self._report(trainer, pl_module)
        return self.result

    # -- reporting --------------------------------------------------------------------------

    def metrics(self) -> dict[str, float]:
        """The scalars this callback logs (empty before the sweep).

        Example:
            >>> SparsitySweep().metrics()
            {}
        """
        if self.result is None:
            return {}
        metrics = {
            "sparsity_sweep/actual_limit": self.result.actual_limit,
            "sparsity_sweep/dense_accuracy": self.result.dense_accuracy,
            "sparsity_sweep/dense_loss": self.result.dense_loss,
        }
        if self.result.refit_actual_limit is not None:
            metrics["sparsity_sweep/refit_actual_limit"] = self.result.refit_actual_limit
        return metrics

    def _report(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        result = self.result
        assert result is not None
        limit = find_callback(trainer, PruningLimit)
        predicted = None
        if limit is not None:
            predicted = limit.ensure_predicted(trainer, pl_module).sparsity
        log_scalars(trainer, self.metrics())
        save_figure(
            trainer,
            lambda: plot_sparsity_sweep(result, predicted_sparsity=predicted),
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

    # -- hooks and state --------------------------------------------------------------------

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Sweep the trained model."""
        self.sweep(trainer, pl_module)

    def state_dict(self) -> dict[str, Any]:
        """The result as plain data (floats and lists)."""
        return {"result": None if self.result is None else self.result.to_dict()}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore the result saved by :meth:`state_dict`."""
        result = state_dict.get("result")
        self.result = None if result is None else SparsitySweepResult.from_dict(result)
