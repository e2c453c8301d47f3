"""Where the callbacks' batches come from: a fixed sample of the Trainer's data.

:func:`collect_batches` draws a fixed sample once and returns it as a list of
``(inputs, targets)`` on the module's device:

* the source is the training loader (``trainer.train_dataloader``, else the one the
  ``LightningModule`` or ``LightningDataModule`` defines or ``fit`` was given, before Lightning
  loads it: ``_lightning_internals.defined_loader``), or for ``split="val"`` the validation loader
  (``trainer.val_dataloaders``, else the one defined), falling back to the training data when
  there is none;
* for a map-style ``DataLoader`` the sample is the whole dataset in index order, or
  ``num_samples`` indices drawn once with ``torch.randperm`` seeded by ``seed`` (then sorted), read
  in the loader's batch size by a private ``DataLoader`` (no shuffling, no workers, its own
  generator: neither the training order nor the global random state is touched); other
  iterables are read as they are, up to ``num_samples`` samples;
* augmentation: with ``augment=False`` and a datamodule that has an ``augment`` attribute, the
  attribute is set to ``False`` while the sample is collected (the training loader is then
  requested from the datamodule again, so a datamodule that builds its transforms from the flag
  and a dataset that reads it per item both serve un-augmented samples) and restored afterwards;
* DDP: with ``shard=True`` rank ``r`` of ``W`` keeps sample positions ``r, r + W, r + 2W, ...``
  (the ``DistributedSampler`` split without shuffling and without padding), so the ranks
  together hold exactly the one-process sample and all-reduced sums over them equal the
  one-process sums. ``total_samples`` is the size of the whole sample, for a count check.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from lightning.pytorch.utilities import move_data_to_device
from torch import Tensor, nn
from torch.utils.data import DataLoader, IterableDataset, Subset

from lightning_prunelimit.callbacks._lightning_internals import defined_loader
from lightning_prunelimit.callbacks._lookup import BatchToXY

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


@dataclass(frozen=True)
class FixedBatches:
    """A fixed sample of ``(inputs, targets)`` batches on the module's device.

    Attributes:
        batches: the batches of this rank.
        num_samples: the number of samples in ``batches``.
        total_samples: the number of samples over all ranks (the size of the drawn sample), or
            ``None`` when the source has no known length (an iterable dataset).
        split: ``"train"`` or ``"val"``: where the samples come from.

    Example:
        >>> import torch
        >>> fixed = FixedBatches([(torch.zeros(2, 3), torch.zeros(2))], 2, 2, "train")
        >>> fixed.num_samples
        2
    """

    batches: list[tuple[Any, Tensor]]
    num_samples: int
    total_samples: int | None
    split: str


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
    if isinstance(loader, DataLoader) and _is_map_style(loader) and len(loader.dataset) == 0:
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


def _is_map_style(loader: DataLoader) -> bool:
    dataset = loader.dataset
    return (
        not isinstance(dataset, IterableDataset)
        and hasattr(dataset, "__len__")
        and loader.batch_size is not None
    )


def _to_xy(batch: Any, batch_to_xy: BatchToXY | None) -> tuple[Any, Tensor]:
    if batch_to_xy is not None:
        try:
            pair = batch_to_xy(batch)
        except Exception as error:
            raise TypeError(
                f"batch_to_xy failed on a batch of type {type(batch).__name__} with "
                f"{type(error).__name__}: {error}; it must map a batch as the DataLoader yields "
                "it to an (inputs, targets) pair"
            ) from error
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
            raise TypeError(
                f"batch_to_xy must return an (inputs, targets) pair, got {type(pair).__name__}"
            )
        return pair[0], pair[1]
    if isinstance(batch, (tuple, list)) and len(batch) >= 2:
        return batch[0], batch[1]
    keys = f" with keys {sorted(map(str, batch))}" if isinstance(batch, Mapping) else ""
    raise TypeError(
        f"batches must be (inputs, targets) tuples, got a {type(batch).__name__}{keys}: pass "
        "batch_to_xy=lambda batch: (batch['x'], batch['y']) (or whatever fits your layout) to "
        "any one of the callbacks, or define batch_to_xy(batch) on the LightningModule"
    )


def _batch_size(targets: Any) -> int:
    if isinstance(targets, Tensor) and targets.ndim > 0:
        return int(targets.shape[0])
    return len(targets)


def _take(pair: tuple[Any, Tensor], count: int) -> tuple[Any, Tensor]:
    inputs, targets = pair
    if isinstance(inputs, Tensor):
        inputs = inputs[:count]
    return inputs, targets[:count]


def _module_device(module: nn.Module) -> torch.device | None:
    device = getattr(module, "device", None)
    if isinstance(device, torch.device):
        return device
    first = next(module.parameters(), None)
    return first.device if first is not None else None


def sample_batches(
    loader: Iterable[Any],
    *,
    num_samples: int | None = None,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
    batch_to_xy: BatchToXY | None = None,
    device: torch.device | None = None,
    split: str = "train",
) -> FixedBatches:
    """Read a fixed sample of ``(inputs, targets)`` batches from a loader.

    A map-style ``DataLoader`` gives the whole dataset in index order, or ``num_samples``
    indices drawn with ``torch.randperm`` seeded by ``seed`` and sorted; position ``p`` of the
    sample goes to rank ``p % world_size``; a private ``DataLoader`` (same batch size and
    ``collate_fn``, no shuffling, no workers) reads this rank's share. Any other iterable is
    read as it is, up to ``num_samples`` samples.

    Args:
        loader: the source.
        num_samples: sample size; ``None`` takes every sample.
        seed: seed of the sample draw.
        rank: this process's rank.
        world_size: the number of ranks sharing the sample.
        batch_to_xy: maps a batch to ``(inputs, targets)``; default: its first two items.
        device: where to move the batches; ``None`` leaves them where they are.
        split: recorded in the result.

    Example:
        >>> import torch
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> loader = DataLoader(TensorDataset(torch.randn(10, 3), torch.arange(10)), batch_size=4)
        >>> fixed = sample_batches(loader, num_samples=6, seed=0, rank=1, world_size=2)
        >>> fixed.num_samples, fixed.total_samples
        (3, 6)
    """
    if num_samples is not None and (
        isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1
    ):
        raise ValueError(
            f"num_samples must be a positive int or None (all samples), got {num_samples!r}"
        )
    total: int | None = None
    limit = num_samples
    reader: Iterable[Any] = loader
    if isinstance(loader, DataLoader) and _is_map_style(loader):
        size = len(loader.dataset)
        if num_samples is None or num_samples >= size:
            indices = torch.arange(size)
        else:
            generator = torch.Generator().manual_seed(seed)
            indices = torch.randperm(size, generator=generator)[:num_samples].sort().values
        total, limit = int(indices.numel()), None
        if total < world_size:
            raise ValueError(
                f"the {split} sample has {total} samples, fewer than the {world_size} ranks: "
                "use more samples"
            )
        reader = DataLoader(
            Subset(loader.dataset, indices[rank::world_size].tolist()),
            batch_size=loader.batch_size,
            shuffle=False,
            collate_fn=loader.collate_fn,
            generator=torch.Generator().manual_seed(seed),  # not the global random state
        )
    batches: list[tuple[Any, Tensor]] = []
    count = 0
    for batch in reader:
        pair = _to_xy(batch, batch_to_xy)
        size = _batch_size(pair[1])
        if limit is not None and count + size > limit:
            pair, size = _take(pair, limit - count), limit - count
        if size > 0:
            batches.append(move_data_to_device(pair, device) if device is not None else pair)
            count += size
        if limit is not None and count >= limit:
            break
    if count == 0:
        raise ValueError(f"the {split} data yielded no samples: check the dataloader")
    return FixedBatches(batches, count, total, split)


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
            device=_module_device(pl_module),
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
    if isinstance(loader, DataLoader) and _is_map_style(loader):
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
        if isinstance(loader, DataLoader) and _is_map_style(loader):
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
    pair = _to_xy(batch, batch_to_xy)
    device = _module_device(pl_module)
    return (move_data_to_device(pair, device) if device is not None else pair), used
