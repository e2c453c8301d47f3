"""The ``prunelimit`` command (also ``python -m lightning_prunelimit``): one Hydra app."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from lightning_prunelimit.app.command_line.interrupt import JobInterrupted, JobRefused
from lightning_prunelimit.app.config.config_dir import config_dir
from lightning_prunelimit.app.config.validation import ConfigError

__all__ = ["main"]


def main() -> Any:
    """Run the job with Hydra's command line: ``prunelimit [overrides]`` or ``prunelimit -m ...``.

    The configs are the packaged ``conf/`` (see :func:`config_dir`); ``prunelimit --help``
    describes the app and lists the config groups, ``prunelimit --cfg job`` prints the composed
    config without running it. A job stopped by SIGTERM or SIGINT prints one line (the stage, the
    run directory, the command that resumes it) and exits with status 143 or 130.

    Example:
        >>> import subprocess, sys
        >>> out = subprocess.run([sys.executable, "-m", "lightning_prunelimit", "--cfg", "job"],
        ...                      capture_output=True, text=True, check=True).stdout
        >>> "task_name: prunelimit" in out
        True
    """
    app = hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")
    try:
        return app(_job)()
    except JobRefused as error:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        sys.stderr.write(f"prunelimit: {error}\n")
        sys.exit(1)
    except JobInterrupted as interrupted:
        where = f" in stage {interrupted.stage}" if interrupted.stage else ""
        resume = f"; continue with: prunelimit resume={interrupted.run_dir}"
        sys.stderr.write(
            f"prunelimit: {interrupted}{where}{resume if interrupted.run_dir else ''}\n"
        )
        sys.exit(interrupted.exit_status)


def _lightning_logs_once() -> None:
    """Lightning's messages through the job's log handlers only (the console and the log file
    Hydra set up), not also through the console handler ``import lightning`` adds for itself."""
    import lightning  # noqa: F401 (adds the handler this removes)

    if not logging.getLogger().handlers:
        return
    own = logging.getLogger("lightning")
    for handler in list(own.handlers):
        if type(handler) is logging.StreamHandler:
            own.removeHandler(handler)


def _job(cfg: DictConfig) -> Any:
    # Imported here so that `--help`, `--cfg` and Hydra's own errors answer without loading
    # torch and Lightning.
    from lightning_prunelimit.app.job.task import run_task

    _lightning_logs_once()
    try:
        return run_task(cfg)
    except ConfigError as error:
        # Hydra would wrap the message in three more lines; a sweep keeps Hydra's handling so
        # that its other jobs still run.
        if os.environ.get("HYDRA_FULL_ERROR") == "1" or HydraConfig.get().mode == RunMode.MULTIRUN:
            raise
        raise JobRefused(str(error)) from error
