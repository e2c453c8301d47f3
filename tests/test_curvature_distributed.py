"""Two gloo processes with disjoint batches give the operator of the union of their batches.

The spawned processes import this module, so it imports only torch and the package at the top:
the data and the model are built in the parent and sent to the workers.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import Tensor, nn

from lightning_prunelimit.curvature import (
    HessianOperator,
    hutchinson_trace,
    stochastic_lanczos_quadrature,
)

pytestmark = pytest.mark.usefixtures("one_thread")

# Rank 0 gets one batch (120 samples), rank 1 three (240): a plain average of the two ranks'
# operators would be wrong, only the sample-weighted one is right.
RANK_BATCHES = ((0,), (1, 2, 3))


def vectors(dim: int) -> Tensor:
    return torch.randn(3, dim, generator=torch.Generator().manual_seed(7), dtype=torch.float64)


def results(model: nn.Module, batches: list[tuple[Tensor, Tensor]]) -> dict[str, object]:
    op = HessianOperator(model, nn.functional.cross_entropy, batches)
    return {
        "num_samples": op.num_samples,
        "products": op.matvec(vectors(op.dim)),
        "single": op.matvec(vectors(op.dim)[0]),
        "nodes": stochastic_lanczos_quadrature(op, num_iters=6, num_probes=2).nodes,
        "trace": hutchinson_trace(op, num_probes=4, seed=1)[0],
    }


def worker(
    rank: int,
    world_size: int,
    rendezvous: str,
    out_dir: str,
    model: nn.Module,
    batches: list[tuple[Tensor, Tensor]],
) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=rendezvous, rank=rank, world_size=world_size)
    try:
        mine = [batches[i] for i in RANK_BATCHES[rank]]
        torch.save(results(model, mine), Path(out_dir) / f"rank{rank}.pt")
        dist.barrier()  # neither rank tears gloo down while the other is still in a collective
    finally:
        dist.destroy_process_group()


# 8 s on an idle 2-core machine (mostly the two workers importing torch), 11-13 s under load.
@pytest.mark.slow  # two spawned processes
def test_two_ranks_with_disjoint_batches_equal_one_process_on_all(tmp_path: Path) -> None:
    from _curvature_problems import digits_batches, tanh_mlp

    model, batches = tanh_mlp(), digits_batches()
    rendezvous = f"file://{tmp_path / 'rendezvous'}"
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # inherited by the workers
    mp.spawn(worker, args=(2, rendezvous, str(tmp_path), model, batches), nprocs=2, join=True)

    expected = results(model, batches)
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        assert got["num_samples"] == expected["num_samples"] == 360
        for key in ("products", "single"):
            torch.testing.assert_close(got[key], expected[key], rtol=1e-10, atol=1e-14)
        torch.testing.assert_close(got["nodes"], expected["nodes"], rtol=1e-8, atol=1e-12)
        assert got["trace"] == pytest.approx(expected["trace"], rel=1e-10)
    # One rank's batches alone give another operator: a missing all-reduce would be noticed.
    alone = results(model, batches[:1])
    assert not torch.allclose(alone["products"], expected["products"], rtol=1e-3)
