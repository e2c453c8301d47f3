"""The ``prunelimit`` Hydra app: train with L1, predict the pruning limit, measure it, prune.

``prunelimit`` (or ``python -m lightning_prunelimit``) runs :func:`run_task` on the composed
config; the stages live in :mod:`~lightning_prunelimit.app.pipeline`, the report in
:mod:`~lightning_prunelimit.app.report`, the sweep summary in
:mod:`~lightning_prunelimit.app.sweep_summary`. ``run_task`` (which needs torch and Lightning)
is imported lazily, so the command line answers ``--help`` quickly.

Example:
    >>> from lightning_prunelimit.app import config_dir
    >>> sorted(p.name for p in (config_dir() / "experiment").glob("*cifar10.yaml"))[:2]
    ['alexnet_cifar10.yaml', 'fc12_cifar10.yaml']
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lightning_prunelimit.app.config_dir import config_dir
from lightning_prunelimit.app.report import REPORT_METRICS, JobReport
from lightning_prunelimit.app.sweep_summary import SweepSummary
from lightning_prunelimit.app.validation import ConfigError, validate_config

if TYPE_CHECKING:  # pragma: no cover
    from lightning_prunelimit.app.task import run_task

__all__ = [
    "REPORT_METRICS",
    "ConfigError",
    "JobReport",
    "SweepSummary",
    "config_dir",
    "run_task",
    "validate_config",
]


def __getattr__(name: str) -> Any:
    if name == "run_task":
        from lightning_prunelimit.app.task import run_task

        return run_task
    raise AttributeError(f"module 'lightning_prunelimit.app' has no attribute {name!r}")
