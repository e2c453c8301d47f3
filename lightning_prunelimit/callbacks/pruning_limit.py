"""The predicted pruning limit of the trained network: how sparse it can be pruned."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor, nn

from lightning_prunelimit.callbacks._shared import (
    collect_batches,
    find_callback,
    is_pruned,
    log_scalars,
    log_wandb,
    resolve_loss_fn,
    save_figure,
    training_point,
)
from lightning_prunelimit.callbacks.hessian_spectrum import HessianSpectrum
from lightning_prunelimit.curvature import HessianOperator
from lightning_prunelimit.limit import (
    DEFAULT_ZERO_ROW_TOLERANCE,
    NEGATIVE_MODES,
    LimitPrediction,
    ZeroCurvature,
    check_epsilon,
    predict_pruning_limit,
    resolve_epsilon,
    zero_curvature_fraction,
)
from lightning_prunelimit.plotting import plot_pruning_limit
from lightning_prunelimit.pruning import effective_parameter, parameter_key, prunable_parameters

__all__ = ["PruningLimit"]


class PruningLimit(pl.Callback):
    """Predict the pruning limit of the trained network from its Hessian spectrum.

    At ``on_train_end`` (or when :meth:`predict` is called, e.g. by ``GlobalOneShotPruning`` at
    an epoch) it takes the spectrum of the ``HessianSpectrum`` callback of the same Trainer
    (asking it to compute first if it has not yet at this point of training, so the order of
    the callbacks does not matter), the prunable weights (Linear and Conv weights, see
    ``lightning_prunelimit.pruning.prunable_parameters``) for the distance R, and the loss
    tolerance epsilon, and solves for the smallest kept fraction rho with
    ``rho >= 1 - G(R(rho))`` (``lightning_prunelimit.limit.predict_pruning_limit``).

    **Epsilon.** A number, or ``"batch_loss_std"``: the spread of the batch-mean training loss
    over the ``HessianSpectrum``'s fixed sample (same loss, ``num_samples``, seed and
    ``batch_to_xy``; no augmentation). Under DDP every rank evaluates the whole sample (one
    forward pass), so all ranks get the one-process value.

    **Zero curvature.** With ``zero_curvature=True`` the fraction of flat directions is
    estimated from ``num_quantiles`` Hessian rows of the prunable weights at evenly spaced
    magnitude quantiles (``lightning_prunelimit.limit.zero_curvature_fraction``), on the
    ``HessianSpectrum``'s operator; otherwise it is 0.

    **Logs** to every logger: ``prune_limit/kept_fraction``, ``prune_limit/sparsity``,
    ``prune_limit/distance``, ``prune_limit/epsilon``, ``prune_limit/zero_fraction``. Saves
    ``prune_limit.png`` (sparsity against R and G(R) with their crossing) in the run's log
    directory; with a ``WandbLogger`` also the image and the curves as a table
    (``prune_limit/curves``).

    **Results** (also saved in checkpoints): ``prediction`` (a
    :class:`~lightning_prunelimit.limit.LimitPrediction`; ``prediction.sparsity`` is the
    ``amount`` to prune) and ``zero_curvature_estimate``.

    Args:
        epsilon: the loss tolerance: a positive number or ``"batch_loss_std"``.
        zero_curvature: estimate the fraction of zero-curvature directions.
        negative: how negative eigenvalues count: ``"abs"`` (|lambda|, as the paper's code) or
            ``"flat"`` (as zero curvature).
        num_quantiles: Hessian rows sampled for the zero-curvature fraction.
        zero_tolerance: rows with an l1 norm below it count as zero curvature.
        parameters_to_prune: explicit ``(module, name)`` pairs of prunable weights.
        parameter_names: parameter names taken from each Linear/Conv module.

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
        epsilon: float | str = "batch_loss_std",
        zero_curvature: bool = False,
        negative: str = "abs",
        *,
        num_quantiles: int = 100,
        zero_tolerance: float = DEFAULT_ZERO_ROW_TOLERANCE,
        parameters_to_prune: Sequence[tuple[nn.Module, str]] = (),
        parameter_names: Sequence[str] = ("weight",),
    ) -> None:
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
        self.zero_curvature = bool(zero_curvature)
        self.negative = negative
        self.num_quantiles = num_quantiles
        self.zero_tolerance = float(zero_tolerance)
        self.parameters_to_prune = tuple(parameters_to_prune)
        self.parameter_names = tuple(parameter_names)

        self.prediction: LimitPrediction | None = None
        self.zero_curvature_estimate: ZeroCurvature | None = None
        self._fit_index = 0
        self._predicted_at: tuple[int, int, int] | None = None

    @property
    def state_key(self) -> str:
        """Key of this callback's state in checkpoints."""
        return self._generate_state_key(
            epsilon=self.epsilon, zero_curvature=self.zero_curvature, negative=self.negative
        )

    # -- computation ------------------------------------------------------------------------

    def _spectrum_callback(self, trainer: pl.Trainer) -> HessianSpectrum:
        spectrum = find_callback(trainer, HessianSpectrum)
        if spectrum is None:
            raise ValueError(
                "PruningLimit needs a HessianSpectrum callback in the same Trainer: add "
                "HessianSpectrum() to Trainer(callbacks=[...])"
            )
        return spectrum

    def _epsilon(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, spectrum: HessianSpectrum
    ) -> float:
        if not isinstance(self.epsilon, str):
            return float(self.epsilon)
        fixed = collect_batches(
            trainer,
            pl_module,
            num_samples=spectrum.num_samples,
            seed=spectrum.seed,
            batch_to_xy=spectrum.batch_to_xy,
            augment=spectrum.augment,
            shard=False,
        )
        loss_fn = resolve_loss_fn(spectrum.loss_fn, pl_module)
        return resolve_epsilon(self.epsilon, pl_module, loss_fn, fixed.batches)

    def _zero_curvature(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        spectrum: HessianSpectrum,
        entries: list[tuple[str, nn.Module, str]],
    ) -> ZeroCurvature:
        with torch.inference_mode(False), torch.enable_grad():
            op = spectrum.build_operator(trainer, pl_module)
            candidates, values = _prunable_coordinates(op, pl_module, entries)
            return zero_curvature_fraction(
                op,
                candidates,
                values=values,
                num_quantiles=self.num_quantiles,
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
            _check_covered(spectrum_callback.param_names, pl_module, entries)
        epsilon = self._epsilon(trainer, pl_module, spectrum_callback)
        zero_fraction = 0.0
        self.zero_curvature_estimate = None
        if self.zero_curvature:
            estimate = self._zero_curvature(trainer, pl_module, spectrum_callback, entries)
            self.zero_curvature_estimate = estimate
            zero_fraction = estimate.fraction
        weights = [effective_parameter(module, name) for _, module, name in entries]
        self.prediction = predict_pruning_limit(
            spectrum, weights, epsilon, zero_fraction=zero_fraction, negative=self.negative
        )
        self._predicted_at = training_point(trainer, self._fit_index)
        self._report(trainer)
        return self.prediction

    def ensure_predicted(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule
    ) -> LimitPrediction:
        """The prediction at the current point of training: computed now unless already done."""
        if self.prediction is None or self._predicted_at != training_point(
            trainer, self._fit_index
        ):
            return self.predict(trainer, pl_module)
        return self.prediction

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
        return {
            "prune_limit/kept_fraction": p.kept_fraction,
            "prune_limit/sparsity": p.sparsity,
            "prune_limit/distance": p.distance,
            "prune_limit/epsilon": p.epsilon,
            "prune_limit/zero_fraction": p.zero_fraction,
        }

    def _report(self, trainer: pl.Trainer) -> None:
        prediction = self.prediction
        assert prediction is not None
        log_scalars(trainer, self.metrics())
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

    # -- hooks and state --------------------------------------------------------------------

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Start a new fit: predictions of earlier fits are not reused."""
        self._fit_index += 1

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Predict the limit of the trained model (unless a consumer already did)."""
        self.ensure_predicted(trainer, pl_module)

    def state_dict(self) -> dict[str, Any]:
        """The results as plain data (floats and lists)."""
        return {
            "prediction": None if self.prediction is None else self.prediction.to_dict(),
            "zero_curvature": None
            if self.zero_curvature_estimate is None
            else self.zero_curvature_estimate.to_dict(),
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore the results saved by :meth:`state_dict`."""
        prediction = state_dict.get("prediction")
        self.prediction = None if prediction is None else LimitPrediction.from_dict(prediction)
        zero = state_dict.get("zero_curvature")
        self.zero_curvature_estimate = None if zero is None else ZeroCurvature.from_dict(zero)
        self._predicted_at = None


def _operator_key(modules: Mapping[str, nn.Module], name: str) -> tuple[str, str, str]:
    """``(key, module_name, plain)`` of an operator parameter name; ``<w>_orig`` maps to ``<w>``.

    A parameter reparametrised by ``torch.nn.utils.prune`` appears in the operator as
    ``<name>_orig``; the key is that of the effective weight ``<name>``.
    """
    module_name, _, local = name.rpartition(".")
    plain = local[: -len("_orig")] if local.endswith("_orig") else local
    if not is_pruned(modules[module_name], plain):
        plain = local
    return parameter_key(module_name, plain), module_name, plain


def _check_covered(
    param_names: Sequence[str], model: nn.Module, entries: list[tuple[str, nn.Module, str]]
) -> None:
    """Raise unless every prunable weight is among the Hessian's parameters."""
    modules = dict(model.named_modules())
    covered = {_operator_key(modules, name)[0] for name in param_names}
    missing = [parameter_key(q, n) for q, _, n in entries if parameter_key(q, n) not in covered]
    if missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise ValueError(
            f"the Hessian spectrum does not cover {len(missing)} prunable weight tensor(s) "
            f"({shown}), e.g. frozen layers, which HessianSpectrum leaves out by default: the "
            "prediction would mix the curvature of some weights with the magnitudes of others. "
            "Include them with HessianSpectrum(params=[...names...]) or restrict the pruned "
            "weights with PruningLimit(parameters_to_prune=...)"
        )


def _prunable_coordinates(
    op: HessianOperator, model: nn.Module, entries: list[tuple[str, nn.Module, str]]
) -> tuple[Tensor, Tensor]:
    """Positions of the prunable weights in ``op``'s flat vector, and the effective values.

    The effective value ``orig * mask`` of a pruned weight decides the magnitude ranking.
    """
    _check_covered(op.param_names, model, entries)
    offsets: dict[str, tuple[int, int]] = {}
    values: list[Tensor] = []
    start = 0
    modules = dict(model.named_modules())
    for name, param in zip(op.param_names, op.params):
        key, module_name, plain = _operator_key(modules, name)
        local = name.rpartition(".")[2]
        value = effective_parameter(modules[module_name], plain) if plain != local else param
        values.append(value.detach().reshape(-1))
        offsets[key] = (start, param.numel())
        start += param.numel()
    candidates = torch.cat(
        [torch.arange(o, o + n) for o, n in (offsets[parameter_key(q, m)] for q, _, m in entries)]
    )
    return candidates, torch.cat(values)
