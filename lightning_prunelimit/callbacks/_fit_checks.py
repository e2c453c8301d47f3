"""Checks run before the first training step, so that setup mistakes cost seconds, not a run.

:func:`check_forward` sends one real batch through ``batch_to_xy``, the module's ``forward``
and the loss (eval mode, no gradient: the model is left exactly as found) and turns each
failure into an error that names the problem and the fix. :func:`eager` runs a block with
``torch.compile`` switched off, so a compiled module's curvature is that of the uncompiled
module underneath (compiled graphs do not support the double backward of Hessian products).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from lightning_prunelimit.callbacks._batches import first_batch
from lightning_prunelimit.callbacks._lookup import BatchToXY, LossFn
from lightning_prunelimit.curvature import evaluation_mode, move_batch
from lightning_prunelimit.curvature.parameter_selection import (
    ParameterSelection,
    select_parameters,
)

if TYPE_CHECKING:  # pragma: no cover
    import lightning.pytorch as pl

__all__ = ["check_curvature_parameters", "check_forward", "eager"]

_RESHAPE_HINT = (
    "the callbacks call forward(inputs) on the (inputs, targets) of a batch; if training_step "
    "reshapes or splits the batch first (e.g. x.view(len(x), -1)), do that in forward, or pass "
    "batch_to_xy=lambda batch: (batch[0].flatten(1), batch[1]) (whatever training_step does) to "
    "any one of the callbacks"
)


def eager() -> contextlib.AbstractContextManager[Any]:
    """A context in which ``torch.compile``d modules and functions run their original code.

    Example:
        >>> import torch
        >>> compiled = torch.compile(torch.nn.Linear(2, 1))
        >>> with eager():
        ...     compiled(torch.ones(1, 2)).shape
        torch.Size([1, 1])
    """
    return torch.compiler.set_stance("force_eager")


def _describe(data: Any) -> str:
    if isinstance(data, Tensor):
        return f"a {data.dtype} tensor of shape {tuple(data.shape)}"
    if isinstance(data, dict):
        return f"a dict with keys {sorted(map(str, data))}"
    return f"a {type(data).__name__}"


def check_forward(
    owner: str,
    trainer: pl.Trainer,
    pl_module: nn.Module,
    loss_fn: LossFn,
    batch_to_xy: BatchToXY | None,
    *,
    split: str = "train",
    augment: bool = False,
) -> None:
    """Send one batch of ``split`` through ``batch_to_xy``, ``forward`` and the loss; raise early.

    Costs one forward pass without gradient, in eval mode (BatchNorm statistics and dropout
    untouched), with ``torch.compile`` off. Floating-point inputs are cast to the parameters'
    dtype, as the callbacks do.

    Raises:
        TypeError: the batch is not ``(inputs, targets)`` and no ``batch_to_xy`` maps it.
        RuntimeError: ``forward`` or ``loss_fn`` fails on the batch.
        ValueError: the loss is not a finite floating-point scalar.

    Example:
        >>> import torch, lightning.pytorch as pl
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> data = DataLoader(TensorDataset(torch.randn(8, 1, 2, 2), torch.arange(8) % 3))
        >>> class Net(pl.LightningModule):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.layer = torch.nn.Linear(4, 3)
        ...     def forward(self, x):
        ...         return self.layer(x)
        ...     def training_step(self, batch, batch_idx):
        ...         x, y = batch
        ...         return torch.nn.functional.cross_entropy(self(x.flatten(1)), y)
        ...     def configure_optimizers(self):
        ...         return torch.optim.SGD(self.parameters(), lr=0.1)
        >>> class Check(pl.Callback):
        ...     def on_fit_start(self, trainer, pl_module):
        ...         check_forward("Check", trainer, pl_module, torch.nn.CrossEntropyLoss(), None)
        >>> trainer = pl.Trainer(max_steps=1, callbacks=[Check()], logger=False,
        ...     enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
        >>> trainer.fit(Net(), data)
        Traceback (most recent call last):
        ...
        RuntimeError: Check cannot run Net on a batch of the train data: ...
    """
    try:
        (inputs, targets), used = first_batch(
            trainer, pl_module, split=split, batch_to_xy=batch_to_xy, augment=augment
        )
    except TypeError as error:
        raise TypeError(f"{owner}: {error}") from None
    first = next((p for p in pl_module.parameters() if p.is_floating_point()), None)
    device = first.device if first is not None else torch.device("cpu")
    dtype = first.dtype if first is not None else None
    name = type(pl_module).__name__
    with torch.no_grad(), evaluation_mode(pl_module), eager():
        inputs, targets = move_batch(inputs, device, dtype), move_batch(targets, device, dtype)
        try:
            outputs = pl_module(inputs)
        except Exception as error:
            raise RuntimeError(
                f"{owner} cannot run {name} on a batch of the {used} data: forward(inputs) with "
                f"inputs {_describe(inputs)} failed with {type(error).__name__}: {error}. "
                f"{_RESHAPE_HINT}"
            ) from error
        try:
            loss = loss_fn(outputs, targets)
        except Exception as error:
            raise RuntimeError(
                f"{owner}: the loss failed on {name}'s outputs ({_describe(outputs)}) and the "
                f"targets ({_describe(targets)}) of a {used} batch with {type(error).__name__}: "
                f"{error}. loss_fn(outputs, targets) must take what forward returns and the "
                "batch's targets; pass a loss that does, or batch_to_xy to pick the targets"
            ) from error
    if not (isinstance(loss, Tensor) and loss.numel() == 1 and loss.is_floating_point()):
        raise ValueError(
            f"{owner}: loss_fn must return a floating-point scalar tensor (the batch-mean loss), "
            f"got {_describe(loss)}: use a mean-reduced loss such as torch.nn.CrossEntropyLoss()"
        )
    if not bool(torch.isfinite(loss)):
        raise ValueError(
            f"{owner}: the loss of the untrained model on a {used} batch is {float(loss)}: check "
            "the data for NaN/inf and the model's initial parameters"
        )


def check_curvature_parameters(
    owner: str, pl_module: nn.Module, params: ParameterSelection
) -> list[str]:
    """Check that the Hessian's parameters exist and share one floating dtype and one device.

    Returns:
        Their names, as the Hessian operator will list them.

    Example:
        >>> import torch
        >>> check_curvature_parameters("HessianSpectrum", torch.nn.Linear(2, 1), None)
        ['weight', 'bias']
    """
    selected = select_parameters(pl_module, params)
    if not selected:
        raise ValueError(
            f"{owner}: no parameters for the Hessian (params={params!r}): every parameter is "
            "frozen or excluded; pass params=[...names...] or unfreeze the layers to analyse"
        )
    dtypes = sorted({str(p.dtype) for _, p in selected})
    if len(dtypes) > 1 or not selected[0][1].is_floating_point():
        raise ValueError(
            f"{owner}: the Hessian's parameters have dtypes {dtypes}: they need one floating "
            "dtype; convert the model (e.g. model.float()) or select parameters of one dtype "
            "with params=..."
        )
    devices = sorted({str(p.device) for _, p in selected})
    if len(devices) > 1:
        raise ValueError(
            f"{owner}: the Hessian's parameters live on several devices {devices}: keep the "
            "model on one device"
        )
    return [name for name, _ in selected]
