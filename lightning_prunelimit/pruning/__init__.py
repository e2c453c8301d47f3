"""Global magnitude pruning: which weights, keep-masks, applying them, sparsity, the actual limit.

Pure PyTorch (no Lightning). Masks are boolean keep-masks keyed ``"<module>.<param>"`` and are
installed through ``torch.nn.utils.prune`` (whose ``<name>_orig`` / ``<name>_mask`` naming lives in
``reparametrization``). :func:`actual_pruning_limit` measures how sparse a model can be one-shot
pruned before it fails a tolerance.

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

from lightning_prunelimit.pruning.actual_limit import (
    CRITERIA,
    DEFAULT_SPARSITIES,
    METRICS,
    SparsitySweepResult,
    actual_pruning_limit,
    check_search_settings,
    check_sparsities,
)
from lightning_prunelimit.pruning.agreement import IntervalAgreement, interval_agreement
from lightning_prunelimit.pruning.apply import (
    apply_masks,
    make_pruning_permanent,
    masks_from_model,
    prune_globally,
    remove_masks,
)
from lightning_prunelimit.pruning.coordinates import check_parameters_covered, prunable_coordinates
from lightning_prunelimit.pruning.evaluation import (
    SampleEvaluation,
    evaluate_model,
    evaluate_samples,
)
from lightning_prunelimit.pruning.l1 import l1_norm, l1_parameters
from lightning_prunelimit.pruning.limit_statistics import (
    DEFAULT_CONFIDENCE,
    DEFAULT_NUM_BOOTSTRAP,
    DEFAULT_SIGNIFICANCE,
    bootstrap_limit_interval,
    check_level,
    pass_table,
)
from lightning_prunelimit.pruning.masked_weights import MaskedWeights
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
from lightning_prunelimit.pruning.reparametrization import (
    MASK_SUFFIX,
    ORIG_SUFFIX,
    align_pruning_keys,
    fold_pruned_entries,
    is_pruned,
    mask_name,
    orig_name,
    plain_parameter_name,
    pruned_names,
)
from lightning_prunelimit.pruning.restore import restore_on_exit
from lightning_prunelimit.pruning.sparsity import SparsityReport, sparsity_report

__all__ = [
    "CRITERIA",
    "DEFAULT_CONFIDENCE",
    "DEFAULT_NUM_BOOTSTRAP",
    "DEFAULT_REFIT_LR",
    "DEFAULT_SIGNIFICANCE",
    "DEFAULT_SPARSITIES",
    "MASK_SUFFIX",
    "METRICS",
    "ORIG_SUFFIX",
    "PRUNABLE_MODULE_TYPES",
    "REFIT_OPTIMIZERS",
    "IntervalAgreement",
    "MaskedWeights",
    "RefitResult",
    "SampleEvaluation",
    "SparsityReport",
    "SparsitySweepResult",
    "actual_pruning_limit",
    "align_pruning_keys",
    "apply_masks",
    "bootstrap_limit_interval",
    "check_amount",
    "check_level",
    "check_parameter_names",
    "check_parameters_covered",
    "check_search_settings",
    "check_sparsities",
    "check_refit_lr",
    "effective_parameter",
    "evaluate_model",
    "evaluate_samples",
    "fold_pruned_entries",
    "global_magnitude_masks",
    "interval_agreement",
    "is_pruned",
    "l1_norm",
    "l1_parameters",
    "make_pruning_permanent",
    "mask_name",
    "masks_from_model",
    "num_to_prune",
    "orig_name",
    "parameter_key",
    "pass_table",
    "plain_parameter_name",
    "prunable_coordinates",
    "prunable_parameters",
    "prune_globally",
    "pruned_names",
    "refit_kept_weights",
    "remove_masks",
    "restore_on_exit",
    "sparsity_report",
]
