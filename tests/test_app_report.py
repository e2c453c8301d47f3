"""The job report and the sweep summary: round trips, values, tables, files."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import pytest
import torch

from lightning_prunelimit.app import REPORT_METRICS, JobReport, SweepSummary
from lightning_prunelimit.app.figures.report_figures import plot_sweep_limits, write_report_figures
from lightning_prunelimit.app.job.timing import StageTimings
from lightning_prunelimit.app.reporting.sweep_summary import SUMMARY_COLUMNS
from lightning_prunelimit.curvature import Spectrum
from lightning_prunelimit.limit import LimitPrediction
from lightning_prunelimit.pruning import SparsitySweepResult


def _prediction() -> LimitPrediction:
    return LimitPrediction(
        kept_fraction=0.25,
        sparsity=0.75,
        distance=1.5,
        width=0.75,
        epsilon=0.01,
        zero_fraction=0.0,
        num_weights=100,
        num_kept=25,
        negative="abs",
        curve_kept_fractions=(0.0, 0.5, 1.0),
        curve_distances=(3.0, 1.0, 0.0),
        curve_widths=(0.9, 0.6, 0.1),
        sparsity_interval=(0.7, 0.78),
        kept_fraction_interval=(0.22, 0.3),
    )


def _sweep() -> SparsitySweepResult:
    return SparsitySweepResult(
        sparsities=(0.0, 0.5, 0.8, 0.9),
        accuracies=(0.9, 0.91, 0.9, 0.5),
        losses=(0.3, 0.3, 0.31, 1.2),
        actual_limit=0.8,
        dense_accuracy=0.9,
        max_drop=0.0,
        num_samples=200,
        refit_accuracies=(0.9, 0.92, 0.91, 0.9),
        refit_losses=(0.3, 0.29, 0.3, 0.33),
        refit_actual_limit=0.85,
        refit_steps=10,
        actual_limit_interval=(0.78, 0.83),
        refit_actual_limit_interval=(0.8, 0.9),
        drop_limit=0.8,
        paired_test_limit=0.82,
    )


def _spectrum() -> Spectrum:
    return Spectrum(torch.tensor([[0.5, 3.0]]), torch.tensor([[0.75, 0.25]]), 110)


def _report(**overrides: object) -> JobReport:
    fields: dict[str, object] = {
        "status": "completed",
        "dense": {"accuracy": 0.9, "loss": 0.3, "num_prunable_weights": 100},
        "prediction": {"prediction": _prediction().to_dict(), "epsilon_batch_size": 128},
        "actual": {"result": _sweep().to_dict(), "computed_at_step": 40},
        "pruned": {
            "sparsity": 0.75,
            "requested_sparsity": 0.75,
            "accuracy": 0.89,
            "loss": 0.35,
            "per_layer": {"fc1.weight": 0.8, "fc2.weight": 0.5},
        },
        "spectrum": {
            "spectrum": _spectrum().to_dict(),
            "top_eigenvalues": [3.0, 2.0],
            "trace": 12.5,
            "num_params": 110,
            "samples_used": 64,
        },
        "timings_s": {"train": 1.0, "total": 2.0},
        "job": {"task_name": "unit", "overrides": ["seed=1"], "num": 3},
    }
    fields.update(overrides)
    return JobReport(**fields)  # type: ignore[arg-type]


def test_report_round_trips_through_json(tmp_path: Path) -> None:
    report = _report()
    json_path, md_path = report.write(tmp_path)
    assert JobReport.read(json_path) == report
    assert json.loads(json_path.read_text())["prediction"]["prediction"]["sparsity"] == 0.75
    assert md_path.read_text() == report.to_markdown()
    assert not list(tmp_path.glob(".*.tmp"))  # temporary files renamed away


def test_non_finite_numbers_become_null(tmp_path: Path) -> None:
    report = _report(dense={"accuracy": math.nan, "loss": math.inf})
    assert report.to_dict()["dense"] == {"accuracy": None, "loss": None}
    json_path, _ = report.write(tmp_path)
    assert JobReport.read(json_path).value("dense.accuracy") is None


def test_values_by_dotted_key() -> None:
    report = _report()
    expected = {
        "dense.accuracy": 0.9,
        "dense.loss": 0.3,
        "prediction.kept_fraction": 0.25,
        "prediction.sparsity": 0.75,
        "prediction.sparsity_lo": 0.7,
        "prediction.sparsity_hi": 0.78,
        "prediction.distance": 1.5,
        "prediction.epsilon": 0.01,
        "prediction.zero_fraction": 0.0,
        "actual.sparsity_limit": 0.8,
        "actual.sparsity_limit_lo": 0.78,
        "actual.sparsity_limit_hi": 0.83,
        "actual.drop_limit": 0.8,
        "actual.paired_test_limit": 0.82,
        "actual.refit_sparsity_limit": 0.85,
        "actual.refit_sparsity_limit_lo": 0.8,
        "actual.refit_sparsity_limit_hi": 0.9,
        "actual.dense_accuracy": 0.9,
        "pruned.sparsity": 0.75,
        "pruned.accuracy": 0.89,
        "pruned.loss": 0.35,
        "spectrum.trace": 12.5,
        "spectrum.top_eigenvalue": 3.0,
    }
    assert {key: report.value(key) for key in REPORT_METRICS} == expected
    assert JobReport(status="failed").value("pruned.accuracy") is None
    with pytest.raises(KeyError, match="is not a report value"):
        report.value("timings_s.train")


def test_status_must_be_known() -> None:
    with pytest.raises(ValueError, match="status must be one of completed, failed, interrupted"):
        JobReport(status="done")


def test_an_interrupted_report_names_its_stage(tmp_path: Path) -> None:
    report = JobReport(
        status="interrupted", error="JobInterrupted: interrupted by SIGTERM", stage="spectrum"
    )
    assert JobReport.read(report.write(tmp_path)[0]) == report
    assert report.summary_table().splitlines()[-2:] == [
        "status                        interrupted (stage spectrum)",
        "error                         JobInterrupted: interrupted by SIGTERM",
    ]
    assert "Stopped in stage `spectrum`." in report.to_markdown()


def test_summary_table_lists_the_headline_figures() -> None:
    assert _report().summary_table().splitlines() == [
        "dense accuracy                0.9000",
        "predicted sparsity            0.7500",
        "predicted sparsity interval   [0.7000,0.7800]",
        "actual sparsity limit         0.8000",
        "actual limit interval         [0.7800,0.8300]",
        "prediction vs actual          intervals overlap",
        "paired-test limit             0.8200",
        "re-fitted sparsity limit      0.8500",
        "re-fitted limit interval      [0.8000,0.9000]",
        "prediction vs re-fitted       apart by 0.0200",
        "pruned + fine-tuned accuracy  0.8900",
        "realised sparsity             0.7500",
    ]
    failed = JobReport(status="failed", error="ConfigError: bad", stage="setup").summary_table()
    assert failed.splitlines()[-1] == "error                         ConfigError: bad"


def test_markdown_has_tables_and_figure_links() -> None:
    report = _report(files={"figures": ["figures/spectrum.png"]})
    text = report.to_markdown()
    assert "| predicted sparsity | 0.7500 |" in text
    assert "| sparsity_limit | 0.8 |" in text
    assert "![spectrum](figures/spectrum.png)" in text
    assert "Overrides: `seed=1`" in text
    assert "curve_widths" not in text  # lists stay in report.json only


def test_report_figures_are_drawn_from_the_report_alone(tmp_path: Path) -> None:
    written = write_report_figures(_report(), tmp_path)
    assert written == [
        "figures/spectrum.png",
        "figures/prune_limit.png",
        "figures/sparsity_sweep.png",
        "figures/accuracy_vs_sparsity.png",
        "figures/layer_sparsity.png",
    ]
    for name in written:
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    assert write_report_figures(JobReport(status="failed"), tmp_path / "empty") == []


def test_sweep_summary_collects_every_job(tmp_path: Path) -> None:
    _report(job={"overrides": ["a=1"]}).write(tmp_path / "0")
    JobReport(status="failed", error="ValueError: no | way", job={"overrides": ["a=2"]}).write(
        tmp_path / "10"
    )
    (tmp_path / "2" / ".hydra").mkdir(parents=True)  # started, no report yet
    (tmp_path / ".submitit").mkdir()
    summary = SweepSummary.collect(tmp_path)
    assert [(r["job"], r["status"]) for r in summary.rows] == [
        ("0", "completed"),
        ("2", "missing"),
        ("10", "failed"),
    ]
    csv_path, md_path = summary.write(tmp_path)
    rows = list(csv.DictReader(io.StringIO(csv_path.read_text())))
    assert list(rows[0]) == list(SUMMARY_COLUMNS)
    assert rows[0]["predicted_sparsity"] == "0.75" and rows[0]["overrides"] == "a=1"
    assert rows[0]["actual_sparsity_limit"] == "0.8" and rows[0]["pruned_accuracy"] == "0.89"
    assert (rows[0]["actual_sparsity_lo"], rows[0]["actual_sparsity_hi"]) == ("0.78", "0.83")
    assert (rows[0]["intervals_overlap"], rows[0]["interval_distance"]) == ("True", "0.0")
    assert rows[0]["refit_intervals_overlap"] == "False"
    assert float(rows[0]["refit_interval_distance"]) == pytest.approx(0.02)
    assert rows[2]["intervals_overlap"] == ""
    assert rows[2]["error"] == "ValueError: no | way" and rows[2]["pruned_accuracy"] == ""
    markdown = md_path.read_text().splitlines()
    assert markdown[4].startswith(
        "| 0 | completed | a=1 | 0.9000 | 0.2500 | 0.7500 | 0.7000 | 0.7800 | 0.8000 |"
    )
    assert markdown[6].endswith("| ValueError: no \\| way |")
    figure = plot_sweep_limits(list(summary.rows))
    assert [tuple(p) for p in figure.axes[0].collections[0].get_offsets()] == [(0.8, 0.75)]


def test_stage_timings_accumulate_in_order() -> None:
    timings = StageTimings()
    timings.add("train", 1.0)
    with timings.measure("spectrum"):
        pass
    timings.add("train", 0.5)
    assert list(timings.as_dict()) == ["train", "spectrum"]
    assert timings.as_dict()["train"] == 1.5
    with pytest.raises(ValueError, match="non-negative"):
        timings.add("train", -1.0)


def test_a_failed_checkpoint_write_leaves_the_previous_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lightning.pytorch.plugins.io import TorchCheckpointIO

    from lightning_prunelimit.app.trainer_extras.checkpoint_io import AtomicCheckpointIO

    target = tmp_path / "dense.ckpt"
    AtomicCheckpointIO().save_checkpoint({"epoch": 1}, target)
    before = target.read_bytes()

    def disk_full(self, checkpoint, path, storage_options=None):
        Path(path).write_bytes(b"trunc")  # half a file, then the disk is full
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(TorchCheckpointIO, "save_checkpoint", disk_full)
    with pytest.raises(OSError, match="No space left"):
        AtomicCheckpointIO().save_checkpoint({"epoch": 2}, target)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dense.ckpt"]


def test_result_sections_are_the_results_own_serialisation(tmp_path: Path) -> None:
    report = JobReport.read(_report().write(tmp_path)[0])
    assert report.limit_prediction() == _prediction()
    assert report.sweep_result() == _sweep()
    assert report.hessian_spectrum().to_dict() == _spectrum().to_dict()
    scalars = report.scalars("spectrum")
    assert (scalars["num_iters"], scalars["num_probes"], scalars["num_samples"]) == (2, 1, 64)
    assert report.scalars("actual")["refit_steps"] == 10
    assert report.value("prediction.epsilon_batch_size") == 128.0
    with pytest.raises(KeyError, match="is not a report section"):
        report.scalars("timings_s")


def test_reports_of_the_flat_layout_still_give_their_values() -> None:
    flat = JobReport(
        status="completed",
        prediction={"sparsity": 0.6, "sparsity_lo": 0.5, "sparsity_hi": 0.7},
        actual={"sparsity_limit": 0.65},
    )
    assert (
        flat.value("prediction.sparsity_lo") == 0.5 and flat.value("actual.sparsity_limit") == 0.65
    )
    assert flat.limit_prediction() is None and flat.sweep_result() is None
    assert flat.agreement() is not None and flat.agreement().overlap
