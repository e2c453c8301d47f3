"""How sparse a model or a set of masks actually is, globally and per layer."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from lightning_prunelimit.pruning.parameters import (
    effective_parameter,
    parameter_key,
    prunable_parameters,
)
from lightning_prunelimit.pruning.reparametrization import is_pruned, mask_name

__all__ = ["SparsityReport", "sparsity_report"]


@dataclass(frozen=True)
class SparsityReport:
    """Realised sparsity: the fraction of prunable entries that are pruned.

    Attributes:
        global_sparsity: ``num_pruned / num_total`` (sum of zeros over sum of sizes, so large
            layers weigh more than small ones).
        num_pruned: number of pruned entries over all tensors.
        num_total: number of entries over all tensors.
        per_layer: sparsity of each tensor, keyed ``"<module>.<param>"``.
        per_layer_sizes: number of entries of each tensor, same keys.

    Example:
        >>> report = SparsityReport(0.25, 1, 4, {"0.weight": 0.25}, {"0.weight": 4})
        >>> SparsityReport.from_dict(report.to_dict()) == report
        True
    """

    global_sparsity: float
    num_pruned: int
    num_total: int
    per_layer: dict[str, float] = field(default_factory=dict)
    per_layer_sizes: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-friendly dictionary (floats, ints and dicts).

        Example:
            >>> SparsityReport(0.5, 1, 2, {"w": 0.5}, {"w": 2}).to_dict()["per_layer"]
            {'w': 0.5}
        """
        return {
            "global_sparsity": float(self.global_sparsity),
            "num_pruned": int(self.num_pruned),
            "num_total": int(self.num_total),
            "per_layer": {k: float(v) for k, v in self.per_layer.items()},
            "per_layer_sizes": {k: int(v) for k, v in self.per_layer_sizes.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SparsityReport:
        """Rebuild a report from ``to_dict()`` output.

        Example:
            >>> SparsityReport.from_dict({"global_sparsity": 0.0, "num_pruned": 0,
            ...     "num_total": 3, "per_layer": {"w": 0.0}}).num_total
            3
        """
        return cls(
            global_sparsity=float(data["global_sparsity"]),
            num_pruned=int(data["num_pruned"]),
            num_total=int(data["num_total"]),
            per_layer={str(k): float(v) for k, v in data.get("per_layer", {}).items()},
            per_layer_sizes={str(k): int(v) for k, v in data.get("per_layer_sizes", {}).items()},
        )


def _report(counts: dict[str, tuple[int, int]]) -> SparsityReport:
    num_pruned = sum(pruned for pruned, _ in counts.values())
    num_total = sum(size for _, size in counts.values())
    return SparsityReport(
        global_sparsity=num_pruned / num_total if num_total else 0.0,
        num_pruned=num_pruned,
        num_total=num_total,
        per_layer={k: (p / n if n else 0.0) for k, (p, n) in counts.items()},
        per_layer_sizes={k: n for k, (_, n) in counts.items()},
    )


def sparsity_report(
    model_or_masks: nn.Module | Mapping[str, Tensor],
    *,
    parameter_names: Sequence[str] = ("weight",),
    parameters_to_prune: Sequence[tuple[nn.Module, str]] = (),
) -> SparsityReport:
    """Measure sparsity from the actual masks, or from the actual zeros of the weights.

    Given a mapping of keep-masks, each tensor's sparsity is its fraction of ``False`` / 0
    entries. Given a model, the prunable parameters (see ``prunable_parameters``) are measured:
    a parameter carrying a ``torch.nn.utils.prune`` mask counts its masked entries; one
    without a mask counts the exact zeros of its value. The global value is the sum of pruned
    entries over the sum of sizes (not an average of per-layer values).

    Args:
        model_or_masks: a model, or a mapping ``"<module>.<param>"`` -> keep-mask.
        parameter_names: parameter names taken from each Linear/Conv module (models only).
        parameters_to_prune: explicit ``(module, name)`` pairs (models only).

    Example:
        >>> import torch
        >>> masks = {"a.weight": torch.tensor([True, False]), "b.weight": torch.tensor([1, 1])}
        >>> report = sparsity_report(masks)
        >>> report.global_sparsity, report.per_layer["a.weight"]
        (0.25, 0.5)
    """
    counts: dict[str, tuple[int, int]] = {}
    if isinstance(model_or_masks, nn.Module):
        model = model_or_masks
        for qualified, module, name in prunable_parameters(
            model, parameter_names, parameters_to_prune
        ):
            if is_pruned(module, name):
                mask = getattr(module, mask_name(name))
                pruned = int((mask == 0).sum())
                size = mask.numel()
            else:
                value = effective_parameter(module, name)
                pruned = int((value == 0).sum())
                size = value.numel()
            counts[parameter_key(qualified, name)] = (pruned, size)
    elif isinstance(model_or_masks, Mapping):
        if not model_or_masks:
            raise ValueError("no masks given: pass a model or a non-empty mapping of masks")
        for key, mask in model_or_masks.items():
            if not isinstance(mask, Tensor):
                raise TypeError(f"mask for {key!r} must be a tensor, got {type(mask).__name__}")
            counts[str(key)] = (int((mask == 0).sum()), mask.numel())
    else:
        raise TypeError(
            "sparsity_report takes a torch.nn.Module or a mapping of masks, got "
            f"{type(model_or_masks).__name__}"
        )
    return _report(counts)
