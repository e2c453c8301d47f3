"""The fixed sample in the core: drawn order, nesting, DDP shares, parts and re-batching."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from lightning_prunelimit.curvature import HessianOperator
from lightning_prunelimit.curvature.fixed_sample import (
    FixedBatches,
    curvature_batch_size,
    sample_batches,
    sample_indices,
)


def _loader(num: int = 50, batch_size: int = 8) -> DataLoader:
    x = torch.arange(num, dtype=torch.float64).unsqueeze(1)
    return DataLoader(TensorDataset(x, torch.arange(num)), batch_size=batch_size, shuffle=True)


def _labels(fixed: FixedBatches) -> list[int]:
    return [int(label) for _, y in fixed.batches for label in y]


def test_whole_dataset_in_index_order_and_in_the_loaders_batch_size():
    fixed = sample_batches(_loader(50, 8))
    assert [len(y) for _, y in fixed.batches] == [8] * 6 + [2]
    assert torch.equal(torch.cat([y for _, y in fixed.batches]), torch.arange(50))
    assert (fixed.num_samples, fixed.total_samples) == (50, 50)


def test_seeded_sample_is_fixed_in_drawn_order_and_seed_dependent():
    first = sample_batches(_loader(), num_samples=20, seed=3)
    again = sample_batches(_loader(), num_samples=20, seed=3)
    other = sample_batches(_loader(), num_samples=20, seed=4)
    picked = torch.cat([y for _, y in first.batches])
    expected = torch.randperm(50, generator=torch.Generator().manual_seed(3))[:20]
    assert torch.equal(picked, expected)
    assert torch.equal(picked, torch.cat([y for _, y in again.batches]))
    assert not torch.equal(picked, torch.cat([y for _, y in other.batches]))


def test_reading_the_sample_does_not_touch_the_global_random_state():
    torch.manual_seed(11)
    expected = torch.rand(3)
    torch.manual_seed(11)
    sample_batches(_loader(), num_samples=20, seed=3)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("world_size", [2, 3])
def test_rank_shares_partition_the_sample(world_size):
    shares = [
        torch.cat(
            [
                y
                for _, y in sample_batches(
                    _loader(), num_samples=31, seed=1, rank=r, world_size=world_size
                ).batches
            ]
        )
        for r in range(world_size)
    ]
    whole = torch.cat([y for _, y in sample_batches(_loader(), num_samples=31, seed=1).batches])
    assert sorted(torch.cat(shares).tolist()) == sorted(whole.tolist())
    assert sum(len(s) for s in shares) == 31
    assert max(len(s) for s in shares) - min(len(s) for s in shares) <= 1


def test_iterable_sources_are_read_up_to_num_samples():
    batches = [(torch.zeros(4, 2), torch.arange(4)) for _ in range(5)]
    fixed = sample_batches(batches, num_samples=10)
    assert [len(y) for _, y in fixed.batches] == [4, 4, 2]
    assert fixed.total_samples is None


class _DictData(Dataset):
    def __len__(self) -> int:
        return 6

    def __getitem__(self, index: int) -> dict:
        return {"image": torch.full((2,), float(index)), "label": index}


def test_other_batch_layouts_need_batch_to_xy():
    loader = DataLoader(_DictData(), batch_size=4)
    with pytest.raises(TypeError, match="batch_to_xy"):
        sample_batches(loader)
    fixed = sample_batches(loader, batch_to_xy=lambda b: (b["image"], b["label"]))
    assert torch.equal(torch.cat([y for _, y in fixed.batches]), torch.arange(6))


def test_bad_num_samples_and_too_few_samples_for_the_ranks():
    with pytest.raises(ValueError, match="num_samples must be a positive int"):
        sample_batches(_loader(), num_samples=0)
    with pytest.raises(ValueError, match="fewer than the 3 ranks"):
        sample_batches(_loader(2), rank=0, world_size=3)


def test_samples_of_one_seed_are_nested():
    small = _labels(sample_batches(_loader(), num_samples=12, seed=5))
    large = _labels(sample_batches(_loader(), num_samples=24, seed=5))
    assert large[:12] == small
    assert len(set(large)) == 24
    assert sample_indices(50, 24, 5)[:12].tolist() == sample_indices(50, 12, 5).tolist()


def test_head_and_split_give_nested_and_disjoint_parts():
    fixed = sample_batches(_loader(50, 8), num_samples=30, seed=2)
    head = fixed.head(12)
    assert _labels(head) == _labels(sample_batches(_loader(), num_samples=12, seed=2))
    assert (head.num_samples, head.total_samples, head.dataset_size) == (12, 12, 50)
    first, second = fixed.split_at(15)
    assert _labels(first) + _labels(second) == _labels(fixed)
    assert (first.num_samples, second.num_samples) == (15, 15)
    with pytest.raises(ValueError, match="non-empty and inside it"):
        fixed.split_at(0)
    with pytest.raises(ValueError, match="non-empty and inside it"):
        fixed.head(31)


@pytest.mark.parametrize("world_size", [2, 3])
def test_parts_of_rank_shares_partition_the_parts_of_the_sample(world_size):
    whole = sample_batches(_loader(), num_samples=31, seed=1)
    shares = [
        sample_batches(_loader(), num_samples=31, seed=1, rank=r, world_size=world_size)
        for r in range(world_size)
    ]
    for begin, end in [(0, 10), (10, 31), (0, 31), (7, 8)]:
        expected = _labels(whole._part(begin, end))
        parts = [share._part(begin, end) for share in shares]
        got = sorted(label for part in parts for label in _labels(part))
        assert got == sorted(expected)
        assert all(part.total_samples == end - begin for part in parts)


def test_rebatched_keeps_samples_and_order():
    fixed = sample_batches(_loader(50, 8), num_samples=30, seed=2)
    again = fixed.rebatched(13)
    assert [len(y) for _, y in again.batches] == [13, 13, 4]
    assert _labels(again) == _labels(fixed)
    assert torch.equal(
        torch.cat([x for x, _ in again.batches]), torch.cat([x for x, _ in fixed.batches])
    )
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        fixed.rebatched(0)


def test_rebatched_hessian_equals_the_loader_batches_hessian():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 4)).double()
    x = torch.randn(37, 3, dtype=torch.float64)
    y = torch.randint(0, 4, (37,))
    fixed = sample_batches(DataLoader(TensorDataset(x, y), batch_size=5))
    v = torch.randn(3, sum(p.numel() for p in model.parameters()), dtype=torch.float64)
    small = HessianOperator(model, nn.functional.cross_entropy, fixed.batches) @ v
    large = HessianOperator(model, nn.functional.cross_entropy, fixed.rebatched(64).batches) @ v
    assert torch.allclose(small, large, rtol=1e-10, atol=1e-12)


def test_batches_that_are_not_row_wise_tensors_are_kept_as_they_are():
    batches = [(["a", "b"], torch.arange(2)), (["c", "d"], torch.arange(2))]
    fixed = sample_batches(batches)
    assert not fixed.row_wise
    assert fixed.rebatched(4) is fixed
    assert _labels(fixed.split_at(2)[1]) == [0, 1]
    with pytest.raises(TypeError, match="into rows"):
        fixed.split_at(1)


def test_curvature_batch_size_follows_the_budget_and_the_cap():
    model = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 2))
    batch = (torch.zeros(8, 10), torch.zeros(8, dtype=torch.long))
    # per sample: inputs 40 B, outputs 80 + 80 + 8 B = 208 B; one vector: 5 x 208 B
    assert curvature_batch_size(model, batch, budget_bytes=208 * 5 * 100) == 100
    assert curvature_batch_size(model, batch, budget_bytes=208 * 7 * 100, num_vectors=2) == 100
    assert curvature_batch_size(model, batch, budget_bytes=10**9, most=37) == 37
    assert curvature_batch_size(model, batch, budget_bytes=1) == 1
    with pytest.raises(ValueError, match="budget_bytes"):
        curvature_batch_size(model, batch, budget_bytes=0)
