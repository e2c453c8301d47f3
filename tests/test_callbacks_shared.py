from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from _lightning_helpers import DigitsDataModule, DigitsWithVal, TinyClassifier, digits, make_trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_prunelimit.callbacks._batches import collect_batches
from lightning_prunelimit.callbacks._lookup import find_callback, resolve_loss_fn
from lightning_prunelimit.callbacks._output import progress_bar
from lightning_prunelimit.curvature import evaluation_mode as eval_mode


def _loader(num: int = 50, batch_size: int = 8) -> DataLoader:
    x = torch.arange(num, dtype=torch.float64).unsqueeze(1)
    return DataLoader(TensorDataset(x, torch.arange(num)), batch_size=batch_size, shuffle=True)


def test_loss_lookup_order_and_error():
    module = TinyClassifier()
    explicit = nn.MSELoss()
    assert resolve_loss_fn(explicit, module) is explicit
    assert resolve_loss_fn(None, module) is module.loss_fn
    bare = TinyClassifier(with_loss_attr=False)
    bare.criterion = nn.NLLLoss()
    assert resolve_loss_fn(None, bare) is bare.criterion
    with pytest.raises(ValueError, match=r"loss_fn=torch.nn.CrossEntropyLoss\(\)"):
        resolve_loss_fn(None, TinyClassifier(with_loss_attr=False))
    named = TinyClassifier(with_loss_attr=False)
    named.criterion = "cross-entropy"
    with pytest.raises(TypeError, match="not a callable loss"):
        resolve_loss_fn(None, named)


def test_find_callback():
    trainer = pl.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    assert isinstance(find_callback(trainer, ModelCheckpoint), ModelCheckpoint)
    assert find_callback(trainer, nn.Linear) is None
    crowded = pl.Trainer(
        logger=False,
        enable_progress_bar=False,
        callbacks=[ModelCheckpoint(), ModelCheckpoint(monitor="x")],
    )
    with pytest.raises(ValueError, match="keep exactly one"):
        find_callback(crowded, ModelCheckpoint)


def test_eval_mode_restores_each_flag():
    net = nn.Sequential(nn.Dropout(), nn.Sequential(nn.Dropout(), nn.BatchNorm1d(2)))
    net[1][0].eval()
    flags = [m.training for m in net.modules()]
    with eval_mode(net):
        assert not any(m.training for m in net.modules())
    assert [m.training for m in net.modules()] == flags


def test_progress_bar_follows_the_trainer(capsys):
    quiet = pl.Trainer(logger=False, enable_progress_bar=False)
    with progress_bar(quiet, 4, "work") as progress:
        for step in range(1, 5):
            progress(step, 4)
    assert "work" not in capsys.readouterr().err
    shown = pl.Trainer(logger=False, enable_progress_bar=True)
    with progress_bar(shown, 4, "work") as progress:
        for step in range(1, 5):
            progress(step, 4)
    assert "work" in capsys.readouterr().err


class _Probe(pl.Callback):
    def __init__(self, **kwargs) -> None:
        self.kwargs = kwargs

    def on_train_end(self, trainer, pl_module) -> None:
        self.fixed = collect_batches(trainer, pl_module, **self.kwargs)


def test_augmentation_is_switched_off_while_collecting_and_restored(tmp_path):
    x, _ = digits(64)
    for augment, clean in ((False, True), (True, False)):
        probe = _Probe(augment=augment)
        datamodule = DigitsDataModule(num_train=64, batch_size=32, augment=True)
        make_trainer(tmp_path, [probe], max_epochs=1, logger=False).fit(
            TinyClassifier(), datamodule
        )
        collected = torch.cat([inputs for inputs, _ in probe.fixed.batches])
        assert torch.equal(collected, x) is clean
        assert datamodule.augment is True


class _EmptyVal(DigitsDataModule):
    def val_dataloader(self) -> list:
        return []


@pytest.mark.parametrize("datamodule_class", [DigitsDataModule, _EmptyVal])
def test_validation_split_falls_back_to_training_data(tmp_path, datamodule_class):
    probe = _Probe(split="val")
    make_trainer(tmp_path, [probe], max_epochs=1, logger=False).fit(
        TinyClassifier(), datamodule_class(num_train=64)
    )
    assert probe.fixed.split == "train" and probe.fixed.total_samples == 64


def test_validation_split_reads_the_validation_data(tmp_path):
    probe = _Probe(split="val")
    make_trainer(tmp_path, [probe], max_epochs=1, logger=False).fit(
        TinyClassifier(), DigitsWithVal(num_train=64, num_val=40)
    )
    x, _ = digits(104)
    assert probe.fixed.split == "val"
    assert torch.equal(torch.cat([inputs for inputs, _ in probe.fixed.batches]), x[64:])


def test_training_data_from_plain_dataloaders(tmp_path):
    probe = _Probe(num_samples=10, seed=0)
    x, y = digits(40)
    loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True)
    make_trainer(tmp_path, [probe], max_epochs=1, logger=False).fit(TinyClassifier(), loader)
    expected = torch.randperm(40, generator=torch.Generator().manual_seed(0))[:10]
    assert torch.equal(torch.cat([t for _, t in probe.fixed.batches]), y[expected])
