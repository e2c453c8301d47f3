"""Put a model back exactly as it was after temporarily changing it (re-fitting, pruning)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn
from torch.nn.utils import prune

__all__ = ["restore_on_exit"]


@contextmanager
def restore_on_exit(model: nn.Module) -> Iterator[nn.Module]:
    """Let the block change ``model`` freely; on exit restore every part of its state exactly.

    Restored: every parameter's values, ``requires_grad`` and ``.grad`` (the same gradient
    tensor object with its values, or ``None``); every buffer's values (BatchNorm running
    statistics and ``num_batches_tracked``, ``torch.nn.utils.prune`` masks); every submodule's
    training flag; and the cached ``<name>`` attribute that ``torch.nn.utils.prune``
    recomputes at each forward pass. The ``Parameter`` and buffer objects themselves are put
    back, with their values copied in place, so optimizers and other references held outside
    keep working. Modules, parameters or buffers that the block adds or removes are not
    tracked: the block may change values, not structure.

    Args:
        model: the model to protect.

    Example:
        >>> import torch
        >>> model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
        >>> before = {k: v.clone() for k, v in model.state_dict().items()}
        >>> with restore_on_exit(model):
        ...     with torch.no_grad():
        ...         _ = model[0].weight.zero_()
        ...     _ = model(torch.randn(4, 2))  # updates the BatchNorm statistics
        ...     _ = model.eval()
        >>> all(torch.equal(before[k], v) for k, v in model.state_dict().items())
        True
        >>> model.training
        True
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    flags: list[tuple[nn.Module, bool]] = []
    params: list[tuple[nn.Module, str, nn.Parameter, Tensor, bool, Tensor | None, Tensor | None]]
    params = []
    buffers: list[tuple[nn.Module, str, Tensor, Tensor]] = []
    cached: list[tuple[nn.Module, str, object]] = []
    with torch.no_grad():
        for module in model.modules():
            flags.append((module, module.training))
            for name, param in module._parameters.items():
                if param is None:
                    continue
                grad = param.grad
                saved_grad = None if grad is None else grad.detach().clone()
                params.append(
                    (module, name, param, param.detach().clone(), param.requires_grad, grad,
                     saved_grad)
                )  # fmt: skip
            for name, buffer in module._buffers.items():
                if buffer is not None:
                    buffers.append((module, name, buffer, buffer.detach().clone()))
            for hook in module._forward_pre_hooks.values():
                if isinstance(hook, prune.BasePruningMethod) and hasattr(module, hook._tensor_name):
                    cached.append((module, hook._tensor_name, getattr(module, hook._tensor_name)))
    try:
        yield model
    finally:
        with torch.no_grad():
            for module, name, param, value, requires_grad, grad, saved_grad in params:
                module._parameters[name] = param
                param.copy_(value)
                param.requires_grad_(requires_grad)
                if grad is None:
                    param.grad = None
                else:
                    assert saved_grad is not None
                    grad.copy_(saved_grad)
                    param.grad = grad
            for module, name, buffer, value in buffers:
                module._buffers[name] = buffer
                buffer.copy_(value)
            for module, name, attribute in cached:
                setattr(module, name, attribute)
            for module, training in flags:
                module.training = training
