"""The one module that reaches into Lightning, checked against real Trainers.

``.ci/run`` runs this file on the lowest supported Lightning and on the pinned one, so a release
that moves one of these internals fails here first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_prunelimit.callbacks._lightning_internals import (
    defined_loader,
    last_checkpoint_step,
    launched_in_workers,
    put_callback_metrics,
)


class Tiny(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return torch.nn.functional.cross_entropy(self(x), y)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        pass

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _loader(n: int = 8) -> DataLoader:
    generator = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(n, 3, generator=generator), torch.arange(n) % 2)
    return DataLoader(data, batch_size=4)


def _trainer(root: Path, **kwargs: Any) -> pl.Trainer:
    options: dict[str, Any] = {
        "max_epochs": 1,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "default_root_dir": str(root),
        "accelerator": "cpu",
        "devices": 1,
    }
    options.update(kwargs)
    return pl.Trainer(**options)


def test_results_put_after_training_are_in_callback_metrics(tmp_path: Path) -> None:
    class Late(pl.Callback):
        def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            with pytest.raises(Exception, match="on_train_end"):  # Lightning refuses log() here
                pl_module.log("late/value", 1.0)
            put_callback_metrics(trainer, {"late/value": 2.5})

    trainer = _trainer(tmp_path, callbacks=[Late()])
    trainer.fit(Tiny(), _loader())
    assert float(trainer.callback_metrics["late/value"]) == pytest.approx(2.5)


def test_loaders_given_to_fit_are_found_before_lightning_loads_them(tmp_path: Path) -> None:
    train, val = _loader(8), _loader(4)
    seen: dict[str, Any] = {}

    class Look(pl.Callback):
        def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            seen["train"] = defined_loader(trainer, "train")
            seen["val"] = defined_loader(trainer, "val")

    _trainer(tmp_path, callbacks=[Look()], num_sanity_val_steps=0).fit(Tiny(), train, val)
    assert seen["train"] is train and seen["val"] is val


def test_loaders_defined_by_a_datamodule_are_built_on_request(tmp_path: Path) -> None:
    class Data(pl.LightningDataModule):
        def train_dataloader(self) -> DataLoader:
            return _loader(8)

    seen: dict[str, Any] = {}

    class Look(pl.Callback):
        def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            seen["train"] = defined_loader(trainer, "train")
            seen["val"] = defined_loader(trainer, "val")

    _trainer(tmp_path, callbacks=[Look()], limit_val_batches=0).fit(Tiny(), datamodule=Data())
    assert isinstance(seen["train"], DataLoader) and len(seen["train"].dataset) == 8
    assert seen["val"] is None
    assert defined_loader(_trainer(tmp_path), "train") is None  # outside fit


def test_the_step_of_the_last_checkpoint_is_the_final_step(tmp_path: Path) -> None:
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    assert last_checkpoint_step(checkpoint) == 0
    trainer = _trainer(tmp_path, max_epochs=2, callbacks=[checkpoint], enable_checkpointing=True)
    trainer.fit(Tiny(), _loader(8))
    assert trainer.global_step == 4
    assert last_checkpoint_step(checkpoint) == 4
    assert Path(checkpoint.last_model_path).is_file()


def test_strategies_that_start_their_own_processes_are_recognised(tmp_path: Path) -> None:
    assert not launched_in_workers(_trainer(tmp_path))
    spawn = _trainer(tmp_path, strategy="ddp_spawn", devices=2)  # no process starts before fit
    assert launched_in_workers(spawn)
    assert not launched_in_workers(_trainer(tmp_path, strategy="ddp", devices=2))


def test_a_resume_with_nothing_left_to_train_computes_and_rewrites_its_last_ckpt(
    tmp_path: Path, recwarn: pytest.WarningsRecorder
) -> None:
    from lightning_prunelimit import HessianSpectrum

    def checkpoint() -> ModelCheckpoint:
        return ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)

    first = checkpoint()
    _trainer(tmp_path, max_epochs=2, callbacks=[first], enable_checkpointing=True).fit(
        Tiny(), _loader(8)
    )
    last = Path(first.last_model_path)
    spectrum = HessianSpectrum(num_iters=4, top_k=1, trace_probes=2, loss_fn=nn.CrossEntropyLoss())
    resumed = _trainer(
        tmp_path, max_epochs=2, callbacks=[spectrum, checkpoint()], enable_checkpointing=True
    )
    resumed.fit(Tiny(), _loader(8), ckpt_path=str(last))
    assert resumed.global_step == 4 and spectrum.spectrum is not None  # computed in on_fit_end
    saved = torch.load(last, weights_only=False)
    assert saved["global_step"] == 4
    assert saved["callbacks"][spectrum.state_key]["spectrum"] is not None
    assert not [w for w in recwarn if "no checkpoint holds them" in str(w.message)]
