"""Activation layers selectable by name, so configuration files can choose them as strings."""

from __future__ import annotations

from torch import nn

ACTIVATION_NAMES: tuple[str, ...] = ("relu", "leaky_relu", "tanh", "gelu", "sigmoid")


def make_activation(name: str) -> nn.Module:
    """A fresh activation layer for ``name`` (one of :data:`ACTIVATION_NAMES`).

    Args:
        name: ``"relu"``, ``"leaky_relu"``, ``"tanh"``, ``"gelu"`` or ``"sigmoid"``.

    Returns:
        A new ``torch.nn.Module`` computing that activation.

    Example:
        >>> make_activation("relu")
        ReLU()
    """
    if name == "relu":
        return nn.ReLU()
    if name == "leaky_relu":
        return nn.LeakyReLU()
    if name == "tanh":
        return nn.Tanh()
    if name == "gelu":
        return nn.GELU()
    if name == "sigmoid":
        return nn.Sigmoid()
    raise ValueError(f"unknown activation {name!r}: pass one of {', '.join(ACTIVATION_NAMES)}")
