"""Checking a composed configuration before anything expensive runs."""

from __future__ import annotations

import difflib
import inspect
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hydra.errors import CompactHydraException
from hydra.utils import get_object
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from lightning_prunelimit.app.reporting.report import REPORT_METRICS

__all__ = [
    "CHECKPOINT_NAMES",
    "ConfigError",
    "check_no_checkpoints",
    "check_resumable",
    "validate_config",
]

#: Checkpoints the job writes into its run directory; it never overwrites them.
CHECKPOINT_NAMES: tuple[str, ...] = ("dense.ckpt", "pruned.ckpt")


class ConfigError(CompactHydraException, ValueError):
    """A configuration the job cannot run with; the message says what is wrong and the fix.

    Hydra prints such an error as its message alone (no traceback) and exits with status 1;
    ``HYDRA_FULL_ERROR=1`` shows the traceback.

    Example:
        >>> str(ConfigError("finetune_epochs must be >= 0, got -1: pass a number of epochs"))
        'finetune_epochs must be >= 0, got -1: pass a number of epochs'
    """


def validate_config(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` for a configuration that cannot run, before any work starts.

    Checks: no missing (``???``) values; every interpolation resolves; ``data``, ``model`` and
    ``trainer`` are nodes with a ``_target_``; every entry of ``callbacks`` and ``logger`` is a
    node with a ``_target_``; every ``_target_`` (nested ones included) imports, and its node's
    keys are arguments it accepts, with every required argument present; ``finetune_epochs`` is
    a non-negative integer; ``torch_threads`` is null or positive; ``optimized_metric`` names
    report values; the stages a callback needs are configured (the predicted limit needs the
    spectrum; pruning at the ``predicted`` sparsity needs the predicted limit; one pruning
    callback at most).

    Example:
        >>> cfg = OmegaConf.create({"finetune_epochs": -1})
        >>> try:
        ...     validate_config(cfg)
        ... except ConfigError as error:
        ...     print(str(error).split(" (")[0])
        data is not configured
    """
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError(
            f"missing value for {', '.join(missing)}: set it on the command line, e.g. "
            f"{missing[0]}=<value>"
        )
    try:
        OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as error:
        raise ConfigError(
            f"the configuration does not resolve: {_one_line(error)}: fix the interpolation "
            "or set the value it refers to"
        ) from error
    _check_seed(cfg.get("seed"))  # before the nodes that interpolate it
    for group in ("data", "model", "trainer"):
        node = cfg.get(group)
        if not isinstance(node, DictConfig) or "_target_" not in node:
            raise ConfigError(
                f"{group} is not configured (no node with a _target_): choose one with "
                f"{group}=<name> (see `prunelimit --help` for the options)"
            )
        _check_targets(node, group)
    for group in ("callbacks", "logger"):
        for name, node in _entries(cfg, group):
            key = f"{group}.{name}"
            if not isinstance(node, DictConfig) or "_target_" not in node:
                shown = list(node) if isinstance(node, DictConfig) else node
                raise ConfigError(
                    f"{key} has no _target_ (it holds {shown!r}): add it through a {group} "
                    f"config ({group}=<name>) or remove it with ~{key}"
                )
            _check_targets(node, key)
    _check_max_epochs(cfg.trainer.get("max_epochs"))
    _check_finetune_epochs(cfg.get("finetune_epochs", 0))
    _check_torch_threads(cfg.get("torch_threads"))
    _check_optimized_metric(cfg.get("optimized_metric"))
    _check_stages(cfg)


def check_no_checkpoints(run_dir: str | os.PathLike[str]) -> None:
    """Raise :class:`ConfigError` if ``run_dir`` already holds a checkpoint the job would write.

    The job's own (``dense.ckpt``, ``pruned.ckpt``) and the periodic ones under
    ``checkpoints/``; an interrupted run is continued with ``resume=<run dir>`` instead.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     check_no_checkpoints(d)  # an empty directory is fine
    """
    directory = Path(run_dir)
    found = [directory / n for n in CHECKPOINT_NAMES if (directory / n).exists()]
    found += sorted((directory / "checkpoints").glob("*.ckpt"))
    if found:
        finished = (directory / CHECKPOINT_NAMES[-1]).exists()
        resume = "" if finished else f", or continue the interrupted run with resume={directory}"
        raise ConfigError(
            f"{found[0]} already exists and the job never overwrites a checkpoint: choose "
            f"another run directory (hydra.run.dir=...) or move the file away{resume}"
        )


def check_resumable(run_dir: str | os.PathLike[str]) -> None:
    """Raise :class:`ConfigError` if the run in ``run_dir`` has nothing left to resume.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     check_resumable(d)  # no pruned.ckpt yet: the run can continue
    """
    finished = Path(run_dir) / CHECKPOINT_NAMES[-1]
    if finished.exists():
        raise ConfigError(
            f"{finished} exists: the run in {run_dir} finished, there is nothing to resume; "
            "start a new run (without resume=)"
        )


def _entries(cfg: DictConfig, group: str) -> Iterator[tuple[str, Any]]:
    node = cfg.get(group)
    if node is None:
        return
    if not isinstance(node, DictConfig):
        raise ConfigError(
            f"{group} must be a mapping of named nodes, got {node!r}: choose a config with "
            f"{group}=<name>, or {group}=none for none"
        )
    for name in node:
        yield str(name), node[name]


def _check_targets(node: Any, key: str) -> None:
    if isinstance(node, ListConfig):
        for index, item in enumerate(node):
            _check_targets(item, f"{key}[{index}]")
        return
    if not isinstance(node, DictConfig):
        return
    if "_target_" in node:
        _check_arguments(node, key)
    for name in node:
        if not (str(name).startswith("_") and str(name).endswith("_")):
            _check_targets(node[name], f"{key}.{name}")


def _check_arguments(node: DictConfig, key: str) -> None:
    target = node["_target_"]
    try:
        obj = get_object(str(target))
    except Exception as error:
        raise ConfigError(
            f"{key}._target_={target!r} cannot be imported ({_one_line(error)}): check the "
            "spelling of the class or function"
        ) from error
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        return
    parameters = signature.parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    accepted = [
        name
        for name, p in parameters.items()
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    ]
    given = [str(k) for k in node if not (str(k).startswith("_") and str(k).endswith("_"))]
    name = getattr(obj, "__name__", str(target))
    for argument in given:
        if argument not in accepted:
            close = difflib.get_close_matches(argument, accepted, n=1)
            hint = f"did you mean {key}.{close[0]}?" if close else "remove it"
            raise ConfigError(
                f"{key}.{argument}: {name} has no argument {argument!r} (it takes "
                f"{', '.join(accepted)}): {hint}"
            )
    for argument in given:
        _check_number(node, key, argument, parameters[argument])
    if node.get("_partial_", False):
        return
    for argument, parameter in parameters.items():
        required = parameter.default is inspect.Parameter.empty and parameter.kind in (
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            inspect.Parameter.KEYWORD_ONLY,
        )
        if required and argument not in given:
            raise ConfigError(
                f"{key}.{argument} is required by {name} but not set: add +{key}.{argument}=<value>"
            )


def _check_number(node: DictConfig, key: str, argument: str, parameter: inspect.Parameter) -> None:
    """A number where the target's default is a number and its annotation admits no string
    (``lr=abc`` fails here, by its key; ``num_iters=auto`` passes when annotated so)."""
    default = parameter.default
    if isinstance(default, bool) or not isinstance(default, (int, float)):
        return
    annotation = parameter.annotation
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    if any(word in str(text or repr(annotation)) for word in ("str", "Literal", "Any")):
        return
    value = node[argument]
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(
            f"{key}.{argument} must be a number, got {value!r}: pass e.g. "
            f"{key}.{argument}={default}"
        )


def _check_finetune_epochs(value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(
            f"finetune_epochs must be a non-negative integer, got {value!r}: pass the number of "
            "epochs to fine-tune after pruning (0 to prune and evaluate only)"
        )


def _check_seed(value: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"seed must be an integer or null, got {value!r}: pass e.g. seed=0")


def _check_max_epochs(value: Any) -> None:
    if value is None or value == -1:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(
            f"trainer.max_epochs must be a positive integer, got {value!r}: pass the number of "
            "training epochs, e.g. trainer.max_epochs=20"
        )


def _check_torch_threads(value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(
            f"torch_threads must be a positive integer or null, got {value!r}: pass the number "
            "of CPU threads for torch, or null for torch's default"
        )


def _check_optimized_metric(value: Any) -> None:
    if value is None:
        return
    keys = list(value) if isinstance(value, (ListConfig, list, tuple)) else [value]
    for key in keys:
        if key not in REPORT_METRICS:
            close = difflib.get_close_matches(str(key), REPORT_METRICS, n=1)
            choices = ", ".join(REPORT_METRICS)
            hint = f"did you mean {close[0]}?" if close else f"use one of {choices}"
            raise ConfigError(f"optimized_metric {key!r} is not a report value: {hint}")


def _targets_of_type(cfg: DictConfig, cls: type) -> list[str]:
    found = []
    for name, node in _entries(cfg, "callbacks"):
        obj = get_object(str(node["_target_"]))
        if isinstance(obj, type) and issubclass(obj, cls):
            found.append(name)
    return found


def _check_stages(cfg: DictConfig) -> None:
    from lightning_prunelimit import GlobalOneShotPruning, HessianSpectrum, PruningLimit

    spectra = _targets_of_type(cfg, HessianSpectrum)
    limits = _targets_of_type(cfg, PruningLimit)
    if limits and not spectra:
        raise ConfigError(
            f"callbacks.{limits[0]} predicts the limit from a Hessian spectrum, but no "
            "HessianSpectrum callback is configured: add callbacks.hessian_spectrum "
            "(callbacks=default) or remove the limit with ~callbacks." + limits[0]
        )
    pruning = _targets_of_type(cfg, GlobalOneShotPruning)
    if len(pruning) > 1:
        raise ConfigError(
            f"callbacks {', '.join(pruning)} all prune: the job prunes once, with one "
            f"GlobalOneShotPruning; remove the others (e.g. ~callbacks.{pruning[-1]})"
        )
    for name in pruning:
        amount = cfg.callbacks[name].get("amount")
        if amount == "predicted" and not limits:
            raise ConfigError(
                f"callbacks.{name}.amount=predicted needs the predicted limit, but no "
                "PruningLimit callback is configured: add callbacks.pruning_limit "
                f"(callbacks=default) or set callbacks.{name}.amount to a sparsity in [0, 1)"
            )


def _one_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__
