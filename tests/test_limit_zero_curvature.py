from __future__ import annotations

import json
import math

import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.func import functional_call

from lightning_prunelimit.curvature import DenseOperator, HessianOperator
from lightning_prunelimit.limit import ZeroCurvature, zero_curvature_fraction

pytestmark = pytest.mark.usefixtures("one_thread")


def matrix_with_zero_rows(dim: int, zero: list[int], seed: int = 0) -> torch.Tensor:
    torch.manual_seed(seed)
    a = torch.randn(dim, dim, dtype=torch.float64)
    a = a + a.T
    a[zero, :] = 0.0
    a[:, zero] = 0.0
    return a


def quantile_coordinates(values: torch.Tensor, candidates: list[int], num: int) -> list[int]:
    """Brute force: candidates sorted by (|value|, index), the one at floor(j n / num)."""
    ranked = sorted(candidates, key=lambda i: (abs(float(values[i])), i))
    return [ranked[(j * len(ranked)) // num] for j in range(num)]


def test_every_coordinate_sampled_gives_the_exact_zero_fraction() -> None:
    zero = [0, 3, 7, 8, 20, 33, 41, 42, 50, 59, 11, 12, 13, 14, 15]
    matrix = matrix_with_zero_rows(60, zero)
    torch.manual_seed(1)
    values = torch.randn(60, dtype=torch.float64)
    result = zero_curvature_fraction(DenseOperator(matrix), values=values, num_quantiles=60)
    assert result.fraction == 15 / 60
    assert sorted(result.indices) == list(range(60))
    assert result.indices == tuple(quantile_coordinates(values, list(range(60)), 60))
    expected_norms = matrix.abs().sum(dim=1)
    assert list(result.row_norms) == [float(expected_norms[i]) for i in result.indices]
    assert result.quantiles == tuple(j / 60 for j in range(60))
    assert result.tolerance == 1e-5


@pytest.mark.parametrize("block_size", [1, 3, 16, 100])
def test_candidates_quantiles_and_blocks(block_size: int) -> None:
    zero = list(range(0, 80, 3))
    matrix = matrix_with_zero_rows(80, zero, seed=2)
    values = torch.arange(80, dtype=torch.float64).flip(0) - 40.0  # ties: |-1| == |1|, ...
    candidates = list(range(10, 70))
    calls = []
    op = DenseOperator(matrix)
    original = op.matvec

    def counting(v: torch.Tensor) -> torch.Tensor:
        calls.append(v.shape[0])
        return original(v)

    op.matvec = counting  # type: ignore[method-assign]
    result = zero_curvature_fraction(
        op, torch.tensor(candidates), values=values, num_quantiles=7, block_size=block_size
    )
    expected = quantile_coordinates(values, candidates, 7)
    assert result.indices == tuple(expected)
    assert result.fraction == sum(i in zero for i in expected) / 7
    assert 0 < result.fraction < 1
    assert len(calls) == math.ceil(len(set(expected)) / block_size)
    assert max(calls) <= block_size


def test_more_quantiles_than_candidates_repeat_coordinates() -> None:
    matrix = matrix_with_zero_rows(5, [1])
    values = torch.tensor([5.0, 1.0, 4.0, 2.0, 3.0], dtype=torch.float64)
    result = zero_curvature_fraction(DenseOperator(matrix), values=values, num_quantiles=10)
    assert result.indices == (1, 1, 3, 3, 4, 4, 2, 2, 0, 0)
    assert result.fraction == 0.2


def test_tolerance_decides_small_rows() -> None:
    matrix = torch.diag(torch.tensor([5e-6, 2e-5, 0.0, 1.0], dtype=torch.float64))
    values = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
    op = DenseOperator(matrix)
    assert zero_curvature_fraction(op, values=values, num_quantiles=4).fraction == 0.5
    tight = zero_curvature_fraction(op, values=values, num_quantiles=4, tolerance=1e-6)
    assert tight.fraction == 0.25
    loose = zero_curvature_fraction(op, values=values, num_quantiles=4, tolerance=1e-4)
    assert loose.fraction == 0.75


def digits_setup():
    digits = load_digits()
    x = torch.tensor(digits.data[:130] / 16.0, dtype=torch.float64)
    y = torch.tensor(digits.target[:130])
    batches = [(x[:50], y[:50]), (x[50:100], y[50:100]), (x[100:], y[100:])]  # unequal sizes
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 4), nn.Tanh(), nn.Linear(4, 10)).double()
    return model, x, y, batches


def exact_hessian_rows(model: nn.Module, x: torch.Tensor, y: torch.Tensor, rows: list[int]):
    """Rows of the Hessian of the mean loss over all samples, by explicit double backward."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    sizes = [p.numel() for _, p in model.named_parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).requires_grad_(True)
    parts = [t.reshape(s) for t, s in zip(flat.split(sizes), shapes)]
    out = functional_call(model, dict(zip(names, parts)), (x,))
    (gradient,) = torch.autograd.grad(nn.functional.cross_entropy(out, y), flat, create_graph=True)
    return {i: torch.autograd.grad(gradient[i], flat, retain_graph=True)[0].detach() for i in rows}


def test_hessian_operator_rows_match_the_exact_hessian() -> None:
    model, x, y, batches = digits_setup()
    zero_pixels = (x.abs().sum(dim=0) == 0).nonzero().flatten().tolist()
    assert len(zero_pixels) >= 3  # pixels that are 0 in every image: flat first-layer weights
    op = HessianOperator(model, nn.functional.cross_entropy, batches)
    assert op.dim == 64 * 4 + 4 + 40 + 10
    first_layer = torch.arange(64 * 4)  # the indices of the prunable first-layer weights
    result = zero_curvature_fraction(op, first_layer, num_quantiles=40, block_size=8)
    rows = exact_hessian_rows(model, x, y, sorted(set(result.indices)))
    exact_norms = {i: float(row.abs().sum()) for i, row in rows.items()}
    for index, norm in zip(result.indices, result.row_norms):
        assert norm == pytest.approx(exact_norms[index], rel=1e-9, abs=1e-14)
    expected_zero = sum(exact_norms[i] < 1e-5 for i in result.indices)
    assert result.fraction == expected_zero / 40
    on_zero_pixel = sum(i % 64 in zero_pixels for i in result.indices)
    assert result.fraction == on_zero_pixel / 40 > 0
    values = op.parameter_vector()
    assert result.indices == tuple(quantile_coordinates(values, first_layer.tolist(), 40))


def test_to_dict_round_trip() -> None:
    matrix = matrix_with_zero_rows(6, [2])
    result = zero_curvature_fraction(
        DenseOperator(matrix), values=torch.linspace(-1, 1, 6, dtype=torch.float64)
    )
    data = json.loads(json.dumps(result.to_dict()))
    assert ZeroCurvature.from_dict(data) == result
    assert len(data["indices"]) == 100


def test_errors() -> None:
    op = DenseOperator(torch.eye(4, dtype=torch.float64))
    values = torch.ones(4, dtype=torch.float64)
    with pytest.raises(ValueError, match="parameter_vector.*values="):
        zero_curvature_fraction(op)
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        zero_curvature_fraction(op, values=torch.ones(5))
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        zero_curvature_fraction(op, [0, 4], values=values)
    with pytest.raises(ValueError, match="empty"):
        zero_curvature_fraction(op, torch.zeros(0, dtype=torch.long), values=values)
    with pytest.raises(TypeError, match="integer indices"):
        zero_curvature_fraction(op, torch.tensor([True, False]), values=values)
    with pytest.raises(ValueError, match="num_quantiles"):
        zero_curvature_fraction(op, values=values, num_quantiles=0)
    with pytest.raises(ValueError, match="block_size"):
        zero_curvature_fraction(op, values=values, block_size=0)
    with pytest.raises(ValueError, match="tolerance"):
        zero_curvature_fraction(op, values=values, tolerance=0.0)
    with pytest.raises(TypeError, match="curvature operator"):
        zero_curvature_fraction(torch.eye(4), values=values)  # type: ignore[arg-type]
