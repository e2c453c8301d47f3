"""Bad configurations are refused up front, with one line that names the problem and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
from _app_helpers import (
    compose_job,
)
from hydra.errors import CompactHydraException
from omegaconf import DictConfig, OmegaConf, open_dict

from lightning_prunelimit.app import ConfigError, JobReport, run_task, validate_config
from lightning_prunelimit.app.command_line.interrupt import JobRefused
from lightning_prunelimit.app.config.validation import check_no_checkpoints, check_resumable
from lightning_prunelimit.app.run_dir.run_directory import RunDirectory


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["+callbacks.l1_regularization.strenght=1"],
            "callbacks.l1_regularization.strenght: L1Regularization has no argument 'strenght' "
            "(it takes strength, parameter_names, include_norm_layers): did you mean "
            "callbacks.l1_regularization.strength?",
        ),
        (["+model.net.hiden=[3]"], "did you mean model.net.hidden?"),
        (["+trainer.max_epoch=3"], "did you mean trainer.max_epochs?"),
        (["+model.optimizer.lrr=1"], "did you mean model.optimizer.lr?"),
        (["model.optimizer.lr=abc"], "model.optimizer.lr must be a number, got 'abc'"),
        (["data.batch_size=abc"], "data.batch_size must be a number, got 'abc'"),
        (["model.scheduler.gamma=[1]"], "model.scheduler.gamma must be a number, got [1]"),
        (
            ["+callbacks.hessian_spectrun.num_iters=3"],
            "callbacks.hessian_spectrun has no _target_ (it holds ['num_iters']): add it through "
            "a callbacks config (callbacks=<name>) or remove it with ~callbacks.hessian_spectrun",
        ),
        (["data._target_=lightning_prunelimit.data.NoSuchData"], "data._target_='lightning_"),
        (["data.batch_size=???"], "missing value for data.batch_size: set it on the command line"),
        (["finetune_epochs=-1"], "finetune_epochs must be a non-negative integer, got -1"),
        (["torch_threads=0"], "torch_threads must be a positive integer or null, got 0"),
        (["seed=abc"], "seed must be an integer or null, got 'abc'"),
        (["trainer.max_epochs=abc"], "trainer.max_epochs must be a positive integer, got 'abc'"),
        (["trainer.max_epochs=2.5"], "trainer.max_epochs must be a positive integer, got 2.5"),
        (["trainer.max_epochs=0"], "trainer.max_epochs must be a positive integer, got 0"),
        (["optimized_metric=pruned.acc"], "'pruned.acc' is not a report value: did you mean"),
        (
            ["~callbacks.pruning_limit"],
            "callbacks.one_shot_pruning.amount=predicted needs the predicted limit",
        ),
        (["~callbacks.hessian_spectrum"], "no HessianSpectrum callback is configured"),
        (["~model.net.in_features"], "model.net.in_features is required by MLP but not set"),
        (["~data"], "data is not configured (no node with a _target_)"),
    ],
)
def test_invalid_configs_are_refused_before_any_work(
    overrides: list[str], message: str, tmp_path: Path
) -> None:
    cfg = compose_job(overrides, run_dir=tmp_path)
    with pytest.raises(ConfigError) as raised:
        validate_config(cfg)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_two_pruning_callbacks_are_refused(tmp_path: Path) -> None:
    cfg = compose_job([], run_dir=tmp_path)
    with open_dict(cfg):
        cfg.callbacks.second_pruning = cfg.callbacks.one_shot_pruning
    with pytest.raises(ConfigError, match="one_shot_pruning, second_pruning all prune"):
        validate_config(cfg)


def test_config_error_is_printed_by_hydra_without_a_traceback() -> None:
    # Hydra prints a CompactHydraException as its message alone.
    assert issubclass(ConfigError, CompactHydraException)
    assert issubclass(ConfigError, ValueError)


def test_an_existing_checkpoint_is_refused(tmp_path: Path) -> None:
    check_no_checkpoints(tmp_path)
    (tmp_path / "pruned.ckpt").write_bytes(b"weights")
    with pytest.raises(ConfigError, match="pruned.ckpt already exists"):
        check_no_checkpoints(tmp_path)
    assert (tmp_path / "pruned.ckpt").read_bytes() == b"weights"


def test_a_periodic_checkpoint_is_refused_with_the_resume_option(tmp_path: Path) -> None:
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"weights")
    with pytest.raises(ConfigError, match=rf"last\.ckpt already exists .* resume={tmp_path}$"):
        check_no_checkpoints(tmp_path)
    check_resumable(tmp_path)  # not finished: it can be resumed
    (tmp_path / "pruned.ckpt").write_bytes(b"weights")
    with pytest.raises(ConfigError, match="the run in .* finished, there is nothing to resume"):
        check_resumable(tmp_path)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["data=digits"],
            "model (MLP) does not take the inputs of data (DigitsDataModule, shape (1, 8, 8)): "
            "MLP expects 40 features per sample",
        ),
        (
            ["model.num_classes=5"],
            "model.num_classes=5 but data (MNIST1DDataModule) has 10 classes: set "
            "model.num_classes=10",
        ),
        (
            ["model.optimizer.lr=-0.1"],
            "model (lightning_prunelimit.models.classifier.ImageClassifier): ValueError: "
            "optimizer: Invalid learning rate: -0.1",
        ),
        (
            ["callbacks.hessian_spectrum.num_iters=0"],
            "callbacks.hessian_spectrum (lightning_prunelimit.callbacks.hessian_spectrum."
            "HessianSpectrum): ValueError: num_iters must be 'auto' or an int >= 1 (Lanczos steps "
            "per probe), got 0",
        ),
    ],
    ids=["input-shape", "num-classes", "learning-rate", "lanczos-steps"],
)
def test_values_that_only_the_objects_can_check_fail_before_training(
    overrides: list[str], message: str, tmp_path: Path
) -> None:
    cfg = compose_job([*overrides, "logger=none"], run_dir=tmp_path)
    with pytest.raises(ConfigError) as raised:
        run_task(cfg)
    assert str(raised.value).startswith(message)
    report = JobReport.read(tmp_path / "report.json")
    assert report.status == "failed" and report.dense is None
    assert report.timings_s.get("train") is None  # training never started


def test_a_training_run_without_a_step_is_refused_before_any_checkpoint(tmp_path: Path) -> None:
    cfg = compose_job(["+trainer.limit_train_batches=0", "logger=none"], run_dir=tmp_path)
    with pytest.raises(ConfigError, match="training ran no optimizer step"):
        run_task(cfg)
    assert not (tmp_path / "dense.ckpt").exists()


def _hydra_config(tmp_path: Path, run_dir: str, overrides: list[str]) -> DictConfig:
    return OmegaConf.create(
        {
            "resume": None,
            "hydra": {
                "run": {"dir": run_dir},
                "sweep": {"dir": run_dir},
                "overrides": {"hydra": overrides},
            },
        }
    )


def test_run_directory_claims_a_fresh_name_or_refuses_in_one_line(tmp_path: Path) -> None:
    default = str(tmp_path / "runs" / "t")
    first, second = _hydra_config(tmp_path, default, []), _hydra_config(tmp_path, default, [])
    RunDirectory().on_run_start(first)
    RunDirectory().on_run_start(second)
    assert [Path(c.hydra.run.dir).name for c in (first, second)] == ["t", "t_2"]
    # a directory given on the command line is used as it is (the job refuses checkpoints)
    given = _hydra_config(tmp_path, default, [f"hydra.run.dir={default}"])
    RunDirectory().on_run_start(given)
    assert given.hydra.run.dir == default
    sweep = _hydra_config(tmp_path, default, [])
    RunDirectory().on_multirun_start(sweep)
    assert Path(sweep.hydra.sweep.dir).name == "t_3"
    assert list(sweep.hydra.overrides.hydra) == [f"hydra.sweep.dir={sweep.hydra.sweep.dir}"]
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    cases = [
        (_hydra_config(tmp_path, f"{a_file}/run", []), "on_run_start", "set paths.log_dir"),
        (
            _hydra_config(tmp_path, f"{a_file}/run", [f"hydra.run.dir={a_file}/run"]),
            "on_run_start",
            "set hydra.run.dir",
        ),
        (_hydra_config(tmp_path, f"{a_file}/sweep", []), "on_multirun_start", "set paths.log_dir"),
    ]
    for config, hook, fix in cases:
        with pytest.raises(JobRefused, match=rf"cannot write the run directory .*: {fix} "):
            getattr(RunDirectory(), hook)(config)
    resume = _hydra_config(tmp_path, default, [])
    resume.resume = str(tmp_path / "runs" / "t")
    with pytest.raises(JobRefused, match="is not a run directory of prunelimit"):
        RunDirectory().on_run_start(resume)
    (tmp_path / "runs" / "t" / ".hydra").mkdir()
    (tmp_path / "runs" / "t" / ".hydra" / "config.yaml").write_text("seed: 0\n")
    RunDirectory().on_run_start(resume)
    assert resume.hydra.run.dir == str(tmp_path / "runs" / "t")
    with pytest.raises(JobRefused, match="resume=<run dir> continues one run: drop -m"):
        RunDirectory().on_multirun_start(resume)
