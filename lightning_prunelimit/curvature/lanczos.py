"""Lanczos tridiagonalisation of a symmetric operator, for several start vectors in lockstep."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from lightning_prunelimit.curvature.float32_precision import full_float32_precision
from lightning_prunelimit.curvature.lanczos_basis import LanczosBasis
from lightning_prunelimit.curvature.linear_operator import (
    LinearOperator,
    operator_device,
    operator_dim,
    operator_dtype,
)
from lightning_prunelimit.curvature.spectrum import Spectrum

#: A second Gram-Schmidt sweep runs where the first left less than this fraction of the norm.
_SECOND_SWEEP = 2.0**-0.5


@dataclass(frozen=True, eq=False)
class LanczosResult:
    """Tridiagonal Lanczos coefficients of one run per start vector (probe), in float64.

    Probe ``p`` ran ``lengths[p]`` steps: its tridiagonal matrix ``T_p`` has diagonal
    ``alphas[p, :L]`` and off-diagonal ``betas[p, :L-1]``; ``betas[p, L-1]`` is the norm of the
    residual left after the last step (about 0 when the run stopped on an invariant Krylov space).
    Entries past ``lengths[p]`` are 0.

    Example:
        >>> import torch
        >>> from lightning_prunelimit.curvature import DenseOperator, lanczos
        >>> op = DenseOperator(torch.diag(torch.tensor([1.0, 1.0, 4.0], dtype=torch.float64)))
        >>> result = lanczos(op, torch.ones(1, 3, dtype=torch.float64), num_iters=3)
        >>> result.lengths  # two distinct eigenvalues: the Krylov space is 2-dimensional
        (2,)
        >>> nodes, weights, _ = result.ritz()
        >>> [round(x, 12) for x in nodes[0].tolist()], [round(x, 12) for x in weights[0].tolist()]
        ([1.0, 4.0], [0.666666666667, 0.333333333333])
    """

    alphas: Tensor
    betas: Tensor
    lengths: tuple[int, ...]
    dim: int

    def __post_init__(self) -> None:
        alphas = torch.as_tensor(self.alphas, dtype=torch.float64).detach().cpu()
        betas = torch.as_tensor(self.betas, dtype=torch.float64).detach().cpu()
        lengths = tuple(int(n) for n in self.lengths)
        if alphas.ndim != 2 or alphas.shape != betas.shape or alphas.shape[0] != len(lengths):
            raise ValueError(
                f"alphas and betas must have shape (num_probes, m) and lengths one entry per "
                f"probe, got {tuple(alphas.shape)}, {tuple(betas.shape)} and {len(lengths)}"
            )
        if any(n < 1 or n > alphas.shape[1] for n in lengths):
            raise ValueError(f"every length must be in [1, {alphas.shape[1]}], got {lengths}")
        object.__setattr__(self, "alphas", alphas)
        object.__setattr__(self, "betas", betas)
        object.__setattr__(self, "lengths", lengths)

    @property
    def num_probes(self) -> int:
        """Number of start vectors."""
        return len(self.lengths)

    def tridiagonal(self, probe: int = 0) -> Tensor:
        """The ``(L, L)`` float64 tridiagonal matrix of one probe.

        Example:
            >>> import torch
            >>> r = LanczosResult(torch.tensor([[1.0, 2.0]]), torch.tensor([[0.5, 0.0]]), (2,), 2)
            >>> r.tridiagonal(0).tolist()
            [[1.0, 0.5], [0.5, 2.0]]
        """
        n = self.lengths[probe]
        off = self.betas[probe, : n - 1]
        return torch.diag(self.alphas[probe, :n]) + torch.diag(off, 1) + torch.diag(off, -1)

    def ritz(self) -> tuple[Tensor, Tensor, Tensor]:
        """Ritz values, quadrature weights and error bounds, each ``(num_probes, max(lengths))``.

        Values are ascending per probe; weights are the squared first components of the
        eigenvectors of ``T_p``; the bound ``|beta_L * s_L|`` (last eigenvector component times
        the final residual norm) limits the distance from each Ritz value to an eigenvalue.
        Shorter probes are padded with their largest Ritz value, weight 0 and bound 0.

        Example:
            >>> import torch
            >>> r = LanczosResult(torch.tensor([[2.0]]), torch.tensor([[0.0]]), (1,), 1)
            >>> [t.tolist() for t in r.ritz()]
            [[[2.0]], [[1.0]], [[0.0]]]
        """
        width = max(self.lengths)
        nodes = torch.zeros(self.num_probes, width, dtype=torch.float64)
        weights = torch.zeros_like(nodes)
        bounds = torch.zeros_like(nodes)
        for p, n in enumerate(self.lengths):
            values, vectors = torch.linalg.eigh(self.tridiagonal(p))
            nodes[p, :n] = values
            nodes[p, n:] = values[-1]
            weights[p, :n] = vectors[0] ** 2
            bounds[p, :n] = (self.betas[p, n - 1] * vectors[n - 1]).abs()
        return nodes, weights, bounds

    def spectrum(self, *, dim: int | None = None, deflated: int = 0) -> Spectrum:
        """The Gauss quadrature of every probe, as a :class:`Spectrum` (coefficients attached).

        ``dim`` and ``deflated`` describe an operator from which ``deflated`` exactly-zero rows
        were removed before the run (default: none, ``dim = self.dim``).

        Example:
            >>> import torch
            >>> r = LanczosResult(torch.tensor([[2.0]]), torch.tensor([[0.0]]), (1,), 5)
            >>> r.spectrum().trace_of(lambda x: x)
            10.0
        """
        nodes, weights, _ = self.ritz()
        width = max(self.lengths)
        return Spectrum(
            nodes=nodes,
            weights=weights,
            dim=self.dim + deflated if dim is None else dim,
            deflated=deflated,
            alphas=self.alphas[:, :width],
            betas=self.betas[:, :width],
            lengths=self.lengths,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (lists of floats and ints).

        Example:
            >>> import torch
            >>> LanczosResult(torch.tensor([[2.0]]), torch.tensor([[0.0]]), (1,), 5).to_dict()
            {'alphas': [[2.0]], 'betas': [[0.0]], 'lengths': [1], 'dim': 5}
        """
        return {
            "alphas": self.alphas.tolist(),
            "betas": self.betas.tolist(),
            "lengths": list(self.lengths),
            "dim": self.dim,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LanczosResult:
        """Rebuild a result from :meth:`to_dict` output.

        Example:
            >>> d = {"alphas": [[2.0]], "betas": [[0.0]], "lengths": [1], "dim": 5}
            >>> LanczosResult.from_dict(d).to_dict() == d
            True
        """
        return cls(
            alphas=torch.tensor(data["alphas"], dtype=torch.float64),
            betas=torch.tensor(data["betas"], dtype=torch.float64),
            lengths=tuple(int(n) for n in data["lengths"]),
            dim=int(data["dim"]),
        )


def lanczos(
    op: LinearOperator,
    start: Tensor,
    num_iters: int,
    *,
    progress: Callable[[int, int], None] | None = None,
    stop: Callable[[LanczosResult], bool] | None = None,
    breakdown_tol: float | None = None,
    basis_storage: str = "device",
    reorth_chunk: int | None = None,
) -> LanczosResult:
    """Run Lanczos from each row of ``start`` in lockstep, with full reorthogonalisation.

    Every step multiplies the whole block of still-running probes with one ``op.matvec`` call.
    Each new vector is orthogonalised against all earlier basis vectors of its probe (classical
    Gram-Schmidt), and once more when that sweep removed enough of it for rounding to matter
    (its norm fell below ``1/sqrt(2)`` of the norm before: the criterion of Daniel, Gragg,
    Kaufman and Stewart, 1976). Basis vectors are kept in the operator's dtype (float32 for
    half-precision operators) and on its device; the coefficients are stored in float64.

    A probe stops when its new residual norm ``beta`` falls to ``breakdown_tol`` times the running
    estimate of ``||H||`` (its Krylov space is then invariant and its quadrature exact); the others
    go on. ``num_iters`` is capped at ``dim``. The basis takes ``k * min(num_iters, dim) * dim``
    entries of the operator's dtype (allocated up front), on the device by default; with
    ``basis_storage="host"`` (host memory) or ``"disk"`` (a temporary file) the device holds only
    the work vectors and one chunk of ``reorth_chunk`` basis vectors at a time, and
    re-orthogonalisation stays full (chunk by chunk, on the device). Results agree up to
    rounding whatever the storage. Steps run with TF32 and autocast off
    (:func:`full_float32_precision`).

    Args:
        op: a symmetric :class:`LinearOperator`.
        start: ``(k, dim)`` or ``(dim,)`` start vectors (normalised here; must be non-zero).
        num_iters: the most steps per probe.
        progress: called as ``progress(step, total)`` after each step.
        stop: called with the coefficients so far after each step; returning True ends the run.
        breakdown_tol: relative threshold for ``beta``; default ``10 * eps`` of the basis dtype
            (at least ``100 * eps`` of float64). Half-precision operators get a float32 basis.
        basis_storage: ``"device"``, ``"host"`` or ``"disk"`` (see :class:`LanczosBasis`).
        reorth_chunk: basis vectors per transfer for host and disk storage (default: all).

    Example:
        >>> import torch
        >>> from lightning_prunelimit.curvature import DenseOperator, lanczos
        >>> op = DenseOperator(torch.diag(torch.arange(1.0, 6.0, dtype=torch.float64)))
        >>> result = lanczos(op, torch.ones(2, 5, dtype=torch.float64), num_iters=10)
        >>> result.lengths  # capped at dim = 5
        (5, 5)
        >>> [round(x, 10) for x in result.ritz()[0][0].tolist()]
        [1.0, 2.0, 3.0, 4.0, 5.0]
    """
    dim = operator_dim(op)
    if isinstance(num_iters, bool) or not isinstance(num_iters, int) or num_iters < 1:
        raise ValueError(f"num_iters must be a positive int, got {num_iters!r}")
    if not isinstance(start, Tensor) or start.ndim not in (1, 2) or start.shape[-1] != dim:
        shape = tuple(start.shape) if isinstance(start, Tensor) else type(start).__name__
        raise ValueError(f"start must have shape (k, {dim}) or ({dim},), got {shape}")
    dtype, device = operator_dtype(op), operator_device(op)
    if torch.finfo(dtype).bits < 32:  # a half-precision basis cannot hold orthogonality
        dtype = torch.float32
    # Relative breakdown threshold: 10 eps of the basis dtype (float32: 1.2e-6), but no lower
    # than 100 eps of float64. Higher thresholds stop float32 runs early when a few large
    # outliers dominate ||H|| above a near-zero bulk; continuing past a true breakdown only adds
    # Ritz values of negligible weight.
    tol = (
        max(10.0 * torch.finfo(dtype).eps, 100.0 * torch.finfo(torch.float64).eps)
        if breakdown_tol is None
        else float(breakdown_tol)
    )
    if not tol >= 0:
        raise ValueError(f"breakdown_tol must be >= 0, got {breakdown_tol!r}")
    start = start.reshape(-1, dim).to(device=device, dtype=torch.float64)
    norms = torch.linalg.vector_norm(start, dim=1)
    if not bool((norms > 0).all()) or not bool(torch.isfinite(norms).all()):
        raise ValueError("every start vector must be non-zero and finite")
    k = start.shape[0]
    m = min(num_iters, dim)

    basis = LanczosBasis(k, m, dim, dtype, device, storage=basis_storage, chunk=reorth_chunk)
    for p in range(k):  # row by row: no second float64 copy of the whole block
        basis.write([p], 0, (start[p : p + 1] / norms[p]).to(dtype))
    del start
    alphas = torch.zeros(k, m, dtype=torch.float64)
    betas = torch.zeros(k, m, dtype=torch.float64)
    lengths = [0] * k
    scale = torch.zeros(k, dtype=torch.float64)  # running estimate of ||H|| per probe
    active = list(range(k))

    def snapshot() -> LanczosResult:
        width = max(lengths)
        return LanczosResult(alphas[:, :width], betas[:, :width], tuple(lengths), dim)

    try:
        with full_float32_precision():
            for j in range(m):
                q = basis.read(active, j)
                w = op.matvec(q)
                if not isinstance(w, Tensor) or w.shape != q.shape:
                    got = tuple(w.shape) if isinstance(w, Tensor) else type(w)
                    raise ValueError(
                        f"op.matvec returned {got} for a block of shape {tuple(q.shape)}: "
                        "it must return the block's shape"
                    )
                w = w.to(device=device, dtype=dtype)
                if w.untyped_storage().data_ptr() == q.untyped_storage().data_ptr():
                    w = w.clone()  # the operator handed back (a view of) its input
                alpha = (w * q).sum(dim=1)  # summed pairwise: more accurate than a BLAS dot
                # in place from here on: no other temporaries the size of the block
                w.addcmul_(alpha[:, None], q, value=-1)
                del q
                if j > 0:
                    previous = basis.read(active, j - 1)
                    beta_previous = betas[active, j - 1].to(device=device, dtype=dtype)
                    w.addcmul_(beta_previous[:, None], previous, value=-1)
                    del previous
                # Classical Gram-Schmidt, repeated only where the sweep cancelled much of the
                # vector (Daniel, Gragg, Kaufman and Stewart's criterion: the norm fell below
                # 1/sqrt(2) of what it was), which is when rounding could leave a component on
                # the basis; otherwise one sweep already orthogonalises to working precision.
                before = torch.linalg.vector_norm(w, dim=1)
                w = basis.orthogonalise(active, j, w)
                beta = torch.linalg.vector_norm(w, dim=1)
                if bool((beta < _SECOND_SWEEP * before).any()):
                    w = basis.orthogonalise(active, j, w)
                    beta = torch.linalg.vector_norm(w, dim=1)
                alpha64, beta64 = alpha.double().cpu(), beta.double().cpu()
                if not (torch.isfinite(alpha64).all() and torch.isfinite(beta64).all()):
                    raise ValueError(
                        f"Lanczos step {j + 1} produced a non-finite coefficient: the operator "
                        "returned NaN or inf (check the model's parameters and data)"
                    )
                index = torch.tensor(active)
                alphas[index, j] = alpha64
                betas[index, j] = beta64
                previous_beta = betas[index, j - 1] if j > 0 else torch.zeros_like(beta64)
                scale[index] = torch.maximum(scale[index], alpha64.abs() + beta64 + previous_beta)
                for p in active:
                    lengths[p] = j + 1
                going = beta64 > tol * scale[index]
                if j + 1 < m and bool(going.any()):
                    keep = going.nonzero().view(-1)
                    continuing = [active[int(r)] for r in keep]
                    if len(continuing) == len(active):
                        basis.write(continuing, j + 1, w.div_(beta[:, None]))
                    else:
                        keep_device = keep.to(device)
                        basis.write(continuing, j + 1, w[keep_device] / beta[keep_device, None])
                    active = continuing
                else:
                    active = []
                del w
                if progress is not None:
                    progress(j + 1, m)
                if not active or (stop is not None and stop(snapshot())):
                    break
    finally:
        basis.close()
    return snapshot()
