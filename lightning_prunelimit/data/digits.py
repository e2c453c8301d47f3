"""scikit-learn's 8x8 handwritten digits (1797 images) with a seeded stratified split."""

from __future__ import annotations

import torch

from lightning_prunelimit.data.splits import split_indices
from lightning_prunelimit.data.tensor_datamodule import TensorDataModule


class DigitsDataModule(TensorDataModule):
    """The UCI optical digits shipped with scikit-learn: 1797 grey 8x8 images, 10 classes.

    There is no official test split: ``test_fraction`` of each class (stratified, seeded by
    ``seed``) is held out as the test set - 359 of 1797 images with the default 0.2. Pixels (0 to
    16) are scaled to ``[0, 1]`` and standardised with the training split's mean and standard
    deviation. Inputs have shape ``(1, 8, 8)``, or ``(64,)`` with ``flatten``.

    Args:
        test_fraction: share of each class held out as the test set.
        flatten: yield flat ``(64,)`` vectors instead of ``(1, 8, 8)`` images.
        See :class:`~lightning_prunelimit.data.tensor_datamodule.TensorDataModule` for the rest.

    Example:
        >>> dm = DigitsDataModule(batch_size=32, seed=0)
        >>> dm.setup()
        >>> len(dm.train_dataset), len(dm.test_dataset), dm.input_shape
        (1438, 359, (1, 8, 8))
    """

    num_classes = 10

    def __init__(
        self,
        data_dir: str = "data",
        batch_size: int = 64,
        num_workers: int = 0,
        val_fraction: float = 0.0,
        seed: int = 0,
        pin_memory: bool = False,
        augment: bool = False,
        crop_padding: int = 1,
        normalize: bool = True,
        test_fraction: float = 0.2,
        flatten: bool = False,
    ) -> None:
        if flatten and augment:
            raise ValueError("augment=True needs image inputs: set flatten=False or augment=False")
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
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
        self.test_fraction = float(test_fraction)
        self.flatten = bool(flatten)
        self.input_shape = (64,) if self.flatten else (1, 8, 8)

    def load_arrays(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Load the digits with scikit-learn and split them (stratified, seeded)."""
        try:
            from sklearn.datasets import load_digits
        except ImportError as error:
            raise ImportError(
                "DigitsDataModule needs scikit-learn: pip install scikit-learn"
            ) from error
        images, labels = load_digits(return_X_y=True)
        x = torch.as_tensor(images, dtype=torch.float32) / 16.0
        y = torch.as_tensor(labels, dtype=torch.int64)
        x = x if self.flatten else x.view(-1, 1, 8, 8)
        train, test = split_indices(len(y), self.test_fraction, self.seed, labels=y)
        return x[train], y[train], x[test], y[test]
