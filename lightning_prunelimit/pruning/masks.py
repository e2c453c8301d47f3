"""Global magnitude pruning masks: remove the smallest weights of the whole network at once."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from lightning_prunelimit.pruning.parameters import (
    effective_parameter,
    parameter_key,
    prunable_parameters,
)

__all__ = ["global_magnitude_masks", "num_to_prune"]


def num_to_prune(sparsity: float, num_weights: int) -> int:
    """Number of weights removed at a given sparsity: ``round(sparsity * num_weights)``.

    Python's ``round`` (half to even) is used, the same rounding as ``torch.round`` in
    ``lightning_prunelimit.limit.pruning_distances``, so masks and distances always agree.

    Args:
        sparsity: the fraction of weights to remove, in [0, 1].
        num_weights: the number of prunable weights N.

    Example:
        >>> num_to_prune(0.5, 7), num_to_prune(0.25, 10), num_to_prune(0.0, 10)
        (4, 2, 0)
    """
    return int(round(sparsity * num_weights))


def check_amount(amount: float) -> float:
    """Validate a pruning ``amount`` (fraction of weights to remove) and return it as a float.

    Example:
        >>> check_amount(0.25)
        0.25
    """
    if isinstance(amount, bool) or not isinstance(amount, numbers.Real):
        raise TypeError(
            f"amount must be a float in [0, 1), got {amount!r} ({type(amount).__name__}): "
            "pass the fraction of weights to remove"
        )
    value = float(amount)
    if math.isnan(value) or not 0.0 <= value < 1.0:
        raise ValueError(
            f"amount must be in [0, 1), got {value}: pass the fraction of weights to remove"
        )
    return value


def global_magnitude_masks(
    model: nn.Module,
    amount: float,
    *,
    parameter_names: Sequence[str] = ("weight",),
    parameters_to_prune: Sequence[tuple[nn.Module, str]] = (),
) -> dict[str, Tensor]:
    """Keep-masks of global magnitude pruning: the ``round(amount * N)`` smallest weights go.

    All prunable weights (see ``prunable_parameters``; N of them) are ranked together by
    absolute value. Exactly ``round(amount * N)`` of them are removed: the smallest ``|w|``,
    ties broken by position in the global flat order (parameters in selection order, each
    flattened row-major), earlier positions removed first. If the model is already pruned by
    ``torch.nn.utils.prune``, the ranking uses the effective weights ``orig * mask``, so the
    already pruned entries (value 0) are the first to go.

    The threshold is found with one global ``kthvalue`` (no sort, no per-layer loop); only the
    weights tied at the threshold are resolved by position.

    Args:
        model: the model.
        amount: the sparsity, i.e. the fraction of weights to remove, in [0, 1).
        parameter_names: parameter names taken from each Linear/Conv module.
        parameters_to_prune: explicit ``(module, name)`` pairs; overrides the default selection.

    Returns:
        Boolean keep-masks (``True`` = kept) keyed ``"<module>.<param>"`` (e.g.
        ``"net.0.weight"``), with the parameter's shape and device.

    Example:
        >>> import torch
        >>> model = torch.nn.Sequential(torch.nn.Linear(2, 2, bias=False))
        >>> with torch.no_grad():
        ...     _ = model[0].weight.copy_(torch.tensor([[0.1, -3.0], [2.0, -0.5]]))
        >>> global_magnitude_masks(model, 0.5)["0.weight"]
        tensor([[False,  True],
                [ True, False]])
    """
    value = check_amount(amount)
    entries = prunable_parameters(model, parameter_names, parameters_to_prune)
    tensors = [effective_parameter(module, name) for _, module, name in entries]
    dtype = tensors[0].dtype
    for tensor in tensors[1:]:
        dtype = torch.promote_types(dtype, tensor.dtype)
    device = tensors[0].device
    magnitudes = torch.cat([t.reshape(-1).to(device=device, dtype=dtype).abs() for t in tensors])
    if not bool(torch.isfinite(magnitudes).all()):
        bad = [
            parameter_key(qualified, name)
            for (qualified, _, name), t in zip(entries, tensors)
            if not bool(torch.isfinite(t).all())
        ]
        raise ValueError(f"cannot rank weights by magnitude: {bad} contain NaN or inf values")

    total = magnitudes.numel()
    count = num_to_prune(value, total)
    keep = torch.ones(total, dtype=torch.bool, device=device)
    if count == total:
        keep.zero_()
    elif count > 0:
        threshold = torch.kthvalue(magnitudes, count).values
        below = magnitudes < threshold
        keep &= ~below
        missing = count - int(below.sum())
        tied = torch.nonzero(magnitudes == threshold).flatten()[:missing]
        keep[tied] = False

    masks: dict[str, Tensor] = {}
    offset = 0
    for (qualified, _, name), tensor in zip(entries, tensors):
        size = tensor.numel()
        masks[parameter_key(qualified, name)] = (
            keep[offset : offset + size].reshape(tensor.shape).to(tensor.device)
        )
        offset += size
    return masks
