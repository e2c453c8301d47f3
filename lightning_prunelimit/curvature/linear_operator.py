"""The interface the curvature algorithms accept: a symmetric matrix known by its products."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import Tensor


@runtime_checkable
class LinearOperator(Protocol):
    """A symmetric ``dim x dim`` matrix that can multiply vectors.

    ``matvec`` takes a vector of shape ``(dim,)`` or a block of shape ``(k, dim)`` (one vector per
    row) and returns the product in the same shape. Operators may also expose ``dtype`` and
    ``device``; the Krylov routines keep their vectors in that dtype and on that device, and fall
    back to float64 on the CPU when the attributes are missing.

    Example:
        >>> import torch
        >>> from lightning_prunelimit.curvature import DenseOperator, LinearOperator
        >>> isinstance(DenseOperator(torch.eye(3, dtype=torch.float64)), LinearOperator)
        True
    """

    @property
    def dim(self) -> int:
        """Number of rows (and columns) of the matrix."""
        ...

    def matvec(self, v: Tensor) -> Tensor:
        """Return the matrix times ``v`` (shape ``(dim,)`` or ``(k, dim)``)."""
        ...


def operator_dtype(op: LinearOperator) -> torch.dtype:
    """The dtype an operator computes in: its ``dtype`` attribute, float64 when it has none.

    Example:
        >>> import torch
        >>> from lightning_prunelimit.curvature import DenseOperator
        >>> operator_dtype(DenseOperator(torch.eye(2, dtype=torch.float32)))
        torch.float32
    """
    dtype = getattr(op, "dtype", None)
    return dtype if isinstance(dtype, torch.dtype) else torch.float64


def operator_device(op: LinearOperator) -> torch.device:
    """The device an operator computes on: its ``device`` attribute, the CPU when it has none.

    Example:
        >>> import torch
        >>> from lightning_prunelimit.curvature import DenseOperator
        >>> operator_device(DenseOperator(torch.eye(2, dtype=torch.float64)))
        device(type='cpu')
    """
    device = getattr(op, "device", None)
    return torch.device(device) if device is not None else torch.device("cpu")


def operator_dim(op: LinearOperator) -> int:
    """Check that ``op`` looks like a :class:`LinearOperator` and return its dimension.

    Example:
        >>> import torch
        >>> from lightning_prunelimit.curvature import DenseOperator
        >>> operator_dim(DenseOperator(torch.eye(4, dtype=torch.float64)))
        4
    """
    if not callable(getattr(op, "matvec", None)):
        raise TypeError(
            f"expected a linear operator with `dim` and `matvec`, got {type(op).__name__}: wrap a "
            "symmetric matrix in DenseOperator(matrix) or build a HessianOperator"
        )
    dim = getattr(op, "dim", None)
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ValueError(f"the operator's `dim` must be a positive int, got {dim!r}")
    return dim
