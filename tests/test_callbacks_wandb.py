from __future__ import annotations

from pathlib import Path

import pytest
from _lightning_helpers import DigitsWithVal, TinyClassifier, make_trainer, wandb_offline_env
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger, WandbLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lightning_prunelimit.callbacks import (
    GlobalOneShotPruning,
    HessianSpectrum,
    L1Regularization,
    PruningLimit,
    SparsitySweep,
)

pytestmark = pytest.mark.filterwarnings("ignore:top_eigenvalues")


def test_wandb_and_tensorboard_receive_the_scalars_and_wandb_the_media(tmp_path, monkeypatch):
    wandb_offline_env(monkeypatch, tmp_path)
    wandb_logger = WandbLogger(offline=True, save_dir=str(tmp_path))
    csv_logger = CSVLogger(str(tmp_path), name="csv")
    tb_logger = TensorBoardLogger(str(tmp_path), name="tb")
    callbacks = [
        L1Regularization(strength=1e-4),
        GlobalOneShotPruning(amount=0.4, make_pruning_permanent=False),
        HessianSpectrum(num_iters=6, top_k=2, top_iters=6, trace_probes=2),
        PruningLimit(epsilon_batch_size=16),
        SparsitySweep(sparsities=(0.5, 0.9), refine_steps=1),
    ]
    try:
        model = TinyClassifier(hidden=8)
        make_trainer(
            tmp_path, callbacks, max_epochs=2, logger=[wandb_logger, csv_logger, tb_logger]
        ).fit(model, DigitsWithVal(num_train=64, num_val=32, batch_size=32))
        summary = dict(wandb_logger.experiment.summary)
        norm = callbacks[0].l1_norm(model)
        scalars = {"l1/norm": norm, "l1/penalty": 1e-4 * norm}
        for callback in callbacks[1:]:
            scalars.update(callback.metrics())
        spent = {"hessian/num_samples", "hessian/time_lanczos", "prune_limit/time_prediction"}
        assert spent <= set(scalars), spent - set(scalars)
        assert len(scalars) == 40
        for key, value in scalars.items():
            assert summary[key] == pytest.approx(value), key
        events = EventAccumulator(tb_logger.log_dir)
        events.Reload()
        for key, value in scalars.items():
            assert events.Scalars(key)[-1].value == pytest.approx(value, rel=1e-6), key
        media = {
            "hessian/spectrum",
            "hessian/density_table",
            "hessian/ritz",
            "prune_limit/figure",
            "prune_limit/curves",
            "pruning/figure",
            "pruning/layers",
            "sparsity_sweep/figure",
            "sparsity_sweep/curve",
            "sparsity_sweep/accuracy_table",
        }
        assert media <= set(summary), media - set(summary)
        pattern = "wandb/offline-run-*/files/media/images/**/*.png"
        images = sorted(p.name for p in tmp_path.glob(pattern))
        assert len(images) == 4, images
        # the PNGs go to the run's own folder (the CSV logger's version_<n>), never to the
        # save_dir that W&B shares between runs
        for name in ("hessian_spectrum", "prune_limit", "pruning_sparsity", "sparsity_sweep"):
            assert (Path(csv_logger.log_dir) / f"{name}.png").stat().st_size > 1000
            assert not (tmp_path / f"{name}.png").exists()
    finally:
        wandb_logger.experiment.finish()
