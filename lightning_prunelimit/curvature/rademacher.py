"""Seeded Rademacher probe vectors that do not depend on the device."""

from __future__ import annotations

import numbers

import torch
from torch import Tensor


def rademacher(
    num: int,
    dim: int,
    seed: int | torch.Generator,
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> Tensor:
    """A ``(num, dim)`` tensor of independent +-1 entries, drawn on the CPU from ``seed``.

    Drawing on the CPU with a dedicated ``torch.Generator`` makes the probes identical on every
    device and independent of the global random state. ``seed`` may also be a CPU generator, whose
    stream then continues: drawing a ``(a + b, dim)`` block from a seed equals drawing ``(a, dim)``
    then ``(b, dim)`` from a generator seeded with it, so probes can be drawn block by block.

    Example:
        >>> z = rademacher(2, 5, seed=0)
        >>> z.shape, sorted(set(z.abs().view(-1).tolist()))
        (torch.Size([2, 5]), [1.0])
        >>> bool((rademacher(2, 5, seed=0) == z).all())
        True
    """
    if isinstance(num, bool) or not isinstance(num, int) or num < 1:
        raise ValueError(f"the number of probes must be a positive int, got {num!r}")
    if isinstance(seed, torch.Generator):
        generator = seed
    elif isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an int or a CPU torch.Generator, got {seed!r}")
    else:
        generator = torch.Generator(device="cpu").manual_seed(int(seed))
    signs = torch.randint(0, 2, (num, dim), generator=generator, dtype=torch.int8)
    return (2 * signs - 1).to(device=device, dtype=dtype)
