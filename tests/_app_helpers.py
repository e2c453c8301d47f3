"""Composing the app's configs in tests, as ``prunelimit`` does on the command line."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from lightning_prunelimit.app import config_dir

CONF = config_dir()

# Overrides that shrink the default job to a few seconds: 3 epochs, 8 Lanczos steps of one probe
# on 512 samples, a 5-point sweep with 2 refinement steps, one fine-tuning epoch, no progress bars.
FAST_JOB = (
    "trainer.max_epochs=3",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "callbacks.hessian_spectrum.num_iters=8",
    "callbacks.hessian_spectrum.num_samples=512",
    "callbacks.hessian_spectrum.num_probes=1",
    "callbacks.hessian_spectrum.top_k=2",
    "callbacks.hessian_spectrum.trace_probes=4",
    "callbacks.sparsity_sweep.sparsities=[0.25,0.5,0.75,0.9]",
    "callbacks.sparsity_sweep.refine_steps=2",
    "finetune_epochs=1",
)


def compose_hydra(overrides: Sequence[str] = ()) -> DictConfig:
    """The composed config, ``hydra`` node included (as Hydra builds it before a run)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF), job_name="prunelimit"):
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=True)


def compose_job(
    overrides: Sequence[str] = (), *, run_dir: Path, data_dir: Path | None = None
) -> DictConfig:
    """The config a job receives: paths pointed at ``run_dir``, Hydra's runtime set, no ``hydra``.

    ``data_dir`` (default ``<run_dir>/data``) holds the data caches.
    """
    cfg = compose_hydra(overrides)
    with open_dict(cfg):
        cfg.paths.root_dir = str(run_dir)
        cfg.paths.output_dir = str(run_dir)
        cfg.paths.data_dir = str(data_dir if data_dir is not None else run_dir / "data")
        cfg.hydra.runtime.output_dir = str(run_dir)
        cfg.hydra.runtime.cwd = str(run_dir)
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def run_cli(
    args: Sequence[str], *, cwd: Path, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run the ``prunelimit`` console script of this environment with ``args``."""
    script = Path(sys.executable).with_name("prunelimit")
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env["PRUNELIMIT_ROOT"] = str(cwd)
    return subprocess.run(
        [str(script), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
