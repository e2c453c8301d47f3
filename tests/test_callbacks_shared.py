from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from _lightning_helpers import DigitsDataModule, DigitsWithVal, TinyClassifier, digits, make_trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from lightning_prunelimit.callbacks._batches import collect_batches, sample_batches
from lightning_prunelimit.callbacks._lookup import find_callback, resolve_loss_fn
from lightning_prunelimit.callbacks._output import progress_bar
from lightning_prunelimit.curvature import evaluation_mode as eval_mode


def _loader(num: int = 50, batch_size: int = 8) -> DataLoader:
    x = torch.arange(num, dtype=torch.float64).unsqueeze(1)
    return DataLoader(TensorDataset(x, torch.arange(num)), batch_size=batch_size, shuffle=True)


def test_whole_dataset_in_index_order_and_in_the_loaders_batch_size():
    fixed = sample_batches(_loader(50, 8))
    assert [len(y) for _, y in fixed.batches] == [8] * 6 + [2]
    assert torch.equal(torch.cat([y for _, y in fixed.batches]), torch.arange(50))
    assert (fixed.num_samples, fixed.total_samples) == (50, 50)


def test_seeded_sample_is_fixed_sorted_and_seed_dependent():
    first = sample_batches(_loader(), num_samples=20, seed=3)
    again = sample_batches(_loader(), num_samples=20, seed=3)
    other = sample_batches(_loader(), num_samples=20, seed=4)
    picked = torch.cat([y for _, y in first.batches])
    expected = torch.randperm(50, generator=torch.Generator().manual_seed(3))[:20].sort().values
    assert torch.equal(picked, expected)
    assert torch.equal(picked, torch.cat([y for _, y in again.batches]))
    assert not torch.equal(picked, torch.cat([y for _, y in other.batches]))


def test_reading_the_sample_does_not_touch_the_global_random_state():
    torch.manual_seed(11)
    expected = torch.rand(3)
    torch.manual_seed(11)
    sample_batches(_loader(), num_samples=20, seed=3)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("world_size", [2, 3])
def test_rank_shares_partition_the_sample(world_size):
    shares = [
        torch.cat(
            [
                y
                for _, y in sample_batches(
                    _loader(), num_samples=31, seed=1, rank=r, world_size=world_size
                ).batches
            ]
        )
        for r in range(world_size)
    ]
    whole = torch.cat([y for _, y in sample_batches(_loader(), num_samples=31, seed=1).batches])
    assert sorted(torch.cat(shares).tolist()) == whole.tolist()
    assert sum(len(s) for s in shares) == 31
    assert max(len(s) for s in shares) - min(len(s) for s in shares) <= 1


def test_iterable_sources_are_read_up_to_num_samples():
    batches = [(torch.zeros(4, 2), torch.arange(4)) for _ in range(5)]
    fixed = sample_batches(batches, num_samples=10)
    assert [len(y) for _, y in fixed.batches] == [4, 4, 2]
    assert fixed.total_samples is None


class _DictData(Dataset):
    def __len__(self) -> int:
        return 6

    def __getitem__(self, index: int) -> dict:
        return {"image": torch.full((2,), float(index)), "label": index}


def test_other_batch_layouts_need_batch_to_xy():
    loader = DataLoader(_DictData(), batch_size=4)
    with pytest.raises(TypeError, match="batch_to_xy"):
        sample_batches(loader)
    fixed = sample_batches(loader, batch_to_xy=lambda b: (b["image"], b["label"]))
    assert torch.equal(torch.cat([y for _, y in fixed.batches]), torch.arange(6))


def test_bad_num_samples_and_too_few_samples_for_the_ranks():
    with pytest.raises(ValueError, match="num_samples must be a positive int"):
        sample_batches(_loader(), num_samples=0)
    with pytest.raises(ValueError, match="fewer than the 3 ranks"):
        sample_batches(_loader(2), rank=0, world_size=3)


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
    expected = torch.randperm(40, generator=torch.Generator().manual_seed(0))[:10].sort().values
    assert torch.equal(torch.cat([t for _, t in probe.fixed.batches]), y[expected])
