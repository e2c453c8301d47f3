"""A small convolutional network with batch norm for 1xHxW images (digits 8x8, MNIST 28x28)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from lightning_prunelimit.models.initialization import init_weights


class SmallCNN(nn.Module):
    """Conv blocks (3x3 conv, batch norm, ReLU, 2x2 max-pool), global average pool, Linear.

    One block per entry of ``channels``; convolutions are bias-free (the batch norm that follows
    has the shift). Works for any input at least ``2 ** len(channels)`` pixels on a side, e.g.
    8x8 digits with the default two blocks or 28x28 MNIST.

    Args:
        in_channels: channels of the input images (1 for grey-scale).
        num_classes: number of outputs.
        channels: output channels of each conv block.

    Example:
        >>> import torch
        >>> net = SmallCNN(in_channels=1, num_classes=10)
        >>> net(torch.zeros(4, 1, 8, 8)).shape
        torch.Size([4, 10])
    """

    def __init__(
        self, in_channels: int = 1, num_classes: int = 10, channels: Sequence[int] = (16, 32)
    ) -> None:
        super().__init__()
        widths = [int(c) for c in channels]
        if not widths or any(c < 1 for c in widths):
            raise ValueError(
                f"channels must be a non-empty list of positive integers, got {channels!r}"
            )
        for name, value in (("in_channels", in_channels), ("num_classes", num_classes)):
            if int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.in_channels = int(in_channels)
        self.num_classes = int(num_classes)
        layers: list[nn.Module] = []
        previous = self.in_channels
        for width in widths:
            layers += [
                nn.Conv2d(previous, width, kernel_size=3, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(),
                nn.MaxPool2d(kernel_size=2),
            ]
            previous = width
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(previous, self.num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(batch, num_classes)`` for images ``(batch, in_channels, H, W)``."""
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))
