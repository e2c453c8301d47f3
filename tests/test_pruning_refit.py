from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from lightning_prunelimit.pruning import (
    RefitResult,
    apply_masks,
    global_magnitude_masks,
    refit_kept_weights,
    restore_on_exit,
)


def _digits(num: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = torch.as_tensor(x[:num] / 16.0, dtype=torch.float64)
    return x, torch.as_tensor(y[:num], dtype=torch.int64)


def _batches(x: torch.Tensor, y: torch.Tensor, size: int = 128) -> list:
    return [(x[i : i + size], y[i : i + size]) for i in range(0, len(y), size)]


def _mean_loss(model: nn.Module, batches: list) -> float:
    with torch.no_grad():
        model.eval()
        total = sum(float(nn.functional.cross_entropy(model(x), y)) * len(y) for x, y in batches)
    return total / sum(len(y) for _, y in batches)


def _trained_mlp(batches: list, hidden: int = 24, epochs: int = 40, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10)).double()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(epochs):
        for x, y in batches:
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    return model


def _full_state(model: nn.Module) -> dict:
    params = dict(model.named_parameters())
    return {
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "grads": {n: None if p.grad is None else p.grad.clone() for n, p in params.items()},
        "grad_ids": {n: id(p.grad) for n, p in model.named_parameters()},
        "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
        "param_ids": {n: id(p) for n, p in model.named_parameters()},
        "training": [m.training for m in model.modules()],
    }


def _assert_same(before: dict, after: dict) -> None:
    assert before["state"].keys() == after["state"].keys()
    for key, value in before["state"].items():
        assert torch.equal(value, after["state"][key]), key
    for name, grad in before["grads"].items():
        other = after["grads"][name]
        assert (grad is None) == (other is None), name
        assert grad is None or torch.equal(grad, other), name
    for field in ("grad_ids", "requires_grad", "param_ids", "training"):
        assert before[field] == after[field], field


def _bn_model() -> nn.Module:
    torch.manual_seed(1)
    model = nn.Sequential(
        nn.Linear(64, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 10)
    ).double()
    x, y = _digits(64)
    nn.functional.cross_entropy(model(x), y).backward()  # .grad set on every parameter
    model[4].bias.grad = None
    model[1].weight.requires_grad_(False)
    model[1].eval()  # a mixed state: a frozen BatchNorm inside a training model
    prune.custom_from_mask(model[4], "weight", torch.rand(10, 16) > 0.3)
    return model


def test_restoration_is_exact_after_a_refit_in_training_mode():
    model = _bn_model()
    x, y = _digits(256)
    cached_weight = model[4].weight
    before = _full_state(model)
    masks = global_magnitude_masks(model, 0.6)
    with restore_on_exit(model):
        result = refit_kept_weights(
            model, masks, nn.functional.cross_entropy, _batches(x, y, 64), steps=20,
            train_mode=True,
        )  # fmt: skip
        changed = _full_state(model)
    assert result.steps == 20
    # the re-fit did change the weights, the statistics and the mode flags' effect ...
    assert not torch.equal(changed["state"]["0.weight"], before["state"]["0.weight"])
    assert not torch.equal(changed["state"]["1.running_mean"], before["state"]["1.running_mean"])
    # ... and every bit of it is back
    _assert_same(before, _full_state(model))
    assert model[4].weight is cached_weight


def test_restore_on_exit_restores_after_an_exception_and_leaves_frozen_parameters_frozen():
    model = _bn_model()
    before = _full_state(model)
    with pytest.raises(RuntimeError, match="inside"), restore_on_exit(model):
        with torch.no_grad():
            model[0].weight.add_(1.0)
        model[0].weight.grad = None
        model[1].weight.requires_grad_(True)
        model.eval()
        raise RuntimeError("inside")
    _assert_same(before, _full_state(model))


def test_refit_leaves_grad_and_requires_grad_as_found_without_restore():
    model = _bn_model()
    before = _full_state(model)
    x, y = _digits(128)
    refit_kept_weights(
        model, global_magnitude_masks(model, 0.5), nn.functional.cross_entropy, _batches(x, y),
        steps=5,
    )  # fmt: skip
    after = _full_state(model)
    for name, grad in before["grads"].items():
        other = after["grads"][name]
        assert (grad is None) == (other is None), name
        assert grad is None or torch.equal(grad, other), name
    for field in ("grad_ids", "requires_grad", "training"):
        assert before[field] == after[field], field
    # the frozen BatchNorm weight did not move; the trainable one did
    assert torch.equal(before["state"]["1.weight"], after["state"]["1.weight"])
    assert not torch.equal(before["state"]["1.bias"], after["state"]["1.bias"])


def test_pruned_weights_stay_exactly_zero_and_kept_weights_move():
    x, y = _digits(256)
    batches = _batches(x, y, 64)
    model = _trained_mlp(batches, epochs=5)
    apply_masks(model, {"2.weight": torch.rand(10, 24) > 0.5})  # a torch prune reparametrisation
    masks = global_magnitude_masks(model, 0.8)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    seen = []

    def loss_fn(outputs, targets):
        # checked inside every step: the forward pass sees the pruned entries at zero
        seen.append(all(bool((model[i].weight[~masks[f"{i}.weight"]] == 0).all()) for i in (0, 2)))
        return nn.functional.cross_entropy(outputs, targets)

    refit_kept_weights(model, masks, loss_fn, batches, steps=30, lr=1e-2)
    assert len(seen) == 30 and all(seen)
    assert bool((model[0].weight[~masks["0.weight"]] == 0).all())
    assert bool((model[2].weight_orig[~masks["2.weight"]] == 0).all())
    kept = masks["0.weight"]
    assert not torch.equal(model[0].weight[kept], start["0.weight"][kept])
    assert not torch.equal(model[0].bias, start["0.bias"])
    # the torch prune mask itself is untouched
    assert torch.equal(model[2].weight_mask, start["2.weight_mask"])


def test_refit_lowers_the_loss_of_the_one_shot_pruned_model():
    x, y = _digits(512)
    batches = _batches(x, y)
    model = _trained_mlp(batches)
    for sparsity in (0.7, 0.9):
        masks = global_magnitude_masks(model, sparsity)
        one_shot = copy.deepcopy(model)
        apply_masks(one_shot, masks)
        with restore_on_exit(model):
            result = refit_kept_weights(
                model, masks, nn.functional.cross_entropy, batches, steps=100
            )
            refit_loss = _mean_loss(model, batches)
        assert result.losses[0] == pytest.approx(_mean_loss(one_shot, batches[:1]))
        assert refit_loss < _mean_loss(one_shot, batches), sparsity


def test_adam_and_sgd_with_masks_only_or_everything():
    x, y = _digits(256)
    batches = _batches(x, y)
    model = _trained_mlp(batches, epochs=5)
    masks = global_magnitude_masks(model, 0.5)
    for optimizer in ("adam", "sgd"):
        with restore_on_exit(model):
            bias = model[0].bias.detach().clone()
            result = refit_kept_weights(
                model, masks, nn.functional.cross_entropy, batches, steps=3, lr=0.05,
                optimizer=optimizer, train_unmasked=False,
            )  # fmt: skip
            assert torch.equal(model[0].bias, bias)  # unmasked parameters stay put
        assert result.optimizer == optimizer and len(result.losses) == 3
        assert result.num_trained == sum(int(m.sum()) for m in masks.values())
        assert RefitResult.from_dict(result.to_dict()) == result


def test_training_mode_is_seeded_and_leaves_the_global_random_state_alone():
    x, y = _digits(128)
    results = []
    for seed in (0, 0, 1):
        model = _bn_model()
        model[3].train()
        state = torch.get_rng_state()
        with restore_on_exit(model):
            results.append(
                refit_kept_weights(
                    model, global_magnitude_masks(model, 0.5), nn.functional.cross_entropy,
                    _batches(x, y, 64), steps=4, seed=seed, train_mode=True,
                ).losses
            )  # fmt: skip
        assert torch.equal(torch.get_rng_state(), state)
    assert results[0] == results[1] != results[2]


def test_zero_steps_only_prunes():
    model = nn.Sequential(nn.Linear(3, 2)).double()
    masks = {"0.weight": torch.tensor([[True, False, True], [False, True, True]])}
    result = refit_kept_weights(model, masks, nn.functional.cross_entropy, [], steps=0)
    assert result.steps == 0 and result.losses == ()
    assert int((model[0].weight == 0).sum()) == 2


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"steps": -1}, ValueError, "steps must be an int >= 0"),
        ({"steps": 1.5}, ValueError, "steps must be an int >= 0"),
        ({"steps": 1, "lr": 0.0}, ValueError, "lr must be positive"),
        ({"steps": 1, "lr": "x"}, TypeError, "lr must be a positive number"),
        ({"steps": 1, "optimizer": "rmsprop"}, ValueError, "optimizer must be one of"),
        ({"steps": 1, "masks": {"9.weight": None}}, KeyError, "names no parameter"),
        ({"steps": 1, "masks": {"0.weight": torch.ones(2)}}, ValueError, "has shape"),
        ({"steps": 1, "batches": []}, ValueError, "batches is empty"),
        ({"steps": 1, "batches": [torch.zeros(2, 3)]}, ValueError, "not an \\(inputs, targets"),
        (
            {"steps": 1, "batches": [(torch.full((2, 3), float("nan")), torch.tensor([0, 1]))]},
            ValueError,
            "lower lr",
        ),
    ],
)
def test_bad_input_is_refused_with_the_fix(kwargs, error, message):
    model = nn.Sequential(nn.Linear(3, 2)).double()
    options = {
        "masks": {"0.weight": torch.ones(2, 3, dtype=torch.bool)},
        "batches": [(torch.randn(4, 3), torch.tensor([0, 1, 0, 1]))] * 3,
    }
    options.update(kwargs)
    masks, batches = options.pop("masks"), options.pop("batches")
    with pytest.raises(error, match=message):
        refit_kept_weights(model, masks, nn.functional.cross_entropy, batches, **options)
