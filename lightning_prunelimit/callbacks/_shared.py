"""Trainer plumbing shared by the callbacks: loss, fixed batches, loggers, figures, progress.

Everything a callback takes from the ``Trainer`` (the loss, a fixed sample of batches, the other
callbacks) or gives back to it (scalars for every logger, PNG figures, W&B media, a progress
bar) goes through the functions of this module, so that all callbacks behave the same way.

Data. :func:`collect_batches` draws a fixed sample once and returns it as a list of
``(inputs, targets)`` on the module's device:

* the source is the training loader (``trainer.train_dataloader``, else the one the
  ``LightningModule`` or ``LightningDataModule`` defines, asked through the fit loop's data
  source ``trainer.fit_loop._data_source``), or for ``split="val"`` the validation loader
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
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import torch
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import move_data_to_device
from torch import Tensor, nn
from torch.utils.data import DataLoader, IterableDataset, Subset

from lightning_prunelimit.pruning import is_pruned

if TYPE_CHECKING:  # pragma: no cover
    import lightning.pytorch as pl
    from matplotlib.figure import Figure

__all__ = [
    "BatchToXY",
    "FixedBatches",
    "LossFn",
    "collect_batches",
    "eval_mode",
    "figure_directory",
    "find_callback",
    "is_pruned",
    "log_scalars",
    "log_wandb",
    "logging_step",
    "progress_bar",
    "resolve_loss_fn",
    "sample_batches",
    "save_figure",
    "training_point",
]

LossFn = Callable[[Any, Tensor], Tensor]
BatchToXY = Callable[[Any], tuple[Any, Tensor]]
_C = TypeVar("_C")

_LOSS_HINT = (
    "pass loss_fn=torch.nn.CrossEntropyLoss() to the callback or set self.loss_fn "
    "(or self.criterion) in the LightningModule"
)


def resolve_loss_fn(loss_fn: LossFn | None, pl_module: nn.Module) -> LossFn:
    """Return the loss ``loss_fn(outputs, targets) -> scalar mean loss`` a callback should use.

    The explicit ``loss_fn`` wins; otherwise the module's ``loss_fn`` attribute, then its
    ``criterion`` attribute.

    Args:
        loss_fn: the callback's ``loss_fn`` argument, or ``None``.
        pl_module: the module being trained.

    Raises:
        ValueError: when no loss is found; the message says how to provide one.
        TypeError: when the loss found is not callable.

    Example:
        >>> import torch
        >>> module = torch.nn.Linear(2, 2)
        >>> module.criterion = torch.nn.CrossEntropyLoss()
        >>> resolve_loss_fn(None, module) is module.criterion
        True
    """
    candidates = [("loss_fn argument", loss_fn)]
    candidates += [
        (f"{type(pl_module).__name__}.{a}", getattr(pl_module, a, None))
        for a in ("loss_fn", "criterion")
    ]
    for where, candidate in candidates:
        if candidate is None:
            continue
        if not callable(candidate):
            raise TypeError(
                f"the {where} is a {type(candidate).__name__}, not a callable loss: {_LOSS_HINT}"
            )
        return candidate
    raise ValueError(f"no loss function found for {type(pl_module).__name__}: {_LOSS_HINT}")


def find_callback(trainer: pl.Trainer, cls: type[_C]) -> _C | None:
    """Return the one callback of type ``cls`` in the Trainer, ``None`` if there is none.

    Raises:
        ValueError: when the Trainer holds several, which would make the choice ambiguous.

    Example:
        >>> import lightning.pytorch as pl
        >>> from lightning.pytorch.callbacks import ModelCheckpoint
        >>> trainer = pl.Trainer(logger=False, enable_progress_bar=False)
        >>> isinstance(find_callback(trainer, ModelCheckpoint), ModelCheckpoint)
        True
    """
    found = [c for c in trainer.callbacks if isinstance(c, cls)]
    if len(found) > 1:
        raise ValueError(
            f"the Trainer holds {len(found)} {cls.__name__} callbacks: keep exactly one"
        )
    return found[0] if found else None


def training_point(trainer: pl.Trainer, fit_index: int) -> tuple[int, int, int]:
    """Identify the current point of training: results computed at one point are reused there.

    ``fit_index`` counts the ``fit`` calls a callback has seen, so that a later ``fit`` never
    reuses a result of an earlier one.

    Example:
        >>> import lightning.pytorch as pl
        >>> training_point(pl.Trainer(logger=False, enable_progress_bar=False), 1)
        (1, 0, 0)
    """
    return (fit_index, trainer.global_step, trainer.current_epoch)


# ----------------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------------


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


def _defined_loader(trainer: pl.Trainer, split: str) -> Any:
    """The loader the LightningModule / LightningDataModule defines for ``split`` (or None)."""
    loop = trainer.fit_loop if split == "train" else trainer.fit_loop.epoch_loop.val_loop
    source = loop._data_source
    if source.instance is None or not source.is_defined():
        return None
    return source.dataloader()


def _training_loader(trainer: pl.Trainer, augment: bool) -> Any:
    datamodule = trainer.datamodule
    if not augment and datamodule is not None and hasattr(datamodule, "augment"):
        loader = datamodule.train_dataloader()
    else:
        loader = trainer.train_dataloader
        if loader is None:
            loader = _defined_loader(trainer, "train")
    if loader is None:
        raise ValueError(
            "no training data found: call these callbacks inside trainer.fit(model, ...) with "
            "a train_dataloader or a datamodule"
        )
    return _single_loader(loader, "training")


def _validation_loader(trainer: pl.Trainer) -> Any:
    loader = trainer.val_dataloaders
    if loader is None:
        loader = _defined_loader(trainer, "val")
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
        pair = batch_to_xy(batch)
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
            raise TypeError(
                f"batch_to_xy must return an (inputs, targets) pair, got {type(pair).__name__}"
            )
        return pair[0], pair[1]
    if isinstance(batch, (tuple, list)) and len(batch) >= 2:
        return batch[0], batch[1]
    raise TypeError(
        f"batches must be (inputs, targets) tuples, got {type(batch).__name__}: pass "
        "batch_to_xy=lambda batch: (batch['x'], batch['y']) (or whatever fits your layout)"
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
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    rank, world_size = (trainer.global_rank, trainer.world_size) if shard else (0, 1)
    with _augmentation_off(trainer, augment):
        loader = _validation_loader(trainer) if split == "val" else None
        used = "val"
        if loader is None:
            loader, used = _training_loader(trainer, augment), "train"
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


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[None]:
    """Put every submodule in eval mode, then restore each one's own training flag.

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Dropout(), torch.nn.Dropout())
        >>> _ = net[1].eval()
        >>> with eval_mode(net):
        ...     net.training
        False
        >>> net.training, net[0].training, net[1].training
        (True, True, False)
    """
    flags = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, flag in flags:
            m.training = flag


# ----------------------------------------------------------------------------------------------
# loggers, figures, progress
# ----------------------------------------------------------------------------------------------


def logging_step(trainer: pl.Trainer) -> int:
    """The step at which results are logged: the number of optimizer steps taken so far.

    Example:
        >>> import lightning.pytorch as pl
        >>> logging_step(pl.Trainer(logger=False, enable_progress_bar=False))
        0
    """
    return int(trainer.fit_loop.epoch_loop._batches_that_stepped)


def log_scalars(trainer: pl.Trainer, metrics: Mapping[str, float]) -> None:
    """Send scalars to every logger of the Trainer (CSV, TensorBoard, W&B, ...).

    Loggers write on rank zero only (``Logger.log_metrics`` is rank-zero), so this may be
    called on every rank.

    Example:
        >>> import lightning.pytorch as pl
        >>> log_scalars(pl.Trainer(logger=False, enable_progress_bar=False), {"a/b": 1.0})
    """
    if not trainer.is_global_zero:
        return
    values = {key: float(value) for key, value in metrics.items()}
    step = logging_step(trainer)
    for logger in trainer.loggers:
        logger.log_metrics(values, step=step)


def _wandb_loggers(trainer: pl.Trainer) -> list[WandbLogger]:
    return [logger for logger in trainer.loggers if isinstance(logger, WandbLogger)]


def log_wandb(trainer: pl.Trainer, build: Callable[[Any], Mapping[str, Any]]) -> None:
    """Log W&B media built by ``build(wandb)`` to every ``WandbLogger`` (rank zero only).

    ``build`` is called only when a ``WandbLogger`` is present, so ``wandb`` objects (tables,
    plots, images) are never built for nothing.

    Example:
        >>> import lightning.pytorch as pl
        >>> trainer = pl.Trainer(logger=False, enable_progress_bar=False)
        >>> log_wandb(trainer, lambda wandb: {"t": wandb.Table(columns=["a"], data=[[1]])})
    """
    loggers = _wandb_loggers(trainer)
    if not loggers or not trainer.is_global_zero:
        return
    import wandb

    media = dict(build(wandb))
    step = logging_step(trainer)
    for logger in loggers:
        logger.log_metrics(media, step=step)


def figure_directory(trainer: pl.Trainer) -> Path:
    """The run's log directory (``trainer.log_dir``, else ``trainer.default_root_dir``).

    ``trainer.log_dir`` broadcasts from rank zero, so this must be called on every rank.

    Example:
        >>> import lightning.pytorch as pl
        >>> trainer = pl.Trainer(logger=False, enable_progress_bar=False, default_root_dir="r")
        >>> figure_directory(trainer).name
        'r'
    """
    directory = trainer.log_dir or trainer.default_root_dir
    return Path(os.fspath(directory))


def save_figure(
    trainer: pl.Trainer, build: Callable[[], Figure], filename: str, key: str
) -> Path | None:
    """Save the figure made by ``build()`` as a PNG in the run's log directory.

    Call on every rank (the directory is broadcast); the figure is built and saved on rank
    zero only, and also logged as a ``wandb.Image`` under ``key`` when a ``WandbLogger`` is
    present.

    Returns:
        The path of the PNG on rank zero, ``None`` elsewhere.

    Example:
        >>> import tempfile, lightning.pytorch as pl
        >>> from matplotlib.figure import Figure
        >>> root = tempfile.mkdtemp()
        >>> trainer = pl.Trainer(logger=False, enable_progress_bar=False, default_root_dir=root)
        >>> save_figure(trainer, Figure, "empty.png", "empty").name
        'empty.png'
    """
    directory = figure_directory(trainer)
    if not trainer.is_global_zero:
        return None
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / filename
    figure = build()
    figure.savefig(path, dpi=100)
    log_wandb(trainer, lambda wandb: {key: wandb.Image(str(path))})
    return path


@contextlib.contextmanager
def progress_bar(
    trainer: pl.Trainer, total: int, description: str
) -> Iterator[Callable[[int, int], None]]:
    """A ``progress(step, total)`` callback that drives a tqdm bar when the Trainer shows one.

    The bar is shown only on rank zero and only when ``trainer.progress_bar_callback`` is
    enabled; otherwise the callback does nothing.

    Example:
        >>> import lightning.pytorch as pl
        >>> trainer = pl.Trainer(logger=False, enable_progress_bar=False)
        >>> with progress_bar(trainer, 3, "work") as progress:
        ...     progress(1, 3)
    """
    callback = trainer.progress_bar_callback
    if callback is None or not callback.is_enabled or not trainer.is_global_zero:
        yield lambda step, total: None
        return
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=description, leave=False, dynamic_ncols=True)

    def update(step: int, total: int) -> None:
        if bar.total != total:
            bar.total = total
        bar.update(max(0, step - bar.n))

    try:
        yield update
    finally:
        bar.close()
