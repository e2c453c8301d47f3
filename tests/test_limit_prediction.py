from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import lightning_prunelimit.limit.prediction as prediction_module
from lightning_prunelimit.curvature import Spectrum
from lightning_prunelimit.limit import (
    LimitPrediction,
    predict_pruning_limit,
    pruning_distances,
    sublevel_width,
)


def spectrum_of(eigenvalues: np.ndarray) -> Spectrum:
    dim = len(eigenvalues)
    nodes = torch.tensor(eigenvalues, dtype=torch.float64).reshape(1, dim)
    return Spectrum(nodes, torch.full((1, dim), 1.0 / dim, dtype=torch.float64), dim)


def brute_force_num_kept(eigenvalues, weights, eps, zero_fraction=0.0, negative="abs") -> int:
    """Scan every k = 0..N with an independent NumPy evaluation of R(k) and G(R)."""
    magnitudes = np.sort(np.abs(np.asarray(weights, dtype=np.float64)))
    total = len(magnitudes)
    curvatures = np.abs(eigenvalues) if negative == "abs" else np.maximum(eigenvalues, 0.0)
    for kept in range(total + 1):
        squared = float(np.sum(magnitudes[: total - kept] ** 2))
        width = zero_fraction + (1 - zero_fraction) * float(
            np.mean(2 * eps / (2 * eps + curvatures * squared))
        )
        if kept / total >= 1 - width:
            return kept
    raise AssertionError("k = N always satisfies the condition")


CASES = [
    # (seed, N, num eigenvalues, eps, zero_fraction, negative)
    (0, 1, 5, 0.01, 0.0, "abs"),
    (1, 2, 5, 0.01, 0.0, "abs"),
    (2, 7, 9, 0.003, 0.2, "abs"),
    (3, 50, 30, 0.01, 0.0, "flat"),
    (4, 300, 64, 0.001, 0.0, "abs"),
    (5, 300, 64, 0.05, 0.5, "flat"),
    (6, 1000, 100, 0.02, 0.1, "abs"),
    (7, 999, 16, 1e-4, 0.0, "abs"),
]


@pytest.mark.parametrize(("seed", "total", "num_nodes", "eps", "z", "negative"), CASES)
def test_bisection_agrees_with_a_brute_force_scan(
    seed: int, total: int, num_nodes: int, eps: float, z: float, negative: str
) -> None:
    rng = np.random.default_rng(seed)
    eigenvalues = rng.lognormal(-1.0, 1.5, num_nodes) * rng.choice(
        [-1.0, 1.0], num_nodes, p=[0.2, 0.8]
    )
    weights = rng.laplace(0.0, 0.05, total)
    weights[rng.random(total) < 0.1] = 0.0
    expected = brute_force_num_kept(eigenvalues, weights, eps, z, negative)
    result = predict_pruning_limit(
        spectrum_of(eigenvalues), torch.tensor(weights), eps, zero_fraction=z, negative=negative
    )
    assert result.num_kept == expected
    assert result.kept_fraction == expected / total
    assert result.sparsity == 1 - expected / total
    assert result.num_weights == total


def test_the_limit_is_the_first_kept_count_satisfying_the_condition() -> None:
    rng = np.random.default_rng(11)
    spectrum = spectrum_of(rng.uniform(0.01, 1.0, 200))
    weights = torch.tensor(rng.laplace(0.0, 0.05, 2000))
    result = predict_pruning_limit(spectrum, weights, 0.01)
    assert 0.2 < result.kept_fraction < 0.9
    assert result.kept_fraction >= 1 - result.width
    previous = (result.num_kept - 1) / 2000
    distance = pruning_distances(weights, previous)
    assert distance > result.distance
    assert previous < 1 - float(sublevel_width(spectrum, distance, 0.01))


def test_edge_case_everything_can_go() -> None:
    weights = torch.randn(40, dtype=torch.float64)
    flat = predict_pruning_limit(spectrum_of(np.zeros(10)), weights, 0.01)
    assert flat.num_kept == 0 and flat.kept_fraction == 0.0 and flat.sparsity == 1.0
    negative = predict_pruning_limit(spectrum_of(-np.ones(10)), weights, 0.01, negative="flat")
    assert negative.num_kept == 0
    zeros = predict_pruning_limit(spectrum_of(np.ones(10)), torch.zeros(40), 0.01)
    assert zeros.num_kept == 0 and zeros.distance == 0.0
    assert zeros.width == pytest.approx(1.0, abs=1e-12)


def test_edge_case_nothing_can_go() -> None:
    weights = torch.linspace(1.0, 2.0, 40, dtype=torch.float64)
    result = predict_pruning_limit(spectrum_of(np.full(10, 1e4)), weights, 1e-6)
    assert result.num_kept == 40 and result.kept_fraction == 1.0 and result.sparsity == 0.0
    assert result.distance == 0.0 and result.width == pytest.approx(1.0, abs=1e-12)
    assert brute_force_num_kept(np.full(10, 1e4), weights.numpy(), 1e-6) == 40


def test_bisection_uses_logarithmically_many_width_evaluations(monkeypatch) -> None:
    calls = []
    original = prediction_module.sublevel_width

    def counting(*args, **kwargs):
        calls.append(args[1])
        return original(*args, **kwargs)

    monkeypatch.setattr(prediction_module, "sublevel_width", counting)
    torch.manual_seed(0)
    weights = torch.randn(100_000, dtype=torch.float64) * 0.05
    predict_pruning_limit(spectrum_of(np.linspace(0.01, 1, 50)), weights, 0.01)
    scalar_calls = [c for c in calls if c.numel() == 1]
    assert len(scalar_calls) <= math.ceil(math.log2(100_001)) + 1
    assert len(calls) - len(scalar_calls) == 1  # the curve, in one vectorised call


def test_fields_and_curves() -> None:
    rng = np.random.default_rng(5)
    eigenvalues = rng.uniform(0.01, 2.0, 40)
    weights = [torch.tensor(rng.normal(0, 0.1, (20, 10))), torch.tensor(rng.normal(0, 0.1, 55))]
    spectrum = spectrum_of(eigenvalues)
    result = predict_pruning_limit(spectrum, weights, 0.02, zero_fraction=0.1, negative="flat")
    assert (result.epsilon, result.zero_fraction, result.negative) == (0.02, 0.1, "flat")
    assert result.num_weights == 255
    assert result.distance == pytest.approx(float(pruning_distances(weights, result.kept_fraction)))
    expected_width = sublevel_width(
        spectrum, result.distance, 0.02, zero_fraction=0.1, negative="flat"
    )
    assert result.width == pytest.approx(float(expected_width))
    grid = torch.linspace(0, 1, 201, dtype=torch.float64)
    assert result.curve_kept_fractions == tuple(grid.tolist())
    assert result.curve_sparsities == pytest.approx(tuple((1 - grid).tolist()))
    assert result.curve_distances == pytest.approx(tuple(pruning_distances(weights, grid).tolist()))
    curve = sublevel_width(
        spectrum, pruning_distances(weights, grid), 0.02, zero_fraction=0.1, negative="flat"
    )
    assert result.curve_widths == pytest.approx(tuple(curve.tolist()))
    short = predict_pruning_limit(spectrum, weights, 0.02, num_curve_points=2)
    assert short.curve_kept_fractions == (0.0, 1.0) and short.curve_widths[1] == 1.0


def test_to_dict_json_round_trip() -> None:
    result = predict_pruning_limit(spectrum_of(np.array([0.5, 1.0])), torch.randn(30), 0.01)
    data = json.loads(json.dumps(result.to_dict()))
    assert isinstance(data["curve_widths"], list)
    assert LimitPrediction.from_dict(data) == result


def test_errors() -> None:
    spectrum = spectrum_of(np.array([1.0, 2.0]))
    weights = torch.randn(10)
    with pytest.raises(TypeError, match="resolve_epsilon"):
        predict_pruning_limit(spectrum, weights, "batch_loss_std")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="positive and finite"):
        predict_pruning_limit(spectrum, weights, 0.0)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        predict_pruning_limit(spectrum, weights, 0.1, zero_fraction=1.0)
    with pytest.raises(ValueError, match="negative must be one of"):
        predict_pruning_limit(spectrum, weights, 0.1, negative="abs_or_flat")
    with pytest.raises(ValueError, match="empty"):
        predict_pruning_limit(spectrum, torch.zeros(0), 0.1)
    with pytest.raises(ValueError, match="num_curve_points"):
        predict_pruning_limit(spectrum, weights, 0.1, num_curve_points=1)
    with pytest.raises(ValueError, match="same length"):
        LimitPrediction(1.0, 0.0, 0.0, 1.0, 0.1, 0.0, 1, 1, "abs", (1.0,), (), (1.0,))
