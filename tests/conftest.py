"""Shared test settings and fixtures: offline W&B, a headless matplotlib backend, quiet Lightning.

Fixtures shared by several test modules live here (pytest finds them by name); helpers that
are plain functions live in the ``_*.py`` modules beside this file.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("WANDB_DISABLE_GIT", "true")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("PL_DISABLE_FORK", "1")


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Run single-threaded: the problems are tiny, and on a shared 2-core machine two threads
    per process oversubscribe the cores and slow everything down many times.

    Modules use it with ``pytestmark = pytest.mark.usefixtures("one_thread")``.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(params=("tanh_mlp", "relu_mlp", "bn_cnn"), name="problem")
def problem_fixture(request: pytest.FixtureRequest) -> object:
    """Each small curvature problem of ``_curvature_problems`` (a private copy of its model)."""
    from _curvature_problems import build_problem

    return build_problem(request.param)


@pytest.fixture(autouse=True)
def clean_hydra_state() -> Iterator[None]:
    """Leave no Hydra global state behind (Lightning's DDP launcher reads ``HydraConfig``)."""
    yield
    if "hydra" not in sys.modules:
        return
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    GlobalHydra.instance().clear()
    HydraConfig.instance().cfg = None
