"""Is the predicted pruning limit right? Prediction against measured limits.

Two kinds of rows. **MLP rows** (``--cases digits,mnist1d,fashion``) drive the plain-PyTorch
core directly; **conv rows** (``--cases cnn,resnet``) run the Lightning callbacks at their
defaults (see ``run_callback_case``): a conv net with batch norm (``SmallCNN``, 8 and 16
channels) and a small residual net (``SmallResNet``: stem, two basic blocks with batch norm and
skip connections, 8 and 16 channels) on Fashion-MNIST, a subset of 4,000 training and 2,000
test images average-pooled to 14x14, each without and with L1.

For an MLP on each of sklearn digits, MNIST-1D and Fashion-MNIST (a subset, average-pooled to
14x14), each trained with and without L1 regularisation, the script reports:

* the **predicted sparsity** from the SLQ spectrum (``stochastic_lanczos_quadrature`` then
  ``predict_pruning_limit``), with its interval ``(lo, hi)`` when the prediction carries one;
* the **exact-spectrum prediction**: the same formula with every eigenvalue of the dense
  Hessian (formed column block by column block with ``HessianOperator.matvec``, then
  ``torch.linalg.eigvalsh``), i.e. the prediction with no quadrature or probe error;
* **actual limits**, each the largest sparsity that passes a criterion, found on a coarse grid
  refined by bisection (see ``largest_passing``), with global magnitude masks
  (``global_magnitude_masks``):

  - *one-shot (acc)*: test accuracy of the pruned model at least dense accuracy minus
    ``--tolerance`` (default 0.01, one point), no re-fit;
  - *re-fit (acc)*: the same criterion after ``refit_kept_weights`` (``--refit-steps`` masked
    Adam steps at ``--refit-lr`` on the training data, pruned weights held at zero);
  - *one-shot (loss)* and *re-fit (loss)*: training loss at most dense training loss plus
    epsilon, the criterion the theory's limit is stated in (a k-sparse weight vector whose
    loss is within epsilon; the re-fit searches for that vector, one-shot pruning only tries
    the trained values).

The Hessian, epsilon, the re-fit and the loss criterion all use the same training data (the
loss the model was trained on); accuracy is measured on held-out test data. Epsilon is
``resolve_epsilon("batch_loss_std", ...)`` on that training data cut into batches of
``--epsilon-batch-size`` after a seeded shuffle. The Hessian is over all parameters (weights
and biases), the pruned weights are the Linear weights, as in ``PruningLimit``. Everything runs
in float64.

Beside each measured limit, ``agree`` says whether the predicted interval and the measured
limit (its interval, where it has one) overlap, or how far apart they are.

Usage::

    python benchmarks/validity.py [--json validity.json] [--num-iters 128] [--num-probes 4]
        [--cases digits,mnist1d,fashion,cnn,resnet] [--threads 2] [--device cpu]

``--num-iters auto`` runs Lanczos until the quadrature part of the prediction's interval is at
most ``--interval-tolerance`` wide (``lightning_prunelimit.limit.interval_stop``), at most
``--max-iters`` steps.
Writes the results as JSON and prints a markdown table.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from lightning_prunelimit.curvature import (
    HessianOperator,
    Spectrum,
    stochastic_lanczos_quadrature,
)
from lightning_prunelimit.limit import interval_stop, predict_pruning_limit, resolve_epsilon
from lightning_prunelimit.models import MLP
from lightning_prunelimit.pruning import (
    effective_parameter,
    global_magnitude_masks,
    interval_agreement,
    prunable_parameters,
    refit_kept_weights,
    restore_on_exit,
)

loss_fn = nn.functional.cross_entropy

#: The coarse grid of sparsities of every actual-limit search.
GRID: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(20)) + (0.97, 0.99)


@dataclass(frozen=True)
class Case:
    """One data set and network: the MLP's hidden widths and how it is trained."""

    dataset: str
    hidden: tuple[int, ...]
    epochs: int
    lr: float
    l1: float
    batch_size: int = 64
    num_train: int | None = None
    num_test: int | None = None

    @property
    def name(self) -> str:
        return f"{self.dataset}, L1 {self.l1:g}" if self.l1 else f"{self.dataset}, no L1"


def default_cases(l1: dict[str, float]) -> list[Case]:
    """Each data set without and with L1 (strength per data set in ``l1``)."""
    base = {
        "digits": Case("digits", (32,), epochs=40, lr=0.05, l1=0.0),
        "mnist1d": Case("mnist1d", (64,), epochs=60, lr=0.05, l1=0.0),
        "fashion": Case("fashion", (16,), epochs=30, lr=0.05, l1=0.0, num_train=4000,
                        num_test=2000),
    }  # fmt: skip
    cases = []
    for name, case in base.items():
        cases.append(case)
        cases.append(Case(**{**case.__dict__, "l1": l1[name]}))
    return cases


# -- data -------------------------------------------------------------------------------------


def load(case: Case, data_dir: str, seed: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Flat float64 inputs and int64 labels: ``(x_train, y_train, x_test, y_test)``."""
    if case.dataset == "digits":
        from lightning_prunelimit.data import DigitsDataModule

        dm: Any = DigitsDataModule(data_dir=data_dir, flatten=True, seed=seed)
    elif case.dataset == "mnist1d":
        from lightning_prunelimit.data import MNIST1DDataModule

        dm = MNIST1DDataModule(data_dir=data_dir, seed=seed)
        dm.prepare_data()
    elif case.dataset == "fashion":
        from lightning_prunelimit.data import FashionMNISTDataModule

        dm = FashionMNISTDataModule(data_dir=data_dir, seed=seed)
    else:
        raise ValueError(f"unknown dataset {case.dataset!r}: use digits, mnist1d or fashion")
    dm.setup()
    x_train, y_train = dm.train_dataset.tensors
    x_test, y_test = dm.test_dataset.tensors
    generator = torch.Generator().manual_seed(seed)
    if case.num_train is not None and case.num_train < len(y_train):
        keep = torch.randperm(len(y_train), generator=generator)[: case.num_train].sort().values
        x_train, y_train = x_train[keep], y_train[keep]
    if case.num_test is not None and case.num_test < len(y_test):
        keep = torch.randperm(len(y_test), generator=generator)[: case.num_test].sort().values
        x_test, y_test = x_test[keep], y_test[keep]
    if case.dataset == "fashion":  # 28x28 -> 14x14: an MLP small enough for a dense Hessian
        x_train = nn.functional.avg_pool2d(x_train, 2)
        x_test = nn.functional.avg_pool2d(x_test, 2)
    return (
        x_train.flatten(1).double(),
        y_train.long(),
        x_test.flatten(1).double(),
        y_test.long(),
    )


def batches_of(x: Tensor, y: Tensor, size: int, seed: int | None) -> list[tuple[Tensor, Tensor]]:
    """Cut ``(x, y)`` into batches of ``size``, after a seeded shuffle when ``seed`` is given."""
    order = torch.arange(len(y))
    if seed is not None:
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    return [(x[order[i : i + size]], y[order[i : i + size]]) for i in range(0, len(y), size)]


# -- training ---------------------------------------------------------------------------------


def train(model: nn.Module, x: Tensor, y: Tensor, case: Case, seed: int) -> None:
    """SGD with momentum 0.9, the L1 subgradient ``l1 * sign(w)`` added to weights' gradients."""
    weights = [module.weight for _, module, _ in prunable_parameters(model)]
    optimizer = torch.optim.SGD(model.parameters(), lr=case.lr, momentum=0.9)
    model.train()
    for epoch in range(case.epochs):
        for inputs, targets in batches_of(x, y, case.batch_size, seed + epoch):
            optimizer.zero_grad()
            loss_fn(model(inputs), targets).backward()
            if case.l1:
                for w in weights:
                    w.grad.add_(torch.sign(w.detach()), alpha=case.l1)
            optimizer.step()
    model.eval()


@torch.no_grad()
def evaluate(model: nn.Module, x: Tensor, y: Tensor) -> tuple[float, float]:
    """Accuracy and mean cross-entropy."""
    logits = model(x)
    return float((logits.argmax(1) == y).double().mean()), float(loss_fn(logits, y))


@torch.no_grad()
def mean_loss(model: nn.Module, batches: list[tuple[Tensor, Tensor]]) -> float:
    total = sum(float(loss_fn(model(x), y)) * len(y) for x, y in batches)
    return total / sum(len(y) for _, y in batches)


# -- curvature --------------------------------------------------------------------------------


def dense_spectrum(op: HessianOperator, block: int = 128) -> Spectrum:
    """The exact spectrum as a ``Spectrum``: all D eigenvalues, weight 1/D each."""
    dim = op.dim
    rows = []
    for start in range(0, dim, block):
        count = min(block, dim - start)
        unit = torch.zeros(count, dim, dtype=op.dtype)
        unit[torch.arange(count), start + torch.arange(count)] = 1.0
        rows.append(op.matvec(unit))
    hessian = torch.cat(rows)
    eigenvalues = torch.linalg.eigvalsh((hessian + hessian.T) / 2)
    return Spectrum(
        nodes=eigenvalues[None], weights=torch.full((1, dim), 1.0 / dim, dtype=torch.float64),
        dim=dim,
    )  # fmt: skip


def interval_of(prediction: Any) -> list[float] | None:
    """``prediction.sparsity_interval`` as a list, or ``None`` where the prediction has none."""
    interval = getattr(prediction, "sparsity_interval", None)
    return None if interval is None else [float(interval[0]), float(interval[1])]


# -- actual limits ----------------------------------------------------------------------------


def largest_passing(
    passes: Callable[[float], bool],
    evaluated: set[float],
    num_weights: int,
    refine_steps: int,
) -> float:
    """The largest sparsity that passes: coarse grid, then bisection above the best grid point.

    ``passes(s)`` evaluates sparsity ``s`` (adding it to ``evaluated``); sparsity 0 must
    pass. Bisection runs between the largest passing grid point and the next grid point until
    ``refine_steps`` evaluations or until no pruning count lies strictly between them. The
    result is the largest evaluated passing sparsity, so a non-monotone curve counts its best.
    """
    for sparsity in GRID:
        passes(sparsity)
    low = max(s for s in GRID if passes(s))
    above = [s for s in GRID if s > low]
    if above:
        high = min(above)
        for _ in range(refine_steps):
            middle = (low + high) / 2
            if len({round(s * num_weights) for s in (low, middle, high)}) < 3:
                break
            low, high = (middle, high) if passes(middle) else (low, middle)
    return max(s for s in evaluated if passes(s))


class Probe:
    """Evaluations of the pruned model at each sparsity, one-shot and re-fitted, cached."""

    def __init__(
        self,
        model: nn.Module,
        train_batches: list[tuple[Tensor, Tensor]],
        refit_batches: list[tuple[Tensor, Tensor]],
        x_test: Tensor,
        y_test: Tensor,
        refit_steps: int,
        refit_lr: float,
        seed: int,
    ) -> None:
        self.model, self.train_batches, self.refit_batches = model, train_batches, refit_batches
        self.x_test, self.y_test = x_test, y_test
        self.refit_steps, self.refit_lr, self.seed = refit_steps, refit_lr, seed
        self.one_shot: dict[float, tuple[float, float]] = {}
        self.refit: dict[float, tuple[float, float]] = {}

    def _measure(self, sparsity: float, steps: int) -> tuple[float, float]:
        masks = global_magnitude_masks(self.model, sparsity)
        with restore_on_exit(self.model):
            refit_kept_weights(
                self.model, masks, loss_fn, self.refit_batches, steps=steps, lr=self.refit_lr,
                seed=self.seed,
            )  # fmt: skip
            accuracy, _ = evaluate(self.model, self.x_test, self.y_test)
            return accuracy, mean_loss(self.model, self.train_batches)

    def get(self, sparsity: float, refit: bool) -> tuple[float, float]:
        """``(test accuracy, training loss)`` at ``sparsity``."""
        table = self.refit if refit else self.one_shot
        if sparsity not in table:
            steps = self.refit_steps if refit and sparsity > 0 else 0
            table[sparsity] = self._measure(sparsity, steps)
        return table[sparsity]


# -- one case ---------------------------------------------------------------------------------


def run_case(case: Case, args: argparse.Namespace) -> dict[str, Any]:
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 2)
        clock = now

    x_train, y_train, x_test, y_test = load(case, args.data_dir, args.seed)
    torch.manual_seed(args.seed)
    model = MLP(x_train.shape[1], case.hidden, 10).double()
    lap("data")
    train(model, x_train, y_train, case, args.seed)
    dense_accuracy, _ = evaluate(model, x_test, y_test)
    lap("train")

    train_batches = batches_of(x_train, y_train, 500, None)
    epsilon = resolve_epsilon(
        "batch_loss_std", model, loss_fn, train_batches, batch_size=args.epsilon_batch_size
    )
    dense_loss = mean_loss(model, train_batches)
    weights = [effective_parameter(module, name) for _, module, name in prunable_parameters(model)]
    num_weights = sum(w.numel() for w in weights)
    op = HessianOperator(model, loss_fn, train_batches)

    if args.num_iters == "auto":  # steps until the quadrature interval is narrow enough
        stop = interval_stop(weights, epsilon, tolerance=args.interval_tolerance)
        spectrum = stochastic_lanczos_quadrature(
            op, args.max_iters, args.num_probes, args.seed, stop=stop
        )
    else:
        spectrum = stochastic_lanczos_quadrature(
            op, int(args.num_iters), args.num_probes, args.seed
        )
    predicted = predict_pruning_limit(spectrum, weights, epsilon)
    lap("slq")
    exact = None
    if op.dim <= args.max_dense_dim:
        exact = predict_pruning_limit(dense_spectrum(op), weights, epsilon)
    lap("exact")

    probe = Probe(
        model, train_batches, batches_of(x_train, y_train, args.refit_batch_size, args.seed),
        x_test, y_test, args.refit_steps, args.refit_lr, args.seed,
    )  # fmt: skip

    def search(refit: bool, criterion: str) -> float:
        evaluated: set[float] = set()

        def passes(sparsity: float) -> bool:
            evaluated.add(sparsity)
            accuracy, loss = probe.get(sparsity, refit)
            if criterion == "accuracy":
                return accuracy >= dense_accuracy - args.tolerance
            return loss <= dense_loss + epsilon

        return largest_passing(passes, evaluated, num_weights, args.refine_steps)

    limits = {
        "one_shot_accuracy": search(False, "accuracy"),
        "one_shot_loss": search(False, "loss"),
    }
    lap("one_shot")
    limits["refit_accuracy"] = search(True, "accuracy")
    limits["refit_loss"] = search(True, "loss")
    lap("refit")
    return {
        "case": case.name,
        "dataset": case.dataset,
        "hidden": list(case.hidden),
        "l1": case.l1,
        "epochs": case.epochs,
        "num_train": len(y_train),
        "num_test": len(y_test),
        "dim": op.dim,
        "num_weights": num_weights,
        "dense_accuracy": dense_accuracy,
        "dense_train_loss": dense_loss,
        "epsilon": epsilon,
        "predicted_sparsity": predicted.sparsity,
        "predicted_interval": interval_of(predicted),
        "lanczos_steps": spectrum.num_iters,
        "exact_sparsity": None if exact is None else exact.sparsity,
        "exact_weights_zero_fraction": float(
            sum(int((w == 0).sum()) for w in weights) / num_weights
        ),
        "limits": limits,
        "one_shot_curve": {str(s): list(v) for s, v in sorted(probe.one_shot.items())},
        "refit_curve": {str(s): list(v) for s, v in sorted(probe.refit.items())},
        "seconds": timings,
    }


# -- conv rows, through the callbacks --------------------------------------------------------


@dataclass(frozen=True)
class ConvCase:
    """A conv net on Fashion-MNIST trained with the Lightning callbacks at their defaults."""

    model: str  # "cnn" (SmallCNN) or "resnet" (SmallResNet)
    l1: float
    epochs: int
    lr: float = 0.05
    batch_size: int = 64
    num_train: int = 4000
    num_test: int = 2000

    @property
    def name(self) -> str:
        net = "conv net + BN" if self.model == "cnn" else "residual net + BN"
        return f"Fashion-MNIST {net}, " + (f"L1 {self.l1:g}" if self.l1 else "no L1")


def conv_default_cases(args: argparse.Namespace) -> list[ConvCase]:
    """Each conv net without and with L1."""
    strengths = {"no_l1": 0.0, "l1": args.l1_conv}
    return [
        ConvCase(model, strengths[variant], args.conv_epochs)
        for model in ("cnn", "resnet")
        for variant in args.conv_variants.split(",")
    ]


def _conv_net(case: ConvCase) -> nn.Module:
    from lightning_prunelimit.models import SmallCNN, SmallResNet

    if case.model == "cnn":
        return SmallCNN(in_channels=1, num_classes=10, channels=(8, 16))
    return SmallResNet(in_channels=1, num_classes=10, channels=(8, 16))


def run_callback_case(case: ConvCase, args: argparse.Namespace) -> dict[str, Any]:
    """Train with ``HessianSpectrum()``, ``PruningLimit()`` and ``SparsitySweep(refit_steps)``.

    Every callback at its defaults but two settings: ``SparsitySweep`` re-fits
    ``--refit-steps`` steps, and ``HessianSpectrum`` takes ``--hessian-samples`` training images
    (default 1,024; all 4,000 took 697 s of Lanczos steps for the conv net on a shared 2-core
    CPU); ``L1Regularization(strength=case.l1)`` with L1. The Hessian sees the
    model in eval mode (batch norm with its running statistics), as the callbacks do. The
    analysis time is the fit with the callbacks minus the same fit without them (same seed).
    The exact-spectrum prediction uses every eigenvalue of the Hessian over the first
    ``--hessian-samples`` training images (float64; not the callback's own draw), with the
    callback's epsilon, when D <= ``--max-dense-dim``.
    """
    import lightning.pytorch as pl
    from torch.utils.data import DataLoader, TensorDataset

    from lightning_prunelimit import (
        HessianSpectrum,
        L1Regularization,
        PruningLimit,
        SparsitySweep,
    )

    fashion = Case("fashion", (), 0, 0.0, 0.0, num_train=case.num_train, num_test=case.num_test)
    x_train, y_train, x_test, y_test = load(fashion, args.data_dir, args.seed)
    x_train = x_train.float().reshape(-1, 1, 14, 14)
    x_test = x_test.float().reshape(-1, 1, 14, 14)

    class Module(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = _conv_net(case)
            self.loss_fn = nn.CrossEntropyLoss()

        def forward(self, x: Tensor) -> Tensor:
            return self.net(x)

        def training_step(self, batch: Any, batch_idx: int) -> Tensor:
            return self.loss_fn(self(batch[0]), batch[1])

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=case.lr, momentum=0.9)

    def fit(with_callbacks: bool) -> tuple[Module, list[Any], float]:
        pl.seed_everything(args.seed, verbose=False)
        module = Module()
        train = DataLoader(
            TensorDataset(x_train, y_train), batch_size=case.batch_size, shuffle=True,
            generator=torch.Generator().manual_seed(args.seed),
        )  # fmt: skip
        val = DataLoader(TensorDataset(x_test, y_test), batch_size=500)
        callbacks: list[Any] = [L1Regularization(strength=case.l1)] if case.l1 else []
        if with_callbacks:
            callbacks += [
                HessianSpectrum(num_samples=args.hessian_samples),
                PruningLimit(),
                SparsitySweep(refit_steps=args.refit_steps),
            ]
        trainer = pl.Trainer(
            max_epochs=case.epochs, accelerator=args.device, devices=1, logger=False,
            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
            callbacks=callbacks, num_sanity_val_steps=0, limit_val_batches=0,
        )  # fmt: skip
        start = time.perf_counter()
        trainer.fit(module, train, val)
        return module, callbacks, time.perf_counter() - start

    _, _, train_seconds = fit(False)
    module, callbacks, total_seconds = fit(True)
    spectrum_cb, limit_cb, sweep_cb = callbacks[-3:]
    prediction, result = limit_cb.prediction, sweep_cb.result

    model = module.net.cpu().double()
    exact = None
    subset = slice(0, args.hessian_samples)
    op = HessianOperator(
        model, loss_fn, batches_of(x_train[subset].double(), y_train[subset], 512, None)
    )
    weights = [effective_parameter(m, n) for _, m, n in prunable_parameters(model)]
    start = time.perf_counter()
    if op.dim <= args.max_dense_dim:
        exact = predict_pruning_limit(dense_spectrum(op), weights, prediction.epsilon).sparsity
    exact_seconds = time.perf_counter() - start
    predicted_interval = interval_of(prediction)

    def pair(value: Any) -> list[float] | None:
        return None if value is None else [float(value[0]), float(value[1])]

    one_shot_interval = pair(result.actual_limit_interval)
    refit_interval = pair(result.refit_actual_limit_interval)
    return {
        "case": case.name,
        "callbacks": True,
        "model": case.model,
        "l1": case.l1,
        "epochs": case.epochs,
        "num_train": len(y_train),
        "num_test": len(y_test),
        "image_size": [14, 14],
        "dim": op.dim,
        "num_weights": sum(w.numel() for w in weights),
        "dense_accuracy": result.dense_accuracy,
        "epsilon": prediction.epsilon,
        "lanczos_steps": spectrum_cb.spectrum.num_iters,
        "num_probes": spectrum_cb.spectrum.num_probes,
        "predicted_sparsity": prediction.sparsity,
        "predicted_interval": predicted_interval,
        "exact_sparsity": exact,
        "one_shot": result.actual_limit,
        "one_shot_interval": one_shot_interval,
        "one_shot_agreement": agreement_text(
            predicted_interval, prediction.sparsity, one_shot_interval, result.actual_limit
        ),
        "paired_test_limit": result.paired_test_limit,
        "refit": result.refit_actual_limit,
        "refit_interval": refit_interval,
        "refit_agreement": agreement_text(
            predicted_interval, prediction.sparsity, refit_interval, result.refit_actual_limit
        ),
        "refit_paired_test_limit": result.refit_paired_test_limit,
        "sweep": result.to_dict(),
        "seconds": {
            "train": round(train_seconds, 1),
            "analysis": round(total_seconds - train_seconds, 1),
            "exact": round(exact_seconds, 1),
        },
    }


# -- report -----------------------------------------------------------------------------------


def markdown(results: list[dict[str, Any]]) -> str:
    def f(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    lines = [
        "| case | D | test acc | eps | steps | predicted (SLQ) | interval | exact spectrum "
        "| one-shot (acc) | re-fit (acc) | one-shot (loss) | re-fit (loss) | agree (re-fit acc) "
        "| s |",
        "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in results:
        if "callbacks" in r:
            continue
        interval = r["predicted_interval"]
        shown = "-" if interval is None else f"[{interval[0]:.3f}, {interval[1]:.3f}]"
        limits = r["limits"]
        agree = agreement_text(interval, r["predicted_sparsity"], None, limits["refit_accuracy"])
        lines.append(
            f"| {r['case']} | {r['dim']:,} | {r['dense_accuracy']:.3f} | {r['epsilon']:.2e} "
            f"| {r.get('lanczos_steps', '-')} "
            f"| {f(r['predicted_sparsity'])} | {shown} | {f(r['exact_sparsity'])} "
            f"| {f(limits['one_shot_accuracy'])} | {f(limits['refit_accuracy'])} "
            f"| {f(limits['one_shot_loss'])} | {f(limits['refit_loss'])} "
            f"| {agree} "
            f"| {sum(r['seconds'].values()):.0f} |"
        )
    conv = [r for r in results if "callbacks" in r]
    if conv:
        lines += ["", markdown_callbacks(conv)]
    return "\n".join(lines)


def agreement_text(
    predicted_interval: list[float] | None,
    predicted: float,
    measured_interval: list[float] | None,
    measured: float,
) -> str:
    """``overlap`` or ``apart by d``: the predicted interval against the measured one.

    A limit without an interval counts as a point.
    """
    first = predicted_interval or [predicted, predicted]
    second = measured_interval or [measured, measured]
    agreement = interval_agreement(first, second)
    return "overlap" if agreement.overlap else f"apart by {agreement.distance:.3f}"


def markdown_callbacks(results: list[dict[str, Any]]) -> str:
    """The conv rows: every limit with its interval, and whether the intervals overlap."""

    def limit(value: float | None, interval: list[float] | None) -> str:
        if value is None:
            return "-"
        if interval is None:
            return f"{value:.3f}"
        return f"{value:.3f} [{interval[0]:.3f}, {interval[1]:.3f}]"

    lines = [
        "| case | D | test acc | steps x probes | predicted [interval] | exact spectrum "
        "| one-shot [interval] | agree | re-fit [interval] | agree | train s | analysis s |",
        "|---|---:|---:|---|---|---:|---|---|---|---|---:|---:|",
    ]
    for r in results:
        exact = "-" if r["exact_sparsity"] is None else f"{r['exact_sparsity']:.3f}"
        lines.append(
            f"| {r['case']} | {r['dim']:,} | {r['dense_accuracy']:.3f} "
            f"| {r['lanczos_steps']} x {r['num_probes']} "
            f"| {limit(r['predicted_sparsity'], r['predicted_interval'])} | {exact} "
            f"| {limit(r['one_shot'], r['one_shot_interval'])} | {r['one_shot_agreement']} "
            f"| {limit(r['refit'], r['refit_interval'])} | {r['refit_agreement']} "
            f"| {r['seconds']['train']:.0f} | {r['seconds']['analysis']:.0f} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", default="validity.json", help="where to write the results")
    parser.add_argument("--cases", default="digits,mnist1d,fashion,cnn,resnet")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda for the conv rows")
    parser.add_argument("--conv-epochs", type=int, default=15, help="epochs of the conv rows")
    parser.add_argument("--l1-conv", type=float, default=1e-4, help="L1 of the conv rows")
    parser.add_argument("--conv-variants", default="no_l1,l1", help="conv rows: no_l1, l1 or both")
    parser.add_argument(
        "--hessian-samples",
        type=int,
        default=1024,
        help="HessianSpectrum(num_samples=...) of the conv rows (None: all; slow on a CPU)",
    )
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--num-iters", default="128", help="Lanczos steps (an int, or auto)")
    parser.add_argument("--num-probes", type=int, default=4)
    parser.add_argument("--max-iters", type=int, default=256, help="the cap of --num-iters auto")
    parser.add_argument(
        "--interval-tolerance", type=float, default=0.01, help="the quadrature width of auto"
    )
    parser.add_argument("--epsilon-batch-size", type=int, default=128)
    parser.add_argument("--tolerance", type=float, default=0.01, help="accuracy drop allowed")
    parser.add_argument("--refine-steps", type=int, default=6)
    parser.add_argument("--refit-steps", type=int, default=200)
    parser.add_argument("--refit-lr", type=float, default=1e-3)
    parser.add_argument("--refit-batch-size", type=int, default=128)
    parser.add_argument("--max-dense-dim", type=int, default=5000)
    parser.add_argument("--l1-digits", type=float, default=1e-3)
    parser.add_argument("--l1-mnist1d", type=float, default=1e-3)
    parser.add_argument("--l1-fashion", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args(argv)
    if args.num_iters != "auto" and not args.num_iters.isdigit():
        parser.error(f"--num-iters must be a positive int or auto, got {args.num_iters!r}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    wanted = [c.strip() for c in args.cases.split(",") if c.strip()]
    l1 = {"digits": args.l1_digits, "mnist1d": args.l1_mnist1d, "fashion": args.l1_fashion}
    cases = [c for c in default_cases(l1) if c.dataset in wanted]
    conv_cases = [c for c in conv_default_cases(args) if c.model in wanted]
    unknown = set(wanted) - {c.dataset for c in cases} - {c.model for c in conv_cases}
    if unknown:
        raise SystemExit(
            f"unknown cases {sorted(unknown)}: choose from digits, mnist1d, fashion, cnn, resnet"
        )
    start = time.perf_counter()
    results = []
    for case in cases:
        result = run_case(case, args)
        results.append(result)
        print(
            f"{case.name}: predicted {result['predicted_sparsity']:.3f}, exact "
            f"{result['exact_sparsity']}, limits {result['limits']}, {result['seconds']}",
            file=sys.stderr,
            flush=True,
        )
    for conv_case in conv_cases:
        result = run_callback_case(conv_case, args)
        results.append(result)
        print(json.dumps({k: v for k, v in result.items() if "curve" not in k}), file=sys.stderr)
        if args.json:  # a long run: keep what is done
            Path(args.json).write_text(
                json.dumps({"partial": results}, indent=2, default=_jsonable)
            )
    total = time.perf_counter() - start
    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "machine": platform.platform(),
        "threads": args.threads,
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
        "total_seconds": round(total, 1),
        "results": results,
    }
    Path(args.json).write_text(json.dumps(report, indent=2, default=_jsonable))
    print(markdown(results))
    print(f"\ntotal {total:.0f} s on {args.threads} threads; JSON in {args.json}")


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    raise TypeError(f"not JSON serialisable: {value!r}")


if __name__ == "__main__":
    main()
