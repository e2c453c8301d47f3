"""L1 regularisation as a gradient term: the LOMP training of the paper, with any optimizer."""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator, Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from lightning_prunelimit.callbacks._output import log_scalars
from lightning_prunelimit.pruning import check_parameter_names, l1_norm, l1_parameters

__all__ = ["L1Regularization"]


class L1Regularization(pl.Callback):
    r"""Add ``strength * sign(w)`` to the gradients before every optimizer step.

    This is the subgradient of ``strength * sum |w|`` over the selected parameters, so training
    minimises ``loss + strength * ||w||_1`` without changing the module's loss: the L1-trained
    ("LOMP") networks of the paper, whose many near-zero weights can be pruned away.

    **Which parameters.** Every parameter whose name (inside its module) is one of
    ``parameter_names``, over all modules except normalisation layers (BatchNorm, InstanceNorm,
    LayerNorm, GroupNorm, ...) unless ``include_norm_layers``. A parameter reparametrised by
    ``torch.nn.utils.prune`` counts under its plain name and gets ``strength * sign(w) * mask``,
    so pruned entries receive nothing. Parameters that are frozen, not in the stepping
    optimizer, or have no gradient in this step are left alone.

    **When.** In ``on_before_optimizer_step``, which Lightning calls once per optimizer step
    (after the last micro-batch when accumulating gradients, so the term is added once, not per
    micro-batch), after mixed-precision gradients are unscaled, and *before* gradient clipping:
    the clipped gradient norm includes the L1 term. Works with any optimizer, several
    optimizers (each adds the term to its own parameters) and manual optimization.

    **Logs** to every logger at each epoch end: ``l1/norm`` (the L1 norm of the selected
    parameters) and ``l1/penalty`` (``strength * l1/norm``).

    Args:
        strength: the coefficient lambda, finite and >= 0 (the paper uses 2e-5 to 1e-4).
        parameter_names: parameter names to regularise (e.g. ``("weight",)`` for weights only).
        include_norm_layers: regularise normalisation layers' parameters too (the paper's
            reference code does).

    Example:
        >>> import lightning.pytorch as pl
        >>> callback = L1Regularization(strength=5e-5)
        >>> trainer = pl.Trainer(max_epochs=1, callbacks=[callback], logger=False)
        >>> callback.strength
        5e-05
    """

    def __init__(
        self,
        *,
        strength: float,
        parameter_names: Sequence[str] = ("weight", "bias"),
        include_norm_layers: bool = False,
    ) -> None:
        if isinstance(strength, bool) or not isinstance(strength, numbers.Real):
            raise TypeError(
                f"strength must be a number, got {strength!r}: pass the L1 coefficient, "
                "e.g. strength=5e-5"
            )
        if not math.isfinite(float(strength)) or float(strength) < 0:
            raise ValueError(
                f"strength must be finite and >= 0, got {strength}: pass the L1 coefficient, "
                "e.g. strength=5e-5"
            )
        self.strength = float(strength)
        self.parameter_names = check_parameter_names(parameter_names)
        self.include_norm_layers = bool(include_norm_layers)

    @property
    def state_key(self) -> str:
        """Key of this callback's state in checkpoints."""
        return self._generate_state_key(
            strength=self.strength,
            parameter_names=self.parameter_names,
            include_norm_layers=self.include_norm_layers,
        )

    def selected_parameters(self, module: nn.Module) -> Iterator[tuple[str, Tensor, Any]]:
        """Yield ``(name, parameter, mask or None)`` for every regularised parameter.

        The selection of :func:`lightning_prunelimit.pruning.l1_parameters`.

        ``name`` is the qualified plain name (``"net.0.weight"`` also for a pruned
        ``weight_orig``); ``mask`` is the torch prune mask when the parameter carries one.

        Example:
            >>> import torch
            >>> model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
            >>> [name for name, _, _ in L1Regularization(strength=1e-4).selected_parameters(model)]
            ['0.weight', '0.bias']
        """
        yield from l1_parameters(
            module,
            parameter_names=self.parameter_names,
            include_norm_layers=self.include_norm_layers,
        )

    def l1_norm(self, module: nn.Module) -> float:
        """The L1 norm of the regularised parameters' effective values (``pruning.l1_norm``).

        Example:
            >>> import torch
            >>> layer = torch.nn.Linear(2, 1)
            >>> with torch.no_grad():
            ...     _ = layer.weight.copy_(torch.tensor([[1.0, -2.0]])), layer.bias.fill_(0.5)
            >>> L1Regularization(strength=1e-4).l1_norm(layer)
            3.5
        """
        return l1_norm(
            module,
            parameter_names=self.parameter_names,
            include_norm_layers=self.include_norm_layers,
        )

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Optimizer
    ) -> None:
        """Add ``strength * sign(w)`` (times the prune mask, if any) to each selected gradient."""
        if self.strength == 0.0:
            return
        stepped = {id(p) for group in optimizer.param_groups for p in group["params"]}
        with torch.no_grad():
            for _, param, mask in self.selected_parameters(pl_module):
                if param.grad is None or id(param) not in stepped:
                    continue
                term = torch.sign(param.detach())
                if mask is not None:
                    term = term * mask
                param.grad.add_(term.to(param.grad.dtype), alpha=self.strength)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Log ``l1/norm`` and ``l1/penalty`` to every logger."""
        norm = self.l1_norm(pl_module)
        log_scalars(trainer, {"l1/norm": norm, "l1/penalty": self.strength * norm})
