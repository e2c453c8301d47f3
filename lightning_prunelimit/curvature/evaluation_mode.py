"""Run a model in eval mode for a while and put every submodule's training flag back afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


@contextmanager
def evaluation_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Switch ``model`` to eval mode inside the block; restore each submodule's own flag on exit.

    Restoring per submodule (not ``model.train(was_training)``) keeps mixed states intact, for
    example a frozen BatchNorm kept in eval mode inside a model that trains.

    Example:
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2)).train()
        >>> _ = model[1].eval()
        >>> with evaluation_mode(model):
        ...     model.training
        False
        >>> model.training, model[1].training
        (True, False)
    """
    flags = [(module, module.training) for module in model.modules()]
    try:
        model.eval()
        yield model
    finally:
        for module, training in flags:
            module.training = training
