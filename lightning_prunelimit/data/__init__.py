"""Data modules (MNIST-1D, digits, MNIST, Fashion-MNIST, CIFAR-10/100) and their helpers.

The data modules (which need Lightning) are imported lazily; the IDX reader, the augmentation and
the download helpers are plain Python, numpy and PyTorch.

Example:
    >>> from lightning_prunelimit.data import DigitsDataModule
    >>> dm = DigitsDataModule(batch_size=32, flatten=True)
    >>> dm.input_shape, dm.num_classes
    ((64,), 10)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lightning_prunelimit.data.augment import AugmentingCollate, RandomCropFlip
from lightning_prunelimit.data.download import (
    download_and_extract,
    extract_tar_safely,
    fetch_url,
    file_md5,
)
from lightning_prunelimit.data.idx import read_idx, write_idx
from lightning_prunelimit.data.splits import split_indices

_DATA_MODULES = {
    "TensorDataModule": "lightning_prunelimit.data.tensor_datamodule",
    "MNIST1DDataModule": "lightning_prunelimit.data.mnist1d",
    "DigitsDataModule": "lightning_prunelimit.data.digits",
    "MNISTDataModule": "lightning_prunelimit.data.mnist",
    "FashionMNISTDataModule": "lightning_prunelimit.data.mnist",
    "CIFAR10DataModule": "lightning_prunelimit.data.cifar",
    "CIFAR100DataModule": "lightning_prunelimit.data.cifar",
}

__all__ = [
    "CIFAR10DataModule",
    "CIFAR100DataModule",
    "DigitsDataModule",
    "FashionMNISTDataModule",
    "MNIST1DDataModule",
    "MNISTDataModule",
    "TensorDataModule",
    "AugmentingCollate",
    "RandomCropFlip",
    "download_and_extract",
    "extract_tar_safely",
    "fetch_url",
    "file_md5",
    "read_idx",
    "split_indices",
    "write_idx",
]

if TYPE_CHECKING:  # pragma: no cover
    from lightning_prunelimit.data.cifar import CIFAR10DataModule, CIFAR100DataModule
    from lightning_prunelimit.data.digits import DigitsDataModule
    from lightning_prunelimit.data.mnist import FashionMNISTDataModule, MNISTDataModule
    from lightning_prunelimit.data.mnist1d import MNIST1DDataModule
    from lightning_prunelimit.data.tensor_datamodule import TensorDataModule


def __getattr__(name: str) -> Any:
    if name in _DATA_MODULES:
        import importlib

        return getattr(importlib.import_module(_DATA_MODULES[name]), name)
    raise AttributeError(f"module 'lightning_prunelimit.data' has no attribute {name!r}")
