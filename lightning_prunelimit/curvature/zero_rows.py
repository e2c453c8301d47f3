"""Exactly-zero rows of a symmetric operator, and the operator with them removed (deflation).

A weight whose Hessian row ``H e_i`` vanishes (fed by an input that is always zero, or feeding a
dead ReLU unit) is an exact eigenvector with eigenvalue 0. Such rows are found for the price of
one block product: a row is zero exactly when ``(H v)_i = 0`` for every vector ``v``, and for
random Gaussian ``v`` a non-zero row gives ``(H v)_i = 0`` with probability 0. Removing the
rows (and, by symmetry, the columns) leaves a smaller operator whose spectrum is that of ``H``
without those zeros, so stochastic Lanczos quadrature spends no probe mass on them and every
estimate can add them back exactly (:attr:`Spectrum.deflated`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from lightning_prunelimit.curvature.linear_operator import (
    LinearOperator,
    operator_device,
    operator_dim,
    operator_dtype,
)

__all__ = ["DeflatedOperator", "find_zero_rows"]


def find_zero_rows(
    op: LinearOperator, *, num_probes: int = 2, seed: int = 0, tolerance: float = 0.0
) -> Tensor:
    """Boolean ``(dim,)`` mask of the rows of ``op`` that are zero.

    Multiplies ``num_probes`` seeded Gaussian vectors (one block product) and marks row ``i``
    when ``|(H v)_i| <= tolerance * max_j |(H v)_j|`` for every probe. With the default
    ``tolerance=0`` only exactly-zero rows count: the rows of weights that no sample's loss
    depends on at second order, whose products are exact zeros in any precision.

    Example:
        >>> import torch
        >>> from lightning_prunelimit.curvature import DenseOperator
        >>> h = torch.tensor([[2.0, 0.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 3.0]]).double()
        >>> find_zero_rows(DenseOperator(h)).tolist()
        [False, True, False]
    """
    dim = operator_dim(op)
    if isinstance(num_probes, bool) or not isinstance(num_probes, int) or num_probes < 1:
        raise ValueError(f"num_probes must be a positive int, got {num_probes!r}")
    if not 0.0 <= float(tolerance) < 1.0:
        raise ValueError(f"tolerance must be in [0, 1), got {tolerance!r}")
    dtype, device = operator_dtype(op), operator_device(op)
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    zero: Tensor | None = None
    for _ in range(num_probes):  # one vector at a time: a few vectors of memory, no more
        probe = torch.randn(1, dim, generator=generator, dtype=torch.float32)
        product = op.matvec(probe.to(device=device, dtype=dtype)).detach().reshape(-1)
        del probe
        if not bool(torch.isfinite(product).all()):
            raise ValueError(
                "the operator returned NaN or inf: check the model's parameters and data before "
                "computing its spectrum"
            )
        product.abs_()
        limit = float(tolerance) * float(product.max()) if tolerance else 0.0
        rows = product <= limit
        del product
        zero = rows if zero is None else zero.logical_and_(rows)
    assert zero is not None
    return zero.cpu()


class DeflatedOperator:
    """The operator restricted to the coordinates ``keep`` (the other rows must be zero).

    ``matvec`` embeds a ``(k, kept)`` block into zeros of the full size, multiplies, and keeps
    the same coordinates. When the removed rows of a symmetric ``H`` are zero, ``H`` equals the
    kept block padded with zeros, so the kept block's eigenvalues are those of ``H`` without
    ``dim - kept`` zeros.

    Args:
        op: a symmetric :class:`LinearOperator`.
        keep: boolean ``(op.dim,)`` mask of the coordinates to keep (at least one).

    Example:
        >>> import torch
        >>> from lightning_prunelimit.curvature import DenseOperator
        >>> h = torch.diag(torch.tensor([2.0, 0.0, 3.0], dtype=torch.float64))
        >>> small = DeflatedOperator(DenseOperator(h), torch.tensor([True, False, True]))
        >>> small.dim, small.matvec(torch.ones(2, dtype=torch.float64)).tolist()
        (2, [2.0, 3.0])
    """

    def __init__(self, op: LinearOperator, keep: Tensor) -> None:
        full = operator_dim(op)
        keep = torch.as_tensor(keep)
        if keep.dtype != torch.bool or keep.shape != (full,):
            raise ValueError(
                f"keep must be a boolean mask of shape ({full},), got {keep.dtype} "
                f"{tuple(keep.shape)}"
            )
        if not bool(keep.any()):
            raise ValueError(
                "every row of the operator is zero: the loss does not depend on the selected "
                "parameters at second order (check the parameter selection and the data)"
            )
        self.op = op
        self.full_dim = full
        self._keep = keep.to(operator_device(op))  # a bool mask: D bytes, not D indices
        self._dim = int(keep.sum())

    def __getattr__(self, name: str) -> Any:
        # Other attributes (e.g. a HessianOperator's max_block_size) are the wrapped operator's.
        if name == "op":
            raise AttributeError(name)
        return getattr(self.op, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "max_block_size":  # memory plans set the block size of the real operator
            setattr(self.op, name, value)
        else:
            super().__setattr__(name, value)

    @property
    def dim(self) -> int:
        """Number of kept coordinates."""
        return self._dim

    @property
    def dtype(self) -> torch.dtype:
        """The wrapped operator's dtype."""
        return operator_dtype(self.op)

    @property
    def device(self) -> torch.device:
        """The wrapped operator's device."""
        return operator_device(self.op)

    def matvec(self, v: Tensor) -> Tensor:
        """The kept block of the operator times ``v`` (shape ``(dim,)`` or ``(k, dim)``)."""
        single = v.ndim == 1
        block = v.reshape(-1, self.dim)
        keep = self._keep.to(block.device)
        full = block.new_zeros(block.shape[0], self.full_dim)
        full[:, keep] = block
        out = self.op.matvec(full)
        del full
        out = out[:, keep]
        return out[0] if single else out

    def __matmul__(self, v: Tensor) -> Tensor:
        return self.matvec(v)
