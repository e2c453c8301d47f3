"""The ``prunelimit`` Hydra app: train with L1, predict the pruning limit, measure it, prune.

``prunelimit`` (or ``python -m lightning_prunelimit``) runs :func:`run_task` on the composed
config; the stages live in :mod:`~lightning_prunelimit.app.job.pipeline`, the report in
:mod:`~lightning_prunelimit.app.reporting.report`, the sweep summary in
:mod:`~lightning_prunelimit.app.reporting.sweep_summary`. ``run_task`` (which needs torch and
Lightning) is imported lazily, so the command line answers ``--help`` quickly.

Modules by concern: ``command_line`` (entry point, signals, exit statuses), ``config`` (the
``conf/`` directory, building nodes, validation), ``job`` (the run itself: stages and timings),
``trainer_extras`` (checkpoint IO, console lines, divergence guard), ``run_dir`` (the run
directory and atomic writes), ``reporting`` (report and sweep summary), ``figures``.

Example:
    >>> from lightning_prunelimit.app import config_dir
    >>> sorted(p.name for p in (config_dir() / "experiment").glob("*cifar10.yaml"))[:2]
    ['alexnet_cifar10.yaml', 'fc12_cifar10.yaml']
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lightning_prunelimit.app.config.config_dir import config_dir
from lightning_prunelimit.app.config.validation import ConfigError, validate_config
from lightning_prunelimit.app.reporting.report import REPORT_METRICS, JobReport
from lightning_prunelimit.app.reporting.sweep_summary import SweepSummary

if TYPE_CHECKING:  # pragma: no cover
    from lightning_prunelimit.app.job.task import run_task

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
        from lightning_prunelimit.app.job.task import run_task

        return run_task
    raise AttributeError(f"module 'lightning_prunelimit.app' has no attribute {name!r}")
