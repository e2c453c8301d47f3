from __future__ import annotations

import math

import pytest
import torch
from _lightning_helpers import (
    DigitsDataModule,
    TinyClassifier,
    digits,
    make_trainer,
    read_metrics,
)
from lightning.pytorch.plugins import MixedPrecision
from torch import nn
from torch.nn.utils import prune

from lightning_prunelimit.callbacks.l1_regularization import L1Regularization


def _manual_sgd_step(model: TinyClassifier, x, y, lr: float, strength: float) -> dict:
    """Expected parameters after one plain SGD step on loss + strength * ||w||_1."""
    reference = TinyClassifier(dtype=torch.float64)
    reference.load_state_dict(model.state_dict())
    loss = nn.functional.cross_entropy(reference(x), y)
    grads = torch.autograd.grad(loss, list(reference.parameters()))
    return {
        name: (p - lr * (g + strength * torch.sign(p))).detach()
        for (name, p), g in zip(reference.named_parameters(), grads)
    }


def test_one_step_equals_the_l1_subgradient_step(tmp_path):
    model = TinyClassifier(lr=0.5, momentum=0.0)
    x, y = digits(64)
    expected = _manual_sgd_step(model, x, y, lr=0.5, strength=0.01)
    trainer = make_trainer(tmp_path, [L1Regularization(strength=0.01)], max_steps=1, logger=False)
    trainer.fit(model, DigitsDataModule(num_train=64, batch_size=64))
    for name, param in model.named_parameters():
        torch.testing.assert_close(param.detach(), expected[name], rtol=0, atol=1e-12)


def test_added_once_per_step_with_gradient_accumulation(tmp_path):
    model = TinyClassifier(lr=0.5, momentum=0.0)
    x, y = digits(64)
    # two micro-batches of 32 accumulate (g1 + g2) / 2 = the gradient of the 64-sample mean
    expected = _manual_sgd_step(model, x, y, lr=0.5, strength=0.01)
    trainer = make_trainer(
        tmp_path,
        [L1Regularization(strength=0.01)],
        max_steps=1,
        logger=False,
        accumulate_grad_batches=2,
    )
    trainer.fit(model, DigitsDataModule(num_train=64, batch_size=32))
    for name, param in model.named_parameters():
        torch.testing.assert_close(param.detach(), expected[name], rtol=0, atol=1e-12)


def test_gradient_clipping_sees_the_l1_term(tmp_path):
    model = TinyClassifier(lr=0.5, momentum=0.0)
    x, y = digits(64)
    reference = TinyClassifier()
    reference.load_state_dict(model.state_dict())
    loss = nn.functional.cross_entropy(reference(x), y)
    grads = torch.autograd.grad(loss, list(reference.parameters()))
    strength, clip = 0.05, 0.01
    total = [g + strength * torch.sign(p) for p, g in zip(reference.parameters(), grads)]
    norm = torch.sqrt(sum((t**2).sum() for t in total))
    scale = min(1.0, clip / (float(norm) + 1e-6))  # torch's clip_grad_norm_ formula
    assert scale < 1.0
    expected = [p - 0.5 * scale * t for p, t in zip(reference.parameters(), total)]
    trainer = make_trainer(
        tmp_path,
        [L1Regularization(strength=strength)],
        max_steps=1,
        logger=False,
        gradient_clip_val=clip,
    )
    trainer.fit(model, DigitsDataModule(num_train=64, batch_size=64))
    for param, want in zip(model.parameters(), expected):
        torch.testing.assert_close(param.detach(), want.detach(), rtol=0, atol=1e-12)


def test_zero_strength_changes_nothing(tmp_path):
    runs = []
    for strength in (0.0, None):
        model = TinyClassifier(lr=0.5)
        callbacks = [L1Regularization(strength=strength)] if strength is not None else []
        make_trainer(tmp_path, callbacks, max_steps=3, logger=False).fit(
            model, DigitsDataModule(num_train=192)
        )
        runs.append([p.detach().clone() for p in model.parameters()])
    for a, b in zip(*runs):
        assert torch.equal(a, b)


def test_selection_skips_norm_layers_unless_asked():
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.LayerNorm(3), nn.Linear(3, 2))
    default = [n for n, _, _ in L1Regularization(strength=1e-3).selected_parameters(model)]
    assert default == ["0.weight", "0.bias", "3.weight", "3.bias"]
    weights = [
        n
        for n, _, _ in L1Regularization(
            strength=1e-3, parameter_names=("weight",)
        ).selected_parameters(model)
    ]
    assert weights == ["0.weight", "3.weight"]
    everything = [
        n
        for n, _, _ in L1Regularization(
            strength=1e-3, include_norm_layers=True
        ).selected_parameters(model)
    ]
    assert everything == [
        "0.weight",
        "0.bias",
        "1.weight",
        "1.bias",
        "2.weight",
        "2.bias",
        "3.weight",
        "3.bias",
    ]


def test_pruned_entries_receive_no_l1_term():
    torch.manual_seed(0)
    layer = nn.Linear(4, 3)
    mask = torch.tensor([[1, 0, 1, 0], [1, 1, 0, 0], [0, 1, 1, 1]], dtype=torch.bool)
    prune.custom_from_mask(layer, "weight", mask)
    callback = L1Regularization(strength=0.1, parameter_names=("weight",))
    ((name, param, found_mask),) = list(callback.selected_parameters(layer))
    assert name == "weight" and param is layer.weight_orig
    assert torch.equal(found_mask.bool(), mask)
    layer.weight_orig.grad = torch.zeros_like(layer.weight_orig)
    optimizer = torch.optim.SGD(layer.parameters(), lr=1.0)
    callback.on_before_optimizer_step(None, layer, optimizer)
    expected = 0.1 * torch.sign(layer.weight_orig.detach()) * mask
    torch.testing.assert_close(layer.weight_orig.grad, expected, rtol=0, atol=0)
    assert callback.l1_norm(layer) == pytest.approx(float((layer.weight_orig * mask).abs().sum()))


def test_logs_norm_and_penalty_every_epoch(tmp_path):
    model = TinyClassifier(lr=0.2)
    callback = L1Regularization(strength=1e-3)
    trainer = make_trainer(tmp_path, [callback], max_epochs=3)
    trainer.fit(model, DigitsDataModule(num_train=128))
    metrics = read_metrics(trainer.logger)
    assert len(metrics["l1/norm"]) == 3 and len(metrics["l1/penalty"]) == 3
    final = float(sum(p.detach().abs().sum() for p in model.parameters()))
    assert metrics["l1/norm"][-1] == pytest.approx(final, rel=1e-9)
    assert metrics["l1/penalty"][-1] == pytest.approx(1e-3 * final, rel=1e-9)


def test_l1_shrinks_the_weights(tmp_path):
    norms = []
    for strength in (0.0, 0.02):
        model = TinyClassifier(lr=0.2)
        make_trainer(
            tmp_path, [L1Regularization(strength=strength)], max_epochs=4, logger=False
        ).fit(model, DigitsDataModule(num_train=256))
        norms.append(L1Regularization(strength=strength).l1_norm(model))
    assert norms[1] < 0.8 * norms[0]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"strength": -1e-4}, ValueError, "strength must be finite and >= 0"),
        ({"strength": math.nan}, ValueError, "strength must be finite"),
        ({"strength": math.inf}, ValueError, "strength must be finite"),
        ({"strength": True}, TypeError, "strength must be a number"),
        ({"strength": "1e-4"}, TypeError, "strength must be a number"),
        ({"strength": 1e-4, "parameter_names": "weight"}, TypeError, r"pass \('weight',\)"),
        ({"strength": 1e-4, "parameter_names": ()}, ValueError, "non-empty"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        L1Regularization(**kwargs)


def test_mixed_precision_gradients_are_unscaled_before_the_term_is_added(tmp_path):
    # fp16 autocast with a gradient scaler: were the term added to scaled gradients, it would
    # end up divided by the scale (1024) in the step
    weights = []
    for strength in (0.0, 0.01):
        model = TinyClassifier(lr=0.5, momentum=0.0, dtype=torch.float32)
        initial = model.net[0].weight.detach().clone()
        scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
        trainer = make_trainer(
            tmp_path,
            [L1Regularization(strength=strength)],
            max_steps=1,
            logger=False,
            plugins=[MixedPrecision("16-mixed", "cpu", scaler)],
        )
        trainer.fit(model, DigitsDataModule(num_train=64, dtype=torch.float32))
        weights.append(model.net[0].weight.detach().clone())
    torch.testing.assert_close(
        weights[0] - weights[1], 0.5 * 0.01 * torch.sign(initial), rtol=0, atol=1e-7
    )
