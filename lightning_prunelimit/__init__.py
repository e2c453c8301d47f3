"""How sparse can this network be pruned? Lightning callbacks for the fundamental pruning limit.

The callbacks are imported lazily so that the pure-PyTorch layers (``curvature``, ``limit``,
``pruning``) can be used without importing Lightning.

Example:
    >>> from lightning_prunelimit import HessianSpectrum, PruningLimit
    >>> callbacks = [HessianSpectrum(num_iters=32), PruningLimit(epsilon="batch_loss_std")]
    >>> from lightning_prunelimit import LimitPrediction, Spectrum  # the results' types
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "L1Regularization": "lightning_prunelimit.callbacks.l1_regularization",
    "HessianSpectrum": "lightning_prunelimit.callbacks.hessian_spectrum",
    "PruningLimit": "lightning_prunelimit.callbacks.pruning_limit",
    "GlobalOneShotPruning": "lightning_prunelimit.callbacks.global_one_shot_pruning",
    "SparsitySweep": "lightning_prunelimit.callbacks.sparsity_sweep",
    "SparsitySweepResult": "lightning_prunelimit.pruning.actual_limit",
    # results, from the pure-PyTorch layers (importing them does not import Lightning)
    "Spectrum": "lightning_prunelimit.curvature.spectrum",
    "LimitPrediction": "lightning_prunelimit.limit.prediction",
}

__all__ = [
    "GlobalOneShotPruning",
    "HessianSpectrum",
    "L1Regularization",
    "LimitPrediction",
    "PruningLimit",
    "SparsitySweep",
    "SparsitySweepResult",
    "Spectrum",
    "__version__",
]

if TYPE_CHECKING:  # pragma: no cover
    from lightning_prunelimit.callbacks.global_one_shot_pruning import GlobalOneShotPruning
    from lightning_prunelimit.callbacks.hessian_spectrum import HessianSpectrum
    from lightning_prunelimit.callbacks.l1_regularization import L1Regularization
    from lightning_prunelimit.callbacks.pruning_limit import PruningLimit
    from lightning_prunelimit.callbacks.sparsity_sweep import SparsitySweep
    from lightning_prunelimit.curvature.spectrum import Spectrum
    from lightning_prunelimit.limit.prediction import LimitPrediction
    from lightning_prunelimit.pruning.actual_limit import SparsitySweepResult


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lightning_prunelimit' has no attribute {name!r}")
