"""The paper's AlexNet for 32x32 inputs, upsampled inside the forward pass to 224x224."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lightning_prunelimit.models.initialization import init_weights


class AlexNet(nn.Module):
    """AlexNet as in the paper: five convolutions, three max-pools, three linear layers.

    Layers: conv 96@11x11 stride 4 padding 1, max-pool 3/2, conv 256@5x5 padding 2, max-pool 3/2,
    conv 384@3x3, conv 384@3x3, conv 256@3x3 (padding 1), max-pool 3/2, then Linear 6400-4096,
    4096-4096, 4096-``num_classes``; ReLU after every layer but the last; no dropout. The input is
    first enlarged by nearest-neighbour upsampling with factor ``upsample`` (7 turns 32x32 CIFAR
    images into the 224x224 the layers expect); the feature map before the classifier must be
    256x5x5, which holds for 224x224 after upsampling.

    46,778,400 prunable weights for 10 classes.

    Args:
        num_classes: number of outputs.
        upsample: integer nearest-neighbour upsampling factor applied in ``forward`` (1: none).
        in_channels: channels of the input images.

    Example:
        >>> from lightning_prunelimit.models import count_prunable_weights
        >>> with torch.device("meta"):
        ...     net = AlexNet(num_classes=10)
        >>> count_prunable_weights(net)
        46778400
    """

    def __init__(self, num_classes: int = 10, upsample: int = 7, in_channels: int = 3) -> None:
        super().__init__()
        for name, value in (
            ("num_classes", num_classes),
            ("upsample", upsample),
            ("in_channels", in_channels),
        ):
            if int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.num_classes = int(num_classes)
        self.upsample = int(upsample)
        self.in_channels = int(in_channels)
        self.features = nn.Sequential(
            nn.Conv2d(self.in_channels, 96, kernel_size=11, stride=4, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(96, 256, kernel_size=5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(256, 384, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(384, 384, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(256 * 5 * 5, 4096),
            nn.ReLU(),
            nn.Linear(4096, 4096),
            nn.ReLU(),
            nn.Linear(4096, self.num_classes),
        )
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(batch, num_classes)`` for images ``(batch, in_channels, H, W)``."""
        if self.upsample > 1:
            x = F.interpolate(x, scale_factor=self.upsample, mode="nearest")
        features = self.features(x)
        if features.shape[1:] != (256, 5, 5):
            raise ValueError(
                f"AlexNet's classifier needs a (256, 5, 5) feature map (224x224 images after "
                f"upsampling); the upsampled input of size {tuple(x.shape[-2:])} gives a "
                f"{tuple(features.shape[1:])} feature map: use 32x32 inputs with upsample=7 or "
                "224x224 inputs with upsample=1"
            )
        return self.classifier(features)


def alexnet(num_classes: int = 10, upsample: int = 7, in_channels: int = 3) -> AlexNet:
    """The paper's AlexNet (see :class:`AlexNet`); ``upsample=7`` for 32x32 CIFAR images.

    Example:
        >>> import torch
        >>> with torch.device("meta"):
        ...     net = alexnet(num_classes=100)
        >>> net.classifier[-1].out_features
        100
    """
    return AlexNet(num_classes=num_classes, upsample=upsample, in_channels=in_channels)
