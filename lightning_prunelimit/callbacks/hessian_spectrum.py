"""The Hessian spectrum of the trained network at the end of training (SLQ, top-k, trace)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities.rank_zero import rank_zero_info
from torch import Tensor

from lightning_prunelimit.callbacks._batches import collect_batches, token_num_samples
from lightning_prunelimit.callbacks._fit_checks import (
    check_curvature_parameters,
    check_forward,
    eager,
)
from lightning_prunelimit.callbacks._fit_end import FitEndCallback
from lightning_prunelimit.callbacks._lookup import (
    BatchToXY,
    LossFn,
    check_data_settings,
    resolve_batch_to_xy,
    resolve_loss_fn,
)
from lightning_prunelimit.callbacks._output import (
    ProgressOperator,
    log_scalars,
    log_wandb,
    save_figure,
    stage,
)
from lightning_prunelimit.curvature import (
    HessianOperator,
    Spectrum,
    hutchinson_trace,
    stochastic_lanczos_quadrature,
    top_eigenvalues,
)
from lightning_prunelimit.curvature.hessian_operator import BACKENDS
from lightning_prunelimit.curvature.memory_plan import check_memory_budget
from lightning_prunelimit.curvature.parameter_selection import ParameterSelection
from lightning_prunelimit.curvature.top_eigenvalues import default_top_eigenvalue_iters
from lightning_prunelimit.plotting import plot_spectrum, spectrum_density_curve

__all__ = ["AUTO_FALLBACK_ITERS", "FAST_DEV_RUN_ITERS", "HessianSpectrum"]


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def _check_num_iters(value: Any) -> int | str:
    if value == "auto":
        return "auto"
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(
            f"num_iters must be 'auto' or an int >= 1 (Lanczos steps per probe), got {value!r}"
        )
    return value


def _check_tolerance(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise ValueError(
            f"tolerance must be a number in (0, 1): the widest acceptable quadrature interval "
            f"of the predicted sparsity, got {value!r}"
        )
    return float(value)


#: Lanczos steps of ``num_iters="auto"`` when no ``PruningLimit`` gives a stop rule.
AUTO_FALLBACK_ITERS = 128


#: The token sizes of a ``fast_dev_run``: Lanczos steps, top-eigenvalue steps, trace probes.
FAST_DEV_RUN_ITERS = 4


class HessianSpectrum(FitEndCallback):
    """Estimate the Hessian spectrum of the loss at the end of training.

    At the end of the last training batch of the fit (before the last validation and the last
    checkpoint; the model is on its device and, under DDP, every rank is alive) the callback
    builds a :class:`~lightning_prunelimit.curvature.HessianOperator` over a fixed sample of
    the training data and runs stochastic Lanczos quadrature (the spectral density the
    pruning limit needs), the ``top_k`` largest eigenvalues and a Hutchinson trace estimate.
    Other callbacks call :meth:`compute` (e.g. at an epoch) or :meth:`ensure_computed` (compute
    unless already done at this point of training).

    **Data.** The training loader's data, without augmentation (a datamodule's ``augment`` flag
    is switched off while the sample is read, unless ``augment=True``), ``num_samples`` samples
    drawn once with ``seed`` (default all), in the loader's batch size; every Hessian-vector
    product uses the same batches. Under DDP each rank holds a disjoint share of the sample and
    the operator all-reduces, so the result equals a one-process run on the same data; the
    total sample count is checked. ``batch_to_xy`` maps other batch layouts to
    ``(inputs, targets)``.

    **Loss.** ``loss_fn(outputs, targets) -> mean loss``, given here or to any other callback
    of the Trainer, else the module's ``loss_fn`` or ``criterion`` attribute. The module's
    ``forward`` must return what the loss takes. ``batch_to_xy`` is shared the same way.

    **Before training** (``on_fit_start``): one batch goes through ``batch_to_xy``, ``forward``
    and the loss, and the Hessian's parameters are checked (one floating dtype, one device), so
    a wiring mistake fails in seconds. A ``torch.compile``d module is analysed through the
    uncompiled code underneath. Under ``fast_dev_run`` every stage runs at a token size
    (``FAST_DEV_RUN_ITERS`` steps, two batches). Each stage shows a progress bar, or logs its
    duration when bars are off.

    **Steps.** ``num_iters="auto"`` (the default) adds Lanczos steps until the quadrature
    part of the ``PruningLimit``'s interval on the predicted sparsity is at most ``tolerance``
    wide (``lightning_prunelimit.limit.interval_stop``), or ``max_iters`` is reached; the steps
    used are logged (``hessian/num_iters``). Without a ``PruningLimit`` in the Trainer it runs
    ``AUTO_FALLBACK_ITERS`` steps. Exactly-zero Hessian rows (dead units, always-zero inputs)
    are removed before the run and counted exactly (``hessian/deflated_fraction``).

    **Over training.** With ``every_n_epochs=k`` the spectrum (and the ``PruningLimit``'s
    prediction with its interval) is also computed at the end of every k-th training epoch, so
    the loggers hold a trajectory of the predicted limit.

    **Logs** to every logger: ``hessian/top_eig_1`` .. ``hessian/top_eig_<k>``,
    ``hessian/trace``, ``hessian/trace_stderr``, ``hessian/min_ritz``, ``hessian/max_ritz``,
    ``hessian/num_params``, ``hessian/num_iters``, ``hessian/num_probes``,
    ``hessian/deflated_fraction``. Saves
    ``hessian_spectrum.png`` (density, log scale) in the run's log directory; with a
    ``WandbLogger`` also the image, a line plot of the density (``hessian/density``) and a
    table of the Ritz nodes and weights (``hessian/ritz``).

    **Results** (also saved in checkpoints, ``last.ckpt`` included; the scalars also in
    ``trainer.callback_metrics``): ``spectrum`` (a
    :class:`~lightning_prunelimit.curvature.Spectrum`), ``top_eigenvalues`` (float64 tensor,
    descending), ``trace`` and ``trace_stderr``, ``num_params``.

    Args:
        num_iters: Lanczos steps per probe, or ``"auto"`` (see **Steps**; the paper uses 128).
        num_probes: SLQ probe vectors (more probes shrink the sampling part of the interval).
        num_samples: training samples to use; ``None`` uses all.
        top_k: how many top eigenvalues (0: none).
        trace_probes: Hutchinson probes (0: no trace estimate).
        backend: ``"native"`` or ``"pyhessian"`` Hessian-vector products.
        seed: seed of the sample draw and of every probe.
        loss_fn: the loss; default the module's ``loss_fn`` / ``criterion``.
        batch_to_xy: maps a batch to ``(inputs, targets)``.
        params: parameters of the Hessian: ``None`` (every trainable parameter outside
            normalisation layers), a sequence of names, or a predicate ``(name, param)``.
        augment: keep the datamodule's augmentation on while reading the sample.
        top_iters: Lanczos step budget of the top eigenvalues (default: that of
            ``curvature.top_eigenvalues``, which stops earlier once they converge).
        tolerance: the widest acceptable quadrature interval of the predicted sparsity, for
            ``num_iters="auto"`` (and the width above which a fixed ``num_iters`` warns).
        max_iters: the most Lanczos steps of ``num_iters="auto"``.
        every_n_epochs: also compute at the end of every n-th training epoch (None: at the end
            of training only).
        memory_budget_gb: device memory (GiB) for the SLQ state and products; probes then
            run in groups and the basis may leave the device, same result (see
            ``curvature.stochastic_lanczos_quadrature``). ``None``: from the free memory on a
            GPU, unbounded on the CPU.

    Example:
        >>> import lightning.pytorch as pl
        >>> spectrum = HessianSpectrum(num_iters="auto", num_probes=4, num_samples=2048)
        >>> trainer = pl.Trainer(max_epochs=1, callbacks=[spectrum], logger=False)
        >>> spectrum.spectrum is None  # filled in at the end of trainer.fit(...)
        True
    """

    _result_names = ("spectrum", "top_eigenvalues", "trace")

    def __init__(
        self,
        *,
        num_iters: int | str = "auto",
        num_probes: int = 4,
        num_samples: int | None = None,
        top_k: int = 5,
        trace_probes: int = 32,
        backend: str = "native",
        seed: int = 0,
        loss_fn: LossFn | None = None,
        batch_to_xy: BatchToXY | None = None,
        params: ParameterSelection = None,
        augment: bool = False,
        top_iters: int | None = None,
        tolerance: float = 0.01,
        max_iters: int = 256,
        every_n_epochs: int | None = None,
        memory_budget_gb: float | None = None,
    ) -> None:
        super().__init__()
        self.num_iters = _check_num_iters(num_iters)
        self.tolerance = _check_tolerance(tolerance)
        self.max_iters = _check_int("max_iters", max_iters, 1)
        if every_n_epochs is not None:
            _check_int("every_n_epochs", every_n_epochs, 1)
        self.every_n_epochs = every_n_epochs
        self.num_probes = _check_int("num_probes", num_probes, 1)
        if num_samples is not None:
            _check_int("num_samples", num_samples, 1)
        self.num_samples = num_samples
        self.top_k = _check_int("top_k", top_k, 0)
        self.trace_probes = _check_int("trace_probes", trace_probes, 0)
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}: choose one of {sorted(BACKENDS)}")
        self.backend = backend
        self.seed = _check_int("seed", seed, 0)
        check_data_settings(loss_fn, batch_to_xy)
        self.loss_fn = loss_fn
        self.batch_to_xy = batch_to_xy
        self.params = params
        self.augment = bool(augment)
        if top_iters is not None:
            _check_int("top_iters", top_iters, max(1, self.top_k))
        self.top_iters = top_iters
        self.memory_budget_gb = check_memory_budget(memory_budget_gb)

        self.spectrum: Spectrum | None = None
        self.top_eigenvalues: Tensor | None = None
        self.trace: float | None = None
        self.trace_stderr: float | None = None
        self.num_params: int | None = None
        self.param_names: list[str] | None = None

    @property
    def state_key(self) -> str:
        """Key of this callback's state in checkpoints."""
        return self._generate_state_key(
            num_iters=self.num_iters,
            num_probes=self.num_probes,
            num_samples=self.num_samples,
            seed=self.seed,
        )

    # -- computation ------------------------------------------------------------------------

    def build_operator(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> HessianOperator:
        """The Hessian operator over this callback's fixed sample (see the class docstring).

        Other callbacks use it to work on exactly the same curvature (e.g. ``PruningLimit``'s
        zero-curvature rows). Must be called on every rank under DDP.
        """
        loss_fn = resolve_loss_fn(self.loss_fn, pl_module, trainer)
        fixed = collect_batches(
            trainer,
            pl_module,
            num_samples=token_num_samples(trainer, self.num_samples, "train"),
            seed=self.seed,
            batch_to_xy=resolve_batch_to_xy(self.batch_to_xy, pl_module, trainer),
            augment=self.augment,
        )
        with eager():
            op = HessianOperator(
                pl_module, loss_fn, fixed.batches, params=self.params, backend=self.backend
            )
        if fixed.total_samples is not None and op.num_samples != fixed.total_samples:
            raise RuntimeError(
                f"the Hessian covers {op.num_samples} samples but {fixed.total_samples} were "
                f"drawn over {trainer.world_size} rank(s): every rank must build the operator "
                "from its own share of the same sample"
            )
        return op

    def compute(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> Spectrum:
        """Run SLQ, the top eigenvalues and the trace now; store, log and plot the results.

        Must be called on every rank under DDP (the Hessian products are all-reduced).

        Returns:
            The spectrum (also kept as ``self.spectrum``).
        """
        num_probes, top_k = self.num_probes, self.top_k
        trace_probes, top_iters = self.trace_probes, self.top_iters
        stop = None if trainer.fast_dev_run else self._stop_rule(trainer, pl_module)
        num_iters = self.num_iters
        if num_iters == "auto":
            num_iters = self.max_iters if stop is not None else AUTO_FALLBACK_ITERS
        if trainer.fast_dev_run:  # check the wiring at a token size
            num_iters, num_probes = min(num_iters, FAST_DEV_RUN_ITERS), 1
            top_k = min(top_k, 1)
            top_iters = FAST_DEV_RUN_ITERS
            trace_probes = min(trace_probes, 2)
        with torch.inference_mode(False), torch.enable_grad(), eager():
            op = self.build_operator(trainer, pl_module)
            num_iters = min(num_iters, op.dim)
            total = num_iters * num_probes
            with stage(trainer, total, "Hessian spectrum (Lanczos)") as progress:
                spectrum = stochastic_lanczos_quadrature(
                    op,
                    num_iters=num_iters,
                    num_probes=num_probes,
                    seed=self.seed,
                    progress=progress,
                    stop=stop,
                    memory_budget_gb=self.memory_budget_gb,
                )
            top = torch.empty(0, dtype=torch.float64)
            if top_k:
                k = min(top_k, op.dim)
                budget = top_iters or default_top_eigenvalue_iters(k, op.dim)
                budget = min(max(budget, k), op.dim)
                with stage(trainer, budget, "Hessian top eigenvalues") as progress:
                    counted = ProgressOperator(op, progress, budget)
                    top = top_eigenvalues(counted, k=k, num_iters=budget, seed=self.seed)
                top = top.detach().to(device="cpu", dtype=torch.float64)
            trace = stderr = None
            if trace_probes:
                with stage(trainer, trace_probes, "Hessian trace") as progress:
                    counted = ProgressOperator(op, progress, trace_probes)
                    estimate, error = hutchinson_trace(
                        counted, num_probes=trace_probes, seed=self.seed
                    )
                trace, stderr = float(estimate), float(error)
            num_params, param_names = op.dim, list(op.param_names)
        del op  # releases the sample
        self.spectrum = spectrum
        self.top_eigenvalues = top
        self.trace, self.trace_stderr = trace, stderr
        self.num_params = num_params
        self.param_names = param_names
        self._mark_computed(trainer)
        self._report(trainer)
        return spectrum

    def _stop_rule(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule
    ) -> Callable[[Spectrum], bool] | None:
        """``num_iters="auto"``: the stop rule of the Trainer's ``PruningLimit``, if any."""
        if self.num_iters != "auto":
            return None
        for callback in trainer.callbacks:
            rule = getattr(callback, "lanczos_stop_rule", None)
            if callable(rule) and callback is not self:
                return rule(trainer, pl_module, self.tolerance)
        rank_zero_info(
            f"HessianSpectrum(num_iters='auto') without a PruningLimit in the Trainer: no "
            f"prediction to size the run for, running {AUTO_FALLBACK_ITERS} Lanczos steps"
        )
        return None

    def is_trajectory_epoch(self, trainer: pl.Trainer) -> bool:
        """Whether the training epoch that is ending is one of the ``every_n_epochs`` points.

        Example:
            >>> import lightning.pytorch as pl
            >>> HessianSpectrum(every_n_epochs=2).is_trajectory_epoch(pl.Trainer(logger=False))
            False
        """
        if self.every_n_epochs is None or trainer.sanity_checking or trainer.fast_dev_run:
            return False
        return (trainer.current_epoch + 1) % self.every_n_epochs == 0

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Every ``every_n_epochs`` epochs: compute the spectrum (a point of the trajectory)."""
        if self.is_trajectory_epoch(trainer):
            self._ensure(trainer, pl_module)

    def ensure_computed(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> Spectrum:
        """The spectrum at the current point of training: computed now unless already done.

        Consumers (``PruningLimit``, ``GlobalOneShotPruning``) call this so that the order of
        the callbacks does not matter.
        """
        self._ensure(trainer, pl_module)
        assert self.spectrum is not None
        return self.spectrum

    def _has_result(self) -> bool:
        return self.spectrum is not None

    def _compute(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.compute(trainer, pl_module)

    def _check_fit(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        loss_fn = resolve_loss_fn(self.loss_fn, pl_module, trainer)
        batch_to_xy = resolve_batch_to_xy(self.batch_to_xy, pl_module, trainer)
        check_curvature_parameters("HessianSpectrum", pl_module, self.params)
        check_forward(
            "HessianSpectrum", trainer, pl_module, loss_fn, batch_to_xy, augment=self.augment
        )

    # -- reporting --------------------------------------------------------------------------

    def metrics(self) -> dict[str, float]:
        """The scalars this callback logs, from the stored results (empty before any compute).

        Example:
            >>> HessianSpectrum().metrics()
            {}
        """
        if self.spectrum is None:
            return {}
        values: dict[str, float] = {}
        if self.top_eigenvalues is not None:
            for i, value in enumerate(self.top_eigenvalues.tolist(), start=1):
                values[f"hessian/top_eig_{i}"] = float(value)
        if self.trace is not None:
            values["hessian/trace"] = self.trace
            values["hessian/trace_stderr"] = float(self.trace_stderr or 0.0)
        values["hessian/min_ritz"] = self.spectrum.min_node
        values["hessian/max_ritz"] = self.spectrum.max_node
        values["hessian/num_params"] = float(self.num_params or self.spectrum.dim)
        values["hessian/num_iters"] = float(self.spectrum.num_iters)
        values["hessian/num_probes"] = float(self.spectrum.num_probes)
        values["hessian/deflated_fraction"] = self.spectrum.deflated_fraction
        return values

    def _report(self, trainer: pl.Trainer) -> None:
        spectrum = self.spectrum
        assert spectrum is not None
        log_scalars(trainer, self.metrics())
        save_figure(
            trainer, lambda: plot_spectrum(spectrum), "hessian_spectrum.png", "hessian/spectrum"
        )

        def media(wandb: Any) -> dict[str, Any]:
            grid, density = spectrum_density_curve(spectrum)
            curve = wandb.Table(columns=["eigenvalue", "density"], data=list(zip(grid, density)))
            rows = [
                [probe, float(node), float(weight)]
                for probe in range(spectrum.num_probes)
                for node, weight in zip(spectrum.nodes[probe], spectrum.weights[probe])
            ]
            return {
                "hessian/density": wandb.plot.line(
                    curve, "eigenvalue", "density", title="Hessian spectral density"
                ),
                "hessian/ritz": wandb.Table(columns=["probe", "node", "weight"], data=rows),
            }

        log_wandb(trainer, media)

    # -- hooks and state --------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The results as plain data (floats and lists)."""
        return {
            "spectrum": None if self.spectrum is None else self.spectrum.to_dict(),
            "top_eigenvalues": None
            if self.top_eigenvalues is None
            else [float(x) for x in self.top_eigenvalues.tolist()],
            "trace": self.trace,
            "trace_stderr": self.trace_stderr,
            "num_params": self.num_params,
            "param_names": self.param_names,
            **self._point_state(),
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore the results saved by :meth:`state_dict`."""
        spectrum = state_dict.get("spectrum")
        self.spectrum = None if spectrum is None else Spectrum.from_dict(spectrum)
        top = state_dict.get("top_eigenvalues")
        self.top_eigenvalues = None if top is None else torch.tensor(top, dtype=torch.float64)
        trace, stderr = state_dict.get("trace"), state_dict.get("trace_stderr")
        self.trace = None if trace is None else float(trace)
        self.trace_stderr = None if stderr is None else float(stderr)
        num_params = state_dict.get("num_params")
        self.num_params = None if num_params is None else int(num_params)
        names = state_dict.get("param_names")
        self.param_names = None if names is None else [str(name) for name in names]
        self._load_point_state(state_dict)
