"""A small residual network with batch norm for 1xHxW images (digits, (Fashion-)MNIST)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from lightning_prunelimit.models.initialization import init_weights
from lightning_prunelimit.models.resnet import BasicBlock


class SmallResNet(nn.Module):
    """A 3x3 conv stem with batch norm, one stage of basic blocks per entry of ``channels``.

    The first stage keeps the resolution, each further one halves it (its first block has a
    strided 1x1 projection shortcut with batch norm); then global average pooling and a Linear
    classifier. Convolutions are bias-free. Sized for a CPU: the default has 4,968 prunable
    weights for 10 classes.

    Args:
        in_channels: channels of the input images (1 for grey-scale).
        num_classes: number of outputs.
        channels: channels of each stage (the stem has the first stage's).
        blocks_per_stage: basic blocks in each stage.

    Example:
        >>> import torch
        >>> from lightning_prunelimit.models import count_prunable_weights
        >>> net = SmallResNet(in_channels=1, num_classes=10)
        >>> net(torch.zeros(2, 1, 14, 14)).shape, count_prunable_weights(net)
        (torch.Size([2, 10]), 4968)
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        channels: Sequence[int] = (8, 16),
        blocks_per_stage: int = 1,
    ) -> None:
        super().__init__()
        widths = [int(c) for c in channels]
        if not widths or any(c < 1 for c in widths):
            raise ValueError(
                f"channels must be a non-empty list of positive integers, got {channels!r}"
            )
        for name, value in (
            ("in_channels", in_channels),
            ("num_classes", num_classes),
            ("blocks_per_stage", blocks_per_stage),
        ):
            if int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.num_classes = int(num_classes)
        self.stem = nn.Sequential(
            nn.Conv2d(int(in_channels), widths[0], 3, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(),
        )
        blocks: list[nn.Module] = []
        previous = widths[0]
        for index, width in enumerate(widths):
            for position in range(int(blocks_per_stage)):
                stride = 2 if index > 0 and position == 0 else 1
                blocks.append(BasicBlock(previous, width, stride))
                previous = width
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(previous, self.num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(batch, num_classes)`` for images ``(batch, in_channels, H, W)``."""
        return self.fc(torch.flatten(self.pool(self.blocks(self.stem(x))), 1))
