"""A spectral density estimate: Ritz values (nodes) and Gauss quadrature weights per probe."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

_WEIGHT_SUM_TOLERANCE = 1e-6


@dataclass(frozen=True, eq=False)
class Spectrum:
    """Stochastic Lanczos quadrature of a ``dim x dim`` symmetric matrix ``H``.

    Row ``p`` holds the Ritz values ``nodes[p]`` and weights ``weights[p]`` of probe ``p``: for
    any function ``f``, ``sum_j weights[p, j] * f(nodes[p, j])`` approximates ``v_p^T f(H) v_p``
    for the unit probe ``v_p``. A probe whose Lanczos run stopped early (an invariant Krylov
    space) is padded with copies of its own nodes carrying zero weight.

    Args:
        nodes: ``(num_probes, m)`` Ritz values (stored as float64 on the CPU).
        weights: ``(num_probes, m)`` non-negative weights; every row sums to 1 (within 1e-6).
        dim: the matrix size ``D``.

    Example:
        >>> import torch
        >>> from lightning_prunelimit.curvature import Spectrum
        >>> s = Spectrum(torch.tensor([[0.0, 2.0]]), torch.tensor([[0.5, 0.5]]), dim=4)
        >>> s.trace_of(lambda x: x)  # 4 * (0.5 * 0 + 0.5 * 2)
        4.0
        >>> s.num_probes, s.num_iters
        (1, 2)
    """

    nodes: Tensor
    weights: Tensor
    dim: int

    def __post_init__(self) -> None:
        nodes = torch.as_tensor(self.nodes).detach().to(device="cpu", dtype=torch.float64)
        weights = torch.as_tensor(self.weights).detach().to(device="cpu", dtype=torch.float64)
        if nodes.ndim != 2 or nodes.shape != weights.shape or nodes.numel() == 0:
            raise ValueError(
                f"nodes and weights must both have shape (num_probes, m) with m >= 1, got "
                f"{tuple(nodes.shape)} and {tuple(weights.shape)}"
            )
        if not (torch.isfinite(nodes).all() and torch.isfinite(weights).all()):
            raise ValueError("nodes and weights must be finite: the Lanczos run diverged")
        if (weights < 0).any():
            raise ValueError(
                f"weights must be non-negative, got a minimum of {float(weights.min()):.3g}"
            )
        sums = weights.sum(dim=1)
        worst = float((sums - 1).abs().max())
        if worst > _WEIGHT_SUM_TOLERANCE:
            raise ValueError(
                f"every row of weights must sum to 1 (within {_WEIGHT_SUM_TOLERANCE}), but a row "
                f"is off by {worst:.3g}: weights are the squared first components of the "
                "eigenvectors of each tridiagonal matrix"
            )
        if isinstance(self.dim, bool) or not isinstance(self.dim, int) or self.dim < 1:
            raise ValueError(f"dim must be a positive int (the matrix size), got {self.dim!r}")
        object.__setattr__(self, "nodes", nodes.contiguous())
        object.__setattr__(self, "weights", weights.contiguous())

    @property
    def num_probes(self) -> int:
        """Number of probe vectors (rows)."""
        return int(self.nodes.shape[0])

    @property
    def num_iters(self) -> int:
        """Number of quadrature nodes per probe (the longest Lanczos run)."""
        return int(self.nodes.shape[1])

    @property
    def min_node(self) -> float:
        """Smallest Ritz value over all probes (an upper bound on the smallest eigenvalue)."""
        return float(self.nodes.min())

    @property
    def max_node(self) -> float:
        """Largest Ritz value over all probes (a lower bound on the largest eigenvalue)."""
        return float(self.nodes.max())

    def trace_of(self, f: Callable[[Tensor], Tensor]) -> float:
        """Estimate ``tr f(H)`` as ``dim * mean over probes of sum_j w_j f(node_j)``.

        ``f`` receives the float64 ``(num_probes, m)`` node tensor and must return a tensor of
        the same shape (elementwise). Zero-weight padding entries do not contribute, even where
        ``f`` is infinite.

        Example:
            >>> import torch
            >>> s = Spectrum(torch.tensor([[1.0, 3.0]]), torch.tensor([[0.25, 0.75]]), dim=2)
            >>> s.trace_of(torch.square)  # 2 * (0.25 * 1 + 0.75 * 9)
            14.0
        """
        values = torch.as_tensor(f(self.nodes.clone()), dtype=torch.float64)
        if values.shape != self.nodes.shape:
            raise ValueError(
                f"f must map the nodes elementwise, returning shape {tuple(self.nodes.shape)}, "
                f"got {tuple(values.shape)}"
            )
        terms = torch.where(self.weights > 0, self.weights * values, torch.zeros_like(values))
        return float(self.dim * terms.sum(dim=1).mean())

    def density(self, grid: Tensor | Sequence[float], sigma: float) -> Tensor:
        """Gaussian-smoothed spectral density on ``grid``: it integrates to 1 over the real line.

        ``density(t) = mean_p sum_j w_pj N(t; node_pj, sigma^2)``.

        Example:
            >>> import torch
            >>> s = Spectrum(torch.tensor([[0.0]]), torch.tensor([[1.0]]), dim=1)
            >>> round(float(s.density([0.0], sigma=1.0)[0]), 4)  # 1 / sqrt(2 pi)
            0.3989
        """
        if not (isinstance(sigma, (int, float)) and math.isfinite(sigma) and sigma > 0):
            raise ValueError(f"sigma must be a positive number (the kernel width), got {sigma!r}")
        points = torch.as_tensor(grid, dtype=torch.float64).reshape(-1)
        nodes = self.nodes.reshape(-1)
        weights = self.weights.reshape(-1) / self.num_probes
        out = torch.empty_like(points)
        chunk = max(1, 2**22 // max(1, nodes.numel()))
        norm = 1.0 / (sigma * math.sqrt(2.0 * math.pi))
        for start in range(0, points.numel(), chunk):
            z = (points[start : start + chunk, None] - nodes[None, :]) / sigma
            out[start : start + chunk] = norm * (torch.exp(-0.5 * z * z) @ weights)
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form: nested lists of floats and the int ``dim``.

        Example:
            >>> import torch
            >>> Spectrum(torch.tensor([[1.0]]), torch.tensor([[1.0]]), dim=3).to_dict()
            {'nodes': [[1.0]], 'weights': [[1.0]], 'dim': 3}
        """
        return {"nodes": self.nodes.tolist(), "weights": self.weights.tolist(), "dim": self.dim}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Spectrum:
        """Rebuild a spectrum from :meth:`to_dict` output.

        Example:
            >>> s = Spectrum.from_dict({"nodes": [[1.0]], "weights": [[1.0]], "dim": 3})
            >>> Spectrum.from_dict(s.to_dict()) == s
            True
        """
        missing = {"nodes", "weights", "dim"} - set(data)
        if missing:
            raise ValueError(f"spectrum dict lacks {sorted(missing)}: pass Spectrum.to_dict()")
        return cls(
            nodes=torch.tensor(data["nodes"], dtype=torch.float64),
            weights=torch.tensor(data["weights"], dtype=torch.float64),
            dim=int(data["dim"]),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Spectrum):
            return NotImplemented
        return (
            self.dim == other.dim
            and torch.equal(self.nodes, other.nodes)
            and torch.equal(self.weights, other.weights)
        )

    __hash__ = None  # type: ignore[assignment]
