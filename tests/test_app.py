"""The prunelimit job end to end: in-process, as a console script, and as a multirun sweep."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from _app_helpers import (
    FAST_JOB,
    compose_job,
    run_cli,
)
from hydra.utils import instantiate
from omegaconf import OmegaConf

from lightning_prunelimit.app import ConfigError, JobReport, run_task
from lightning_prunelimit.models import ImageClassifier
from lightning_prunelimit.pruning import num_to_prune


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One MNIST-1D cache for every job of this module."""
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="module")
def default_job(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> dict[str, Any]:
    """The default job, shortened by FAST_JOB, run once in-process."""
    run_dir = tmp_path_factory.mktemp("run")
    cfg = compose_job(FAST_JOB, run_dir=run_dir, data_dir=data_dir)
    returned = run_task(cfg)
    return {"cfg": cfg, "run_dir": run_dir, "returned": returned}


def _accuracy(model: ImageClassifier, cfg: Any) -> tuple[int, int]:
    datamodule = instantiate(cfg.data)
    datamodule.setup("test")
    correct = total = 0
    model.eval()
    with torch.no_grad():
        for inputs, targets in datamodule.test_dataloader():
            correct += int((model(inputs).argmax(dim=1) == targets).sum())
            total += len(targets)
    return correct, total


def _load(path: Path, cfg: Any) -> ImageClassifier:
    return ImageClassifier.load_from_checkpoint(path, net=instantiate(cfg.model.net))


def test_report_has_every_stage(default_job: dict[str, Any]) -> None:
    data = json.loads((default_job["run_dir"] / "report.json").read_text())
    assert data["status"] == "completed" and data["error"] is None
    for key in ("accuracy", "loss"):
        assert 0.0 <= data["dense"][key] < 10.0
    report = JobReport.from_dict(data)
    prediction = report.scalars("prediction")
    for key in ("kept_fraction", "sparsity", "distance", "epsilon", "zero_fraction"):
        assert isinstance(prediction[key], float), key
    assert prediction["kept_fraction"] + prediction["sparsity"] == pytest.approx(1.0, abs=1e-12)
    assert prediction["sparsity_lo"] <= prediction["sparsity"] <= prediction["sparsity_hi"]
    assert prediction["epsilon_batch_size"] == 128
    assert prediction["epsilon"] > 0 and prediction["distance"] >= 0
    assert {"epsilon", "prediction"} <= set(data["prediction"]["timings"])
    actual = report.sweep_result()
    assert 0.0 <= actual.actual_limit < 1.0
    assert actual.sparsities[0] == 0.0 and {0.25, 0.5, 0.75, 0.9} <= set(actual.sparsities)
    assert data["pruned"]["sparsity"] == pytest.approx(prediction["sparsity"], abs=1e-4)
    spectrum = data["spectrum"]
    assert report.hessian_spectrum().num_iters == 8 and report.hessian_spectrum().num_probes == 1
    assert spectrum["samples_used"] == 512 and spectrum["dataset_size"] > 512
    assert spectrum["sample_error"]["num_samples"] == 512  # a sub-sample: its error is measured
    assert {"sample", "zero_rows", "lanczos", "sample_error"} <= set(spectrum["timings"])
    assert spectrum["num_params"] == 15_210  # weights and biases of 40-100-100-10
    assert len(spectrum["top_eigenvalues"]) == 2
    assert spectrum["top_eigenvalues"][0] >= spectrum["top_eigenvalues"][1]
    assert spectrum["trace"] is not None
    stages = ("setup", "train", "spectrum", "prediction", "actual", "finetune", "report")
    for stage in stages:
        assert data["timings_s"][stage] >= 0.0, stage
    assert data["timings_s"]["total"] >= sum(data["timings_s"][s] for s in stages) - 1e-6
    assert data["config"]["callbacks"]["hessian_spectrum"]["num_iters"] == 8
    assert {"python", "torch", "lightning", "hydra-core"} <= set(data["versions"])
    assert data["job"]["overrides"] == list(FAST_JOB)


def test_outputs_are_written_to_the_run_dir(default_job: dict[str, Any]) -> None:
    run_dir = default_job["run_dir"]
    for name in ("dense.ckpt", "pruned.ckpt", "report.json", "report.md"):
        assert (run_dir / name).is_file(), name
    report = JobReport.read(run_dir / "report.json")
    assert report.files["checkpoints"] == ["dense.ckpt", "pruned.ckpt"]
    assert sorted(report.files["figures"]) == [
        "figures/accuracy_vs_sparsity.png",
        "figures/layer_sparsity.png",
        "figures/prune_limit.png",
        "figures/sparsity_sweep.png",
        "figures/spectrum.png",
    ]
    for figure in report.files["figures"]:
        assert (run_dir / figure).read_bytes()[:4] == b"\x89PNG"
        assert f"]({figure})" in (run_dir / "report.md").read_text()
    with open(next(run_dir.glob("csv/version_*/metrics.csv"))) as handle:
        columns = next(csv.reader(handle))
    assert {"train/loss", "hessian/trace", "prune_limit/sparsity", "pruning/sparsity"} <= set(
        columns
    )


def test_dense_checkpoint_and_sweep_agree_with_the_report(default_job: dict[str, Any]) -> None:
    cfg, run_dir = default_job["cfg"], default_job["run_dir"]
    report = JobReport.read(run_dir / "report.json")
    correct, total = _accuracy(_load(run_dir / "dense.ckpt", cfg), cfg)
    assert total == 1000
    assert report.value("dense.accuracy") == pytest.approx(correct / total, abs=1e-6)
    # The sweep evaluates the validation split, which is the test split here: sparsity 0 is
    # the dense network.
    assert report.sweep_result().accuracies[0] == pytest.approx(correct / total, abs=1e-6)
    assert report.value("actual.dense_accuracy") == pytest.approx(correct / total, abs=1e-6)
    # One serialisation: the report's result sections are what the checkpoint keeps.
    states = torch.load(run_dir / "dense.ckpt", weights_only=False)["callbacks"]
    kept = {name.split("{")[0]: state for name, state in states.items()}
    assert (
        report.prediction
        == JobReport.from_dict(
            {"status": "completed", "prediction": kept["PruningLimit"]}
        ).to_dict()["prediction"]
    )
    assert (
        report.actual
        == JobReport(status="completed", actual=kept["SparsitySweep"]).to_dict()["actual"]
    )


def test_pruned_checkpoint_has_the_predicted_sparsity(default_job: dict[str, Any]) -> None:
    cfg, run_dir = default_job["cfg"], default_job["run_dir"]
    report = JobReport.read(run_dir / "report.json")
    model = _load(run_dir / "pruned.ckpt", cfg)
    weights = [m.weight for m in model.net.modules() if isinstance(m, torch.nn.Linear)]
    zeros = sum(int((w == 0).sum()) for w in weights)
    total = sum(w.numel() for w in weights)
    prediction = report.limit_prediction()
    assert total == prediction.num_weights == 15_000
    expected = prediction.num_weights - prediction.num_kept
    assert num_to_prune(prediction.sparsity, total) == expected
    assert zeros == expected == report.pruned["num_pruned"]
    assert report.value("pruned.sparsity") == pytest.approx(zeros / total, abs=1e-12)
    assert sum(
        report.pruned["per_layer"][f"net.layers.{i}.weight"] * n
        for i, n in ((1, 4000), (3, 10_000), (5, 1000))
    ) == pytest.approx(zeros, abs=1e-6)
    correct, count = _accuracy(model, cfg)
    assert report.value("pruned.accuracy") == pytest.approx(correct / count, abs=1e-6)


def test_job_returns_the_optimized_metric_and_prints_the_table(
    default_job: dict[str, Any],
) -> None:
    report = JobReport.read(default_job["run_dir"] / "report.json")
    assert default_job["cfg"].optimized_metric == "pruned.accuracy"
    assert default_job["returned"] == report.value("pruned.accuracy")
    table = report.summary_table()
    for label in ("dense accuracy", "predicted sparsity", "actual sparsity limit"):
        assert label in table


def test_existing_checkpoints_are_never_overwritten(default_job: dict[str, Any]) -> None:
    run_dir = default_job["run_dir"]
    before = {n: (run_dir / n).read_bytes() for n in ("dense.ckpt", "report.json")}
    with pytest.raises(ConfigError, match=r"dense\.ckpt already exists .*\(hydra\.run\.dir="):
        run_task(compose_job(FAST_JOB, run_dir=run_dir))
    assert {n: (run_dir / n).read_bytes() for n in before} == before


def test_pruning_without_fine_tuning_matches_the_sweep(tmp_path: Path, data_dir: Path) -> None:
    """A fixed amount and no fine-tuning: the pruned accuracy is the sweep's at that sparsity."""
    overrides = [
        *FAST_JOB,
        "~callbacks.hessian_spectrum",
        "~callbacks.pruning_limit",
        "callbacks.one_shot_pruning.amount=0.5",
        "finetune_epochs=0",
        "logger=none",
        "optimized_metric=[pruned.sparsity,actual.sparsity_limit]",
    ]
    returned = run_task(compose_job(overrides, run_dir=tmp_path, data_dir=data_dir))
    report = JobReport.read(tmp_path / "report.json")
    assert report.prediction is None and report.spectrum is None
    assert report.pruned["num_pruned"] == 7500 and report.value("pruned.sparsity") == 0.5
    sweep = report.sweep_result()
    at_half = sweep.accuracies[sweep.sparsities.index(0.5)]
    assert report.value("pruned.accuracy") == pytest.approx(at_half, abs=1e-6)
    assert returned == [0.5, report.value("actual.sparsity_limit")]
    assert report.files["checkpoints"] == ["dense.ckpt", "pruned.ckpt"]
    assert not (tmp_path / "csv").exists()


def test_a_failed_job_leaves_a_report_with_its_error(tmp_path: Path) -> None:
    cfg = compose_job(
        ["data=cifar10", "model=fc5", "logger=none"], run_dir=tmp_path, data_dir=tmp_path / "none"
    )
    with pytest.raises(ConfigError) as raised:
        run_task(cfg)
    message = str(raised.value)
    assert message.startswith("data (CIFAR10DataModule): CIFAR10DataModule: missing ")
    assert "cifar-10-batches-py" in message and "download=True" in message
    report = JobReport.read(tmp_path / "report.json")
    assert report.status == "failed" and report.error == f"ConfigError: {message}"
    assert report.dense is None and report.timings_s["setup"] >= 0.0
    assert not (tmp_path / "dense.ckpt").exists()


@pytest.mark.slow  # a subprocess running the job
def test_console_script_runs_the_job(tmp_path: Path, data_dir: Path) -> None:
    run_dir = tmp_path / "run"
    result = run_cli(
        [f"hydra.run.dir={run_dir}", f"paths.data_dir={data_dir}", *FAST_JOB], cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = JobReport.read(run_dir / "report.json")
    assert report.status == "completed"
    lines = result.stdout.splitlines()
    for label, value in report.summary_rows():
        assert any(line.split() == [*label.split(), *value.split()] for line in lines), label
    assert (run_dir / "prunelimit.log").is_file()
    assert (run_dir / ".hydra" / "config.yaml").is_file()


@pytest.mark.slow  # two subprocesses
def test_python_m_prints_the_config_and_help_without_running(tmp_path: Path) -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "lightning_prunelimit", "--cfg", "job", "experiment=fc5_cifar10"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    assert "task_name: fc5_cifar10" in shown.stdout
    assert "_target_: lightning_prunelimit.models.fc5" in shown.stdout
    assert not (tmp_path / "outputs").exists()  # nothing ran
    helped = run_cli(["--help"], cwd=tmp_path)
    assert helped.returncode == 0
    assert "experiment: alexnet_cifar10, fc12_cifar10, fc5_cifar10" in helped.stdout


@pytest.mark.slow  # one subprocess per case
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["callbacks.l1_regularization.strenght=1"],
            "Could not override 'callbacks.l1_regularization.strenght'",
        ),
        (
            ["callbacks.l1_regularization.strength=-1"],
            "callbacks.l1_regularization (lightning_prunelimit.callbacks.l1_regularization."
            "L1Regularization): ValueError: strength must be finite and >= 0, got -1",
        ),
        (
            ["data=cifar100", "model=resnet18"],
            "data (CIFAR100DataModule): CIFAR100DataModule: missing ",
        ),
    ],
    ids=["unknown-key", "negative-strength", "missing-cifar"],
)
def test_bad_overrides_fail_with_one_clear_message(
    overrides: list[str], message: str, tmp_path: Path
) -> None:
    args = [f"hydra.run.dir={tmp_path / 'run'}", f"paths.data_dir={tmp_path / 'nodata'}"]
    result = run_cli([*args, *overrides], cwd=tmp_path)
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    assert not (tmp_path / "run" / "dense.ckpt").exists()


@pytest.mark.slow
def test_multirun_writes_a_sweep_summary_and_survives_a_failed_job(
    tmp_path: Path, data_dir: Path
) -> None:
    sweep_dir = tmp_path / "sweep"
    result = run_cli(
        [
            "-m",
            f"hydra.sweep.dir={sweep_dir}",
            f"paths.data_dir={data_dir}",
            "logger=wandb",
            "callbacks.l1_regularization.strength=0,1e-3,-1",
            *FAST_JOB,
        ],
        cwd=tmp_path,
        timeout=600,
    )
    assert result.returncode == 1  # job 2 failed, and Hydra says so
    with open(sweep_dir / "sweep_summary.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["job"], r["status"]) for r in rows] == [
        ("0", "completed"),
        ("1", "completed"),
        ("2", "failed"),
    ]
    assert "callbacks.l1_regularization.strength=0.001" in rows[1]["overrides"]
    assert "strength" in rows[2]["error"] and rows[2]["predicted_sparsity"] == ""
    for row in rows[:2]:
        report = JobReport.read(sweep_dir / row["job"] / "report.json")
        assert float(row["predicted_sparsity"]) == pytest.approx(
            report.value("prediction.sparsity"), rel=1e-9
        )
        assert float(row["actual_sparsity_limit"]) == pytest.approx(
            report.value("actual.sparsity_limit"), rel=1e-9
        )
        assert float(row["pruned_accuracy"]) == pytest.approx(
            report.value("pruned.accuracy"), rel=1e-9
        )
    markdown = (sweep_dir / "sweep_summary.md").read_text()
    assert markdown.count("| completed |") == 2 and markdown.count("| failed |") == 1
    assert (sweep_dir / "sweep_limits.png").read_bytes()[:4] == b"\x89PNG"
    # One offline W&B run per job that got as far as its loggers, each with the config.
    runs = [sorted((sweep_dir / job / "wandb").glob("offline-run-*")) for job in ("0", "1")]
    assert [len(r) for r in runs] == [1, 1]
    assert runs[0][0].name.split("-")[-1] != runs[1][0].name.split("-")[-1]
    for run in (runs[0][0], runs[1][0]):  # the resolved config went to W&B
        assert b"l1_regularization" in next(run.glob("run-*.wandb")).read_bytes()
    assert not (sweep_dir / "2" / "wandb").exists()


def test_resume_after_finished_training_runs_the_later_stages_once(
    default_job: dict[str, Any], tmp_path: Path, data_dir: Path
) -> None:
    """Interrupted after training (spectrum stage): resume computes the same results."""
    run = tmp_path / "run"
    shutil.copytree(default_job["run_dir"], run)
    (run / ".hydra").mkdir()
    for name in ("dense.ckpt", "pruned.ckpt"):
        (run / name).unlink()
    saved = default_job["cfg"].copy()  # what Hydra saves as .hydra/config.yaml
    saved.paths.output_dir = str(run)
    OmegaConf.save(saved, run / ".hydra" / "config.yaml")
    original = JobReport.read(default_job["run_dir"] / "report.json")

    run_task(compose_job([f"resume={run}"], run_dir=run, data_dir=data_dir))
    report = JobReport.read(run / "report.json")
    assert report.status == "completed" and report.job["resumed"] == 1
    assert report.dense["epochs"] == original.dense["epochs"] == 3
    assert report.value("dense.accuracy") == original.value("dense.accuracy")
    assert report.value("prediction.kept_fraction") == original.value("prediction.kept_fraction")
    assert report.sweep_result().accuracies == original.sweep_result().accuracies
    assert report.timings_s["spectrum"] > 0 and (run / "pruned.ckpt").is_file()
    with pytest.raises(ConfigError, match="nothing to resume"):
        run_task(compose_job([f"resume={run}"], run_dir=run, data_dir=data_dir))


def test_checkpoints_reload_with_the_documented_one_liner(default_job: dict[str, Any]) -> None:
    run_dir = default_job["run_dir"]
    for name in ("dense.ckpt", "pruned.ckpt"):
        model = ImageClassifier.load_from_checkpoint(run_dir / name)
        assert type(model.net).__name__ == "MLP" and model.hparams.optimizer["lr"] == 0.05
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["last.ckpt"]
    assert not list(run_dir.rglob("*.tmp"))  # atomic writes leave no temporary files
