"""An explicit symmetric matrix as a :class:`LinearOperator` (for tests and small problems)."""

from __future__ import annotations

import torch
from torch import Tensor


class DenseOperator:
    """Wrap a symmetric matrix so that the Krylov routines can use it like a Hessian operator.

    Args:
        matrix: a square, symmetric, floating-point tensor. Products are computed in its dtype and
            on its device; vectors from any device are moved there.

    Example:
        >>> import torch
        >>> from lightning_prunelimit.curvature import DenseOperator
        >>> op = DenseOperator(torch.diag(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)))
        >>> op.dim
        3
        >>> (op @ torch.ones(3, dtype=torch.float64)).tolist()
        [1.0, 2.0, 3.0]
    """

    def __init__(self, matrix: Tensor) -> None:
        if not isinstance(matrix, Tensor):
            raise TypeError(f"matrix must be a torch.Tensor, got {type(matrix).__name__}")
        if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] == 0:
            raise ValueError(
                f"matrix must be square and non-empty, got shape {tuple(matrix.shape)}: pass a "
                "(dim, dim) tensor"
            )
        if not matrix.is_floating_point():
            raise ValueError(
                f"matrix must be floating point, got {matrix.dtype}: convert it with .double()"
            )
        if not torch.isfinite(matrix).all():
            raise ValueError("matrix has NaN or infinite entries: pass a finite matrix")
        scale = matrix.abs().max().clamp_min(torch.finfo(matrix.dtype).tiny)
        asymmetry = (matrix - matrix.T).abs().max()
        if asymmetry > 1e3 * torch.finfo(matrix.dtype).eps * scale:
            raise ValueError(
                f"matrix is not symmetric (max |M - M.T| = {float(asymmetry):.3g}): Lanczos "
                "needs a symmetric matrix; pass (M + M.T) / 2"
            )
        self.matrix = matrix

    @property
    def dim(self) -> int:
        """Number of rows of the matrix."""
        return int(self.matrix.shape[0])

    @property
    def dtype(self) -> torch.dtype:
        """The matrix dtype, in which every product is computed."""
        return self.matrix.dtype

    @property
    def device(self) -> torch.device:
        """The matrix device, on which every product is returned."""
        return self.matrix.device

    def matvec(self, v: Tensor) -> Tensor:
        """Return ``matrix @ v`` for ``v`` of shape ``(dim,)``, or one product per row of a block.

        Example:
            >>> import torch
            >>> op = DenseOperator(2 * torch.eye(2, dtype=torch.float64))
            >>> op.matvec(torch.ones(3, 2, dtype=torch.float64)).shape
            torch.Size([3, 2])
        """
        if not isinstance(v, Tensor) or v.ndim not in (1, 2) or v.shape[-1] != self.dim:
            shape = tuple(v.shape) if isinstance(v, Tensor) else type(v).__name__
            raise ValueError(
                f"expected a vector of shape ({self.dim},) or a block (k, {self.dim}), got {shape}"
            )
        v = v.to(device=self.device, dtype=self.dtype)
        return v @ self.matrix  # the matrix is symmetric, so row-vector products equal M @ v

    def __matmul__(self, v: Tensor) -> Tensor:
        return self.matvec(v)

    def __repr__(self) -> str:
        return f"DenseOperator(dim={self.dim}, dtype={self.dtype}, device={self.device})"
