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
from lightning_prunelimit.pruning.sparsity import SparsityReport, sparsity_report

__all__ = [
    "PRUNABLE_MODULE_TYPES",
    "SparsityReport",
    "apply_masks",
    "check_amount",
    "check_parameter_names",
    "effective_parameter",
    "is_pruned",
    "global_magnitude_masks",
    "make_pruning_permanent",
    "masks_from_model",
    "num_to_prune",
    "parameter_key",
    "prunable_parameters",
    "remove_masks",
    "sparsity_report",
]
