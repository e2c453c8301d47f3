"""Lookups across the Trainer: the loss and batch layout said once, partner callbacks, points.

``loss_fn`` and ``batch_to_xy`` given to any one of the callbacks are used by all of them in
that Trainer: a callback's own value wins, else the one value given to the others, else the
LightningModule's ``loss_fn`` / ``criterion`` attribute (``batch_to_xy`` method or attribute).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from torch import Tensor, nn

if TYPE_CHECKING:  # pragma: no cover
    import lightning.pytorch as pl

__all__ = [
    "BatchToXY",
    "LossFn",
    "check_data_settings",
    "find_callback",
    "require_callback",
    "resolve_batch_to_xy",
    "resolve_loss_fn",
    "training_point",
]

LossFn = Callable[[Any, Tensor], Tensor]
BatchToXY = Callable[[Any], tuple[Any, Tensor]]
_C = TypeVar("_C")

_LOSS_HINT = (
    "pass loss_fn=torch.nn.CrossEntropyLoss() to any one of the callbacks (all of them use it) "
    "or set self.loss_fn (or self.criterion) in the LightningModule's __init__"
)


def check_data_settings(loss_fn: Any, batch_to_xy: Any) -> None:
    """Raise unless ``loss_fn`` and ``batch_to_xy`` are each None or callable.

    Example:
        >>> check_data_settings(None, len)
        >>> check_data_settings("cross_entropy", None)
        Traceback (most recent call last):
        ...
        TypeError: loss_fn must be callable, got str
    """
    if loss_fn is not None and not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
    if batch_to_xy is not None and not callable(batch_to_xy):
        raise TypeError(f"batch_to_xy must be callable, got {type(batch_to_xy).__name__}")


def _shared_value(trainer: pl.Trainer | None, attribute: str) -> Any:
    """The one non-None ``attribute`` the Trainer's data-reading callbacks were given, or None."""
    if trainer is None:
        return None
    given = [
        (type(callback).__name__, getattr(callback, attribute))
        for callback in trainer.callbacks
        if getattr(callback, "_shares_data_settings", False)
        and getattr(callback, attribute, None) is not None
    ]
    distinct = {id(value): value for _, value in given}
    if len(distinct) > 1:
        owners = ", ".join(name for name, _ in given)
        raise ValueError(
            f"{attribute} is given to several callbacks ({owners}) with different values: give "
            "it to one of them (every callback of the Trainer uses it) or pass the same object"
        )
    return next(iter(distinct.values()), None)


def resolve_loss_fn(
    loss_fn: LossFn | None, pl_module: nn.Module, trainer: pl.Trainer | None = None
) -> LossFn:
    """Return the loss ``loss_fn(outputs, targets) -> scalar mean loss`` a callback should use.

    The explicit ``loss_fn`` wins; then the one given to another callback of ``trainer``; then
    the module's ``loss_fn`` attribute, then its ``criterion`` attribute.

    Args:
        loss_fn: the callback's ``loss_fn`` argument, or ``None``.
        pl_module: the module being trained.
        trainer: the Trainer, whose other callbacks may carry the loss.

    Raises:
        ValueError: when no loss is found; the message says how to provide one.
        TypeError: when the loss found is not callable.

    Example:
        >>> import torch
        >>> module = torch.nn.Linear(2, 2)
        >>> module.criterion = torch.nn.CrossEntropyLoss()
        >>> resolve_loss_fn(None, module) is module.criterion
        True
    """
    candidates = [("loss_fn argument", loss_fn), ("loss_fn of a callback", None)]
    if loss_fn is None:
        candidates[1] = ("loss_fn of a callback", _shared_value(trainer, "loss_fn"))
    candidates += [
        (f"{type(pl_module).__name__}.{a}", getattr(pl_module, a, None))
        for a in ("loss_fn", "criterion")
    ]
    for where, candidate in candidates:
        if candidate is None:
            continue
        if not callable(candidate):
            raise TypeError(
                f"the {where} is a {type(candidate).__name__}, not a callable loss: {_LOSS_HINT}"
            )
        return candidate
    raise ValueError(
        f"no loss function found for {type(pl_module).__name__} (a loss computed inline in "
        f"training_step cannot be reused): {_LOSS_HINT}"
    )


def resolve_batch_to_xy(
    batch_to_xy: BatchToXY | None, pl_module: nn.Module, trainer: pl.Trainer | None = None
) -> BatchToXY | None:
    """Return the batch layout map a callback should use (``None``: batches are ``(x, y, ...)``).

    The explicit ``batch_to_xy`` wins; then the one given to another callback of ``trainer``;
    then the module's ``batch_to_xy`` method or attribute.

    Example:
        >>> import torch
        >>> class Net(torch.nn.Linear):
        ...     def batch_to_xy(self, batch):
        ...         return batch["x"], batch["y"]
        >>> net = Net(2, 2)
        >>> resolve_batch_to_xy(None, net)({"x": 1, "y": 2})
        (1, 2)
    """
    for candidate in (
        batch_to_xy,
        _shared_value(trainer, "batch_to_xy") if batch_to_xy is None else None,
        getattr(pl_module, "batch_to_xy", None),
    ):
        if candidate is None:
            continue
        if not callable(candidate):
            raise TypeError(
                f"batch_to_xy must be callable (batch -> (inputs, targets)), got "
                f"{type(candidate).__name__}"
            )
        return candidate
    return None


def find_callback(trainer: pl.Trainer, cls: type[_C]) -> _C | None:
    """Return the one callback of type ``cls`` in the Trainer, ``None`` if there is none.

    Raises:
        ValueError: when the Trainer holds several, which would make the choice ambiguous.

    Example:
        >>> import lightning.pytorch as pl
        >>> from lightning.pytorch.callbacks import ModelCheckpoint
        >>> trainer = pl.Trainer(logger=False, enable_progress_bar=False)
        >>> isinstance(find_callback(trainer, ModelCheckpoint), ModelCheckpoint)
        True
    """
    found = [c for c in trainer.callbacks if isinstance(c, cls)]
    if len(found) > 1:
        raise ValueError(
            f"the Trainer holds {len(found)} {cls.__name__} callbacks: keep exactly one"
        )
    return found[0] if found else None


def require_callback(trainer: pl.Trainer, cls: type[_C], needed_by: str) -> _C:
    """Return the one callback of type ``cls``; raise with the fix when there is none.

    Example:
        >>> import lightning.pytorch as pl
        >>> from lightning.pytorch.callbacks import EarlyStopping
        >>> trainer = pl.Trainer(logger=False, enable_progress_bar=False)
        >>> require_callback(trainer, EarlyStopping, "a monitor")
        Traceback (most recent call last):
        ...
        ValueError: a monitor needs a EarlyStopping callback in the same Trainer: ...
    """
    found = find_callback(trainer, cls)
    if found is None:
        raise ValueError(
            f"{needed_by} needs a {cls.__name__} callback in the same Trainer: add "
            f"{cls.__name__}(...) to Trainer(callbacks=[...])"
        )
    return found


def training_point(trainer: pl.Trainer, fit_index: int) -> tuple[int, int]:
    """Identify the current point of training: results computed at one point are reused there.

    ``fit_index`` counts the ``fit`` calls a callback has seen, so that a later ``fit`` never
    reuses a result of an earlier one; the weights change only with optimizer steps, so the
    global step names the model within a fit.

    Example:
        >>> import lightning.pytorch as pl
        >>> training_point(pl.Trainer(logger=False, enable_progress_bar=False), 1)
        (1, 0)
    """
    return (fit_index, trainer.global_step)
