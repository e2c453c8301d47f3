"""The names ``torch.nn.utils.prune`` gives a pruned parameter: ``<name>_orig`` and ``<name>_mask``.

A parameter pruned through ``torch.nn.utils.prune`` lives as a ``<name>_orig`` parameter next
to a ``<name>_mask`` buffer, and a forward pre-hook recomputes ``<name> = orig * mask`` before
each forward pass. Every place of the package that has to know this naming (masks, sparsity,
L1, the curvature parameter names, checkpoints) asks the functions of this module.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping

from torch import Tensor, nn
from torch.nn.utils import prune

__all__ = [
    "MASK_SUFFIX",
    "ORIG_SUFFIX",
    "align_pruning_keys",
    "fold_pruned_entries",
    "is_pruned",
    "mask_name",
    "orig_name",
    "plain_parameter_name",
    "pruned_names",
]

#: Suffix of the trainable tensor of a pruned parameter.
ORIG_SUFFIX = "_orig"
#: Suffix of the keep-mask buffer of a pruned parameter.
MASK_SUFFIX = "_mask"


def orig_name(name: str) -> str:
    """The name of the trainable tensor behind pruned parameter ``name``.

    Example:
        >>> orig_name("net.0.weight")
        'net.0.weight_orig'
    """
    return name + ORIG_SUFFIX


def mask_name(name: str) -> str:
    """The name of the keep-mask buffer of pruned parameter ``name``.

    Example:
        >>> mask_name("weight")
        'weight_mask'
    """
    return name + MASK_SUFFIX


def pruned_names(module: nn.Module) -> list[str]:
    """Names of the parameters of ``module`` (itself, not its children) under a torch prune hook.

    Example:
        >>> import torch
        >>> layer = torch.nn.Linear(2, 1)
        >>> _ = prune.custom_from_mask(layer, "weight", torch.tensor([[True, False]]))
        >>> pruned_names(layer)
        ['weight']
    """
    return [
        hook._tensor_name
        for hook in module._forward_pre_hooks.values()
        if isinstance(hook, prune.BasePruningMethod)
    ]


def is_pruned(module: nn.Module, name: str) -> bool:
    """Whether parameter ``name`` of ``module`` is reparametrised by ``torch.nn.utils.prune``.

    Such a parameter lives as ``<name>_orig`` next to a ``<name>_mask`` buffer, and the forward
    pass uses ``orig * mask``.

    Example:
        >>> import torch
        >>> layer = torch.nn.Linear(2, 1)
        >>> _ = prune.custom_from_mask(layer, "weight", torch.tensor([[True, False]]))
        >>> is_pruned(layer, "weight"), is_pruned(layer, "bias")
        (True, False)
    """
    return name in pruned_names(module) and mask_name(name) in module._buffers


def plain_parameter_name(module: nn.Module, local: str) -> str:
    """The parameter name a user knows for the tensor ``local`` of ``module``.

    ``weight_orig`` of a pruned ``weight`` maps to ``weight``; every other name maps to itself.

    Example:
        >>> import torch
        >>> layer = torch.nn.Linear(2, 1)
        >>> _ = prune.custom_from_mask(layer, "weight", torch.tensor([[True, False]]))
        >>> plain_parameter_name(layer, "weight_orig"), plain_parameter_name(layer, "bias")
        ('weight', 'bias')
    """
    if local.endswith(ORIG_SUFFIX):
        plain = local[: -len(ORIG_SUFFIX)]
        if is_pruned(module, plain):
            return plain
    return local


def fold_pruned_entries(state: MutableMapping[str, Tensor], keys: Iterable[str]) -> None:
    """Rewrite ``<key>_orig`` and ``<key>_mask`` entries of a state dict as ``<key> = orig * mask``.

    Keys without both entries are left alone. The tensors of the live model are not touched
    (the product is a new tensor).

    Example:
        >>> import torch
        >>> state = {"w_orig": torch.tensor([2.0, 3.0]), "w_mask": torch.tensor([1.0, 0.0])}
        >>> fold_pruned_entries(state, ["w"])
        >>> state
        {'w': tensor([2., 0.])}
    """
    for key in keys:
        orig, mask = state.get(orig_name(key)), state.get(mask_name(key))
        if orig is None or mask is None:
            continue
        del state[orig_name(key)], state[mask_name(key)]
        state[key] = orig * mask.to(orig.dtype)


def align_pruning_keys(
    module: nn.Module, state_dict: MutableMapping[str, Tensor], prefix: str = "", *_: object
) -> None:
    """Rewrite a state dict's pruned / plain keys to the form ``module`` has now (in place).

    A checkpoint written while a parameter carried a torch prune mask has ``<name>_orig`` and
    ``<name>_mask``; a plain one has ``<name>``. Loading either into a module of the other form
    fails, so the entries are rewritten: for a plain parameter, ``<name> = orig * mask``; for
    a pruned one, ``<name>_orig = <name>`` with the module's current mask. The signature is
    that of a ``load_state_dict`` pre-hook: ``module.register_load_state_dict_pre_hook(
    align_pruning_keys)`` makes checkpoints of either form load.

    Example:
        >>> import torch
        >>> from torch.nn.utils import prune
        >>> pruned = prune.l1_unstructured(torch.nn.Linear(2, 1), "weight", amount=0.5)
        >>> plain = torch.nn.Linear(2, 1)
        >>> state = pruned.state_dict()
        >>> align_pruning_keys(plain, state)
        >>> sorted(state)
        ['bias', 'weight']
        >>> _ = plain.load_state_dict(state)
    """
    for qualified, child in module.named_modules():
        base = prefix + (f"{qualified}." if qualified else "")
        for name, _ in list(child.named_parameters(recurse=False)):
            plain = plain_parameter_name(child, name)
            if plain != name:
                if base + plain in state_dict and base + name not in state_dict:
                    state_dict[base + name] = state_dict.pop(base + plain)
                    state_dict[mask_name(base + plain)] = child.get_buffer(mask_name(plain)).clone()
            elif base + name not in state_dict:
                fold_pruned_entries(state_dict, [base + name])
