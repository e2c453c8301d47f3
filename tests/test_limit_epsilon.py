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


def per_sample_losses(model: nn.Module, batches) -> np.ndarray:
    reference = digits_model()
    reference.load_state_dict(model.state_dict())
    reference.eval()
    with torch.no_grad():
        return np.concatenate(
            [
                nn.functional.cross_entropy(reference(x), y, reduction="none").numpy()
                for x, y in batches
            ]
        )


def test_matches_the_spread_of_randomly_drawn_batches() -> None:
    model, batches = digits_model(), digits_batches()
    losses = per_sample_losses(model, batches)
    n, b = len(losses), 50
    value = batch_loss_std(model, nn.functional.cross_entropy, batches, batch_size=b)
    # Closed form: variance of a mean of b samples drawn without replacement.
    assert value**2 == pytest.approx(losses.var() / b * (n - b) / (n - 1), rel=1e-10)
    # Brute force: many seeded shuffles into batches of b, the spread of the batch means.
    rng = np.random.default_rng(0)
    means = np.concatenate(
        [losses[rng.permutation(n)].reshape(-1, b).mean(axis=1) for _ in range(3000)]
    )
    assert value == pytest.approx(float(means.std()), rel=0.03)


def test_unchanged_under_a_permutation_of_the_data_and_depends_on_the_batch_size() -> None:
    model, batches = digits_model(), digits_batches()
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(1))
    shuffled = list(zip(x[order].split(64), y[order].split(64)))
    by_class = y.argsort(stable=True)  # class-sorted batches inflate the loader-order spread
    sorted_batches = list(zip(x[by_class].split(100), y[by_class].split(100)))
    loss_fn = nn.functional.cross_entropy
    value = batch_loss_std(model, loss_fn, batches)
    assert batch_loss_std(model, loss_fn, shuffled) == value
    assert batch_loss_std(model, loss_fn, sorted_batches) == value
    smaller = batch_loss_std(model, loss_fn, batches, batch_size=32)
    assert smaller > value  # smaller batches spread more
    with pytest.raises(ValueError, match="needs more than 600 samples"):
        batch_loss_std(model, loss_fn, batches, batch_size=600)
    with pytest.raises(ValueError, match="epsilon_batch_size must be a positive int"):
        batch_loss_std(model, loss_fn, batches, batch_size=0)


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

    with pytest.raises(ValueError, match="600 samples have a non-finite loss"):
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
    assert resolve_epsilon(
        "batch_loss_std", model, loss_fn, batches, batch_size=32
    ) == batch_loss_std(model, loss_fn, batches, batch_size=32)


def test_resolve_epsilon_errors() -> None:
    model, batches = digits_model(), digits_batches()
    loss_fn = nn.functional.cross_entropy
    with pytest.raises(ValueError, match="needs more than 128 samples.*lower epsilon_batch_size"):
        resolve_epsilon("batch_loss_std", model, loss_fn, batches[:1])
    constant = [(torch.zeros(200, 64, dtype=torch.float64), torch.zeros(200, dtype=torch.long))]
    with pytest.raises(ValueError, match="every sample has the same loss"):
        resolve_epsilon("batch_loss_std", model, loss_fn, constant)
    with pytest.raises(ValueError, match="batches is empty"):
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
        batch_loss_std(model, lambda out, y: out[0], batches)
    with pytest.raises(ValueError, match=r"\(inputs, targets\) pair"):
        batch_loss_std(model, loss_fn, [batches[0][0]])
