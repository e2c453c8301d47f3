"""The fundamental pruning limit: distance R, sublevel-set width G(R) and their fixed point.

Pure PyTorch (no Lightning). The predicted limit is the smallest kept fraction rho with
rho >= 1 - G(R(rho)), where R(rho) is the norm of the weights removed by global magnitude
pruning and G the normalised squared Gaussian width of the loss sublevel set, estimated from a
Hessian spectrum.

Example:
    >>> import torch
    >>> from types import SimpleNamespace
    >>> from lightning_prunelimit.limit import predict_pruning_limit
    >>> _ = torch.manual_seed(0)
    >>> spectrum = SimpleNamespace(  # a Spectrum: one probe, ten equal eigenvalues
    ...     nodes=torch.ones(1, 10), weights=torch.full((1, 10), 0.1))
    >>> prediction = predict_pruning_limit(spectrum, torch.randn(1000) * 0.1, epsilon=0.01)
    >>> 0.0 < prediction.sparsity < 1.0
    True
"""

from __future__ import annotations

from lightning_prunelimit.limit.distances import (
    as_flat_weights,
    pruning_distances,
    removed_weight_norms,
)
from lightning_prunelimit.limit.epsilon import (
    DEFAULT_EPSILON_BATCH_SIZE,
    EPSILON_METHODS,
    batch_loss_std,
    check_epsilon,
    resolve_epsilon,
)
from lightning_prunelimit.limit.integrand import NEGATIVE_MODES
from lightning_prunelimit.limit.prediction import (
    LimitPrediction,
    interval_stop,
    predict_pruning_limit,
)
from lightning_prunelimit.limit.sample_error import (
    SampleError,
    estimate_sample_error,
    with_sample_error,
)
from lightning_prunelimit.limit.sublevel_width import (
    sublevel_width,
    sublevel_width_interval,
)
from lightning_prunelimit.limit.targeted_spectrum import (
    DEFAULT_TOLERANCE,
    LimitTarget,
    SpectrumEstimate,
    estimate_spectrum,
)
from lightning_prunelimit.limit.zero_curvature import (
    DEFAULT_ZERO_ROW_TOLERANCE,
    ZeroCurvature,
    zero_curvature_fraction,
)

__all__ = [
    "DEFAULT_EPSILON_BATCH_SIZE",
    "DEFAULT_TOLERANCE",
    "DEFAULT_ZERO_ROW_TOLERANCE",
    "EPSILON_METHODS",
    "NEGATIVE_MODES",
    "LimitPrediction",
    "LimitTarget",
    "SampleError",
    "SpectrumEstimate",
    "ZeroCurvature",
    "as_flat_weights",
    "batch_loss_std",
    "check_epsilon",
    "estimate_sample_error",
    "estimate_spectrum",
    "interval_stop",
    "predict_pruning_limit",
    "pruning_distances",
    "removed_weight_norms",
    "resolve_epsilon",
    "sublevel_width",
    "sublevel_width_interval",
    "with_sample_error",
    "zero_curvature_fraction",
]
