from __future__ import annotations

import json

import pytest
import torch
from _lightning_helpers import (
    DigitsWithVal,
    DumpResults,
    PerturbOtherRanks,
    RestoreOtherRanks,
    TinyClassifier,
    make_trainer,
)

from lightning_prunelimit.callbacks import (
    GlobalOneShotPruning,
    HessianSpectrum,
    PruningLimit,
    SparsitySweep,
)

pytestmark = [
    pytest.mark.slow,  # two spawned processes: about 20-30 s on two shared cores
    pytest.mark.filterwarnings("ignore:top_eigenvalues", "ignore:.*fork"),
]


def _run(tmp_path, name: str, **trainer_kwargs) -> list[dict]:
    directory = tmp_path / name
    directory.mkdir()
    perturb = PerturbOtherRanks()
    callbacks = [
        perturb,
        GlobalOneShotPruning(amount=0.6, make_pruning_permanent=False),
        RestoreOtherRanks(perturb),
        HessianSpectrum(num_iters=8, top_k=2, top_iters=8, trace_probes=4, num_samples=100),
        PruningLimit(epsilon_batch_size=16, zero_curvature=True, num_quantiles=10),
        SparsitySweep(refine_steps=2),
        DumpResults(str(directory)),
    ]
    # lr = 0: training leaves the weights at their initial values on every rank, so the
    # one-process and the two-process runs end with the same model.
    model = TinyClassifier(hidden=8, lr=0.0)
    trainer = make_trainer(directory, callbacks, max_epochs=1, logger=False, **trainer_kwargs)
    trainer.fit(model, DigitsWithVal(num_train=128, num_val=64, batch_size=16))
    return [json.loads(p.read_text()) for p in sorted(directory.glob("rank*.json"))]


def test_ddp_matches_one_process_and_every_rank_holds_the_same_masks(tmp_path):
    (single,) = _run(tmp_path, "single")
    ranks = _run(tmp_path, "ddp", devices=2, strategy="ddp_spawn")
    assert [r["world_size"] for r in ranks] == [2, 2]
    for rank in ranks:
        # masks: computed on rank zero, broadcast (rank 1's weights were perturbed)
        assert rank["masks"] == single["masks"]
        assert rank["live_masks"] == single["masks"]
        # spectrum: each rank holds half of the sample, products are all-reduced
        torch.testing.assert_close(
            torch.tensor(rank["spectrum"]["nodes"]),
            torch.tensor(single["spectrum"]["nodes"]),
            rtol=0,
            atol=1e-9,
        )
        torch.testing.assert_close(
            torch.tensor(rank["top_eigenvalues"]),
            torch.tensor(single["top_eigenvalues"]),
            rtol=0,
            atol=1e-9,
        )
        assert rank["trace"] == pytest.approx(single["trace"], abs=1e-9)
        # prediction: epsilon over the whole sample on every rank
        for key in ("kept_fraction", "sparsity", "epsilon", "zero_fraction"):
            assert rank["prediction"][key] == pytest.approx(single["prediction"][key], abs=1e-9)
        # sweep: sums all-reduced over the ranks' shares of the validation data
        assert rank["sweep"]["sparsities"] == single["sweep"]["sparsities"]
        assert rank["sweep"]["accuracies"] == pytest.approx(single["sweep"]["accuracies"])
        assert rank["sweep"]["losses"] == pytest.approx(single["sweep"]["losses"], abs=1e-12)
        assert rank["sweep"]["actual_limit"] == single["sweep"]["actual_limit"]
        # per-sample correctness gathered back in the one-process order: same interval
        assert rank["sweep"]["actual_limit_interval"] == pytest.approx(
            single["sweep"]["actual_limit_interval"], abs=1e-12
        )
        assert rank["sweep"]["paired_test_limit"] == single["sweep"]["paired_test_limit"]
        assert rank["sweep"]["num_samples"] == 64
