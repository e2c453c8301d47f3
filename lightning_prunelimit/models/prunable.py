"""Counting the weights that global magnitude pruning acts on (Linear and Conv weights)."""

from __future__ import annotations

from torch import nn

from lightning_prunelimit.pruning.parameters import PRUNABLE_MODULE_TYPES, prunable_parameters


def count_prunable_weights(model: nn.Module) -> int:
    """Number of prunable weights of ``model``: the weights of its Linear and Conv layers.

    This is the paper's pruning dimension N: biases and normalisation parameters are never
    pruned. The selection is the pruning module's default
    (:func:`~lightning_prunelimit.pruning.parameters.prunable_parameters`), so this count is the
    number of entries global magnitude pruning ranks. Weights already reparametrised by
    ``torch.nn.utils.prune`` count in full (pruned entries included); a model without Linear or
    Conv layers has 0.

    Args:
        model: any network.

    Returns:
        The total number of Linear and Conv weight entries.

    Example:
        >>> from torch import nn
        >>> count_prunable_weights(nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)))
        18
    """
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"count_prunable_weights expects a torch.nn.Module, got {type(model).__name__}: "
            "pass the network itself"
        )
    if not any(isinstance(m, PRUNABLE_MODULE_TYPES) for m in model.modules()):
        return 0
    return sum(getattr(module, name).numel() for _, module, name in prunable_parameters(model))
