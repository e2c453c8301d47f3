"""The Hessian spectrum of the trained network at the end of training (SLQ, top-k, trace)."""

from __future__ import annotations

import math
import shutil
import tempfile
import time
from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities.rank_zero import rank_zero_info
from torch import Tensor

from lightning_prunelimit.callbacks._batches import (
    _module_device,
    collect_batches,
    known_num_samples,
    token_num_samples,
)
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
    FixedBatches,
    HessianOperator,
    Spectrum,
    curvature_batch_size,
    default_memory_budget,
    hutchinson_trace,
    ritz_top_eigenvalues,
    select_parameters,
    spectrum_trace,
    top_eigenvalues,
)
from lightning_prunelimit.curvature.hessian_operator import BACKENDS
from lightning_prunelimit.curvature.memory_plan import (
    GIB,
    check_memory_budget,
    format_bytes,
    plan_lanczos_memory,
)
from lightning_prunelimit.curvature.parameter_selection import ParameterSelection
from lightning_prunelimit.limit import (
    DEFAULT_TOLERANCE,
    LimitTarget,
    SampleError,
    estimate_spectrum,
)
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
            f"tolerance must be a number in (0, 1): the widest acceptable interval of the "
            f"predicted sparsity, got {value!r}"
        )
    return float(value)


def _check_auto_int(name: str, value: Any, what: str, allow_none: bool = False) -> Any:
    if value == "auto" or (allow_none and value is None):
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        extra = ", None (all)" if allow_none else ""
        raise ValueError(f"{name} must be 'auto'{extra} or an int >= 1 ({what}), got {value!r}")
    return value


#: Lanczos steps of ``num_iters="auto"`` when no ``PruningLimit`` gives a stop rule.
AUTO_FALLBACK_ITERS = 128


#: The most activation memory of one curvature batch (bytes): larger batches gain little.
CURVATURE_BATCH_BYTES = 2 * GIB

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
    is switched off while the sample is read, unless ``augment=True``): a sample drawn once with
    ``seed`` (nested across sizes; see **Accuracy and cost** for its size), in batches sized by
    memory rather than by the loader (same result up to rounding); every Hessian-vector product
    uses the same batches. Under DDP each rank holds a disjoint share of the sample and
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

    **Accuracy and cost.** ``tolerance`` is the widest acceptable interval of the
    ``PruningLimit``'s predicted sparsity, and the run spends only what it needs
    (``lightning_prunelimit.limit.estimate_spectrum``): ``num_iters="auto"`` adds Lanczos
    steps until the quadrature part fits its share (at most ``max_iters``);
    ``num_probes="auto"`` runs one probe and adds probes only when their sampling part is too
    wide; ``num_samples="auto"`` takes the whole training data up to 4,096 samples, else a
    sub-sample whose own error (two disjoint halves, same probe and steps) is added to the
    interval, doubled until that part fits. An int fixes any of them. What was spent is logged
    (``hessian/num_iters``, ``hessian/num_probes``, ``hessian/num_samples``, and the seconds of
    each stage as ``hessian/time_<stage>``); when a budget runs out first, the
    ``PruningLimit`` warns once with the width reached. The top eigenvalues (Ritz values with
    their residual bounds) and the trace (the probes' quadratic forms, with a bound on the
    standard error) come from the same run, unless ``top_iters`` / ``trace_probes`` ask for
    separate runs. Without a ``PruningLimit`` in the Trainer, ``"auto"`` runs
    ``AUTO_FALLBACK_ITERS`` steps and probes by the sampling bound. Before training, a
    Lanczos plan that cannot fit the memory budget (from the free GPU memory, or half the
    available RAM on a CPU) or the temporary disk is refused. Exactly-zero Hessian rows (dead
    units, always-zero inputs) are removed before the run and counted exactly
    (``hessian/deflated_fraction``).

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
        tolerance: the widest acceptable interval of the predicted sparsity (quadrature,
            probes and sample together); sets the cost (see **Accuracy and cost**).
        num_iters: Lanczos steps per probe, or ``"auto"`` (the paper uses 128).
        num_probes: SLQ probe vectors, or ``"auto"`` (one, more only if needed).
        num_samples: training samples, ``"auto"``, or ``None`` (all).
        top_k: how many top eigenvalues (0: none).
        trace_probes: 0: the trace from the SLQ probes; n >= 2: a separate Hutchinson run.
        backend: ``"native"`` or ``"pyhessian"`` Hessian-vector products.
        seed: seed of the sample draw and of every probe.
        loss_fn: the loss; default the module's ``loss_fn`` / ``criterion``.
        batch_to_xy: maps a batch to ``(inputs, targets)``.
        params: parameters of the Hessian: ``None`` (every trainable parameter outside
            normalisation layers), a sequence of names, or a predicate ``(name, param)``.
        augment: keep the datamodule's augmentation on while reading the sample.
        top_iters: ``None``: the top eigenvalues from the SLQ run's Ritz values; an int: a
            separate Lanczos run with that step budget (stops earlier once they converge).
        max_iters: the most Lanczos steps of ``num_iters="auto"``.
        every_n_epochs: also compute at the end of every n-th training epoch (None: at the end
            of training only).
        memory_budget_gb: device memory (GiB) for the SLQ state and products; probes then
            run in groups and the basis may leave the device, same result (see
            ``curvature.stochastic_lanczos_quadrature``). ``None``: from the free memory on a
            GPU, half the available RAM on a CPU.

    Example:
        >>> import lightning.pytorch as pl
        >>> spectrum = HessianSpectrum(tolerance=0.03)  # steps, probes and samples: "auto"
        >>> trainer = pl.Trainer(max_epochs=1, callbacks=[spectrum], logger=False)
        >>> spectrum.spectrum is None  # filled in at the end of trainer.fit(...)
        True
    """

    _result_names = ("spectrum", "top_eigenvalues", "trace")

    def __init__(
        self,
        *,
        tolerance: float = DEFAULT_TOLERANCE,
        num_iters: int | str = "auto",
        num_probes: int | str = "auto",
        num_samples: int | str | None = "auto",
        top_k: int = 5,
        trace_probes: int = 0,
        backend: str = "native",
        seed: int = 0,
        loss_fn: LossFn | None = None,
        batch_to_xy: BatchToXY | None = None,
        params: ParameterSelection = None,
        augment: bool = False,
        top_iters: int | None = None,
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
        self.num_probes = _check_auto_int("num_probes", num_probes, "SLQ probes")
        self.num_samples = _check_auto_int(
            "num_samples", num_samples, "training samples", allow_none=True
        )
        self.top_k = _check_int("top_k", top_k, 0)
        self.trace_probes = _check_int("trace_probes", trace_probes, 0)
        if self.trace_probes == 1:
            raise ValueError(
                "trace_probes must be 0 (the trace from the SLQ probes) or >= 2 (a separate "
                "Hutchinson run, whose standard error needs two probes), got 1"
            )
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
        self.sample_error: SampleError | None = None
        self.samples_used: int | None = None
        self.dataset_size: int | None = None
        self.timings: dict[str, float] = {}
        self.exhausted: tuple[str, ...] = ()
        self.top_eigenvalues: Tensor | None = None
        self.top_eigenvalue_errors: Tensor | None = None
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

    def _draw(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, num_samples: int | None
    ) -> FixedBatches:
        """The nested seeded sample of ``num_samples`` (None: all), in memory-sized batches."""
        fixed = collect_batches(
            trainer,
            pl_module,
            num_samples=token_num_samples(trainer, num_samples, "train"),
            seed=self.seed,
            batch_to_xy=resolve_batch_to_xy(self.batch_to_xy, pl_module, trainer),
            augment=self.augment,
        )
        if not fixed.batches:
            return fixed
        budget = self.memory_budget_gb
        if budget is None:
            budget = default_memory_budget(_module_device(pl_module))
        share = (
            CURVATURE_BATCH_BYTES
            if budget is None
            else min(budget * GIB / 4, CURVATURE_BATCH_BYTES)
        )
        vectors = self.num_probes if isinstance(self.num_probes, int) else 1
        size = curvature_batch_size(
            pl_module,
            fixed.batches[0],
            budget_bytes=max(int(share), 1),
            num_vectors=vectors,
            most=max(fixed.num_samples, 1),
        )
        return fixed.rebatched(max(size, max(len(y) for _, y in fixed.batches)))

    def _operator(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, fixed: FixedBatches
    ) -> HessianOperator:
        loss_fn = resolve_loss_fn(self.loss_fn, pl_module, trainer)
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

    def build_operator(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> HessianOperator:
        """The Hessian operator over the sample of the last spectrum (see the class docstring).

        Other callbacks use it to work on exactly the same curvature (e.g. ``PruningLimit``'s
        zero-curvature rows); before any spectrum, the sample ``num_samples`` asks for (all
        samples for ``"auto"``). Must be called on every rank under DDP.
        """
        size = self.samples_used
        if size is None and isinstance(self.num_samples, int):
            size = self.num_samples
        if size is not None and self.dataset_size is not None and size >= self.dataset_size:
            size = None
        return self._operator(trainer, pl_module, self._draw(trainer, pl_module, size))

    def compute(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> Spectrum:
        """Run SLQ (its steps, probes and samples sized for ``tolerance``) now; store, log, plot.

        The top eigenvalues and the trace come from the same run unless ``top_iters`` or
        ``trace_probes`` ask for separate ones. Must be called on every rank under DDP (the
        Hessian products are all-reduced).

        Returns:
            The spectrum (also kept as ``self.spectrum``).
        """
        num_iters, num_probes, num_samples = self.num_iters, self.num_probes, self.num_samples
        top_k, trace_probes, top_iters = self.top_k, self.trace_probes, self.top_iters
        target = None if trainer.fast_dev_run else self._limit_target(trainer, pl_module)
        if num_iters == "auto" and target is None and not trainer.fast_dev_run:
            rank_zero_info(
                f"HessianSpectrum(num_iters='auto') without a PruningLimit in the Trainer: no "
                f"prediction to size the run for, running {AUTO_FALLBACK_ITERS} Lanczos steps"
            )
        dataset_size = known_num_samples(trainer, "train")
        if trainer.fast_dev_run:  # check the wiring at a token size
            num_iters, num_probes, num_samples, dataset_size = FAST_DEV_RUN_ITERS, 1, None, None
            top_k = min(top_k, 1)
            top_iters = FAST_DEV_RUN_ITERS if top_iters is not None else None
            trace_probes = min(trace_probes, 2)

        def stage_of(description: str, total: int) -> Any:
            return stage(trainer, total, description)

        with torch.inference_mode(False), torch.enable_grad(), eager():
            estimate = estimate_spectrum(
                lambda size: self._draw(trainer, pl_module, size),
                lambda fixed: self._operator(trainer, pl_module, fixed),
                dataset_size=dataset_size,
                target=target,
                tolerance=self.tolerance,
                num_samples=num_samples,
                num_probes=num_probes,
                num_iters=num_iters,
                max_iters=self.max_iters,
                fallback_iters=AUTO_FALLBACK_ITERS,
                seed=self.seed,
                memory_budget_gb=self.memory_budget_gb,
                stage=stage_of,
            )
            spectrum = estimate.spectrum
            timings = dict(estimate.timings)
            op: HessianOperator | None = None
            top = errors = torch.empty(0, dtype=torch.float64)
            if top_k:
                started = time.perf_counter()
                if top_iters is None:
                    top, errors = ritz_top_eigenvalues(spectrum, top_k)
                else:
                    assert estimate.fixed is not None
                    op = self._operator(trainer, pl_module, estimate.fixed)
                    k = min(top_k, op.dim)
                    budget = min(max(top_iters, k), op.dim)
                    with stage(trainer, budget, "Hessian top eigenvalues") as progress:
                        counted = ProgressOperator(op, progress, budget)
                        top = top_eigenvalues(counted, k=k, num_iters=budget, seed=self.seed)
                    top = top.detach().to(device="cpu", dtype=torch.float64)
                    errors = torch.full_like(top, float("nan"))
                timings["top_eigenvalues"] = time.perf_counter() - started
            started = time.perf_counter()
            if trace_probes:
                if op is None:
                    assert estimate.fixed is not None
                    op = self._operator(trainer, pl_module, estimate.fixed)
                with stage(trainer, trace_probes, "Hessian trace") as progress:
                    counted = ProgressOperator(op, progress, trace_probes)
                    trace, stderr = hutchinson_trace(
                        counted, num_probes=trace_probes, seed=self.seed
                    )
            else:
                trace, stderr = spectrum_trace(spectrum)
            timings["trace"] = time.perf_counter() - started
            del op
        self.spectrum = spectrum
        self.sample_error = estimate.sample_error
        self.samples_used = estimate.num_samples
        self.dataset_size = estimate.dataset_size
        self.timings = timings
        self.exhausted = estimate.exhausted
        self.top_eigenvalues, self.top_eigenvalue_errors = top, errors
        self.trace, self.trace_stderr = float(trace), float(stderr)
        self.num_params = spectrum.dim
        self.param_names = [name for name, _ in select_parameters(pl_module, self.params)]
        self._mark_computed(trainer)
        self._report(trainer)
        return spectrum

    def _limit_target(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule
    ) -> LimitTarget | None:
        """The prediction the spectrum is for: from the Trainer's ``PruningLimit``, if any."""
        for callback in trainer.callbacks:  # type: ignore[attr-defined]
            make = getattr(callback, "limit_target", None)
            if callable(make) and callback is not self:
                return make(trainer, pl_module)
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
        if not trainer.fast_dev_run:
            self._check_memory_plan(pl_module)
        check_forward(
            "HessianSpectrum", trainer, pl_module, loss_fn, batch_to_xy, augment=self.augment
        )

    def _check_memory_plan(self, pl_module: pl.LightningModule) -> None:
        """Refuse, before training, a Lanczos run that cannot fit the memory budget or the disk."""
        selected = select_parameters(pl_module, self.params)
        if not selected:
            return
        first = selected[0][1]
        dim = sum(p.numel() for _, p in selected)
        steps = self.max_iters if self.num_iters == "auto" else int(self.num_iters)
        probes = self.num_probes if isinstance(self.num_probes, int) else 1
        budget = self.memory_budget_gb
        if budget is None:
            budget = default_memory_budget(first.device)
        try:
            plan = plan_lanczos_memory(
                dim, steps, probes, dtype=first.dtype, device=first.device, budget_gb=budget
            )
        except ValueError as error:
            raise ValueError(f"HessianSpectrum cannot run within its memory: {error}") from error
        if plan.basis_storage == "disk":
            folder = tempfile.gettempdir()
            free = shutil.disk_usage(folder).free
            if plan.offloaded_bytes > free:
                raise ValueError(
                    f"HessianSpectrum's Lanczos basis ({format_bytes(plan.offloaded_bytes)}: "
                    f"{min(steps, dim)} steps of {dim:,} parameters) does not fit the memory "
                    f"budget ({format_bytes(plan.budget_bytes or 0)}) and would go to a "
                    f"temporary file in {folder}, which has {format_bytes(free)} free: lower "
                    "max_iters (or num_iters), give more memory (memory_budget_gb), or point "
                    "TMPDIR at a larger disk"
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
        if self.top_eigenvalue_errors is not None:
            for i, value in enumerate(self.top_eigenvalue_errors.tolist(), start=1):
                if math.isfinite(value):
                    values[f"hessian/top_eig_{i}_bound"] = float(value)
        values["hessian/num_params"] = float(self.num_params or self.spectrum.dim)
        values["hessian/num_iters"] = float(self.spectrum.num_iters)
        values["hessian/num_probes"] = float(self.spectrum.num_probes)
        if self.samples_used is not None:
            values["hessian/num_samples"] = float(self.samples_used)
        for name, seconds in self.timings.items():
            values[f"hessian/time_{name}"] = float(seconds)
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
            "top_eigenvalue_errors": None
            if self.top_eigenvalue_errors is None
            else [float(x) for x in self.top_eigenvalue_errors.tolist()],
            "trace": self.trace,
            "trace_stderr": self.trace_stderr,
            "num_params": self.num_params,
            "param_names": self.param_names,
            "sample_error": None if self.sample_error is None else self.sample_error.to_dict(),
            "samples_used": self.samples_used,
            "dataset_size": self.dataset_size,
            "timings": dict(self.timings),
            "exhausted": list(self.exhausted),
            **self._point_state(),
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore the results saved by :meth:`state_dict`."""
        spectrum = state_dict.get("spectrum")
        self.spectrum = None if spectrum is None else Spectrum.from_dict(spectrum)
        top = state_dict.get("top_eigenvalues")
        self.top_eigenvalues = None if top is None else torch.tensor(top, dtype=torch.float64)
        errors = state_dict.get("top_eigenvalue_errors")
        self.top_eigenvalue_errors = (
            None if errors is None else torch.tensor(errors, dtype=torch.float64)
        )
        error = state_dict.get("sample_error")
        self.sample_error = None if error is None else SampleError.from_dict(error)
        used, size = state_dict.get("samples_used"), state_dict.get("dataset_size")
        self.samples_used = None if used is None else int(used)
        self.dataset_size = None if size is None else int(size)
        self.timings = {str(k): float(v) for k, v in (state_dict.get("timings") or {}).items()}
        self.exhausted = tuple(str(x) for x in state_dict.get("exhausted") or ())
        trace, stderr = state_dict.get("trace"), state_dict.get("trace_stderr")
        self.trace = None if trace is None else float(trace)
        self.trace_stderr = None if stderr is None else float(stderr)
        num_params = state_dict.get("num_params")
        self.num_params = None if num_params is None else int(num_params)
        names = state_dict.get("param_names")
        self.param_names = None if names is None else [str(name) for name in names]
        self._load_point_state(state_dict)
