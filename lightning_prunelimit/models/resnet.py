"""CIFAR-style residual networks (3x3 stem, no max-pool): the paper's ResNet18 and ResNet50."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from lightning_prunelimit.models.initialization import init_weights


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and an identity or 1x1-projection shortcut.

    Example:
        >>> import torch
        >>> block = BasicBlock(16, 32, stride=2)
        >>> block(torch.zeros(1, 16, 8, 8)).shape
        torch.Size([1, 32, 4, 4])
    """

    expansion: int = 1

    def __init__(self, in_channels: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        out_channels = channels * self.expansion
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()
        self.shortcut = _shortcut(in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``."""
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carrying the stride), 1x1 expand by 4, with batch norm and a shortcut.

    Example:
        >>> import torch
        >>> block = Bottleneck(16, 8, stride=1)
        >>> block(torch.zeros(1, 16, 4, 4)).shape
        torch.Size([1, 32, 4, 4])
    """

    expansion: int = 4

    def __init__(self, in_channels: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        out_channels = channels * self.expansion
        self.conv1 = nn.Conv2d(in_channels, channels, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv3 = nn.Conv2d(channels, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()
        self.shortcut = _shortcut(in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Bottleneck residual function plus shortcut, then ReLU."""
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + self.shortcut(x))


def _shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
        nn.BatchNorm2d(out_channels),
    )


class ResNet(nn.Module):
    """A residual network with the CIFAR stem: 3x3 conv (stride 1, 64 channels), BN, ReLU.

    Four stages of 64, 128, 256, 512 base channels (strides 1, 2, 2, 2), global average pooling
    and a Linear classifier (with bias). All convolutions are bias-free.

    Args:
        block: ``"basic"`` (:class:`BasicBlock`) or ``"bottleneck"`` (:class:`Bottleneck`).
        num_blocks: blocks per stage, four integers (``[2, 2, 2, 2]`` is ResNet18).
        num_classes: number of outputs.
        in_channels: channels of the input images.

    Example:
        >>> import torch
        >>> net = ResNet("basic", [1, 1, 1, 1], num_classes=5)
        >>> net(torch.zeros(2, 3, 16, 16)).shape
        torch.Size([2, 5])
    """

    def __init__(
        self,
        block: str,
        num_blocks: Sequence[int],
        num_classes: int = 100,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if block == "basic":
            block_class: type[BasicBlock] | type[Bottleneck] = BasicBlock
        elif block == "bottleneck":
            block_class = Bottleneck
        else:
            raise ValueError(f"block must be 'basic' or 'bottleneck', got {block!r}")
        counts = [int(n) for n in num_blocks]
        if len(counts) != 4 or any(n < 1 for n in counts):
            raise ValueError(
                f"num_blocks must be four positive integers (blocks per stage), got {num_blocks!r}"
            )
        for name, value in (("num_classes", num_classes), ("in_channels", in_channels)):
            if int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.num_classes = int(num_classes)
        self.conv1 = nn.Conv2d(int(in_channels), 64, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        stages: list[nn.Module] = []
        channels_in = 64
        for index, (channels, count) in enumerate(zip((64, 128, 256, 512), counts)):
            blocks: list[nn.Module] = []
            for position in range(count):
                stride = 2 if index > 0 and position == 0 else 1
                blocks.append(block_class(channels_in, channels, stride))
                channels_in = channels * block_class.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels_in, self.num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(batch, num_classes)`` for images ``(batch, in_channels, H, W)``."""
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.fc(torch.flatten(self.pool(out), 1))


def resnet18(num_classes: int = 100, in_channels: int = 3) -> ResNet:
    """CIFAR ResNet18: BasicBlock ``[2, 2, 2, 2]``; 11,210,432 prunable weights for 100 classes.

    Example:
        >>> import torch
        >>> from lightning_prunelimit.models import count_prunable_weights
        >>> with torch.device("meta"):
        ...     net = resnet18(num_classes=100)
        >>> count_prunable_weights(net)
        11210432
    """
    return ResNet("basic", [2, 2, 2, 2], num_classes=num_classes, in_channels=in_channels)


def resnet50(num_classes: int = 100, in_channels: int = 3) -> ResNet:
    """CIFAR ResNet50: Bottleneck ``[3, 4, 6, 3]``; 23,652,032 prunable weights for 100 classes.

    Example:
        >>> import torch
        >>> from lightning_prunelimit.models import count_prunable_weights
        >>> with torch.device("meta"):
        ...     net = resnet50(num_classes=100)
        >>> count_prunable_weights(net)
        23652032
    """
    return ResNet("bottleneck", [3, 4, 6, 3], num_classes=num_classes, in_channels=in_channels)
