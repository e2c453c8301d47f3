"""Seeded, optionally stratified, splitting of sample indices into two parts."""

from __future__ import annotations

import torch


def split_indices(
    num_samples: int,
    fraction: float,
    seed: int,
    labels: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split ``range(num_samples)`` into a kept part and a held-out part of about ``fraction``.

    Without ``labels`` the held-out part is ``round(fraction * num_samples)`` indices chosen by a
    permutation from ``torch.Generator().manual_seed(seed)``. With ``labels`` the split is
    stratified: from each class ``c`` with ``n_c`` samples, ``round(fraction * n_c)`` are held
    out. Both parts are returned sorted.

    Args:
        num_samples: number of samples.
        fraction: share held out, in ``[0, 1)``.
        seed: seed of the permutation.
        labels: optional integer class labels ``(num_samples,)`` for a stratified split.

    Returns:
        ``(kept, held_out)`` int64 index tensors.

    Example:
        >>> import torch
        >>> kept, held_out = split_indices(10, 0.2, seed=0)
        >>> len(kept), len(held_out)
        (8, 2)
        >>> labels = torch.tensor([0] * 5 + [1] * 5)
        >>> kept, held_out = split_indices(10, 0.4, seed=0, labels=labels)
        >>> labels[held_out].tolist()
        [0, 0, 1, 1]
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1), got {fraction!r}: pass the share held out")
    if num_samples < 1:
        raise ValueError(f"num_samples must be positive, got {num_samples}")
    generator = torch.Generator().manual_seed(int(seed))
    if labels is None:
        order = torch.randperm(num_samples, generator=generator)
        count = round(fraction * num_samples)
        return order[count:].sort().values, order[:count].sort().values
    labels = torch.as_tensor(labels)
    if labels.shape != (num_samples,):
        raise ValueError(
            f"labels must have shape ({num_samples},), got {tuple(labels.shape)}: one label per "
            "sample"
        )
    held_out = []
    for label in torch.unique(labels):
        members = torch.nonzero(labels == label).flatten()
        order = members[torch.randperm(len(members), generator=generator)]
        held_out.append(order[: round(fraction * len(members))])
    mask = torch.zeros(num_samples, dtype=torch.bool)
    mask[torch.cat(held_out)] = True
    return torch.nonzero(~mask).flatten(), torch.nonzero(mask).flatten()
