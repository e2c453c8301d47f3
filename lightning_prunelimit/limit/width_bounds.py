"""How far an SLQ estimate of the sublevel width G(R) can be off: quadrature and sampling.

Two errors separate an SLQ estimate of ``G(R) = (1/D) tr f(|H|)``, with
``f(l) = 2 eps / (2 eps + l R^2)``, from the value of the exact spectrum:

1. **Quadrature (truncation).** Each probe's m-step Gauss rule approximates its quadratic form
   ``v^T f(|H|) v``. Measured against exact spectra of trained networks, its error is a bias
   shared by all probes (they see the same spectrum) that oscillates with m before it settles,
   so neither the spread of the probes nor the change from the previous step reveals it. Two
   brackets are combined per probe:

   - a *rigorous* bracket: ``f(|l|) = g(l^2)`` with ``g(x) = 2 eps / (2 eps + R^2 sqrt(x))``
     completely monotone on ``x >= 0``. An m-step Lanczos run fixes the moments of ``l`` up to
     degree ``2m - 1``, hence those of ``x = l^2`` up to ``m - 1``, and for such a ``g`` the
     ``floor(m/2)``-point Gauss rule in ``x`` is a lower bound and the Gauss-Radau rule with a
     node fixed at ``x = 0`` an upper bound (Golub and Meurant, *Matrices, Moments and
     Quadrature*, 2010). Both rules come from the coefficients, with no further products. The
     upper bound is tight once the run has converged; the lower one stays loose, because the
     square root's cusp at 0 is hard for polynomials in ``x``.
   - an *estimated* bracket (``truncation="averaged"``, the default): from above, the
     Gauss-Radau rule in ``l`` with one node fixed at the cusp ``l = 0`` (``m + 1`` nodes, exact
     for polynomials of degree ``2m``, from the coefficients alone), which gives ``l = 0``,
     where ``f`` is largest, the most weight the moments allow; on exact spectra of trained MLPs
     it lay above the exact value in every case measured and fell towards it without the Gauss
     rules' oscillation. From below, Spalevic's generalized averaged Gauss rule (``2m - 1``
     nodes, exact to degree ``2m``: the Jacobi matrix of the first ``m`` steps continued by the
     last residual and then by the ``(m - 1) x (m - 1)`` one in reverse order). The Gauss rule
     (the point estimate) is always inside.

   Measured with ``benchmarks/quadrature_steps.py`` (one probe's prefixes, checked as
   ``interval_stop`` checks, 16 to 256 steps; 31 checks per case) against the exact spectrum
   (three digits MLPs with D = 2,410: L1, no L1, dead units) and against a 1,024-step run of the
   same probe (MLPs with D of about 80,000: digits and MNIST-1D, with and without L1), with the
   earlier estimates, still selectable:

   - ``truncation="radau"`` (the default before): ``[Radau(m) - 2 (Radau(m/2) - Radau(m)),
     Radau(m)]``, the rule's remaining fall extrapolated as twice its fall since half the
     steps. It covered 209 of the 217 checks, the averaged one 215 (every check without L1 and
     on the exact cases; two misses on digits with L1, by 0.0005 at 240 and 248 steps, where the
     reference itself is uncertain at that level). The averaged estimate reached a 0.01-wide
     quadrature interval in fewer steps wherever either reached it (digits with L1 144 against
     216; exact cases 104, 104, 72 against 168, 192, 112) and was narrower at 256 steps with L1
     (0.0041 against 0.0063 on digits, 0.0286 against 0.0322 on MNIST-1D). Without L1 at 256
     steps it is wider on digits (0.109 against 0.066) and as wide on MNIST-1D (0.411): there
     the Radau estimate's own lower end covered the reference in only 5 and 3 of 31 checks, and
     its interval covered it because the Gauss point is always inside.
   - ``truncation="oscillation"`` (the first estimate): the Gauss rule plus and minus the
     largest distance to the Gauss rules of the last quarter of the run; 1.3 to 2.9 times wider
     than Radau's at 256 steps, and it covered 16 of 31 checks on MNIST-1D without L1.
   - ``truncation="anti_gauss"``: the (m - 1)-point Gauss rule and Laurie's m-point anti-Gauss
     rule (the Jacobi matrix with its last off-diagonal entry times ``sqrt(2)``: its error on
     polynomials of degree ``2m - 2`` and ``2m - 1`` is minus the Gauss rule's). Narrow, but for
     this integrand the error depends mostly on whether a node falls near the cusp, so the two
     errors often share their sign: it covered 5 to 31 of 31 checks per case.

   The interval used is the intersection of the two. The estimated part is not a theorem; its
   coverage of the exact-spectrum value is tested on exactly computed Hessians of trained MLPs
   (with and without L1, 16 to 128 steps, several seeds).
2. **Probe sampling.** For a unit Rademacher probe ``v = u / sqrt(D)`` and ``A = f(|H|)``,
   ``Var(v^T A v) = (2 / D^2) sum_{i != j} A_ij^2``. With ``B = I - A``, both ``A`` and ``B`` have
   eigenvalues in ``[0, 1]`` and the same off-diagonal entries, so the variance is at most
   ``2 min(tr A, tr B) / D^2 = 2 min(G, 1 - G) / D``; the mean of ``P`` probes has at most that
   over ``P``. The interval adds ``confidence`` (default 2, about 95% for a normal mean) such
   standard deviations, with ``G`` replaced by the quadrature bracket's ends.

Deflated rows (``Spectrum.deflated``) are exact and carry no error; the bounds describe the
probed part, and ``D`` above is its size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import torch
from torch import Tensor

from lightning_prunelimit.limit.integrand import curvature, mix_flat_fraction, width_integrand

if TYPE_CHECKING:  # pragma: no cover
    from lightning_prunelimit.curvature import Spectrum

__all__ = [
    "DEFAULT_CONFIDENCE",
    "TRUNCATION_ESTIMATES",
    "QuadratureRules",
    "WidthBounds",
    "quadrature_rules",
]

#: Standard deviations of the probe-sampling error added to the interval.
DEFAULT_CONFIDENCE = 2.0

#: Multiple of the oscillation over the last quarter of the run taken as the truncation error.
_OSCILLATION_FACTOR = 1.0

#: Multiple of the Radau rule's change since half the steps taken as its remaining distance.
_RADAU_EXTRAPOLATION = 2.0

#: At most this many earlier rules of the last quarter of a run are compared.
_WINDOW_RULES = 16

#: A probe whose final residual is below this (relative to ||T||) ran to an invariant subspace.
_EXACT_RESIDUAL = 1e-10


class WidthBounds(NamedTuple):
    """An SLQ estimate of a width and its bounds, each a tensor with one value per distance.

    Attributes:
        estimate: the mean over probes of the Gauss rules.
        quadrature_low, quadrature_high: the bounds from the quadrature (truncation) error.
        low, high: those bounds widened by the probes' sampling error.

    Example:
        >>> import torch
        >>> b = WidthBounds(*(torch.tensor([v]) for v in (0.5, 0.4, 0.6, 0.3, 0.7)))
        >>> round(float(b.high - b.low), 6), b.estimate.tolist()
        (0.4, [0.5])
    """

    estimate: Tensor
    quadrature_low: Tensor
    quadrature_high: Tensor
    low: Tensor
    high: Tensor


def _tridiagonal(alphas: Tensor, betas: Tensor, n: int) -> Tensor:
    off = betas[: n - 1]
    return torch.diag(alphas[:n]) + torch.diag(off, 1) + torch.diag(off, -1)


def _gauss(alphas: Tensor, betas: Tensor, n: int) -> tuple[Tensor, Tensor]:
    values, vectors = torch.linalg.eigh(_tridiagonal(alphas, betas, n))
    return values, vectors[0] ** 2


def _radau(alphas: Tensor, betas: Tensor, n: int, node: float) -> tuple[Tensor, Tensor]:
    """The (n + 1)-point Gauss-Radau rule with one node fixed at ``node`` (below the support)."""
    tri = _tridiagonal(alphas, betas, n)
    rhs = torch.zeros(n, dtype=torch.float64)
    rhs[-1] = betas[n - 1] ** 2
    shift = torch.linalg.solve(tri - node * torch.eye(n, dtype=torch.float64), rhs)
    extended = torch.zeros(n + 1, n + 1, dtype=torch.float64)
    extended[:n, :n] = tri
    extended[n - 1, n] = extended[n, n - 1] = betas[n - 1]
    extended[n, n] = node + shift[-1]
    values, vectors = torch.linalg.eigh(extended)
    return values, vectors[0] ** 2


def _stieltjes(points: Tensor, weights: Tensor, steps: int) -> tuple[Tensor, Tensor]:
    """The first ``steps`` recurrence coefficients of the discrete measure ``sum w_j delta(x_j)``.

    Lanczos on ``diag(points)`` from ``sqrt(weights)``, fully reorthogonalised, in float64.
    ``betas[i]`` couples polynomial ``i`` and ``i + 1``; fewer coefficients come back when the
    measure has fewer distinct points than ``steps``.
    """
    keep = weights > 0
    points, weights = points[keep], weights[keep]
    steps = min(steps, points.numel())
    basis = torch.zeros(steps + 1, points.numel(), dtype=torch.float64)
    basis[0] = weights.sqrt() / weights.sum().sqrt()
    alphas = torch.zeros(steps, dtype=torch.float64)
    betas = torch.zeros(steps, dtype=torch.float64)
    scale = float(points.abs().max()) if points.numel() else 0.0
    for j in range(steps):
        w = points * basis[j]
        alphas[j] = basis[j] @ w
        w = w - alphas[j] * basis[j] - (betas[j - 1] * basis[j - 1] if j else 0.0)
        for _ in range(2):
            w = w - basis[: j + 1].T @ (basis[: j + 1] @ w)
        betas[j] = torch.linalg.vector_norm(w)
        if float(betas[j]) <= 1e-13 * max(scale, 1e-300):
            return alphas[: j + 1], betas[: j + 1]
        basis[j + 1] = w / betas[j]
    return alphas, betas


def _pad(rules: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    """Stack rules of different lengths: padded nodes repeat the last one with weight 0."""
    size = max(int(nodes.numel()) for nodes, _ in rules)
    nodes = torch.zeros(len(rules), size, dtype=torch.float64)
    weights = torch.zeros_like(nodes)
    for i, (n, w) in enumerate(rules):
        nodes[i, : n.numel()] = n
        nodes[i, n.numel() :] = n[-1] if n.numel() else 0.0
        weights[i, : w.numel()] = w
    return nodes, weights


def _radau_at_zero(alphas: Tensor, betas: Tensor, n: int) -> tuple[Tensor, Tensor]:
    """The (n + 1)-point Gauss-Radau rule in ``l`` with a node fixed at ``l = 0``.

    Falls back to the n-point Gauss rule when 0 is itself a node of it (the extension is then
    singular and adds nothing).
    """
    try:
        nodes, weights = _radau(alphas, betas, n, 0.0)
    except RuntimeError:  # torch.linalg.LinAlgError: T_n is singular
        return _gauss(alphas, betas, n)
    if not (bool(torch.isfinite(nodes).all()) and bool(torch.isfinite(weights).all())):
        return _gauss(alphas, betas, n)
    return nodes, weights


def _anti_gauss(alphas: Tensor, betas: Tensor, n: int) -> tuple[Tensor, Tensor]:
    """Laurie's (n + 1)-point anti-Gauss rule, the partner of the n-point Gauss rule.

    Its Jacobi matrix is that of the (n + 1)-point Gauss rule with the last off-diagonal entry
    ``betas[n - 1]`` scaled by ``sqrt(2)``; its error on polynomials of degree ``2n + 1`` is
    minus the n-point Gauss rule's. Needs ``alphas[: n + 1]`` and ``betas[:n]``.
    """
    off = betas[:n].clone()
    off[n - 1] = off[n - 1] * math.sqrt(2.0)
    values, vectors = torch.linalg.eigh(
        torch.diag(alphas[: n + 1]) + torch.diag(off, 1) + torch.diag(off, -1)
    )
    return values, vectors[0] ** 2


def _averaged_gauss(alphas: Tensor, betas: Tensor, n: int) -> tuple[Tensor, Tensor]:
    """Spalevic's generalized averaged Gauss rule with ``2n + 1`` nodes (exact to degree 2n + 2).

    Its Jacobi matrix continues the ``(n + 1) x (n + 1)`` one by ``betas[n]`` and then by the
    n x n one in reverse order. Needs ``alphas[: n + 1]`` and ``betas[: n + 1]``, i.e. all the
    coefficients of an (n + 1)-step run (including its final residual).
    """
    size = 2 * n + 1
    matrix = torch.zeros(size, size, dtype=torch.float64)
    matrix[: n + 1, : n + 1] = _tridiagonal(alphas, betas, n + 1)
    matrix[n, n + 1] = matrix[n + 1, n] = betas[n]
    if n >= 1:
        matrix[n + 1 :, n + 1 :] = _tridiagonal(alphas[:n].flip(0), betas[: n - 1].flip(0), n)
    values, vectors = torch.linalg.eigh(matrix)
    return values, vectors[0] ** 2


#: The truncation estimates :func:`quadrature_rules` can build (see the module docstring).
TRUNCATION_ESTIMATES: tuple[str, ...] = ("averaged", "radau", "oscillation", "anti_gauss")


@dataclass(frozen=True, eq=False)
class QuadratureRules:
    """The quadrature rules behind an SLQ spectrum's error bounds (independent of R and eps).

    All node tensors hold eigenvalues ``l`` (``x``-rules are stored as ``sqrt(x) = |l|``).

    Attributes:
        gauss_nodes, gauss_weights: ``(P, m)`` the m-step Gauss rule of each probe.
        estimated_nodes, estimated_weights: ``(P, S, k)`` the rules behind the estimated
            truncation bracket: for ``truncation="radau"`` the Gauss-Radau rules in ``l`` with a
            node at 0 after m and after ``m // 2`` steps (``S = 2``); for ``"oscillation"`` the
            Gauss rules of the last quarter of the run; for ``"anti_gauss"`` the (m - 1)-point
            Gauss rule and its anti-Gauss partner; for ``"averaged"`` the Radau rule after m
            steps and the generalized averaged Gauss rule.
        estimated_used: ``(P, S)`` which of those rules exist (False for padding).
        lower_nodes, lower_weights: ``(P, k)`` the Gauss rule in ``x = l^2`` (a lower bound).
        upper_nodes, upper_weights: ``(P, k')`` the Radau rule in ``x`` (an upper bound).
        exact: ``(P,)`` probes whose run reached an invariant subspace (no truncation error).
        probed_dim: the size of the probed part of the operator.
        truncation: which estimated bracket the rules describe (:data:`TRUNCATION_ESTIMATES`).

    Example:
        >>> import torch
        >>> from lightning_prunelimit.curvature import DenseOperator, stochastic_lanczos_quadrature
        >>> op = DenseOperator(torch.diag(torch.linspace(0.0, 1.0, 50, dtype=torch.float64)))
        >>> rules = quadrature_rules(stochastic_lanczos_quadrature(op, 8, 2))
        >>> rules.gauss_nodes.shape, rules.estimated_nodes.shape[1], rules.exact.tolist()
        (torch.Size([2, 8]), 2, [False, False])
    """

    gauss_nodes: Tensor
    gauss_weights: Tensor
    estimated_nodes: Tensor
    estimated_weights: Tensor
    estimated_used: Tensor
    lower_nodes: Tensor
    lower_weights: Tensor
    upper_nodes: Tensor
    upper_weights: Tensor
    exact: Tensor
    probed_dim: int
    truncation: str = "averaged"

    def probed_bounds(
        self, distances: Tensor, epsilon: float, negative: str, confidence: float
    ) -> WidthBounds:
        """Estimate and bounds of the probed part's ``(1/D) tr f``, one per distance.

        Returns the mean over probes of the Gauss rules, the truncation bracket, and that
        bracket widened by ``confidence`` standard deviations of the probe mean. All are
        ``(len(distances),)`` float64 tensors clamped to ``[0, 1]``.

        Example:
            >>> import torch
            >>> from lightning_prunelimit.curvature import DenseOperator
            >>> from lightning_prunelimit.curvature import stochastic_lanczos_quadrature as slq
            >>> op = DenseOperator(torch.diag(torch.linspace(0.0, 1.0, 50, dtype=torch.float64)))
            >>> rules = quadrature_rules(slq(op, 50, 2))  # exact quadrature: no truncation
            >>> point, qlo, qhi, lo, hi = rules.probed_bounds(torch.tensor([1.0]), 0.1, "abs", 2.0)
            >>> bool(qlo == point) and bool(qhi == point) and bool(lo < point < hi)
            True
        """
        squared = distances.reshape(-1, 1, 1).to(torch.float64).square()

        def rule(nodes: Tensor, weights: Tensor, mode: str) -> Tensor:
            terms = width_integrand(curvature(nodes, mode), squared.unsqueeze(-1), epsilon)
            return (terms * weights).sum(dim=-1)

        flat = negative == "flat"
        point = rule(self.gauss_nodes, self.gauss_weights, negative)  # (n, 1, P)
        point = point.squeeze(1)  # (n, P)
        estimated = rule(self.estimated_nodes, self.estimated_weights, negative)  # (n, P, S)
        if self.truncation == "anti_gauss":
            # Gauss rule of m - 1 points and its anti-Gauss partner (m points): [min, max].
            # Without the pair (one step) only the rigorous bracket is left.
            present = self.estimated_used.bool()
            some = present.any(dim=-1)
            estimated_low = torch.where(
                some, torch.where(present, estimated, math.inf).amin(dim=-1), -math.inf
            )
            estimated_high = torch.where(
                some, torch.where(present, estimated, -math.inf).amax(dim=-1), math.inf
            )
        elif self.truncation == "averaged":
            # Spalevic's averaged rule below, the Radau rule at the cusp above.
            radau, averaged = estimated[..., 0], estimated[..., 1]
            estimated_low = torch.where(self.estimated_used[:, 1].bool(), averaged, -math.inf)
            estimated_high = radau
        elif self.truncation == "radau":
            # The Radau rule at the cusp's node 0 over-weights l = 0, where f is largest: it
            # approaches the exact value from above, steadily. Its change since m/2 steps,
            # _RADAU_EXTRAPOLATION times, is taken as the distance still to go.
            radau, half = estimated[..., 0], estimated[..., 1]
            step = (half - radau).clamp(min=0.0) * self.estimated_used[:, 1]
            estimated_low = radau - _RADAU_EXTRAPOLATION * step
            estimated_high = radau
        else:
            gap = (estimated - point.unsqueeze(-1)).abs() * self.estimated_used
            spread = _OSCILLATION_FACTOR * gap.amax(dim=-1)
            estimated_low = point - spread
            estimated_high = point + spread
        # Rigorous bracket through x = l^2 (for "flat", f(max(l, 0)) >= f(|l|): lower only).
        rigorous_low = rule(self.lower_nodes, self.lower_weights, "abs").squeeze(1)
        rigorous_high = (
            torch.ones_like(point)
            if flat
            else rule(self.upper_nodes, self.upper_weights, "abs").squeeze(1)
        )
        low = torch.maximum(estimated_low, rigorous_low)
        high = torch.minimum(estimated_high, rigorous_high)
        low = torch.minimum(low, point)
        high = torch.maximum(high, point)
        exact = self.exact.unsqueeze(0)
        low = torch.where(exact, point, low).mean(dim=1).clamp(0.0, 1.0)
        high = torch.where(exact, point, high).mean(dim=1).clamp(0.0, 1.0)
        point = point.mean(dim=1).clamp(0.0, 1.0)
        num_probes = self.gauss_nodes.shape[0]
        variance = 2.0 * torch.minimum(high, 1.0 - low) / (self.probed_dim * num_probes)
        margin = float(confidence) * variance.clamp(min=0.0).sqrt()
        return WidthBounds(
            point,
            low,
            high,
            (low - margin).clamp(0.0, 1.0),
            (high + margin).clamp(0.0, 1.0),
        )

    def width_bounds(
        self,
        distances: Tensor,
        epsilon: float,
        negative: str,
        confidence: float,
        flat_fraction: float = 0.0,
    ) -> WidthBounds:
        """:meth:`probed_bounds` as bounds on the whole ``G(R)``: flat fraction, ``G(0) = 1``.

        ``G = z + (1 - z) * bound`` with ``z = flat_fraction``; evaluated in chunks of
        distances (the rules' tensors grow with each distance).

        Example:
            >>> import torch
            >>> from lightning_prunelimit.curvature import DenseOperator
            >>> from lightning_prunelimit.curvature import stochastic_lanczos_quadrature as slq
            >>> op = DenseOperator(torch.diag(torch.linspace(0.0, 1.0, 50, dtype=torch.float64)))
            >>> rules = quadrature_rules(slq(op, 8, 2))
            >>> rules.width_bounds(torch.tensor([0.0, 2.0]), 0.1, "abs", 2.0).low[0].item()
            1.0
        """
        flat = distances.reshape(-1).to(torch.float64)
        parts = [
            self.probed_bounds(flat[start : start + 64], epsilon, negative, confidence)
            for start in range(0, flat.numel(), 64)
        ]
        return WidthBounds(
            *(
                mix_flat_fraction(torch.cat([p[i] for p in parts]), flat_fraction, flat)
                for i in range(len(WidthBounds._fields))
            )
        )


def _estimated_rules(
    alphas: Tensor, betas: Tensor, length: int, nodes: Tensor, weights: Tensor, truncation: str
) -> tuple[list[tuple[Tensor, Tensor]], list[bool]]:
    """The rules of one probe behind the estimated bracket, and which of them exist."""
    padding = (nodes, torch.zeros_like(weights))
    if truncation == "anti_gauss":  # the Gauss rule of m - 1 points and its anti-Gauss partner
        if length < 2:
            return [padding, padding], [False, False]
        return [_gauss(alphas, betas, length - 1), _anti_gauss(alphas, betas, length - 1)], [
            True,
            True,
        ]
    if truncation == "averaged":  # the Radau rule at the cusp and the averaged Gauss rule
        radau = _radau_at_zero(alphas, betas, length)
        if length < 2:
            return [radau, padding], [True, False]
        return [radau, _averaged_gauss(alphas, betas, length - 1)], [True, True]
    if truncation == "radau":
        half = length // 2
        rules = [_radau_at_zero(alphas, betas, length)]
        if half >= 1:
            rules.append(_radau_at_zero(alphas, betas, half))
            return rules, [True, True]
        return rules + [(nodes, torch.zeros_like(weights))], [True, False]
    first = max(1, math.ceil(0.75 * length))
    steps = sorted(set(torch.linspace(first, length - 1, _WINDOW_RULES).round().int().tolist()))
    rules = [_gauss(alphas, betas, j) for j in steps if 1 <= j < length]
    used = [True] * len(rules) + [False] * (_WINDOW_RULES - len(rules))
    rules += [(nodes, torch.zeros_like(weights))] * (_WINDOW_RULES - len(rules))
    return rules, used


def quadrature_rules(spectrum: Spectrum, *, truncation: str = "averaged") -> QuadratureRules:
    """Build the rules that bound a spectrum's quadrature error (needs its Lanczos coefficients).

    ``truncation`` selects the estimated part of the truncation bracket: ``"averaged"`` (the
    default: the generalized averaged Gauss rule up to the Radau rule at the cusp),
    ``"radau"`` (the Radau rule and its extrapolated fall, the default before),
    ``"oscillation"`` (the spread of the Gauss rules over the last quarter of the run, the first
    estimate) or ``"anti_gauss"`` (the Gauss and anti-Gauss pair); the last three are kept for
    comparison (the module docstring has the measured figures). Raises
    ValueError for a spectrum without ``alphas``/``betas``/``lengths`` (e.g. one built from
    exact eigenvalues, or saved before the coefficients were kept).

    Example:
        >>> import torch
        >>> from lightning_prunelimit.curvature import DenseOperator, stochastic_lanczos_quadrature
        >>> op = DenseOperator(torch.diag(torch.arange(1.0, 21.0, dtype=torch.float64)))
        >>> quadrature_rules(stochastic_lanczos_quadrature(op, 6)).lower_nodes.shape
        torch.Size([1, 3])
    """
    if truncation not in TRUNCATION_ESTIMATES:
        raise ValueError(f"truncation must be one of {TRUNCATION_ESTIMATES}, got {truncation!r}")
    if not getattr(spectrum, "has_coefficients", False):
        raise ValueError(
            "this spectrum carries no Lanczos coefficients, so its quadrature error cannot be "
            "bounded: compute it with stochastic_lanczos_quadrature (which attaches them)"
        )
    gauss, estimated, used, lower, upper, exact = [], [], [], [], [], []
    for p, length in enumerate(spectrum.lengths):
        alphas, betas = spectrum.alphas[p], spectrum.betas[p]
        nodes, weights = _gauss(alphas, betas, length)
        gauss.append((nodes, weights))
        size = float(alphas[:length].abs().max() + betas[:length].abs().max())
        exact.append(float(betas[length - 1]) <= _EXACT_RESIDUAL * max(size, 1e-300))
        rules, present = _estimated_rules(alphas, betas, length, nodes, weights, truncation)
        estimated.append(_pad(rules))
        used.append(present)
        # Rules in x = l^2 from the moments that the m-step rule reproduces (degree <= m - 1).
        x = nodes.square()
        half = length // 2
        if half >= 1:
            a, b = _stieltjes(x, weights, half)
            lower.append(_gauss(a, b, a.numel()))
        else:
            lower.append((torch.zeros(1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)))
        free = (length - 1) // 2
        a, b = _stieltjes(x, weights, free) if free >= 1 else (None, None)
        if a is not None and a.numel() == free and float(b[-1]) > 0:
            upper.append(_radau(a, b, free, 0.0))
        elif a is not None and a.numel() < free:  # the measure has few points: exact rule
            upper.append(_gauss(a, b, a.numel()))
        else:  # no moments beyond the mass: f <= f(0) = 1
            upper.append((torch.zeros(1, dtype=torch.float64), torch.ones(1, dtype=torch.float64)))
    gauss_nodes, gauss_weights = _pad(gauss)
    size = max(n.shape[1] for n, _ in estimated)
    estimated_nodes = torch.stack(
        [torch.cat([n, n[:, -1:].expand(-1, size - n.shape[1])], dim=1) for n, _ in estimated]
    )
    estimated_weights = torch.stack(
        [torch.nn.functional.pad(w, (0, size - w.shape[1])) for _, w in estimated]
    )
    lower_nodes, lower_weights = _pad(lower)
    upper_nodes, upper_weights = _pad(upper)
    return QuadratureRules(
        gauss_nodes=gauss_nodes,
        gauss_weights=gauss_weights,
        estimated_nodes=estimated_nodes,
        estimated_weights=estimated_weights,
        estimated_used=torch.tensor(used, dtype=torch.float64),
        lower_nodes=lower_nodes.clamp(min=0.0).sqrt(),
        lower_weights=lower_weights,
        upper_nodes=upper_nodes.clamp(min=0.0).sqrt(),
        upper_weights=upper_weights,
        exact=torch.tensor(exact),
        probed_dim=spectrum.probed_dim,
        truncation=truncation,
    )
