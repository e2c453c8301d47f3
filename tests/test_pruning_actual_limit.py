"""The actual-limit search, masked weights and model evaluation, without a Trainer."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from _lightning_helpers import digits
from torch import nn
from torch.nn.utils import prune

from lightning_prunelimit.pruning import (
    DEFAULT_SPARSITIES,
    MaskedWeights,
    actual_pruning_limit,
    apply_masks,
    evaluate_model,
    global_magnitude_masks,
    num_to_prune,
)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 12), nn.Tanh(), nn.Linear(12, 10)).double()


def _batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    x, y = digits(200)
    return [(x[i : i + 50], y[i : i + 50]) for i in range(0, 200, 50)]


def _brute_force(model: nn.Module, sparsity: float) -> tuple[float, float]:
    pruned = copy.deepcopy(model)
    apply_masks(pruned, global_magnitude_masks(pruned, sparsity))
    return evaluate_model(pruned, nn.functional.cross_entropy, _batches())


def test_every_point_equals_pruning_a_copy_and_the_model_comes_back_exactly() -> None:
    model = _model()
    before = copy.deepcopy(model.state_dict())
    seen_masks = {}

    def evaluate(sparsity, masks):
        seen_masks[sparsity] = {k: v.clone() for k, v in masks.items()}
        return evaluate_model(model, nn.functional.cross_entropy, _batches())

    result = actual_pruning_limit(model, evaluate, max_drop=0.02, refine_steps=4)
    assert set(DEFAULT_SPARSITIES) <= set(result.sparsities)
    for sparsity, accuracy, loss in zip(result.sparsities, result.accuracies, result.losses):
        expected_accuracy, expected_loss = _brute_force(model, sparsity)
        assert accuracy == expected_accuracy and loss == pytest.approx(expected_loss, abs=1e-12)
        expected = global_magnitude_masks(model, sparsity)
        assert all(torch.equal(seen_masks[sparsity][k], expected[k]) for k in expected)
    passing = [
        s for s, a in zip(result.sparsities, result.accuracies) if a >= result.dense_accuracy - 0.02
    ]
    assert result.actual_limit == max(passing)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_weights_come_back_when_evaluate_raises_or_changes_the_kept_weights() -> None:
    model = _model()
    before = copy.deepcopy(model.state_dict())
    calls = []

    def refit(sparsity, masks):  # a stand-in for masked re-fitting: moves the kept weights
        calls.append(sparsity)
        with torch.no_grad():
            for layer in (model[0], model[2]):
                layer.weight.mul_(1.5)
        if len(calls) == 3:
            raise RuntimeError("stop")
        return 1.0, 0.0

    with pytest.raises(RuntimeError, match="stop"):
        actual_pruning_limit(model, refit)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_each_mask_set_starts_from_the_original_weights() -> None:
    model = _model()
    zeros = {}

    def count_zeros(sparsity, masks):
        zeros[sparsity] = int(sum((layer.weight == 0).sum() for layer in (model[0], model[2])))
        with torch.no_grad():  # corrupt the model: the next point must not see it
            model[0].weight.zero_()
        return 1.0, 0.0

    actual_pruning_limit(model, count_zeros, sparsities=(0.3, 0.6), refine_steps=0)
    total = 64 * 12 + 12 * 10
    assert zeros == {s: num_to_prune(s, total) for s in (0.0, 0.3, 0.6)}


def test_bisection_stops_when_no_model_is_left_between_two_points() -> None:
    model = nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.01, 0.02, 1.0, 2.0]]))

    def evaluate(sparsity, masks):
        return math.nan, abs(float(model.weight.detach().sum()) - 3.03)

    result = actual_pruning_limit(model, evaluate, metric="loss", max_drop=0.05, refine_steps=8)
    assert result.actual_limit == 0.6
    assert len(result.sparsities) == len(DEFAULT_SPARSITIES)  # 0.6 and 0.7 differ by one weight


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"metric": "top5"}, ValueError, "metric must be one of"),
        ({"max_drop": -0.1}, ValueError, "max_drop must be finite and >= 0"),
        ({"refine_steps": -1}, ValueError, "refine_steps must be an int >= 0"),
        ({"sparsities": (1.0,)}, ValueError, r"sparsities must be numbers in \[0, 1\)"),
    ],
)
def test_bad_settings_are_refused(kwargs, error, message) -> None:
    with pytest.raises(error, match=message):
        actual_pruning_limit(_model(), lambda s, m: (1.0, 0.0), **kwargs)


def test_accuracy_needs_class_scores_and_the_dense_loss_must_be_finite() -> None:
    model = _model()
    with pytest.raises(ValueError, match="use metric='loss'"):
        actual_pruning_limit(model, lambda s, m: (math.nan, 0.1))
    with pytest.raises(ValueError, match="dense model's loss is nan"):
        actual_pruning_limit(model, lambda s, m: (1.0, math.nan))


def test_masked_weights_rank_a_torch_pruned_layer_by_its_effective_values() -> None:
    layer = nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[5.0, 0.1, 3.0, 4.0]]))
    prune.custom_from_mask(layer, "weight", torch.tensor([[False, True, True, True]]))
    with MaskedWeights(layer) as weights:
        keep = weights.prune(0.5)
        assert keep["weight"].tolist() == [[False, False, True, True]]
        layer(torch.ones(1, 4))  # torch prune recomputes weight = orig * mask
        assert layer.weight.tolist() == [[0.0, 0.0, 3.0, 4.0]]
    assert layer.weight_orig.tolist() == [[5.0, 0.10000000149011612, 3.0, 4.0]]
    assert layer.weight.tolist() == [[0.0, 0.10000000149011612, 3.0, 4.0]]


def test_evaluation_casts_float32_inputs_to_a_float64_model() -> None:
    model = _model()
    batches32 = [(x.float(), y) for x, y in _batches()]
    assert evaluate_model(model, nn.functional.cross_entropy, batches32) == evaluate_model(
        model, nn.functional.cross_entropy, _batches()
    )
    accuracy, loss = evaluate_model(
        model, nn.functional.mse_loss, [(x, torch.zeros(len(x), 10)) for x, _ in _batches()]
    )
    assert math.isnan(accuracy) and loss > 0


def test_evaluation_reduce_sees_the_sums() -> None:
    seen = []

    def reduce(sums: torch.Tensor) -> torch.Tensor:
        seen.append(sums.clone())
        return sums * 2  # e.g. two ranks with the same share

    accuracy, loss = evaluate_model(
        _model(), nn.functional.cross_entropy, _batches(), reduce=reduce
    )
    assert seen[0][2] == 200 and seen[0][3] == 0
    expected = evaluate_model(_model(), nn.functional.cross_entropy, _batches())
    assert (accuracy, loss) == pytest.approx(expected)
