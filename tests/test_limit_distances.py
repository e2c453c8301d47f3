from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lightning_prunelimit.limit import as_flat_weights, pruning_distances, removed_weight_norms
from lightning_prunelimit.pruning import global_magnitude_masks, prunable_parameters

FRACTIONS = [i / 113 for i in range(114)] + [0.5, 0.25, 1 / 3, 0.999, 0.001]


def tied_model(seed: int) -> nn.Module:
    """A model whose weights contain exact zeros and many repeated magnitudes."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 9, 6), nn.Linear(6, 3))
    with torch.no_grad():
        for _, module, _ in prunable_parameters(model):
            module.weight.copy_(torch.randint(-3, 4, module.weight.shape) * 0.25)
            module.weight.view(-1)[:2] = torch.tensor([1.1, -0.3])
    return model


def removed_norm_by_explicit_pruning(model: nn.Module, kept_fraction: float) -> float:
    weights = [m.weight.detach().double() for _, m, _ in prunable_parameters(model)]
    if kept_fraction == 0.0:
        return math.sqrt(sum(float(w.square().sum()) for w in weights))
    masks = global_magnitude_masks(model, 1.0 - kept_fraction)
    return math.sqrt(
        sum(float(w[~mask].square().sum()) for w, mask in zip(weights, masks.values()))
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_distances_match_explicit_global_magnitude_pruning(seed: int) -> None:
    model = tied_model(seed)
    weights = [m.weight for _, m, _ in prunable_parameters(model)]
    flat = torch.cat([w.detach().reshape(-1) for w in weights])
    assert int((flat == 0).sum()) > 5
    distances = pruning_distances(weights, FRACTIONS)
    assert distances.dtype == torch.float64 and distances.shape == (len(FRACTIONS),)
    for fraction, distance in zip(FRACTIONS, distances.tolist()):
        expected = removed_norm_by_explicit_pruning(model, fraction)
        assert distance == pytest.approx(expected, rel=1e-12, abs=1e-15), fraction


def test_distances_of_random_weights_against_a_python_sort() -> None:
    torch.manual_seed(3)
    weights = torch.randn(1001, dtype=torch.float64)
    magnitudes = sorted(abs(v) for v in weights.tolist())
    for fraction in FRACTIONS:
        removed = round((1 - fraction) * 1001)
        expected = math.sqrt(math.fsum(v * v for v in magnitudes[:removed]))
        assert float(pruning_distances(weights, fraction)) == pytest.approx(expected, rel=1e-12)


def test_removed_weight_norms() -> None:
    weights = [torch.tensor([[3.0, 0.0], [-1.0, 1.0]]), torch.tensor([-2.0])]
    norms = removed_weight_norms(weights)
    assert norms.tolist() == pytest.approx(
        [0.0, 0.0, 1.0, math.sqrt(2), math.sqrt(6), math.sqrt(15)]
    )
    assert norms.dtype == torch.float64 and norms.device.type == "cpu"


def test_output_shapes_follow_the_kept_fractions() -> None:
    weights = torch.tensor([0.5, -2.0, 1.0, 0.0])
    assert pruning_distances(weights, 0.5).shape == ()
    assert float(pruning_distances(weights, 0.5)) == 0.5
    grid = torch.tensor([[1.0, 0.75], [0.5, 0.0]])
    assert torch.equal(
        pruning_distances(weights, grid),
        torch.tensor([[0.0, 0.0], [0.5, math.sqrt(5.25)]], dtype=torch.float64),
    )
    # round half to even, the rounding of global_magnitude_masks: 0.5 * 5 removes 2
    assert float(pruning_distances(torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0]), 0.5)) == math.sqrt(5)


def test_as_flat_weights_concatenates_in_order() -> None:
    flat = as_flat_weights([torch.tensor([[1.0, 2.0]]), torch.tensor([3.0], dtype=torch.float16)])
    assert flat.tolist() == [1.0, 2.0, 3.0] and flat.dtype == torch.float64


@pytest.mark.parametrize(
    ("fractions", "error", "match"),
    [
        (-0.1, ValueError, r"\[0, 1\]"),
        (1.1, ValueError, r"\[0, 1\]"),
        ([0.5, math.nan], ValueError, r"\[0, 1\]"),
        (True, TypeError, "bool"),
        (torch.tensor([True]), TypeError, "bool"),
        ("half", TypeError, "kept_fractions"),
    ],
)
def test_bad_kept_fractions(fractions: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        pruning_distances(torch.ones(4), fractions)  # type: ignore[arg-type]


def test_bad_weights() -> None:
    with pytest.raises(ValueError, match="empty"):
        pruning_distances(torch.zeros(0), 0.5)
    with pytest.raises(ValueError, match="empty"):
        pruning_distances([], 0.5)
    with pytest.raises(ValueError, match="NaN"):
        pruning_distances(torch.tensor([1.0, math.nan]), 0.5)
    with pytest.raises(TypeError, match="sequence of tensors"):
        pruning_distances([1.0, 2.0], 0.5)  # type: ignore[list-item]
