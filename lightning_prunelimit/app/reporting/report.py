"""The job's report: what each stage found, as ``report.json`` and ``report.md``."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from lightning_prunelimit.app.run_dir.atomic_write import write_text_atomic

__all__ = ["REPORT_METRICS", "JobReport"]

#: Scalar entries of a report, by dotted key: what sweepers may optimise and summaries show.
REPORT_METRICS: tuple[str, ...] = (
    "dense.accuracy",
    "dense.loss",
    "prediction.kept_fraction",
    "prediction.sparsity",
    "prediction.sparsity_lo",
    "prediction.sparsity_hi",
    "prediction.distance",
    "prediction.epsilon",
    "prediction.zero_fraction",
    "actual.sparsity_limit",
    "actual.refit_sparsity_limit",
    "actual.dense_accuracy",
    "pruned.sparsity",
    "pruned.accuracy",
    "pruned.loss",
    "spectrum.trace",
    "spectrum.top_eigenvalue",
)

#: What a report's ``status`` can be.
STATUSES: tuple[str, ...] = ("completed", "failed", "interrupted")

_SECTIONS = ("dense", "prediction", "actual", "pruned", "spectrum")


@dataclass(frozen=True)
class JobReport:
    """Everything one ``prunelimit`` job found, section by section.

    Attributes:
        status: ``"completed"``, ``"failed"``, or ``"interrupted"`` (SIGTERM or SIGINT; the run
            continues with ``prunelimit resume=<run dir>``).
        error: ``"<ExceptionType>: <message>"`` for a failed or interrupted job, else ``None``.
        stage: the stage that was running when the job failed or was interrupted (``setup``,
            ``train``, ``spectrum``, ``prediction``, ``actual``, ``evaluate_dense``,
            ``finetune``, ``evaluate_pruned``, ``report``...), else ``None``.
        dense: the trained dense network: ``accuracy``, ``loss`` (test set),
            ``num_prunable_weights``.
        prediction: the predicted limit (``PruningLimit.prediction.to_dict()``):
            ``kept_fraction``, ``sparsity``, ``distance``, ``epsilon``, ``zero_fraction``...
        actual: the measured limit: ``sparsity_limit``, ``dense_accuracy``, ``metric``,
            ``tolerance`` and ``curve`` (``sparsities``, ``accuracies``, ``losses``).
        pruned: after pruning at the predicted sparsity and fine-tuning: ``sparsity`` (realised),
            ``requested_sparsity``, ``accuracy``, ``loss``, ``per_layer`` sparsities.
        spectrum: ``top_eigenvalues``, ``top_eigenvalue``, ``trace``, ``num_parameters``,
            ``num_iters``, ``num_probes`` and the Ritz ``nodes`` and ``weights``.
        timings_s: seconds per stage.
        job: ``task_name``, ``run_dir``, ``overrides`` (the command-line overrides) and, in a
            sweep, ``num``.
        files: paths of what the job wrote, relative to the run directory.
        config: the resolved configuration.
        versions: versions of Python and the main packages.

    Example:
        >>> report = JobReport(status="completed", dense={"accuracy": 0.9, "loss": 0.3},
        ...                    pruned={"accuracy": 0.88, "sparsity": 0.7})
        >>> report.value("pruned.accuracy")
        0.88
        >>> JobReport.from_dict(report.to_dict()) == report
        True
    """

    status: str
    error: str | None = None
    stage: str | None = None
    dense: dict[str, Any] | None = None
    prediction: dict[str, Any] | None = None
    actual: dict[str, Any] | None = None
    pruned: dict[str, Any] | None = None
    spectrum: dict[str, Any] | None = None
    timings_s: dict[str, float] = field(default_factory=dict)
    job: dict[str, Any] = field(default_factory=dict)
    files: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {self.status!r}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dictionary (non-finite floats become ``None``).

        Example:
            >>> JobReport(status="failed", error="ValueError: bad").to_dict()["error"]
            'ValueError: bad'
        """
        return {f.name: _jsonable(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobReport:
        """Rebuild a report from :meth:`to_dict` output (unknown keys are ignored).

        Example:
            >>> JobReport.from_dict({"status": "completed", "dense": {"accuracy": 1.0}}).dense
            {'accuracy': 1.0}
        """
        names = {f.name for f in fields(cls)}
        if "status" not in data:
            raise ValueError("a report needs a 'status' entry ('completed' or 'failed')")
        return cls(**{k: v for k, v in data.items() if k in names})

    def value(self, key: str) -> float | None:
        """The scalar at a dotted ``key`` such as ``"prediction.sparsity"``; ``None`` if absent.

        Example:
            >>> JobReport(status="completed", prediction={"sparsity": 0.75}).value(
            ...     "prediction.sparsity")
            0.75
        """
        section, _, name = key.partition(".")
        if section not in _SECTIONS or not name:
            raise KeyError(f"{key!r} is not a report value: use one of {', '.join(REPORT_METRICS)}")
        entries = getattr(self, section)
        if not entries or entries.get(name) is None:
            return None
        return float(entries[name])

    def summary_rows(self) -> list[tuple[str, str]]:
        """The job's headline figures as ``(label, formatted value)`` rows.

        Example:
            >>> JobReport(status="completed", dense={"accuracy": 0.912}).summary_rows()[0]
            ('dense accuracy', '0.9120')
        """
        rows = [
            ("dense accuracy", self.value("dense.accuracy")),
            ("predicted sparsity", self.value("prediction.sparsity")),
            ("actual sparsity limit", self.value("actual.sparsity_limit")),
            ("pruned + fine-tuned accuracy", self.value("pruned.accuracy")),
            ("realised sparsity", self.value("pruned.sparsity")),
        ]
        out = [(label, "n/a" if v is None else f"{v:.4f}") for label, v in rows]
        low, high = self.value("prediction.sparsity_lo"), self.value("prediction.sparsity_hi")
        if low is not None and high is not None:
            out.insert(2, ("predicted sparsity interval", f"[{low:.4f},{high:.4f}]"))
        refit = self.value("actual.refit_sparsity_limit")
        if refit is not None:
            out.insert(-2, ("re-fitted sparsity limit", f"{refit:.4f}"))
        return out

    def summary_table(self) -> str:
        """The headline figures as a small plain-text table (what the job prints at the end).

        Example:
            >>> print(JobReport(status="completed", dense={"accuracy": 0.5}).summary_table())
            ... # doctest: +NORMALIZE_WHITESPACE
            dense accuracy                0.5000
            predicted sparsity            n/a
            actual sparsity limit         n/a
            pruned + fine-tuned accuracy  n/a
            realised sparsity             n/a
        """
        rows = self.summary_rows()
        width = max(len(label) for label, _ in rows)
        lines = [f"{label:<{width}}  {value}" for label, value in rows]
        if self.status != "completed":
            lines.append(f"{'status':<{width}}  {self.status} (stage {self.stage})")
            lines.append(f"{'error':<{width}}  {self.error}")
        return "\n".join(lines)

    def to_markdown(self) -> str:
        """A human-readable ``report.md``: headline table, stage details, timings, figures.

        Example:
            >>> text = JobReport(status="completed", dense={"accuracy": 0.9}).to_markdown()
            >>> text.splitlines()[0]
            '# prunelimit report'
        """
        lines = ["# prunelimit report", ""]
        if self.job.get("task_name"):
            lines += [f"Task `{self.job['task_name']}`, status **{self.status}**.", ""]
        else:
            lines += [f"Status **{self.status}**.", ""]
        if self.stage:
            lines += [f"Stopped in stage `{self.stage}`.", ""]
        if self.error:
            lines += ["Error:", "", "```", str(self.error), "```", ""]
        if self.job.get("overrides"):
            lines += ["Overrides: `" + " ".join(self.job["overrides"]) + "`", ""]
        lines += ["| result | value |", "|---|---|"]
        lines += [f"| {label} | {value} |" for label, value in self.summary_rows()]
        lines.append("")
        for section in _SECTIONS:
            entries = getattr(self, section)
            if not entries:
                continue
            scalars = {k: v for k, v in entries.items() if _is_scalar(v)}
            if not scalars:
                continue
            lines += [f"## {section}", "", "| key | value |", "|---|---|"]
            lines += [f"| {k} | {_format(v)} |" for k, v in scalars.items()]
            lines.append("")
        if self.timings_s:
            lines += ["## timings", "", "| stage | seconds |", "|---|---|"]
            lines += [f"| {k} | {v:.2f} |" for k, v in self.timings_s.items()]
            lines.append("")
        figures = self.files.get("figures") or []
        if figures:
            lines += ["## figures", ""]
            lines += [f"![{Path(name).stem}]({name})" for name in figures]
            lines.append("")
        if self.versions:
            lines += ["## versions", ""]
            lines += [f"- {k} {v}" for k, v in self.versions.items()]
            lines.append("")
        return "\n".join(lines)

    def write(self, run_dir: str | os.PathLike[str]) -> tuple[Path, Path]:
        """Write ``report.json`` and ``report.md`` into ``run_dir``; return their paths.

        Each file is written to a temporary name and then renamed, so a reader (a sweep summary
        built by another job) never sees half a file.

        Example:
            >>> import tempfile
            >>> with tempfile.TemporaryDirectory() as d:
            ...     json_path, md_path = JobReport(status="completed").write(d)
            ...     JobReport.read(json_path).status
            'completed'
        """
        directory = Path(run_dir)
        directory.mkdir(parents=True, exist_ok=True)
        json_path = directory / "report.json"
        md_path = directory / "report.md"
        write_text_atomic(json_path, json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n")
        write_text_atomic(md_path, self.to_markdown())
        return json_path, md_path

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> JobReport:
        """Read a ``report.json`` written by :meth:`write`.

        Example:
            >>> import tempfile
            >>> with tempfile.TemporaryDirectory() as d:
            ...     path, _ = JobReport(status="failed", error="E: x").write(d)
            ...     JobReport.read(path).error
            'E: x'
        """
        with open(path, encoding="utf-8") as handle:
            return cls.from_dict(json.load(handle))


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "n/a" if value is None else str(value)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if hasattr(value, "tolist"):  # tensors and NumPy values
        return _jsonable(value.tolist())
    if isinstance(value, Sequence):
        return [_jsonable(v) for v in value]
    return str(value)
