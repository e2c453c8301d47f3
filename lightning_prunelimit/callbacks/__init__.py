"""Lightning callbacks: L1 training, Hessian spectrum, predicted limit, pruning, actual limit.

Thin adapters over the pure-PyTorch layers (``curvature``, ``limit``, ``pruning``): each one
gathers the model, the loss and a fixed sample of batches from the ``Trainer``, calls those
layers, logs scalars to every logger and to ``trainer.callback_metrics``, saves figures in the
run's own directory and keeps its results in its ``state_dict`` (so they are in the checkpoints
written at the end of training). Setup mistakes are caught before the first training step;
``loss_fn`` and ``batch_to_xy`` given to one callback serve all of them.

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
from lightning_prunelimit.pruning import SparsitySweepResult

__all__ = [
    "DEFAULT_SPARSITIES",
    "GlobalOneShotPruning",
    "HessianSpectrum",
    "L1Regularization",
    "PruningLimit",
    "SparsitySweep",
    "SparsitySweepResult",
]
