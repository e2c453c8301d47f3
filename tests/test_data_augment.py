"""RandomCropFlip and AugmentingCollate: exact crops, padding values, flips, seeding, workers."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from lightning_prunelimit.data import AugmentingCollate, RandomCropFlip


def _reference(images, padding, flip, fill, seed):
    """Loop implementation drawing the same random numbers in the same order."""
    generator = torch.Generator().manual_seed(seed)
    n, c, h, w = images.shape
    if padding:
        rows = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
        cols = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    out = []
    for i in range(n):
        image = images[i]
        if padding:
            padded = torch.stack(
                [F.pad(image[k], [padding] * 4, value=fill[k % len(fill)]) for k in range(c)]
            )
            r, q = int(rows[i]), int(cols[i])
            image = padded[:, r : r + h, q : q + w]
        out.append(image)
    out = torch.stack(out)
    if flip:
        coins = torch.rand(n, generator=generator) < 0.5
        out = torch.stack([o.flip(-1) if coin else o for o, coin in zip(out, coins)])
    return out


@pytest.mark.parametrize(
    ("padding", "flip", "fill"),
    [(4, True, (0.0,)), (2, False, (-1.0, 0.5, 2.0)), (0, True, (0.0,)), (3, True, (7.0,))],
)
def test_matches_a_per_image_reference(padding, flip, fill):
    torch.manual_seed(0)
    images = torch.randn(16, 3, 10, 12, dtype=torch.float64)
    augment = RandomCropFlip(padding=padding, flip=flip, fill=fill)
    out = augment(images, torch.Generator().manual_seed(5))
    expected = _reference(images, padding, flip, fill, seed=5)
    assert out.shape == images.shape and out.dtype == images.dtype
    assert torch.equal(out, expected)


def test_padding_is_zero_and_the_rest_is_a_shifted_copy():
    images = torch.ones(64, 1, 8, 8)
    out = RandomCropFlip(padding=4, flip=False)(images, torch.Generator().manual_seed(0))
    generator = torch.Generator().manual_seed(0)
    rows = torch.randint(0, 9, (64,), generator=generator)
    cols = torch.randint(0, 9, (64,), generator=generator)
    assert set(out.unique().tolist()) == {0.0, 1.0}
    for i in range(64):
        dr, dc = abs(int(rows[i]) - 4), abs(int(cols[i]) - 4)
        # The image keeps an (8 - |dr|) x (8 - |dc|) block of ones; the rest is padding.
        assert int(out[i].sum()) == (8 - dr) * (8 - dc)
    assert (rows != 4).any() and (cols != 4).any()
    # A shifted ramp: every kept pixel equals the source pixel at the shifted position.
    ramp = torch.arange(64.0).view(1, 1, 8, 8) + 1
    shifted = RandomCropFlip(padding=2, flip=False)(ramp, torch.Generator().manual_seed(3))
    generator = torch.Generator().manual_seed(3)
    r, c = (int(torch.randint(0, 5, (1,), generator=generator)) - 2 for _ in range(2))
    for i in range(8):
        for j in range(8):
            src_i, src_j = i + r, j + c
            inside = 0 <= src_i < 8 and 0 <= src_j < 8
            assert shifted[0, 0, i, j] == (ramp[0, 0, src_i, src_j] if inside else 0.0)


def test_per_channel_fill_values():
    images = torch.full((32, 3, 6, 6), 9.0)
    fill = (-1.0, -2.0, -3.0)
    out = RandomCropFlip(padding=3, flip=False, fill=fill)(images, torch.Generator().manual_seed(1))
    for k, value in enumerate(fill):
        assert set(out[:, k].unique().tolist()) <= {9.0, value}
        assert (out[:, k] == value).any()


def test_flip_only_mirrors_exactly_half_of_the_time():
    torch.manual_seed(0)
    images = torch.randn(200, 2, 5, 7)
    out = RandomCropFlip(padding=0, flip=True)(images, torch.Generator().manual_seed(0))
    flipped = torch.tensor([torch.equal(o, x.flip(-1)) for o, x in zip(out, images)])
    unchanged = torch.tensor([torch.equal(o, x) for o, x in zip(out, images)])
    assert torch.all(flipped ^ unchanged)
    coins = torch.rand(200, generator=torch.Generator().manual_seed(0)) < 0.5
    assert torch.equal(flipped, coins)
    assert 70 < int(flipped.sum()) < 130


def test_identity_without_padding_or_flip():
    images = torch.randn(4, 3, 8, 8)
    assert torch.equal(RandomCropFlip(padding=0, flip=False)(images), images)


def test_seeded_generators_reproduce_and_differ():
    images = torch.randn(32, 3, 16, 16)
    augment = RandomCropFlip(padding=4)
    a = augment(images, torch.Generator().manual_seed(11))
    b = augment(images, torch.Generator().manual_seed(11))
    c = augment(images, torch.Generator().manual_seed(12))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_batches_get_the_same_augmentation_as_cpu_batches():
    images = torch.randn(16, 3, 8, 8)
    augment = RandomCropFlip(padding=2, fill=(0.1, 0.2, 0.3))
    cpu = augment(images, torch.Generator().manual_seed(0))
    gpu = augment(images.cuda(), torch.Generator().manual_seed(0))
    assert gpu.device.type == "cuda"
    assert torch.equal(gpu.cpu(), cpu)


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="padding must be a non-negative integer"):
        RandomCropFlip(padding=-1)
    with pytest.raises(ValueError, match=r"batch of images \(N, C, H, W\)"):
        RandomCropFlip()(torch.zeros(3, 8, 8))
    with pytest.raises(ValueError, match="fill has 2 values but the images have 3 channels"):
        RandomCropFlip(fill=(0.0, 1.0))(torch.zeros(1, 3, 8, 8))


def _loader(num_workers: int, seed: int = 0) -> DataLoader:
    torch.manual_seed(0)
    dataset = TensorDataset(torch.randn(24, 1, 6, 6), torch.arange(24))
    return DataLoader(
        dataset,
        batch_size=8,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
        num_workers=num_workers,
        collate_fn=AugmentingCollate(RandomCropFlip(padding=2), seed=seed),
        persistent_workers=num_workers > 0,
    )


def _epochs(loader: DataLoader, count: int = 2) -> list[list[torch.Tensor]]:
    return [[x for x, _ in loader] for _ in range(count)]


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("num_workers", [0, 2])
def test_collate_is_reproducible_and_changes_every_epoch(num_workers):
    first = _epochs(_loader(num_workers))
    again = _epochs(_loader(num_workers))
    other_seed = _epochs(_loader(num_workers, seed=1))
    assert _same(first[0], again[0]) and _same(first[1], again[1])
    assert not _same(first[0], first[1])
    assert not _same(first[0], other_seed[0])


def test_collate_keeps_targets_and_shapes():
    samples = [(torch.full((1, 4, 4), float(i)), torch.tensor(i)) for i in range(5)]
    inputs, targets = AugmentingCollate(RandomCropFlip(padding=1), seed=0)(samples)
    assert inputs.shape == (5, 1, 4, 4) and targets.tolist() == [0, 1, 2, 3, 4]
    for i in range(5):  # every pixel is the sample's own value or padding
        assert set(inputs[i].unique().tolist()) <= {0.0, float(i)}
