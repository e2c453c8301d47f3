"""The job's report: what each stage found, as ``report.json`` and ``report.md``."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from lightning_prunelimit.app.run_dir.atomic_write import write_text_atomic
from lightning_prunelimit.pruning.agreement import IntervalAgreement, interval_agreement

if TYPE_CHECKING:  # pragma: no cover
    from lightning_prunelimit.curvature import Spectrum
    from lightning_prunelimit.limit import LimitPrediction
    from lightning_prunelimit.pruning import SparsitySweepResult

_Result = TypeVar("_Result")

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
    "actual.sparsity_limit_lo",
    "actual.sparsity_limit_hi",
    "actual.drop_limit",
    "actual.paired_test_limit",
    "actual.refit_sparsity_limit",
    "actual.refit_sparsity_limit_lo",
    "actual.refit_sparsity_limit_hi",
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
            ``num_prunable_weights``, ``epochs``.
        prediction: ``PruningLimit.state_dict()``: ``prediction`` (a
            ``LimitPrediction.to_dict()``), ``trajectory``, ``epsilon_batch_size``,
            ``timings`` (seconds per stage) and ``computed_at_step``; see
            :meth:`limit_prediction`.
        actual: ``SparsitySweep.state_dict()``: ``result`` (a
            ``SparsitySweepResult.to_dict()``) and ``computed_at_step``; see
            :meth:`sweep_result`.
        pruned: after pruning at the predicted sparsity and fine-tuning: ``sparsity`` (realised),
            ``requested_sparsity``, ``accuracy``, ``loss``, ``per_layer`` sparsities.
        spectrum: ``HessianSpectrum.state_dict()``: ``spectrum`` (a ``Spectrum.to_dict()``:
            Ritz nodes and weights, Lanczos coefficients), ``top_eigenvalues``, ``trace``,
            ``trace_stderr``, ``num_params``, ``samples_used``, ``dataset_size``,
            ``sample_error``, ``timings``...; see :meth:`hessian_spectrum`.

            The three result sections are serialised one way, by the callbacks, and read
            back through the results' ``from_dict``; :meth:`scalars` and :meth:`value` give
            their headline figures under the names of :data:`REPORT_METRICS`.
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

    def hessian_spectrum(self) -> Spectrum | None:
        """The ``Spectrum`` of the ``spectrum`` section, or ``None``.

        Example:
            >>> JobReport(status="completed").hessian_spectrum() is None
            True
        """
        from lightning_prunelimit.curvature import Spectrum

        return _rebuilt(self.spectrum, "spectrum", Spectrum.from_dict)

    def limit_prediction(self) -> LimitPrediction | None:
        """The ``LimitPrediction`` of the ``prediction`` section, or ``None``.

        Example:
            >>> JobReport(status="completed").limit_prediction() is None
            True
        """
        from lightning_prunelimit.limit import LimitPrediction

        return _rebuilt(self.prediction, "prediction", LimitPrediction.from_dict)

    def sweep_result(self) -> SparsitySweepResult | None:
        """The ``SparsitySweepResult`` of the ``actual`` section, or ``None``.

        Example:
            >>> from lightning_prunelimit.pruning import SparsitySweepResult
            >>> result = SparsitySweepResult((0.0, 0.5), (0.9, 0.9), (0.3, 0.4), 0.5, 0.9, 0.0)
            >>> JobReport(status="completed", actual={"result": result.to_dict()}).sweep_result(
            ...     ) == result
            True
        """
        from lightning_prunelimit.pruning import SparsitySweepResult

        return _rebuilt(self.actual, "result", SparsitySweepResult.from_dict)

    def scalars(self, section: str) -> dict[str, Any]:
        """The headline scalars of one section, by name (``None`` where absent).

        ``dense`` and ``pruned`` are flat already. The result sections are read through their
        results: ``prediction`` gives ``kept_fraction``, ``sparsity``, ``sparsity_lo`` /
        ``_hi``, ``distance``, ``width``, ``epsilon``, ``zero_fraction``; ``actual`` gives
        ``sparsity_limit`` with ``sparsity_limit_lo`` / ``_hi``, ``drop_limit``,
        ``paired_test_limit``, the same under ``refit_``, ``criterion``, ``dense_accuracy``...;
        ``spectrum`` gives ``top_eigenvalue``, ``trace``, ``num_iters``, ``num_probes``,
        ``num_samples``... The section's own top-level scalars (``epsilon_batch_size``,
        ``computed_at_step``...) come with them.

        Example:
            >>> from lightning_prunelimit.pruning import SparsitySweepResult
            >>> result = SparsitySweepResult((0.0, 0.5), (0.9, 0.9), (0.3, 0.4), 0.5, 0.9, 0.0,
            ...     actual_limit_interval=(0.4, 0.6))
            >>> scalars = JobReport(status="completed", actual={"result": result.to_dict()}
            ...     ).scalars("actual")
            >>> scalars["sparsity_limit"], scalars["sparsity_limit_lo"], scalars["max_drop"]
            (0.5, 0.4, 0.0)
        """
        if section not in _SECTIONS:
            raise KeyError(f"{section!r} is not a report section: use one of {_SECTIONS}")
        entries = getattr(self, section) or {}
        out = {k: v for k, v in entries.items() if _is_scalar(v)}
        if section == "prediction" and (prediction := self.limit_prediction()) is not None:
            out.update(_prediction_scalars(prediction))
        elif section == "actual" and (result := self.sweep_result()) is not None:
            out.update(_sweep_scalars(result))
        elif section == "spectrum" and (spectrum := self.hessian_spectrum()) is not None:
            out.update(_spectrum_scalars(entries, spectrum))
        return out

    def value(self, key: str) -> float | None:
        """The scalar at a dotted ``key`` such as ``"prediction.sparsity"``; ``None`` if absent.

        Example:
            >>> JobReport(status="completed", pruned={"sparsity": 0.75}).value("pruned.sparsity")
            0.75
        """
        section, _, name = key.partition(".")
        if section not in _SECTIONS or not name:
            raise KeyError(f"{key!r} is not a report value: use one of {', '.join(REPORT_METRICS)}")
        value = self.scalars(section).get(name)
        if value is None or isinstance(value, str):
            return None
        return float(value)

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
        extra = []
        for prefix, label in (("", "actual"), ("refit_", "re-fitted")):
            limit = self.value(f"actual.{prefix}sparsity_limit")
            if limit is None:
                continue
            if prefix:
                extra.append((f"{label} sparsity limit", f"{limit:.4f}"))
            interval = self.measured_interval(refit=bool(prefix))
            if interval is not None:
                extra.append((f"{label} limit interval", f"[{interval[0]:.4f},{interval[1]:.4f}]"))
            agreement = self.agreement(refit=bool(prefix))
            if agreement is not None:
                extra.append((f"prediction vs {label}", _agreement_text(agreement)))
            other = _other_criterion(self.scalars("actual"), prefix)
            if other is not None:
                extra.append(other)
        index = [label for label, _ in out].index("actual sparsity limit") + 1
        out[index:index] = extra
        return out

    def measured_interval(self, *, refit: bool = False) -> tuple[float, float] | None:
        """The measured limit's interval ``(lo, hi)`` (re-fitted with ``refit``), if any.

        Example:
            >>> JobReport(status="completed", actual={"sparsity_limit_lo": 0.8,
            ...     "sparsity_limit_hi": 0.9}).measured_interval()
            (0.8, 0.9)
        """
        prefix = "actual.refit_sparsity_limit" if refit else "actual.sparsity_limit"
        low, high = self.value(f"{prefix}_lo"), self.value(f"{prefix}_hi")
        return None if low is None or high is None else (low, high)

    def agreement(self, *, refit: bool = False) -> IntervalAgreement | None:
        """Whether the predicted interval and the measured one overlap, and their distance.

        A limit without an interval counts as a point. ``None`` without both limits.

        Example:
            >>> report = JobReport(status="completed",
            ...     prediction={"sparsity": 0.7, "sparsity_lo": 0.65, "sparsity_hi": 0.75},
            ...     actual={"sparsity_limit": 0.85, "sparsity_limit_lo": 0.8,
            ...             "sparsity_limit_hi": 0.9})
            >>> agreement = report.agreement()
            >>> agreement.overlap, round(agreement.distance, 4)
            (False, 0.05)
        """
        predicted = self.value("prediction.sparsity")
        measured = self.value("actual.refit_sparsity_limit" if refit else "actual.sparsity_limit")
        if predicted is None or measured is None:
            return None
        low, high = self.value("prediction.sparsity_lo"), self.value("prediction.sparsity_hi")
        predicted_interval = (predicted, predicted) if low is None or high is None else (low, high)
        measured_interval = self.measured_interval(refit=refit) or (measured, measured)
        return interval_agreement(predicted_interval, measured_interval)

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
            scalars = self.scalars(section)
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


def _rebuilt(
    section: Mapping[str, Any] | None, key: str, build: Callable[[Mapping[str, Any]], _Result]
) -> _Result | None:
    """A result rebuilt from its ``to_dict()`` under ``key`` of a section, or ``None``."""
    data = (section or {}).get(key)
    return build(data) if data else None


def _ends(interval: Any) -> tuple[float | None, float | None]:
    return (None, None) if interval is None else (float(interval[0]), float(interval[1]))


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def _prediction_scalars(prediction: Any) -> dict[str, Any]:
    """The headline figures of a ``LimitPrediction``."""
    low, high = _ends(prediction.sparsity_interval)
    return {
        "kept_fraction": float(prediction.kept_fraction),
        "sparsity": float(prediction.sparsity),
        "sparsity_lo": low,
        "sparsity_hi": high,
        "distance": float(prediction.distance),
        "width": float(prediction.width),
        "epsilon": float(prediction.epsilon),
        "zero_fraction": float(prediction.zero_fraction),
        "num_weights": int(prediction.num_weights),
        "num_kept": int(prediction.num_kept),
        "negative": str(prediction.negative),
    }


def _sweep_scalars(result: Any) -> dict[str, Any]:
    """The headline figures of a ``SparsitySweepResult``."""
    low, high = _ends(result.actual_limit_interval)
    refit_low, refit_high = _ends(result.refit_actual_limit_interval)
    return {
        "sparsity_limit": float(result.actual_limit),
        "sparsity_limit_lo": low,
        "sparsity_limit_hi": high,
        "criterion": str(result.criterion),
        "drop_limit": _number(result.drop_limit),
        "paired_test_limit": _number(result.paired_test_limit),
        "dense_accuracy": float(result.dense_accuracy),
        "metric": str(result.metric),
        "max_drop": float(result.max_drop),
        "num_samples": int(result.num_samples),
        "refit_sparsity_limit": _number(result.refit_actual_limit),
        "refit_sparsity_limit_lo": refit_low,
        "refit_sparsity_limit_hi": refit_high,
        "refit_drop_limit": _number(result.refit_drop_limit),
        "refit_paired_test_limit": _number(result.refit_paired_test_limit),
        "refit_steps": int(result.refit_steps),
    }


def _spectrum_scalars(entries: Mapping[str, Any], spectrum: Any) -> dict[str, Any]:
    """The headline figures of the ``spectrum`` section (``HessianSpectrum.state_dict()``)."""
    top = entries.get("top_eigenvalues") or []
    return {
        "top_eigenvalue": _number(top[0]) if top else None,
        "num_parameters": int(entries.get("num_params") or spectrum.dim),
        "num_iters": int(spectrum.num_iters),
        "num_probes": int(spectrum.num_probes),
        "num_samples": entries.get("samples_used"),
    }


def _agreement_text(agreement: IntervalAgreement) -> str:
    if agreement.overlap:
        return "intervals overlap"
    return f"apart by {agreement.distance:.4f}"


def _other_criterion(actual: Mapping[str, Any], prefix: str) -> tuple[str, str] | None:
    """The limit of the criterion the job did not use, so the report shows both."""
    criterion = actual.get("criterion", "drop")
    other = "paired_test" if criterion == "drop" else "drop"
    value = actual.get(f"{prefix}{other}_limit")
    if value is None:
        return None
    label = "paired-test" if other == "paired_test" else "mean-drop"
    return (f"{'re-fitted ' if prefix else ''}{label} limit", f"{float(value):.4f}")


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
