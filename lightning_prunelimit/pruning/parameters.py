"""Which parameters of a model are pruned, and their effective (masked) values.

By default only the weights of Linear and convolution layers (1d/2d/3d, transposed too) are
pruned, as in the paper: never normalisation layers, embeddings or biases. A
``parameters_to_prune`` sequence of ``(module, name)`` pairs, in the style of Lightning's
``ModelPruning``, overrides the default selection.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from lightning_prunelimit.pruning.reparametrization import is_pruned, mask_name, orig_name

__all__ = ["PRUNABLE_MODULE_TYPES", "effective_parameter", "parameter_key", "prunable_parameters"]

#: Module types whose parameters are pruned by default (subclasses included).
PRUNABLE_MODULE_TYPES: tuple[type[nn.Module], ...] = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
)


def parameter_key(module_name: str, param_name: str) -> str:
    """Return the key ``"<module>.<param>"`` used for masks and per-layer reports.

    Args:
        module_name: qualified module name inside the model (``""`` for the model itself).
        param_name: parameter name inside that module, e.g. ``"weight"``.

    Example:
        >>> parameter_key("net.0", "weight")
        'net.0.weight'
        >>> parameter_key("", "weight")
        'weight'
    """
    return f"{module_name}.{param_name}" if module_name else param_name


def _has_parameter(module: nn.Module, name: str) -> bool:
    """Whether ``module`` holds parameter ``name`` directly or as a torch prune ``name_orig``."""
    if module._parameters.get(name) is not None:
        return True
    return module._parameters.get(orig_name(name)) is not None and is_pruned(module, name)


def effective_parameter(module: nn.Module, name: str) -> Tensor:
    """Return the value a parameter has in the forward pass, detached.

    For a parameter reparametrised by ``torch.nn.utils.prune`` this is ``name_orig * name_mask``
    computed now (the ``module.name`` attribute is only refreshed at the next forward pass);
    otherwise the parameter itself.

    Args:
        module: the module holding the parameter.
        name: the parameter name, e.g. ``"weight"`` (not ``"weight_orig"``).

    Example:
        >>> import torch
        >>> from torch.nn.utils import prune
        >>> layer = torch.nn.Linear(2, 1)
        >>> _ = prune.custom_from_mask(layer, "weight", torch.tensor([[True, False]]))
        >>> bool(effective_parameter(layer, "weight")[0, 1] == 0)
        True
    """
    orig = module._parameters.get(orig_name(name))
    if orig is not None and is_pruned(module, name):
        return (orig * getattr(module, mask_name(name))).detach()
    param = module._parameters.get(name)
    if param is None:
        raise ValueError(
            f"{type(module).__name__} has no parameter {name!r}: "
            f"its parameters are {[n for n, p in module._parameters.items() if p is not None]}"
        )
    return param.detach()


def check_parameter_names(parameter_names: Sequence[str]) -> tuple[str, ...]:
    """Validate a sequence of parameter names (a bare string is refused) and return a tuple.

    Example:
        >>> check_parameter_names(["weight", "bias"])
        ('weight', 'bias')
    """
    if isinstance(parameter_names, str):
        raise TypeError(
            f"parameter_names must be a sequence of names, got the string {parameter_names!r}: "
            f"pass ({parameter_names!r},)"
        )
    names = tuple(parameter_names)
    if not names or not all(isinstance(n, str) and n for n in names):
        raise ValueError(
            f"parameter_names must be a non-empty sequence of parameter names, got {names!r}: "
            "pass e.g. ('weight',)"
        )
    return names


def prunable_parameters(
    model: nn.Module,
    parameter_names: Sequence[str] = ("weight",),
    parameters_to_prune: Sequence[tuple[nn.Module, str]] = (),
) -> list[tuple[str, nn.Module, str]]:
    """List the parameters to prune as ``(module qualified name, module, parameter name)``.

    Without ``parameters_to_prune``, every Linear and convolution module (see
    ``PRUNABLE_MODULE_TYPES``) contributes each of its parameters named in ``parameter_names``
    that exists (``bias=False`` layers simply have no bias). Normalisation layers and
    embeddings are never selected by default. With ``parameters_to_prune`` (a sequence of
    ``(module, name)`` pairs, as for Lightning's ``ModelPruning``), exactly those are used, in
    that order. Parameters already pruned by ``torch.nn.utils.prune`` (``weight_orig``) count
    under their plain name.

    Args:
        model: the model.
        parameter_names: parameter names to take from each Linear/Conv module.
        parameters_to_prune: explicit ``(module, name)`` pairs; overrides the default selection.

    Returns:
        The selection in model order (``named_modules`` order, then ``parameter_names`` order).

    Example:
        >>> import torch
        >>> model = torch.nn.Sequential(
        ...     torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3), torch.nn.Linear(3, 2)
        ... )
        >>> [(name, param) for name, _, param in prunable_parameters(model)]
        [('0', 'weight'), ('2', 'weight')]
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    names = check_parameter_names(parameter_names)
    module_names = {id(module): qualified for qualified, module in model.named_modules()}

    selected: list[tuple[str, nn.Module, str]] = []
    if parameters_to_prune:
        seen: set[tuple[int, str]] = set()
        for entry in parameters_to_prune:
            if not (isinstance(entry, (tuple, list)) and len(entry) == 2):
                raise ValueError(
                    f"parameters_to_prune entries must be (module, name) pairs, got {entry!r}"
                )
            module, name = entry
            if not isinstance(module, nn.Module) or id(module) not in module_names:
                raise ValueError(
                    f"parameters_to_prune lists {type(module).__name__} which is not a submodule "
                    "of the model: pass modules taken from this model"
                )
            if not isinstance(name, str) or not _has_parameter(module, name):
                raise ValueError(
                    f"parameters_to_prune lists ({type(module).__name__}, {name!r}) but that "
                    f"module has no parameter {name!r}: its parameters are "
                    f"{[n for n, p in module._parameters.items() if p is not None]}"
                )
            if (id(module), name) in seen:
                raise ValueError(
                    f"parameters_to_prune lists {parameter_key(module_names[id(module)], name)!r} "
                    "twice: list each parameter once"
                )
            seen.add((id(module), name))
            selected.append((module_names[id(module)], module, name))
        return selected

    for qualified, module in model.named_modules():
        if not isinstance(module, PRUNABLE_MODULE_TYPES):
            continue
        for name in names:
            if not _has_parameter(module, name):
                continue
            if isinstance(module._parameters.get(name), nn.parameter.UninitializedParameter):
                raise ValueError(
                    f"{parameter_key(qualified, name)!r} of the lazy module "
                    f"{type(module).__name__} is not initialised yet: run one forward pass first"
                )
            selected.append((qualified, module, name))
    if not selected:
        raise ValueError(
            f"the model has no Linear or Conv weights to prune (parameter_names={names!r}); "
            "pass parameters_to_prune=[(module, 'weight'), ...]"
        )
    return selected
