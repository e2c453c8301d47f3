"""What the predicted limit costs, against the training it describes: one run, cases side by side.

For each case the same LightningModule is trained twice from the same seed, in one process:
once with the training callbacks only (L1 where the case has it), once with the analysis at its
defaults added (``HessianSpectrum()``, ``PruningLimit()``, ``SparsitySweep(refit_steps=...)``).
The table gives the training time, the time of each fit-end stage as read from the callbacks
(sample, zero rows, Lanczos, added probes, sample error, top eigenvalues, trace, epsilon,
prediction, one-shot sweep, re-fit sweep) with its ratio to the training, the steps, probes and
samples the spectrum used, and the interval's width. ``analysis/train`` is the fit with the
analysis minus the fit without it, over the fit without it.

The default job (``prunelimit``) runs as a user runs it, in a subprocess with its defaults; its
ratios come from the stage timings of its ``report.json``.

With ``--paper`` (best on a GPU: ``--device cuda``), the paper's ResNet18 and VGG16-BN run on
CIFAR-shaped data (random images, 10 classes; no CIFAR can be downloaded here): one training
epoch is timed, and the analysis is set against 200 such epochs, the paper's schedule.

Usage::

    python benchmarks/price_of_knowing.py [--cases default,digits,...] [--threads 2]
        [--json results.json] [--refit-steps 200] [--max-iters N]
        [--num-samples N|all] [--paper] [--device cuda]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import lightning_prunelimit.callbacks.sparsity_sweep as sweep_module
from lightning_prunelimit import (
    HessianSpectrum,
    L1Regularization,
    PruningLimit,
    SparsitySweep,
)
from lightning_prunelimit.app import JobReport

ROOT = Path(__file__).resolve().parents[1]


class Classifier(pl.LightningModule):
    """A plain classifier, as a user writes one: SGD with momentum, cross-entropy."""

    def __init__(self, net: nn.Module, lr: float) -> None:
        super().__init__()
        self.net = net
        self.lr = lr
        self.loss_fn = nn.CrossEntropyLoss()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return self.loss_fn(self(x), y)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_acc", (self(x).argmax(1) == y).float().mean(), prog_bar=False)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)


@dataclass(frozen=True)
class Case:
    name: str
    data: str
    net: Callable[[], nn.Module]
    l1: float
    epochs: int
    lr: float
    train_size: int | None = None
    description: str = ""


def mlp(*sizes: int) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        layers: list[nn.Module] = [nn.Flatten()]
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        return nn.Sequential(*layers[:-1])

    return build


def conv_bn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1, bias=False),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 7 * 7, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )


MLP_DIGITS, MLP_MNIST1D = mlp(64, 256, 256, 10), mlp(40, 256, 256, 10)
CASES = {
    "digits": Case("digits MLP 64-256-256-10, L1 1e-4", "digits", MLP_DIGITS, 1e-4, 150, 0.05),
    "digits-nol1": Case("digits MLP 64-256-256-10, no L1", "digits", MLP_DIGITS, 0.0, 150, 0.05),
    "mnist1d": Case("MNIST-1D MLP 40-256-256-10, L1 1e-4", "mnist1d", MLP_MNIST1D, 1e-4, 150, 0.05),
    "mnist1d-nol1": Case(
        "MNIST-1D MLP 40-256-256-10, no L1", "mnist1d", MLP_MNIST1D, 0.0, 150, 0.05
    ),
    "fc5": Case(
        "FC5 784-1000-600-300-100-10, Fashion-MNIST 10k, L1 5e-5",
        "fashion",
        mlp(784, 1000, 600, 300, 100, 10),
        5e-5,
        5,
        0.05,
        train_size=10_000,
    ),
    "cnn": Case(
        "conv net with BatchNorm, Fashion-MNIST 10k, L1 1e-5",
        "fashion-image",
        conv_bn,
        1e-5,
        10,
        0.05,
        train_size=10_000,
    ),
}


def load(case: Case, seed: int) -> tuple[TensorDataset, TensorDataset]:
    if case.data == "digits":
        from lightning_prunelimit.data import DigitsDataModule

        x, y, xt, yt = DigitsDataModule(flatten=True, seed=seed).load_arrays()
    elif case.data == "mnist1d":
        from lightning_prunelimit.data import MNIST1DDataModule

        x, y, xt, yt = MNIST1DDataModule(data_dir=str(ROOT / "data"), seed=seed).load_arrays()
    else:
        from lightning_prunelimit.data import FashionMNISTDataModule

        x, y, xt, yt = FashionMNISTDataModule(data_dir=str(ROOT / "data")).load_arrays()
        x, xt = x.float(), xt.float()
        if x.max() > 1.5:
            x, xt = x / 255.0, xt / 255.0
        x, xt = x.reshape(-1, 1, 28, 28), xt.reshape(-1, 1, 28, 28)
    x, xt = x.float(), xt.float()
    if case.train_size is not None:
        generator = torch.Generator().manual_seed(seed)
        keep = torch.randperm(len(y), generator=generator)[: case.train_size]
        x, y = x[keep], y[keep]
        xt, yt = xt[:2000], yt[:2000]
    return TensorDataset(x, y.long()), TensorDataset(xt, yt.long())


class Stopwatch(pl.Callback):
    """Times the whole fit (setup to the end), as a user's wall clock sees it."""

    def __init__(self) -> None:
        self.start = self.end = 0.0

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.start = time.perf_counter()

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.end = time.perf_counter()

    @property
    def seconds(self) -> float:
        return self.end - self.start


@contextlib.contextmanager
def sweep_clock(sweep: SparsitySweep) -> Iterator[dict[str, float]]:
    """Seconds of the whole sweep and of its re-fits (the rest is the one-shot sweep)."""
    seen = {"sweep": 0.0, "refit": 0.0}
    original_sweep = sweep.sweep
    original_refit = sweep_module.refit_kept_weights

    def timed_sweep(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return original_sweep(*args, **kwargs)
        finally:
            seen["sweep"] += time.perf_counter() - start

    def timed_refit(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return original_refit(*args, **kwargs)
        finally:
            seen["refit"] += time.perf_counter() - start

    sweep.sweep = timed_sweep  # type: ignore[method-assign]
    sweep_module.refit_kept_weights = timed_refit
    try:
        yield seen
    finally:
        sweep_module.refit_kept_weights = original_refit


def trainer_for(callbacks: list[pl.Callback], epochs: int, device: str) -> pl.Trainer:
    return pl.Trainer(
        max_epochs=epochs,
        accelerator=device,
        devices=1,
        callbacks=callbacks,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        check_val_every_n_epoch=10_000,
        deterministic=False,
    )


def spectrum_budget(args: argparse.Namespace) -> dict[str, Any]:
    """The ``HessianSpectrum`` settings that ``--max-iters`` and ``--num-samples`` change."""
    budget: dict[str, Any] = {} if args.max_iters is None else {"max_iters": args.max_iters}
    if args.num_samples is not None:
        budget["num_samples"] = None if args.num_samples == "all" else args.num_samples
    return budget


def run_case(case: Case, args: argparse.Namespace) -> dict[str, Any]:
    train, test = load(case, args.seed)
    loader_seed = torch.Generator().manual_seed(args.seed)

    def loaders() -> tuple[DataLoader, DataLoader]:
        return (
            DataLoader(train, batch_size=128, shuffle=True, generator=loader_seed),
            DataLoader(test, batch_size=1000),
        )

    def model() -> Classifier:
        torch.manual_seed(args.seed)
        return Classifier(case.net(), case.lr)

    def l1() -> list[pl.Callback]:
        return [L1Regularization(strength=case.l1)] if case.l1 else []

    clock = Stopwatch()
    trainer_for([*l1(), clock], case.epochs, args.device).fit(model(), *loaders())
    train_s = clock.seconds

    budget = spectrum_budget(args)
    spectrum, limit = HessianSpectrum(**budget), PruningLimit()
    sweep = SparsitySweep(refit_steps=args.refit_steps)
    clock = Stopwatch()
    with sweep_clock(sweep) as sweep_seconds, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer_for([*l1(), spectrum, limit, sweep, clock], case.epochs, args.device).fit(
            model(), *loaders()
        )
    total_s = clock.seconds
    stages = {**spectrum.timings, **{f"limit_{k}": v for k, v in limit.timings.items()}}
    stages["sweep_one_shot"] = sweep_seconds["sweep"] - sweep_seconds["refit"]
    stages["sweep_refit"] = sweep_seconds["refit"]
    prediction = limit.prediction
    assert prediction is not None and spectrum.spectrum is not None and sweep.result is not None
    interval = prediction.sparsity_interval or (prediction.sparsity, prediction.sparsity)
    prediction_s = sum(spectrum.timings.values()) + sum(limit.timings.values())
    return {
        "case": ", ".join([case.name] + [f"{k}={v}" for k, v in budget.items()]),
        "num_params": spectrum.spectrum.dim,
        "train_s": train_s,
        "analysis_s": total_s - train_s,
        "analysis_ratio": (total_s - train_s) / train_s,
        "prediction_s": prediction_s,
        "prediction_ratio": prediction_s / train_s,
        "refit_ratio": stages["sweep_refit"] / train_s,
        "stages_s": stages,
        "num_iters": spectrum.spectrum.num_iters,
        "num_probes": spectrum.spectrum.num_probes,
        "num_samples": spectrum.samples_used,
        "dataset_size": spectrum.dataset_size,
        "predicted": prediction.sparsity,
        "interval": list(interval),
        "interval_width": interval[1] - interval[0],
        "sample_interval": None
        if prediction.sample_sparsity_interval is None
        else list(prediction.sample_sparsity_interval),
        "actual_limit": sweep.result.actual_limit,
        "refit_actual_limit": sweep.result.refit_actual_limit,
        "warnings": sorted({str(w.message) for w in caught if "HessianSpectrum" in str(w.message)}),
    }


def run_default_job(args: argparse.Namespace) -> dict[str, Any]:
    """The ``prunelimit`` job at its defaults, as a user starts it, in a fresh directory."""
    with tempfile.TemporaryDirectory() as where:
        env = {**os.environ, "PRUNELIMIT_ROOT": where}
        command = [sys.executable, "-m", "lightning_prunelimit", f"hydra.run.dir={where}/run"]
        subprocess.run(command, cwd=where, env=env, check=True, capture_output=True)
        report = JobReport.read(Path(where) / "run" / "report.json")
    timings = report.timings_s
    spectrum = report.scalars("spectrum")
    train_s = timings["train"]
    low, high = report.value("prediction.sparsity_lo"), report.value("prediction.sparsity_hi")
    return {
        "case": "default job (prunelimit: MNIST-1D MLP 40-100-100-10, L1 1e-3, 60 epochs)",
        "num_params": spectrum["num_parameters"],
        "train_s": train_s,
        "spectrum_ratio": timings["spectrum"] / train_s,
        "prediction_ratio": (timings["spectrum"] + timings["prediction"]) / train_s,
        "analysis_s": timings["spectrum"] + timings["prediction"] + timings["actual"],
        "analysis_ratio": (timings["spectrum"] + timings["prediction"] + timings["actual"])
        / train_s,
        "stages_s": {
            **(report.spectrum or {}).get("timings", {}),
            **{f"app_{k}": timings[k] for k in ("spectrum", "prediction", "actual")},
        },
        "num_iters": spectrum["num_iters"],
        "num_probes": spectrum["num_probes"],
        "num_samples": spectrum.get("num_samples"),
        "dataset_size": spectrum.get("dataset_size"),
        "predicted": report.value("prediction.sparsity"),
        "interval": [low, high],
        "interval_width": high - low,
        "actual_limit": report.value("actual.sparsity_limit"),
    }


def run_paper(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """ResNet18 / VGG16-BN on CIFAR-shaped data: the analysis against 200 epochs of training."""
    from lightning_prunelimit.models.resnet import resnet18
    from lightning_prunelimit.models.vgg import vgg16_bn

    generator = torch.Generator().manual_seed(args.seed)
    size = args.paper_train_size
    x = torch.randn(size, 3, 32, 32, generator=generator)
    y = torch.randint(0, 10, (size,), generator=generator)
    train = TensorDataset(x, y)
    build = {"resnet18": lambda: resnet18(num_classes=10), "vgg16_bn": lambda: vgg16_bn(10)}[name]

    def loaders() -> tuple[DataLoader, DataLoader]:
        return DataLoader(train, batch_size=128, shuffle=True), DataLoader(
            TensorDataset(x[:1000], y[:1000]), batch_size=1000
        )

    torch.manual_seed(args.seed)
    clock = Stopwatch()
    trainer_for([clock], 1, args.device).fit(Classifier(build(), 0.05), *loaders())
    epoch_s = clock.seconds
    torch.manual_seed(args.seed)
    spectrum, limit = HessianSpectrum(max_iters=args.paper_max_iters), PruningLimit()
    clock = Stopwatch()
    trainer_for([spectrum, limit, clock], 1, args.device).fit(Classifier(build(), 0.05), *loaders())
    analysis_s = clock.seconds - epoch_s
    assert spectrum.spectrum is not None and limit.prediction is not None
    interval = limit.prediction.sparsity_interval or (limit.prediction.sparsity,) * 2
    return {
        "case": f"{name}, CIFAR-shaped random data ({size} images), analysis vs 200 epochs",
        "num_params": spectrum.spectrum.dim,
        "epoch_s": epoch_s,
        "train_s": 200 * epoch_s,
        "analysis_s": analysis_s,
        "prediction_ratio": analysis_s / (200 * epoch_s),
        "analysis_ratio": analysis_s / (200 * epoch_s),
        "stages_s": dict(spectrum.timings),
        "num_iters": spectrum.spectrum.num_iters,
        "num_probes": spectrum.spectrum.num_probes,
        "num_samples": spectrum.samples_used,
        "dataset_size": spectrum.dataset_size,
        "predicted": limit.prediction.sparsity,
        "interval": list(interval),
        "interval_width": interval[1] - interval[0],
    }


def markdown(results: list[dict[str, Any]]) -> str:
    def f(value: Any, digits: int = 3) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    lines = [
        "| case | D | train s | steps / probes / samples | predicted [interval] (width) "
        "| prediction / train | re-fit sweep / train | analysis / train | stages / train |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        train = r["train_s"]
        stages = ", ".join(
            f"{k} {v / train:.3f}" for k, v in r["stages_s"].items() if v / train >= 0.005
        )
        samples = f"{r['num_samples']}" + (
            f" of {r['dataset_size']}"
            if r.get("dataset_size") not in (None, r["num_samples"])
            else ""
        )
        low, high = r["interval"]
        lines.append(
            f"| {r['case']} | {r['num_params']:,} | {train:.1f} | {r['num_iters']} / "
            f"{r['num_probes']} / {samples} | {f(r['predicted'])} [{f(low)}, {f(high)}] "
            f"({f(r['interval_width'])}) | {f(r['prediction_ratio'], 2)}x | "
            f"{f(r.get('refit_ratio'), 2)}x | {f(r['analysis_ratio'], 2)}x | {stages} |"
        )
    return "\n".join(lines)


def _num_samples(value: str) -> int | str:
    if value == "all":
        return value
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive int or 'all', got {value!r}")
    return int(value)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--cases", default="default,digits,digits-nol1,mnist1d,mnist1d-nol1,fc5,cnn"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--refit-steps", type=int, default=200)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--max-iters",
        type=int,
        default=None,
        help="HessianSpectrum(max_iters) of the cases (default: HessianSpectrum's own)",
    )
    parser.add_argument(
        "--num-samples",
        type=_num_samples,
        default=None,
        help="HessianSpectrum(num_samples) of the cases: an int or 'all' (default: 'auto')",
    )
    parser.add_argument("--paper", action="store_true", help="ResNet18 and VGG16-BN rows")
    parser.add_argument("--paper-train-size", type=int, default=50_000)
    parser.add_argument(
        "--paper-max-iters", type=int, default=256, help="HessianSpectrum(max_iters) there"
    )
    parser.add_argument("--json", default=None)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    results: list[dict[str, Any]] = []
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": args.threads,
        "device": args.device,
        "refit_steps": args.refit_steps,
    }

    def save() -> None:  # after every case: a long run keeps what it measured
        if args.json:
            Path(args.json).write_text(json.dumps({"meta": meta, "results": results}, indent=2))

    for name in [c for c in args.cases.split(",") if c]:
        start = time.perf_counter()
        result = run_default_job(args) if name == "default" else run_case(CASES[name], args)
        print(f"{name}: done in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
        results.append(result)
        save()
    if args.paper:
        for name in ("resnet18", "vgg16_bn"):
            results.append(run_paper(name, args))
            save()
    print(markdown(results))


if __name__ == "__main__":
    main()
