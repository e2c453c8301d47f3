"""IDX reader/writer and the MNIST / Fashion-MNIST data modules on files written in tmp_path."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from lightning_prunelimit.data import (
    FashionMNISTDataModule,
    MNISTDataModule,
    read_idx,
    write_idx,
)

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")


def _idx_bytes(code: int, shape: tuple[int, ...], payload: bytes) -> bytes:
    """IDX bytes built by hand (independently of write_idx)."""
    return bytes([0, 0, code, len(shape)]) + struct.pack(f">{len(shape)}I", *shape) + payload


def _write(path: Path, content: bytes, compress: bool) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(content) if compress else content)
    return path


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_uint8_images(tmp_path, compress):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    path = _write(tmp_path / "images", _idx_bytes(0x08, (5, 28, 28), images.tobytes()), compress)
    out = read_idx(path)
    assert out.dtype == np.uint8 and out.shape == (5, 28, 28)
    assert np.array_equal(out, images)
    out[0, 0, 0] = 1  # writable


@pytest.mark.parametrize(
    ("code", "dtype"),
    [(0x09, np.int8), (0x0B, np.int16), (0x0C, np.int32), (0x0D, np.float32), (0x0E, np.float64)],
)
def test_read_idx_big_endian_types(tmp_path, code, dtype):
    values = np.array([[1, -2, 3], [400 if dtype != np.int8 else 4, 5, -6]], dtype=dtype)
    payload = values.astype(np.dtype(dtype).newbyteorder(">")).tobytes()
    path = _write(tmp_path / "values.gz", _idx_bytes(code, (2, 3), payload), compress=True)
    out = read_idx(path)
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    assert np.array_equal(out, values)


@pytest.mark.parametrize("name", ["raw-idx", "zipped-idx.gz"])
def test_write_idx_round_trip(tmp_path, name):
    for dtype in (np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64):
        values = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
        write_idx(tmp_path / name, values)
        assert np.array_equal(read_idx(tmp_path / name), values)
    assert (tmp_path / name).read_bytes()[:2] == (b"\x1f\x8b" if name.endswith(".gz") else b"\0\0")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x01\x00\x08\x01" + struct.pack(">I", 1) + b"\x00", "not an IDX file"),
        (b"", "not an IDX file"),
        (b"\x00\x00\x07\x01" + struct.pack(">I", 1) + b"\x00", "unknown IDX type code 0x07"),
        (b"\x00\x00\x08\x00", "0 dimensions"),
        (b"\x00\x00\x08\x03" + struct.pack(">I", 2), "truncated IDX header"),
        (_idx_bytes(0x08, (2, 3), bytes(5)), r"declares shape \(2, 3\).*holds 5 bytes"),
        (_idx_bytes(0x08, (2, 3), bytes(7)), r"holds 7 bytes of data"),
        (_idx_bytes(0x0C, (2,), bytes(4)), r"8 bytes of int32.*holds 4 bytes"),
    ],
)
def test_read_idx_rejects_malformed_files(tmp_path, content, message):
    path = tmp_path / "bad"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_read_idx_rejects_corrupt_gzip(tmp_path):
    path = tmp_path / "bad.gz"
    path.write_bytes(gzip.compress(_idx_bytes(0x08, (4,), bytes(4)))[:-6])
    with pytest.raises(ValueError, match="corrupt gzip data"):
        read_idx(path)


def test_write_idx_rejects_unsupported_dtypes(tmp_path):
    with pytest.raises(ValueError, match="IDX cannot store dtype"):
        write_idx(tmp_path / "x", np.zeros(3, dtype=np.int64))


# ---------------------------------------------------------------- MNIST-style data modules


def _fake_mnist(directory: Path, n_train: int, n_test: int, seed: int, compress) -> dict:
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": ((np.arange(n_test) * 3) % 10).astype(np.uint8),
    }
    for i, (name, array) in enumerate(arrays.items()):
        gz = compress(i)
        path = directory / (name + (".gz" if gz else ""))
        _write(path, _idx_bytes(0x08, array.shape, array.tobytes()), gz)
    return arrays


def test_mnist_reads_torchvision_layout_gzipped_or_not(tmp_path):
    arrays = _fake_mnist(tmp_path / "MNIST" / "raw", 30, 20, seed=0, compress=lambda i: i % 2)
    dm = MNISTDataModule(data_dir=str(tmp_path), batch_size=8)
    dm.setup()
    x_train, y_train = dm.train_dataset.tensors
    x_test, y_test = dm.test_dataset.tensors
    assert x_train.shape == (30, 1, 28, 28) and x_test.shape == (20, 1, 28, 28)
    assert x_train.dtype == torch.float32 and y_train.dtype == torch.int64
    expected = (arrays["train-images-idx3-ubyte"].astype(np.float64) / 255 - 0.1307) / 0.3081
    np.testing.assert_allclose(x_train[:, 0].numpy(), expected, rtol=0, atol=2e-6)
    assert y_train.tolist() == arrays["train-labels-idx1-ubyte"].tolist()
    assert y_test.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()
    assert dm.val_dataset is dm.test_dataset
    batch_x, batch_y = next(iter(dm.train_dataloader()))
    assert batch_x.shape == (8, 1, 28, 28) and batch_y.shape == (8,)


def test_mnist_search_order_prefers_data_dir_then_raw_over_gz(tmp_path):
    primary = _fake_mnist(tmp_path / "MNIST" / "raw", 10, 10, seed=1, compress=lambda i: False)
    # A gzipped twin with other content next to the raw files, and a fallback with other content.
    _fake_mnist(tmp_path / "MNIST" / "raw", 10, 10, seed=2, compress=lambda i: True)
    _fake_mnist(tmp_path / "fallback", 10, 10, seed=3, compress=lambda i: False)
    dm = MNISTDataModule(
        data_dir=str(tmp_path), fallback_dirs=[str(tmp_path / "fallback")], normalize=False
    )
    files = dm.find_files()
    assert all(path.parent == tmp_path / "MNIST" / "raw" for path in files.values())
    assert all(path.suffix != ".gz" for path in files.values())
    dm.setup()
    pixels = np.rint(dm.train_dataset.tensors[0][:, 0].numpy() * 255).astype(np.uint8)
    assert np.array_equal(pixels, primary["train-images-idx3-ubyte"])


def test_fashion_mnist_falls_back_to_the_system_directory(tmp_path):
    system = tmp_path / "usr-share-datasets-fashion-mnist"
    arrays = _fake_mnist(system, 12, 6, seed=4, compress=lambda i: True)
    dm = FashionMNISTDataModule(data_dir=str(tmp_path / "empty"), fallback_dirs=[str(system)])
    dm.setup()
    x_train = dm.train_dataset.tensors[0]
    expected = (arrays["train-images-idx3-ubyte"].astype(np.float64) / 255 - 0.2860) / 0.3530
    np.testing.assert_allclose(x_train[:, 0].numpy(), expected, rtol=0, atol=2e-6)
    default = FashionMNISTDataModule(data_dir=str(tmp_path))
    assert default.search_dirs() == [tmp_path / "FashionMNIST" / "raw", DEBIAN_FASHION]


def test_missing_files_error_names_every_path_and_the_fix(tmp_path):
    _fake_mnist(tmp_path / "FashionMNIST" / "raw", 4, 4, seed=0, compress=lambda i: False)
    (tmp_path / "FashionMNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    dm = FashionMNISTDataModule(data_dir=str(tmp_path), fallback_dirs=[str(tmp_path / "deb")])
    with pytest.raises(FileNotFoundError) as info:
        dm.setup()
    message = str(info.value)
    assert "1 of the 4 IDX files not found (t10k-labels-idx1-ubyte)" in message
    for path in (
        tmp_path / "FashionMNIST" / "raw" / "t10k-labels-idx1-ubyte",
        tmp_path / "FashionMNIST" / "raw" / "t10k-labels-idx1-ubyte.gz",
        tmp_path / "deb" / "t10k-labels-idx1-ubyte",
        tmp_path / "deb" / "t10k-labels-idx1-ubyte.gz",
    ):
        assert str(path) in message
    assert "apt-get install dataset-fashion-mnist" in message
    with pytest.raises(FileNotFoundError) as info:
        MNISTDataModule(data_dir=str(tmp_path / "nothing")).setup()
    message = str(info.value)
    assert "4 of the 4 IDX files not found" in message
    assert str(tmp_path / "nothing" / "MNIST" / "raw" / "train-images-idx3-ubyte.gz") in message
    assert "place the four IDX files" in message


def test_inconsistent_files_are_rejected(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    _fake_mnist(raw, 10, 10, seed=0, compress=lambda i: False)
    labels = np.zeros(9, dtype=np.uint8)
    _write(raw / "train-labels-idx1-ubyte", _idx_bytes(0x08, (9,), labels.tobytes()), False)
    with pytest.raises(ValueError, match="expected 10 labels"):
        MNISTDataModule(data_dir=str(tmp_path)).setup()
    _write(raw / "train-labels-idx1-ubyte", _idx_bytes(0x08, (10,), bytes([12] * 10)), False)
    with pytest.raises(ValueError, match="label 12 is out of range for 10 classes"):
        MNISTDataModule(data_dir=str(tmp_path)).setup()
    _write(raw / "train-images-idx3-ubyte", _idx_bytes(0x08, (10, 8, 8), bytes(640)), False)
    with pytest.raises(ValueError, match=r"shape \(n, 28, 28\)"):
        MNISTDataModule(data_dir=str(tmp_path)).setup()
    with pytest.raises(ValueError, match="wrap it in a list"):
        MNISTDataModule(fallback_dirs="/usr/share")


@pytest.mark.skipif(
    not (DEBIAN_FASHION / "train-images-idx3-ubyte.gz").is_file(),
    reason="Debian package dataset-fashion-mnist not installed",
)
def test_real_fashion_mnist_from_the_debian_package(tmp_path):
    dm = FashionMNISTDataModule(data_dir=str(tmp_path), normalize=False, batch_size=256)
    dm.setup()
    x_train, y_train = dm.train_dataset.tensors
    x_test, y_test = dm.test_dataset.tensors
    assert x_train.shape == (60000, 1, 28, 28) and x_test.shape == (10000, 1, 28, 28)
    assert torch.bincount(y_train).tolist() == [6000] * 10
    assert torch.bincount(y_test).tolist() == [1000] * 10
    assert x_train.mean().item() == pytest.approx(0.2860, abs=5e-4)  # the published mean
    assert x_train.std().item() == pytest.approx(0.3530, abs=5e-4)
