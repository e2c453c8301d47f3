"""CIFAR-10 and CIFAR-100 from the official python pickle batches, with optional download."""

from __future__ import annotations

import importlib
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lightning_prunelimit.data.download import download_and_extract
from lightning_prunelimit.data.tensor_datamodule import TensorDataModule

_ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {
        ("_codecs", "encode"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
    }
)


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that only rebuilds numpy arrays and plain containers (no arbitrary code)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name} from a CIFAR batch: the file is not an "
                "official CIFAR pickle"
            )
        if module.startswith("numpy.core.") and hasattr(np, "_core"):
            module = "numpy._core." + module.removeprefix("numpy.core.")
        return getattr(importlib.import_module(module), name)


def read_cifar_batch(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load one CIFAR python batch (``data_batch_1``, ``test_batch``, ``train``, ``meta``, ...).

    Uses a restricted unpickler that accepts only numpy arrays, lists, dicts, strings and numbers.
    Keys are returned as ``str`` (the files store them as bytes).

    Example:
        >>> import os, pickle, tempfile
        >>> import numpy as np
        >>> path = os.path.join(tempfile.mkdtemp(), "data_batch_1")
        >>> batch = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [3, 5]}
        >>> with open(path, "wb") as handle:
        ...     pickle.dump(batch, handle, protocol=2)
        >>> loaded = read_cifar_batch(path)
        >>> loaded["data"].shape, loaded["labels"]
        ((2, 3072), [3, 5])
    """
    with open(path, "rb") as handle:
        content = _ArrayUnpickler(handle, encoding="bytes").load()
    if not isinstance(content, dict):
        raise ValueError(f"{path}: expected a dict in a CIFAR batch, got {type(content).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in content.items()}


class CIFAR10DataModule(TensorDataModule):
    """CIFAR-10: 50,000 train / 10,000 test colour 32x32 images, 10 classes.

    Reads torchvision's layout, ``<data_dir>/cifar-10-batches-py/{data_batch_1..5, test_batch}``
    (``batches.meta`` gives ``class_names`` when present). With ``download=True`` the official
    tarball is fetched, its MD5 checked and extracted safely (``prepare_data``); by default nothing
    is downloaded and missing files raise ``FileNotFoundError``. Normalised with the paper's
    per-channel mean and std; ``augment`` (on by default, as in the paper) applies random crop
    with padding 4 and horizontal flip to training batches.

    Args:
        download: fetch the data when it is missing.
        See :class:`~lightning_prunelimit.data.tensor_datamodule.TensorDataModule` for the rest.

    Example:
        >>> dm = CIFAR10DataModule(data_dir="data")
        >>> dm.input_shape, dm.num_classes, dm.data_folder.as_posix()
        ((3, 32, 32), 10, 'data/cifar-10-batches-py')
    """

    num_classes = 10
    input_shape = (3, 32, 32)
    mean = (0.491, 0.482, 0.447)
    std = (0.247, 0.243, 0.262)
    folder: str = "cifar-10-batches-py"
    url: str = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    md5: str = "c58f30108f718f92721af3b95e74349a"
    train_files: tuple[str, ...] = tuple(f"data_batch_{i}" for i in range(1, 6))
    test_files: tuple[str, ...] = ("test_batch",)
    meta_file: str = "batches.meta"
    label_key: str = "labels"
    names_key: str = "label_names"

    def __init__(
        self,
        data_dir: str = "data",
        batch_size: int = 128,
        num_workers: int = 0,
        val_fraction: float = 0.0,
        seed: int = 0,
        pin_memory: bool = False,
        augment: bool = True,
        crop_padding: int = 4,
        normalize: bool = True,
        download: bool = False,
    ) -> None:
        super().__init__(
            data_dir=data_dir,
            batch_size=batch_size,
            num_workers=num_workers,
            val_fraction=val_fraction,
            seed=seed,
            pin_memory=pin_memory,
            augment=augment,
            crop_padding=crop_padding,
            normalize=normalize,
        )
        self.download = bool(download)
        self.class_names: list[str] | None = None

    @property
    def data_folder(self) -> Path:
        """The directory holding the pickle batches."""
        return self.data_dir / self.folder

    def missing_files(self) -> list[Path]:
        """The required batch files that are not on disk."""
        names = (*self.train_files, *self.test_files)
        return [self.data_folder / n for n in names if not (self.data_folder / n).is_file()]

    def prepare_data(self) -> None:
        """Download and extract the archive if files are missing and ``download``."""
        if self.download and self.missing_files():
            download_and_extract(self.url, self.md5, self.data_dir)

    def _check_files(self) -> None:
        missing = self.missing_files()
        if missing and self.download:
            self.prepare_data()
            missing = self.missing_files()
        if missing:
            hint = (
                "the downloaded archive does not contain them"
                if self.download
                else f"pass download=True to fetch {self.url} (MD5-checked) into {self.data_dir}"
            )
            raise FileNotFoundError(
                f"{type(self).__name__}: missing {', '.join(str(p) for p in missing)}. The "
                f"python-pickle batches must be in {self.data_folder} (torchvision's layout); "
                f"{hint}"
            )

    def _read_split(self, names: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = [], []
        for name in names:
            path = self.data_folder / name
            batch = read_cifar_batch(path)
            if "data" not in batch or self.label_key not in batch:
                raise ValueError(
                    f"{path}: a CIFAR batch needs the keys 'data' and {self.label_key!r}, found "
                    f"{sorted(batch)}"
                )
            data = np.asarray(batch["data"])
            targets = np.asarray(batch[self.label_key], dtype=np.int64)
            if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
                raise ValueError(
                    f"{path}: expected uint8 data of shape (n, 3072), got {data.dtype} {data.shape}"
                )
            if targets.shape != (len(data),):
                raise ValueError(f"{path}: {len(data)} images but labels of shape {targets.shape}")
            if targets.size and (targets.min() < 0 or targets.max() >= self.num_classes):
                raise ValueError(
                    f"{path}: labels must lie in [0, {self.num_classes}), got "
                    f"[{targets.min()}, {targets.max()}]"
                )
            images.append(torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()))
            labels.append(torch.from_numpy(targets))
        return torch.cat(images).to(torch.float32).div_(255.0), torch.cat(labels)

    def load_arrays(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Read the pickle batches (downloading first if allowed); pixels scaled to ``[0, 1]``."""
        self._check_files()
        x_train, y_train = self._read_split(self.train_files)
        x_test, y_test = self._read_split(self.test_files)
        meta = self.data_folder / self.meta_file
        if meta.is_file():
            names = read_cifar_batch(meta).get(self.names_key)
            if names is not None:
                self.class_names = [
                    n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names
                ]
        return x_train, y_train, x_test, y_test


class CIFAR100DataModule(CIFAR10DataModule):
    """CIFAR-100: 50,000 train / 10,000 test colour 32x32 images, 100 fine classes.

    Reads ``<data_dir>/cifar-100-python/{train, test}`` (``meta`` gives ``class_names``), with the
    fine labels; otherwise as :class:`CIFAR10DataModule`, including ``download``.

    Example:
        >>> dm = CIFAR100DataModule(data_dir="data")
        >>> dm.num_classes, dm.data_folder.as_posix()
        (100, 'data/cifar-100-python')
    """

    num_classes = 100
    mean = (0.507, 0.487, 0.441)
    std = (0.267, 0.256, 0.276)
    folder = "cifar-100-python"
    url = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
    md5 = "eb9058c3a382ffc7106e4002c42a8d85"
    train_files = ("train",)
    test_files = ("test",)
    meta_file = "meta"
    label_key = "fine_labels"
    names_key = "fine_label_names"
