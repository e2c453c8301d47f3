from __future__ import annotations

import copy
import hashlib
import logging
import math
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from _lightning_helpers import (
    DigitsDataModule,
    NoPrunable,
    TinyClassifier,
    make_trainer,
    read_metrics,
)
from lightning.pytorch.callbacks import ModelCheckpoint

from lightning_prunelimit.callbacks import (
    GlobalOneShotPruning,
    HessianSpectrum,
    PruningLimit,
    global_one_shot_pruning,
)
from lightning_prunelimit.pruning import apply_masks, global_magnitude_masks

pytestmark = pytest.mark.filterwarnings("ignore:top_eigenvalues")

NUM_WEIGHTS = 64 * 8 + 8 * 10  # prunable weights of TinyClassifier(hidden=8)


def _effective(model: TinyClassifier) -> dict[str, torch.Tensor]:
    out = {}
    for index in (0, 2):
        layer = model.net[index]
        mask = getattr(layer, "weight_mask", None)
        orig = getattr(layer, "weight_orig", None)
        weight = layer.weight if orig is None else orig * mask
        out[f"net.{index}.weight"] = weight.detach().clone()
        out[f"net.{index}.bias"] = layer.bias.detach().clone()
    return out


class _ZerosStayZero(pl.Callback):
    """Checks after every optimizer step that the masked weights are exactly zero."""

    def __init__(self, pruning: GlobalOneShotPruning) -> None:
        self.pruning = pruning
        self.checked = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.pruning.masks is None:
            return
        for key, mask in self.pruning.masks.items():
            layer = pl_module.get_submodule(key.rpartition(".")[0])
            effective = layer.weight_orig * layer.weight_mask
            assert torch.all(effective[~mask] == 0)
            assert torch.all(layer.weight_orig.grad[~mask] == 0)
            pl_module(torch.zeros(1, 64, dtype=torch.float64))  # refresh layer.weight
            assert torch.all(layer.weight[~mask] == 0)
        self.checked += 1


def test_realised_sparsity_equals_amount_and_is_logged(tmp_path):
    model = TinyClassifier(hidden=8)
    initial = copy.deepcopy(model)
    pruning = GlobalOneShotPruning(amount=0.7)
    trainer = make_trainer(tmp_path, [pruning], max_epochs=1)
    trainer.fit(model, DigitsDataModule(num_train=64))

    expected = global_magnitude_masks(initial, 0.7)  # pruned before the first step
    assert pruning.masks.keys() == expected.keys()
    for key, mask in expected.items():
        assert torch.equal(pruning.masks[key], mask)
        assert pruning.masks[key].dtype == torch.bool and pruning.masks[key].device.type == "cpu"
    num_pruned = round(0.7 * NUM_WEIGHTS)
    assert pruning.report.num_pruned == num_pruned
    logged = read_metrics(trainer.logger)
    assert logged["pruning/sparsity"] == [pytest.approx(num_pruned / NUM_WEIGHTS)]
    assert logged["pruning/amount"] == [0.7]
    per_layer = {k: v[0] for k, v in logged.items() if k.startswith("pruning/sparsity/")}
    assert set(per_layer) == {"pruning/sparsity/net.0.weight", "pruning/sparsity/net.2.weight"}
    pruned = sum(per_layer[f"pruning/sparsity/{k}"] * m.numel() for k, m in expected.items())
    assert pruned == pytest.approx(num_pruned)
    assert (Path(trainer.logger.log_dir) / "pruning_sparsity.png").stat().st_size > 1000


def test_pruned_weights_stay_zero_through_fine_tuning_with_momentum(tmp_path):
    model = TinyClassifier(hidden=8, lr=0.2, momentum=0.9, weight_decay=0.05)
    initial = _effective(model)
    pruning = GlobalOneShotPruning(amount=0.5, make_pruning_permanent=False)
    probe = _ZerosStayZero(pruning)
    make_trainer(tmp_path, [pruning, probe], max_epochs=3, logger=False).fit(
        model, DigitsDataModule(num_train=128, batch_size=32)
    )
    assert probe.checked == 12
    for key, mask in pruning.masks.items():
        layer = model.get_submodule(key.rpartition(".")[0])
        # the optimizer did move the hidden values (weight decay, momentum) ...
        assert not torch.equal(layer.weight_orig.detach()[~mask], initial[key][~mask])
        # ... but the forward pass never sees them, and the kept weights were fine-tuned
        assert torch.all((layer.weight_orig * layer.weight_mask)[~mask] == 0)
        assert not torch.equal(layer.weight_orig.detach()[mask], initial[key][mask])


def test_make_pruning_permanent_folds_the_masks_but_not_the_checkpoint_files(tmp_path):
    model = TinyClassifier(hidden=8)
    pruning = GlobalOneShotPruning(amount=0.6)
    hashes: dict[str, str] = {}

    class _HashFiles(pl.Callback):
        def on_train_end(self, trainer, pl_module) -> None:
            for path in sorted(tmp_path.joinpath("ckpt").glob("*.ckpt")):
                hashes[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()

    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_top_k=-1, every_n_epochs=1)
    make_trainer(
        tmp_path,
        [_HashFiles(), pruning, checkpoint],
        max_epochs=2,
        logger=False,
        enable_checkpointing=True,
    ).fit(model, DigitsDataModule(num_train=64))

    assert len(hashes) == 2
    for name, digest in hashes.items():
        assert hashlib.sha256((tmp_path / "ckpt" / name).read_bytes()).hexdigest() == digest
    assert not hasattr(model.net[0], "weight_orig") and not model.net[0]._forward_pre_hooks
    for key, mask in pruning.masks.items():
        assert torch.all(model.get_submodule(key.rpartition(".")[0]).weight[~mask] == 0)

    saved = torch.load(tmp_path / "ckpt" / sorted(hashes)[-1], weights_only=True)
    assert not any(k.endswith(("_orig", "_mask")) for k in saved["state_dict"])
    state = saved["callbacks"][pruning.state_key]
    for key, mask in pruning.masks.items():
        assert torch.equal(state["masks"][key], mask)
        torch.testing.assert_close(saved["state_dict"][key], model.state_dict()[key])
    fresh = TinyClassifier(hidden=8, seed=7)
    fresh.load_state_dict(saved["state_dict"])  # strict: plain keys load into a plain module


def test_resume_mid_fine_tuning_into_a_fresh_module_keeps_the_masks(tmp_path, monkeypatch):
    datamodule = DigitsDataModule(num_train=128, batch_size=32)
    full_model = TinyClassifier(hidden=8, momentum=0.9, weight_decay=0.01)
    full = GlobalOneShotPruning(amount=0.8, make_pruning_permanent=False)
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_top_k=-1, every_n_epochs=1)
    make_trainer(
        tmp_path, [full, checkpoint], max_epochs=4, logger=False, enable_checkpointing=True
    ).fit(full_model, datamodule)

    middle = next((tmp_path / "ckpt").glob("epoch=1-*.ckpt"))

    def no_new_masks(*args, **kwargs):
        raise AssertionError("the resumed run must reuse the saved masks, not prune again")

    monkeypatch.setattr(global_one_shot_pruning, "prune_globally", no_new_masks)
    resumed_model = TinyClassifier(hidden=8, momentum=0.9, weight_decay=0.01, seed=123)
    resumed = GlobalOneShotPruning(amount=0.8, make_pruning_permanent=False)
    probe = _ZerosStayZero(resumed)
    make_trainer(tmp_path / "resume", [resumed, probe], max_epochs=4, logger=False).fit(
        resumed_model, datamodule, ckpt_path=middle
    )
    assert probe.checked == 8  # epochs 2 and 3, four steps each
    assert resumed.masks.keys() == full.masks.keys()
    for key in full.masks:
        assert torch.equal(resumed.masks[key], full.masks[key])
    expected, got = _effective(full_model), _effective(resumed_model)
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=1e-12)


def test_checkpoints_of_either_form_load_while_the_callback_is_attached():
    pruned = TinyClassifier(hidden=8)
    masks = global_magnitude_masks(pruned, 0.5)
    apply_masks(pruned, masks)
    pruned_state = pruned.state_dict()
    assert "net.0.weight_orig" in pruned_state
    callback = GlobalOneShotPruning(amount=0.5)

    plain = TinyClassifier(hidden=8, seed=5)
    callback.setup(None, plain, "validate")
    plain.load_state_dict(pruned_state)
    torch.testing.assert_close(
        plain.net[0].weight, pruned.net[0].weight_orig * masks["net.0.weight"]
    )
    callback.teardown(None, plain, "validate")

    target = TinyClassifier(hidden=8, seed=6)
    apply_masks(target, masks)
    callback.setup(None, target, "validate")
    target.load_state_dict(plain.state_dict())
    torch.testing.assert_close(target.net[0].weight_orig, plain.net[0].weight)
    assert torch.equal(target.net[0].weight_mask.bool(), masks["net.0.weight"])
    callback.teardown(None, target, "validate")
    with pytest.raises(RuntimeError, match="weight_orig"):
        TinyClassifier(hidden=8).load_state_dict(pruned_state)  # hook removed: plain torch


class _Snapshot(pl.Callback):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch
        self.model: TinyClassifier | None = None

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            self.model = copy.deepcopy(pl_module)


def test_predicted_amount_applied_at_an_epoch_in_one_trainer(tmp_path):
    spectrum = HessianSpectrum(num_iters=8, top_k=0, trace_probes=0)
    limit = PruningLimit(epsilon_batch_size=16)
    pruning = GlobalOneShotPruning(amount="predicted", apply_at_epoch=1)
    before = _Snapshot(epoch=1)
    prediction_then: list = []

    class _ReadPrediction(pl.Callback):
        def on_train_epoch_start(self, trainer, pl_module) -> None:
            if trainer.current_epoch == 1:
                prediction_then.append(limit.prediction)

    model = TinyClassifier(hidden=8)
    make_trainer(
        tmp_path,
        [before, pruning, _ReadPrediction(), limit, spectrum],
        max_epochs=3,
        logger=False,
    ).fit(model, DigitsDataModule(num_train=128, batch_size=32))

    (predicted,) = prediction_then
    assert predicted is not None and pruning.applied_amount == predicted.sparsity
    expected = global_magnitude_masks(before.model, predicted.sparsity)
    for key, mask in expected.items():
        assert torch.equal(pruning.masks[key], mask)
    assert pruning.report.num_pruned == round(predicted.sparsity * NUM_WEIGHTS)
    # the spectrum and the prediction were computed again for the final model
    assert limit.prediction is not predicted and limit.prediction.sparsity != predicted.sparsity


def test_verbose_reports_global_and_per_layer_sparsity(tmp_path, caplog):
    with caplog.at_level(logging.INFO):
        make_trainer(
            tmp_path, [GlobalOneShotPruning(amount=0.5, verbose=2)], max_epochs=1, logger=False
        ).fit(TinyClassifier(hidden=8), DigitsDataModule(num_train=32))
    lines = [r.getMessage() for r in caplog.records if "GlobalOneShotPruning" in r.getMessage()]
    assert lines[0].startswith(f"GlobalOneShotPruning: pruned {round(0.5 * NUM_WEIGHTS)}/592")
    assert any("net.0.weight" in line for line in lines[1:])
    assert any("net.2.weight" in line for line in lines[1:])


def test_predicted_without_a_pruning_limit_is_a_clear_error(tmp_path):
    trainer = make_trainer(
        tmp_path,
        [GlobalOneShotPruning(amount="predicted", apply_at_epoch=0)],
        max_epochs=1,
        logger=False,
    )
    with pytest.raises(ValueError, match="needs a PruningLimit callback"):
        trainer.fit(TinyClassifier(hidden=8), DigitsDataModule(num_train=32))


def test_predicted_without_a_prediction_at_fit_start_is_a_clear_error(tmp_path):
    callbacks = [
        GlobalOneShotPruning(amount="predicted"),
        PruningLimit(epsilon_batch_size=16),
        HessianSpectrum(num_iters=2),
    ]
    trainer = make_trainer(tmp_path, callbacks, max_epochs=1, logger=False)
    with pytest.raises(ValueError, match="has no prediction when training starts"):
        trainer.fit(TinyClassifier(hidden=8), DigitsDataModule(num_train=32))


def test_nothing_to_prune_is_a_clear_error(tmp_path):
    trainer = make_trainer(tmp_path, [GlobalOneShotPruning(amount=0.5)], max_epochs=1, logger=False)
    with pytest.raises(ValueError, match="no Linear or Conv weights to prune"):
        trainer.fit(NoPrunable(), DigitsDataModule(num_train=32))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"amount": 1.0}, ValueError, r"amount must be in \[0, 1\), got 1.0"),
        ({"amount": -0.1}, ValueError, r"amount must be in \[0, 1\)"),
        ({"amount": math.nan}, ValueError, r"amount must be in \[0, 1\)"),
        ({"amount": True}, TypeError, "amount must be a float"),
        ({"amount": "half"}, TypeError, "amount must be a float"),
        ({"amount": 0.5, "apply_at_epoch": -1}, ValueError, "apply_at_epoch"),
        ({"amount": 0.5, "verbose": 3}, ValueError, "verbose"),
        ({"amount": 0.5, "parameter_names": "weight"}, TypeError, "parameter_names"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        GlobalOneShotPruning(**kwargs)


def test_state_keys_tell_instances_apart():
    assert GlobalOneShotPruning(amount=0.5).state_key != GlobalOneShotPruning(amount=0.6).state_key
    assert GlobalOneShotPruning(amount=0.5).state_key == GlobalOneShotPruning(amount=0.5).state_key
