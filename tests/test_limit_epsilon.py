from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

from lightning_prunelimit.limit import batch_loss_std, resolve_epsilon


def digits_batches(batch_size: int = 100, num_batches: int = 6):
    digits = load_digits()
    x = torch.tensor(digits.data[: batch_size * num_batches] / 16.0, dtype=torch.float64)
    y = torch.tensor(digits.target[: batch_size * num_batches])
    return [
        (x[i : i + batch_size], y[i : i + batch_size])
        for i in range(0, batch_size * num_batches, batch_size)
    ]


def digits_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(64, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 10)
    ).double()


def test_matches_a_manual_eval_mode_computation() -> None:
    model, batches = digits_model(), digits_batches()
    loss_fn = nn.functional.cross_entropy
    reference = digits_model()
    reference.load_state_dict(model.state_dict())
    reference.eval()
    with torch.no_grad():
        losses = [float(loss_fn(reference(x), y)) for x, y in batches]
    assert len(set(losses)) == len(losses)
    value = batch_loss_std(model, loss_fn, batches)
    assert value == pytest.approx(float(np.std(losses)), rel=1e-12)
    assert value != pytest.approx(float(np.std(losses, ddof=1)), rel=1e-3)


def test_model_is_left_exactly_as_found() -> None:
    model, batches = digits_model(), digits_batches()
    model.train()
    model[3].eval()  # mixed flags must come back as they were
    state = {k: v.clone() for k, v in model.state_dict().items()}
    batch_loss_std(model, nn.functional.cross_entropy, batches)
    assert [m.training for m in model.modules()] == [True, True, True, True, False, True]
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key  # BatchNorm running stats untouched
    assert all(p.grad is None for p in model.parameters())


def test_flags_are_restored_when_the_loss_fails() -> None:
    model, batches = digits_model(), digits_batches()
    model.train()

    def loss_fn(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(outputs, targets) * math.inf

    with pytest.raises(ValueError, match="loss on batch 0 is inf"):
        batch_loss_std(model, loss_fn, batches)
    assert all(m.training for m in model.modules())


def test_resolve_epsilon() -> None:
    model, batches = digits_model(), digits_batches()
    loss_fn = nn.functional.cross_entropy
    assert resolve_epsilon(0.25) == 0.25
    assert resolve_epsilon(3) == 3.0
    expected = batch_loss_std(model, loss_fn, batches)
    assert resolve_epsilon("batch_loss_std", model, loss_fn, batches) == expected
    assert resolve_epsilon("batch_loss_std", model, loss_fn, iter(batches)) == expected


def test_resolve_epsilon_errors() -> None:
    model, batches = digits_model(), digits_batches()
    loss_fn = nn.functional.cross_entropy
    with pytest.raises(ValueError, match="need at least two batches.*pass epsilon as a number"):
        resolve_epsilon("batch_loss_std", model, loss_fn, batches[:1])
    with pytest.raises(ValueError, match="need at least two batches"):
        resolve_epsilon("batch_loss_std", model, loss_fn, [batches[0], batches[0]])
    with pytest.raises(ValueError, match="at least two"):
        resolve_epsilon("batch_loss_std", model, loss_fn, [])
    with pytest.raises(ValueError, match="needs model, loss_fn and batches"):
        resolve_epsilon("batch_loss_std")
    with pytest.raises(ValueError, match="batch_loss_std"):
        resolve_epsilon("std", model, loss_fn, batches)
    for bad in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="positive and finite"):
            resolve_epsilon(bad)
    for bad in (True, None, [0.1]):
        with pytest.raises(TypeError, match="positive number"):
            resolve_epsilon(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="scalar tensor"):
        batch_loss_std(model, lambda out, y: out.sum(dim=1), batches)
    with pytest.raises(ValueError, match=r"\(inputs, targets\) pair"):
        batch_loss_std(model, loss_fn, [batches[0][0]])
