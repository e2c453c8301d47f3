"""A fixed sample of ``(inputs, targets)`` batches: drawn once, shared by every Hessian product.

Plain PyTorch (no Lightning): :func:`sample_batches` reads a seeded sample of a loader, sharded
over DDP ranks; :class:`FixedBatches` holds it and can be cut into nested or disjoint parts
(:meth:`FixedBatches.head`, :meth:`FixedBatches.split_at`) and re-batched by memory
(:meth:`FixedBatches.rebatched`, :func:`curvature_batch_size`), so that the Hessian of a
sub-sample and the Hessian of the whole sample see the same samples in the same order.

* A map-style ``DataLoader`` gives the whole dataset in index order, or the first
  ``num_samples`` positions of one permutation drawn with ``torch.randperm`` seeded by ``seed``
  (:func:`sample_indices`), read in that drawn order: the first ``n`` samples of a sample of
  ``2 n`` are the sample of ``n`` (nested), and any prefix is a uniform random subset. A
  private ``DataLoader`` reads them (same batch size and ``collate_fn``, no shuffling, no
  workers, its own generator), so neither the training order nor the global random state is
  touched.
* Any other iterable is read as it is, up to ``num_samples`` samples.
* DDP: rank ``r`` of ``W`` keeps sample positions ``r, r + W, r + 2W, ...`` (the
  ``DistributedSampler`` split without shuffling and without padding), so the ranks together
  hold exactly the one-process sample and all-reduced sums over them equal the one-process
  sums.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, IterableDataset, Subset

from lightning_prunelimit.curvature.evaluation_mode import evaluation_mode
from lightning_prunelimit.curvature.move_batch import move_batch

__all__ = [
    "FixedBatches",
    "as_xy",
    "is_map_style",
    "curvature_batch_size",
    "sample_batches",
    "sample_indices",
]

BatchToXY = Callable[[Any], tuple[Any, Any]]


def _count(targets: Any) -> int:
    if isinstance(targets, Tensor) and targets.ndim > 0:
        return int(targets.shape[0])
    return len(targets)


def _leaves(data: Any) -> list[Tensor]:
    if isinstance(data, Tensor):
        return [data]
    if isinstance(data, Mapping):
        return [t for value in data.values() for t in _leaves(value)]
    if isinstance(data, (tuple, list)):
        return [t for value in data for t in _leaves(value)]
    return []


def _rows(data: Any, begin: int, end: int) -> Any:
    """Rows ``begin:end`` of every tensor in nested ``data`` (tuples, lists, dicts)."""
    if isinstance(data, Tensor):
        return data[begin:end]
    if isinstance(data, Mapping):
        return {key: _rows(value, begin, end) for key, value in data.items()}
    if isinstance(data, (tuple, list)):
        return type(data)(_rows(value, begin, end) for value in data)
    raise TypeError(f"cannot cut a batch holding a {type(data).__name__} into rows")


def _concatenate(parts: Sequence[Any]) -> Any:
    """Row-wise concatenation of batches with the same nested layout."""
    first = parts[0]
    if isinstance(first, Tensor):
        return torch.cat(parts)
    if isinstance(first, Mapping):
        return {key: _concatenate([part[key] for part in parts]) for key in first}
    if isinstance(first, (tuple, list)):
        return type(first)(_concatenate(column) for column in zip(*parts))
    raise TypeError(f"cannot concatenate batches holding a {type(first).__name__}")


def _row_wise(pair: tuple[Any, Any]) -> bool:
    """Whether every leaf of ``pair`` is a tensor with one row per sample."""
    size = _count(pair[1])
    leaves = _leaves(pair)
    if len(leaves) == 0 or not isinstance(pair[1], Tensor):
        return False
    structure_ok = _only_tensor_leaves(pair)
    return structure_ok and all(t.ndim > 0 and t.shape[0] == size for t in leaves)


def _only_tensor_leaves(data: Any) -> bool:
    if isinstance(data, Tensor):
        return True
    if isinstance(data, Mapping):
        return all(_only_tensor_leaves(value) for value in data.values())
    if isinstance(data, (tuple, list)):
        return all(_only_tensor_leaves(value) for value in data)
    return False


@dataclass(frozen=True)
class FixedBatches:
    """A fixed sample of ``(inputs, targets)`` batches.

    Attributes:
        batches: the batches of this rank.
        num_samples: the number of samples in ``batches``.
        total_samples: the number of samples over all ranks (the size of the drawn sample), or
            ``None`` when the source has no known length (an iterable dataset).
        split: ``"train"`` or ``"val"``: where the samples come from.
        dataset_size: samples in the dataset the sample was drawn from (``None`` if unknown).
        rank: this rank; it holds the sample positions ``rank, rank + world_size, ...``.
        world_size: the number of ranks sharing the sample.

    Example:
        >>> import torch
        >>> fixed = FixedBatches([(torch.zeros(2, 3), torch.zeros(2))], 2, 2, "train")
        >>> fixed.num_samples
        2
    """

    batches: list[tuple[Any, Tensor]]
    num_samples: int
    total_samples: int | None
    split: str
    dataset_size: int | None = None
    rank: int = 0
    world_size: int = 1

    @property
    def row_wise(self) -> bool:
        """Whether every batch is made of tensors with one row per sample (cuttable anywhere).

        Example:
            >>> import torch
            >>> FixedBatches([(torch.zeros(2, 3), torch.zeros(2))], 2, 2, "train").row_wise
            True
        """
        return all(_row_wise(pair) for pair in self.batches)

    def _cut(self, begin: int, end: int) -> list[tuple[Any, Tensor]]:
        """Samples ``begin:end`` (positions in this rank's sample) as batches."""
        out: list[tuple[Any, Tensor]] = []
        offset = 0
        for pair in self.batches:
            size = _count(pair[1])
            lo, hi = max(begin - offset, 0), min(end - offset, size)
            if lo < hi:
                out.append(pair if (lo, hi) == (0, size) else _rows(pair, lo, hi))  # type: ignore[arg-type]
            offset += size
        return out

    def head(self, num_samples: int) -> FixedBatches:
        """The first ``num_samples`` samples of the sample (over all ranks), as a sample.

        With a seeded map-style sample, this is the sample :func:`sample_batches` draws with
        ``num_samples`` (the draws are nested). Batches are cut row-wise where needed, which
        needs tensor batches; otherwise ``num_samples`` must fall on a batch boundary.

        Example:
            >>> import torch
            >>> whole = FixedBatches([(torch.arange(6.0), torch.arange(6))], 6, 6, "train")
            >>> whole.head(4).batches[0][1].tolist()
            [0, 1, 2, 3]
        """
        return self._part(0, num_samples)

    def split_at(self, position: int) -> tuple[FixedBatches, FixedBatches]:
        """Two disjoint parts: the samples before ``position`` and from it on (over all ranks).

        Example:
            >>> import torch
            >>> whole = FixedBatches([(torch.arange(6.0), torch.arange(6))], 6, 6, "train")
            >>> [part.batches[0][1].tolist() for part in whole.split_at(2)]
            [[0, 1], [2, 3, 4, 5]]
        """
        total = self.total_samples if self.total_samples is not None else self.num_samples
        return self._part(0, position), self._part(position, total)

    def _part(self, begin: int, end: int) -> FixedBatches:
        total = self.total_samples if self.total_samples is not None else self.num_samples
        if not 0 <= begin < end <= total:
            raise ValueError(
                f"a part [{begin}, {end}) of a sample of {total} samples must be non-empty and "
                "inside it"
            )
        # this rank holds the global positions rank, rank + W, ...: the global range
        # [begin, end) is its local range [ceil((begin - rank) / W), ceil((end - rank) / W)).
        w, r = self.world_size, self.rank
        lo, hi = max(math.ceil((begin - r) / w), 0), max(math.ceil((end - r) / w), 0)
        batches = self._cut(lo, hi)
        return FixedBatches(batches, hi - lo, end - begin, self.split, self.dataset_size, r, w)

    def rebatched(self, batch_size: int) -> FixedBatches:
        """The same samples in the same order, in batches of ``batch_size`` (the last smaller).

        Tensor batches are concatenated and cut row-wise; a sample whose batches are not made
        of row-wise tensors is returned unchanged. The Hessian of the sample does not depend on
        the batching (up to rounding); fewer, larger batches cost less per product.

        Example:
            >>> import torch
            >>> fixed = FixedBatches([(torch.zeros(4, 2), torch.arange(4))] * 3, 12, 12, "train")
            >>> [len(y) for _, y in fixed.rebatched(5).batches]
            [5, 5, 2]
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if not self.batches or not self.row_wise:
            return self
        sizes = [_count(y) for _, y in self.batches]
        if all(size == batch_size for size in sizes[:-1]) and sizes[-1] <= batch_size:
            return self
        whole = _concatenate(self.batches) if len(self.batches) > 1 else self.batches[0]
        batches = [
            _rows(whole, begin, min(begin + batch_size, self.num_samples))
            for begin in range(0, self.num_samples, batch_size)
        ]
        return dataclasses.replace(self, batches=batches)


def sample_indices(dataset_size: int, num_samples: int | None, seed: int) -> Tensor:
    """The dataset positions of a seeded sample, in drawn order (all of them in index order).

    The first ``num_samples`` entries of one permutation of ``range(dataset_size)`` drawn by a
    generator seeded with ``seed``: samples of different sizes with the same seed are nested
    (the smaller is the start of the larger), and every prefix is a uniform random subset.
    ``num_samples=None`` (or at least ``dataset_size``) gives every position in index order.

    Example:
        >>> small, large = sample_indices(10, 3, seed=0), sample_indices(10, 6, seed=0)
        >>> bool((large[:3] == small).all()), sample_indices(4, None, seed=0).tolist()
        (True, [0, 1, 2, 3])
    """
    if num_samples is None or num_samples >= dataset_size:
        return torch.arange(dataset_size)
    generator = torch.Generator().manual_seed(int(seed))
    return torch.randperm(dataset_size, generator=generator)[:num_samples]


def as_xy(batch: Any, batch_to_xy: BatchToXY | None = None) -> tuple[Any, Tensor]:
    """A batch as an ``(inputs, targets)`` pair: ``batch_to_xy(batch)``, or its first two items.

    Raises a ``TypeError`` that names the fix when the batch has another layout.

    Example:
        >>> as_xy({"x": 1, "y": 2}, lambda batch: (batch["x"], batch["y"]))
        (1, 2)
    """
    if batch_to_xy is not None:
        try:
            pair = batch_to_xy(batch)
        except Exception as error:
            raise TypeError(
                f"batch_to_xy failed on a batch of type {type(batch).__name__} with "
                f"{type(error).__name__}: {error}; it must map a batch as the DataLoader yields "
                "it to an (inputs, targets) pair"
            ) from error
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
            raise TypeError(
                f"batch_to_xy must return an (inputs, targets) pair, got {type(pair).__name__}"
            )
        return pair[0], pair[1]
    if isinstance(batch, (tuple, list)) and len(batch) >= 2:
        return batch[0], batch[1]
    keys = f" with keys {sorted(map(str, batch))}" if isinstance(batch, Mapping) else ""
    raise TypeError(
        f"batches must be (inputs, targets) tuples, got a {type(batch).__name__}{keys}: pass "
        "batch_to_xy=lambda batch: (batch['x'], batch['y']) (or whatever fits your layout) to "
        "any one of the callbacks, or define batch_to_xy(batch) on the LightningModule"
    )


def is_map_style(loader: Any) -> bool:
    """Whether ``loader`` is a ``DataLoader`` over a sized map-style dataset with a batch size.

    Example:
        >>> import torch
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> is_map_style(DataLoader(TensorDataset(torch.zeros(3)), batch_size=2))
        True
    """
    if not isinstance(loader, DataLoader):
        return False
    dataset = loader.dataset
    return (
        not isinstance(dataset, IterableDataset)
        and hasattr(dataset, "__len__")
        and loader.batch_size is not None
    )


def sample_batches(
    loader: Iterable[Any],
    *,
    num_samples: int | None = None,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
    batch_to_xy: BatchToXY | None = None,
    device: torch.device | None = None,
    split: str = "train",
) -> FixedBatches:
    """Read a fixed sample of ``(inputs, targets)`` batches from a loader (see the module doc).

    A map-style ``DataLoader`` gives the whole dataset in index order, or the
    ``num_samples`` positions of :func:`sample_indices` in drawn order; position ``p`` of the
    sample goes to rank ``p % world_size``; a private ``DataLoader`` (same batch size and
    ``collate_fn``, no shuffling, no workers) reads this rank's share. Any other iterable is
    read as it is, up to ``num_samples`` samples.

    Args:
        loader: the source.
        num_samples: sample size; ``None`` takes every sample.
        seed: seed of the sample draw.
        rank: this process's rank.
        world_size: the number of ranks sharing the sample.
        batch_to_xy: maps a batch to ``(inputs, targets)``; default: its first two items.
        device: where to move the batches; ``None`` leaves them where they are.
        split: recorded in the result.

    Example:
        >>> import torch
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> loader = DataLoader(TensorDataset(torch.randn(10, 3), torch.arange(10)), batch_size=4)
        >>> fixed = sample_batches(loader, num_samples=6, seed=0, rank=1, world_size=2)
        >>> fixed.num_samples, fixed.total_samples, fixed.dataset_size
        (3, 6, 10)
    """
    if num_samples is not None and (
        isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1
    ):
        raise ValueError(
            f"num_samples must be a positive int or None (all samples), got {num_samples!r}"
        )
    total: int | None = None
    dataset_size: int | None = None
    limit = num_samples
    reader: Iterable[Any] = loader
    if is_map_style(loader):
        assert isinstance(loader, DataLoader)
        dataset_size = len(loader.dataset)  # type: ignore[arg-type]
        indices = sample_indices(dataset_size, num_samples, seed)
        total, limit = int(indices.numel()), None
        if total < world_size:
            raise ValueError(
                f"the {split} sample has {total} samples, fewer than the {world_size} ranks: "
                "use more samples"
            )
        reader = DataLoader(
            Subset(loader.dataset, indices[rank::world_size].tolist()),
            batch_size=loader.batch_size,
            shuffle=False,
            collate_fn=loader.collate_fn,
            generator=torch.Generator().manual_seed(seed),  # not the global random state
        )
    elif world_size > 1:
        rank, world_size = 0, 1  # an iterable is each rank's own data
    batches: list[tuple[Any, Tensor]] = []
    count = 0
    for batch in reader:
        pair = as_xy(batch, batch_to_xy)
        size = _count(pair[1])
        if limit is not None and count + size > limit:
            inputs, targets = pair
            keep = limit - count
            pair = (inputs[:keep] if isinstance(inputs, Tensor) else inputs, targets[:keep])
            size = keep
        if size > 0:
            batches.append(move_batch(pair, device) if device is not None else pair)
            count += size
        if limit is not None and count >= limit:
            break
    if count == 0:
        raise ValueError(f"the {split} data yielded no samples: check the dataloader")
    return FixedBatches(batches, count, total, split, dataset_size, rank, world_size)


def curvature_batch_size(
    model: nn.Module,
    batch: tuple[Any, Any],
    *,
    budget_bytes: int,
    num_vectors: int = 1,
    most: int | None = None,
) -> int:
    """Samples per curvature batch so that one Hessian product stays within ``budget_bytes``.

    The activations of one sample are measured on one no-grad forward pass of ``batch`` in
    eval mode (inputs and every tensor output of every leaf module, divided by the batch's
    size); a product of ``num_vectors`` vectors holds about ``3 + 2 num_vectors`` times the
    activations of its batch (the forward pass and first backward graph, and the second
    backward pass of each vector; see ``HessianOperator.hvp_memory_bytes``). The result is at
    least 1 and at most ``most`` (e.g. the sample size). Larger batches cost less per sample
    (fewer passes over the model), which is where most of the time of a product on a CPU goes
    for small networks.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> batch = (torch.zeros(4, 10), torch.zeros(4))
        >>> curvature_batch_size(nn.Linear(10, 10), batch, budget_bytes=2**20)  # 80 B/sample
        2621
    """
    if isinstance(budget_bytes, bool) or not isinstance(budget_bytes, int) or budget_bytes < 1:
        raise ValueError(f"budget_bytes must be a positive int, got {budget_bytes!r}")
    inputs, targets = batch
    size = max(_count(targets), 1)
    parameter = next(model.parameters(), None)
    if parameter is not None:
        inputs = move_batch(inputs, parameter.device, parameter.dtype)
    total = [sum(t.numel() * t.element_size() for t in _leaves(inputs))]

    def count(module: nn.Module, args: Any, output: Any) -> None:
        total[0] += sum(t.numel() * t.element_size() for t in _leaves(output))

    leaves = [m for m in model.modules() if next(m.children(), None) is None]
    handles = [m.register_forward_hook(count) for m in leaves]
    try:
        with torch.no_grad(), evaluation_mode(model):
            model(inputs)
    finally:
        for handle in handles:
            handle.remove()
    per_sample = max(total[0] / size, 1.0)
    samples = int(budget_bytes // (per_sample * (3 + 2 * max(num_vectors, 1))))
    samples = max(samples, 1)
    return min(samples, most) if most is not None else samples
