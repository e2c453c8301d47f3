"""Load a script of ``benchmarks/`` as a module for a test, and unload it afterwards."""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@contextlib.contextmanager
def benchmark_module(filename: str) -> Iterator[ModuleType]:
    """The module of ``benchmarks/<filename>``; the scripts it imports come from ``benchmarks/``.

    On exit the benchmarks folder leaves ``sys.path`` and every module loaded from it leaves
    ``sys.modules``, so no test sees another test's benchmark imports.

    Example::

        with benchmark_module("price_of_knowing.py") as price:
            price.parse_args([])
    """
    name = f"benchmark_{Path(filename).stem}"
    sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / filename)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(BENCHMARKS))
        for key, loaded in list(sys.modules.items()):
            where = getattr(loaded, "__file__", None)
            if key == name or (where and Path(where).resolve().parent == BENCHMARKS):
                sys.modules.pop(key, None)
