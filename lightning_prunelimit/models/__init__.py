"""Model zoo of the paper (FC5, FC12, AlexNet, VGG16-BN, ResNet18/50), small models, and the
LightningModule that trains them.

The networks are plain ``torch.nn.Module`` objects; ``ImageClassifier`` (the only part that
needs Lightning) is imported lazily.

Example:
    >>> from lightning_prunelimit.models import count_prunable_weights, fc5
    >>> count_prunable_weights(fc5(in_features=3072, num_classes=10))
    3883000
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lightning_prunelimit.models.activation import make_activation
from lightning_prunelimit.models.alexnet import AlexNet, alexnet
from lightning_prunelimit.models.initialization import init_weights
from lightning_prunelimit.models.lr_schedule import EpochLRSchedule, epoch_lr_scheduler
from lightning_prunelimit.models.mlp import MLP, fc5, fc12, small_mlp
from lightning_prunelimit.models.prunable import count_prunable_weights
from lightning_prunelimit.models.resnet import BasicBlock, Bottleneck, ResNet, resnet18, resnet50
from lightning_prunelimit.models.small_cnn import SmallCNN
from lightning_prunelimit.models.small_resnet import SmallResNet
from lightning_prunelimit.models.vgg import VGG, vgg16_bn

if TYPE_CHECKING:  # pragma: no cover
    from lightning_prunelimit.models.classifier import ImageClassifier

__all__ = [
    "MLP",
    "VGG",
    "AlexNet",
    "BasicBlock",
    "Bottleneck",
    "EpochLRSchedule",
    "ImageClassifier",
    "ResNet",
    "SmallCNN",
    "SmallResNet",
    "alexnet",
    "count_prunable_weights",
    "epoch_lr_scheduler",
    "fc5",
    "fc12",
    "init_weights",
    "make_activation",
    "resnet18",
    "resnet50",
    "small_mlp",
    "vgg16_bn",
]


def __getattr__(name: str) -> Any:
    if name == "ImageClassifier":
        from lightning_prunelimit.models.classifier import ImageClassifier

        return ImageClassifier
    raise AttributeError(f"module 'lightning_prunelimit.models' has no attribute {name!r}")
