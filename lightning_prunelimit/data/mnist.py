"""MNIST and Fashion-MNIST from IDX files on disk (torchvision's layout or Debian's package)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from lightning_prunelimit.data.idx import read_idx
from lightning_prunelimit.data.tensor_datamodule import TensorDataModule

IDX_FILE_NAMES: tuple[str, ...] = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


class MNISTDataModule(TensorDataModule):
    """MNIST (60,000 train / 10,000 test grey 28x28 digits) read from IDX files; no download.

    Each of the four files ``{train,t10k}-{images-idx3,labels-idx1}-ubyte`` is looked up, in this
    order, as ``<dir>/<name>`` then ``<dir>/<name>.gz`` for each directory of
    :meth:`search_dirs`: first ``<data_dir>/MNIST/raw`` (torchvision's layout), then
    ``fallback_dirs`` in the given order. A missing file raises ``FileNotFoundError`` listing every
    path tried. Pixels are scaled to ``[0, 1]`` and normalised with mean 0.1307 and std 0.3081;
    inputs have shape ``(1, 28, 28)``.

    Args:
        fallback_dirs: further directories searched after ``<data_dir>/MNIST/raw``; ``None``
            takes the class's ``default_fallback_dirs`` (none for MNIST, Debian's package
            directory for Fashion-MNIST).
        See :class:`~lightning_prunelimit.data.tensor_datamodule.TensorDataModule` for the rest.

    Example:
        >>> dm = MNISTDataModule(data_dir="data", batch_size=128)
        >>> dm.input_shape, dm.num_classes, dm.search_dirs()[0].as_posix()
        ((1, 28, 28), 10, 'data/MNIST/raw')
    """

    num_classes = 10
    input_shape = (1, 28, 28)
    mean = (0.1307,)
    std = (0.3081,)
    folder: str = "MNIST"
    display_name: str = "MNIST"
    how_to_get: str = (
        "place the four IDX files (gzipped or not) there, e.g. copied from an existing "
        "torchvision download (<root>/MNIST/raw)"
    )
    default_fallback_dirs: tuple[str, ...] = ()

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
        fallback_dirs: Sequence[str] | None = None,
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
        if fallback_dirs is None:
            fallback_dirs = self.default_fallback_dirs
        if isinstance(fallback_dirs, (str, bytes)):
            raise ValueError(
                f"fallback_dirs must be a list of directories, got the string {fallback_dirs!r}: "
                "wrap it in a list"
            )
        self.fallback_dirs = tuple(Path(d) for d in fallback_dirs)

    def search_dirs(self) -> list[Path]:
        """Directories searched for the IDX files, in order."""
        return [self.data_dir / self.folder / "raw", *self.fallback_dirs]

    def find_files(self) -> dict[str, Path]:
        """The path of each of the four IDX files (first match in search order).

        Raises ``FileNotFoundError`` naming every path tried for every missing file.
        """
        found: dict[str, Path] = {}
        tried: list[str] = []
        missing: list[str] = []
        for name in IDX_FILE_NAMES:
            candidates = [d / n for d in self.search_dirs() for n in (name, f"{name}.gz")]
            match = next((path for path in candidates if path.is_file()), None)
            if match is None:
                missing.append(name)
                tried += [str(path) for path in candidates]
            else:
                found[name] = match
        if missing:
            raise FileNotFoundError(
                f"{self.display_name}: {len(missing)} of the 4 IDX files not found "
                f"({', '.join(missing)}). Paths tried: {', '.join(tried)}. To get them: "
                f"{self.how_to_get}; directory for this data_dir: "
                f"{self.data_dir / self.folder / 'raw'}"
            )
        return found

    def load_arrays(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Read and check the four IDX files; pixels scaled to ``[0, 1]``."""
        files = self.find_files()
        arrays = {name: read_idx(path) for name, path in files.items()}
        splits = []
        for prefix in ("train", "t10k"):
            images = arrays[f"{prefix}-images-idx3-ubyte"]
            labels = arrays[f"{prefix}-labels-idx1-ubyte"]
            image_file = files[f"{prefix}-images-idx3-ubyte"]
            label_file = files[f"{prefix}-labels-idx1-ubyte"]
            if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
                raise ValueError(
                    f"{image_file}: expected uint8 images of shape (n, 28, 28), got "
                    f"{images.dtype} {images.shape}"
                )
            if labels.ndim != 1 or len(labels) != len(images):
                raise ValueError(
                    f"{label_file}: expected {len(images)} labels to match {image_file}, got "
                    f"shape {labels.shape}"
                )
            if labels.size and int(labels.max()) >= self.num_classes:
                raise ValueError(
                    f"{label_file}: label {int(labels.max())} is out of range for "
                    f"{self.num_classes} classes"
                )
            x = torch.from_numpy(images).to(torch.float32).div_(255.0).unsqueeze(1)
            splits += [x, torch.from_numpy(labels.astype(np.int64))]
        return splits[0], splits[1], splits[2], splits[3]


class FashionMNISTDataModule(MNISTDataModule):
    """Fashion-MNIST (60,000 train / 10,000 test grey 28x28 clothing images) from IDX files.

    Search order for each file ``<name>`` (then ``<name>.gz``): ``<data_dir>/FashionMNIST/raw``
    (torchvision's layout), then ``fallback_dirs``, by default Debian's package
    ``dataset-fashion-mnist`` at ``/usr/share/datasets/fashion-mnist``. Normalised with mean
    0.2860 and std 0.3530.

    Example:
        >>> dm = FashionMNISTDataModule(data_dir="data")
        >>> [d.as_posix() for d in dm.search_dirs()]
        ['data/FashionMNIST/raw', '/usr/share/datasets/fashion-mnist']
    """

    mean = (0.2860,)
    std = (0.3530,)
    folder = "FashionMNIST"
    display_name = "Fashion-MNIST"
    how_to_get = (
        "on Debian/Ubuntu run `apt-get install dataset-fashion-mnist` (installs them to "
        "/usr/share/datasets/fashion-mnist), or place the four IDX files (gzipped or not) in the "
        "FashionMNIST/raw directory"
    )
    default_fallback_dirs = ("/usr/share/datasets/fashion-mnist",)
