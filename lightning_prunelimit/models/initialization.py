"""The paper's weight initialisation, shared by every network of the model zoo."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd


@torch.no_grad()
def init_weights(module: nn.Module) -> nn.Module:
    """Initialise ``module`` and all its submodules in place, as the paper does.

    * Convolutions and linear layers: Kaiming-normal weights (``mode="fan_in"``, gain of ReLU,
      i.e. standard deviation ``sqrt(2 / fan_in)``), zero biases.
    * Batch normalisation: ``weight`` (gamma) 1, ``bias`` (beta) 0; running statistics reset.
    * Group and layer normalisation with affine parameters: weight 1, bias 0.

    Draws from the global torch generator, so ``torch.manual_seed`` makes it reproducible.

    Args:
        module: the network (or a single layer) to initialise.

    Returns:
        The same module, for chaining.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> _ = torch.manual_seed(0)
        >>> layer = init_weights(nn.Linear(400, 10))
        >>> bool(layer.bias.abs().sum() == 0)
        True
        >>> abs(layer.weight.std().item() - (2 / 400) ** 0.5) < 0.01
        True
    """
    if not isinstance(module, nn.Module):
        raise TypeError(
            f"init_weights expects a torch.nn.Module, got {type(module).__name__}: "
            "pass the network itself"
        )
    for layer in module.modules():
        if isinstance(layer, (nn.Linear, _ConvNd)):
            nn.init.kaiming_normal_(layer.weight, mode="fan_in", nonlinearity="relu")
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, _BatchNorm):
            layer.reset_running_stats()
            if layer.affine:
                nn.init.ones_(layer.weight)
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, (nn.GroupNorm, nn.LayerNorm)):
            if getattr(layer, "weight", None) is not None:
                nn.init.ones_(layer.weight)
            if getattr(layer, "bias", None) is not None:
                nn.init.zeros_(layer.bias)
    return module
