"""Fraction of zero-curvature directions, estimated by sampling Hessian rows.

A Lanczos spectrum resolves the large eigenvalues well but lumps the (often huge) set of exactly
flat directions into a few small Ritz values. The paper's "important eigenvalues" step counts
them separately: it looks at the Hessian rows of weights sitting at evenly spaced magnitude
quantiles and counts the rows that vanish. A weight whose row H e_i is zero (for instance one
fed by an input that is always zero, or feeding a dead unit) is a flat direction; the fraction
of vanishing rows among the sampled quantiles estimates the zero-eigenvalue mass z used by
``sublevel_width``.

Default tolerance. The reference accumulates, over the batches, the l1 norm of each batch's row
of the batch-mean loss and divides by the number of samples. With batches of size B, the row of
the sample-mean loss is the average of the batch rows, so by the triangle inequality
``||H e_i||_1 <= B * statistic``: the reference's test ``statistic < 1e-7`` at B = 128 implies
``||H e_i||_1 < 1.28e-5``. Here the statistic is the l1 norm of the row of the sample-mean loss
itself, which does not depend on the batch size, and the default tolerance is that bound rounded
down, ``1e-5``. It stays well above the rounding noise of float32 Hessian-vector products
(about 1e-7 relative to the curvature scale) for losses of order one; pass a smaller tolerance
for float64 models or losses of a much smaller scale.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

if TYPE_CHECKING:  # pragma: no cover
    from lightning_prunelimit.curvature import LinearOperator

__all__ = ["DEFAULT_ZERO_ROW_TOLERANCE", "ZeroCurvature", "zero_curvature_fraction"]

#: Rows with ``||H e_i||_1`` below this count as zero curvature (see the module docstring).
DEFAULT_ZERO_ROW_TOLERANCE = 1e-5


@dataclass(frozen=True)
class ZeroCurvature:
    """The sampled Hessian rows and the fraction of them that vanish.

    Attributes:
        fraction: ``count / num_quantiles``, the rows with ``||H e_i||_1 < tolerance``.
        quantiles: the magnitude quantiles ``j / num_quantiles`` that were sampled.
        indices: the coordinate (index into the operator's flat vector) at each quantile.
        row_norms: ``||H e_i||_1`` of each sampled row.
        tolerance: the threshold used.

    Example:
        >>> z = ZeroCurvature(0.5, (0.0, 0.5), (3, 1), (0.0, 2.0), 1e-5)
        >>> ZeroCurvature.from_dict(z.to_dict()) == z
        True
    """

    fraction: float
    quantiles: tuple[float, ...]
    indices: tuple[int, ...]
    row_norms: tuple[float, ...]
    tolerance: float

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-friendly dictionary (floats, ints and lists).

        Example:
            >>> ZeroCurvature(1.0, (0.0,), (0,), (0.0,), 1e-5).to_dict()["indices"]
            [0]
        """
        return {
            "fraction": float(self.fraction),
            "quantiles": [float(q) for q in self.quantiles],
            "indices": [int(i) for i in self.indices],
            "row_norms": [float(r) for r in self.row_norms],
            "tolerance": float(self.tolerance),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ZeroCurvature:
        """Rebuild from ``to_dict()`` output.

        Example:
            >>> ZeroCurvature.from_dict({"fraction": 0.0, "quantiles": [0.0], "indices": [2],
            ...     "row_norms": [1.0], "tolerance": 1e-5}).indices
            (2,)
        """
        return cls(
            fraction=float(data["fraction"]),
            quantiles=tuple(float(q) for q in data["quantiles"]),
            indices=tuple(int(i) for i in data["indices"]),
            row_norms=tuple(float(r) for r in data["row_norms"]),
            tolerance=float(data["tolerance"]),
        )


def _positive_int(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def zero_curvature_fraction(
    op: LinearOperator,
    candidate_indices: Tensor | Sequence[int] | None = None,
    *,
    values: Tensor | None = None,
    num_quantiles: int = 100,
    tolerance: float = DEFAULT_ZERO_ROW_TOLERANCE,
    block_size: int = 16,
) -> ZeroCurvature:
    """Estimate the fraction of zero-curvature directions from sampled Hessian rows.

    Among the candidate coordinates (default: all), ranked by ``|value|`` (ties by index), the
    coordinate at each magnitude quantile ``j / num_quantiles`` (j = 0..num_quantiles-1; the
    one at sorted position ``floor(j * n / num_quantiles)``) is sampled. Its Hessian row
    ``H e_i`` is computed with ``op.matvec`` on blocks of ``block_size`` unit vectors (one data
    pass per block for a ``HessianOperator``), and the rows with ``||H e_i||_1 < tolerance``
    are counted: ``fraction = count / num_quantiles``.

    Args:
        op: a curvature operator with ``dim`` and ``matvec`` taking ``(k, dim)`` blocks, e.g.
            ``HessianOperator`` or ``DenseOperator``.
        candidate_indices: coordinates of ``op``'s flat vector to sample from, e.g. the
            prunable weights' positions; default all.
        values: the parameter values deciding the magnitude ranking, shape ``(dim,)``;
            default ``op.parameter_vector()``.
        num_quantiles: how many quantiles (rows) to sample.
        tolerance: rows with l1 norm below it count as zero curvature.
        block_size: unit vectors per ``matvec`` call.

    Example:
        >>> import torch
        >>> from types import SimpleNamespace
        >>> matrix = torch.diag(torch.tensor([0.0, 2.0, 0.0, 1.0]))
        >>> op = SimpleNamespace(dim=4, matvec=lambda v: v @ matrix)  # a DenseOperator
        >>> result = zero_curvature_fraction(
        ...     op, values=torch.tensor([0.1, 0.2, 0.3, 0.4]), num_quantiles=4)
        >>> result.fraction, result.indices
        (0.5, (0, 1, 2, 3))
    """
    dim = getattr(op, "dim", None)
    if not isinstance(dim, int) or not callable(getattr(op, "matvec", None)):
        raise TypeError(
            f"op must be a curvature operator with an int 'dim' and a 'matvec' method, got "
            f"{type(op).__name__}"
        )
    num_quantiles = _positive_int("num_quantiles", num_quantiles)
    block_size = _positive_int("block_size", block_size)
    if isinstance(tolerance, bool) or not isinstance(tolerance, numbers.Real):
        raise TypeError(f"tolerance must be a positive number, got {tolerance!r}")
    if not (math.isfinite(float(tolerance)) and float(tolerance) > 0):
        raise ValueError(f"tolerance must be positive and finite, got {tolerance}")

    if values is None:
        parameter_vector = getattr(op, "parameter_vector", None)
        if not callable(parameter_vector):
            raise ValueError(
                f"{type(op).__name__} has no parameter_vector(): pass values=<tensor of shape "
                f"({dim},)> to rank the coordinates by magnitude"
            )
        values = parameter_vector()
    if not isinstance(values, Tensor) or values.shape != (dim,):
        shape = tuple(values.shape) if isinstance(values, Tensor) else type(values).__name__
        raise ValueError(f"values must be a tensor of shape ({dim},), got {shape}")

    if candidate_indices is None:
        candidates = torch.arange(dim)
    else:
        candidates = torch.as_tensor(candidate_indices).reshape(-1)
        if candidates.dtype in (torch.bool,) or candidates.is_floating_point():
            raise TypeError("candidate_indices must be integer indices into the flat vector")
        candidates = candidates.to(device="cpu", dtype=torch.int64)
        if candidates.numel() == 0:
            raise ValueError("candidate_indices is empty: pass at least one index, or None")
        if bool(((candidates < 0) | (candidates >= dim)).any()):
            raise ValueError(f"candidate_indices must be in [0, {dim}), got out-of-range indices")

    magnitudes = values.detach().to("cpu", torch.float64).abs()[candidates]
    order = torch.sort(magnitudes, stable=True).indices
    count = candidates.numel()
    positions = [(j * count) // num_quantiles for j in range(num_quantiles)]
    indices = [int(candidates[order[p]]) for p in positions]

    dtype = getattr(op, "dtype", None)
    dtype = values.dtype if dtype is None else dtype
    device = getattr(op, "device", None)
    device = values.device if device is None else device
    unique = sorted(set(indices))
    norms: dict[int, float] = {}
    for start in range(0, len(unique), block_size):
        block = unique[start : start + block_size]
        basis = torch.zeros(len(block), dim, dtype=dtype, device=device)
        basis[torch.arange(len(block)), torch.tensor(block)] = 1
        rows = op.matvec(basis)
        row_norms = rows.detach().to(torch.float64).abs().sum(dim=1).cpu()
        if not bool(torch.isfinite(row_norms).all()):
            raise ValueError(
                "a Hessian row is NaN or inf: check that the loss is finite at these weights"
            )
        norms.update(zip(block, row_norms.tolist()))

    row_norms_list = [norms[i] for i in indices]
    zeros = sum(1 for r in row_norms_list if r < float(tolerance))
    return ZeroCurvature(
        fraction=zeros / num_quantiles,
        quantiles=tuple(j / num_quantiles for j in range(num_quantiles)),
        indices=tuple(indices),
        row_norms=tuple(row_norms_list),
        tolerance=float(tolerance),
    )
