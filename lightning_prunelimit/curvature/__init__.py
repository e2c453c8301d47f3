"""The Hessian as a linear operator over fixed batches, and the Krylov algorithms on it.

Pure PyTorch (no Lightning). :class:`HessianOperator` multiplies the loss Hessian of a network
with vectors (blocks of vectors in one pass over the data); :func:`stochastic_lanczos_quadrature`
turns it into a :class:`Spectrum`; :func:`top_eigenvalues` and :func:`hutchinson_trace` give the
sharpest curvatures and the trace. Any object with ``dim`` and ``matvec`` works as an operator
(:class:`LinearOperator`); :class:`DenseOperator` wraps an explicit matrix.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from lightning_prunelimit.curvature import (
    ...     HessianOperator, stochastic_lanczos_quadrature, top_eigenvalues)
    >>> _ = torch.manual_seed(0)
    >>> model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
    >>> batches = [(torch.randn(16, 4), torch.randint(0, 3, (16,)))]
    >>> op = HessianOperator(model, nn.functional.cross_entropy, batches)
    >>> spectrum = stochastic_lanczos_quadrature(op, num_iters=op.dim)
    >>> bool(abs(spectrum.max_node - float(top_eigenvalues(op)[0])) < 1e-4)
    True
"""

from __future__ import annotations

from lightning_prunelimit.curvature.dense_operator import DenseOperator
from lightning_prunelimit.curvature.evaluation_mode import evaluation_mode
from lightning_prunelimit.curvature.fixed_sample import (
    FixedBatches,
    curvature_batch_size,
    sample_batches,
    sample_indices,
)
from lightning_prunelimit.curvature.float32_precision import full_float32_precision
from lightning_prunelimit.curvature.hessian_operator import BACKENDS, HessianOperator
from lightning_prunelimit.curvature.hutchinson import hutchinson_trace, spectrum_trace
from lightning_prunelimit.curvature.lanczos import LanczosResult, lanczos
from lightning_prunelimit.curvature.lanczos_basis import LanczosBasis
from lightning_prunelimit.curvature.linear_operator import LinearOperator
from lightning_prunelimit.curvature.memory_plan import (
    LanczosMemoryPlan,
    default_memory_budget,
    plan_lanczos_memory,
)
from lightning_prunelimit.curvature.move_batch import move_batch
from lightning_prunelimit.curvature.parameter_selection import (
    NORMALIZATION_LAYERS,
    ParameterSelection,
    select_parameters,
)
from lightning_prunelimit.curvature.rademacher import rademacher
from lightning_prunelimit.curvature.spectrum import Spectrum
from lightning_prunelimit.curvature.stochastic_lanczos_quadrature import (
    run_probe_groups,
    stochastic_lanczos_quadrature,
)
from lightning_prunelimit.curvature.top_eigenvalues import ritz_top_eigenvalues, top_eigenvalues

__all__ = [
    "BACKENDS",
    "NORMALIZATION_LAYERS",
    "DenseOperator",
    "FixedBatches",
    "HessianOperator",
    "LanczosBasis",
    "LanczosMemoryPlan",
    "LanczosResult",
    "LinearOperator",
    "ParameterSelection",
    "Spectrum",
    "curvature_batch_size",
    "default_memory_budget",
    "evaluation_mode",
    "full_float32_precision",
    "hutchinson_trace",
    "lanczos",
    "move_batch",
    "plan_lanczos_memory",
    "rademacher",
    "ritz_top_eigenvalues",
    "run_probe_groups",
    "sample_batches",
    "sample_indices",
    "select_parameters",
    "spectrum_trace",
    "stochastic_lanczos_quadrature",
    "top_eigenvalues",
]
