from __future__ import annotations

import gc

import pytest
import torch
from _lightning_helpers import DigitsWithVal, TinyClassifier, make_trainer

from lightning_prunelimit.callbacks import (
    GlobalOneShotPruning,
    HessianSpectrum,
    L1Regularization,
    PruningLimit,
    SparsitySweep,
)

pytestmark = pytest.mark.filterwarnings("ignore:top_eigenvalues")


def _live_tensors() -> int:
    gc.collect()
    return sum(1 for obj in gc.get_objects() if isinstance(obj, torch.Tensor))


def test_repeated_fits_do_not_grow_memory(tmp_path):
    callbacks = [
        L1Regularization(strength=1e-4),
        GlobalOneShotPruning(amount=0.3),
        HessianSpectrum(num_iters=4, top_k=1, top_iters=4, trace_probes=2),
        PruningLimit(epsilon_batch_size=16, zero_curvature=True, num_quantiles=4),
        SparsitySweep(sparsities=(0.5,), refine_steps=1),
    ]
    model = TinyClassifier(hidden=8)
    datamodule = DigitsWithVal(num_train=64, num_val=32, batch_size=32)
    counts, hooks = [], []
    for _ in range(3):
        make_trainer(tmp_path, callbacks, max_epochs=1, logger=False).fit(model, datamodule)
        counts.append(_live_tensors())
        hooks.append(len(model._load_state_dict_pre_hooks) + len(model.net[0]._forward_pre_hooks))
    assert counts[1] == counts[2], counts
    assert hooks == [0, 0, 0]
    assert not any(p.grad is not None and p.grad.grad_fn is not None for p in model.parameters())
