"""CIFAR-10/100 readers on fake pickles shaped like the real ones; download and extraction."""

from __future__ import annotations

import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

import lightning_prunelimit.data.download as download
from lightning_prunelimit.data import (
    CIFAR10DataModule,
    CIFAR100DataModule,
    download_and_extract,
    extract_tar_safely,
    file_md5,
)
from lightning_prunelimit.data.cifar import read_cifar_batch

CIFAR10_MEAN, CIFAR10_STD = (0.491, 0.482, 0.447), (0.247, 0.243, 0.262)
CIFAR100_MEAN, CIFAR100_STD = (0.507, 0.487, 0.441), (0.267, 0.256, 0.276)


def _pickle(path: Path, content: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        pickle.dump(content, handle, protocol=2)


def _fake_cifar10(root: Path, per_batch: int = 4, n_test: int = 6, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    data, labels = [], []
    for i in range(1, 6):
        batch_data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        batch_labels = [int(v) for v in rng.integers(0, 10, per_batch)]
        _pickle(
            folder / f"data_batch_{i}",
            {b"batch_label": b"training batch", b"data": batch_data, b"labels": batch_labels},
        )
        data.append(batch_data)
        labels += batch_labels
    test_data = rng.integers(0, 256, (n_test, 3072), dtype=np.uint8)
    test_labels = [int(v) for v in rng.integers(0, 10, n_test)]
    _pickle(folder / "test_batch", {b"data": test_data, b"labels": test_labels})
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer"] + [b"x%d" % i for i in range(5)]
    _pickle(folder / "batches.meta", {b"label_names": names, b"num_vis": 3072})
    return {"train": (np.concatenate(data), labels), "test": (test_data, test_labels)}


def _fake_cifar100(root: Path, n_train: int = 20, n_test: int = 10, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    out = {}
    for name, n in (("train", n_train), ("test", n_test)):
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        fine = [int(v) for v in rng.integers(0, 100, n)]
        coarse = [v // 5 for v in fine]
        _pickle(folder / name, {b"data": data, b"fine_labels": fine, b"coarse_labels": coarse})
        out[name] = (data, fine)
    _pickle(folder / "meta", {b"fine_label_names": [b"c%d" % i for i in range(100)]})
    return out


def _normalised(data: np.ndarray, mean, std) -> np.ndarray:
    images = data.reshape(-1, 3, 32, 32).astype(np.float64) / 255
    return (images - np.array(mean)[None, :, None, None]) / np.array(std)[None, :, None, None]


def test_cifar10_reads_the_pickle_batches_in_order(tmp_path):
    fake = _fake_cifar10(tmp_path)
    dm = CIFAR10DataModule(data_dir=str(tmp_path), batch_size=5, augment=False)
    dm.setup()
    x_train, y_train = dm.train_dataset.tensors
    x_test, y_test = dm.test_dataset.tensors
    assert x_train.shape == (20, 3, 32, 32) and x_test.shape == (6, 3, 32, 32)
    assert x_train.dtype == torch.float32 and y_train.dtype == torch.int64
    np.testing.assert_allclose(
        x_train.numpy(), _normalised(fake["train"][0], CIFAR10_MEAN, CIFAR10_STD), atol=3e-6
    )
    np.testing.assert_allclose(
        x_test.numpy(), _normalised(fake["test"][0], CIFAR10_MEAN, CIFAR10_STD), atol=3e-6
    )
    assert y_train.tolist() == fake["train"][1] and y_test.tolist() == fake["test"][1]
    # Row-major layout: the first 1024 bytes are the red plane of image 0.
    red = fake["train"][0][0, :1024].reshape(32, 32) / 255
    np.testing.assert_allclose(x_train[0, 0].numpy() * 0.247 + 0.491, red, atol=2e-6)
    assert dm.class_names[:3] == ["airplane", "automobile", "bird"]
    assert (dm.num_classes, dm.input_shape) == (10, (3, 32, 32))


def test_cifar100_uses_the_fine_labels(tmp_path):
    fake = _fake_cifar100(tmp_path)
    dm = CIFAR100DataModule(data_dir=str(tmp_path), augment=False, val_fraction=0.0)
    dm.setup()
    x_train, y_train = dm.train_dataset.tensors
    assert x_train.shape == (20, 3, 32, 32) and dm.num_classes == 100
    assert y_train.tolist() == fake["train"][1]
    assert dm.test_dataset.tensors[1].tolist() == fake["test"][1]
    np.testing.assert_allclose(
        x_train.numpy(), _normalised(fake["train"][0], CIFAR100_MEAN, CIFAR100_STD), atol=3e-6
    )
    assert dm.class_names[99] == "c99"


def test_cifar_training_batches_are_augmented_with_black_padding(tmp_path):
    _fake_cifar10(tmp_path)
    dm = CIFAR10DataModule(data_dir=str(tmp_path), batch_size=20, seed=3)
    assert dm.augment  # on by default, as in the paper
    dm.setup()
    loader = dm.train_dataloader()
    augmentation = loader.collate_fn.augmentation
    assert augmentation.padding == 4 and augmentation.flip
    expected_fill = tuple((0 - m) / s for m, s in zip(CIFAR10_MEAN, CIFAR10_STD))
    assert augmentation.fill == pytest.approx(expected_fill)
    x, y = next(iter(loader))
    assert x.shape == (20, 3, 32, 32)
    assert not any(torch.equal(x[0], image) for image in dm.train_dataset.tensors[0])
    # Evaluation batches are the stored tensors, unchanged and in order.
    x_val, _ = next(iter(dm.val_dataloader()))
    assert torch.equal(x_val, dm.test_dataset.tensors[0][:20])


def test_missing_cifar_files_explain_where_and_how(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        CIFAR10DataModule(data_dir=str(tmp_path)).setup()
    message = str(info.value)
    assert str(tmp_path / "cifar-10-batches-py" / "data_batch_1") in message
    assert str(tmp_path / "cifar-10-batches-py" / "test_batch") in message
    assert "download=True" in message and "cifar-10-python.tar.gz" in message
    with pytest.raises(FileNotFoundError, match=r"cifar-100-python.*download=True"):
        CIFAR100DataModule(data_dir=str(tmp_path)).setup()


def test_malformed_cifar_batches_are_rejected(tmp_path):
    _fake_cifar10(tmp_path)
    folder = tmp_path / "cifar-10-batches-py"
    _pickle(folder / "data_batch_3", {b"data": np.zeros((2, 1000), np.uint8), b"labels": [0, 1]})
    with pytest.raises(ValueError, match=r"expected uint8 data of shape \(n, 3072\)"):
        CIFAR10DataModule(data_dir=str(tmp_path)).setup()
    _pickle(folder / "data_batch_3", {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]})
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 10\)"):
        CIFAR10DataModule(data_dir=str(tmp_path)).setup()
    _pickle(folder / "data_batch_3", {b"data": np.zeros((2, 3072), np.uint8)})
    with pytest.raises(ValueError, match="needs the keys 'data' and 'labels'"):
        CIFAR10DataModule(data_dir=str(tmp_path)).setup()


def test_batch_reader_refuses_arbitrary_objects(tmp_path):
    path = tmp_path / "evil"
    path.write_bytes(pickle.dumps({b"data": os.getcwd}, protocol=2))
    with pytest.raises(pickle.UnpicklingError, match="refusing to load posix.getcwd"):
        read_cifar_batch(path)
    path.write_bytes(b"\x80\x02cos\nsystem\nq\x00X\x04\x00\x00\x00trueq\x01\x85q\x02Rq\x03.")
    with pytest.raises(pickle.UnpicklingError, match="refusing to load os.system"):
        read_cifar_batch(path)


def test_batch_reader_accepts_numpy_1_pickles(tmp_path):
    # Files written with numpy < 2 (like the official batches) name numpy.core.multiarray.
    blob = pickle.dumps({b"data": np.arange(6, dtype=np.uint8), b"labels": [1]}, protocol=2)
    blob = blob.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
    assert b"numpy.core.multiarray" in blob
    path = tmp_path / "old"
    path.write_bytes(blob)
    loaded = read_cifar_batch(path)
    assert loaded["data"].tolist() == [0, 1, 2, 3, 4, 5] and loaded["labels"] == [1]


# ---------------------------------------------------------------- download and extraction


def _tarball(source_root: Path, folder: str, archive: Path) -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source_root / folder, arcname=folder)
    return archive


def test_official_urls_and_checksums():
    assert CIFAR10DataModule.url == "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    assert CIFAR10DataModule.md5 == "c58f30108f718f92721af3b95e74349a"
    assert CIFAR100DataModule.url == "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
    assert CIFAR100DataModule.md5 == "eb9058c3a382ffc7106e4002c42a8d85"


def test_download_fetches_verifies_and_extracts(tmp_path, monkeypatch):
    source = tmp_path / "source"
    fake = _fake_cifar10(source)
    archive = _tarball(source, "cifar-10-batches-py", tmp_path / "served.tar.gz")
    fetched: list[str] = []

    def fake_fetch(url: str, destination) -> None:
        fetched.append(url)
        Path(destination).write_bytes(archive.read_bytes())

    monkeypatch.setattr(download, "fetch_url", fake_fetch)
    monkeypatch.setattr(CIFAR10DataModule, "md5", file_md5(archive))
    data_dir = tmp_path / "data"
    dm = CIFAR10DataModule(data_dir=str(data_dir), download=True, augment=False)
    dm.prepare_data()
    assert fetched == [CIFAR10DataModule.url]
    assert (data_dir / "cifar-10-python.tar.gz").is_file()
    assert not list(data_dir.glob("*.part"))
    dm.setup()
    assert dm.train_dataset.tensors[1].tolist() == fake["train"][1]
    # Files present: no second fetch.
    CIFAR10DataModule(data_dir=str(data_dir), download=True).prepare_data()
    assert len(fetched) == 1
    # Extracted files gone but the verified archive kept: extract again without fetching.
    for path in (data_dir / "cifar-10-batches-py").iterdir():
        path.unlink()
    again = CIFAR10DataModule(data_dir=str(data_dir), download=True, augment=False)
    again.setup()  # setup downloads when prepare_data was not called
    assert len(fetched) == 1
    assert len(again.train_dataset) == 20


def test_checksum_mismatch_removes_the_download(tmp_path, monkeypatch):
    def fake_fetch(url: str, destination) -> None:
        Path(destination).write_bytes(b"not the archive")

    monkeypatch.setattr(download, "fetch_url", fake_fetch)
    data_dir = tmp_path / "data"
    dm = CIFAR100DataModule(data_dir=str(data_dir), download=True)
    with pytest.raises(ValueError, match="MD5 mismatch.*expected eb9058c3a382ffc7106e4002c42a8d85"):
        dm.prepare_data()
    assert list(data_dir.iterdir()) == []


def test_download_and_extract_with_a_file_url(tmp_path):
    source = tmp_path / "source"
    (source / "set").mkdir(parents=True)
    (source / "set" / "a.txt").write_text("alpha")
    archive = _tarball(source, "set", tmp_path / "set.tar.gz")
    out = tmp_path / "out"
    result = download_and_extract(archive.as_uri(), file_md5(archive).upper(), out)
    assert result == out / "set.tar.gz"
    assert (out / "set" / "a.txt").read_text() == "alpha"


def _tar_with(path: Path, member: tarfile.TarInfo, content: bytes = b"") -> Path:
    with tarfile.open(path, "w") as tar:
        tar.addfile(member, io.BytesIO(content) if member.isfile() else None)
    return path


@pytest.mark.parametrize(
    ("member", "message"),
    [
        (tarfile.TarInfo("../escape.txt"), "would be written outside"),
        (tarfile.TarInfo("/abs/escape.txt"), "would be written outside"),
        (tarfile.TarInfo("folder/../../escape.txt"), "would be written outside"),
    ],
)
def test_extraction_refuses_paths_outside_the_destination(tmp_path, member, message):
    member.size = 3
    archive = _tar_with(tmp_path / "bad.tar", member, b"bad")
    destination = tmp_path / "inner" / "out"
    with pytest.raises(ValueError, match=message):
        extract_tar_safely(archive, destination)
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "inner").exists()


def test_extraction_refuses_links(tmp_path):
    link = tarfile.TarInfo("folder/link")
    link.type = tarfile.SYMTYPE
    link.linkname = "/etc/passwd"
    archive = _tar_with(tmp_path / "link.tar", link)
    with pytest.raises(ValueError, match="not a regular file or directory"):
        extract_tar_safely(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()
