"""Where the prunable weights sit in a curvature operator's flat parameter vector.

A Hessian operator (``lightning_prunelimit.curvature.HessianOperator``) flattens its parameters,
named ``param_names``, into one vector in that order. The prediction and the zero-curvature
estimate need the positions of the prunable weights in that vector and their effective
values. A weight reparametrised by ``torch.nn.utils.prune`` appears in the operator as
``<name>_orig``; it counts as the prunable weight ``<name>``, with the value ``orig * mask``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from lightning_prunelimit.pruning.parameters import effective_parameter, parameter_key
from lightning_prunelimit.pruning.reparametrization import plain_parameter_name

__all__ = ["check_parameters_covered", "prunable_coordinates"]


def _operator_key(modules: Mapping[str, nn.Module], name: str) -> tuple[str, str, str]:
    """``(key, module_name, plain)`` of an operator parameter name; ``<w>_orig`` maps to ``<w>``."""
    module_name, _, local = name.rpartition(".")
    plain = plain_parameter_name(modules[module_name], local)
    return parameter_key(module_name, plain), module_name, plain


def check_parameters_covered(
    model: nn.Module, param_names: Sequence[str], entries: Sequence[tuple[str, nn.Module, str]]
) -> None:
    """Raise unless every prunable weight in ``entries`` is among the operator's parameters.

    Args:
        model: the model.
        param_names: the operator's parameter names (``HessianOperator.param_names``).
        entries: the prunable weights, as ``prunable_parameters`` lists them.

    Raises:
        ValueError: naming the uncovered weights (e.g. frozen layers, which the Hessian leaves
            out by default) and the two ways to fix it.

    Example:
        >>> import torch
        >>> from lightning_prunelimit.pruning import prunable_parameters
        >>> model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
        >>> entries = prunable_parameters(model)
        >>> check_parameters_covered(model, ["0.weight", "1.weight"], entries)
        >>> check_parameters_covered(model, ["1.weight"], entries)
        Traceback (most recent call last):
        ...
        ValueError: the Hessian spectrum does not cover 1 prunable weight tensor(s) (0.weight), ...
    """
    modules = dict(model.named_modules())
    covered = {_operator_key(modules, name)[0] for name in param_names}
    missing = [parameter_key(q, n) for q, _, n in entries if parameter_key(q, n) not in covered]
    if missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise ValueError(
            f"the Hessian spectrum does not cover {len(missing)} prunable weight tensor(s) "
            f"({shown}), e.g. frozen layers (requires_grad=False), which HessianSpectrum leaves "
            "out by default: the prediction would mix the curvature of some weights with the "
            "magnitudes of others. Include them with HessianSpectrum(params=[...names...]) or "
            "restrict the pruned weights with PruningLimit(parameters_to_prune=[(module, "
            "'weight'), ...])"
        )


def prunable_coordinates(
    model: nn.Module, param_names: Sequence[str], entries: Sequence[tuple[str, nn.Module, str]]
) -> tuple[Tensor, Tensor]:
    """Positions of the prunable weights in the operator's flat vector, and its values there.

    Args:
        model: the model the operator differentiates.
        param_names: the operator's parameter names, in its order (``op.param_names``).
        entries: the prunable weights (``prunable_parameters(model, ...)``).

    Returns:
        ``(indices, values)``: the flat positions of every prunable weight (in ``entries``
        order), and the effective values (``orig * mask`` for a pruned weight) of the whole
        flat vector, so ``values[indices]`` are the prunable weights' magnitudes to rank.

    Raises:
        ValueError: a prunable weight is not among ``param_names``
            (:func:`check_parameters_covered`).

    Example:
        >>> import torch
        >>> from lightning_prunelimit.pruning import prunable_parameters
        >>> model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
        >>> names = [name for name, _ in model.named_parameters()]  # as the operator lists them
        >>> indices, values = prunable_coordinates(model, names, prunable_parameters(model))
        >>> indices.tolist(), values.numel()
        ([0, 1, 2, 3, 6, 7], 9)
    """
    check_parameters_covered(model, param_names, entries)
    offsets: dict[str, tuple[int, int]] = {}
    values: list[Tensor] = []
    start = 0
    modules = dict(model.named_modules())
    for name in param_names:
        param = model.get_parameter(name)
        key, module_name, plain = _operator_key(modules, name)
        local = name.rpartition(".")[2]
        value = effective_parameter(modules[module_name], plain) if plain != local else param
        values.append(value.detach().reshape(-1))
        offsets[key] = (start, param.numel())
        start += param.numel()
    indices = torch.cat(
        [torch.arange(o, o + n) for o, n in (offsets[parameter_key(q, m)] for q, _, m in entries)]
    )
    return indices, torch.cat(values)
