"""The ``prunelimit`` command as users and schedulers run it: subprocesses from fresh directories.

Every job is shrunk by extra overrides only (few epochs, few Lanczos steps, a small sweep); the
MNIST-1D cache is generated once and shared through ``paths.data_dir`` (or copied under
``PRUNELIMIT_ROOT``).
"""

from __future__ import annotations

import csv
import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
import yaml

from lightning_prunelimit.app import JobReport
from lightning_prunelimit.data import MNIST1DDataModule

# The smallest job that still runs every stage (with trainer.max_epochs=1, ONE_EPOCH).
TINY = (
    "callbacks.hessian_spectrum.num_iters=4",
    "callbacks.hessian_spectrum.num_samples=256",
    "callbacks.hessian_spectrum.top_k=1",
    "callbacks.hessian_spectrum.trace_probes=2",
    "callbacks.sparsity_sweep.sparsities=[0.5,0.9]",
    "callbacks.sparsity_sweep.refine_steps=1",
    "finetune_epochs=1",
    "logger=none",
)
ONE_EPOCH = ("trainer.max_epochs=1", *TINY)

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One MNIST-1D cache, generated in this process, for every job of the module."""
    directory = tmp_path_factory.mktemp("data")
    MNIST1DDataModule(data_dir=str(directory)).prepare_data()
    return directory


def _env(root: Path | None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("HYDRA_FULL_ERROR", "PRUNELIMIT_ROOT") and not k.lower().endswith("_proxy")
    }
    env["OMP_NUM_THREADS"] = "1"
    if root is not None:
        env["PRUNELIMIT_ROOT"] = str(root)
    return env


def _command(args: Sequence[str]) -> list[str]:
    return [str(Path(sys.executable).with_name("prunelimit")), *args]


def prunelimit(
    args: Sequence[str],
    *,
    cwd: Path,
    root: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """Run ``prunelimit args`` in ``cwd``, output piped (as under a batch system)."""
    return subprocess.run(
        _command(args),
        cwd=cwd,
        env={**_env(root), **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start(args: Sequence[str], *, cwd: Path) -> subprocess.Popen[str]:
    """Start ``prunelimit args`` in ``cwd`` without waiting for it, output piped."""
    return subprocess.Popen(
        _command(args),
        cwd=cwd,
        env=_env(None),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _readme_command(prefix: str) -> list[str]:
    """The README's command line that starts with ``prefix``, split into arguments."""
    for line in README.splitlines():
        if line.strip().startswith(prefix):
            return line.split("#")[0].split()[1:]
    raise AssertionError(f"the README shows no command starting with {prefix!r}")


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    # The error is one line, the last; anything before it is a library's warning.
    assert lines[-1].startswith("prunelimit: "), result.stderr
    assert [line for line in lines if "rror" in line or line.startswith("prunelimit")] == lines[-1:]
    return lines[-1]


def _files(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def _run_dirs(root: Path) -> list[Path]:
    return sorted((root / "outputs" / "prunelimit" / "runs").iterdir())


@pytest.mark.slow
def test_readme_sweep_runs_from_a_fresh_directory(tmp_path: Path, data_dir: Path) -> None:
    args = _readme_command("prunelimit -m callbacks.l1_regularization.strength=")
    assert args == ["-m", "callbacks.l1_regularization.strength=0,1e-5,5e-5"]
    result = prunelimit([*args, *ONE_EPOCH, f"paths.data_dir={data_dir}"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (summary,) = tmp_path.glob("outputs/prunelimit/multiruns/*/sweep_summary.csv")
    with open(summary) as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["job"], r["status"]) for r in rows] == [(str(i), "completed") for i in range(3)]
    assert "strength=5e-05" in rows[2]["overrides"]
    for row in rows:
        report = JobReport.read(summary.parent / row["job"] / "report.json")
        assert float(row["predicted_sparsity"]) == pytest.approx(
            report.value("prediction.sparsity"), rel=1e-9
        )
        overrides = yaml.safe_load(
            (summary.parent / row["job"] / ".hydra/overrides.yaml").read_text()
        )
        assert overrides == report.job["overrides"]


@pytest.mark.slow
def test_readme_grid_search_runs_under_prunelimit_root(tmp_path: Path, data_dir: Path) -> None:
    args = _readme_command("prunelimit hparams_search=l1_grid")
    assert args == ["hparams_search=l1_grid"]
    root, cwd = tmp_path / "root", tmp_path / "cwd"
    cwd.mkdir()
    shutil.copytree(data_dir, root / "data")  # the cache where PRUNELIMIT_ROOT puts the data
    result = prunelimit([*args, *ONE_EPOCH], cwd=cwd, root=root)
    assert result.returncode == 0, result.stderr[-3000:]
    assert not any(cwd.iterdir())  # everything went under PRUNELIMIT_ROOT
    (summary,) = root.glob("outputs/prunelimit/multiruns/*/sweep_summary.csv")
    with open(summary) as handle:
        rows = list(csv.DictReader(handle))
    assert [r["status"] for r in rows] == ["completed"] * 5


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("hydra_plugins.hydra_optuna_sweeper") is None,
    reason="hydra-optuna-sweeper is not installed (extra 'optuna'; the README's test command "
    "installs it)",
)
def test_optuna_search_runs_and_reports_a_pareto_front(tmp_path: Path, data_dir: Path) -> None:
    args = _readme_command("prunelimit hparams_search=l1_optuna")
    assert args == ["hparams_search=l1_optuna"]
    trials = ("hydra.sweeper.n_trials=2", f"paths.data_dir={data_dir}")
    result = prunelimit([*args, *ONE_EPOCH, *trials], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Number of Pareto solutions" in result.stdout + result.stderr
    (summary,) = tmp_path.glob("outputs/prunelimit/multiruns/*/sweep_summary.csv")
    with open(summary) as handle:
        rows = list(csv.DictReader(handle))
    assert [r["status"] for r in rows] == ["completed"] * 2


@pytest.fixture(scope="module")
def simultaneous(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> dict[str, object]:
    """Two jobs launched at the same moment from one directory (as a scheduler might)."""
    cwd = tmp_path_factory.mktemp("simultaneous")
    commands = [[*ONE_EPOCH, f"paths.data_dir={data_dir}", f"seed={seed}"] for seed in (1, 2)]
    processes = [start(args, cwd=cwd) for args in commands]
    outputs = [p.communicate(timeout=300) for p in processes]
    return {"cwd": cwd, "commands": commands, "processes": processes, "outputs": outputs}


@pytest.mark.slow
def test_simultaneous_launches_get_a_run_directory_each(simultaneous: dict[str, object]) -> None:
    for process, (_, stderr) in zip(simultaneous["processes"], simultaneous["outputs"]):
        assert process.returncode == 0, stderr[-3000:]
    runs = _run_dirs(simultaneous["cwd"])
    assert len(runs) == 2
    if runs[0].name.split("_2")[0] == runs[1].name.split("_2")[0]:  # the same second
        assert {run.name for run in runs} == {runs[0].name, runs[0].name + "_2"}
    seeds = set()
    for run in runs:
        report = JobReport.read(run / "report.json")
        assert report.status == "completed" and report.job["run_dir"] == str(run)
        overrides = yaml.safe_load((run / ".hydra" / "overrides.yaml").read_text())
        assert overrides == report.job["overrides"]
        assert (
            yaml.safe_load((run / ".hydra" / "config.yaml").read_text())["seed"]
            == report.config["seed"]
        )
        assert (run / "dense.ckpt").is_file() and (run / "pruned.ckpt").is_file()
        seeds.add(report.config["seed"])
    assert seeds == {1, 2}


@pytest.mark.slow
def test_a_refused_rerun_leaves_every_file_as_it_was(simultaneous: dict[str, object]) -> None:
    run = _run_dirs(simultaneous["cwd"])[0]
    before = _files(run)
    seed = JobReport.read(run / "report.json").config["seed"]
    args = [*simultaneous["commands"][seed - 1], f"hydra.run.dir={run}"]
    line = _one_line_error(prunelimit(args, cwd=simultaneous["cwd"]))
    assert "dense.ckpt already exists and the job never overwrites a checkpoint" in line
    assert "hydra.run.dir=" in line and "resume=" not in line  # that run finished
    assert _files(run) == before  # byte for byte, .hydra/ and the log included


INTERRUPTIBLE = (*TINY, "trainer.max_epochs=12")


def _epochs(stdout: str) -> list[int]:
    return [
        int(line.split()[1].split("/")[0])
        for line in stdout.splitlines()
        if line.startswith("epoch ")
    ]


def _interrupted(cwd: Path, data_dir: Path, signum: int, after: str) -> tuple[str, Path]:
    """Start a 12-epoch job, send ``signum`` once its output shows ``after``, check the exit.

    Returns the job's standard output and its run directory.
    """
    args = [*INTERRUPTIBLE, f"paths.data_dir={data_dir}"]
    process = start(args, cwd=cwd)
    seen = []
    assert process.stdout is not None
    for line in process.stdout:
        seen.append(line)
        if line.startswith(after):
            process.send_signal(signum)
            break
    stdout, stderr = process.communicate(timeout=120)
    name = signal.Signals(signum).name
    assert process.returncode == 128 + signum, stderr[-3000:]
    assert "Traceback" not in stderr and "SystemExit" not in stderr
    (run,) = _run_dirs(cwd)
    assert stderr.strip().splitlines()[-1] == (
        f"prunelimit: interrupted by {name} in stage train; continue with: prunelimit resume={run}"
    )
    report = JobReport.read(run / "report.json")
    assert (report.status, report.stage) == ("interrupted", "train")
    assert report.error == f"JobInterrupted: interrupted by {name}" and report.dense is None
    return "".join(seen) + stdout, run


@pytest.mark.slow
def test_sigterm_during_training_is_reported_and_the_run_resumes(
    tmp_path: Path, data_dir: Path
) -> None:
    stdout, run = _interrupted(tmp_path, data_dir, signal.SIGTERM, "epoch 2/12")
    assert (run / "checkpoints" / "last.ckpt").is_file() and not (run / "dense.ckpt").exists()
    stopped_at = max(_epochs(stdout))

    original_config = (run / ".hydra" / "config.yaml").read_bytes()
    resumed = prunelimit(["resume=" + str(run)], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    epochs = _epochs(resumed.stdout)
    assert 1 < epochs[0] <= stopped_at + 1 and epochs[-1] == 12  # continued, not restarted
    report = JobReport.read(run / "report.json")
    assert report.status == "completed" and report.stage is None
    assert report.dense["epochs"] == 12 and report.job["resumed"] == 1
    assert report.job["overrides"] == [*INTERRUPTIBLE, f"paths.data_dir={data_dir}"]
    assert report.prediction is not None and report.pruned is not None
    assert len(_run_dirs(tmp_path)) == 1  # the same directory
    assert (run / ".hydra" / "config.yaml").read_bytes() == original_config
    assert (run / ".hydra" / "resume" / "overrides.yaml").read_text() == f"- resume={run}\n"
    line = _one_line_error(prunelimit(["resume=" + str(run)], cwd=tmp_path))
    assert "nothing to resume" in line


@pytest.mark.slow
def test_sigint_ends_with_status_130_and_an_interrupted_report(
    tmp_path: Path, data_dir: Path
) -> None:
    _interrupted(tmp_path, data_dir, signal.SIGINT, "epoch 1/12")


@pytest.mark.slow
def test_sigterm_during_the_analysis_names_the_stage_and_resume_reruns_it(
    tmp_path: Path, data_dir: Path
) -> None:
    # A long trace (2,000 probes) after a separate top-eigenvalue run: the signal lands inside
    # the analysis.
    args = [*TINY, "trainer.max_epochs=2", "callbacks.hessian_spectrum.trace_probes=2000"]
    args.append("callbacks.hessian_spectrum.top_iters=4")
    args.append(f"paths.data_dir={data_dir}")
    process = start(args, cwd=tmp_path)
    assert process.stdout is not None
    for line in process.stdout:
        if "Hessian top eigenvalues: done in" in line:
            process.send_signal(signal.SIGTERM)
            break
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr[-3000:]
    (run,) = _run_dirs(tmp_path)
    assert stderr.strip().splitlines()[-1] == (
        f"prunelimit: interrupted by SIGTERM in stage spectrum; continue with: "
        f"prunelimit resume={run}"
    )
    report = JobReport.read(run / "report.json")
    assert (report.status, report.stage, report.prediction) == ("interrupted", "spectrum", None)

    resumed = prunelimit(["resume=" + str(run)], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    report = JobReport.read(run / "report.json")
    assert report.status == "completed" and report.job["resumed"] == 1
    assert report.prediction is not None and report.actual is not None


@pytest.mark.slow
def test_a_diverging_run_stops_in_its_first_epoch_with_the_keys_to_change(
    tmp_path: Path, data_dir: Path
) -> None:
    args = [*TINY, "trainer.max_epochs=5", "model.optimizer.lr=1e6", f"paths.data_dir={data_dir}"]
    result = prunelimit(args, cwd=tmp_path)
    line = _one_line_error(result)
    assert line.startswith("prunelimit: training diverged: the training loss is nan at epoch 1")
    assert "model.optimizer.lr (now 1000000.0)" in line
    assert "callbacks.l1_regularization.strength (now 0.001)" in line
    assert "epoch " not in result.stdout  # stopped before the first epoch ended
    (run,) = _run_dirs(tmp_path)
    report = JobReport.read(run / "report.json")
    assert (report.status, report.stage) == ("failed", "train")
    assert not (run / "dense.ckpt").exists()


@pytest.mark.slow
def test_unusable_paths_and_an_offline_download_fail_with_one_line(tmp_path: Path) -> None:
    a_file = tmp_path / "a_file"
    a_file.write_text("not a directory")
    offline = {"https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9"}
    cases = [
        (
            ["data=cifar10", "model=fc5", "data.download=true", f"paths.data_dir={tmp_path / 'd'}"],
            offline,
            ["the download failed", "set data.download=false", "paths.data_dir="],
        ),
        ([f"paths.data_dir={a_file}"], {}, ["cannot use paths.data_dir=", "Not a directory"]),
        (
            [f"paths.log_dir={a_file}/outputs"],
            {},
            ["cannot write the run directory", "paths.log_dir"],
        ),
    ]
    if os.geteuid() != 0:  # permissions do not stop root
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        cases += [
            ([f"paths.data_dir={locked}/data"], {}, ["cannot use paths.data_dir=", "ermission"]),
            ([f"paths.log_dir={locked}/outputs"], {}, ["cannot write the run directory"]),
        ]
    for args, env, expected in cases:
        line = _one_line_error(prunelimit([*args, *ONE_EPOCH], cwd=tmp_path, env=env, timeout=120))
        for text in expected:
            assert text in line, (args, line)


@pytest.mark.slow
def test_default_job_piped_output_is_short_and_ends_with_the_results(
    tmp_path: Path, data_dir: Path
) -> None:
    # The default job's 60 training and 5 fine-tuning epochs; cheaper stages after training.
    cheaper = (
        "callbacks.hessian_spectrum.num_iters=8",
        "callbacks.hessian_spectrum.trace_probes=4",
        "callbacks.sparsity_sweep.refine_steps=2",
    )
    result = prunelimit([*cheaper, f"paths.data_dir={data_dir}"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = (result.stdout + result.stderr).splitlines()
    assert len(lines) <= 150, len(lines)
    assert "\r" not in result.stdout + result.stderr  # no progress-bar redraws
    assert sum(line.startswith("epoch ") for line in lines) == 60
    assert sum(line.startswith("fine-tune epoch ") for line in lines) == 5
    assert sum("Total params" in line for line in lines) == 1  # one model summary
    assert len({line for line in lines if "GPU available" in line}) == 2  # two Trainers, once each
    tail = result.stdout.splitlines()[-9:]
    assert [re.split(r"\s{2,}", line)[0] for line in tail] == [
        "dense accuracy",
        "predicted sparsity",
        "predicted sparsity interval",
        "actual sparsity limit",
        "actual limit interval",
        "prediction vs actual",
        "paired-test limit",
        "pruned + fine-tuned accuracy",
        "realised sparsity",
    ]


def test_help_describes_the_app(tmp_path: Path) -> None:
    result = prunelimit(["--help"], cwd=tmp_path)
    assert result.returncode == 0
    text = result.stdout
    assert text.startswith("prunelimit: how sparse can this network be pruned?")
    for needle in (
        "stochastic\nLanczos quadrature",
        "experiment: alexnet_cifar10, fc12_cifar10",
        "model/optimizer: sgd",
        "prunelimit -m callbacks.l1_regularization.strength=0,1e-5,5e-5",
        "outputs/<task_name>/runs/<date>_<time>/",
        "prunelimit resume=<run dir>",
        'ImageClassifier.load_from_checkpoint("<run dir>/pruned.ckpt")',
    ):
        assert needle in text, needle
    assert sum(line.startswith("  prunelimit") for line in text.splitlines()) == 3
    assert not any(tmp_path.iterdir())  # --help runs nothing
