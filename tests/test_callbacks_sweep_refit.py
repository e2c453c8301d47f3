from __future__ import annotations

import copy

import lightning.pytorch as pl
import pytest
import torch
from _lightning_helpers import DigitsWithVal, TinyClassifier, digits, make_trainer, read_metrics
from torch import nn

from lightning_prunelimit.callbacks import SparsitySweep, SparsitySweepResult
from lightning_prunelimit.pruning import global_magnitude_masks, refit_kept_weights

pytestmark = pytest.mark.filterwarnings("ignore:top_eigenvalues")


class _Snapshot(pl.Callback):
    def on_train_end(self, trainer, pl_module) -> None:
        self.state = {k: v.clone() for k, v in pl_module.state_dict().items()}
        self.model = copy.deepcopy(pl_module.net)


def _passing(sparsities, values, dense, tolerance) -> list[float]:
    return [s for s, v in zip(sparsities, values) if v >= dense - tolerance]


def test_refit_limit_is_at_least_the_one_shot_limit_and_every_point_is_a_real_refit(tmp_path):
    model = TinyClassifier(hidden=16, lr=0.2)
    sweep = SparsitySweep(max_drop=0.02, refine_steps=4, refit_steps=40, refit_lr=1e-2)
    snapshot = _Snapshot()
    trainer = make_trainer(tmp_path, [snapshot, sweep], max_epochs=3)
    trainer.fit(model, DigitsWithVal(num_train=256, num_val=128, batch_size=32))
    result = sweep.result

    # the model is untouched by the sweep and its re-fits
    for key, value in model.state_dict().items():
        assert torch.equal(value, snapshot.state[key]), key
    assert result.refit_steps == 40
    assert len(result.refit_accuracies) == len(result.refit_losses) == len(result.sparsities)
    assert result.refit_accuracies[0] == result.dense_accuracy
    # both limits are the largest evaluated passing sparsity of their own curve
    dense = result.dense_accuracy
    assert result.actual_limit == max(
        _passing(result.sparsities, result.accuracies, dense, result.max_drop)
    )
    assert result.refit_actual_limit == max(
        _passing(result.sparsities, result.refit_accuracies, dense, result.max_drop)
    )
    # re-fitting finds sparse models the one-shot pruning misses
    assert result.refit_actual_limit > result.actual_limit
    failed = [
        i
        for i, s in enumerate(result.sparsities)
        if s > result.actual_limit and result.refit_losses[i] == result.refit_losses[i]
    ]
    assert failed and all(result.refit_losses[i] < result.losses[i] for i in failed)
    # only the points the re-fit search needs are re-fitted (NaN elsewhere)
    refitted = [a for a in result.refit_accuracies[1:] if a == a]
    assert len(refitted) <= 5 + 4 < len(result.sparsities) - 1
    low, high = result.refit_actual_limit_interval
    assert low <= result.refit_actual_limit <= high

    # a point recomputed by hand: prune, re-fit on the training data in order, evaluate
    x, y = digits(384)
    batches = [(x[i : i + 32], y[i : i + 32]) for i in range(0, 256, 32)]
    sparsity = max(s for s, a in zip(result.sparsities, result.refit_accuracies) if a == a)
    net = copy.deepcopy(snapshot.model)
    masks = global_magnitude_masks(net, sparsity)
    refit_kept_weights(net, masks, nn.functional.cross_entropy, batches, steps=40, lr=1e-2)
    with torch.no_grad():
        logits = net.eval()(x[256:])
    index = result.sparsities.index(sparsity)
    assert result.refit_accuracies[index] == pytest.approx(
        float((logits.argmax(1) == y[256:]).double().mean()), abs=1e-12
    )
    assert result.refit_losses[index] == pytest.approx(
        float(nn.functional.cross_entropy(logits, y[256:])), abs=1e-10
    )

    logged = read_metrics(trainer.logger)
    assert logged["sparsity_sweep/refit_actual_limit"] == [pytest.approx(result.refit_actual_limit)]
    assert logged["sparsity_sweep/refit_actual_limit_lo"] == [pytest.approx(low)]
    assert logged["sparsity_sweep/refit_actual_limit_hi"] == [pytest.approx(high)]
    assert SparsitySweepResult.from_dict(result.to_dict()) == result


def test_without_refit_nothing_changes(tmp_path):
    sweep = SparsitySweep(sparsities=(0.5,), refine_steps=1)
    make_trainer(tmp_path, [sweep], max_epochs=1, logger=False).fit(
        TinyClassifier(hidden=8), DigitsWithVal(num_train=64, num_val=64)
    )
    result = sweep.result
    assert result.refit_accuracies is None and result.refit_actual_limit is None
    assert "sparsity_sweep/refit_actual_limit" not in sweep.metrics()
    assert SparsitySweepResult.from_dict(result.to_dict()) == result


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"refit_steps": -1}, ValueError, "refit_steps must be an int >= 0"),
        ({"refit_steps": 2.0}, ValueError, "refit_steps must be an int >= 0"),
        ({"refit_lr": 0.0}, ValueError, "lr must be positive"),
    ],
)
def test_bad_refit_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        SparsitySweep(**kwargs)


def test_refit_fields_go_together_and_match_the_curve():
    with pytest.raises(ValueError, match="go together"):
        SparsitySweepResult((0.0,), (1.0,), (0.1,), 0.0, 1.0, 0.0, refit_accuracies=(1.0,))
    with pytest.raises(ValueError, match="same length"):
        SparsitySweepResult(
            (0.0, 0.5), (1.0, 0.9), (0.1, 0.2), 0.0, 1.0, 0.0,
            refit_accuracies=(1.0,), refit_losses=(0.1,), refit_actual_limit=0.0,
        )  # fmt: skip
