"""How stochastic Lanczos quadrature fits a memory budget: probe groups, basis storage, chunks."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch

GIB = 2**30
"""Bytes per GiB: budgets in ``memory_budget_gb`` are GiB (``2**30`` bytes)."""

WORK_VECTORS_PER_PROBE = 4
"""Vectors of ``dim`` entries each running probe needs besides its basis (product, residual,
temporaries of the three-term recurrence and of Gram-Schmidt)."""

DEFAULT_FREE_FRACTION = 0.9
DEFAULT_MARGIN_BYTES = GIB // 2
DEFAULT_HOST_FRACTION = 0.5


def format_bytes(size: float) -> str:
    """A byte count for people: B, KiB, MiB or GiB with three significant digits.

    Example:
        >>> format_bytes(512), format_bytes(3 * 2**20), format_bytes(1.5 * 2**30)
        ('512 B', '3 MiB', '1.5 GiB')
    """
    for unit, scale in (("GiB", GIB), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(size) >= scale:
            return f"{size / scale:.3g} {unit}"
    return f"{size:.0f} B"


def available_host_memory() -> int | None:
    """Bytes of host memory available to new allocations (``MemAvailable``), or None if unknown.

    Read from ``/proc/meminfo`` on Linux, else from ``os.sysconf`` (free physical pages).

    Example:
        >>> size = available_host_memory()
        >>> size is None or size > 0
        True
    """
    try:
        with open("/proc/meminfo", encoding="ascii") as lines:
            for line in lines:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, OSError, ValueError):
        return None


def default_memory_budget(device: torch.device | str) -> float | None:
    """The budget, in GiB, used when none is given: from the free memory of the device.

    On a CUDA device, ``0.9 * (free + cached) - 0.5 GiB``, where ``free`` comes from
    ``torch.cuda.mem_get_info`` and ``cached`` is memory PyTorch's allocator holds but does not
    use (both reusable). On the CPU, half of the available host memory
    (:func:`available_host_memory`), leaving the rest to the training process and the system;
    ``None`` (no budget) where that is unknown or on other devices.

    Example:
        >>> budget = default_memory_budget("cpu")
        >>> budget is None or budget > 0
        True
    """
    device = torch.device(device)
    if device.type == "cpu":
        available = available_host_memory()
        return None if available is None else DEFAULT_HOST_FRACTION * available / GIB
    if device.type != "cuda":
        return None
    free, _ = torch.cuda.mem_get_info(device)
    cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    return max(0.0, (DEFAULT_FREE_FRACTION * (free + cached) - DEFAULT_MARGIN_BYTES) / GIB)


@dataclass(frozen=True)
class LanczosMemoryPlan:
    """How a Lanczos quadrature run is laid out to stay within a device memory budget.

    Probes run in ``num_groups`` groups of at most ``group_size`` (in lockstep inside a group).
    ``basis_storage`` says where each group's basis lives (``"device"``; ``"host"`` memory or a
    ``"disk"`` file when one probe's basis does not fit the budget), ``reorth_chunk`` how many
    basis vectors go to the device at a time then (``None``: not chunked), and
    ``hvp_block_size`` how many vectors share one second backward pass of a Hessian-vector
    product (``None``: the whole group). ``estimated_bytes`` is the estimated peak on the device
    of the Lanczos state and one product (the model and the data are not counted);
    ``offloaded_bytes`` the basis kept off the device.

    Example:
        >>> import torch
        >>> plan = plan_lanczos_memory(1000, 10, 4, dtype=torch.float32, device="cpu",
        ...                            budget_gb=150_000 / 2**30)
        >>> plan.group_size, plan.num_groups, plan.basis_storage
        (2, 2, 'device')
    """

    num_probes: int
    num_iters: int
    dim: int
    group_size: int
    num_groups: int
    basis_storage: str
    reorth_chunk: int | None
    hvp_block_size: int | None
    estimated_bytes: int
    offloaded_bytes: int
    budget_bytes: int | None
    device: str

    def describe(self) -> str:
        """One line stating the plan and its memory estimate.

        Example:
            >>> import torch
            >>> plan = plan_lanczos_memory(10**6, 8, 2, dtype=torch.float32, device="cpu")
            >>> print(plan.describe())  # doctest: +NORMALIZE_WHITESPACE
            SLQ memory: 2 probes x 8 steps, dim 1,000,000, on cpu: basis on the device,
            1 group of 2; estimated peak 107 MiB for the Lanczos state and products (no budget)
        """
        groups = f"{self.num_groups} group{'s' if self.num_groups > 1 else ''}"
        where = "on the device"
        if self.basis_storage != "device":
            place = "in host memory" if self.basis_storage == "host" else "in a temporary file"
            where = (
                f"{place} ({format_bytes(self.offloaded_bytes)}), re-orthogonalised "
                f"{self.reorth_chunk} vector{'s' if (self.reorth_chunk or 0) > 1 else ''} at a time"
            )
        block = ""
        if self.hvp_block_size is not None:
            plural = "s" if self.hvp_block_size > 1 else ""
            block = f", {self.hvp_block_size} Hessian-vector product{plural} per pass"
        budget = (
            "no budget"
            if self.budget_bytes is None
            else f"memory_budget_gb={self.budget_bytes / GIB:.3g}"
        )
        return (
            f"SLQ memory: {self.num_probes} probes x {self.num_iters} steps, dim {self.dim:,}, "
            f"on {self.device}: basis {where}, {groups} of {self.group_size}{block}; estimated "
            f"peak {format_bytes(self.estimated_bytes)} for the Lanczos state and products "
            f"({budget})"
        )

    def to_dict(self) -> dict[str, Any]:
        """The plan as plain data.

        Example:
            >>> import torch
            >>> plan_lanczos_memory(10, 4, 1, dtype=torch.float64, device="cpu").to_dict()["dim"]
            10
        """
        return asdict(self)


def _check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def check_memory_budget(memory_budget_gb: Any) -> float | None:
    """Validate a ``memory_budget_gb`` argument: ``None`` or a positive finite number of GiB.

    Example:
        >>> check_memory_budget(16), check_memory_budget(None)
        (16.0, None)
    """
    if memory_budget_gb is None:
        return None
    if isinstance(memory_budget_gb, bool) or not isinstance(memory_budget_gb, (int, float)):
        raise TypeError(
            f"memory_budget_gb must be a number of GiB or None, got {memory_budget_gb!r}"
        )
    value = float(memory_budget_gb)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"memory_budget_gb must be a positive number of GiB, got {value!r}")
    return value


def plan_lanczos_memory(
    dim: int,
    num_iters: int,
    num_probes: int,
    *,
    dtype: torch.dtype,
    device: torch.device | str,
    budget_gb: float | None = None,
    hvp_bytes: Callable[[int, int], int] | None = None,
) -> LanczosMemoryPlan:
    """Lay out a lockstep Lanczos run of ``num_probes`` probes so that it fits ``budget_gb``.

    The estimate of a group of ``k`` probes with the basis on the device is ``k * m * dim``
    basis entries (``m = min(num_iters, dim)``), ``4 k dim`` entries of work vectors and
    ``hvp_bytes(k, c)`` for one Hessian-vector product of ``k`` vectors in chunks of ``c``
    (default ``2 k dim`` entries: the block and its product). The plan takes, in this order of
    preference: every probe at once with its basis on the device; fewer probes per group
    (groups of equal size, so no group is larger than needed); with chunks of the product's
    second backward pass; and when not even one probe's basis fits, the basis in host memory
    (CUDA) or a temporary file (CPU) with re-orthogonalisation chunk by chunk on the device,
    the largest group whose work vectors, one chunk and one product fit, the rest of the budget
    shared between product chunks and basis chunks. Entries are of ``dtype`` (float32 for
    half-precision types, as the basis is). Without a budget: one group on the device.

    Raises:
        ValueError: if one probe cannot run within the budget even with one-vector chunks;
            the message says how much it needs and which knob to turn.

    Example:
        >>> import torch
        >>> plan = plan_lanczos_memory(10**6, 128, 4, dtype=torch.float32, device="cpu",
        ...                            budget_gb=0.25)
        >>> plan.basis_storage, plan.group_size, plan.reorth_chunk
        ('disk', 4, 43)
    """
    dim = _check_positive_int("dim", dim)
    num_iters = _check_positive_int("num_iters", num_iters)
    num_probes = _check_positive_int("num_probes", num_probes)
    budget = check_memory_budget(budget_gb)
    device = torch.device(device)
    if torch.finfo(dtype).bits < 32:
        dtype = torch.float32
    vector = dim * (torch.finfo(dtype).bits // 8)
    m = min(num_iters, dim)
    product = hvp_bytes if hvp_bytes is not None else (lambda k, c: 2 * k * vector)

    def work(k: int) -> int:
        return WORK_VECTORS_PER_PROBE * k * vector

    def on_device(k: int, c: int) -> int:
        return k * m * vector + work(k) + product(k, c)

    def make(
        k: int, storage: str, chunk: int | None, c: int | None, peak: int
    ) -> LanczosMemoryPlan:
        groups = math.ceil(num_probes / k)
        size = math.ceil(num_probes / groups)  # equal groups: no larger than needed
        return LanczosMemoryPlan(
            num_probes=num_probes,
            num_iters=m,
            dim=dim,
            group_size=size,
            num_groups=groups,
            basis_storage=storage,
            reorth_chunk=chunk,
            hvp_block_size=None if c is None or c >= size else c,
            estimated_bytes=peak,
            offloaded_bytes=0 if storage == "device" else size * m * vector,
            budget_bytes=None if budget is None else int(budget * GIB),
            device=str(device),
        )

    if budget is None:
        return make(num_probes, "device", None, None, on_device(num_probes, num_probes))
    limit = int(budget * GIB)
    for k in range(num_probes, 0, -1):
        fitting = [c for c in range(k, 0, -1) if on_device(k, c) <= limit]
        if fitting:
            k_even = math.ceil(num_probes / math.ceil(num_probes / k))
            c = min(fitting[0], k_even)
            return make(k, "device", None, c, on_device(k_even, c))
    storage = "host" if device.type == "cuda" else "disk"

    def offloaded(k: int, c: int, chunk: int) -> int:
        return work(k) + chunk * vector + product(k, c)

    for k in range(num_probes, 0, -1):
        if offloaded(k, 1, 1) <= limit:
            k = math.ceil(num_probes / math.ceil(num_probes / k))
            spare = limit - offloaded(k, 1, 1)
            c = max(x for x in range(1, k + 1) if product(k, x) - product(k, 1) <= spare // 2)
            spare -= product(k, c) - product(k, 1)
            chunk = int(min(m, 1 + spare // vector))
            return make(k, storage, chunk, c, offloaded(k, c, chunk))
    need = offloaded(1, 1, 1)
    raise ValueError(
        f"memory_budget_gb={budget:.3g} ({format_bytes(limit)}) cannot hold even one probe: it "
        f"needs about {format_bytes(need)} on {device} ({WORK_VECTORS_PER_PROBE + 1} vectors of "
        f"{format_bytes(vector)} and {format_bytes(product(1, 1))} for one Hessian-vector "
        f"product). Raise memory_budget_gb to at least {need / GIB:.3g}, or shrink the product: "
        "smaller batches (the loader's batch size) or fewer parameters (params=...)"
    )
