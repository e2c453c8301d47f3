"""Moving a batch (nested tensors) to the model's device and floating-point dtype."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

__all__ = ["move_batch"]


def move_batch(data: Any, device: torch.device, dtype: torch.dtype | None = None) -> Any:
    """Move the tensors inside ``data`` (nested tuples, lists and dicts) to ``device``.

    With ``dtype``, floating-point tensors are also cast to it, so float32 data feeds a model
    trained in another precision (``precision="64-true"``); integer tensors (class labels) keep
    their dtype.

    Example:
        >>> import torch
        >>> x, y = move_batch((torch.zeros(2, 3), torch.tensor([1, 0])), torch.device("cpu"),
        ...                   torch.float64)
        >>> x.dtype, y.dtype
        (torch.float64, torch.int64)
    """
    if isinstance(data, Tensor):
        if dtype is not None and data.is_floating_point():
            return data.to(device=device, dtype=dtype, non_blocking=True)
        return data.to(device, non_blocking=True)
    if isinstance(data, Mapping):
        return {key: move_batch(value, device, dtype) for key, value in data.items()}
    if isinstance(data, (tuple, list)):
        return type(data)(move_batch(value, device, dtype) for value in data)
    return data
