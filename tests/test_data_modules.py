"""MNIST-1D and digits data modules, the in-memory base class and the seeded splits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lightning_prunelimit.data import (
    DigitsDataModule,
    MNIST1DDataModule,
    TensorDataModule,
    split_indices,
)


@pytest.fixture(scope="module")
def mnist1d_dir(tmp_path_factory) -> str:
    """Generates MNIST-1D once (about 2 s) into a cache directory shared by this module."""
    data_dir = tmp_path_factory.mktemp("mnist1d-data")
    MNIST1DDataModule(data_dir=str(data_dir)).prepare_data()
    return str(data_dir)


def test_mnist1d_shapes_classes_and_cache(mnist1d_dir):
    dm = MNIST1DDataModule(data_dir=mnist1d_dir, batch_size=100)
    assert dm.cache_path.is_file()
    dm.setup()
    x_train, y_train = dm.train_dataset.tensors
    x_test, y_test = dm.test_dataset.tensors
    assert x_train.shape == (4000, 40) and x_test.shape == (1000, 40)
    assert x_train.dtype == torch.float32 and y_train.dtype == torch.int64
    assert sorted(y_train.unique().tolist()) == list(range(10))
    assert (dm.num_classes, dm.input_shape) == (10, (40,))
    assert dm.val_dataset is dm.test_dataset
    # Standardised with the training split's scalar mean and std.
    assert abs(x_train.double().mean().item()) < 1e-6
    assert x_train.double().std().item() == pytest.approx(1.0, abs=1e-6)
    with np.load(dm.cache_path) as raw:
        expected = (raw["x"] - dm.mean[0]) / dm.std[0]
        assert y_test.tolist() == raw["y_test"].tolist()
    np.testing.assert_allclose(x_train.numpy(), expected, atol=1e-5)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (100, 40) and y.shape == (100,)


def test_mnist1d_cache_equals_a_fresh_generation(mnist1d_dir, tmp_path):
    cached = MNIST1DDataModule(data_dir=mnist1d_dir)
    cached.setup()
    # Without a cache the data module generates the data anew (mnist1d.make_dataset with the
    # canonical arguments) and writes nothing; the result equals the cached data exactly.
    uncached = MNIST1DDataModule(data_dir=str(tmp_path), cache=False)
    uncached.setup()
    assert not uncached.cache_path.exists() and not any(tmp_path.iterdir())
    for a, b in zip(cached.train_dataset.tensors, uncached.train_dataset.tensors):
        assert torch.equal(a, b)
    for a, b in zip(cached.test_dataset.tensors, uncached.test_dataset.tensors):
        assert torch.equal(a, b)


def test_mnist1d_validation_split_and_seeded_shuffling(mnist1d_dir):
    dm = MNIST1DDataModule(data_dir=mnist1d_dir, val_fraction=0.1, seed=7, batch_size=50)
    dm.setup()
    with np.load(dm.cache_path) as raw:
        counts = np.bincount(raw["y"], minlength=10)
    val_counts = torch.bincount(dm.val_dataset.tensors[1], minlength=10).tolist()
    assert val_counts == [round(0.1 * c) for c in counts]
    assert len(dm.train_dataset) + len(dm.val_dataset) == 4000
    assert len(dm.test_dataset) == 1000 and dm.val_dataset is not dm.test_dataset

    def first_targets(seed: int) -> list[int]:
        other = MNIST1DDataModule(data_dir=mnist1d_dir, val_fraction=0.1, seed=seed)
        other.setup()
        return next(iter(other.train_dataloader()))[1].tolist()

    assert first_targets(7) == first_targets(7)
    assert first_targets(7) != first_targets(8)
    with pytest.raises(ValueError, match="1-D signals.*set augment=False"):
        MNIST1DDataModule(augment=True)


def test_digits_stratified_split_sizes_and_shapes():
    from sklearn.datasets import load_digits

    images, labels = load_digits(return_X_y=True)
    counts = np.bincount(labels)
    dm = DigitsDataModule(batch_size=32, seed=0)
    dm.setup()
    test_counts = torch.bincount(dm.test_dataset.tensors[1], minlength=10).tolist()
    assert test_counts == [round(0.2 * c) for c in counts]
    assert len(dm.train_dataset) + len(dm.test_dataset) == 1797
    assert dm.train_dataset.tensors[0].shape[1:] == (1, 8, 8)
    assert (dm.input_shape, dm.num_classes) == ((1, 8, 8), 10)
    x_train = dm.train_dataset.tensors[0].double()
    assert abs(x_train.mean().item()) < 1e-6 and x_train.std().item() == pytest.approx(1, abs=1e-6)

    # Train and test are disjoint and together are the whole data set (compare raw pixels).
    def restore(x: torch.Tensor) -> np.ndarray:
        return np.rint((x.numpy().reshape(len(x), 64) * dm.std[0] + dm.mean[0]) * 16)

    parts = [restore(dm.train_dataset.tensors[0]), restore(dm.test_dataset.tensors[0])]
    rows = np.concatenate(parts)
    assert sorted(map(tuple, rows)) == sorted(map(tuple, images))


def test_digits_flatten_seed_and_bad_arguments():
    flat = DigitsDataModule(flatten=True, seed=0, batch_size=16)
    flat.setup()
    assert flat.input_shape == (64,) and flat.train_dataset.tensors[0].shape[1:] == (64,)
    x, _ = next(iter(flat.train_dataloader()))
    assert x.shape == (16, 64)
    same, other = DigitsDataModule(seed=0, flatten=True), DigitsDataModule(seed=1, flatten=True)
    same.setup()
    other.setup()
    assert torch.equal(same.test_dataset.tensors[0], flat.test_dataset.tensors[0])
    assert not torch.equal(other.test_dataset.tensors[1], flat.test_dataset.tensors[1])
    with pytest.raises(ValueError, match="set flatten=False or augment=False"):
        DigitsDataModule(flatten=True, augment=True)
    with pytest.raises(ValueError, match=r"test_fraction must be in \(0, 1\)"):
        DigitsDataModule(test_fraction=0.0)


def test_digits_augmented_training_batches():
    dm = DigitsDataModule(augment=True, seed=0, batch_size=1438)
    dm.setup()
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (1438, 1, 8, 8)
    fill = (0 - dm.mean[0]) / dm.std[0]
    assert dm.train_dataloader().collate_fn.augmentation.padding == 1
    # Shuffled and augmented: same multiset of targets, different pixels, padding present.
    assert sorted(y.tolist()) == sorted(dm.train_dataset.tensors[1].tolist())
    assert (x == fill).float().mean() > (dm.train_dataset.tensors[0] == fill).float().mean()


class _Toy(TensorDataModule):
    num_classes = 3
    input_shape = (2, 2, 2)

    def load_arrays(self):
        x = torch.arange(30 * 8, dtype=torch.float32).view(30, 2, 2, 2)
        y = torch.arange(30) % 3
        return x, y, x[:6] * 2, y[:6]


def test_base_module_normalises_per_channel_with_training_statistics():
    dm = _Toy(batch_size=4)
    dm.setup()
    x = torch.arange(30 * 8, dtype=torch.float64).view(30, 2, 2, 2)
    mean = x.transpose(0, 1).reshape(2, -1).mean(1)
    std = x.transpose(0, 1).reshape(2, -1).std(1)
    assert dm.mean == pytest.approx(tuple(mean.tolist()))
    expected = (x - mean.view(1, 2, 1, 1)) / std.view(1, 2, 1, 1)
    torch.testing.assert_close(dm.train_dataset.tensors[0].double(), expected, atol=1e-6, rtol=0)
    expected_test = (x[:6] * 2 - mean.view(1, 2, 1, 1)) / std.view(1, 2, 1, 1)
    torch.testing.assert_close(
        dm.test_dataset.tensors[0].double(), expected_test, atol=1e-6, rtol=0
    )
    first = dm.train_dataset
    dm.setup("test")  # idempotent
    assert dm.train_dataset is first


def test_base_module_loaders_and_errors():
    dm = _Toy(batch_size=4, val_fraction=0.2, seed=1)
    with pytest.raises(RuntimeError, match="call setup\\(\\) first"):
        dm.train_dataloader()
    dm.setup()
    assert (len(dm.train_dataset), len(dm.val_dataset), len(dm.test_dataset)) == (24, 6, 6)
    assert torch.bincount(dm.val_dataset.tensors[1]).tolist() == [2, 2, 2]
    val = torch.cat([x for x, _ in dm.val_dataloader()])
    assert torch.equal(val, dm.val_dataset.tensors[0])  # fixed order, no augmentation
    epoch_1 = torch.cat([y for _, y in dm.train_dataloader()])
    assert sorted(epoch_1.tolist()) == sorted(dm.train_dataset.tensors[1].tolist())
    loader = dm.train_dataloader()
    first, second = [torch.cat([x for x, _ in loader]) for _ in range(2)]
    assert not torch.equal(first, second)  # reshuffled every epoch
    for kwargs, message in (
        ({"batch_size": 0}, "batch_size must be a positive integer"),
        ({"val_fraction": 1.0}, r"val_fraction must be in \[0, 1\)"),
        ({"num_workers": -1}, "num_workers must be a non-negative integer"),
        ({"crop_padding": -2}, "crop_padding must be a non-negative integer"),
    ):
        with pytest.raises(ValueError, match=message):
            _Toy(**kwargs)


def test_augmentation_needs_image_inputs():
    class Flat(_Toy):
        input_shape = (8,)

        def load_arrays(self):
            x, y, xt, yt = super().load_arrays()
            return x.view(30, 8), y, xt.view(6, 8), yt

    dm = Flat(augment=True)
    dm.setup()
    with pytest.raises(ValueError, match="augment=True needs images"):
        dm.train_dataloader()


def test_wrong_array_shapes_are_reported():
    class Wrong(_Toy):
        input_shape = (3, 2, 2)

    with pytest.raises(ValueError, match=r"train inputs have shape \(30, 2, 2, 2\)"):
        Wrong().setup()


def test_split_indices_is_exact_disjoint_and_seeded():
    labels = torch.tensor([0] * 7 + [1] * 13 + [2] * 20)
    kept, held_out = split_indices(40, 0.25, seed=3, labels=labels)
    assert torch.bincount(labels[held_out]).tolist() == [round(0.25 * 7), round(0.25 * 13), 5]
    assert sorted(kept.tolist() + held_out.tolist()) == list(range(40))
    again = split_indices(40, 0.25, seed=3, labels=labels)
    assert torch.equal(again[1], held_out)
    assert not torch.equal(split_indices(40, 0.25, seed=4, labels=labels)[1], held_out)
    kept, held_out = split_indices(10, 0.3, seed=0)
    assert len(held_out) == 3 and sorted(kept.tolist() + held_out.tolist()) == list(range(10))
    assert split_indices(5, 0.0, seed=0)[1].numel() == 0
    with pytest.raises(ValueError, match=r"fraction must be in \[0, 1\)"):
        split_indices(10, 1.0, seed=0)
    with pytest.raises(ValueError, match=r"labels must have shape \(10,\)"):
        split_indices(10, 0.5, seed=0, labels=torch.zeros(9))
