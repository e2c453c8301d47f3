"""The callbacks on LightningModules written the way users write them.

Inline losses in ``training_step``, dict batches, torchmetrics metrics, BatchNorm + Dropout,
frozen layers, a compiled module, a module that flattens in ``training_step``; ModelCheckpoint,
EarlyStopping, ``precision="64-true"``, ``fast_dev_run``, ``ddp_spawn``.
"""

from __future__ import annotations

import logging
import math
import shutil
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
import torchmetrics
from _lightning_helpers import digits
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger
from torch import nn
from torch.utils.data import DataLoader, Dataset

from lightning_prunelimit import (
    GlobalOneShotPruning,
    HessianSpectrum,
    L1Regularization,
    PruningLimit,
    SparsitySweep,
)

# ------------------------------------------------------------------------------------------
# what users write
# ------------------------------------------------------------------------------------------


class DictDigits(Dataset):
    """Digits as ``{"image": (1, 8, 8) float32, "label": int64}`` samples."""

    def __init__(self, start: int, stop: int) -> None:
        x, y = digits(stop, dtype=torch.float32)
        self.x, self.y = x[start:stop].view(-1, 1, 8, 8), y[start:stop]

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"image": self.x[index], "label": self.y[index]}


class TupleDigits(DictDigits):
    """The same digits as ``(image, label)`` pairs."""

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        return self.x[index], self.y[index]


class UserNet(pl.LightningModule):
    """Inline loss, dict batches, a torchmetrics metric, BatchNorm and Dropout; counts steps."""

    def __init__(self, hidden: int = 16, frozen_first_layer: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(),
            nn.Dropout(0.2),
            nn.Linear(hidden, 10),
        )
        if frozen_first_layer:
            self.net[1].requires_grad_(False)
        self.train_accuracy = torchmetrics.classification.MulticlassAccuracy(num_classes=10)
        self.steps = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        self.steps += 1
        logits = self(batch["image"])
        loss = nn.functional.cross_entropy(logits, batch["label"])
        self.train_accuracy(logits, batch["label"])
        self.log("train_acc", self.train_accuracy, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self.log("val_loss", nn.functional.cross_entropy(self(batch["image"]), batch["label"]))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(
            (p for p in self.parameters() if p.requires_grad), lr=0.05, momentum=0.9
        )


class TupleNet(UserNet):
    """Tuple batches and an inline loss."""

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:  # type: ignore[override]
        self.steps += 1
        x, y = batch
        return nn.functional.cross_entropy(self(x), y)

    def validation_step(self, batch: Any, batch_idx: int) -> None:  # type: ignore[override]
        x, y = batch
        self.log("val_loss", nn.functional.cross_entropy(self(x), y))


class PlainNet(TupleNet):
    """Nothing logged: a module Lightning can compile whole."""

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        pass


class FlattensInTrainingStep(TupleNet):
    """``forward`` takes flat inputs; ``training_step`` flattens the images first."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(64, 16), nn.Tanh(), nn.Linear(16, 10))

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        self.steps += 1
        x, y = batch
        return nn.functional.cross_entropy(self(x.view(x.size(0), -1)), y)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        pass


def _loaders(kind: type[DictDigits] = DictDigits, num_train: int = 128, num_val: int = 64):
    train = DataLoader(kind(0, num_train), batch_size=32, shuffle=True)
    val = DataLoader(kind(num_train, num_train + num_val), batch_size=32)
    return train, val


def _trainer(root: Path, callbacks: list[pl.Callback], **kwargs: Any) -> pl.Trainer:
    options: dict[str, Any] = {
        "accelerator": "cpu",
        "devices": 1,
        "max_epochs": 2,
        "logger": False,
        "default_root_dir": str(root),
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
        "callbacks": callbacks,
    }
    options.update(kwargs)
    return pl.Trainer(**options)


def _small_callbacks(**spectrum: Any) -> list[pl.Callback]:
    settings = {"num_iters": 6, "top_k": 1, "top_iters": 6, "trace_probes": 2}
    settings.update(spectrum)
    return [
        HessianSpectrum(**settings),
        PruningLimit(epsilon_batch_size=16),
        SparsitySweep(refine_steps=1),
    ]


def _loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(outputs, targets)


def _xy(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    return batch["image"], batch["label"]


# ------------------------------------------------------------------------------------------
# 1. fail fast: every setup mistake is raised before the first training step
# ------------------------------------------------------------------------------------------

MISTAKES = {
    "no loss anywhere": (
        UserNet,
        lambda: [HessianSpectrum(batch_to_xy=_xy)],
        ValueError,
        "no loss function found for UserNet",
    ),
    "sweep without a loss": (
        UserNet,
        lambda: [SparsitySweep(batch_to_xy=_xy)],
        ValueError,
        "no loss function found",
    ),
    "a batch_to_xy that does not fit the batches": (
        TupleNet,
        lambda: [HessianSpectrum(loss_fn=_loss, batch_to_xy=_xy)],
        TypeError,
        "batch_to_xy failed on a batch of type list with TypeError",
    ),
    "dict batches without batch_to_xy": (
        UserNet,
        lambda: [HessianSpectrum(loss_fn=_loss)],
        TypeError,
        r"a dict with keys \['image', 'label'\].*batch_to_xy",
    ),
    "a frozen layer among the prunable ones": (
        lambda: UserNet(frozen_first_layer=True),
        lambda: [
            HessianSpectrum(loss_fn=_loss, batch_to_xy=_xy),
            PruningLimit(epsilon_batch_size=16),
        ],
        ValueError,
        r"does not cover 1 prunable weight tensor\(s\) \(net.1.weight\).*frozen",
    ),
    "PruningLimit without HessianSpectrum": (
        UserNet,
        lambda: [PruningLimit(epsilon_batch_size=16, loss_fn=_loss, batch_to_xy=_xy)],
        ValueError,
        "PruningLimit needs a HessianSpectrum callback",
    ),
    "amount='predicted' without PruningLimit": (
        UserNet,
        lambda: [GlobalOneShotPruning(amount="predicted", apply_at_epoch=1)],
        ValueError,
        "needs a PruningLimit callback",
    ),
    "amount='predicted' with nothing predicted yet": (
        UserNet,
        lambda: [
            HessianSpectrum(loss_fn=_loss, batch_to_xy=_xy),
            PruningLimit(epsilon_batch_size=16),
            GlobalOneShotPruning(amount="predicted"),
        ],
        ValueError,
        "has no prediction when training starts",
    ),
    "forward does not take the batch's inputs": (
        FlattensInTrainingStep,
        lambda: [HessianSpectrum(loss_fn=_loss)],
        RuntimeError,
        r"forward\(inputs\) with inputs a torch.float32 tensor of shape \(32, 1, 8, 8\) failed",
    ),
    "a loss that does not take forward's outputs": (
        TupleNet,
        lambda: [SparsitySweep(loss_fn=nn.MSELoss())],
        RuntimeError,
        "the loss failed on TupleNet's outputs",
    ),
}


@pytest.mark.parametrize("case", sorted(MISTAKES))
def test_setup_mistakes_fail_before_the_first_training_step(tmp_path, case: str) -> None:
    make_model, make_callbacks, error, message = MISTAKES[case]
    model = make_model()
    kind = TupleDigits if isinstance(model, TupleNet) else DictDigits
    trainer = _trainer(tmp_path, make_callbacks())
    with pytest.raises(error, match=message):
        trainer.fit(model, *_loaders(kind))
    assert model.steps == 0


class _Stopped(Exception):
    pass


def test_the_check_leaves_the_model_as_it_was(tmp_path) -> None:
    model = UserNet()
    before = {k: v.clone() for k, v in model.state_dict().items()}

    class Stop(pl.Callback):  # stops right after the checks of on_fit_start
        def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            raise _Stopped

    callbacks = [*_small_callbacks(loss_fn=_loss, batch_to_xy=_xy), Stop()]
    with pytest.raises(_Stopped):
        _trainer(tmp_path, callbacks).fit(model, *_loaders())
    assert model.steps == 0
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key  # BatchNorm statistics included


def test_a_module_that_flattens_in_training_step_works_with_batch_to_xy(tmp_path) -> None:
    model = FlattensInTrainingStep()
    callbacks = _small_callbacks(loss_fn=_loss, batch_to_xy=lambda b: (b[0].flatten(1), b[1]))
    _trainer(tmp_path, callbacks, max_epochs=1).fit(model, *_loaders(TupleDigits))
    assert callbacks[2].result is not None and callbacks[1].prediction is not None


def test_frozen_layers_work_once_the_pruned_weights_are_restricted(tmp_path) -> None:
    model = UserNet(frozen_first_layer=True)
    limit = PruningLimit(epsilon_batch_size=16, parameters_to_prune=[(model.net[5], "weight")])
    callbacks = [
        HessianSpectrum(num_iters=6, top_k=0, trace_probes=0, loss_fn=_loss, batch_to_xy=_xy),
        limit,
        SparsitySweep(),
    ]
    _trainer(tmp_path, callbacks, max_epochs=1).fit(model, *_loaders())
    assert callbacks[0].param_names == ["net.5.weight", "net.5.bias"]
    assert limit.prediction is not None and callbacks[2].result is not None


# ------------------------------------------------------------------------------------------
# 2. say it once
# ------------------------------------------------------------------------------------------


def test_loss_and_layout_given_to_one_callback_serve_all(tmp_path) -> None:
    spectrum = HessianSpectrum(num_iters=6, top_k=1, top_iters=6, trace_probes=2, loss_fn=_loss)
    limit = PruningLimit(epsilon_batch_size=16, zero_curvature=True, num_quantiles=4)
    sweep = SparsitySweep(refine_steps=1, batch_to_xy=_xy)
    model = UserNet()
    _trainer(tmp_path, [spectrum, limit, sweep]).fit(model, *_loaders())
    assert model.steps == 8
    assert spectrum.spectrum is not None and limit.prediction is not None
    assert sweep.result is not None and sweep.result.dense_accuracy > 0.1


def test_the_same_setting_given_twice_differently_is_refused(tmp_path) -> None:
    callbacks = [
        HessianSpectrum(num_iters=4, batch_to_xy=_xy),
        SparsitySweep(loss_fn=nn.CrossEntropyLoss()),
        PruningLimit(epsilon_batch_size=16, loss_fn=_loss),
    ]
    model = UserNet()
    with pytest.raises(ValueError, match="loss_fn differs between callbacks"):
        _trainer(tmp_path, callbacks).fit(model, *_loaders())
    assert model.steps == 0


def test_equal_losses_are_one_loss_and_different_ones_are_refused_naming_both(tmp_path) -> None:
    same = [
        HessianSpectrum(num_iters=4, top_k=1, trace_probes=2, loss_fn=nn.CrossEntropyLoss()),
        PruningLimit(epsilon_batch_size=16),
        SparsitySweep(refine_steps=0, loss_fn=nn.CrossEntropyLoss(), batch_to_xy=_xy),
    ]
    _trainer(tmp_path, same, max_epochs=1).fit(UserNet(), *_loaders())
    assert same[1].prediction is not None and same[2].result is not None

    different = [
        HessianSpectrum(num_iters=4, loss_fn=nn.CrossEntropyLoss()),
        PruningLimit(epsilon_batch_size=16),
        SparsitySweep(loss_fn=nn.CrossEntropyLoss(label_smoothing=0.1), batch_to_xy=_xy),
    ]
    model = UserNet()
    with pytest.raises(ValueError, match="loss_fn differs between callbacks") as error:
        _trainer(tmp_path, different).fit(model, *_loaders())
    assert "HessianSpectrum has CrossEntropyLoss(" in str(error.value)
    assert "SparsitySweep has CrossEntropyLoss(" in str(error.value)
    assert "label_smoothing=0.1" in str(error.value)
    assert model.steps == 0  # before the first training step
    mse = [
        HessianSpectrum(num_iters=4, loss_fn=nn.CrossEntropyLoss()),
        SparsitySweep(loss_fn=nn.MSELoss(), batch_to_xy=_xy),
    ]
    with pytest.raises(ValueError, match=r"CrossEntropyLoss\(.*MSELoss\("):
        _trainer(tmp_path, mse).fit(model, *_loaders())
    assert model.steps == 0


# ------------------------------------------------------------------------------------------
# 3. results where Lightning looks
# ------------------------------------------------------------------------------------------


def _saved_results(path: Path) -> dict[str, Any]:
    states = torch.load(path, weights_only=False)["callbacks"]
    found = {}
    for state in states.values():
        for name in ("spectrum", "prediction", "result"):
            if name in state:
                found[name] = state[name]
    return found


def test_results_are_in_last_ckpt_and_in_callback_metrics(tmp_path) -> None:
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    best = ModelCheckpoint(
        dirpath=tmp_path / "best", monitor="sparsity_sweep/actual_limit", mode="max"
    )
    callbacks = [*_small_callbacks(loss_fn=_loss, batch_to_xy=_xy), checkpoint, best]
    trainer = _trainer(tmp_path, callbacks, max_epochs=1, enable_checkpointing=True)
    trainer.fit(UserNet(), *_loaders())
    spectrum, limit, sweep = callbacks[:3]
    saved = _saved_results(tmp_path / "ckpt" / "last.ckpt")
    assert saved["spectrum"] == spectrum.spectrum.to_dict()
    assert saved["prediction"] == limit.prediction.to_dict()
    assert saved["result"] == sweep.result.to_dict()
    metrics = trainer.callback_metrics
    assert float(metrics["prune_limit/sparsity"]) == pytest.approx(limit.prediction.sparsity)
    assert float(metrics["sparsity_sweep/actual_limit"]) == pytest.approx(sweep.result.actual_limit)
    assert float(metrics["hessian/trace"]) == pytest.approx(spectrum.trace)
    shown = trainer.progress_bar_metrics
    assert {"prune_limit/sparsity", "sparsity_sweep/actual_limit"} <= set(shown)
    # a monitor saw the result when it saved
    assert float(best.best_model_score) == pytest.approx(sweep.result.actual_limit)


def test_resume_reuses_saved_results_and_recomputes_missing_ones(tmp_path) -> None:
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    first = _small_callbacks(loss_fn=_loss, batch_to_xy=_xy)
    trainer = _trainer(tmp_path, [*first, checkpoint], max_epochs=1, enable_checkpointing=True)
    trainer.fit(UserNet(), *_loaders())
    last = tmp_path / "ckpt" / "last.ckpt"

    resumed = _small_callbacks(loss_fn=_loss, batch_to_xy=_xy)
    calls = []
    original = resumed[0].compute
    resumed[0].compute = lambda *a: calls.append(1) or original(*a)  # type: ignore[method-assign]
    trainer = _trainer(tmp_path, resumed, max_epochs=1)
    trainer.fit(UserNet(), *_loaders(), ckpt_path=last)
    assert calls == []  # restored at the step it was computed at: reused
    assert resumed[1].prediction == first[1].prediction
    assert resumed[2].result == first[2].result
    assert float(trainer.callback_metrics["prune_limit/sparsity"]) == pytest.approx(
        first[1].prediction.sparsity
    )

    # a checkpoint without the results (e.g. written before the end): recomputed, never None
    lacking = tmp_path / "lacking.ckpt"
    state = torch.load(last, weights_only=False)
    state["callbacks"] = {}
    torch.save(state, lacking)
    again = _small_callbacks(loss_fn=_loss, batch_to_xy=_xy)
    _trainer(tmp_path, again, max_epochs=1).fit(UserNet(), *_loaders(), ckpt_path=lacking)
    assert again[1].prediction is not None and again[2].result is not None


def test_an_unforeseen_stop_rewrites_last_ckpt_with_the_results(tmp_path) -> None:
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    stop = EarlyStopping(monitor="val_loss", stopping_threshold=1e9)  # stops at once
    callbacks = [*_small_callbacks(loss_fn=_loss, batch_to_xy=_xy), checkpoint, stop]
    model = UserNet()
    trainer = _trainer(tmp_path, callbacks, max_epochs=5, enable_checkpointing=True)
    trainer.fit(model, *_loaders())
    assert model.steps == 4  # one epoch, not five
    saved = _saved_results(tmp_path / "ckpt" / "last.ckpt")
    assert saved["prediction"] == callbacks[1].prediction.to_dict()
    assert saved["result"] == callbacks[2].result.to_dict()


# ------------------------------------------------------------------------------------------
# 4. precision and modes
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("precision", ["64-true", "bf16-mixed", "16-mixed"])
def test_every_callback_under_each_precision(tmp_path, precision: str) -> None:
    callbacks = [
        *_small_callbacks(loss_fn=_loss, batch_to_xy=_xy),
        GlobalOneShotPruning(amount=0.3, apply_at_epoch=1),
        L1Regularization(strength=1e-3),
    ]
    try:
        trainer = _trainer(tmp_path, callbacks, precision=precision)
    except Exception as error:  # e.g. 16-mixed, which Lightning refuses on the CPU
        if torch.cuda.is_available():
            raise
        pytest.skip(f"{precision} does not run on this machine: {error}")
    model = UserNet()
    trainer.fit(model, *_loaders())
    assert model.steps == 8
    spectrum, limit, sweep, pruning, l1 = callbacks
    assert torch.isfinite(spectrum.spectrum.nodes).all()
    assert 0.0 <= limit.prediction.sparsity < 1.0
    assert sweep.result is not None and sweep.result.dense_accuracy > 0.1
    assert pruning.report is not None and pruning.report.global_sparsity == pytest.approx(
        0.3, abs=1e-3
    )
    assert math.isfinite(l1.l1_norm(model)) and l1.l1_norm(model) > 0


def test_a_64_bit_sweep_of_float32_data(tmp_path) -> None:
    sweep = SparsitySweep(sparsities=(0.5,), refine_steps=0, loss_fn=_loss, batch_to_xy=_xy)
    model = UserNet()
    _trainer(tmp_path, [sweep], max_epochs=1, precision="64-true").fit(model, *_loaders())
    assert next(model.parameters()).dtype == torch.float64
    assert sweep.result.sparsities == (0.0, 0.5)


def test_a_compiled_module_is_analysed_through_its_uncompiled_code(tmp_path) -> None:
    callbacks = _small_callbacks(loss_fn=_loss)
    model = PlainNet()
    compiled = torch.compile(model, backend="aot_eager")
    _trainer(tmp_path, callbacks, max_epochs=1).fit(compiled, *_loaders(TupleDigits))
    assert model.steps == 4
    assert torch.isfinite(callbacks[0].spectrum.nodes).all()
    assert callbacks[1].prediction is not None and callbacks[2].result is not None


def test_a_compiled_submodule_is_analysed_too(tmp_path) -> None:
    callbacks = _small_callbacks(loss_fn=_loss, batch_to_xy=_xy)
    model = UserNet()
    model.net = torch.compile(model.net, backend="aot_eager")
    _trainer(tmp_path, callbacks, max_epochs=1).fit(model, *_loaders())
    assert callbacks[1].prediction is not None and callbacks[2].result is not None


def test_fast_dev_run_checks_the_wiring_at_a_token_size(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    loaders = _loaders(num_train=1024, num_val=512)

    # The token size is checked by what was spent (steps, probes, samples), not by wall time:
    # timings belong in benchmarks/.
    full = [
        HessianSpectrum(num_iters=128, num_probes=4, trace_probes=32, loss_fn=_loss),
        PruningLimit(epsilon_batch_size=16, zero_curvature=True),
        SparsitySweep(batch_to_xy=_xy),
    ]
    _trainer(tmp_path, full, fast_dev_run=True, logger=CSVLogger(tmp_path)).fit(
        UserNet(hidden=64), *loaders
    )
    assert full[0].spectrum.num_iters <= 4 and full[0].spectrum.num_probes == 1
    assert full[1].zero_curvature_estimate is not None
    assert len(full[1].zero_curvature_estimate.indices) == 2
    assert full[2].result.sparsities == (0.0, 0.5)
    assert full[2].result.num_samples == 64  # two batches
    assert not list(tmp_path.rglob("*.png"))  # fast_dev_run writes no figures


# ------------------------------------------------------------------------------------------
# 5. progress and output
# ------------------------------------------------------------------------------------------


def test_each_stage_logs_its_duration_when_bars_are_off(tmp_path, caplog) -> None:
    callbacks = [
        HessianSpectrum(num_iters=4, num_probes=1, top_k=1, top_iters=4, trace_probes=2),
        PruningLimit(epsilon_batch_size=16, zero_curvature=True, num_quantiles=2),
        SparsitySweep(sparsities=(0.5,), refine_steps=0, loss_fn=_loss, batch_to_xy=_xy),
    ]
    with caplog.at_level(logging.INFO):
        _trainer(tmp_path, callbacks, max_epochs=1).fit(UserNet(), *_loaders())
    lines = [r.getMessage() for r in caplog.records if "done in" in r.getMessage()]
    stages = [line.split(":")[0] for line in lines]
    assert sorted(stages) == sorted(
        [
            "Hessian spectrum (Lanczos)",
            "Hessian top eigenvalues",
            "Hessian trace",
            "Zero-curvature rows",
            "Sparsity sweep",
        ]
    )


def test_each_stage_shows_a_bar_when_bars_are_on(tmp_path, capfd) -> None:
    callbacks = [
        HessianSpectrum(num_iters=4, top_k=1, top_iters=4, trace_probes=2),
        PruningLimit(epsilon_batch_size=16, zero_curvature=True, num_quantiles=2),
        SparsitySweep(sparsities=(0.5,), refine_steps=0, loss_fn=_loss, batch_to_xy=_xy),
    ]
    # TQDM explicitly: Lightning picks Rich when it is installed (e.g. with the optuna extra)
    bar = TQDMProgressBar()
    _trainer(tmp_path, [*callbacks, bar], max_epochs=1, enable_progress_bar=True).fit(
        UserNet(), *_loaders()
    )
    out, err = capfd.readouterr()
    for name in ("Lanczos", "top eigenvalues", "trace", "Zero-curvature rows", "Sparsity sweep"):
        assert name in err, name
    assert "done in" not in err
    assert "prune_limit/sparsity=" in out and "sparsity_sweep/actual_limit=" in out  # main bar


def test_figures_go_to_the_run_directory_and_never_to_the_working_directory(
    tmp_path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    callbacks = _small_callbacks(loss_fn=_loss, batch_to_xy=_xy)
    _trainer(tmp_path, callbacks, max_epochs=1, logger=False).fit(UserNet(), *_loaders())
    assert not list(tmp_path.rglob("*.png"))  # no run directory: no figures
    logger = CSVLogger(tmp_path / "logs")
    callbacks = _small_callbacks(loss_fn=_loss, batch_to_xy=_xy)
    _trainer(tmp_path, callbacks, max_epochs=1, logger=logger).fit(UserNet(), *_loaders())
    pngs = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.png"))
    expected = ["hessian_spectrum.png", "prune_limit.png", "sparsity_sweep.png"]
    assert pngs == [f"logs/lightning_logs/version_0/{name}" for name in expected]


def test_with_only_a_wandb_logger_figures_go_to_the_wandb_run_directory(
    tmp_path, monkeypatch
) -> None:
    from _lightning_helpers import wandb_offline_env
    from lightning.pytorch.loggers import WandbLogger

    from lightning_prunelimit.callbacks._output import figure_directory

    wandb_offline_env(monkeypatch, tmp_path)
    logger = WandbLogger(offline=True, save_dir=str(tmp_path))
    try:
        directory = figure_directory(_trainer(tmp_path, [], logger=logger))
        assert directory == Path(logger.experiment.dir)
        assert directory != tmp_path and tmp_path in directory.parents
    finally:
        logger.experiment.finish()


# ------------------------------------------------------------------------------------------
# ddp_spawn
# ------------------------------------------------------------------------------------------


@pytest.mark.slow  # a spawned process: about 10 s
@pytest.mark.filterwarnings("ignore:.*fork", "ignore:.*ddp_spawn")
def test_ddp_spawn_brings_the_scalars_back_and_says_where_the_rest_is(tmp_path, capfd) -> None:
    callbacks = _small_callbacks(loss_fn=_loss)
    trainer = _trainer(tmp_path, callbacks, max_epochs=1, strategy="ddp_spawn")
    trainer.fit(TupleNet(), *_loaders(TupleDigits))
    assert 0.0 <= float(trainer.callback_metrics["prune_limit/sparsity"]) < 1.0
    assert "sparsity_sweep/actual_limit" in trainer.callback_metrics
    assert callbacks[1].prediction is None  # the worker's copy computed it
    err = capfd.readouterr().err
    assert "PruningLimit.prediction" in err and "trainer.callback_metrics" in err
    shutil.rmtree(tmp_path, ignore_errors=True)
