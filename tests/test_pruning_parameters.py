from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from lightning_prunelimit.pruning import effective_parameter, parameter_key, prunable_parameters


class Zoo(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.conv1 = nn.Conv1d(1, 2, 3)
        self.conv2 = nn.Conv2d(1, 2, 3, bias=False)
        self.conv3 = nn.Conv3d(1, 2, 1)
        self.deconv = nn.ConvTranspose2d(2, 1, 2)
        self.bn = nn.BatchNorm2d(2)
        self.ln = nn.LayerNorm(4)
        self.head = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2, bias=False))


def test_default_selects_only_linear_and_conv_weights() -> None:
    torch.manual_seed(0)
    model = Zoo()
    entries = prunable_parameters(model)
    keys = [parameter_key(name, param) for name, _, param in entries]
    assert keys == [
        "conv1.weight",
        "conv2.weight",
        "conv3.weight",
        "deconv.weight",
        "head.0.weight",
        "head.2.weight",
    ]
    assert all(module is model.get_submodule(name) for name, module, _ in entries)


def test_biases_are_selected_only_when_asked_and_only_where_they_exist() -> None:
    model = Zoo()
    keys = [parameter_key(n, p) for n, _, p in prunable_parameters(model, ("weight", "bias"))]
    assert "conv2.bias" not in keys and "head.2.bias" not in keys
    assert "conv1.bias" in keys and "head.0.bias" in keys
    assert not any(k.startswith(("bn.", "ln.", "embed.")) for k in keys)
    assert len(keys) == 6 + 4


def test_override_with_parameters_to_prune_keeps_order_and_allows_any_module() -> None:
    model = Zoo()
    entries = prunable_parameters(
        model, parameters_to_prune=[(model.head[2], "weight"), (model.embed, "weight")]
    )
    assert [(n, p) for n, _, p in entries] == [("head.2", "weight"), ("embed", "weight")]


def test_already_pruned_parameters_are_listed_under_their_plain_name() -> None:
    model = Zoo()
    prune.random_unstructured(model.conv1, "weight", amount=0.5)
    keys = [parameter_key(n, p) for n, _, p in prunable_parameters(model)]
    assert keys[0] == "conv1.weight"
    entries = prunable_parameters(model, parameters_to_prune=[(model.conv1, "weight")])
    assert entries == [("conv1", model.conv1, "weight")]


def test_effective_parameter_uses_orig_times_mask_even_before_a_forward_pass() -> None:
    layer = nn.Linear(3, 2)
    mask = torch.tensor([[True, False, True], [False, True, True]])
    prune.custom_from_mask(layer, "weight", mask)
    with torch.no_grad():
        layer.weight_orig.fill_(2.0)  # layer.weight is stale until the next forward
    value = effective_parameter(layer, "weight")
    assert torch.equal(value, 2.0 * mask.float())
    assert not value.requires_grad
    assert torch.equal(effective_parameter(layer, "bias"), layer.bias.detach())
    with pytest.raises(ValueError, match="no parameter 'scale'"):
        effective_parameter(layer, "scale")


def test_root_module_key_has_no_leading_dot() -> None:
    entries = prunable_parameters(nn.Linear(2, 2))
    assert [parameter_key(n, p) for n, _, p in entries] == ["weight"]


def test_errors() -> None:
    model = Zoo()
    with pytest.raises(ValueError, match="no Linear or Conv weights to prune.*parameters_to_prune"):
        prunable_parameters(nn.Sequential(nn.BatchNorm1d(3), nn.Embedding(3, 2)))
    with pytest.raises(ValueError, match="no Linear or Conv weights"):
        prunable_parameters(model, ("scale",))
    with pytest.raises(TypeError, match=r"pass \('weight',\)"):
        prunable_parameters(model, "weight")
    with pytest.raises(ValueError, match="non-empty"):
        prunable_parameters(model, ())
    with pytest.raises(ValueError, match="not a submodule"):
        prunable_parameters(model, parameters_to_prune=[(nn.Linear(2, 2), "weight")])
    with pytest.raises(ValueError, match="has no parameter 'bias'"):
        prunable_parameters(model, parameters_to_prune=[(model.conv2, "bias")])
    with pytest.raises(ValueError, match="twice"):
        prunable_parameters(
            model, parameters_to_prune=[(model.conv1, "weight"), (model.conv1, "weight")]
        )
    with pytest.raises(ValueError, match=r"\(module, name\) pairs"):
        prunable_parameters(model, parameters_to_prune=[model.conv1])
    with pytest.raises(ValueError, match="forward pass"):
        prunable_parameters(nn.Sequential(nn.LazyLinear(3)))
    with pytest.raises(TypeError, match="torch.nn.Module"):
        prunable_parameters([torch.zeros(3)])
