"""One job of the app, wrapped so that it always leaves a report, even when it fails."""

from __future__ import annotations

import contextlib
import logging
import math
import platform
import sys
from dataclasses import replace
from importlib import metadata
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

from lightning_prunelimit.app.command_line.interrupt import JobInterrupted, raise_on_signals
from lightning_prunelimit.app.config.validation import (
    CHECKPOINT_NAMES,
    ConfigError,
    check_no_checkpoints,
    check_resumable,
)
from lightning_prunelimit.app.figures.report_figures import plot_sweep_limits, write_report_figures
from lightning_prunelimit.app.job.pipeline import run_pipeline
from lightning_prunelimit.app.job.timing import StageTimings
from lightning_prunelimit.app.reporting.report import JobReport
from lightning_prunelimit.app.reporting.sweep_summary import SweepSummary
from lightning_prunelimit.app.run_dir.run_directory import resume_directory

__all__ = ["run_task"]

log = logging.getLogger(__name__)

_PACKAGES = ("lightning-prunelimit", "torch", "lightning", "hydra-core", "omegaconf", "numpy")


def run_task(cfg: DictConfig) -> float | list[float] | None:
    """Run one job: the stages, then ``report.json``, ``report.md`` and the figures.

    A run directory that already holds a checkpoint (``dense.ckpt``, ``pruned.ckpt``,
    ``checkpoints/*.ckpt``) is refused (a
    :class:`~lightning_prunelimit.app.config.validation.ConfigError`) before anything is written, so
    its files stay as they were (from the command line, the ``RunDirectory`` Hydra callback
    refuses it even before Hydra writes ``.hydra/``). Otherwise, whatever happens, the job
    leaves a report: a failed job's report has ``status: failed``, the error, the stage that
    was running and the sections of the stages that finished. SIGTERM and SIGINT raise
    :class:`~lightning_prunelimit.app.command_line.interrupt.JobInterrupted` where the job is;
    the report then says ``status: interrupted`` and the stage, and ``resume=<run dir>`` continues
    the run (its own config, training from ``checkpoints/last.ckpt``, every later stage once).

    In a multirun the sweep directory's ``sweep_summary.csv`` / ``.md`` is rebuilt from all jobs'
    reports after every job, so a failing job never loses the others' results; its error is
    re-raised afterwards (Hydra then reports it). The active W&B run, if any, is finished, so each
    job of a sweep gets its own. Reports, figures and the printed table come from global rank
    zero only.

    Args:
        cfg: the composed job config (with Hydra's runtime set when run through ``prunelimit``).

    Returns:
        The value of ``optimized_metric`` (a report key, or a list of keys) for sweepers;
        ``None`` when it is not set; NaN for a value the job did not produce.

    Example:
        >>> from omegaconf import OmegaConf
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     cfg = OmegaConf.create({"paths": {"output_dir": d}})
        ...     try:
        ...         run_task(cfg)
        ...     except Exception as error:
        ...         print(type(error).__name__, JobReport.read(Path(d) / "report.json").status)
        ConfigError failed
    """
    cfg, resumed = _resumed(cfg)
    timings = StageTimings()
    sections: dict[str, Any] = {}
    run_dir = _run_dir(cfg)
    if resumed:
        check_resumable(run_dir)
    else:
        check_no_checkpoints(run_dir)  # before anything is written: an earlier run's files stay
    job = _job_info(cfg, run_dir, resumed)
    report: JobReport | None = None
    failure: BaseException | None = None
    with raise_on_signals():
        try:
            with timings.measure("total"):
                run_pipeline(cfg, run_dir, sections, timings, resume=resumed)
        except BaseException as error:
            failure = error
            if isinstance(error, JobInterrupted):
                error.stage, error.run_dir = timings.current, str(run_dir)
            raise
        finally:
            if rank_zero_only.rank == 0:
                report = _finish(cfg, run_dir, job, sections, timings, failure)
            _finish_wandb(failed=failure is not None)
    if report is not None:
        print(report.summary_table(), flush=True)
    return _metric(cfg, report)


def _resumed(cfg: DictConfig) -> tuple[DictConfig, bool]:
    """The saved config of the run that ``resume=<run dir>`` names, or ``cfg`` unchanged."""
    value = cfg.get("resume")
    if not value:
        return cfg, False
    directory = resume_directory(value)
    if HydraConfig.initialized():
        others = [
            str(o) for o in HydraConfig.get().overrides.task if not str(o).startswith("resume=")
        ]
        if others:
            raise ConfigError(
                f"resume={value} continues the run with the config it was started with: drop "
                f"the other overrides ({' '.join(others)})"
            )
    saved = OmegaConf.load(directory / ".hydra" / "config.yaml")
    assert isinstance(saved, DictConfig)
    with open_dict(saved):
        saved.resume = str(directory)
    return saved, True


def _finish(
    cfg: DictConfig,
    run_dir: Path,
    job: dict[str, Any],
    sections: dict[str, Any],
    timings: StageTimings,
    failure: BaseException | None,
) -> JobReport:
    if failure is None:
        status = "completed"
    else:
        status = "interrupted" if isinstance(failure, JobInterrupted) else "failed"
    report = JobReport(
        status=status,
        error=None if failure is None else f"{type(failure).__name__}: {failure}",
        stage=None if failure is None else timings.current,
        job=job,
        config=_resolved(cfg),
        versions=_versions(),
        **sections,
    )
    with timings.measure("report"):
        try:
            figures = write_report_figures(report, run_dir)
        except Exception:
            if failure is None:
                raise
            log.exception("the figures of the failed job could not be drawn")
            figures = []
    times = timings.as_dict()
    times["total"] = times.pop("total", 0.0) + times["report"]
    files = {
        "report": ["report.json", "report.md"],
        "figures": figures,
        "checkpoints": [n for n in CHECKPOINT_NAMES if (run_dir / n).is_file()],
    }
    report = replace(report, timings_s=times, files=files)
    report.write(run_dir)
    sweep_dir = job.get("sweep_dir")
    if sweep_dir and Path(sweep_dir).is_dir():
        summary = SweepSummary.collect(sweep_dir)
        summary.write(sweep_dir)
        plot_sweep_limits(list(summary.rows)).savefig(Path(sweep_dir) / "sweep_limits.png")
    return report


def _run_dir(cfg: DictConfig) -> Path:
    try:
        return Path(str(cfg.paths.output_dir))
    except Exception as error:
        if HydraConfig.initialized():
            return Path(HydraConfig.get().runtime.output_dir)
        raise ConfigError(
            "paths.output_dir is not set: compose the job with paths=default or pass "
            "paths.output_dir=<run directory>"
        ) from error


def _job_info(cfg: DictConfig, run_dir: Path, resumed: bool) -> dict[str, Any]:
    job: dict[str, Any] = {"task_name": cfg.get("task_name"), "run_dir": str(run_dir)}
    if resumed:  # the run's own identity (overrides, place in a sweep) from its first report
        with contextlib.suppress(OSError, ValueError):
            job = {**JobReport.read(run_dir / "report.json").job, **job}
        job["resumed"] = int(job.get("resumed", 0)) + 1
        return job
    if HydraConfig.initialized():
        hydra_cfg = HydraConfig.get()
        job["overrides"] = [str(o) for o in hydra_cfg.overrides.task]
        if hydra_cfg.mode == RunMode.MULTIRUN:
            job["num"] = int(hydra_cfg.job.num)
            job["sweep_dir"] = str(hydra_cfg.sweep.dir)
    return job


def _resolved(cfg: DictConfig) -> dict[str, Any]:
    try:
        container = OmegaConf.to_container(cfg, resolve=True)
    except Exception:
        container = OmegaConf.to_container(cfg, resolve=False)
    return container if isinstance(container, dict) else {}


def _versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def _finish_wandb(*, failed: bool) -> None:
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish(exit_code=1 if failed else 0)


def _metric(cfg: DictConfig, report: JobReport | None) -> float | list[float] | None:
    key = cfg.get("optimized_metric")
    if key is None:
        return None
    keys = list(key) if isinstance(key, (ListConfig, list, tuple)) else [key]
    values = []
    for name in keys:
        value = None if report is None else report.value(str(name))
        values.append(math.nan if value is None else float(value))
    return values if isinstance(key, (ListConfig, list, tuple)) else values[0]
