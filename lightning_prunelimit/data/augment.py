"""Training-time augmentation as batched tensor operations: random crop with padding and flip."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import default_collate, get_worker_info


class RandomCropFlip:
    """Random crop of a zero-padded (or ``fill``-padded) image and random horizontal flip.

    For each image of a batch ``(N, C, H, W)``: pad every side by ``padding`` pixels with
    ``fill``, cut out an ``H x W`` window at a uniformly random offset in ``[0, 2 * padding]``
    (both axes), then, if ``flip``, mirror it left-right with probability 1/2 - the same as
    torchvision's ``RandomCrop(size, padding)`` followed by ``RandomHorizontalFlip()``. The random
    draws (row offsets, column offsets, flip coins, in this order) come from ``generator`` on the
    CPU, so a seeded generator gives the same augmentation for CPU and GPU batches.

    Args:
        padding: pixels added on each side before cropping (0: no crop).
        flip: whether to flip horizontally with probability 1/2.
        fill: padding value, one number or one per channel. For normalised images pass
            ``(0 - mean) / std`` per channel to pad with black pixels as torchvision does.

    Example:
        >>> import torch
        >>> augment = RandomCropFlip(padding=4)
        >>> images = torch.rand(8, 3, 32, 32)
        >>> out = augment(images, torch.Generator().manual_seed(0))
        >>> out.shape, out.dtype
        (torch.Size([8, 3, 32, 32]), torch.float32)
    """

    def __init__(self, padding: int = 4, flip: bool = True, fill: float | Sequence[float] = 0.0):
        if int(padding) != padding or padding < 0:
            raise ValueError(f"padding must be a non-negative integer, got {padding!r}")
        self.padding = int(padding)
        self.flip = bool(flip)
        if isinstance(fill, (int, float)):
            self.fill: tuple[float, ...] = (float(fill),)
        else:
            self.fill = tuple(float(v) for v in fill)
            if not self.fill:
                raise ValueError("fill must be a number or one number per channel, got []")

    def __repr__(self) -> str:
        return f"RandomCropFlip(padding={self.padding}, flip={self.flip}, fill={self.fill})"

    def __call__(
        self, images: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Augment a batch ``(N, C, H, W)``; returns a new tensor of the same shape and dtype."""
        if images.dim() != 4:
            raise ValueError(
                f"RandomCropFlip expects a batch of images (N, C, H, W), got shape "
                f"{tuple(images.shape)}: augmentation applies to image data only"
            )
        n, c, h, w = images.shape
        if len(self.fill) not in (1, c):
            raise ValueError(
                f"fill has {len(self.fill)} values but the images have {c} channels: "
                "pass one value or one per channel"
            )
        out = images
        if self.padding > 0:
            p = self.padding
            rows = torch.randint(0, 2 * p + 1, (n,), generator=generator)
            cols = torch.randint(0, 2 * p + 1, (n,), generator=generator)
            fill = torch.tensor(self.fill, dtype=images.dtype, device=images.device)
            padded = fill.view(1, -1, 1, 1).expand(n, c, h + 2 * p, w + 2 * p).clone()
            padded[:, :, p : p + h, p : p + w] = images
            device = images.device
            row_index = rows.to(device)[:, None] + torch.arange(h, device=device)  # (N, H)
            col_index = cols.to(device)[:, None] + torch.arange(w, device=device)  # (N, W)
            batch_index = torch.arange(n, device=device)[:, None, None]
            # Advanced indices around a slice put the indexed axes first: (N, H, W, C).
            out = padded[batch_index, :, row_index[:, :, None], col_index[:, None, :]]
            out = out.permute(0, 3, 1, 2).contiguous()
        if self.flip:
            coins = torch.rand(n, generator=generator) < 0.5
            out = torch.where(coins.to(images.device)[:, None, None, None], out.flip(-1), out)
        return out


class AugmentingCollate:
    """A DataLoader ``collate_fn`` that stacks ``(input, target)`` samples and augments the inputs.

    The random draws come from a generator seeded with ``seed`` that lives as long as the
    collate object, so with ``num_workers=0`` every epoch gets new, reproducible augmentations.
    In a worker process the generator is seeded from ``seed`` and the worker's seed, which the
    DataLoader draws from its own (seeded) generator at the start of every epoch: workers differ
    from each other and from epoch to epoch, and a seeded DataLoader stays reproducible.

    Args:
        augmentation: called as ``augmentation(inputs, generator)`` on the stacked inputs.
        seed: seed of the generator.

    Example:
        >>> import torch
        >>> collate = AugmentingCollate(RandomCropFlip(padding=2), seed=0)
        >>> samples = [(torch.rand(1, 8, 8), torch.tensor(3)) for _ in range(4)]
        >>> inputs, targets = collate(samples)
        >>> inputs.shape, targets.tolist()
        (torch.Size([4, 1, 8, 8]), [3, 3, 3, 3])
    """

    def __init__(self, augmentation: RandomCropFlip, seed: int = 0) -> None:
        self.augmentation = augmentation
        self.seed = int(seed)
        self._generator: torch.Generator | None = None
        self._generator_key: int | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_generator"] = None
        state["_generator_key"] = None
        return state

    def generator(self) -> torch.Generator:
        """The generator for the current process (the main process or a DataLoader worker)."""
        info = get_worker_info()
        key = -1 if info is None else int(info.seed)
        if self._generator is None or self._generator_key != key:
            seed = self.seed if info is None else (self.seed * 1_000_003 + key) % (2**63)
            self._generator = torch.Generator().manual_seed(seed)
            self._generator_key = key
        return self._generator

    def __call__(self, samples: list[Any]) -> Any:
        """Collate ``samples`` with ``default_collate``, then augment the inputs."""
        inputs, targets = default_collate(samples)
        return self.augmentation(inputs, self.generator()), targets
