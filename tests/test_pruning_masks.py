from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lightning_prunelimit.pruning import (
    apply_masks,
    global_magnitude_masks,
    num_to_prune,
    prunable_parameters,
)


def small_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 3, 3),
        nn.BatchNorm2d(3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(3 * 4 * 4, 7),
        nn.ReLU(),
        nn.Linear(7, 5),
    )


def flat_weights(model: nn.Module) -> torch.Tensor:
    return torch.cat([m.weight.detach().reshape(-1) for _, m, _ in prunable_parameters(model)])


def brute_force_pruned(flat: torch.Tensor, amount: float) -> set[int]:
    """Indices removed: the n smallest |w|, ties by flat index (an independent Python sort)."""
    values = flat.tolist()
    order = sorted(range(len(values)), key=lambda i: (abs(values[i]), i))
    return set(order[: int(round(amount * len(values)))])


def pruned_indices(masks: dict[str, torch.Tensor]) -> set[int]:
    keep = torch.cat([m.reshape(-1) for m in masks.values()])
    return set(torch.nonzero(~keep).flatten().tolist())


AMOUNTS = [i / 97 for i in range(97)] + [0.5, 0.999, 0.25, 1 / 3, 0.125]


def test_exact_counts_and_set_against_brute_force() -> None:
    model = small_model()
    flat = flat_weights(model)
    total = flat.numel()
    assert total == 27 + 48 * 7 + 35
    for amount in AMOUNTS:
        masks = global_magnitude_masks(model, amount)
        assert sum(int((~m).sum()) for m in masks.values()) == round(amount * total)
        assert pruned_indices(masks) == brute_force_pruned(flat, amount), amount


def test_ties_and_zeros_are_broken_by_global_position() -> None:
    model = small_model(1)
    with torch.no_grad():
        for _, module, _ in prunable_parameters(model):
            module.weight.copy_(torch.randint(-2, 3, module.weight.shape).float())
    flat = flat_weights(model)
    assert int((flat == 0).sum()) > 50  # many exact zeros and many ties at every magnitude
    for amount in AMOUNTS:
        assert pruned_indices(global_magnitude_masks(model, amount)) == brute_force_pruned(
            flat, amount
        ), amount


def test_keys_shapes_dtype_and_default_selection() -> None:
    model = nn.Sequential(
        nn.Embedding(10, 6),
        nn.Linear(6, 4),
        nn.LayerNorm(4),
        nn.Linear(4, 3, bias=False),
    )
    masks = global_magnitude_masks(model, 0.3)
    assert list(masks) == ["1.weight", "3.weight"]
    assert masks["1.weight"].shape == (4, 6) and masks["3.weight"].shape == (3, 4)
    assert all(m.dtype == torch.bool for m in masks.values())
    with_bias = global_magnitude_masks(model, 0.3, parameter_names=("weight", "bias"))
    assert list(with_bias) == ["1.weight", "1.bias", "3.weight"]
    assert sum(int((~m).sum()) for m in with_bias.values()) == round(0.3 * (24 + 4 + 12))


def test_parameters_to_prune_override() -> None:
    model = nn.Sequential(nn.Embedding(5, 4), nn.Linear(4, 2))
    masks = global_magnitude_masks(model, 0.5, parameters_to_prune=[(model[0], "weight")])
    assert list(masks) == ["0.weight"]
    weight = model[0].weight.detach()
    kept = weight.abs()[masks["0.weight"]]
    removed = weight.abs()[~masks["0.weight"]]
    assert kept.numel() == 10 and removed.max() <= kept.min()


def test_already_pruned_model_ranks_effective_weights() -> None:
    model = small_model(2)
    first = global_magnitude_masks(model, 0.4)
    apply_masks(model, first)
    with torch.no_grad():  # make the original values of the pruned entries large
        for _, module, _ in prunable_parameters(model):
            module.weight_orig.add_(10.0 * (module.weight_mask == 0))
    second = global_magnitude_masks(model, 0.6)
    for key, mask in second.items():
        assert not bool((mask & ~first[key]).any()), "an entry pruned before was kept"
    total = sum(m.numel() for m in second.values())
    assert sum(int((~m).sum()) for m in second.values()) == round(0.6 * total)
    # a smaller amount than already pruned: only the first entries (in global order) of the
    # zero effective weights are pruned again
    third = global_magnitude_masks(model, 0.2)
    assert sum(int((~m).sum()) for m in third.values()) == round(0.2 * total)
    for key, mask in third.items():
        assert not bool((~mask & first[key]).any())


def test_mixed_dtypes_rank_in_a_common_dtype() -> None:
    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3).double())
    with torch.no_grad():
        model[0].weight.copy_(torch.arange(9.0).reshape(3, 3) / 10)
        model[1].weight.copy_(torch.arange(9.0).reshape(3, 3) / 10 + 0.05)
    masks = global_magnitude_masks(model, 0.5)
    removed = sorted(
        [v for v in model[0].weight.detach()[~masks["0.weight"]].tolist()]
        + [v for v in model[1].weight.detach()[~masks["1.weight"]].tolist()]
    )
    assert removed == pytest.approx([0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4])


def test_num_to_prune_matches_round_half_even() -> None:
    assert num_to_prune(0.5, 5) == 2 and num_to_prune(0.5, 7) == 4 and num_to_prune(0.1, 5) == 0
    for amount in AMOUNTS:
        assert num_to_prune(amount, 123) == round(amount * 123)


@pytest.mark.parametrize(
    ("amount", "error", "match"),
    [
        (1.0, ValueError, r"\[0, 1\)"),
        (-0.1, ValueError, r"\[0, 1\)"),
        (math.nan, ValueError, r"\[0, 1\)"),
        (True, TypeError, "float"),
        ("0.5", TypeError, "fraction"),
        (None, TypeError, "fraction"),
    ],
)
def test_amount_validation(amount: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        global_magnitude_masks(small_model(), amount)  # type: ignore[arg-type]


def test_non_finite_weights_are_rejected() -> None:
    model = small_model()
    with torch.no_grad():
        model[4].weight[0, 0] = math.nan
    with pytest.raises(ValueError, match=r"\['4.weight'\].*NaN"):
        global_magnitude_masks(model, 0.5)


def test_nothing_to_prune() -> None:
    with pytest.raises(ValueError, match="parameters_to_prune"):
        global_magnitude_masks(nn.Sequential(nn.BatchNorm1d(3)), 0.5)
