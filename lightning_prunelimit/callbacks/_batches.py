"""Where the callbacks' batches come from: a fixed sample of the Trainer's data.

The Trainer side of the core's fixed sample (``lightning_prunelimit.curvature.fixed_sample``):
:func:`collect_batches` finds the loader and draws the sample once with
:func:`~lightning_prunelimit.curvature.sample_batches`, onto the module's device:

* the source is the training loader (``trainer.train_dataloader``, else the one the
  ``LightningModule`` or ``LightningDataModule`` defines or ``fit`` was given, before Lightning
  loads it: ``_lightning_internals.defined_loader``), or for ``split="val"`` the validation loader
  (``trainer.val_dataloaders``, else the one defined), falling back to the training data when
  there is none;
* the sample is the whole dataset in index order, or ``num_samples`` positions of one seeded
  permutation in drawn order (nested across sizes), read in the loader's batch size without
  touching the training order or the global random state; other iterables are read as they
  are, up to ``num_samples`` samples;
* augmentation: with ``augment=False`` and a datamodule that has an ``augment`` attribute, the
  attribute is set to ``False`` while the sample is collected (the training loader is then
  requested from the datamodule again, so a datamodule that builds its transforms from the flag
  and a dataset that reads it per item both serve un-augmented samples) and restored afterwards;
* DDP: with ``shard=True`` each rank keeps its share of the sample (see ``sample_batches``), so
  all-reduced sums over the ranks equal the one-process sums; ``total_samples`` is the size of
  the whole sample, for a count check.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Subset

from lightning_prunelimit.callbacks._lightning_internals import defined_loader
from lightning_prunelimit.callbacks._lookup import BatchToXY
from lightning_prunelimit.curvature.fixed_sample import (
    FixedBatches,
    as_xy,
    is_map_style,
    sample_batches,
)
from lightning_prunelimit.curvature.move_batch import move_batch

if TYPE_CHECKING:  # pragma: no cover
    import lightning.pytorch as pl

__all__ = [
    "FixedBatches",
    "collect_batches",
    "first_batch",
    "loader_batch_size",
    "sample_batches",
    "token_num_samples",
]


def _single_loader(loaders: Any, what: str) -> Any:
    """The one loader of a Lightning loader collection (a loader, a list or a dict of them)."""
    if isinstance(loaders, Mapping):
        loaders = list(loaders.values())
    if isinstance(loaders, Sequence) and not isinstance(loaders, (str, bytes)):
        if len(loaders) != 1:
            raise ValueError(
                f"the {what} data has {len(loaders)} dataloaders: these callbacks need exactly "
                "one; return a single DataLoader"
            )
        return loaders[0]
    return loaders


def _training_loader(trainer: pl.Trainer, augment: bool) -> Any:
    datamodule = trainer.datamodule
    if not augment and datamodule is not None and hasattr(datamodule, "augment"):
        loader = datamodule.train_dataloader()
    else:
        loader = trainer.train_dataloader
        if loader is None:
            loader = defined_loader(trainer, "train")
    if loader is None:
        raise ValueError(
            "no training data found: call these callbacks inside trainer.fit(model, ...) with "
            "a train_dataloader or a datamodule"
        )
    return _single_loader(loader, "training")


def _validation_loader(trainer: pl.Trainer) -> Any:
    loader = trainer.val_dataloaders
    if loader is None:
        loader = defined_loader(trainer, "val")
    if loader is None or (isinstance(loader, (list, tuple, dict)) and not loader):
        return None
    loader = _single_loader(loader, "validation")
    if isinstance(loader, DataLoader) and is_map_style(loader) and len(loader.dataset) == 0:
        return None
    return loader


@contextlib.contextmanager
def _augmentation_off(trainer: pl.Trainer, augment: bool) -> Iterator[None]:
    datamodule = trainer.datamodule
    if augment or datamodule is None or not hasattr(datamodule, "augment"):
        yield
        return
    previous = datamodule.augment
    datamodule.augment = False
    try:
        yield
    finally:
        datamodule.augment = previous


def _module_device(module: nn.Module) -> torch.device | None:
    device = getattr(module, "device", None)
    if isinstance(device, torch.device):
        return device
    first = next(module.parameters(), None)
    return first.device if first is not None else None


def collect_batches(
    trainer: pl.Trainer,
    pl_module: nn.Module,
    *,
    split: str = "train",
    num_samples: int | None = None,
    seed: int = 0,
    batch_to_xy: BatchToXY | None = None,
    augment: bool = False,
    shard: bool = True,
    to_device: bool = True,
) -> FixedBatches:
    """Draw a fixed sample of the Trainer's data (see the module docstring).

    Finds the loader (training, or validation with fallback to training), switches the
    datamodule's augmentation off unless ``augment``, and reads the sample with
    :func:`sample_batches` onto the module's device, sharded over the ranks when ``shard``.

    Args:
        trainer: the Trainer (inside ``fit``).
        pl_module: the module; batches are moved to its device.
        split: ``"train"`` or ``"val"`` (falls back to the training data when there is no
            validation data).
        num_samples: sample size; ``None`` takes every sample.
        seed: seed of the sample draw.
        batch_to_xy: maps a batch to ``(inputs, targets)``; default: the first two items.
        augment: keep the datamodule's augmentation on while collecting.
        shard: under DDP, keep only this rank's share of the sample.
        to_device: move the batches to the module's device (else they stay where the loader
            puts them, e.g. for a forward pass batch by batch over the whole data).

    Example:
        >>> import torch, lightning.pytorch as pl
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> data = DataLoader(TensorDataset(torch.randn(10, 3), torch.arange(10)), batch_size=4)
        >>> class Probe(pl.Callback):
        ...     def on_train_end(self, trainer, pl_module):
        ...         self.fixed = collect_batches(trainer, pl_module, num_samples=6)
        >>> class Net(pl.LightningModule):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.layer = torch.nn.Linear(3, 10)
        ...     def training_step(self, batch, batch_idx):
        ...         return torch.nn.functional.cross_entropy(self.layer(batch[0]), batch[1])
        ...     def configure_optimizers(self):
        ...         return torch.optim.SGD(self.parameters(), lr=0.1)
        >>> probe = Probe()
        >>> trainer = pl.Trainer(max_steps=1, callbacks=[probe], logger=False,
        ...     enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
        >>> trainer.fit(Net(), data)
        >>> probe.fixed.num_samples, probe.fixed.split
        (6, 'train')
    """
    rank, world_size = (trainer.global_rank, trainer.world_size) if shard else (0, 1)
    with _augmentation_off(trainer, augment):
        loader, used = _source_loader(trainer, split, augment)
        return sample_batches(
            loader,
            num_samples=num_samples,
            seed=seed,
            rank=rank,
            world_size=world_size,
            batch_to_xy=batch_to_xy,
            device=_module_device(pl_module) if to_device else None,
            split=used,
        )


def _source_loader(trainer: pl.Trainer, split: str, augment: bool) -> tuple[Any, str]:
    """The loader of ``split`` (validation falls back to training) and the split it serves."""
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    loader = _validation_loader(trainer) if split == "val" else None
    if loader is None:
        return _training_loader(trainer, augment), "train"
    return loader, "val"


def loader_batch_size(trainer: pl.Trainer, split: str = "train") -> int | None:
    """The batch size of the loader :func:`collect_batches` reads for ``split`` (None if unknown).

    Example:
        >>> import lightning.pytorch as pl
        >>> loader_batch_size(pl.Trainer(logger=False, enable_progress_bar=False))
        Traceback (most recent call last):
        ...
        ValueError: no training data found: ...
    """
    loader, _ = _source_loader(trainer, split, augment=True)
    size = getattr(loader, "batch_size", None)
    return size if isinstance(size, int) and size > 0 else None


def known_num_samples(trainer: pl.Trainer, split: str = "train") -> int | None:
    """Samples in the dataset :func:`collect_batches` reads for ``split`` (None if unknown).

    Known for a map-style ``DataLoader`` (its dataset's length); None for iterable data.

    Example:
        >>> import lightning.pytorch as pl
        >>> known_num_samples(pl.Trainer(logger=False, enable_progress_bar=False))
        Traceback (most recent call last):
        ...
        ValueError: no training data found: ...
    """
    loader, _ = _source_loader(trainer, split, augment=True)
    if isinstance(loader, DataLoader) and is_map_style(loader):
        return len(loader.dataset)
    return None


def token_num_samples(trainer: pl.Trainer, num_samples: int | None, split: str) -> int | None:
    """``num_samples`` capped at two batches of ``split`` under ``fast_dev_run``, else as is.

    Example:
        >>> import lightning.pytorch as pl
        >>> token_num_samples(pl.Trainer(logger=False, enable_progress_bar=False), 500, "train")
        500
    """
    if not trainer.fast_dev_run:
        return num_samples
    token = 2 * (loader_batch_size(trainer, split) or 32)
    return token if num_samples is None else min(num_samples, token)


def first_batch(
    trainer: pl.Trainer,
    pl_module: nn.Module,
    *,
    split: str = "train",
    batch_to_xy: BatchToXY | None = None,
    augment: bool = False,
) -> tuple[tuple[Any, Tensor], str]:
    """One batch of the data :func:`collect_batches` reads, as ``(inputs, targets)`` on the device.

    A map-style ``DataLoader`` gives its first ``batch_size`` samples through a private loader
    (no shuffling, no workers: neither the training order nor the random state is touched);
    another iterable gives its first batch. Used to check the wiring before training.

    Returns:
        ``((inputs, targets), split)``: the batch and the split it comes from.

    Example:
        >>> import torch, lightning.pytorch as pl
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> data = DataLoader(TensorDataset(torch.randn(10, 3), torch.arange(10)), batch_size=4)
        >>> class Probe(pl.Callback):
        ...     def on_fit_start(self, trainer, pl_module):
        ...         (self.x, self.y), _ = first_batch(trainer, pl_module)
        >>> class Net(pl.LightningModule):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.layer = torch.nn.Linear(3, 10)
        ...     def training_step(self, batch, batch_idx):
        ...         return torch.nn.functional.cross_entropy(self.layer(batch[0]), batch[1])
        ...     def configure_optimizers(self):
        ...         return torch.optim.SGD(self.parameters(), lr=0.1)
        >>> probe = Probe()
        >>> trainer = pl.Trainer(max_steps=1, callbacks=[probe], logger=False,
        ...     enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
        >>> trainer.fit(Net(), data)
        >>> probe.y.tolist()
        [0, 1, 2, 3]
    """
    with _augmentation_off(trainer, augment):
        loader, used = _source_loader(trainer, split, augment)
        reader: Iterable[Any] = loader
        if isinstance(loader, DataLoader) and is_map_style(loader):
            count = min(int(loader.batch_size), len(loader.dataset))  # type: ignore[arg-type]
            reader = DataLoader(
                Subset(loader.dataset, list(range(count))),
                batch_size=loader.batch_size,
                shuffle=False,
                collate_fn=loader.collate_fn,
            )
        batch = next(iter(reader), None)
    if batch is None:
        raise ValueError(f"the {used} data yielded no batch: check the dataloader")
    pair = as_xy(batch, batch_to_xy)
    device = _module_device(pl_module)
    return (move_batch(pair, device) if device is not None else pair), used
