"""Which parameters L1 regularisation (the paper's LOMP training) acts on, and their L1 norm."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from lightning_prunelimit.curvature import NORMALIZATION_LAYERS
from lightning_prunelimit.pruning.parameters import check_parameter_names
from lightning_prunelimit.pruning.reparametrization import mask_name, plain_parameter_name

__all__ = ["l1_norm", "l1_parameters"]


def l1_parameters(
    model: nn.Module,
    *,
    parameter_names: Sequence[str] = ("weight", "bias"),
    include_norm_layers: bool = False,
) -> list[tuple[str, Tensor, Tensor | None]]:
    """The parameters L1 regularisation acts on, as ``(name, parameter, mask or None)``.

    Every trainable parameter whose name inside its module is one of ``parameter_names``,
    over all modules except normalisation layers (BatchNorm, InstanceNorm, LayerNorm,
    GroupNorm, ...) unless ``include_norm_layers``. A parameter reparametrised by
    ``torch.nn.utils.prune`` counts under its plain name (``"net.0.weight"`` for a pruned
    ``weight_orig``) and comes with its mask, so pruned entries get no L1 term; a parameter
    shared by several modules is listed once.

    Example:
        >>> import torch
        >>> model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
        >>> [name for name, _, _ in l1_parameters(model)]
        ['0.weight', '0.bias']
        >>> [name for name, _, _ in l1_parameters(model, include_norm_layers=True)]
        ['0.weight', '0.bias', '1.weight', '1.bias']
    """
    names = check_parameter_names(parameter_names)
    selected: list[tuple[str, Tensor, Tensor | None]] = []
    seen: set[int] = set()
    for module_name, child in model.named_modules():
        if isinstance(child, NORMALIZATION_LAYERS) and not include_norm_layers:
            continue
        for local, param in child.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            plain = plain_parameter_name(child, local)
            if plain not in names:
                continue
            mask = child.get_buffer(mask_name(plain)) if plain != local else None
            seen.add(id(param))
            selected.append(((f"{module_name}.{plain}" if module_name else plain), param, mask))
    return selected


def l1_norm(
    model: nn.Module,
    *,
    parameter_names: Sequence[str] = ("weight", "bias"),
    include_norm_layers: bool = False,
) -> float:
    """The L1 norm of the effective values (``orig * mask`` when pruned) of :func:`l1_parameters`.

    Example:
        >>> import torch
        >>> layer = torch.nn.Linear(2, 1)
        >>> with torch.no_grad():
        ...     _ = layer.weight.copy_(torch.tensor([[1.0, -2.0]])), layer.bias.fill_(0.5)
        >>> l1_norm(layer), l1_norm(layer, parameter_names=("weight",))
        (3.5, 3.0)
    """
    total = 0.0
    with torch.no_grad():
        selected = l1_parameters(
            model, parameter_names=parameter_names, include_norm_layers=include_norm_layers
        )
        for _, param, mask in selected:
            value = param if mask is None else param * mask
            total += float(value.abs().sum())
    return total
