"""The re-fit sweep's cost against the training it describes, before and after the re-fit search.

The case of issue 13: a digits MLP 64-256-256-10 (sklearn digits, 1,437 training and 360
validation images, batches of 128), trained 150 epochs with SGD (lr 0.05, momentum 0.9) and
``L1Regularization(strength=1e-4)``, then ``SparsitySweep(refit_steps=200)`` at its defaults.
In one process, on the same trained model and the same data:

* **training**: the Lightning fit without the sweep (the denominator of every ratio);
* **sweep in the fit**: the same fit with ``SparsitySweep(refit_steps=200)``, minus the training;
* **after** (the core, timed alone): ``actual_pruning_limit(..., evaluate_refit=...)`` as the
  callback calls it, re-fitting only where the re-fitted curve's search needs it;
* **before** (the core, timed alone): the earlier schedule, re-implemented here: a re-fit at
  every sparsity the one-shot search evaluates (grid and its bisection), then the re-fitted
  curve's own bisection, each step re-fitting and evaluating both curves.

Both schedules re-fit with ``refit_kept_weights`` (200 masked Adam steps, lr 1e-3, eval mode)
on the training data in the loader's batch size, and evaluate on the validation data; the table
gives the number of re-fits, the time, the ratio to the training and the re-fitted limit.

Usage::

    python benchmarks/refit_sweep.py [--epochs 150] [--threads 2] [--json refit_sweep.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_prunelimit import L1Regularization, SparsitySweep
from lightning_prunelimit.models import MLP
from lightning_prunelimit.pruning import (
    DEFAULT_SPARSITIES,
    MaskedWeights,
    actual_pruning_limit,
    evaluate_samples,
    num_to_prune,
    refit_kept_weights,
    restore_on_exit,
)

loss_fn = nn.CrossEntropyLoss()


class Classifier(pl.LightningModule):
    """The MLP with cross-entropy and SGD with momentum."""

    def __init__(self) -> None:
        super().__init__()
        self.net = MLP(64, (256, 256), 10)
        self.loss_fn = loss_fn

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self.loss_fn(self(batch[0]), batch[1])

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)


def data(seed: int) -> tuple[TensorDataset, TensorDataset]:
    """Digits scaled to [0, 1]: 1,437 training and 360 validation images (seeded split)."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x, y = torch.tensor(x / 16.0, dtype=torch.float32), torch.tensor(y, dtype=torch.int64)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    train, val = order[:1437], order[1437:]
    return TensorDataset(x[train], y[train]), TensorDataset(x[val], y[val])


def fit(args: argparse.Namespace, sweep: SparsitySweep | None) -> tuple[Classifier, float]:
    pl.seed_everything(args.seed, verbose=False)
    train, val = data(args.seed)
    module = Classifier()
    callbacks: list[pl.Callback] = [L1Regularization(strength=1e-4)]
    if sweep is not None:
        callbacks.append(sweep)
    trainer = pl.Trainer(
        max_epochs=args.epochs, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks,
        num_sanity_val_steps=0, limit_val_batches=0, accelerator="cpu", devices=1,
    )  # fmt: skip
    loader = DataLoader(train, batch_size=128, shuffle=True,
                        generator=torch.Generator().manual_seed(args.seed))  # fmt: skip
    start = time.perf_counter()
    trainer.fit(module, loader, DataLoader(val, batch_size=128))
    return module, time.perf_counter() - start


def earlier_schedule(
    model: nn.Module, evaluate: Any, evaluate_refit: Any, refine_steps: int = 8
) -> tuple[float, int]:
    """The earlier re-fit schedule: both curves at every point, each with its own bisection."""
    points: dict[float, float] = {}
    refit: dict[float, float] = {}
    with MaskedWeights(model) as weights:

        def measure(sparsity: float) -> None:
            masks = weights.prune(sparsity)
            points[sparsity] = evaluate(sparsity, masks).accuracy
            refit[sparsity] = (
                points[sparsity] if sparsity == 0 else evaluate_refit(sparsity, masks).accuracy
            )

        for sparsity in DEFAULT_SPARSITIES:
            measure(sparsity)
        dense = points[0.0]

        def search(table: dict[float, float]) -> None:
            low = max(s for s in table if table[s] >= dense)
            above = [s for s in table if s > low]
            if not above:
                return
            high = min(above)
            for _ in range(refine_steps):
                middle = (low + high) / 2
                counts = {num_to_prune(s, weights.num_weights) for s in (low, middle, high)}
                if len(counts) < 3:
                    break
                measure(middle)
                low, high = (middle, high) if table[middle] >= dense else (low, middle)

        search(points)
        search(refit)
    return max(s for s in refit if refit[s] >= dense), len(refit) - 1


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=150)
    parser.add_argument("--refit-steps", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default="refit_sweep.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    _, training = fit(args, None)
    sweep = SparsitySweep(refit_steps=args.refit_steps)
    module, with_sweep = fit(args, sweep)
    model = module.net.eval()
    train, val = data(args.seed)
    val_batches = [(val.tensors[0][i : i + 128], val.tensors[1][i : i + 128]) for i in
                   range(0, len(val), 128)]  # fmt: skip
    train_batches = [(train.tensors[0][i : i + 128], train.tensors[1][i : i + 128]) for i in
                     range(0, len(train), 128)]  # fmt: skip
    count = [0]

    def evaluate(sparsity: float, masks: Any) -> Any:
        return evaluate_samples(model, loss_fn, val_batches)

    def evaluate_refit(sparsity: float, masks: Any) -> Any:
        count[0] += 1
        with restore_on_exit(model), torch.enable_grad():
            refit_kept_weights(model, masks, loss_fn, train_batches, steps=args.refit_steps,
                               seed=args.seed)  # fmt: skip
            return evaluate_samples(model, loss_fn, val_batches)

    rows = []
    start = time.perf_counter()
    limit, refits = earlier_schedule(model, evaluate, evaluate_refit)
    rows.append(("before: a re-fit at every evaluated sparsity", refits, time.perf_counter() -
                 start, limit))  # fmt: skip
    count[0] = 0
    start = time.perf_counter()
    result = actual_pruning_limit(model, evaluate, evaluate_refit=evaluate_refit)
    rows.append(("after: re-fits where the search needs them", count[0],
                 time.perf_counter() - start, result.refit_actual_limit))  # fmt: skip
    start = time.perf_counter()
    actual_pruning_limit(model, evaluate)
    one_shot = time.perf_counter() - start

    print(f"training ({args.epochs} epochs, Lightning): {training:.1f} s")
    print(f"fit with SparsitySweep(refit_steps={args.refit_steps}) minus training: "
          f"{with_sweep - training:.1f} s = {(with_sweep - training) / training:.2f}x; "
          f"callback's re-fitted limit {sweep.result.refit_actual_limit:.4f} "
          f"{sweep.result.refit_actual_limit_interval}")  # fmt: skip
    print(f"one-shot sweep alone (core): {one_shot:.1f} s = {one_shot / training:.2f}x\n")
    print("| schedule | re-fits | seconds | / training | re-fitted limit |")
    print("|---|---:|---:|---:|---:|")
    for name, refits, seconds, limit in rows:
        print(f"| {name} | {refits} | {seconds:.1f} | {seconds / training:.2f}x | {limit:.4f} |")
    print(f"\nafter / before: {rows[1][2] / rows[0][2]:.2f} of the time; re-fitted limit "
          f"{result.refit_actual_limit:.4f} [{result.refit_actual_limit_interval[0]:.4f}, "
          f"{result.refit_actual_limit_interval[1]:.4f}]")  # fmt: skip
    report = {
        "torch": torch.__version__, "machine": platform.platform(), "threads": args.threads,
        "epochs": args.epochs, "training_s": training, "fit_with_sweep_s": with_sweep,
        "one_shot_core_s": one_shot,
        "schedules": [dict(zip(("name", "refits", "seconds", "refit_limit"), r)) for r in rows],
        "refit_limit_interval": list(result.refit_actual_limit_interval or ()),
    }  # fmt: skip
    with open(args.json, "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2)


if __name__ == "__main__":
    main()
