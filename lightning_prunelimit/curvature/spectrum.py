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

    Two optional parts make the estimate checkable:

    - ``deflated``: the number of exactly-zero rows of ``H`` that were removed before the Lanczos
      run (each is an eigenvector with eigenvalue 0). The probes then describe the remaining
      ``dim - deflated`` coordinates, and every estimate adds the deflated directions exactly:
      ``tr f(H) = deflated * f(0) + (dim - deflated) * mean_p sum_j w_pj f(node_pj)``.
    - ``alphas``, ``betas`` and ``lengths``: the tridiagonal Lanczos coefficients behind each row
      (as in :class:`LanczosResult`). They let ``lightning_prunelimit.limit`` bound the
      quadrature error of a short run; a spectrum without them yields point estimates only.

    Args:
        nodes: ``(num_probes, m)`` Ritz values (stored as float64 on the CPU).
        weights: ``(num_probes, m)`` non-negative weights; every row sums to 1 (within 1e-6).
        dim: the matrix size ``D``.
        deflated: exactly-zero rows removed before the run, in ``[0, dim)``.
        alphas: ``(num_probes, L)`` diagonals of the tridiagonal matrices, or None.
        betas: ``(num_probes, L)`` off-diagonals; ``betas[p, lengths[p] - 1]`` is the norm of
            the residual left after the last step. None with ``alphas``.
        lengths: Lanczos steps run per probe; None with ``alphas``.

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
    deflated: int = 0
    alphas: Tensor | None = None
    betas: Tensor | None = None
    lengths: tuple[int, ...] | None = None

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
        if (
            isinstance(self.deflated, bool)
            or not isinstance(self.deflated, int)
            or not 0 <= self.deflated < self.dim
        ):
            raise ValueError(
                f"deflated must be an int in [0, dim) (exactly-zero rows removed), got "
                f"{self.deflated!r} for dim {self.dim}"
            )
        object.__setattr__(self, "nodes", nodes.contiguous())
        object.__setattr__(self, "weights", weights.contiguous())
        self._check_coefficients()

    def _check_coefficients(self) -> None:
        given = [self.alphas is not None, self.betas is not None, self.lengths is not None]
        if not any(given):
            return
        if not all(given):
            raise ValueError("alphas, betas and lengths go together: pass all three or none")
        alphas = torch.as_tensor(self.alphas).detach().to(device="cpu", dtype=torch.float64)
        betas = torch.as_tensor(self.betas).detach().to(device="cpu", dtype=torch.float64)
        lengths = tuple(int(n) for n in self.lengths)
        if (
            alphas.ndim != 2
            or alphas.shape != betas.shape
            or alphas.shape[0] != self.num_probes
            or len(lengths) != self.num_probes
            or any(n < 1 or n > alphas.shape[1] for n in lengths)
        ):
            raise ValueError(
                f"alphas and betas must have shape (num_probes, L) with one length in [1, L] per "
                f"probe ({self.num_probes}), got {tuple(alphas.shape)}, {tuple(betas.shape)} "
                f"and {lengths}"
            )
        object.__setattr__(self, "alphas", alphas.contiguous())
        object.__setattr__(self, "betas", betas.contiguous())
        object.__setattr__(self, "lengths", lengths)

    @property
    def has_coefficients(self) -> bool:
        """Whether the Lanczos coefficients are attached (needed for error bounds).

        Example:
            >>> import torch
            >>> Spectrum(torch.tensor([[1.0]]), torch.tensor([[1.0]]), dim=1).has_coefficients
            False
        """
        return self.alphas is not None

    @property
    def deflated_fraction(self) -> float:
        """``deflated / dim``: the fraction of directions known to be exactly flat.

        Example:
            >>> import torch
            >>> s = Spectrum(torch.tensor([[1.0]]), torch.tensor([[1.0]]), dim=4, deflated=1)
            >>> s.deflated_fraction
            0.25
        """
        return self.deflated / self.dim

    @property
    def probed_dim(self) -> int:
        """``dim - deflated``: the size of the part of ``H`` that the probes describe."""
        return self.dim - self.deflated

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

        With deflated rows: ``deflated * f(0) + (dim - deflated) * mean_p sum_j w_j f(node_j)``.
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
        estimate = self.probed_dim * float(terms.sum(dim=1).mean())
        if self.deflated:
            at_zero = torch.as_tensor(f(torch.zeros(1, 1, dtype=torch.float64)))
            estimate += self.deflated * float(at_zero.reshape(-1)[0])
        return float(estimate)

    def density(self, grid: Tensor | Sequence[float], sigma: float) -> Tensor:
        """Gaussian-smoothed spectral density on ``grid``: it integrates to 1 over the real line.

        ``density(t) = mean_p sum_j w_pj N(t; node_pj, sigma^2)``, scaled by
        ``1 - deflated_fraction``, plus ``deflated_fraction * N(t; 0, sigma^2)``.

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
        weights = self.weights.reshape(-1) * (self.probed_dim / self.dim / self.num_probes)
        if self.deflated:
            nodes = torch.cat([nodes, torch.zeros(1, dtype=torch.float64)])
            weights = torch.cat([weights, torch.tensor([self.deflated_fraction])])
        out = torch.empty_like(points)
        chunk = max(1, 2**22 // max(1, nodes.numel()))
        norm = 1.0 / (sigma * math.sqrt(2.0 * math.pi))
        for start in range(0, points.numel(), chunk):
            z = (points[start : start + chunk, None] - nodes[None, :]) / sigma
            out[start : start + chunk] = norm * (torch.exp(-0.5 * z * z) @ weights)
        return out

    def _coefficients(self) -> tuple[Tensor, Tensor, tuple[int, ...]]:
        if not self.has_coefficients:
            raise ValueError(
                "this spectrum carries no Lanczos coefficients: it cannot be cut or joined "
                "by probes and steps (run stochastic_lanczos_quadrature for one that does)"
            )
        assert self.alphas is not None and self.betas is not None and self.lengths is not None
        return self.alphas, self.betas, self.lengths

    def _from_coefficients(self, alphas: Tensor, betas: Tensor, lengths: Sequence[int]) -> Spectrum:
        width = max(lengths)
        nodes = torch.zeros(len(lengths), width, dtype=torch.float64)
        weights = torch.zeros_like(nodes)
        for p, n in enumerate(lengths):
            off = betas[p, : n - 1]
            t = torch.diag(alphas[p, :n]) + torch.diag(off, 1) + torch.diag(off, -1)
            values, vectors = torch.linalg.eigh(t)
            nodes[p, :n], nodes[p, n:] = values, values[-1]
            weights[p, :n] = vectors[0] ** 2
        return Spectrum(
            nodes,
            weights,
            self.dim,
            self.deflated,
            alphas[:, :width],
            betas[:, :width],
            tuple(int(n) for n in lengths),
        )

    def probes(self, indices: Sequence[int]) -> Spectrum:
        """The spectrum of the probes ``indices`` only (nodes, weights and coefficients).

        Example:
            >>> import torch
            >>> from lightning_prunelimit.curvature import (
            ...     DenseOperator, stochastic_lanczos_quadrature)
            >>> op = DenseOperator(torch.diag(torch.arange(1.0, 9.0, dtype=torch.float64)))
            >>> spectrum = stochastic_lanczos_quadrature(op, num_iters=4, num_probes=3)
            >>> spectrum.probes([2]).num_probes
            1
        """
        rows = list(indices)
        if not rows or any(not 0 <= i < self.num_probes for i in rows):
            raise ValueError(f"probe indices must be in [0, {self.num_probes}), got {rows}")
        if not self.has_coefficients:
            return Spectrum(self.nodes[rows], self.weights[rows], self.dim, self.deflated)
        alphas, betas, lengths = self._coefficients()
        return self._from_coefficients(alphas[rows], betas[rows], [lengths[i] for i in rows])

    def truncated(self, num_iters: int) -> Spectrum:
        """The spectrum the same run had after ``num_iters`` steps (its Gauss rules then).

        The first ``m`` Lanczos coefficients of a run are those of an ``m``-step run from the
        same probe, so spectra of different lengths can be compared at a common step count.

        Example:
            >>> import torch
            >>> from lightning_prunelimit.curvature import (
            ...     DenseOperator, stochastic_lanczos_quadrature)
            >>> op = DenseOperator(torch.diag(torch.arange(1.0, 9.0, dtype=torch.float64)))
            >>> long = stochastic_lanczos_quadrature(op, num_iters=6)
            >>> short = stochastic_lanczos_quadrature(op, num_iters=3)
            >>> bool(torch.allclose(long.truncated(3).nodes, short.nodes))
            True
        """
        if isinstance(num_iters, bool) or not isinstance(num_iters, int) or num_iters < 1:
            raise ValueError(f"num_iters must be a positive int, got {num_iters!r}")
        alphas, betas, lengths = self._coefficients()
        kept = [min(n, num_iters) for n in lengths]
        return self._from_coefficients(alphas, betas, kept)

    def joined(self, other: Spectrum) -> Spectrum:
        """The probes of this spectrum followed by those of ``other`` (same matrix and deflation).

        Example:
            >>> import torch
            >>> from lightning_prunelimit.curvature import (
            ...     DenseOperator, stochastic_lanczos_quadrature)
            >>> op = DenseOperator(torch.diag(torch.arange(1.0, 9.0, dtype=torch.float64)))
            >>> a = stochastic_lanczos_quadrature(op, num_iters=4)
            >>> b = stochastic_lanczos_quadrature(op, num_iters=2, first_probe=1)
            >>> a.joined(b).num_probes, a.joined(b).lengths
            (2, (4, 2))
        """
        if (self.dim, self.deflated) != (other.dim, other.deflated):
            raise ValueError(
                f"cannot join spectra of different matrices: dim/deflated {self.dim}/"
                f"{self.deflated} and {other.dim}/{other.deflated}"
            )
        a_alphas, a_betas, a_lengths = self._coefficients()
        b_alphas, b_betas, b_lengths = other._coefficients()
        width = max(a_alphas.shape[1], b_alphas.shape[1])

        def padded(rows: Tensor) -> Tensor:
            return torch.nn.functional.pad(rows, (0, width - rows.shape[1]))

        return self._from_coefficients(
            torch.cat([padded(a_alphas), padded(b_alphas)]),
            torch.cat([padded(a_betas), padded(b_betas)]),
            list(a_lengths) + list(b_lengths),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form: nested lists of floats and ints.

        Example:
            >>> import torch
            >>> Spectrum(torch.tensor([[1.0]]), torch.tensor([[1.0]]), dim=3).to_dict()
            {'nodes': [[1.0]], 'weights': [[1.0]], 'dim': 3, 'deflated': 0}
        """
        data: dict[str, Any] = {
            "nodes": self.nodes.tolist(),
            "weights": self.weights.tolist(),
            "dim": self.dim,
            "deflated": self.deflated,
        }
        if self.has_coefficients:
            data["alphas"] = self.alphas.tolist()
            data["betas"] = self.betas.tolist()
            data["lengths"] = list(self.lengths)
        return data

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
        coefficients = {}
        if data.get("alphas") is not None:
            coefficients = {
                "alphas": torch.tensor(data["alphas"], dtype=torch.float64),
                "betas": torch.tensor(data["betas"], dtype=torch.float64),
                "lengths": tuple(int(n) for n in data["lengths"]),
            }
        return cls(
            nodes=torch.tensor(data["nodes"], dtype=torch.float64),
            weights=torch.tensor(data["weights"], dtype=torch.float64),
            dim=int(data["dim"]),
            deflated=int(data.get("deflated", 0)),
            **coefficients,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Spectrum):
            return NotImplemented

        def same(a: Tensor | None, b: Tensor | None) -> bool:
            return (a is None and b is None) or (
                a is not None and b is not None and torch.equal(a, b)
            )

        return (
            self.dim == other.dim
            and self.deflated == other.deflated
            and torch.equal(self.nodes, other.nodes)
            and torch.equal(self.weights, other.weights)
            and same(self.alphas, other.alphas)
            and same(self.betas, other.betas)
            and self.lengths == other.lengths
        )

    __hash__ = None  # type: ignore[assignment]
