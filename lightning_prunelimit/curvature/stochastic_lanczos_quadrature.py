"""Stochastic Lanczos quadrature (SLQ): the spectral density of a Hessian from a few probes."""

from __future__ import annotations

import logging
import math
import numbers
import time
import warnings
from collections.abc import Callable

import torch
from torch import Tensor

from lightning_prunelimit.curvature.lanczos import LanczosResult, lanczos
from lightning_prunelimit.curvature.linear_operator import (
    LinearOperator,
    operator_device,
    operator_dim,
    operator_dtype,
)
from lightning_prunelimit.curvature.memory_plan import (
    LanczosMemoryPlan,
    check_memory_budget,
    default_memory_budget,
    plan_lanczos_memory,
)
from lightning_prunelimit.curvature.rademacher import rademacher
from lightning_prunelimit.curvature.spectrum import Spectrum
from lightning_prunelimit.curvature.zero_rows import DeflatedOperator, find_zero_rows

logger = logging.getLogger(__name__)


def stochastic_lanczos_quadrature(
    op: LinearOperator,
    num_iters: int = 128,
    num_probes: int = 1,
    seed: int = 0,
    *,
    deflate_zero_rows: bool = True,
    stop: Callable[[Spectrum], bool] | None = None,
    progress: Callable[[int, int], None] | None = None,
    memory_budget_gb: float | None = None,
    first_probe: int = 0,
    zero_rows: Tensor | None = None,
    timings: dict[str, float] | None = None,
) -> Spectrum:
    """Estimate the spectrum of ``op`` by Lanczos quadrature from random Rademacher probes.

    Exactly-zero rows of ``op`` (exact zero eigenvalues, see :func:`find_zero_rows`) are first
    removed at the price of one block product, unless ``deflate_zero_rows=False``; the spectrum
    records their number (``Spectrum.deflated``) and every estimate adds them exactly, so flat
    directions are counted once. The probes are drawn on the CPU from ``seed`` (so the result
    does not depend on the device), normalised, and run in lockstep on the remaining
    coordinates: each Lanczos step multiplies all of them with one ``op.matvec`` call.
    ``num_iters`` is capped at the remaining dimension; with ``num_iters >= dim`` the quadrature
    of every probe is exact. ``spectrum.trace_of(f)`` then estimates ``tr f(H)``. Cost:
    ``num_iters`` products of a ``(num_probes, dim)`` block (one data pass each for a
    :class:`HessianOperator`), and a basis of ``num_probes * num_iters * dim`` entries. The
    Lanczos coefficients are attached to the spectrum, so that the quadrature error can be
    bounded (``lightning_prunelimit.limit``).

    **Memory budget.** With ``memory_budget_gb`` (GiB; on a CUDA device the default is
    :func:`default_memory_budget`, from the free memory) the Lanczos state and the products
    stay within the budget on the operator's device (see :func:`plan_lanczos_memory`): probes
    run in groups (each group in lockstep, drawn in order from the same seed, so the probes are
    the same), a :class:`HessianOperator`'s block is multiplied in chunks
    (``max_block_size``, restored afterwards), and when one probe's basis does not fit it is
    kept in host memory (CUDA) or a temporary file (CPU) and re-orthogonalised chunk by chunk
    on the device; re-orthogonalisation stays full. The result equals the unbudgeted one up to
    rounding. One line (logger ``lightning_prunelimit.curvature.stochastic_lanczos_quadrature``,
    level INFO) states the plan and its estimate before the run. ``progress`` then counts steps
    over all groups.

    Args:
        op: a symmetric :class:`LinearOperator` (e.g. a :class:`HessianOperator`).
        num_iters: Lanczos steps per probe (nodes per probe); the most steps when ``stop`` is
            given.
        num_probes: number of random probes (their quadratures are averaged).
        seed: seed of the probes.
        deflate_zero_rows: remove exactly-zero rows before the run.
        stop: called after each step with the spectrum so far; returning True ends the run
            (e.g. once an error bound is small enough).
        progress: called as ``progress(step, total)`` after each Lanczos step.
        memory_budget_gb: memory for the Lanczos state and the products, in GiB (``None``:
            the default of the operator's device, see :func:`default_memory_budget`).
        first_probe: skip the first ``first_probe`` probes of ``seed``: the run then gives
            probes ``first_probe, first_probe + 1, ...`` of the same stream, so a later run can
            add probes to an earlier one (``Spectrum.joined``).
        zero_rows: a boolean ``(dim,)`` mask of the rows to deflate, instead of finding them
            (e.g. those of a larger sample's operator, so that sub-samples see the same
            probes); implies ``deflate_zero_rows``.
        timings: a dict that receives the seconds spent, under ``"zero_rows"`` and
            ``"lanczos"``.

    Raises:
        ValueError: if not even one probe fits ``memory_budget_gb`` (the message says how
            much it needs).

    Example:
        >>> import torch
        >>> from lightning_prunelimit.curvature import DenseOperator, stochastic_lanczos_quadrature
        >>> op = DenseOperator(torch.diag(torch.tensor([0.0, 0.0, 1.0, 3.0], dtype=torch.float64)))
        >>> spectrum = stochastic_lanczos_quadrature(op, num_iters=4, num_probes=2)
        >>> spectrum.deflated  # the two zero rows
        2
        >>> round(spectrum.trace_of(lambda x: x), 10)  # Rademacher probes: exact for a diagonal
        4.0
        >>> tiny = stochastic_lanczos_quadrature(op, num_iters=4, num_probes=2,
        ...                                      memory_budget_gb=1e-6)  # 1 KiB: file basis
        >>> bool(torch.allclose(tiny.nodes, spectrum.nodes))
        True
    """
    dim = operator_dim(op)
    if isinstance(num_iters, bool) or not isinstance(num_iters, int) or num_iters < 1:
        raise ValueError(f"num_iters must be a positive int (Lanczos steps), got {num_iters!r}")
    if isinstance(num_probes, bool) or not isinstance(num_probes, int) or num_probes < 1:
        raise ValueError(f"num_probes must be a positive int, got {num_probes!r}")
    budget = check_memory_budget(memory_budget_gb)
    if budget is None:
        budget = default_memory_budget(operator_device(op))
    hvp_bytes = getattr(op, "hvp_memory_bytes", None)

    def plan_for(rows: int) -> LanczosMemoryPlan:
        return plan_lanczos_memory(
            rows,
            num_iters,
            num_probes,
            dtype=operator_dtype(op),
            device=operator_device(op),
            budget_gb=budget,
            hvp_bytes=hvp_bytes if callable(hvp_bytes) else None,
        )

    if isinstance(first_probe, bool) or not isinstance(first_probe, int) or first_probe < 0:
        raise ValueError(f"first_probe must be an int >= 0, got {first_probe!r}")
    plan = plan_for(dim)  # stated before any product; deflation only lowers the need
    logger.info(plan.describe())
    deflated = 0
    started = time.perf_counter()
    if zero_rows is not None or deflate_zero_rows:
        zero = find_zero_rows(op, seed=seed) if zero_rows is None else zero_rows.to("cpu")
        if zero.dtype != torch.bool or zero.shape != (dim,):
            raise ValueError(f"zero_rows must be a boolean mask of shape ({dim},)")
        deflated = int(zero.sum())
        if deflated == dim:
            raise ValueError(
                "every row of the operator is zero: the loss does not depend on the selected "
                "parameters at second order (check the parameters and the loss)"
            )
        if deflated:
            op = DeflatedOperator(op, ~zero)
            plan = plan_for(dim - deflated)

    def as_spectrum(result: LanczosResult) -> Spectrum:
        return result.spectrum(dim=dim, deflated=deflated)

    stopped: list[bool] = []

    def lanczos_stop(result: LanczosResult) -> bool:  # per probe group
        if stop is not None and stop(as_spectrum(result)):
            stopped.append(True)
            return True
        return False

    if timings is not None:
        timings["zero_rows"] = time.perf_counter() - started
    started = time.perf_counter()
    result = run_probe_groups(
        op, plan, seed, progress=progress, stop=lanczos_stop, first_probe=first_probe
    )
    if timings is not None:
        timings["lanczos"] = time.perf_counter() - started
    _warn_on_early_float32_stop(result, min(num_iters, dim - deflated), operator_dtype(op), stopped)
    return as_spectrum(result)


def _warn_on_early_float32_stop(
    result: LanczosResult, expected: int, dtype: torch.dtype, stopped: list[bool]
) -> None:
    """A float32 run that stops before its steps on a breakdown is usually rounding, not luck."""
    if stopped or dtype == torch.float64 or min(result.lengths) >= expected:
        return
    warnings.warn(
        f"a {dtype} Lanczos probe stopped after {min(result.lengths)} of {expected} steps "
        "because its new residual fell to rounding level: in single precision this usually "
        "means the curvature scale spans more than float32 resolves, not an exactly invariant "
        "subspace, and the spectrum's small eigenvalues may be lumped together. Compute the "
        "spectrum in float64 (e.g. model.double() for the analysis, or Trainer(precision="
        "'64-true')) to check it",
        RuntimeWarning,
        stacklevel=3,
    )


def run_probe_groups(
    op: LinearOperator,
    plan: LanczosMemoryPlan,
    seed: int,
    *,
    progress: Callable[[int, int], None] | None = None,
    stop: Callable[[LanczosResult], bool] | None = None,
    first_probe: int = 0,
) -> LanczosResult:
    """Run the Rademacher probes of ``seed`` through :func:`lanczos` as ``plan`` lays them out.

    Group ``g`` takes the next ``plan.group_size`` probes of one generator seeded with
    ``seed`` (so the probes equal those of one lockstep run), with the plan's basis storage and
    chunks; an operator with a ``max_block_size`` attribute gets the plan's block size for the
    run and its own value back afterwards. ``progress(step, total)`` counts steps over all
    groups (``total = num_groups * num_iters``); ``stop`` is passed to :func:`lanczos` for each
    group, so it sees the snapshot of the group being run (a per-probe criterion works
    unchanged; a criterion over all probes sees one group at a time). The groups' results are
    joined in probe order. ``first_probe`` skips that many probes of the stream first.

    Example:
        >>> import torch
        >>> from lightning_prunelimit.curvature import DenseOperator, plan_lanczos_memory
        >>> op = DenseOperator(torch.diag(torch.arange(1.0, 5.0, dtype=torch.float64)))
        >>> plan = plan_lanczos_memory(4, 4, 3, dtype=torch.float64, device="cpu",
        ...                            budget_gb=500 / 2**30)
        >>> plan.num_groups, run_probe_groups(op, plan, seed=0).lengths
        (3, (4, 4, 4))
    """
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an int, got {seed!r}")
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    dim, steps = plan.dim, plan.num_iters
    for begin in range(0, first_probe, 64):  # skipped probes, drawn in blocks (memory)
        rademacher(min(64, first_probe - begin), dim, generator)
    done = [0]

    def group_progress(step: int, total: int) -> None:
        if progress is not None:
            progress(done[0] + step, plan.num_groups * steps)

    results: list[LanczosResult] = []
    restore = hasattr(op, "max_block_size")
    previous = getattr(op, "max_block_size", None)
    try:
        if restore and plan.hvp_block_size is not None:
            op.max_block_size = plan.hvp_block_size  # type: ignore[attr-defined]
        remaining = plan.num_probes
        while remaining:
            size = min(plan.group_size, remaining)
            result = lanczos(
                op,
                rademacher(size, dim, generator).div_(math.sqrt(dim)),
                steps,
                progress=group_progress,
                stop=stop,
                basis_storage=plan.basis_storage,
                reorth_chunk=plan.reorth_chunk,
            )
            results.append(result)
            remaining -= size
            done[0] += steps
    finally:
        if restore:
            op.max_block_size = previous  # type: ignore[attr-defined]
    if len(results) == 1:
        return results[0]
    width = max(r.alphas.shape[1] for r in results)

    def padded(rows: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.pad(rows, (0, width - rows.shape[1]))

    return LanczosResult(
        alphas=torch.cat([padded(r.alphas) for r in results]),
        betas=torch.cat([padded(r.betas) for r in results]),
        lengths=tuple(n for r in results for n in r.lengths),
        dim=dim,
    )
