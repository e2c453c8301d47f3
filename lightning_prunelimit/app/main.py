"""The ``prunelimit`` command (also ``python -m lightning_prunelimit``): one Hydra app."""

from __future__ import annotations

from typing import Any

import hydra
from omegaconf import DictConfig

from lightning_prunelimit.app.config_dir import config_dir

__all__ = ["main"]


def main() -> Any:
    """Run the job with Hydra's command line: ``prunelimit [overrides]`` or ``prunelimit -m ...``.

    The configs are the packaged ``conf/`` (see :func:`config_dir`); ``prunelimit --help`` lists
    the config groups, ``prunelimit --cfg job`` prints the composed config without running it.

    Example:
        >>> import subprocess, sys
        >>> out = subprocess.run([sys.executable, "-m", "lightning_prunelimit", "--cfg", "job"],
        ...                      capture_output=True, text=True, check=True).stdout
        >>> "task_name: prunelimit" in out
        True
    """
    app = hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")
    return app(_job)()


def _job(cfg: DictConfig) -> Any:
    # Imported here so that `--help`, `--cfg` and Hydra's own errors answer without loading
    # torch and Lightning.
    from lightning_prunelimit.app.task import run_task

    return run_task(cfg)
