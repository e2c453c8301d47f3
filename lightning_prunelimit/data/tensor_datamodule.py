"""Base LightningDataModule for data sets that fit in memory as tensors."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from lightning_prunelimit.data.augment import AugmentingCollate, RandomCropFlip
from lightning_prunelimit.data.splits import split_indices


class TensorDataModule(L.LightningDataModule):
    """A data module whose splits are loaded into memory in ``setup()`` and normalised.

    Subclasses set the class attributes ``num_classes`` and ``input_shape`` (or set them in
    ``__init__``), optionally ``mean`` and ``std`` (one value per channel; ``None``: computed on
    the training split), and implement :meth:`load_arrays`, which returns
    ``(train_inputs, train_targets, test_inputs, test_targets)`` as tensors.

    After ``setup()``: ``train_dataset``, ``val_dataset`` and ``test_dataset`` are
    ``TensorDataset`` objects of float32 inputs (normalised: ``(x - mean) / std`` per channel)
    and int64 targets, and ``mean`` / ``std`` hold the statistics used (a single value for
    inputs of shape ``(n, features)``). With ``val_fraction > 0`` a stratified, seeded
    share of the training set is held out as the validation set; with ``val_fraction = 0`` the
    validation set is the test set (the paper's protocol). ``val_dataloader`` and
    ``test_dataloader`` never shuffle or augment; ``train_dataloader`` shuffles with a generator
    seeded by ``seed`` and, if ``augment``, applies
    :class:`~lightning_prunelimit.data.augment.RandomCropFlip` (padding with the value of a
    black pixel after normalisation) through its collate function.

    Args:
        data_dir: directory holding (or receiving) the data files.
        batch_size: samples per batch for every loader.
        num_workers: DataLoader worker processes.
        val_fraction: share of the training split held out for validation (0: use the test split).
        seed: seed of the split, the shuffling and the augmentation.
        pin_memory: DataLoader ``pin_memory``.
        augment: random crop (``crop_padding``) and horizontal flip for training batches.
        crop_padding: padding of the random crop (0: flip only).
        normalize: standardise the inputs with ``mean`` and ``std``.

    Example:
        >>> import torch
        >>> class Toy(TensorDataModule):
        ...     num_classes, input_shape = 2, (3,)
        ...     def load_arrays(self):
        ...         x, y = torch.arange(30.0).view(10, 3), torch.arange(10) % 2
        ...         return x, y, x[:4], y[:4]
        >>> dm = Toy(batch_size=4, val_fraction=0.2)
        >>> dm.setup()
        >>> len(dm.train_dataset), len(dm.val_dataset), len(dm.test_dataset)
        (8, 2, 4)
        >>> next(iter(dm.train_dataloader()))[0].shape
        torch.Size([4, 3])
    """

    num_classes: int = 0
    input_shape: tuple[int, ...] = ()
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def __init__(
        self,
        data_dir: str = "data",
        batch_size: int = 128,
        num_workers: int = 0,
        val_fraction: float = 0.0,
        seed: int = 0,
        pin_memory: bool = False,
        augment: bool = False,
        crop_padding: int = 4,
        normalize: bool = True,
    ) -> None:
        super().__init__()
        if int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if int(num_workers) != num_workers or num_workers < 0:
            raise ValueError(f"num_workers must be a non-negative integer, got {num_workers!r}")
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(
                f"val_fraction must be in [0, 1), got {val_fraction!r}: pass the share of the "
                "training split held out for validation (0 validates on the test split)"
            )
        if int(crop_padding) != crop_padding or crop_padding < 0:
            raise ValueError(f"crop_padding must be a non-negative integer, got {crop_padding!r}")
        self.data_dir = Path(data_dir)
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.val_fraction = float(val_fraction)
        self.seed = int(seed)
        self.pin_memory = bool(pin_memory)
        self.augment = bool(augment)
        self.crop_padding = int(crop_padding)
        self.normalize = bool(normalize)
        self.train_dataset: TensorDataset | None = None
        self.val_dataset: TensorDataset | None = None
        self.test_dataset: TensorDataset | None = None

    def load_arrays(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(train_inputs, train_targets, test_inputs, test_targets)``, inputs in ``input_shape``.

        Implemented by subclasses; inputs are floating point (e.g. pixels scaled to ``[0, 1]``).
        """
        raise NotImplementedError(f"{type(self).__name__} must implement load_arrays()")

    def setup(self, stage: str | None = None) -> None:
        """Load the arrays, split off validation data, normalise, and build the datasets."""
        if self.train_dataset is not None:
            return
        x_train, y_train, x_test, y_test = self.load_arrays()
        x_train, x_test = x_train.to(torch.float32), x_test.to(torch.float32)
        y_train, y_test = y_train.to(torch.int64), y_test.to(torch.int64)
        for name, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
            if tuple(x.shape[1:]) != tuple(self.input_shape) or len(x) != len(y):
                raise ValueError(
                    f"{type(self).__name__}: {name} inputs have shape {tuple(x.shape)} and targets "
                    f"{tuple(y.shape)}; expected (n, *{tuple(self.input_shape)}) and (n,)"
                )
        val_split: tuple[torch.Tensor, torch.Tensor] | None = None
        if self.val_fraction > 0:
            kept, held_out = split_indices(len(y_train), self.val_fraction, self.seed, y_train)
            val_split = (x_train[held_out], y_train[held_out])
            x_train, y_train = x_train[kept], y_train[kept]
        if self.normalize:
            mean, std = self._statistics(x_train)
            self.mean, self.std = mean, std
            x_train = self._standardise(x_train, mean, std)
            x_test = self._standardise(x_test, mean, std)
            if val_split is not None:
                val_split = (self._standardise(val_split[0], mean, std), val_split[1])
        self.train_dataset = TensorDataset(x_train, y_train)
        self.test_dataset = TensorDataset(x_test, y_test)
        self.val_dataset = self.test_dataset if val_split is None else TensorDataset(*val_split)

    def _statistics(self, x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
        if self.mean is not None and self.std is not None:
            return tuple(self.mean), tuple(self.std)
        x64 = x.to(torch.float64)
        if x.dim() >= 3:  # (n, channels, ...): one value per channel
            per_channel = x64.transpose(0, 1).reshape(x.shape[1], -1)
            mean, std = per_channel.mean(dim=1), per_channel.std(dim=1)
        else:  # (n, features): one value for all features
            mean, std = x64.mean().view(1), x64.std().view(1)
        return tuple(mean.tolist()), tuple(max(s, 1e-12) for s in std.tolist())

    @staticmethod
    def _standardise(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2) if x.dim() >= 3 else (1,) * x.dim()
        mean_t = torch.tensor(mean, dtype=x.dtype).view(shape)
        std_t = torch.tensor(std, dtype=x.dtype).view(shape)
        return (x - mean_t).div_(std_t)

    def _require(self, dataset: TensorDataset | None, name: str) -> TensorDataset:
        if dataset is None:
            raise RuntimeError(
                f"{type(self).__name__}.{name} is not available yet: call setup() first "
                "(the Trainer does this)"
            )
        return dataset

    def _collate(self) -> AugmentingCollate | None:
        if not self.augment:
            return None
        if len(self.input_shape) != 3:
            raise ValueError(
                f"augment=True needs images (channels, height, width), but {type(self).__name__} "
                f"yields inputs of shape {self.input_shape}: set augment=False"
            )
        if self.normalize and self.mean is not None and self.std is not None:
            fill = [(0.0 - m) / s for m, s in zip(self.mean, self.std)]
        else:
            fill = [0.0]
        return AugmentingCollate(RandomCropFlip(self.crop_padding, flip=True, fill=fill), self.seed)

    def train_dataloader(self) -> DataLoader:
        """Shuffled training batches (seeded), augmented when ``augment``."""
        return DataLoader(
            self._require(self.train_dataset, "train_dataset"),
            batch_size=self.batch_size,
            shuffle=True,
            generator=torch.Generator().manual_seed(self.seed),
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            collate_fn=self._collate(),
            persistent_workers=self.num_workers > 0,
        )

    def _eval_loader(self, dataset: TensorDataset) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
        )

    def val_dataloader(self) -> DataLoader:
        """Validation batches in a fixed order (the test split when ``val_fraction = 0``)."""
        return self._eval_loader(self._require(self.val_dataset, "val_dataset"))

    def test_dataloader(self) -> DataLoader:
        """Test batches in a fixed order."""
        return self._eval_loader(self._require(self.test_dataset, "test_dataset"))

    @property
    def num_train_samples(self) -> int:
        """Size of the training split (after holding out validation data); needs ``setup()``."""
        return len(self._require(self.train_dataset, "train_dataset"))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(data_dir={str(self.data_dir)!r}, batch_size={self.batch_size}, "
            f"val_fraction={self.val_fraction}, seed={self.seed}, augment={self.augment})"
        )
