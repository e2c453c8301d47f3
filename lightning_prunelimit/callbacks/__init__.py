"""Lightning callbacks: L1 training, Hessian spectrum, predicted limit, pruning, actual limit.

Thin adapters over the pure-PyTorch layers (``curvature``, ``limit``, ``pruning``): each one
gathers the model, the loss and a fixed sample of batches from the ``Trainer``, calls those
layers, logs scalars to every logger, saves figures in the run's log directory and keeps its
results in its ``state_dict`` (so they survive checkpoints).

Example:
    >>> import lightning.pytorch as pl
    >>> from lightning_prunelimit.callbacks import HessianSpectrum, PruningLimit, SparsitySweep
    >>> limit = PruningLimit(epsilon="batch_loss_std")
    >>> trainer = pl.Trainer(max_epochs=1, logger=False,
    ...     callbacks=[HessianSpectrum(num_iters=32), limit, SparsitySweep()])
"""

from __future__ import annotations

from lightning_prunelimit.callbacks.global_one_shot_pruning import GlobalOneShotPruning
from lightning_prunelimit.callbacks.hessian_spectrum import HessianSpectrum
from lightning_prunelimit.callbacks.l1_regularization import L1Regularization
from lightning_prunelimit.callbacks.pruning_limit import PruningLimit
from lightning_prunelimit.callbacks.sparsity_sweep import DEFAULT_SPARSITIES, SparsitySweep
from lightning_prunelimit.callbacks.sparsity_sweep_result import SparsitySweepResult

__all__ = [
    "DEFAULT_SPARSITIES",
    "GlobalOneShotPruning",
    "HessianSpectrum",
    "L1Regularization",
    "PruningLimit",
    "SparsitySweep",
    "SparsitySweepResult",
]
