"""Every public name has a docstring example, and every example runs and gives what it shows."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest
import torch

import lightning_prunelimit

MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(lightning_prunelimit.__path__, "lightning_prunelimit.")
)
PUBLIC_PACKAGES = [
    "lightning_prunelimit",
    "lightning_prunelimit.curvature",
    "lightning_prunelimit.limit",
    "lightning_prunelimit.pruning",
    "lightning_prunelimit.callbacks",
    "lightning_prunelimit.models",
    "lightning_prunelimit.data",
    "lightning_prunelimit.app",
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


@pytest.mark.parametrize("package", PUBLIC_PACKAGES)
def test_every_public_class_and_function_has_an_example(package: str) -> None:
    module = importlib.import_module(package)
    missing = []
    for name in module.__all__:
        obj = getattr(module, name)
        documented = bool(obj.__doc__ and ">>>" in obj.__doc__)
        if callable(obj) and not isinstance(obj, dict) and not documented:
            missing.append(name)
    assert not missing, f"{package}: public names without a docstring example: {missing}"
