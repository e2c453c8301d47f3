"""VGG with batch normalisation for 32x32 images (the paper's VGG16)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from lightning_prunelimit.models.initialization import init_weights

VGG16_LAYOUT: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M",
)  # fmt: skip


class VGG(nn.Module):
    """VGG feature extractor with batch norm after every convolution, then one Linear layer.

    Every integer ``c`` in ``layout`` adds ``Conv2d(·, c, 3, padding=1)`` (with bias),
    ``BatchNorm2d(c)`` and ReLU; every ``"M"`` adds a 2x2 max-pool. The feature map is averaged to
    1x1 (for 32x32 inputs it is already 1x1 after five pools) and fed to a single
    ``Linear(last_channels, num_classes)``.

    Args:
        layout: the layer sequence (integers and ``"M"``), e.g. :data:`VGG16_LAYOUT`.
        num_classes: number of outputs.
        in_channels: channels of the input images.

    Example:
        >>> import torch
        >>> net = VGG([8, "M", 16, "M"], num_classes=3, in_channels=1)
        >>> net(torch.zeros(2, 1, 8, 8)).shape
        torch.Size([2, 3])
    """

    def __init__(
        self, layout: Sequence[int | str], num_classes: int = 10, in_channels: int = 3
    ) -> None:
        super().__init__()
        if int(num_classes) != num_classes or num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
        if int(in_channels) != in_channels or in_channels < 1:
            raise ValueError(f"in_channels must be a positive integer, got {in_channels!r}")
        layers: list[nn.Module] = []
        channels = int(in_channels)
        convolutions = 0
        for item in layout:
            if item == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            elif isinstance(item, int) and not isinstance(item, bool) and item > 0:
                layers += [
                    nn.Conv2d(channels, item, kernel_size=3, padding=1),
                    nn.BatchNorm2d(item),
                    nn.ReLU(),
                ]
                channels = item
                convolutions += 1
            else:
                raise ValueError(
                    f"VGG layout entries must be positive channel counts or 'M', got {item!r}"
                )
        if convolutions == 0:
            raise ValueError("VGG layout has no convolution: add at least one channel count")
        self.num_classes = int(num_classes)
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, self.num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(batch, num_classes)`` for images ``(batch, in_channels, H, W)``."""
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


def vgg16_bn(num_classes: int = 10, in_channels: int = 3) -> VGG:
    """The paper's VGG16 with batch norm: 13 convolutions, AvgPool to 1x1, Linear 512-classes.

    14,715,584 prunable weights for 10 classes. Needs inputs of at least 32x32 (five 2x2 pools).

    Example:
        >>> from lightning_prunelimit.models import count_prunable_weights
        >>> count_prunable_weights(vgg16_bn(num_classes=10))
        14715584
    """
    return VGG(VGG16_LAYOUT, num_classes=num_classes, in_channels=in_channels)
