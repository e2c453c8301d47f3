from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from lightning_prunelimit.pruning import (
    SparsityReport,
    apply_masks,
    global_magnitude_masks,
    sparsity_report,
)


def test_report_from_masks_is_sum_of_zeros_over_sum_of_sizes() -> None:
    masks = {
        "a.weight": torch.tensor([[True, False], [False, False]]),  # 3 of 4 pruned
        "b.weight": torch.ones(16, dtype=torch.bool),  # 0 of 16
        "c.weight": torch.tensor([1.0, 0.0]),  # float mask, 1 of 2
    }
    report = sparsity_report(masks)
    assert report.num_pruned == 4 and report.num_total == 22
    assert report.global_sparsity == 4 / 22
    assert report.per_layer == {"a.weight": 0.75, "b.weight": 0.0, "c.weight": 0.5}
    assert report.per_layer_sizes == {"a.weight": 4, "b.weight": 16, "c.weight": 2}


def test_report_from_a_masked_model_counts_the_masks() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    masks = global_magnitude_masks(model, 0.7)
    apply_masks(model, masks)
    report = sparsity_report(model)
    assert report.num_total == 96 and report.num_pruned == round(0.7 * 96)
    assert report.global_sparsity == round(0.7 * 96) / 96
    for key, mask in masks.items():
        assert report.per_layer[key] == int((~mask).sum()) / mask.numel()
    assert report == sparsity_report(masks)
    # a kept entry whose value happens to be 0 is not counted: the mask decides
    with torch.no_grad():
        model[3].weight_orig[masks["3.weight"]] = 0.0
    assert sparsity_report(model) == report


def test_report_from_an_unmasked_model_counts_exact_zeros() -> None:
    model = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 4, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[0.0, 1.0, 0.0], [2.0, 0.0, 1e-30]]))
        model[1].weight.fill_(1.0)
        model[1].weight[0, 0] = 0.0
        model[0].bias.zero_()
    report = sparsity_report(model)
    assert report.per_layer == {"0.weight": 0.5, "1.weight": 1 / 8}
    assert report.num_pruned == 4 and report.num_total == 14
    with_bias = sparsity_report(model, parameter_names=("weight", "bias"))
    assert with_bias.per_layer["0.bias"] == 1.0 and with_bias.num_total == 16


def test_to_dict_is_json_friendly_and_round_trips() -> None:
    report = sparsity_report({"a": torch.tensor([True, False, False])})
    data = json.loads(json.dumps(report.to_dict()))
    assert SparsityReport.from_dict(data) == report
    assert data["global_sparsity"] == pytest.approx(2 / 3)


def test_errors() -> None:
    with pytest.raises(ValueError, match="no masks"):
        sparsity_report({})
    with pytest.raises(TypeError, match="Module or a mapping"):
        sparsity_report([torch.ones(2)])
    with pytest.raises(TypeError, match="must be a tensor"):
        sparsity_report({"a": [1, 0]})
    with pytest.raises(ValueError, match="parameters_to_prune"):
        sparsity_report(nn.Sequential(nn.ReLU()))
