from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from lightning_prunelimit.pruning import (
    apply_masks,
    global_magnitude_masks,
    make_pruning_permanent,
    masks_from_model,
    remove_masks,
)


def model_and_input(seed: int = 0) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv1d(2, 3, 3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(3 * 6, 5),
        nn.ReLU(),
        nn.Linear(5, 2),
    ).double()
    return model, torch.randn(4, 2, 8, dtype=torch.float64)


def masked_reference(model: nn.Module, masks: dict[str, torch.Tensor], x: torch.Tensor):
    reference, _ = model_and_input()
    reference.load_state_dict(model.state_dict())
    with torch.no_grad():
        for key, mask in masks.items():
            reference.get_submodule(key.rsplit(".", 1)[0]).weight.mul_(mask)
    return reference(x)


def test_round_trip_apply_read_remove() -> None:
    model, x = model_and_input()
    masks = global_magnitude_masks(model, 0.6)
    params = {name: p for name, p in model.named_parameters()}
    expected = masked_reference(model, masks, x)

    apply_masks(model, masks)
    for index in (0, 3, 5):
        module = model[index]
        assert hasattr(module, "weight_orig") and hasattr(module, "weight_mask")
        assert prune.is_pruned(module)
        assert module.weight_orig is params[f"{index}.weight"]
    read = masks_from_model(model)
    assert read.keys() == masks.keys()
    assert all(torch.equal(read[k], masks[k]) for k in masks)
    assert all(read[k].dtype == torch.bool for k in read)
    torch.testing.assert_close(model(x), expected)

    assert remove_masks(model) == list(masks)
    for key, mask in masks.items():
        module = model.get_submodule(key.rsplit(".", 1)[0])
        assert not hasattr(module, "weight_orig") and not hasattr(module, "weight_mask")
        assert not prune.is_pruned(module)
        assert module.weight is params[key]
        assert bool((module.weight.detach()[~mask] == 0).all())
        assert bool((module.weight.detach()[mask] != 0).all())
    assert masks_from_model(model) == {}
    assert remove_masks(model) == []
    torch.testing.assert_close(model(x), expected)


def test_reapplying_replaces_the_mask_and_keeps_earlier_zeros() -> None:
    model, _ = model_and_input(1)
    original = model[3].weight.detach().clone()
    first = global_magnitude_masks(model, 0.5)
    apply_masks(model, first)
    optimizer_param = model[3].weight_orig
    second = {k: ~m for k, m in first.items()}  # keeps exactly what was pruned before
    second["3.weight"][0, :] = True
    apply_masks(model, second)
    assert model[3].weight_orig is optimizer_param
    read = masks_from_model(model)
    assert all(torch.equal(read[k], second[k]) for k in second)
    hooks = [h for h in model[3]._forward_pre_hooks.values()]
    assert len(hooks) == 1 and not isinstance(hooks[0], prune.PruningContainer)
    # effective weight = original * first * second: entries pruned earlier stay zero
    remove_masks(model)
    expected = original * first["3.weight"] * second["3.weight"]
    assert torch.equal(model[3].weight.detach(), expected)
    assert bool((expected[0] != 0).any())


def test_optimizer_created_before_pruning_updates_only_kept_entries() -> None:
    model, x = model_and_input(2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    masks = global_magnitude_masks(model, 0.5)
    apply_masks(model, masks)
    before = model[3].weight_orig.detach().clone()
    model(x).square().sum().backward()
    optimizer.step()
    changed = model[3].weight_orig.detach() != before
    assert bool(changed[masks["3.weight"]].any())
    assert not bool(changed[~masks["3.weight"]].any())


def test_masks_from_model_reads_torch_pruning_and_float_masks_are_accepted() -> None:
    model, _ = model_and_input(3)
    prune.l1_unstructured(model[5], "weight", amount=0.4)
    read = masks_from_model(model)
    assert list(read) == ["5.weight"]
    assert torch.equal(read["5.weight"], model[5].weight_mask != 0)
    apply_masks(model, {"3.bias": torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0])})
    assert torch.equal(masks_from_model(model)["3.bias"], torch.tensor([1, 0, 1, 1, 0]).bool())


def test_make_pruning_permanent_is_remove_masks() -> None:
    assert make_pruning_permanent is remove_masks
    model, _ = model_and_input()
    apply_masks(model, global_magnitude_masks(model, 0.3))
    assert make_pruning_permanent(model) == ["0.weight", "3.weight", "5.weight"]
    assert masks_from_model(model) == {}


def test_validation_errors_change_nothing() -> None:
    model, _ = model_and_input()
    good = global_magnitude_masks(model, 0.5)
    with pytest.raises(KeyError, match=r"'3\.wieght'.*'0\.weight'"):
        apply_masks(model, {**good, "3.wieght": good["3.weight"]})
    with pytest.raises(KeyError, match="names no parameter"):
        apply_masks(model, {"9.weight": torch.ones(2, dtype=torch.bool)})
    with pytest.raises(ValueError, match=r"shape \(5, 18\) but the parameter has shape \(2, 5\)"):
        apply_masks(model, {"0.weight": good["0.weight"], "5.weight": good["3.weight"]})
    with pytest.raises(ValueError, match="only 0 and 1"):
        apply_masks(model, {"5.weight": torch.full((2, 5), 0.5)})
    with pytest.raises(TypeError, match="must be a tensor"):
        apply_masks(model, {"5.weight": [[1, 0, 1, 0, 1]] * 2})
    with pytest.raises(TypeError, match="mapping"):
        apply_masks(model, [good["0.weight"]])
    assert masks_from_model(model) == {}, "a failed call must not prune anything"
