"""Distance R from the trained weights to their global magnitude pruning.

R(rho) = || w* - w^k ||_2 is the l2 norm of the weights removed when global magnitude pruning
keeps the fraction rho of them: the paper's "weight magnitude" factor. Removing the m smallest
magnitudes, R^2 is the sum of the m smallest squares, so one sort and one cumulative sum give R
for every kept fraction at once.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["as_flat_weights", "pruning_distances", "removed_weight_norms"]


def as_flat_weights(weights: Tensor | Sequence[Tensor]) -> Tensor:
    """Flatten and concatenate prunable weights into one detached 1-D tensor.

    Args:
        weights: a tensor, or a sequence of tensors (flattened and concatenated in order).

    Example:
        >>> import torch
        >>> as_flat_weights([torch.ones(2, 2), torch.zeros(3)]).shape
        torch.Size([7])
    """
    if isinstance(weights, Tensor):
        tensors = [weights]
    elif isinstance(weights, Sequence) and all(isinstance(t, Tensor) for t in weights):
        tensors = list(weights)
    else:
        raise TypeError(
            f"weights must be a tensor or a sequence of tensors, got {type(weights).__name__}"
        )
    if not tensors or sum(t.numel() for t in tensors) == 0:
        raise ValueError("weights are empty: pass the prunable weights (at least one entry)")
    device = tensors[0].device
    flat = torch.cat(
        [t.detach().reshape(-1).to(device=device, dtype=torch.float64) for t in tensors]
    )
    if not bool(torch.isfinite(flat).all()):
        raise ValueError("weights contain NaN or inf: the distance to pruned weights is undefined")
    return flat


def removed_weight_norms(weights: Tensor | Sequence[Tensor]) -> Tensor:
    """Norms of the m smallest-magnitude weights, for every m = 0..N.

    Entry ``m`` is the l2 norm of the weights removed when the ``m`` smallest ``|w|`` are
    pruned, so ``R(rho) = removed_weight_norms(w)[round((1 - rho) * N)]``. Ties between equal
    magnitudes do not matter here: tied weights have the same square.

    Args:
        weights: a tensor, or a sequence of tensors (flattened and concatenated).

    Returns:
        A float64 CPU tensor of shape ``(N + 1,)``, non-decreasing, starting at 0.

    Example:
        >>> import torch
        >>> removed_weight_norms(torch.tensor([3.0, -4.0, 0.0]))
        tensor([0., 0., 3., 5.], dtype=torch.float64)
    """
    flat = as_flat_weights(weights)
    squares = torch.sort(flat.abs()).values.square()
    norms = torch.zeros(flat.numel() + 1, dtype=torch.float64, device=flat.device)
    torch.cumsum(squares, dim=0, out=norms[1:])
    return norms.sqrt_().cpu()


def _as_kept_fractions(kept_fractions: float | Sequence[float] | Tensor) -> Tensor:
    if isinstance(kept_fractions, bool):
        raise TypeError("kept_fractions must be a number or numbers in [0, 1], got a bool")
    if isinstance(kept_fractions, Tensor):
        if kept_fractions.dtype == torch.bool:
            raise TypeError("kept_fractions must be numbers in [0, 1], got a bool tensor")
        fractions = kept_fractions.detach().to(device="cpu", dtype=torch.float64)
    else:
        try:
            fractions = torch.as_tensor(kept_fractions, dtype=torch.float64)
        except (TypeError, ValueError) as error:
            raise TypeError(
                f"kept_fractions must be a float, a sequence of floats or a tensor, got "
                f"{kept_fractions!r}"
            ) from error
    bad = torch.isnan(fractions) | (fractions < 0) | (fractions > 1)
    if bool(bad.any()):
        raise ValueError(
            f"kept_fractions must be in [0, 1] (the fraction of weights kept), got "
            f"{fractions[bad].flatten()[:5].tolist()}: pass kept = 1 - sparsity"
        )
    return fractions


def pruning_distances(
    weights: Tensor | Sequence[Tensor], kept_fractions: float | Sequence[float] | Tensor
) -> Tensor:
    """Distance R from the weights to their global magnitude pruning, per kept fraction.

    ``R(rho)`` is the l2 norm of the weights removed by global magnitude pruning to kept
    fraction ``rho``: the ``round((1 - rho) * N)`` smallest magnitudes, the same count and
    order as ``lightning_prunelimit.pruning.global_magnitude_masks(amount=1 - rho)``. Computed
    in float64 with one sort and one cumulative sum for all fractions.

    Args:
        weights: the N prunable weights: a tensor, or a sequence of tensors (flattened and
            concatenated).
        kept_fractions: a float, a sequence or a tensor of kept fractions in [0, 1].

    Returns:
        A float64 CPU tensor with the shape of ``kept_fractions`` (0-d for a float).

    Example:
        >>> import torch
        >>> w = torch.tensor([0.5, -2.0, 1.0, 0.0])
        >>> pruning_distances(w, [1.0, 0.75, 0.5, 0.0])
        tensor([0.0000, 0.0000, 0.5000, 2.2913], dtype=torch.float64)
    """
    fractions = _as_kept_fractions(kept_fractions)
    norms = removed_weight_norms(weights)
    total = norms.numel() - 1
    removed = torch.round((1.0 - fractions) * total).to(torch.int64).clamp_(0, total)
    return norms[removed]
