"""Block-lockstep Lanczos: exactness at num_iters >= dim, breakdown, padding, hooks and errors."""

from __future__ import annotations

import json

import pytest
import torch
from _curvature_problems import three_level_diagonal
from torch import Tensor

from lightning_prunelimit.curvature import DenseOperator, LanczosResult, lanczos

pytestmark = pytest.mark.usefixtures("one_thread")


def random_symmetric(dim: int, seed: int) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    a = torch.randn(dim, dim, generator=generator, dtype=torch.float64)
    return (a + a.T) / 2


def test_breakdown_on_few_distinct_eigenvalues_gives_the_exact_set_and_weights() -> None:
    matrix, counts = three_level_diagonal()
    op = DenseOperator(matrix)
    # Rademacher-like start vectors: each coordinate carries 1/50 of the mass, so the Gauss
    # weights are exactly the multiplicities over 50.
    signs = torch.tensor([[1.0, -1.0] * 25, [-1.0] * 50], dtype=torch.float64)
    result = lanczos(op, signs, num_iters=30)
    assert result.lengths == (3, 3)
    nodes, weights, bounds = result.ritz()
    assert torch.isfinite(nodes).all() and torch.isfinite(weights).all()
    expected_nodes = torch.tensor(sorted(counts), dtype=torch.float64)
    expected_weights = torch.tensor([counts[v] / 50 for v in sorted(counts)], dtype=torch.float64)
    for p in range(2):
        torch.testing.assert_close(nodes[p], expected_nodes, rtol=0, atol=1e-12)
        torch.testing.assert_close(weights[p], expected_weights, rtol=0, atol=1e-12)
    assert float(bounds.max()) < 1e-12  # invariant Krylov space: the Ritz values are exact
    assert float(result.betas[:, 2].max()) < 1e-12


def test_probes_of_different_lengths_are_padded_with_zero_weight() -> None:
    matrix, _ = three_level_diagonal()
    diagonal = matrix.diagonal()
    # Probe 1 lives in two eigenspaces only: its Krylov space has dimension 2.
    two_spaces = (diagonal != 4.0).to(torch.float64)
    start = torch.stack([torch.ones(50, dtype=torch.float64), two_spaces])
    steps: list[tuple[int, int]] = []
    result = lanczos(
        DenseOperator(matrix), start, num_iters=10, progress=lambda s, t: steps.append((s, t))
    )
    assert result.lengths == (3, 2)
    assert steps == [(1, 10), (2, 10), (3, 10)]
    spectrum = result.spectrum()
    assert spectrum.weights[1, 2] == 0.0
    assert spectrum.nodes[1, 2] == spectrum.nodes[1, 1] == pytest.approx(0.5, abs=1e-12)
    torch.testing.assert_close(spectrum.weights.sum(dim=1), torch.ones(2, dtype=torch.float64))
    # Quadrature of x^2 per probe: probe 0 sees all 50 coordinates, probe 1 only the 35 outside
    # the eigenvalue 4; the padded entry of probe 1 carries no weight.
    probe_zero = (10 * 1.0 + 25 * 0.25 + 15 * 16.0) / 50
    probe_one = (10 * 1.0 + 25 * 0.25) / 35
    assert spectrum.trace_of(torch.square) == pytest.approx(50 * (probe_zero + probe_one) / 2)


def test_num_iters_at_or_beyond_dim_is_capped_and_exact() -> None:
    matrix = random_symmetric(40, seed=1)
    eigenvalues, eigenvectors = torch.linalg.eigh(matrix)
    start = torch.randn(3, 40, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    result = lanczos(DenseOperator(matrix), start, num_iters=100)
    assert result.lengths == (40, 40, 40)
    nodes, weights, _ = result.ritz()
    unit = start / start.norm(dim=1, keepdim=True)
    for p in range(3):
        torch.testing.assert_close(nodes[p], eigenvalues, rtol=0, atol=1e-10)
        torch.testing.assert_close(weights[p], (unit[p] @ eigenvectors) ** 2, rtol=0, atol=1e-10)


def test_lockstep_block_equals_separate_runs() -> None:
    matrix = random_symmetric(60, seed=3)
    start = torch.randn(3, 60, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    op = DenseOperator(matrix)
    together = lanczos(op, start, num_iters=25)
    for p in range(3):
        alone = lanczos(op, start[p], num_iters=25)
        torch.testing.assert_close(together.alphas[p], alone.alphas[0], rtol=0, atol=1e-12)
        torch.testing.assert_close(together.betas[p], alone.betas[0], rtol=0, atol=1e-12)


def test_float32_operator_keeps_float64_coefficients_and_converges() -> None:
    matrix = random_symmetric(80, seed=5)
    start = torch.ones(80, dtype=torch.float64)
    single = lanczos(DenseOperator(matrix.float()), start, num_iters=80)
    double = lanczos(DenseOperator(matrix), start, num_iters=80)
    assert single.alphas.dtype == torch.float64
    exact = torch.linalg.eigvalsh(matrix)
    # Full reorthogonalisation keeps float32 Lanczos free of ghost eigenvalues.
    torch.testing.assert_close(single.ritz()[0][0], exact, rtol=0, atol=1e-4)
    torch.testing.assert_close(double.ritz()[0][0], exact, rtol=0, atol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_reorthogonalisation_prevents_ghost_copies_of_converged_eigenvalues(dtype) -> None:
    # Two outliers converge within a few steps; without reorthogonalisation, plain Lanczos
    # produces 20-60 spurious copies of them over 120 steps (measured), with it exactly one each.
    generator = torch.Generator().manual_seed(0)
    bulk = torch.rand(198, generator=generator, dtype=torch.float64)
    values = torch.cat([torch.tensor([1000.0, 300.0], dtype=torch.float64), bulk])
    result = lanczos(DenseOperator(torch.diag(values).to(dtype)), torch.ones(200), num_iters=120)
    nodes, weights, _ = result.ritz()
    assert int((nodes > 999).sum()) == 1 and int((nodes > 299).sum()) == 2
    rtol = 1e-12 if dtype == torch.float64 else 1e-6
    assert nodes[0, -1].item() == pytest.approx(1000.0, rel=rtol)
    assert weights[0, -1].item() == pytest.approx(1 / 200, rel=1e-9 if rtol < 1e-9 else 1e-5)


def test_stop_hook_ends_the_run_early() -> None:
    matrix = random_symmetric(30, seed=6)
    result = lanczos(
        DenseOperator(matrix), torch.ones(30), num_iters=30, stop=lambda r: r.lengths[0] >= 7
    )
    assert result.lengths == (7,)
    assert result.alphas.shape == (1, 7)


def test_result_round_trips_through_json_and_validates() -> None:
    result = lanczos(DenseOperator(random_symmetric(12, seed=7)), torch.ones(2, 12), num_iters=5)
    again = LanczosResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert torch.equal(again.alphas, result.alphas) and torch.equal(again.betas, result.betas)
    assert again.lengths == result.lengths and again.dim == 12
    torch.testing.assert_close(again.tridiagonal(1), result.tridiagonal(1))
    with pytest.raises(ValueError, match="length"):
        LanczosResult(torch.zeros(1, 2), torch.zeros(1, 2), (3,), 4)
    with pytest.raises(ValueError, match="shape"):
        LanczosResult(torch.zeros(1, 2), torch.zeros(1, 3), (2,), 4)


def test_lanczos_errors() -> None:
    op = DenseOperator(torch.eye(4, dtype=torch.float64))
    with pytest.raises(ValueError, match="num_iters must be a positive int"):
        lanczos(op, torch.ones(4), num_iters=0)
    with pytest.raises(ValueError, match="start must have shape"):
        lanczos(op, torch.ones(5), num_iters=2)
    with pytest.raises(ValueError, match="non-zero"):
        lanczos(op, torch.zeros(2, 4), num_iters=2)
    with pytest.raises(TypeError, match="`dim` and `matvec`"):
        lanczos(torch.eye(4), torch.ones(4), num_iters=2)

    class Broken:
        dim = 4

        def matvec(self, v: Tensor) -> Tensor:
            return v[..., :2]

    with pytest.raises(ValueError, match="must return the block's shape"):
        lanczos(Broken(), torch.ones(4), num_iters=2)

    class Exploding:
        dim = 4

        def matvec(self, v: Tensor) -> Tensor:
            return torch.full_like(v, float("nan"))

    with pytest.raises(ValueError, match="non-finite coefficient"):
        lanczos(Exploding(), torch.ones(4), num_iters=2)


def test_dense_operator_checks_its_matrix() -> None:
    with pytest.raises(ValueError, match="not symmetric"):
        DenseOperator(torch.tensor([[1.0, 2.0], [0.0, 1.0]], dtype=torch.float64))
    with pytest.raises(ValueError, match="square"):
        DenseOperator(torch.ones(2, 3))
    with pytest.raises(ValueError, match="floating point"):
        DenseOperator(torch.eye(2, dtype=torch.int64))
    op = DenseOperator(torch.diag(torch.tensor([1.0, 2.0], dtype=torch.float64)))
    with pytest.raises(ValueError, match="shape"):
        op.matvec(torch.ones(3))
    assert torch.equal(op @ torch.ones(2, 2), torch.tensor([[1.0, 2.0], [1.0, 2.0]]).double())


def _count_sweeps(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    from lightning_prunelimit.curvature.lanczos_basis import LanczosBasis

    steps: list[int] = []
    sweep = LanczosBasis.orthogonalise

    def counted(self, probes, index, w):  # type: ignore[no-untyped-def]
        steps.append(index)
        return sweep(self, probes, index, w)

    monkeypatch.setattr(LanczosBasis, "orthogonalise", counted)
    return steps


def test_a_second_gram_schmidt_sweep_runs_only_where_the_first_cancelled(monkeypatch) -> None:
    steps = _count_sweeps(monkeypatch)
    matrix = random_symmetric(200, seed=3)
    result = lanczos(DenseOperator(matrix), torch.ones(200, dtype=torch.float64), num_iters=60)
    # a spread spectrum: the recurrence leaves little on the basis, one sweep per step
    assert len(steps) == len(set(steps)) == 60
    exact = torch.linalg.eigvalsh(matrix)
    top = result.ritz()[0][0, -1].item()
    assert top == pytest.approx(exact[-1].item(), rel=1e-6)
    # at a breakdown the sweep removes nearly all that is left: it is repeated there
    steps.clear()
    matrix, _ = three_level_diagonal()
    lanczos(DenseOperator(matrix), torch.ones(50, dtype=torch.float64), num_iters=30)
    assert steps.count(2) == 2 and steps.count(0) == 1
