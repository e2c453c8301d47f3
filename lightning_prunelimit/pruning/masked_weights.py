"""Globally magnitude-pruned weights swapped into a model in place, and put back exactly."""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Any

import torch
from torch import Tensor, nn

from lightning_prunelimit.pruning.masks import num_to_prune
from lightning_prunelimit.pruning.parameters import (
    effective_parameter,
    parameter_key,
    prunable_parameters,
)
from lightning_prunelimit.pruning.reparametrization import is_pruned, orig_name

__all__ = ["MaskedWeights"]


class MaskedWeights:
    """Prune a model's weights to any sparsity for a while, then restore them exactly.

    One stable sort of all ``|w|`` (the effective values, so weights already pruned by
    ``torch.nn.utils.prune`` rank first) serves every sparsity: :meth:`prune` zeroes the
    ``round(s * N)`` first positions of that order, which are exactly the masks of
    ``global_magnitude_masks`` (ties go by position). Every call starts from the original
    values, so sparsities can be visited in any order and the kept weights may be changed in
    between (e.g. re-fitted). :meth:`restore` (or leaving the ``with`` block) puts every weight
    back bit for bit, with torch prune's cached attribute.

    Args:
        model: the model whose weights are swapped in place.
        parameter_names: parameter names taken from each Linear/Conv module.
        parameters_to_prune: explicit ``(module, name)`` pairs; overrides the default selection.

    Example:
        >>> import torch
        >>> model = torch.nn.Linear(4, 1, bias=False)
        >>> with torch.no_grad():
        ...     _ = model.weight.copy_(torch.tensor([[0.1, -2.0, 0.3, 4.0]]))
        >>> with MaskedWeights(model) as weights:
        ...     keep = weights.prune(0.5)
        ...     model.weight.tolist()
        [[0.0, -2.0, 0.0, 4.0]]
        >>> keep["weight"].tolist(), model.weight.tolist()
        ([[False, True, False, True]], [[0.10000000149011612, -2.0, 0.30000001192092896, 4.0]])
    """

    def __init__(
        self,
        model: nn.Module,
        parameter_names: Sequence[str] = ("weight",),
        parameters_to_prune: Sequence[tuple[nn.Module, str]] = (),
    ) -> None:
        entries = prunable_parameters(model, parameter_names, parameters_to_prune)
        self._targets: list[tuple[str, nn.Module, str, Tensor, Tensor, Any]] = []
        magnitudes = []
        for qualified, module, name in entries:
            param, attribute = module._parameters.get(name), None
            if is_pruned(module, name):  # the forward uses weight = weight_orig * weight_mask
                param = module._parameters[orig_name(name)]
                attribute = getattr(module, name)  # recomputed at each forward; put back after
            key = parameter_key(qualified, name)
            self._targets.append((key, module, name, param, param.detach().clone(), attribute))
            magnitudes.append(effective_parameter(module, name).reshape(-1).abs().to(torch.float64))
        flat = torch.cat(magnitudes)
        #: The number of prunable weights N.
        self.num_weights: int = flat.numel()
        self._order = torch.sort(flat, stable=True).indices

    @property
    def keys(self) -> list[str]:
        """The ``"<module>.<param>"`` keys of the swapped weights, in model order.

        Example:
            >>> import torch
            >>> MaskedWeights(torch.nn.Sequential(torch.nn.Linear(2, 2))).keys
            ['0.weight']
        """
        return [target[0] for target in self._targets]

    @torch.no_grad()
    def prune(self, sparsity: float) -> dict[str, Tensor]:
        """Zero the ``round(sparsity * N)`` smallest weights (ranked on the original values).

        Returns:
            The keep-masks now in force, keyed ``"<module>.<param>"`` (bool, on each weight's
            device).

        Example:
            >>> import torch
            >>> with MaskedWeights(torch.nn.Linear(10, 10)) as weights:
            ...     int(sum((~m).sum() for m in weights.prune(0.3).values()))
            30
        """
        keep = torch.ones(self.num_weights, dtype=torch.bool, device=self._order.device)
        keep[self._order[: num_to_prune(sparsity, self.num_weights)]] = False
        masks: dict[str, Tensor] = {}
        offset = 0
        for key, _, _, param, original, _ in self._targets:
            size = original.numel()
            part = keep[offset : offset + size].view_as(original).to(original.device)
            param.copy_(original * part)
            masks[key] = part
            offset += size
        return masks

    @torch.no_grad()
    def restore(self) -> None:
        """Put every weight (and torch prune's cached attribute) back exactly as found.

        Example:
            >>> import torch
            >>> layer = torch.nn.Linear(3, 3)
            >>> before = layer.weight.clone()
            >>> weights = MaskedWeights(layer)
            >>> _ = weights.prune(0.9)
            >>> weights.restore()
            >>> torch.equal(layer.weight, before)
            True
        """
        for _, module, name, param, original, attribute in self._targets:
            param.copy_(original)
            if attribute is not None:
                setattr(module, name, attribute)

    def __enter__(self) -> MaskedWeights:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.restore()
