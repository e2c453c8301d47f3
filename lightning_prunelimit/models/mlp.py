"""Fully connected classifiers: the generic ``MLP`` and the paper's FC5 and FC12."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from lightning_prunelimit.models.activation import make_activation
from lightning_prunelimit.models.initialization import init_weights


class MLP(nn.Module):
    """A multi-layer perceptron that flattens its input: Linear, activation, ..., Linear.

    Args:
        in_features: number of input features after flattening (e.g. 3072 for 3x32x32 CIFAR,
            784 for 1x28x28 MNIST, 40 for MNIST-1D).
        hidden: widths of the hidden layers, in order (may be empty: a linear classifier).
        num_classes: number of outputs (logits).
        activation: name of the activation after every hidden layer (see
            :func:`~lightning_prunelimit.models.activation.make_activation`).

    Inputs of shape ``(batch, *)`` are flattened to ``(batch, in_features)``; the output has shape
    ``(batch, num_classes)``. Weights are initialised with :func:`init_weights`.

    Example:
        >>> import torch
        >>> net = MLP(in_features=12, hidden=[8, 6], num_classes=3)
        >>> net(torch.zeros(5, 3, 2, 2)).shape
        torch.Size([5, 3])
    """

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int],
        num_classes: int,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        widths = [int(w) for w in hidden]
        _check_positive("in_features", in_features)
        _check_positive("num_classes", num_classes)
        for width in widths:
            _check_positive("every hidden width", width)
        self.in_features = int(in_features)
        self.num_classes = int(num_classes)
        layers: list[nn.Module] = [nn.Flatten()]
        previous = self.in_features
        for width in widths:
            layers += [nn.Linear(previous, width), make_activation(activation)]
            previous = width
        layers.append(nn.Linear(previous, self.num_classes))
        self.layers = nn.Sequential(*layers)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(batch, num_classes)`` for inputs ``(batch, *)`` of ``in_features`` each."""
        if x.dim() < 2:
            raise ValueError(
                f"MLP expects a batch of shape (batch, *), got shape {tuple(x.shape)}: "
                "add a leading batch dimension (x.unsqueeze(0))"
            )
        features = x[0].numel()
        if features != self.in_features:
            raise ValueError(
                f"MLP expects {self.in_features} features per sample, got input of shape "
                f"{tuple(x.shape)} ({features} per sample): set in_features to match the data"
            )
        return self.layers(x)


def _check_positive(name: str, value: int) -> None:
    if int(value) != value or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def fc5(in_features: int = 3072, num_classes: int = 10, activation: str = "relu") -> MLP:
    """The paper's FC5: ``in_features``-1000-600-300-100-``num_classes``, ReLU.

    3,883,000 prunable weights on CIFAR-10 (``in_features=3072``, 10 classes).

    Example:
        >>> from lightning_prunelimit.models import count_prunable_weights
        >>> count_prunable_weights(fc5(in_features=784))  # Fashion-MNIST
        1595000
    """
    return MLP(in_features, [1000, 600, 300, 100], num_classes, activation)


def fc12(in_features: int = 3072, num_classes: int = 10, activation: str = "relu") -> MLP:
    """The paper's FC12: ``in_features``-1000-900-800-750-700-650-600-500-400-200-100-classes.

    7,263,000 prunable weights on CIFAR-10 (``in_features=3072``, 10 classes).

    Example:
        >>> len([m for m in fc12(in_features=784).modules() if isinstance(m, nn.Linear)])
        12
    """
    hidden = [1000, 900, 800, 750, 700, 650, 600, 500, 400, 200, 100]
    return MLP(in_features, hidden, num_classes, activation)


def small_mlp(
    in_features: int = 40,
    num_classes: int = 10,
    hidden: Sequence[int] = (100, 100),
    activation: str = "relu",
) -> MLP:
    """A small MLP for MNIST-1D (40 inputs) or flattened 8x8 digits (64 inputs).

    Small enough (15,000 weights by default) that its Hessian can be formed densely.

    Example:
        >>> from lightning_prunelimit.models import count_prunable_weights
        >>> count_prunable_weights(small_mlp())
        15000
    """
    return MLP(in_features, hidden, num_classes, activation)
