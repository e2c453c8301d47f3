"""Giving every job a run directory of its own before Hydra writes anything into it."""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from lightning_prunelimit.app.command_line.interrupt import JobRefused
from lightning_prunelimit.app.config.validation import ConfigError, check_no_checkpoints

#: Where Hydra writes the config of a ``resume=`` invocation (the run's own stays in .hydra/).
RESUME_SUBDIR = ".hydra/resume"

__all__ = ["RunDirectory", "claim_directory", "resume_directory"]


def claim_directory(path: str | os.PathLike[str], *, key: str) -> Path:
    """Create ``path``, or ``path_2``, ``path_3``, ... if taken, and return the one created.

    ``os.mkdir`` either creates a directory or fails, so two jobs started in the same second
    never get the same one. An unwritable location is a :class:`ConfigError` that names ``key``,
    the setting that chose the location.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     first = claim_directory(Path(d) / "run", key="hydra.run.dir")
        ...     second = claim_directory(Path(d) / "run", key="hydra.run.dir")
        ...     first.name, second.name
        ('run', 'run_2')
    """
    base = Path(path).absolute()
    _make_parents(base, key)
    for number in itertools.count(1):
        candidate = base if number == 1 else base.with_name(f"{base.name}_{number}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        except OSError as error:
            raise _unwritable(base, error, key) from error
        return candidate
    raise AssertionError("unreachable")  # pragma: no cover


def _make_parents(path: Path, key: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise _unwritable(path, error, key) from error


def _check_writable(path: Path, key: str) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise _unwritable(path, error, key) from error
    if not os.access(path, os.W_OK | os.X_OK):
        raise _unwritable(path, PermissionError("permission denied"), key)


def _unwritable(path: Path, error: OSError, key: str) -> ConfigError:
    reason = error.strerror or str(error)
    return ConfigError(
        f"cannot write the run directory {path} ({reason.lower()}): set {key} to a writable "
        "directory, or PRUNELIMIT_ROOT (paths.root_dir) for all outputs"
    )


def _overridden(config: DictConfig, key: str) -> bool:
    return any(str(o).split("=", 1)[0].lstrip("+~") == key for o in config.hydra.overrides.hydra)


class RunDirectory(Callback):
    """Hydra callback: each job its own run directory, checked writable before Hydra uses it.

    * A run (``prunelimit ...``) claims ``hydra.run.dir`` with :func:`claim_directory`, so jobs
      started in the same second get ``<time>``, ``<time>_2``, ...; a sweep (``-m``) claims
      ``hydra.sweep.dir`` the same way, and its jobs are numbered inside it.
    * A directory given on the command line (``hydra.run.dir=...``) is used as it is, unless it
      holds checkpoints (refused before Hydra writes anything into it); ``resume=<run dir>``
      runs in that directory (it must hold the run's ``.hydra/config.yaml``), and Hydra writes
      that invocation's config to ``.hydra/resume/``.
    * An unwritable location stops the job with one line naming the key to change
      (:class:`~lightning_prunelimit.app.command_line.interrupt.JobRefused`: Hydra turns a
      callback's ordinary exceptions into warnings).

    Hydra instantiates it from ``hydra.callbacks`` (``conf/hydra/default.yaml``).

    Example:
        >>> import tempfile
        >>> def composed(d):
        ...     return OmegaConf.create({"resume": None, "hydra": {
        ...         "run": {"dir": f"{d}/runs/x"}, "overrides": {"hydra": []}}})
        >>> with tempfile.TemporaryDirectory() as d:
        ...     first, second = composed(d), composed(d)
        ...     RunDirectory().on_run_start(first)
        ...     RunDirectory().on_run_start(second)
        ...     Path(first.hydra.run.dir).name, Path(second.hydra.run.dir).name
        ('x', 'x_2')
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Claim (or check, or for ``resume`` find) the run directory."""
        try:
            self._run_directory(config)
        except ConfigError as error:  # Hydra would turn it into a warning and go on
            raise JobRefused(str(error)) from error

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Claim (or check) the sweep directory; the jobs are numbered inside it."""
        try:
            self._sweep_directory(config)
        except ConfigError as error:
            raise JobRefused(str(error)) from error

    @staticmethod
    def _run_directory(config: DictConfig) -> None:
        resume = config.get("resume")
        if resume:
            directory = resume_directory(resume)
            # the run's own .hydra/ stays as it was; this invocation's goes beside it
            with read_write(config.hydra), open_dict(config.hydra):
                config.hydra.output_subdir = RESUME_SUBDIR
        elif _overridden(config, "hydra.run.dir"):
            directory = Path(str(config.hydra.run.dir)).absolute()
            _check_writable(directory, "hydra.run.dir")
            check_no_checkpoints(directory)  # before Hydra writes .hydra/ into it
        else:
            directory = claim_directory(str(config.hydra.run.dir), key="paths.log_dir")
        with read_write(config.hydra.run):
            config.hydra.run.dir = str(directory)

    @staticmethod
    def _sweep_directory(config: DictConfig) -> None:
        if config.get("resume"):
            raise ConfigError(
                "resume=<run dir> continues one run: drop -m (and the sweep's other overrides)"
            )
        if _overridden(config, "hydra.sweep.dir"):
            _check_writable(Path(str(config.hydra.sweep.dir)).absolute(), "hydra.sweep.dir")
            return
        directory = claim_directory(str(config.hydra.sweep.dir), key="paths.log_dir")
        # Hydra composes each job's config again from the overrides, so the claimed directory
        # goes there too.
        with read_write(config.hydra), open_dict(config.hydra):
            config.hydra.sweep.dir = str(directory)
            overrides = OmegaConf.to_container(config.hydra.overrides.hydra)
            assert isinstance(overrides, list)
            config.hydra.overrides.hydra = [*overrides, f"hydra.sweep.dir={directory}"]


def resume_directory(value: Any) -> Path:
    """The run directory that ``resume=<value>`` names, checked to hold a run to continue.

    Example:
        >>> try:
        ...     resume_directory("/nonexistent/run")
        ... except ConfigError as error:
        ...     print(str(error).split(":")[0])
        resume=/nonexistent/run is not a run directory of prunelimit (no .hydra/config.yaml)
    """
    directory = Path(str(value)).absolute()
    if not (directory / ".hydra" / "config.yaml").is_file():
        raise ConfigError(
            f"resume={value} is not a run directory of prunelimit (no .hydra/config.yaml): "
            "pass the directory of the interrupted run, e.g. "
            "resume=outputs/prunelimit/runs/<date>_<time>"
        )
    return directory
