"""One table for a whole sweep: every job's predicted and actual limits and accuracies.

Each measured limit comes with its interval, and beside the prediction with the agreement of
the two intervals: whether they overlap and, when not, the distance between them.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightning_prunelimit.app.reporting.report import JobReport
from lightning_prunelimit.app.run_dir.atomic_write import write_text_atomic

__all__ = ["SUMMARY_COLUMNS", "SweepSummary"]

#: Columns of the summary, in order: job identity, then the report values, then the error.
SUMMARY_COLUMNS: tuple[str, ...] = (
    "job",
    "status",
    "overrides",
    "dense_accuracy",
    "predicted_kept_fraction",
    "predicted_sparsity",
    "predicted_sparsity_lo",
    "predicted_sparsity_hi",
    "actual_sparsity_limit",
    "actual_sparsity_lo",
    "actual_sparsity_hi",
    "intervals_overlap",
    "interval_distance",
    "paired_test_limit",
    "refit_sparsity_limit",
    "refit_sparsity_lo",
    "refit_sparsity_hi",
    "refit_intervals_overlap",
    "refit_interval_distance",
    "pruned_sparsity",
    "pruned_accuracy",
    "error",
)

_VALUES = {
    "dense_accuracy": "dense.accuracy",
    "predicted_kept_fraction": "prediction.kept_fraction",
    "predicted_sparsity": "prediction.sparsity",
    "predicted_sparsity_lo": "prediction.sparsity_lo",
    "predicted_sparsity_hi": "prediction.sparsity_hi",
    "actual_sparsity_limit": "actual.sparsity_limit",
    "actual_sparsity_lo": "actual.sparsity_limit_lo",
    "actual_sparsity_hi": "actual.sparsity_limit_hi",
    "paired_test_limit": "actual.paired_test_limit",
    "refit_sparsity_limit": "actual.refit_sparsity_limit",
    "refit_sparsity_lo": "actual.refit_sparsity_limit_lo",
    "refit_sparsity_hi": "actual.refit_sparsity_limit_hi",
    "pruned_sparsity": "pruned.sparsity",
    "pruned_accuracy": "pruned.accuracy",
}


@dataclass(frozen=True)
class SweepSummary:
    """The rows of a sweep summary, one per job that wrote a ``report.json``.

    Attributes:
        rows: one dictionary per job with the keys of :data:`SUMMARY_COLUMNS`, sorted by job
            (numerically when the job directories are numbers, as Hydra names them).

    Example:
        >>> report = JobReport(status="completed", prediction={"sparsity": 0.8},
        ...                    job={"num": 0, "overrides": ["seed=1"]})
        >>> summary = SweepSummary.from_reports({"0": report})
        >>> summary.rows[0]["predicted_sparsity"], summary.rows[0]["overrides"]
        (0.8, 'seed=1')
    """

    rows: tuple[dict[str, Any], ...]

    @classmethod
    def from_reports(cls, reports: dict[str, JobReport]) -> SweepSummary:
        """Build the summary from ``{job name: report}``.

        Example:
            >>> SweepSummary.from_reports({"1": JobReport(status="failed", error="E: x")}).rows[
            ...     0]["error"]
            'E: x'
        """
        rows = []
        for name in sorted(reports, key=_job_order):
            report = reports[name]
            row: dict[str, Any] = {
                "job": name,
                "status": report.status,
                "overrides": " ".join(report.job.get("overrides") or []),
            }
            for column, key in _VALUES.items():
                row[column] = report.value(key)
            for prefix, refit in (("", False), ("refit_", True)):
                agreement = report.agreement(refit=refit)
                row[f"{prefix}intervals_overlap"] = None if agreement is None else agreement.overlap
                row[f"{prefix}interval_distance"] = (
                    None if agreement is None else agreement.distance
                )
            row["error"] = report.error or ""
            rows.append(row)
        return cls(rows=tuple(rows))

    @classmethod
    def collect(cls, sweep_dir: str | os.PathLike[str]) -> SweepSummary:
        """Read the ``report.json`` of every job directory directly under ``sweep_dir``.

        A job directory without a report (a job still running, or one that died without
        writing it) is listed with status ``"missing"``.

        Example:
            >>> import tempfile
            >>> with tempfile.TemporaryDirectory() as d:
            ...     _ = JobReport(status="completed").write(Path(d) / "0")
            ...     [row["status"] for row in SweepSummary.collect(d).rows]
            ['completed']
        """
        directory = Path(sweep_dir)
        reports: dict[str, JobReport] = {}
        missing: list[str] = []
        for job_dir in sorted(p for p in directory.iterdir() if p.is_dir()):
            if job_dir.name.startswith("."):
                continue
            path = job_dir / "report.json"
            if path.is_file():
                reports[job_dir.name] = JobReport.read(path)
            elif (job_dir / ".hydra").is_dir():
                missing.append(job_dir.name)
        rows = list(cls.from_reports(reports).rows)
        for name in missing:
            row = {column: None for column in SUMMARY_COLUMNS}
            row.update(job=name, status="missing", overrides="", error="no report.json")
            rows.append(row)
        rows.sort(key=lambda row: _job_order(row["job"]))
        return cls(rows=tuple(rows))

    def to_csv(self) -> str:
        """The summary as CSV text (empty cells for missing values).

        Example:
            >>> SweepSummary(rows=()).to_csv().splitlines()[0].split(",")[:3]
            ['job', 'status', 'overrides']
        """
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=SUMMARY_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in self.rows:
            writer.writerow({k: "" if row.get(k) is None else row[k] for k in SUMMARY_COLUMNS})
        return buffer.getvalue()

    def to_markdown(self) -> str:
        """The summary as a Markdown table (4 decimals; ``n/a`` for missing values).

        Example:
            >>> report = JobReport(status="completed", dense={"accuracy": 0.5})
            >>> SweepSummary.from_reports({"0": report}).to_markdown().splitlines()[4][:29]
            '| 0 | completed |  | 0.5000 |'
        """
        lines = [
            "# prunelimit sweep summary",
            "",
            "| " + " | ".join(SUMMARY_COLUMNS) + " |",
            "|" + "---|" * len(SUMMARY_COLUMNS),
        ]
        for row in self.rows:
            cells = [_cell(row.get(column)) for column in SUMMARY_COLUMNS]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"

    def write(self, sweep_dir: str | os.PathLike[str]) -> tuple[Path, Path]:
        """Write ``sweep_summary.csv`` and ``sweep_summary.md`` into ``sweep_dir``.

        Example:
            >>> import tempfile
            >>> with tempfile.TemporaryDirectory() as d:
            ...     csv_path, md_path = SweepSummary(rows=()).write(d)
            ...     csv_path.name, md_path.name
            ('sweep_summary.csv', 'sweep_summary.md')
        """
        directory = Path(sweep_dir)
        csv_path = directory / "sweep_summary.csv"
        md_path = directory / "sweep_summary.md"
        write_text_atomic(csv_path, self.to_csv())
        write_text_atomic(md_path, self.to_markdown())
        return csv_path, md_path


def _job_order(name: str) -> tuple[int, int | str]:
    return (0, int(name)) if name.isdigit() else (1, name)


def _cell(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value).replace("|", "\\|").replace("\n", " ")
