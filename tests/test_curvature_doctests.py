"""The examples in the curvature docstrings run and give what they show."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest
import torch

import lightning_prunelimit.curvature as curvature

MODULES = ["lightning_prunelimit.curvature"] + [
    f"lightning_prunelimit.curvature.{info.name}"
    for info in pkgutil.iter_modules(curvature.__path__)
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        module = importlib.import_module(name)
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
    finally:
        torch.set_num_threads(threads)
    assert result.failed == 0
    assert result.attempted > 0, f"{name} has no runnable example"


def test_every_public_name_has_an_example() -> None:
    for name in curvature.__all__:
        obj = getattr(curvature, name)
        if callable(obj) and not isinstance(obj, dict):
            assert obj.__doc__ and ">>>" in obj.__doc__, f"{name} lacks an example"
