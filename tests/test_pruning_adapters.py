"""The plain-PyTorch pieces the callbacks adapt: operator coordinates, L1 selection, key
conversion and global one-shot pruning, checked without a Trainer."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from lightning_prunelimit.curvature import HessianOperator
from lightning_prunelimit.pruning import (
    align_pruning_keys,
    apply_masks,
    check_parameters_covered,
    effective_parameter,
    global_magnitude_masks,
    l1_norm,
    l1_parameters,
    prunable_coordinates,
    prunable_parameters,
    prune_globally,
)


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), nn.Tanh(), nn.Linear(4, 3))


def _batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    return [(torch.randn(8, 5, generator=generator), torch.arange(8) % 3)]


def test_coordinates_point_at_the_effective_prunable_weights_in_the_operator() -> None:
    model = _net()
    prune.l1_unstructured(model[0], "weight", amount=0.5)  # appears as weight_orig
    op = HessianOperator(model, nn.functional.cross_entropy, _batches())
    entries = prunable_parameters(model)
    indices, values = prunable_coordinates(model, op.param_names, entries)
    assert "0.weight_orig" in op.param_names and values.numel() == op.dim
    expected = torch.cat([effective_parameter(m, n).detach().reshape(-1) for _, m, n in entries])
    torch.testing.assert_close(values[indices], expected)
    assert int((values[indices] == 0).sum()) == 10  # the pruned half of the first layer
    assert len(indices) == sum(effective_parameter(m, n).numel() for _, m, n in entries)


def test_an_uncovered_weight_is_named_with_the_fix() -> None:
    model = _net()
    model[3].weight.requires_grad_(False)
    op = HessianOperator(model, nn.functional.cross_entropy, _batches())
    with pytest.raises(
        ValueError, match=r"does not cover 1 prunable weight tensor\(s\) \(3.weight"
    ):
        check_parameters_covered(model, op.param_names, prunable_parameters(model))


def test_l1_selection_masks_pruned_entries_and_skips_norm_frozen_and_shared() -> None:
    model = _net()
    model.append(model[3])  # the same layer twice: regularised once
    prune.l1_unstructured(model[0], "weight", amount=0.5)
    model[0].bias.requires_grad_(False)
    selected = l1_parameters(model)
    assert [name for name, _, _ in selected] == ["0.weight", "3.weight", "3.bias"]
    assert selected[0][2] is model[0].weight_mask and selected[1][2] is None
    manual = float((model[0].weight_orig * model[0].weight_mask).abs().sum())
    manual += float(model[3].weight.abs().sum() + model[3].bias.abs().sum())
    assert l1_norm(model) == pytest.approx(manual, rel=1e-6)
    with_norm = [n for n, _, _ in l1_parameters(model, include_norm_layers=True)]
    assert with_norm == ["0.weight", "1.weight", "1.bias", "3.weight", "3.bias"]
    assert [n for n, _, _ in l1_parameters(model, parameter_names=("bias",))] == ["3.bias"]


def test_pruned_and_plain_state_dicts_load_into_either_form() -> None:
    pruned, plain = _net(), _net()
    masks = global_magnitude_masks(pruned, 0.5)
    apply_masks(pruned, masks)
    wrapper = nn.Sequential(plain)  # keys under a prefix "0."
    state = {f"0.{k}": v for k, v in pruned.state_dict().items()}
    align_pruning_keys(wrapper, state)
    wrapper.load_state_dict(state)
    torch.testing.assert_close(plain[0].weight, pruned[0].weight)

    target = _net()
    apply_masks(target, {k: torch.ones_like(m) for k, m in masks.items()})
    plain_state = dict(plain.state_dict())
    align_pruning_keys(target, plain_state)
    target.load_state_dict(plain_state)
    torch.testing.assert_close(target[0].weight_orig, plain[0].weight)


def test_prune_globally_is_the_masks_applied_and_share_decides() -> None:
    model, reference = _net(), _net()
    masks = prune_globally(model, 0.6)
    expected = global_magnitude_masks(reference, 0.6)
    assert masks.keys() == expected.keys()
    assert all(torch.equal(masks[k], expected[k].cpu()) for k in masks)
    assert all(m.device.type == "cpu" for m in masks.values())
    assert float((model[0].weight == 0).double().mean()) > 0
    kept = prune_globally(
        _net(), 0.6, share=lambda m: {k: torch.ones_like(v) for k, v in m.items()}
    )
    assert all(bool(v.all()) for v in kept.values())
