"""Lookups across the Trainer: the loss and batch layout said once, partner callbacks, points.

``loss_fn`` and ``batch_to_xy`` given to any one of the callbacks are used by all of them in
that Trainer: a callback's own value wins, else the one value given to the others, else the
LightningModule's ``loss_fn`` / ``criterion`` attribute (``batch_to_xy`` method or attribute).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import torch
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
    "same_setting",
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


def _configuration(value: Any) -> Any:
    """What makes two settings the same: a module's type, public attributes and tensors."""
    if isinstance(value, nn.Module):
        attributes = {
            k: v for k, v in vars(value).items() if not k.startswith("_") and k != "training"
        }
        tensors = [(n, t.detach().cpu()) for n, t in value.state_dict().items()]
        children = [(n, _configuration(c)) for n, c in value.named_children()]
        return (type(value), attributes, tensors, children)
    if isinstance(value, functools.partial):
        return (functools.partial, value.func, value.args, value.keywords)
    return value


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, Tensor) or isinstance(b, Tensor):
        return isinstance(a, Tensor) and isinstance(b, Tensor) and torch.equal(a, b)
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    try:
        return bool(a is b or a == b)
    except Exception:  # a comparison that is not a bool (e.g. arrays): not provably equal
        return False


def same_setting(a: Any, b: Any) -> bool:
    """Whether two ``loss_fn`` (or ``batch_to_xy``) values are the same setting.

    The same object, or modules of one type with equal configuration (public attributes such
    as ``reduction`` or ``label_smoothing``, buffers such as class weights, submodules), or
    ``functools.partial`` objects of one function with equal arguments.

    Example:
        >>> import torch
        >>> same_setting(torch.nn.CrossEntropyLoss(), torch.nn.CrossEntropyLoss())
        True
        >>> smoothed = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
        >>> same_setting(torch.nn.CrossEntropyLoss(), smoothed)
        False
        >>> same_setting(torch.nn.CrossEntropyLoss(), torch.nn.MSELoss())
        False
    """
    return a is b or _equal(_configuration(a), _configuration(b))


def _describe_setting(value: Any) -> str:
    if isinstance(value, nn.Module):
        attributes = {
            k: v for k, v in vars(value).items() if not k.startswith("_") and k != "training"
        }
        settings = ", ".join(f"{k}={v!r}" for k, v in sorted(attributes.items()))
        return f"{type(value).__name__}({settings})"
    return getattr(value, "__qualname__", None) or repr(value)


def _shared_value(trainer: pl.Trainer | None, attribute: str) -> Any:
    """The one ``attribute`` the Trainer's data-reading callbacks were given, or None.

    Raises:
        ValueError: two callbacks were given different settings (compared with
            :func:`same_setting`); the message names both.
    """
    if trainer is None:
        return None
    given = [
        (type(callback).__name__, getattr(callback, attribute))
        for callback in trainer.callbacks
        if getattr(callback, "_shares_data_settings", False)
        and getattr(callback, attribute, None) is not None
    ]
    for owner, value in given[1:]:
        first_owner, first = given[0]
        if not same_setting(first, value):
            raise ValueError(
                f"{attribute} differs between callbacks: {first_owner} has "
                f"{_describe_setting(first)}, {owner} has {_describe_setting(value)}. The "
                "spectrum, epsilon and the sweep must use one loss and one batch layout: give "
                f"{attribute} to one callback (all of them use it) or the same value to each"
            )
    return given[0][1] if given else None


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
    shared = _shared_value(trainer, "loss_fn")  # raises when callbacks were given different ones
    candidates = [("loss_fn argument", loss_fn), ("loss_fn of a callback", shared)]
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
    shared = _shared_value(trainer, "batch_to_xy")  # raises when callbacks differ
    for candidate in (batch_to_xy, shared, getattr(pl_module, "batch_to_xy", None)):
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
