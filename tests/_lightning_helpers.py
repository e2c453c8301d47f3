"""A tiny LightningModule and datamodule on sklearn digits for the callback tests."""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import CSVLogger
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset, default_collate


def digits(num: int | None = None, dtype: torch.dtype = torch.float64) -> tuple[Tensor, Tensor]:
    """The first ``num`` sklearn digits: inputs in [0, 1] of shape (n, 64), int64 labels."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x, y = torch.as_tensor(x / 16.0, dtype=dtype), torch.as_tensor(y, dtype=torch.int64)
    return (x[:num], y[:num]) if num is not None else (x, y)


class NoisyCollate:
    """Collate that adds Gaussian noise to the inputs: a stand-in for data augmentation."""

    def __call__(self, samples: Sequence[Any]) -> Any:
        inputs, targets = default_collate(samples)
        return inputs + 0.5 * torch.randn_like(inputs), targets


class DigitsDataModule(pl.LightningDataModule):
    """Training data only: the first ``num_train`` digits (see :class:`DigitsWithVal`).

    ``augment`` works like the package's data modules: ``train_dataloader()`` adds noise in its
    collate function when the flag is on.
    """

    def __init__(
        self,
        num_train: int = 256,
        num_val: int = 128,
        batch_size: int = 64,
        dtype: torch.dtype = torch.float64,
        augment: bool = False,
    ) -> None:
        super().__init__()
        x, y = digits(num_train + num_val, dtype)
        self.train_set = TensorDataset(x[:num_train], y[:num_train])
        self.val_set = TensorDataset(x[num_train:], y[num_train:])
        self.batch_size = batch_size
        self.augment = augment

    def train_dataloader(self) -> DataLoader:
        collate = NoisyCollate() if self.augment else None
        return DataLoader(
            self.train_set, batch_size=self.batch_size, shuffle=False, collate_fn=collate
        )


class DigitsWithVal(DigitsDataModule):
    """Training digits plus the next ``num_val`` digits as validation data."""

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.batch_size)


class TinyClassifier(pl.LightningModule):
    """A 64-``hidden``-10 MLP with ``self.loss_fn`` (cross-entropy); SGD with momentum."""

    def __init__(
        self,
        hidden: int = 16,
        lr: float = 0.1,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        dtype: torch.dtype = torch.float64,
        seed: int = 0,
        with_loss_attr: bool = True,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        torch.manual_seed(seed)
        layers: list[nn.Module] = [nn.Linear(64, hidden)]
        if batch_norm:
            layers.append(nn.BatchNorm1d(hidden))
        layers += [nn.Tanh(), nn.Linear(hidden, 10)]
        self.net = nn.Sequential(*layers).to(dtype)
        if with_loss_attr:
            self.loss_fn = nn.CrossEntropyLoss()
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        x, y = batch
        loss = nn.functional.cross_entropy(self(x), y)
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", nn.functional.cross_entropy(self(x), y))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(
            self.parameters(), lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay
        )


class NoPrunable(TinyClassifier):
    """A module whose only parameterised layer is a normalisation layer: nothing to prune."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(64, dtype=torch.float64), nn.Flatten())

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)[:, :10]


def make_trainer(
    root: Path,
    callbacks: Sequence[pl.Callback],
    *,
    max_epochs: int = 2,
    logger: Any = "csv",
    **kwargs: Any,
) -> pl.Trainer:
    """A quiet CPU Trainer writing under ``root``; ``logger="csv"`` adds a CSVLogger."""
    if logger == "csv":
        logger = CSVLogger(str(root), name="csv")
    options: dict[str, Any] = {
        "accelerator": "cpu",
        "devices": 1,
        "max_epochs": max_epochs,
        "logger": logger,
        "callbacks": list(callbacks),
        "default_root_dir": str(root),
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
    }
    options.update(kwargs)
    return pl.Trainer(**options)


def read_metrics(logger: CSVLogger) -> dict[str, list[float]]:
    """Every non-empty value of each column of a CSVLogger's ``metrics.csv``."""
    path = Path(logger.log_dir) / "metrics.csv"
    columns: dict[str, list[float]] = {}
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            for key, value in row.items():
                if value not in ("", None):
                    columns.setdefault(key, []).append(float(value))
    return columns


def wandb_offline_env(monkeypatch: Any, root: Path) -> None:
    """Make W&B write offline files under ``root``, quietly."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(root))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(root / "cache"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(root / "config"))
    os.makedirs(root / "cache", exist_ok=True)
    os.makedirs(root / "config", exist_ok=True)


class DumpResults(pl.Callback):
    """Writes each rank's callback results to ``<directory>/rank<r>.json`` at the end of training.

    Place it last: it reads the other callbacks' results after their ``on_train_end``.
    """

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        import json

        from lightning_prunelimit.callbacks import (
            GlobalOneShotPruning,
            HessianSpectrum,
            PruningLimit,
            SparsitySweep,
        )

        found = {type(c).__name__: c for c in trainer.callbacks}
        spectrum: HessianSpectrum = found["HessianSpectrum"]
        limit: PruningLimit = found["PruningLimit"]
        sweep: SparsitySweep = found["SparsitySweep"]
        pruning: GlobalOneShotPruning = found["GlobalOneShotPruning"]
        results = {
            "world_size": trainer.world_size,
            "spectrum": spectrum.spectrum.to_dict(),
            "top_eigenvalues": spectrum.top_eigenvalues.tolist(),
            "trace": spectrum.trace,
            "prediction": limit.prediction.to_dict(),
            "sweep": sweep.result.to_dict(),
            "masks": {k: v.int().tolist() for k, v in pruning.masks.items()},
            "live_masks": {
                f"net.{i}.weight": pl_module.net[i].weight_mask.int().tolist() for i in (0, 2)
            },
        }
        path = Path(self.directory) / f"rank{trainer.global_rank}.json"
        path.write_text(json.dumps(results))


class PerturbOtherRanks(pl.Callback):
    """On ranks other than zero, adds noise to the first layer's weights at the start of training;
    :class:`RestoreOtherRanks` (placed after the callbacks under test) puts them back."""

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        layer = pl_module.net[0]
        self.saved = layer.weight.detach().clone()
        if trainer.global_rank != 0:
            with torch.no_grad():
                layer.weight.add_(torch.randn_like(layer.weight))


class RestoreOtherRanks(pl.Callback):
    """Restores the weights :class:`PerturbOtherRanks` perturbed (pruned or not)."""

    def __init__(self, perturb: PerturbOtherRanks) -> None:
        self.perturb = perturb

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        layer = pl_module.net[0]
        target = getattr(layer, "weight_orig", layer.weight)
        with torch.no_grad():
            target.copy_(self.perturb.saved)
