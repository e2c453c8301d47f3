"""What the finite evaluation set says about a measured limit: pass rules and the bootstrap.

Pure PyTorch. A sparsity's *drops* are the per-sample differences between the dense model and
the pruned one on the same samples: for accuracy ``correct_dense - correct_pruned`` (each -1,
0 or 1), for the loss ``loss_pruned - loss_dense``. Their mean is the measured drop. Two pass
rules read them:

* ``"drop"`` (the paper's criterion): the mean drop is at most ``max_drop``;
* ``"paired_test"`` (not significantly worse than dense): a one-sided paired z-test on the same
  samples does not show the mean drop above ``max_drop`` at level ``significance``, i.e.
  ``mean - max_drop <= z(1 - significance) * standard error``.

:func:`pass_table` applies a rule to every evaluated sparsity, for the sample itself or for
bootstrap resamples of it (per-sample weights); :func:`bootstrap_limit_interval` turns the
resampled limits into the interval of the measured limit. No model is evaluated here.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from statistics import NormalDist

import torch
from torch import Tensor

__all__ = [
    "CRITERIA",
    "DEFAULT_CONFIDENCE",
    "DEFAULT_NUM_BOOTSTRAP",
    "DEFAULT_SIGNIFICANCE",
    "bootstrap_limit_interval",
    "check_level",
    "pass_table",
]

#: Pass rules of the limit search: the paper's threshold and the paired test.
CRITERIA: tuple[str, ...] = ("drop", "paired_test")

#: Default level of the measured limit's interval.
DEFAULT_CONFIDENCE: float = 0.95

#: Default significance level of the ``"paired_test"`` criterion.
DEFAULT_SIGNIFICANCE: float = 0.05

#: Default number of bootstrap resamples of the evaluation set.
DEFAULT_NUM_BOOTSTRAP: int = 1000

# Rounding slack of the comparisons (accuracies are ratios of counts).
_SLACK = 1e-12
# At most this many weights (resamples x samples) are held at once.
_CHUNK = 1 << 22
# Random pairings of resamples whose differences give the interval's half-width.
_PAIRINGS = 64


def check_level(name: str, value: float) -> float:
    """Validate a probability strictly between 0 and 1 and return it as a float.

    Example:
        >>> check_level("confidence", 0.95)
        0.95
        >>> check_level("significance", 1.5)
        Traceback (most recent call last):
        ...
        ValueError: significance must be strictly between 0 and 1, got 1.5
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number strictly between 0 and 1, got {value!r}")
    if not 0.0 < float(value) < 1.0:
        raise ValueError(f"{name} must be strictly between 0 and 1, got {value}")
    return float(value)


def pass_table(
    drops: Tensor,
    *,
    max_drop: float,
    criterion: str = "drop",
    significance: float = DEFAULT_SIGNIFICANCE,
    weights: Tensor | None = None,
) -> Tensor:
    """Which evaluated sparsities pass, for the sample or for each resample of it.

    Args:
        drops: ``(n, k)``: per-sample drops (dense minus pruned accuracy, or pruned minus
            dense loss) of ``n`` samples at ``k`` sparsities.
        max_drop: the allowed mean drop, >= 0.
        criterion: ``"drop"`` or ``"paired_test"`` (see the module docstring).
        significance: level of the paired test.
        weights: ``(b, n)`` per-sample weights of ``b`` resamples (counts summing to ``n``);
            ``None``: the sample itself (``b = 1``).

    Returns:
        ``(b, k)`` bool.

    Example:
        >>> import torch
        >>> drops = torch.tensor([[0.0, 1.0], [0.0, 0.0], [0.0, 0.0], [0.0, -1.0]])
        >>> pass_table(drops, max_drop=0.0).tolist()  # mean drops 0 and 0
        [[True, True]]
        >>> pass_table(drops[:3], max_drop=0.0).tolist()  # mean drops 0 and 1/3
        [[True, False]]
        >>> pass_table(drops[:3], max_drop=0.0, criterion="paired_test").tolist()
        [[True, True]]
    """
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
    values = drops.to(torch.float64)
    n = values.shape[0]
    if weights is None:
        weights = torch.ones(1, n, dtype=torch.float64, device=values.device)
    mean = weights @ values / n
    if criterion == "drop":
        return mean <= max_drop + _SLACK
    second = weights @ values.square() / n
    stderr = (second - mean.square()).clamp_min(0).div(n).sqrt()
    z = NormalDist().inv_cdf(1.0 - significance)
    return mean - max_drop <= z * stderr + _SLACK


def _limits(sparsities: Tensor, passes: Tensor) -> tuple[Tensor, Tensor]:
    """Per row: the largest passing sparsity and the next evaluated one above it."""
    k = sparsities.numel()
    index = torch.arange(k, device=passes.device).expand_as(passes)
    last = torch.where(passes, index, torch.zeros_like(index)).amax(dim=1)
    above = (last + 1).clamp_max(k - 1)
    return sparsities[last], sparsities[above]


def bootstrap_limit_interval(
    sparsities: Sequence[float],
    drops: Tensor,
    limit: float,
    *,
    max_drop: float,
    criterion: str = "drop",
    significance: float = DEFAULT_SIGNIFICANCE,
    confidence: float = DEFAULT_CONFIDENCE,
    num_bootstrap: int = DEFAULT_NUM_BOOTSTRAP,
    seed: int = 0,
) -> tuple[float, float]:
    """Where the same search on a fresh evaluation sample of the same size would put the limit.

    The ``n`` evaluation samples are resampled with replacement ``num_bootstrap`` times. Each
    resample has a limit, the largest evaluated sparsity that passes under it, and an upper
    reach, the next evaluated sparsity (where it fails: its crossing lies between the two).
    The limit of a fresh sample and this one are two independent draws of the same search, so
    their difference is symmetric about 0 and spread like the difference of two resampled
    limits; the half-width ``h`` is the ``(1 + confidence) / 2`` quantile of the differences (upper
    reach of one resample minus the limit of another, so that the resolution of the search
    counts as well), and the interval is ``[limit - h, limit + h]`` clipped to
    ``[0, max(sparsities)]``. Pairing resamples, rather than reading the resampled limits'
    own quantiles, keeps the interval honest where a criterion sits on a handful of
    samples: a sparsity that no resample can fail (no sample got worse there) still gets
    the spread that the others show.

    Args:
        sparsities: the evaluated sparsities, ascending, starting at 0.
        drops: ``(n, k)`` per-sample drops at each (see :func:`pass_table`).
        limit: the limit measured on the sample itself.
        max_drop: the criterion's allowed drop.
        criterion: ``"drop"`` or ``"paired_test"``.
        significance: level of the paired test.
        confidence: level of the interval.
        num_bootstrap: resamples (>= 1).
        seed: seed of the resampling.

    Returns:
        ``(lo, hi)``.

    Example:
        >>> import torch
        >>> gen = torch.Generator().manual_seed(0)
        >>> wrong = (torch.rand(400, 4, generator=gen) < torch.tensor([0.1, 0.1, 0.12, 0.3]))
        >>> drops = wrong.double() - wrong[:, :1].double()  # dense is the first column
        >>> lo, hi = bootstrap_limit_interval([0.0, 0.5, 0.6, 0.7], drops, 0.5, max_drop=0.02)
        >>> lo <= 0.5 <= hi <= 0.7
        True
    """
    if isinstance(num_bootstrap, bool) or not isinstance(num_bootstrap, int) or num_bootstrap < 1:
        raise ValueError(f"num_bootstrap must be an int >= 1, got {num_bootstrap!r}")
    check_level("confidence", confidence)
    grid = torch.tensor([float(s) for s in sparsities], dtype=torch.float64)
    values = drops.to(torch.float64).cpu()
    n, k = values.shape
    if k != grid.numel():
        raise ValueError(f"drops has {k} columns for {grid.numel()} sparsities")
    generator = torch.Generator().manual_seed(int(seed))
    chunk = max(1, min(num_bootstrap, _CHUNK // max(n, 1)))
    lows, highs = [], []
    for start in range(0, num_bootstrap, chunk):
        count = min(chunk, num_bootstrap - start)
        index = torch.randint(n, (count, n), generator=generator)
        weights = torch.zeros(count, n, dtype=torch.float64)
        weights.scatter_add_(1, index, torch.ones(count, n, dtype=torch.float64))
        passes = pass_table(
            values, max_drop=max_drop, criterion=criterion, significance=significance,
            weights=weights,
        )  # fmt: skip
        low, high = _limits(grid, passes)
        lows.append(low)
        highs.append(high)
    low, high = torch.cat(lows), torch.cat(highs)
    rounds = min(num_bootstrap, _PAIRINGS)
    differences = torch.cat(
        [high - low[torch.randperm(num_bootstrap, generator=generator)] for _ in range(rounds)]
    )
    quantile = (1.0 + confidence) / 2  # two-sided: |fresh - limit| <= h with `confidence`
    rank = min(differences.numel(), max(1, math.ceil(quantile * differences.numel())))
    half = max(float(differences.kthvalue(rank).values), 0.0)
    lo = max(0.0, limit - half)
    hi = min(float(grid.max()), limit + half)
    return lo, hi
