"""The predicted pruning limit of the trained network: how sparse it can be pruned."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities.rank_zero import rank_zero_warn
from torch import Tensor, nn

from lightning_prunelimit.callbacks._batches import (
    collect_batches,
    known_num_samples,
    token_num_samples,
)
from lightning_prunelimit.callbacks._fit_checks import check_curvature_parameters, eager
from lightning_prunelimit.callbacks._fit_end import FitEndCallback
from lightning_prunelimit.callbacks._lookup import (
    BatchToXY,
    LossFn,
    check_data_settings,
    require_callback,
    resolve_batch_to_xy,
    resolve_loss_fn,
    training_point,
)
from lightning_prunelimit.callbacks._output import (
    ProgressOperator,
    log_scalars,
    log_wandb,
    save_figure,
    stage,
)
from lightning_prunelimit.callbacks.hessian_spectrum import HessianSpectrum
from lightning_prunelimit.curvature import Spectrum
from lightning_prunelimit.limit import (
    DEFAULT_EPSILON_BATCH_SIZE,
    DEFAULT_ZERO_ROW_TOLERANCE,
    NEGATIVE_MODES,
    LimitPrediction,
    LimitTarget,
    ZeroCurvature,
    check_epsilon,
    predict_pruning_limit,
    resolve_epsilon,
    with_sample_error,
    zero_curvature_fraction,
)
from lightning_prunelimit.limit.targeted_spectrum import AUTO_MAX_PROBES, interval_parts
from lightning_prunelimit.plotting import plot_limit_trajectory, plot_pruning_limit
from lightning_prunelimit.pruning import (
    check_parameters_covered,
    effective_parameter,
    prunable_coordinates,
    prunable_parameters,
)

__all__ = ["PruningLimit"]


class PruningLimit(FitEndCallback):
    """Predict the pruning limit of the trained network from its Hessian spectrum.

    At the end of the last training batch of the fit (so the prediction is in the checkpoints
    written at the end, ``last.ckpt`` included, and its scalars in ``trainer.callback_metrics``
    for monitors and sweepers), or when :meth:`predict` is called (e.g. by
    ``GlobalOneShotPruning`` at an epoch), it takes the spectrum of the ``HessianSpectrum``
    callback of the same Trainer (asking it to compute first if it has not yet at this point of
    training, so the order of the callbacks does not matter), the prunable weights (Linear and
    Conv weights, see ``lightning_prunelimit.pruning.prunable_parameters``) for the distance R,
    and the loss tolerance epsilon, and solves for the smallest kept fraction rho with
    ``rho >= 1 - G(R(rho))`` (``lightning_prunelimit.limit.predict_pruning_limit``).

    **Before training** (``setup`` / ``on_fit_start``): the ``HessianSpectrum`` is there, the
    model has prunable weights, and every one of them is among the Hessian's parameters (a
    frozen layer is not, by default); each failure says how to fix it.

    **Accuracy.** ``prediction.sparsity_interval`` bounds the sparsity the exact Hessian
    spectrum would predict (the Lanczos run's quadrature error and the probes' sampling error,
    see ``lightning_prunelimit.limit.width_bounds``). With ``HessianSpectrum(num_iters="auto")``
    this callback gives the spectrum its stop rule (enough steps for the quadrature part to be
    at most the spectrum's ``tolerance`` wide); with a fixed ``num_iters`` whose quadrature
    interval is wider, it warns and names the fix.

    **Epsilon.** A number, or ``"batch_loss_std"``: the standard deviation of the mean
    training loss of a batch of ``epsilon_batch_size`` samples drawn without replacement from
    the ``HessianSpectrum``'s fixed sample (same ``num_samples``, seed and ``batch_to_xy``; no
    augmentation), computed exactly from per-sample losses
    (``lightning_prunelimit.limit.batch_loss_std``): independent of the loader's order and
    batch size. The loss is the one given here or to any callback of the Trainer, else the
    module's ``loss_fn`` / ``criterion``. Under DDP every rank evaluates the whole sample (one
    forward pass), so all ranks get the one-process value.

    **Zero curvature.** Exactly flat directions (exactly-zero Hessian rows) are removed from
    the spectrum and counted exactly by ``HessianSpectrum``; they are counted once. With
    ``zero_curvature=True`` the paper's estimate from ``num_quantiles`` Hessian rows of the
    prunable weights at evenly spaced magnitude quantiles
    (``lightning_prunelimit.limit.zero_curvature_fraction``) is computed as well, reported
    beside it (``prune_limit/zero_fraction_sampled``) and not added again.

    **Over training.** With ``HessianSpectrum(every_n_epochs=k)`` the limit is also predicted
    at the end of every k-th epoch: the logged scalars form a trajectory, ``trajectory`` holds
    ``(epoch, step, sparsity, lo, hi)`` rows, and a figure (``prune_limit_trajectory.png``) and,
    with W&B, a line plot (``prune_limit/trajectory``) show when the network became prunable.

    **Logs** to every logger: ``prune_limit/kept_fraction``, ``prune_limit/sparsity``,
    ``prune_limit/sparsity_lo``, ``prune_limit/sparsity_hi``, ``prune_limit/distance``,
    ``prune_limit/epsilon``, ``prune_limit/epsilon_batch_size``, ``prune_limit/zero_fraction``.
    Saves ``prune_limit.png`` (sparsity against R and G(R) with its bounds and their crossing)
    in the run's log directory; with a ``WandbLogger`` also the image and the curves as a table
    (``prune_limit/curves``).

    **Results** (also saved in checkpoints): ``prediction`` (a
    :class:`~lightning_prunelimit.limit.LimitPrediction`; ``prediction.sparsity`` is the
    ``amount`` to prune, ``prediction.sparsity_interval`` its bounds), ``trajectory`` and
    ``zero_curvature_estimate``.

    Args:
        epsilon: the loss tolerance: a positive number or ``"batch_loss_std"``.
        zero_curvature: estimate the fraction of zero-curvature directions.
        negative: how negative eigenvalues count: ``"abs"`` (|lambda|, as the paper's code) or
            ``"flat"`` (as zero curvature).
        epsilon_batch_size: the batch size of ``epsilon="batch_loss_std"`` (default 128, the
            paper's); the sample must hold more samples than this.
        num_quantiles: Hessian rows sampled for the zero-curvature fraction.
        zero_tolerance: rows with an l1 norm below it count as zero curvature.
        parameters_to_prune: explicit ``(module, name)`` pairs of prunable weights.
        parameter_names: parameter names taken from each Linear/Conv module.
        loss_fn: the loss (shared with the other callbacks of the Trainer).
        batch_to_xy: maps a batch to ``(inputs, targets)`` (shared likewise).

    Example:
        >>> import lightning.pytorch as pl
        >>> from lightning_prunelimit import HessianSpectrum
        >>> limit = PruningLimit(epsilon="batch_loss_std")
        >>> trainer = pl.Trainer(max_epochs=1, callbacks=[HessianSpectrum(), limit], logger=False)
        >>> limit.prediction is None  # filled in at the end of trainer.fit(...)
        True
    """

    def __init__(
        self,
        *,
        epsilon: float | str = "batch_loss_std",
        zero_curvature: bool = False,
        negative: str = "abs",
        epsilon_batch_size: int = DEFAULT_EPSILON_BATCH_SIZE,
        num_quantiles: int = 100,
        zero_tolerance: float = DEFAULT_ZERO_ROW_TOLERANCE,
        parameters_to_prune: Sequence[tuple[nn.Module, str]] = (),
        parameter_names: Sequence[str] = ("weight",),
        loss_fn: LossFn | None = None,
        batch_to_xy: BatchToXY | None = None,
    ) -> None:
        super().__init__()
        self.epsilon = check_epsilon(epsilon)
        if negative not in NEGATIVE_MODES:
            raise ValueError(f"negative must be one of {NEGATIVE_MODES}, got {negative!r}")
        if isinstance(num_quantiles, bool) or not isinstance(num_quantiles, int):
            raise TypeError(f"num_quantiles must be a positive int, got {num_quantiles!r}")
        if num_quantiles < 1:
            raise ValueError(f"num_quantiles must be a positive int, got {num_quantiles}")
        if not (math.isfinite(float(zero_tolerance)) and float(zero_tolerance) > 0):
            raise ValueError(f"zero_tolerance must be positive and finite, got {zero_tolerance}")
        if isinstance(parameter_names, str):
            raise TypeError(f"parameter_names must be a sequence, pass ({parameter_names!r},)")
        if (
            isinstance(epsilon_batch_size, bool)
            or not isinstance(epsilon_batch_size, int)
            or epsilon_batch_size < 1
        ):
            raise ValueError(
                f"epsilon_batch_size must be a positive int, got {epsilon_batch_size!r}"
            )
        self.epsilon_batch_size = epsilon_batch_size
        self.zero_curvature = bool(zero_curvature)
        self.negative = negative
        self.num_quantiles = num_quantiles
        self.zero_tolerance = float(zero_tolerance)
        self.parameters_to_prune = tuple(parameters_to_prune)
        self.parameter_names = tuple(parameter_names)
        check_data_settings(loss_fn, batch_to_xy)
        self.loss_fn = loss_fn
        self.batch_to_xy = batch_to_xy

        self.prediction: LimitPrediction | None = None
        self.zero_curvature_estimate: ZeroCurvature | None = None
        self.trajectory: list[dict[str, Any]] = []
        self._epsilon_batch_size = 0
        self._epsilon_at: tuple[tuple[int, int], float, int] | None = None
        self.timings: dict[str, float] = {}

    @property
    def state_key(self) -> str:
        """Key of this callback's state in checkpoints."""
        return self._generate_state_key(
            epsilon=self.epsilon, zero_curvature=self.zero_curvature, negative=self.negative
        )

    # -- computation ------------------------------------------------------------------------

    _result_names = ("prediction",)

    def _spectrum_callback(self, trainer: pl.Trainer) -> HessianSpectrum:
        return require_callback(trainer, HessianSpectrum, "PruningLimit")

    def _epsilon(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, spectrum: HessianSpectrum
    ) -> tuple[float, int]:
        """``(epsilon, batch size used)``, computed once per point of training."""
        if not isinstance(self.epsilon, str):
            return float(self.epsilon), 0
        point = training_point(trainer, self._fit_index)
        if self._epsilon_at is not None and self._epsilon_at[0] == point:
            return self._epsilon_at[1], self._epsilon_at[2]
        started = time.perf_counter()
        fixed = collect_batches(  # every training sample: forward passes only, cheap
            trainer,
            pl_module,
            num_samples=token_num_samples(trainer, None, "train"),
            seed=spectrum.seed,
            batch_to_xy=resolve_batch_to_xy(spectrum.batch_to_xy, pl_module, trainer),
            augment=spectrum.augment,
            shard=False,
            to_device=False,
        )
        loss_fn = resolve_loss_fn(spectrum.loss_fn or self.loss_fn, pl_module, trainer)
        batch_size = self.epsilon_batch_size
        if trainer.fast_dev_run:  # a token sample: a batch size it can hold
            available = sum(_num_samples(targets) for _, targets in fixed.batches)
            batch_size = max(1, min(batch_size, available // 2))
        with eager():
            value = resolve_epsilon(
                self.epsilon, pl_module, loss_fn, fixed.batches, batch_size=batch_size
            )
        self._epsilon_at = (point, value, batch_size)
        self.timings["epsilon"] = time.perf_counter() - started
        return value, batch_size

    def limit_target(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> LimitTarget:
        """What the ``HessianSpectrum`` sizes its run for: this prediction's weights and epsilon.

        Must be called on every rank under DDP.
        """
        spectrum_callback = self._spectrum_callback(trainer)
        entries = prunable_parameters(pl_module, self.parameter_names, self.parameters_to_prune)
        epsilon, _ = self._epsilon(trainer, pl_module, spectrum_callback)
        weights = [effective_parameter(module, name).detach() for _, module, name in entries]
        return LimitTarget(weights, epsilon, self.negative)

    def lanczos_stop_rule(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, tolerance: float
    ) -> Callable[[Spectrum], bool]:
        """A Lanczos stop rule: True once the quadrature part of the interval is narrow enough.

        At most ``tolerance`` wide (``lightning_prunelimit.limit.interval_stop``, on this
        callback's weights and epsilon). Must be called on every rank under DDP.
        """
        return self.limit_target(trainer, pl_module).stop_rule(tolerance)

    def _zero_curvature(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        spectrum: HessianSpectrum,
        entries: list[tuple[str, nn.Module, str]],
    ) -> ZeroCurvature:
        num_quantiles = min(self.num_quantiles, 2) if trainer.fast_dev_run else self.num_quantiles
        with torch.inference_mode(False), torch.enable_grad(), eager():
            op = spectrum.build_operator(trainer, pl_module)
            candidates, values = prunable_coordinates(pl_module, op.param_names, entries)
            with stage(trainer, num_quantiles, "Zero-curvature rows") as progress:
                return zero_curvature_fraction(
                    ProgressOperator(op, progress, num_quantiles),
                    candidates,
                    values=values,
                    num_quantiles=num_quantiles,
                    tolerance=self.zero_tolerance,
                )

    def predict(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> LimitPrediction:
        """Predict the limit now; store, log and plot it.

        Must be called on every rank under DDP (the Hessian products are all-reduced).

        Raises:
            ValueError: when the Trainer has no ``HessianSpectrum`` callback, or the model has
                nothing to prune.
        """
        spectrum_callback = self._spectrum_callback(trainer)
        entries = prunable_parameters(pl_module, self.parameter_names, self.parameters_to_prune)
        spectrum = spectrum_callback.ensure_computed(trainer, pl_module)
        if spectrum_callback.param_names is not None:
            check_parameters_covered(pl_module, spectrum_callback.param_names, entries)
        epsilon, batch_size = self._epsilon(trainer, pl_module, spectrum_callback)
        self.zero_curvature_estimate = None
        if self.zero_curvature:  # the paper's sampled estimate, reported beside the exact one
            estimate = self._zero_curvature(trainer, pl_module, spectrum_callback, entries)
            self.zero_curvature_estimate = estimate
        weights = [effective_parameter(module, name) for _, module, name in entries]
        # Flat directions once: the spectrum counts its exactly-zero rows itself (deflated),
        # and the rest of the flat mass is inside its quadrature; the sampled estimate is only
        # reported.
        started = time.perf_counter()
        prediction = predict_pruning_limit(spectrum, weights, epsilon, negative=self.negative)
        self.prediction = with_sample_error(prediction, spectrum_callback.sample_error)
        self.timings["prediction"] = time.perf_counter() - started
        self._epsilon_batch_size = batch_size
        self._mark_computed(trainer)
        self._record_trajectory(trainer)
        self._warn_if_too_wide(trainer, spectrum_callback, prediction)
        self._report(trainer)
        return self.prediction

    def _record_trajectory(self, trainer: pl.Trainer) -> None:
        p = self.prediction
        assert p is not None
        low, high = p.sparsity_interval if p.sparsity_interval is not None else (None, None)
        row = {
            "epoch": int(trainer.current_epoch),
            "step": int(trainer.global_step),
            "sparsity": p.sparsity,
            "sparsity_lo": low,
            "sparsity_hi": high,
        }
        if self.trajectory and self.trajectory[-1]["step"] == row["step"]:
            self.trajectory[-1] = row
        else:
            self.trajectory.append(row)

    def _warn_if_too_wide(
        self,
        trainer: pl.Trainer,
        spectrum_callback: HessianSpectrum,
        before_sample: LimitPrediction,
    ) -> None:
        p = self.prediction
        if p is None or p.sparsity_interval is None or trainer.fast_dev_run:
            return
        low, high = p.sparsity_interval
        tolerance = spectrum_callback.tolerance
        if high - low <= tolerance * (1 + 1e-9):
            return
        spent = spectrum_callback.spectrum
        fixed = [
            f"{name}={value}"
            for name, value in (
                ("num_iters", spectrum_callback.num_iters),
                ("num_probes", spectrum_callback.num_probes),
                ("num_samples", spectrum_callback.num_samples),
            )
            if value != "auto"
            and not (name == "num_samples" and spectrum_callback.sample_error is None)
        ]
        ran_out = list(spectrum_callback.exhausted) + fixed
        budget = ", ".join(ran_out) if ran_out else "the training data"
        used = (
            f"{spent.num_iters} Lanczos steps, {spent.num_probes} probe(s), "
            f"{spectrum_callback.samples_used} samples"
            if spent is not None
            else "the spectrum"
        )
        rank_zero_warn(
            f"the predicted sparsity {p.sparsity:.4f} has the interval [{low:.4f}, {high:.4f}], "
            f"{high - low:.4f} wide, more than HessianSpectrum(tolerance={tolerance}): the "
            f"budget ran out ({budget}) after {used}. "
            + _too_wide_advice(spectrum_callback, before_sample)
        )

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """At the ``HessianSpectrum``'s ``every_n_epochs`` points: predict (a trajectory)."""
        spectrum_callback = self._spectrum_callback(trainer)
        if spectrum_callback.is_trajectory_epoch(trainer):
            self._ensure(trainer, pl_module)

    def ensure_predicted(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule
    ) -> LimitPrediction:
        """The prediction at the current point of training: computed now unless already done."""
        self._ensure(trainer, pl_module)
        assert self.prediction is not None
        return self.prediction

    def _has_result(self) -> bool:
        return self.prediction is not None

    def _compute(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.predict(trainer, pl_module)

    def _check_partners(self, trainer: pl.Trainer) -> None:
        self._spectrum_callback(trainer)

    def _check_fit(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        spectrum = self._spectrum_callback(trainer)
        entries = prunable_parameters(pl_module, self.parameter_names, self.parameters_to_prune)
        names = check_curvature_parameters("HessianSpectrum", pl_module, spectrum.params)
        check_parameters_covered(pl_module, names, entries)
        resolve_loss_fn(spectrum.loss_fn or self.loss_fn, pl_module, trainer)
        if self.epsilon == "batch_loss_std" and not trainer.fast_dev_run:
            known = known_num_samples(trainer, "train")
            if known is not None and known <= self.epsilon_batch_size:
                raise ValueError(
                    f"PruningLimit(epsilon='batch_loss_std') spreads batches of "
                    f"epsilon_batch_size={self.epsilon_batch_size} samples, but the training "
                    f"data holds only {known}: lower epsilon_batch_size, or give it more samples"
                )

    # -- reporting --------------------------------------------------------------------------

    def metrics(self) -> dict[str, float]:
        """The scalars this callback logs, from the stored prediction (empty before any).

        Example:
            >>> PruningLimit().metrics()
            {}
        """
        p = self.prediction
        if p is None:
            return {}
        values = {
            "prune_limit/kept_fraction": p.kept_fraction,
            "prune_limit/sparsity": p.sparsity,
            "prune_limit/distance": p.distance,
            "prune_limit/epsilon": p.epsilon,
            "prune_limit/zero_fraction": p.zero_fraction,
        }
        if p.sparsity_interval is not None:
            values["prune_limit/sparsity_lo"] = p.sparsity_interval[0]
            values["prune_limit/sparsity_hi"] = p.sparsity_interval[1]
        if p.sample_sparsity_interval is not None:
            values["prune_limit/sample_lo"] = p.sample_sparsity_interval[0]
            values["prune_limit/sample_hi"] = p.sample_sparsity_interval[1]
        if self._epsilon_batch_size:
            values["prune_limit/epsilon_batch_size"] = float(self._epsilon_batch_size)
        for name, seconds in self.timings.items():
            values[f"prune_limit/time_{name}"] = float(seconds)
        if self.zero_curvature_estimate is not None:
            values["prune_limit/zero_fraction_sampled"] = self.zero_curvature_estimate.fraction
        return values

    def _report(self, trainer: pl.Trainer) -> None:
        prediction = self.prediction
        assert prediction is not None
        log_scalars(trainer, self.metrics(), progress_bar=["prune_limit/sparsity"])
        save_figure(
            trainer, lambda: plot_pruning_limit(prediction), "prune_limit.png", "prune_limit/figure"
        )
        rows = [
            [rho, 1.0 - rho, r, g]
            for rho, r, g in zip(
                prediction.curve_kept_fractions,
                prediction.curve_distances,
                prediction.curve_widths,
            )
        ]
        log_wandb(
            trainer,
            lambda wandb: {
                "prune_limit/curves": wandb.Table(
                    columns=["kept_fraction", "sparsity", "distance", "width"], data=rows
                )
            },
        )
        if len(self.trajectory) < 2:
            return
        points = list(self.trajectory)
        save_figure(
            trainer,
            lambda: plot_limit_trajectory(
                [r["epoch"] for r in points],
                [r["sparsity"] for r in points],
                [
                    None if r["sparsity_lo"] is None else (r["sparsity_lo"], r["sparsity_hi"])
                    for r in points
                ],
            ),
            "prune_limit_trajectory.png",
            "prune_limit/trajectory_figure",
        )

        def trajectory_plot(wandb: Any) -> dict[str, Any]:
            columns = ["epoch", "sparsity", "sparsity_lo", "sparsity_hi"]
            table = wandb.Table(columns=columns, data=[[r[c] for c in columns] for r in points])
            return {
                "prune_limit/trajectory": wandb.plot.line(
                    table, "epoch", "sparsity", title="Predicted pruning limit over training"
                )
            }

        log_wandb(trainer, trajectory_plot)

    # -- state ------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The results as plain data (floats and lists)."""
        return {
            "prediction": None if self.prediction is None else self.prediction.to_dict(),
            "zero_curvature": None
            if self.zero_curvature_estimate is None
            else self.zero_curvature_estimate.to_dict(),
            "trajectory": [dict(row) for row in self.trajectory],
            "epsilon_batch_size": self._epsilon_batch_size,
            "timings": dict(self.timings),
            **self._point_state(),
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore the results saved by :meth:`state_dict`."""
        prediction = state_dict.get("prediction")
        self.prediction = None if prediction is None else LimitPrediction.from_dict(prediction)
        zero = state_dict.get("zero_curvature")
        self.zero_curvature_estimate = None if zero is None else ZeroCurvature.from_dict(zero)
        self.trajectory = [dict(row) for row in state_dict.get("trajectory") or []]
        self._epsilon_at = None
        self._epsilon_batch_size = int(state_dict.get("epsilon_batch_size") or 0)
        self.timings = {str(k): float(v) for k, v in (state_dict.get("timings") or {}).items()}
        self._load_point_state(state_dict)


def _num_samples(targets: Any) -> int:
    """Samples in a batch's targets (a tensor's first dimension; 1 for anything else)."""
    return int(targets.shape[0]) if isinstance(targets, Tensor) and targets.ndim else 1


def _too_wide_advice(spectrum: HessianSpectrum, before_sample: LimitPrediction) -> str:
    """Each part of a too-wide interval against its share, and the setting for each part over it.

    ``before_sample`` is the prediction before the sample part was added to it (see
    ``limit.targeted_spectrum.interval_parts``). The parts over their share come widest first.
    """
    used = spectrum.samples_used
    probes_used = spectrum.spectrum.num_probes if spectrum.spectrum is not None else 1
    fixes = {
        "quadrature": f"raise num_iters (now {spectrum.num_iters})"
        if spectrum.num_iters != "auto"
        else f"raise max_iters (now {spectrum.max_iters}; num_iters='auto' stops once it fits)",
        "probes": f"raise num_probes (now {spectrum.num_probes})"
        if spectrum.num_probes != "auto"
        else f"set num_probes above {probes_used} ('auto' runs at most {AUTO_MAX_PROBES})",
        "sample": "a larger curvature sample",
    }
    if used is not None:
        of = f" of {spectrum.dataset_size}" if spectrum.dataset_size is not None else ""
        everything = " or num_samples=None for all of them" if of else ""
        fixes["sample"] = f"raise num_samples (now {used}{of}; e.g. {2 * used}{everything})"
        steps_ran_out = any(x.startswith("max_iters=") for x in spectrum.exhausted)
        if spectrum.num_samples == "auto" and steps_ran_out:
            fixes["sample"] += (
                "; num_samples='auto' grows the sample only while the Lanczos steps can meet "
                "their share, and here they ran out first"
            )
    labels = {
        "quadrature": "quadrature part (Lanczos steps)",
        "probes": "probes' part",
        "sample": "sample part (the curvature sample's own error)",
    }
    parts = interval_parts(before_sample, spectrum.sample_error, spectrum.tolerance)
    widths = ", ".join(f"{labels[p.name]} {p.width:.4f} (share {p.share:.4f})" for p in parts)
    over = sorted((p for p in parts if p.over_share), key=lambda p: p.width, reverse=True)
    if not over:
        return f"Its parts: {widths}. Accept a wider tolerance, or raise the budget that ran out"
    advice = "; then the ".join(f"{labels[p.name]}: {fixes[p.name]}" for p in over)
    return (
        f"Its parts: {widths}. Over its share, widest first: the {advice}. Or accept a wider "
        "tolerance"
    )
