"""The stages of the ``prunelimit`` job, from a composed config to the report's sections."""

from __future__ import annotations

import functools
import sys
import time
import urllib.error
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from lightning_prunelimit.app.config.instantiate import instantiate_group, instantiate_node
from lightning_prunelimit.app.config.validation import ConfigError, validate_config
from lightning_prunelimit.app.job.timing import StageTimings, TrainEndClock
from lightning_prunelimit.app.reporting.report import JobReport
from lightning_prunelimit.app.trainer_extras.checkpoint_io import AtomicCheckpointIO
from lightning_prunelimit.app.trainer_extras.console import EpochLines
from lightning_prunelimit.app.trainer_extras.divergence import StopOnNonFiniteLoss

__all__ = ["run_pipeline"]


def run_pipeline(
    cfg: DictConfig,
    run_dir: Path,
    sections: MutableMapping[str, Any],
    timings: StageTimings,
    *,
    resume: bool = False,
) -> None:
    """Run stages 1-5 of the job and fill the report's sections as each stage finishes.

    1. train the dense network with the training callbacks (L1 regularisation, spectrum,
       predicted limit, sparsity sweep: the last three compute at the end of training), then
       save ``dense.ckpt`` and test it; 2-4. read the spectrum, the predicted limit and the
       actual limit from the callbacks; 5. prune with the ``GlobalOneShotPruning`` node at the
       predicted sparsity (or its own ``amount``) in a second Trainer, fine-tune for
       ``finetune_epochs``, test, and save ``pruned.ckpt``.

    ``torch_threads`` (when set) is the number of CPU threads torch uses during the job; the
    previous number is restored afterwards. The dense training saves ``checkpoints/last.ckpt``
    every epoch when ``callbacks.model_checkpoint`` is configured; with ``resume=True`` it
    continues from that checkpoint (later stages then run once). Every checkpoint is written to
    a temporary file and renamed. Training stops at the first batch whose loss is not finite.
    When standard output is not a terminal, a line per epoch replaces the progress bar.

    Sections filled (see :class:`~lightning_prunelimit.app.reporting.report.JobReport`): ``dense``,
    ``spectrum``, ``prediction``, ``actual``, ``pruned``. A stage whose callback is not
    configured leaves its section out. Everything is validated and built before training
    starts, so a bad config fails in seconds with a :class:`ConfigError`.

    Args:
        cfg: the composed job config.
        run_dir: the run directory (``dense.ckpt`` and ``pruned.ckpt`` go there).
        sections: filled in place, so a failing stage leaves the earlier stages' results.
        timings: seconds per stage, filled in place; its ``current`` names the running stage.
        resume: continue the dense training from the last periodic checkpoint, if any.

    Example:
        >>> from lightning_prunelimit.app.job.timing import StageTimings
        >>> sections = {}
        >>> try:
        ...     run_pipeline(OmegaConf.create({}), Path("."), sections, StageTimings())
        ... except ConfigError as error:
        ...     print(str(error).split(" (")[0])
        data is not configured
    """
    validate_config(cfg)
    if cfg.get("seed") is not None:
        L.seed_everything(int(cfg.seed), workers=True)
    with _torch_threads(cfg.get("torch_threads")):
        _run_stages(cfg, run_dir, sections, timings, resume)


def _run_stages(
    cfg: DictConfig,
    run_dir: Path,
    sections: MutableMapping[str, Any],
    timings: StageTimings,
    resume: bool,
) -> None:
    from lightning_prunelimit import GlobalOneShotPruning

    console = _console_callbacks(cfg.trainer)
    with timings.measure("setup"):
        callbacks = instantiate_group(cfg.get("callbacks"), "callbacks")
        pruning_keys = [k for k, c in callbacks.items() if isinstance(c, GlobalOneShotPruning)]
        training_callbacks = [c for k, c in callbacks.items() if k not in pruning_keys]
        datamodule = instantiate_node(cfg.data, "data")
        model = instantiate_node(cfg.model, "model")
        _prepare_data(datamodule)
        _check_model_fits_data(model, datamodule)
        loggers = list(instantiate_group(cfg.get("logger"), "logger").values())
        config = OmegaConf.to_container(cfg, resolve=True)
        for logger in loggers:
            logger.log_hyperparams(config)
        ordered, clocks = _with_clocks(training_callbacks, timings)
        guard = StopOnNonFiniteLoss(_divergence_settings(cfg))
        trainer = instantiate_node(
            cfg.trainer,
            "trainer",
            callbacks=[guard, *ordered, *console("epoch")],
            logger=loggers,
            plugins=[AtomicCheckpointIO()],
            enable_checkpointing=any(isinstance(c, ModelCheckpoint) for c in ordered),
            **_console_overrides(cfg.trainer),
        )

    # Stages 1-4: one fit; the spectrum, the limit and the sweep compute after its last batch.
    start = time.perf_counter()
    timings.enter("train")
    trainer.fit(model, datamodule=datamodule, ckpt_path="last" if resume else None)
    _add_clock_timings(timings, start, clocks, end=time.perf_counter())
    if trainer.global_step == 0 and not trainer.interrupted:
        raise ConfigError(
            f"training ran no optimizer step (trainer.max_epochs={cfg.trainer.get('max_epochs')}, "
            f"trainer.limit_train_batches={cfg.trainer.get('limit_train_batches')}): the spectrum, "
            "the prediction and the sweep need a trained model; set trainer.max_epochs >= 1 and "
            "let the training data yield batches"
        )
    _read_callback_results(training_callbacks, sections)
    run_dir.mkdir(parents=True, exist_ok=True)
    timings.enter("save_dense")
    trainer.save_checkpoint(run_dir / "dense.ckpt")
    with timings.measure("evaluate_dense"):
        dense = _test(trainer, model, datamodule)
    sections["dense"] = {
        "accuracy": dense.get("test/acc"),
        "loss": dense.get("test/loss"),
        "num_prunable_weights": _count_prunable(model),
        "epochs": int(trainer.current_epoch),
    }

    # Stage 5: prune in a second Trainer and fine-tune.
    if not pruning_keys:
        return
    key = pruning_keys[0]
    node = cfg.callbacks[key]
    amount = node.get("amount")
    if amount == "predicted":
        prediction = JobReport(status="completed", **sections).limit_prediction()
        if prediction is None:
            raise ConfigError(
                f"callbacks.{key}.amount=predicted but no prediction was made: keep "
                "callbacks.pruning_limit or set a sparsity"
            )
        amount = prediction.sparsity
    pruning = instantiate_node(node, f"callbacks.{key}", amount=float(amount))
    finetune_epochs = int(cfg.get("finetune_epochs", 0))
    finetuner = instantiate_node(
        cfg.trainer,
        "trainer",
        callbacks=[guard, pruning, *console("fine-tune epoch")] if finetune_epochs else [],
        logger=loggers,
        max_epochs=finetune_epochs,
        num_sanity_val_steps=0,
        plugins=[AtomicCheckpointIO()],
        enable_checkpointing=False,
        enable_model_summary=False,
        **_console_overrides(cfg.trainer),
    )
    with timings.measure("finetune"):
        if finetune_epochs:
            finetuner.fit(model, datamodule=datamodule)
        else:  # no training loop, so the callback's on_train_start would not run
            _prune_now(model, float(amount), pruning.parameter_names)
    with timings.measure("evaluate_pruned"):
        pruned = _test(finetuner, model, datamodule)
    timings.enter("save_pruned")
    finetuner.save_checkpoint(run_dir / "pruned.ckpt")
    realised = _realised_sparsity(model, pruning.parameter_names)
    sections["pruned"] = {
        "accuracy": pruned.get("test/acc"),
        "loss": pruned.get("test/loss"),
        "requested_sparsity": float(amount),
        "sparsity": realised.global_sparsity,
        "num_pruned": realised.num_pruned,
        "num_weights": realised.num_total,
        "finetune_epochs": finetune_epochs,
        "per_layer": dict(realised.per_layer),
    }


@contextmanager
def _torch_threads(num_threads: int | None) -> Iterator[None]:
    previous = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(int(num_threads))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _interactive() -> bool:
    return sys.stdout.isatty()


def _console_overrides(trainer_cfg: DictConfig) -> dict[str, Any]:
    """Without a terminal, no progress bar (its redraws would all stay in the log)."""
    if _interactive() or not trainer_cfg.get("enable_progress_bar", True):
        return {}
    return {"enable_progress_bar": False}


def _console_callbacks(trainer_cfg: DictConfig) -> Callable[[str], list[Callback]]:
    """A line per epoch in place of the progress bar, when that is turned off for the log."""
    replaced = bool(_console_overrides(trainer_cfg))
    return lambda label: [EpochLines(label)] if replaced else []


def _divergence_settings(cfg: DictConfig) -> dict[str, Any]:
    settings = {}
    for key in ("model.optimizer.lr", "callbacks.l1_regularization.strength"):
        value = OmegaConf.select(cfg, key, default=None)
        if value is not None:
            settings[key] = value
    return settings


def _prepare_data(datamodule: Any) -> None:
    name = type(datamodule).__name__
    data_dir = getattr(datamodule, "data_dir", None)
    try:
        datamodule.prepare_data()
        datamodule.setup("fit")
    except (FileNotFoundError, ValueError) as error:
        raise ConfigError(f"data ({name}): {error}") from error
    except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
        reason = getattr(error, "reason", None) or error
        raise ConfigError(
            f"data ({name}): the download failed ({reason}): check the network, or put the "
            f"files under paths.data_dir={data_dir} yourself and set data.download=false"
        ) from error
    except OSError as error:
        where = error.filename or data_dir
        raise ConfigError(
            f"data ({name}): cannot use paths.data_dir={data_dir} ({where}: "
            f"{error.strerror or error}): set paths.data_dir to a writable directory"
        ) from error


def _check_model_fits_data(model: torch.nn.Module, datamodule: Any) -> None:
    num_classes = getattr(datamodule, "num_classes", None)
    model_classes = getattr(model, "num_classes", None)
    data_name = type(datamodule).__name__
    if num_classes and model_classes is not None and int(model_classes) != int(num_classes):
        raise ConfigError(
            f"model.num_classes={model_classes} but data ({data_name}) has {num_classes} "
            f"classes: set model.num_classes={num_classes}"
        )
    shape = tuple(getattr(datamodule, "input_shape", ()) or ())
    if not shape:
        return
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            outputs = model(torch.zeros(2, *shape))
    except Exception as error:
        net = getattr(model, "net", model)
        raise ConfigError(
            f"model ({type(net).__name__}) does not take the inputs of data ({data_name}, "
            f"shape {shape}): {error}"
        ) from error
    finally:
        model.train(was_training)
    if num_classes and tuple(outputs.shape) != (2, int(num_classes)):
        raise ConfigError(
            f"model returns outputs of shape {tuple(outputs.shape[1:])} per sample but data "
            f"({data_name}) has {num_classes} classes: set model.num_classes={num_classes}"
        )


def _with_clocks(
    callbacks: Sequence[Callback], timings: StageTimings
) -> tuple[list[Callback], dict[str, TrainEndClock]]:
    from lightning_prunelimit import HessianSpectrum, PruningLimit, SparsitySweep

    kinds = (("spectrum", HessianSpectrum), ("prediction", PruningLimit), ("actual", SparsitySweep))
    staged = [c for c in callbacks if isinstance(c, tuple(cls for _, cls in kinds))]
    ordered = [c for c in callbacks if c not in staged]
    stages = ["train", *(stage for stage, _ in kinds), "evaluate_dense"]
    clocks = {}
    for stage, following in zip(stages[:-1], stages[1:]):
        if stage != "train":
            ordered += [c for c in staged if isinstance(c, dict(kinds)[stage])]
        clocks[stage] = TrainEndClock(then=functools.partial(timings.enter, following))
        ordered.append(clocks[stage])
    return ordered, clocks


def _add_clock_timings(
    timings: StageTimings, start: float, clocks: Mapping[str, TrainEndClock], end: float
) -> None:
    previous = start
    for stage, clock in clocks.items():
        if clock.time is None:  # training stopped before on_train_end (interrupted)
            timings.add("train", end - start)
            return
        timings.add(stage, clock.time - previous)
        previous = clock.time
    timings.add("train", end - previous)


def _test(trainer: L.Trainer, model: L.LightningModule, datamodule: Any) -> dict[str, float]:
    results = trainer.test(model, datamodule=datamodule, verbose=False)
    return {k: float(v) for k, v in (results[0] if results else {}).items()}


def _count_prunable(model: torch.nn.Module) -> int:
    from lightning_prunelimit.models import count_prunable_weights

    return int(count_prunable_weights(model))


def _prune_now(model: torch.nn.Module, amount: float, parameter_names: Sequence[str]) -> None:
    """Prune as ``GlobalOneShotPruning`` does (its core call), then make the zeros permanent."""
    from lightning_prunelimit.pruning import prune_globally, remove_masks

    prune_globally(model, amount, parameter_names=parameter_names)
    remove_masks(model)


def _realised_sparsity(model: torch.nn.Module, parameter_names: Sequence[str]) -> Any:
    from lightning_prunelimit.pruning import sparsity_report

    return sparsity_report(model, parameter_names=tuple(parameter_names))


def _read_callback_results(
    callbacks: Sequence[Callback], sections: MutableMapping[str, Any]
) -> None:
    """The report's result sections: each callback's ``state_dict()``, as checkpoints keep it."""
    from lightning_prunelimit import HessianSpectrum, PruningLimit, SparsitySweep

    kinds = (
        ("spectrum", HessianSpectrum, "spectrum"),
        ("prediction", PruningLimit, "prediction"),
        ("actual", SparsitySweep, "result"),
    )
    for callback in callbacks:
        for section, kind, result in kinds:
            if isinstance(callback, kind) and getattr(callback, result) is not None:
                sections[section] = callback.state_dict()
