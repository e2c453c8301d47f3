from __future__ import annotations

import copy
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from _lightning_helpers import (
    DigitsDataModule,
    DigitsWithVal,
    TinyClassifier,
    digits,
    make_trainer,
    read_metrics,
)
from torch import nn

from lightning_prunelimit.callbacks import (
    DEFAULT_SPARSITIES,
    GlobalOneShotPruning,
    HessianSpectrum,
    PruningLimit,
    SparsitySweep,
    SparsitySweepResult,
    sparsity_sweep,
)
from lightning_prunelimit.pruning import apply_masks, global_magnitude_masks

pytestmark = pytest.mark.filterwarnings("ignore:top_eigenvalues")


def _brute_force(model: nn.Module, sparsity: float, x, y) -> tuple[float, float]:
    pruned = copy.deepcopy(model)
    apply_masks(pruned, global_magnitude_masks(pruned, sparsity))
    with torch.no_grad():
        logits = pruned.eval()(x)
    accuracy = float((logits.argmax(dim=1) == y).double().mean())
    return accuracy, float(nn.functional.cross_entropy(logits, y))


def _passes(result: SparsitySweepResult, index: int) -> bool:
    if result.metric == "loss":
        return result.losses[index] <= result.dense_loss + result.max_drop
    return result.accuracies[index] >= result.dense_accuracy - result.max_drop


def _check_limit(result: SparsitySweepResult) -> None:
    index = result.sparsities.index(result.actual_limit)
    assert _passes(result, index)
    assert not any(_passes(result, i) for i in range(index + 1, len(result.sparsities)))


class _Snapshot(pl.Callback):
    def on_train_end(self, trainer, pl_module) -> None:
        self.state = {k: v.clone() for k, v in pl_module.state_dict().items()}
        self.weight = pl_module.net[0].weight


def test_every_point_matches_brute_force_pruning_and_the_model_is_untouched(tmp_path):
    model = TinyClassifier(hidden=8, lr=0.2)
    sweep = SparsitySweep(refine_steps=5)
    snapshot = _Snapshot()
    trainer = make_trainer(tmp_path, [snapshot, sweep], max_epochs=3)
    trainer.fit(model, DigitsWithVal(num_train=256, num_val=128, batch_size=32))

    result = sweep.result
    assert result.split == "val" and result.num_samples == 128
    assert set(DEFAULT_SPARSITIES) <= set(result.sparsities)
    # the criterion's bisection, then the paired test's on the same points
    assert len(DEFAULT_SPARSITIES) < len(result.sparsities) <= len(DEFAULT_SPARSITIES) + 2 * 5
    assert list(result.sparsities) == sorted(result.sparsities)
    x, y = digits(384)
    for sparsity, accuracy, loss in zip(result.sparsities, result.accuracies, result.losses):
        want_accuracy, want_loss = _brute_force(model, sparsity, x[256:], y[256:])
        assert accuracy == pytest.approx(want_accuracy, abs=1e-12), sparsity
        assert loss == pytest.approx(want_loss, abs=1e-12), sparsity
    assert result.dense_accuracy == result.accuracies[0] > 0.5
    _check_limit(result)
    assert 0.0 < result.actual_limit < 0.99

    for key, value in model.state_dict().items():
        assert torch.equal(value, snapshot.state[key]), key
    logged = read_metrics(trainer.logger)
    assert logged["sparsity_sweep/actual_limit"] == [pytest.approx(result.actual_limit)]
    assert logged["sparsity_sweep/dense_accuracy"] == [pytest.approx(result.dense_accuracy)]
    assert logged["sparsity_sweep/dense_loss"] == [pytest.approx(result.dense_loss)]
    assert (Path(trainer.logger.log_dir) / "sparsity_sweep.png").stat().st_size > 1000


def test_a_pruned_model_is_swept_and_restored_exactly(tmp_path):
    model = TinyClassifier(hidden=8)
    pruning = GlobalOneShotPruning(amount=0.5, make_pruning_permanent=False)
    sweep = SparsitySweep(sparsities=(0.25, 0.5, 0.75), refine_steps=3)
    snapshot = _Snapshot()
    make_trainer(tmp_path, [pruning, snapshot, sweep], max_epochs=2, logger=False).fit(
        model, DigitsWithVal(num_train=128, num_val=64)
    )
    for key, value in model.state_dict().items():
        assert torch.equal(value, snapshot.state[key]), key
    assert model.net[0].weight is snapshot.weight  # torch prune's cached weight put back
    result = sweep.result
    # up to the sparsity already pruned, every point is the same model
    assert result.accuracies[: result.sparsities.index(0.5) + 1] == (result.dense_accuracy,) * (
        result.sparsities.index(0.5) + 1
    )
    x, y = digits(192)
    for sparsity, accuracy in zip(result.sparsities, result.accuracies):
        assert accuracy == pytest.approx(_brute_force(model, sparsity, x[128:], y[128:])[0])


def test_training_data_when_there_is_no_validation_data(tmp_path):
    sweep = SparsitySweep(sparsities=(0.5,), refine_steps=0, metric="loss", max_drop=0.05)
    model = TinyClassifier(hidden=8)
    make_trainer(tmp_path, [sweep], max_epochs=1, logger=False).fit(
        model, DigitsDataModule(num_train=96)
    )
    result = sweep.result
    assert result.split == "train" and result.num_samples == 96
    assert result.sparsities == (0.0, 0.5)
    x, y = digits(96)
    assert result.losses[1] == pytest.approx(_brute_force(model, 0.5, x, y)[1], abs=1e-12)
    _check_limit(result)


def test_loss_metric_and_tolerance_define_the_limit(tmp_path):
    results = []
    for tolerance in (0.0, 0.2):
        sweep = SparsitySweep(metric="loss", max_drop=tolerance, refine_steps=3)
        make_trainer(tmp_path, [sweep], max_epochs=2, logger=False).fit(
            TinyClassifier(hidden=8), DigitsWithVal(num_train=128, num_val=64)
        )
        _check_limit(sweep.result)
        results.append(sweep.result)
    assert results[1].actual_limit > results[0].actual_limit


def test_prediction_and_reality_on_one_plot(tmp_path, monkeypatch):
    drawn = []
    original = sparsity_sweep.plot_sparsity_sweep

    def spy(result, *, predicted_sparsity=None, predicted_interval=None):
        drawn.append((predicted_sparsity, predicted_interval))
        return original(
            result, predicted_sparsity=predicted_sparsity, predicted_interval=predicted_interval
        )

    monkeypatch.setattr(sparsity_sweep, "plot_sparsity_sweep", spy)
    limit = PruningLimit(epsilon_batch_size=16)
    callbacks = [SparsitySweep(refine_steps=1), limit, HessianSpectrum(num_iters=4, top_k=0)]
    trainer = make_trainer(tmp_path, callbacks, max_epochs=1)
    trainer.fit(TinyClassifier(hidden=8), DigitsWithVal(num_train=64, num_val=64, batch_size=32))
    assert drawn == [(limit.prediction.sparsity, limit.prediction.sparsity_interval)]
    assert drawn[0][1] is not None
    assert (Path(trainer.logger.log_dir) / "sparsity_sweep.png").exists()


def test_result_survives_a_checkpoint(tmp_path):
    sweep = SparsitySweep(sparsities=(0.5, 0.9), refine_steps=2)
    trainer = make_trainer(tmp_path, [sweep], max_epochs=1, logger=False)
    trainer.fit(TinyClassifier(hidden=8), DigitsWithVal(num_train=64, num_val=64))
    trainer.save_checkpoint(tmp_path / "sweep.ckpt")
    state = torch.load(tmp_path / "sweep.ckpt", weights_only=True)["callbacks"]
    restored = SparsitySweep(sparsities=(0.5, 0.9))
    restored.load_state_dict(state[restored.state_key])
    assert restored.result == sweep.result
    assert restored.result.actual_limit_interval is not None
    assert SparsitySweepResult.from_dict(sweep.result.to_dict()) == sweep.result


def test_interval_and_both_criteria_are_logged(tmp_path):
    sweep = SparsitySweep(refine_steps=3, criterion="paired_test", significance=0.1)
    trainer = make_trainer(tmp_path, [sweep], max_epochs=2)
    trainer.fit(TinyClassifier(hidden=8, lr=0.2), DigitsWithVal(num_train=128, num_val=128))
    result = sweep.result
    assert result.criterion == "paired_test" and result.significance == 0.1
    assert result.actual_limit == result.paired_test_limit >= result.drop_limit
    low, high = result.actual_limit_interval
    assert 0.0 <= low <= result.actual_limit <= high <= max(result.sparsities)
    logged = read_metrics(trainer.logger)
    for key, value in {
        "actual_limit": result.actual_limit,
        "actual_limit_lo": low,
        "actual_limit_hi": high,
        "drop_limit": result.drop_limit,
        "paired_test_limit": result.paired_test_limit,
    }.items():
        assert logged[f"sparsity_sweep/{key}"] == [pytest.approx(value)], key
    assert trainer.callback_metrics["sparsity_sweep/actual_limit_lo"] == pytest.approx(low)
    assert "criterion" in sweep.state_key and "criterion" not in SparsitySweep().state_key


def test_tolerance_is_the_deprecated_name_of_max_drop():
    with pytest.warns(FutureWarning, match="renamed max_drop"):
        sweep = SparsitySweep(tolerance=0.02)
    assert sweep.max_drop == 0.02
    assert SparsitySweep(max_drop=0.02).state_key == sweep.state_key  # old checkpoints load
    with pytest.raises(TypeError):
        SparsitySweep((0.5, 0.9))  # keyword-only


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"sparsities": (0.5, 1.0)}, ValueError, r"sparsities must be numbers in \[0, 1\)"),
        ({"sparsities": ()}, ValueError, "sparsities is empty"),
        ({"metric": "f1"}, ValueError, "metric must be"),
        ({"max_drop": -0.01}, ValueError, "max_drop must be finite and >= 0"),
        ({"refine_steps": -1}, ValueError, "refine_steps"),
        ({"num_samples": 0}, ValueError, "num_samples"),
        ({"criterion": "t"}, ValueError, "criterion must be one of"),
        ({"confidence": 1.0}, ValueError, "confidence must be strictly between 0 and 1"),
        ({"significance": 0.0}, ValueError, "significance must be strictly between 0 and 1"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        SparsitySweep(**kwargs)


def test_result_validation():
    with pytest.raises(ValueError, match="same length"):
        SparsitySweepResult((0.0, 0.5), (1.0,), (0.1, 0.2), 0.0, 1.0, 0.0)
    with pytest.raises(ValueError, match="start at 0.0"):
        SparsitySweepResult((0.5,), (1.0,), (0.1,), 0.5, 1.0, 0.0)
    with pytest.raises(ValueError, match="sorted"):
        SparsitySweepResult((0.0, 0.9, 0.5), (1.0,) * 3, (0.1,) * 3, 0.0, 1.0, 0.0)
