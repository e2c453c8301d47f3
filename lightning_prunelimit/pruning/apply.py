"""Apply keep-masks through ``torch.nn.utils.prune``, read them back, and make them permanent.

Masks are installed with ``torch.nn.utils.prune.custom_from_mask``, so each pruned module holds
a ``<name>_orig`` parameter, a ``<name>_mask`` buffer and a forward pre-hook, exactly what
torch and Lightning's ``ModelPruning`` produce and recognise.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils import prune

from lightning_prunelimit.pruning.parameters import parameter_key
from lightning_prunelimit.pruning.reparametrization import (
    is_pruned,
    mask_name,
    orig_name,
    plain_parameter_name,
    pruned_names,
)

__all__ = [
    "apply_masks",
    "make_pruning_permanent",
    "masks_from_model",
    "prune_globally",
    "remove_masks",
]


def _available_keys(model: nn.Module) -> list[str]:
    keys = []
    for qualified, module in model.named_modules():
        for name, param in module._parameters.items():
            if param is None:
                continue
            keys.append(parameter_key(qualified, plain_parameter_name(module, name)))
    return keys


def _resolve(model: nn.Module, key: str) -> tuple[nn.Module, str, Tensor]:
    """Module, parameter name and current parameter tensor for a mask key."""
    module_name, _, name = key.rpartition(".")
    module: nn.Module | None
    try:
        module = model.get_submodule(module_name) if module_name else model
    except AttributeError:
        module = None
    param = None
    if module is not None:
        param = module._parameters.get(orig_name(name))
        if param is None or not is_pruned(module, name):
            param = module._parameters.get(name)
    if module is None or param is None:
        valid = _available_keys(model)
        raise KeyError(
            f"mask key {key!r} names no parameter of the model: keys are '<module>.<param>', "
            f"e.g. {valid[:5]}{' ...' if len(valid) > 5 else ''}"
        )
    return module, name, param


def _as_keep_mask(key: str, mask: Tensor, param: Tensor) -> Tensor:
    if not isinstance(mask, Tensor):
        raise TypeError(f"mask for {key!r} must be a tensor, got {type(mask).__name__}")
    if mask.shape != param.shape:
        raise ValueError(
            f"mask for {key!r} has shape {tuple(mask.shape)} but the parameter has shape "
            f"{tuple(param.shape)}: pass a mask of the parameter's shape"
        )
    if mask.dtype != torch.bool:
        if bool(((mask != 0) & (mask != 1)).any()):
            raise ValueError(
                f"mask for {key!r} must be boolean or contain only 0 and 1: pass a keep-mask "
                "(True/1 = keep)"
            )
        mask = mask != 0
    return mask.to(param.device)


def apply_masks(model: nn.Module, masks: Mapping[str, Tensor]) -> None:
    """Install keep-masks on the model with ``torch.nn.utils.prune.custom_from_mask``.

    Every key is checked (module and parameter exist, shape matches, values are boolean or
    0/1) before anything is changed. A parameter that already carries a torch prune mask has
    it **replaced**: its reparametrisation is first made permanent (the current effective
    values ``orig * old_mask`` are kept, so entries pruned earlier stay zero) and then the new
    mask is applied. Afterwards the mask buffer equals the given mask exactly, and the
    ``Parameter`` object is the same one as before, so an existing optimizer keeps working.

    Args:
        model: the model to prune in place.
        masks: keep-masks (``True`` = kept) keyed ``"<module>.<param>"``, e.g. from
            ``global_magnitude_masks``.

    Example:
        >>> import torch
        >>> model = torch.nn.Sequential(torch.nn.Linear(2, 1))
        >>> apply_masks(model, {"0.weight": torch.tensor([[True, False]])})
        >>> hasattr(model[0], "weight_orig"), model[0].weight_mask.tolist()
        (True, [[1.0, 0.0]])
    """
    if not isinstance(masks, Mapping):
        raise TypeError(f"masks must be a mapping of '<module>.<param>' to tensors, got {masks!r}")
    resolved = []
    for key, mask in masks.items():
        module, name, param = _resolve(model, key)
        resolved.append((module, name, _as_keep_mask(key, mask, param)))
    for module, name, mask in resolved:
        if name in pruned_names(module):
            prune.remove(module, name)
        prune.custom_from_mask(module, name, mask)


def masks_from_model(model: nn.Module) -> dict[str, Tensor]:
    """Return the keep-masks currently installed by ``torch.nn.utils.prune``.

    Args:
        model: a model, possibly pruned.

    Returns:
        Boolean copies of every ``<name>_mask`` buffer, keyed ``"<module>.<param>"``; empty if
        nothing is pruned.

    Example:
        >>> import torch
        >>> model = torch.nn.Sequential(torch.nn.Linear(2, 1))
        >>> apply_masks(model, {"0.weight": torch.tensor([[True, False]])})
        >>> masks_from_model(model)
        {'0.weight': tensor([[ True, False]])}
    """
    masks: dict[str, Tensor] = {}
    for qualified, module in model.named_modules():
        for name in pruned_names(module):
            masks[parameter_key(qualified, name)] = getattr(module, mask_name(name)).detach() != 0
    return masks


def remove_masks(model: nn.Module) -> list[str]:
    """Make pruning permanent: remove every torch prune reparametrisation, keeping masked values.

    Calls ``torch.nn.utils.prune.remove`` on every pruned parameter, so ``<name>_orig``,
    ``<name>_mask`` and the hooks disappear and the parameter holds ``orig * mask`` (zeros
    where masked). The ``Parameter`` objects stay the same. Also available as
    ``make_pruning_permanent``.

    Args:
        model: the model, changed in place.

    Returns:
        The keys ``"<module>.<param>"`` that were made permanent.

    Example:
        >>> import torch
        >>> model = torch.nn.Sequential(torch.nn.Linear(2, 1))
        >>> apply_masks(model, {"0.weight": torch.tensor([[True, False]])})
        >>> remove_masks(model)
        ['0.weight']
        >>> hasattr(model[0], "weight_orig"), float(model[0].weight.detach()[0, 1]) == 0
        (False, True)
    """
    removed = []
    for qualified, module in model.named_modules():
        for name in pruned_names(module):
            prune.remove(module, name)
            removed.append(parameter_key(qualified, name))
    return removed


make_pruning_permanent = remove_masks


def prune_globally(
    model: nn.Module,
    amount: float,
    *,
    parameter_names: Sequence[str] = ("weight",),
    parameters_to_prune: Sequence[tuple[nn.Module, str]] = (),
    share: Callable[[dict[str, Tensor]], dict[str, Tensor]] | None = None,
) -> dict[str, Tensor]:
    """Global one-shot magnitude pruning: compute the keep-masks and apply them to ``model``.

    The masks of :func:`~lightning_prunelimit.pruning.global_magnitude_masks` (exactly
    ``round(amount * N)`` of the N prunable weights removed, smallest magnitude first), moved
    to the CPU, then :func:`apply_masks`. ``share`` may replace the masks before they are
    applied, e.g. by rank zero's under DDP (``GlobalOneShotPruning`` passes the strategy's
    broadcast), so every process applies the same. :func:`remove_masks` afterwards makes the
    zeros permanent.

    Returns:
        The keep-masks applied (CPU bool tensors keyed ``"<module>.<param>"``).

    Example:
        >>> import torch
        >>> _ = torch.manual_seed(0)
        >>> model = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.Linear(4, 2))
        >>> masks = prune_globally(model, 0.5)
        >>> sum(int((~m).sum()) for m in masks.values()), hasattr(model[0], "weight_mask")
        (20, True)
    """
    from lightning_prunelimit.pruning.masks import global_magnitude_masks

    computed = global_magnitude_masks(
        model, amount, parameter_names=parameter_names, parameters_to_prune=parameters_to_prune
    )
    masks = {key: mask.detach().to("cpu") for key, mask in computed.items()}
    if share is not None:
        masks = share(masks)
    apply_masks(model, masks)
    return masks
