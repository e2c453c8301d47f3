"""MNIST-1D: 4000 training and 1000 test signals of length 40, generated offline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from lightning_prunelimit.data.tensor_datamodule import TensorDataModule


def generate_mnist1d() -> dict[str, np.ndarray]:
    """Generate the canonical MNIST-1D arrays with ``mnist1d.data.make_dataset`` (no network).

    Returns ``{"x": (4000, 40), "y": (4000,), "x_test": (1000, 40), "y_test": (1000,)}``. The
    package's ``get_dataset`` is deliberately not used: it tries to download first.

    Example:
        >>> arrays = generate_mnist1d()  # doctest: +SKIP
        >>> arrays["x"].shape, arrays["x_test"].shape  # doctest: +SKIP
        ((4000, 40), (1000, 40))
    """
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as error:
        raise ImportError(
            "MNIST1DDataModule needs the mnist1d package: pip install mnist1d "
            "(or pip install 'lightning-prunelimit[dev]')"
        ) from error
    data = make_dataset(get_dataset_args())
    return {key: np.asarray(data[key]) for key in ("x", "y", "x_test", "y_test")}


class MNIST1DDataModule(TensorDataModule):
    """MNIST-1D (Greydanus 2020): 10 classes, inputs of shape ``(40,)``, 4000 train / 1000 test.

    The data is generated with the package's canonical arguments (its own seed 42, so it is the
    same on every machine) and, when ``cache``, stored in ``<data_dir>/mnist1d/mnist1d.npz`` so
    later runs load it in milliseconds. Inputs are standardised with the mean and standard
    deviation of the training split (one value for all 40 features). ``seed`` controls the
    validation split and the shuffling; there is no augmentation for these 1-D signals.

    Args:
        data_dir: directory of the cache file.
        cache: write and read the ``.npz`` cache.
        See :class:`~lightning_prunelimit.data.tensor_datamodule.TensorDataModule` for the rest.

    Example:
        >>> dm = MNIST1DDataModule(data_dir="data", batch_size=100)  # doctest: +SKIP
        >>> dm.setup()  # doctest: +SKIP
        >>> len(dm.train_dataset), dm.input_shape, dm.num_classes  # doctest: +SKIP
        (4000, (40,), 10)
    """

    num_classes = 10
    input_shape = (40,)

    def __init__(
        self,
        data_dir: str = "data",
        batch_size: int = 100,
        num_workers: int = 0,
        val_fraction: float = 0.0,
        seed: int = 0,
        pin_memory: bool = False,
        augment: bool = False,
        normalize: bool = True,
        cache: bool = True,
    ) -> None:
        if augment:
            raise ValueError(
                "MNIST-1D inputs are 1-D signals; crop/flip augmentation applies to images: "
                "set augment=False"
            )
        super().__init__(
            data_dir=data_dir,
            batch_size=batch_size,
            num_workers=num_workers,
            val_fraction=val_fraction,
            seed=seed,
            pin_memory=pin_memory,
            augment=False,
            normalize=normalize,
        )
        self.cache = bool(cache)

    @property
    def cache_path(self) -> Path:
        """Where the generated arrays are cached: ``<data_dir>/mnist1d/mnist1d.npz``."""
        return self.data_dir / "mnist1d" / "mnist1d.npz"

    def prepare_data(self) -> None:
        """Generate the data and write the cache (once, on one process), if ``cache``."""
        if self.cache and not self.cache_path.is_file():
            self._write_cache(generate_mnist1d())

    def _write_cache(self, arrays: dict[str, np.ndarray]) -> None:
        self.cache_path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.cache_path.with_name(self.cache_path.name + ".part.npz")
        np.savez(partial, **arrays)
        partial.replace(self.cache_path)

    def load_arrays(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The four arrays, from the cache when present, generated otherwise."""
        if self.cache and self.cache_path.is_file():
            with np.load(self.cache_path) as stored:
                arrays = {key: stored[key] for key in ("x", "y", "x_test", "y_test")}
        else:
            arrays = generate_mnist1d()
            if self.cache:
                self._write_cache(arrays)
        return (
            torch.from_numpy(arrays["x"]),
            torch.from_numpy(arrays["y"]),
            torch.from_numpy(arrays["x_test"]),
            torch.from_numpy(arrays["y_test"]),
        )
