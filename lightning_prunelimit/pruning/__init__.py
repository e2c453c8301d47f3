"""Global magnitude pruning: which weights to prune, keep-masks, applying them, measuring sparsity.

Pure PyTorch (no Lightning). Masks are boolean keep-masks keyed ``"<module>.<param>"`` and are
installed through ``torch.nn.utils.prune``.

Example:
    >>> import torch
    >>> from lightning_prunelimit.pruning import (
    ...     apply_masks, global_magnitude_masks, sparsity_report)
    >>> _ = torch.manual_seed(0)
    >>> model = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    >>> apply_masks(model, global_magnitude_masks(model, amount=0.5))
    >>> sparsity_report(model).global_sparsity
    0.5
"""

from __future__ import annotations

from lightning_prunelimit.pruning.apply import (
    apply_masks,
    is_pruned,
    make_pruning_permanent,
    masks_from_model,
    remove_masks,
)
from lightning_prunelimit.pruning.masks import check_amount, global_magnitude_masks, num_to_prune
from lightning_prunelimit.pruning.parameters import (
    PRUNABLE_MODULE_TYPES,
    check_parameter_names,
    effective_parameter,
    parameter_key,
    prunable_parameters,
)
from lightning_prunelimit.pruning.refit import (
    DEFAULT_REFIT_LR,
    REFIT_OPTIMIZERS,
    RefitResult,
    check_refit_lr,
    refit_kept_weights,
)
from lightning_prunelimit.pruning.restore import restore_on_exit
from lightning_prunelimit.pruning.sparsity import SparsityReport, sparsity_report

__all__ = [
    "DEFAULT_REFIT_LR",
    "PRUNABLE_MODULE_TYPES",
    "REFIT_OPTIMIZERS",
    "RefitResult",
    "SparsityReport",
    "apply_masks",
    "check_amount",
    "check_parameter_names",
    "check_refit_lr",
    "effective_parameter",
    "is_pruned",
    "global_magnitude_masks",
    "make_pruning_permanent",
    "masks_from_model",
    "num_to_prune",
    "parameter_key",
    "prunable_parameters",
    "refit_kept_weights",
    "remove_masks",
    "restore_on_exit",
    "sparsity_report",
]
