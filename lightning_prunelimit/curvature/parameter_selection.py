"""Which parameters the Hessian is taken over: names, a predicate, or the default rule."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import nn

ParameterSelection = Sequence[str] | Callable[[str, nn.Parameter], bool] | None
"""``None`` (the default rule), a sequence of parameter names, or a predicate ``(name, param)``."""

NORMALIZATION_LAYERS: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase,  # BatchNorm1d/2d/3d, SyncBatchNorm, InstanceNorm*, lazy forms
    nn.LayerNorm,
    nn.GroupNorm,
    nn.LocalResponseNorm,
    nn.CrossMapLRN2d,
    *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()),
)
"""Module types whose parameters the default selection leaves out of the Hessian."""


def normalization_parameter_names(model: nn.Module) -> set[str]:
    """Names of the parameters that belong directly to normalisation layers of ``model``.

    Example:
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
        >>> sorted(normalization_parameter_names(model))
        ['1.bias', '1.weight']
    """
    names: set[str] = set()
    for module_name, module in model.named_modules():
        if isinstance(module, NORMALIZATION_LAYERS):
            prefix = f"{module_name}." if module_name else ""
            names.update(prefix + name for name, _ in module.named_parameters(recurse=False))
    return names


def select_parameters(
    model: nn.Module, params: ParameterSelection = None
) -> list[tuple[str, nn.Parameter]]:
    """Pick the parameters a Hessian is taken over, as ``(name, parameter)`` in the model's order.

    Args:
        model: the network.
        params: ``None`` selects every parameter with ``requires_grad`` except those of
            normalisation layers (:data:`NORMALIZATION_LAYERS`); a sequence of names selects
            exactly those; a predicate ``(name, param) -> bool`` is asked about every parameter.

    Example:
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
        >>> [name for name, _ in select_parameters(model)]
        ['0.weight', '0.bias', '2.weight', '2.bias']
        >>> [name for name, _ in select_parameters(model, lambda n, p: n.endswith("weight"))]
        ['0.weight', '1.weight', '2.weight']
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    named = list(model.named_parameters())
    if params is None:
        excluded = normalization_parameter_names(model)
        selected = [(n, p) for n, p in named if p.requires_grad and n not in excluded]
        rule = "every trainable parameter outside normalisation layers"
    elif isinstance(params, str):
        raise ValueError(
            f"params must be a sequence of parameter names, got the single string {params!r}: "
            f"pass [{params!r}]"
        )
    elif callable(params):
        selected = [(n, p) for n, p in named if params(n, p)]
        rule = "the predicate"
    elif isinstance(params, Sequence):
        wanted = list(params)
        bad = [n for n in wanted if not isinstance(n, str)]
        if bad:
            raise TypeError(f"params must hold parameter names (str), got {bad[0]!r}")
        duplicates = sorted({n for n in wanted if wanted.count(n) > 1})
        if duplicates:
            raise ValueError(f"params names must be unique, got {duplicates} more than once")
        available = {n for n, _ in named}
        unknown = [n for n in wanted if n not in available]
        if unknown:
            shown = ", ".join(n for n, _ in named[:8]) + (", ..." if len(named) > 8 else "")
            raise ValueError(
                f"unknown parameter names {unknown}: the model's parameters are {shown}"
            )
        chosen = set(wanted)
        selected = [(n, p) for n, p in named if n in chosen]
        rule = "the given names"
    else:
        raise TypeError(
            "params must be None, a sequence of parameter names or a predicate (name, param) -> "
            f"bool, got {type(params).__name__}"
        )
    if not selected:
        raise ValueError(
            f"no parameters selected ({rule} matched none of the model's {len(named)} "
            "parameters): pass params=None, a list of names, or a predicate that accepts some"
        )
    return selected
