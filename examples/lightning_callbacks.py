"""How sparse can a small digit classifier be pruned? Predict it, measure it, then prune it.

An ordinary Lightning training script on the sklearn handwritten digits (8x8 images, offline):

1. train an MLP with L1 regularisation; at the end of training the callbacks estimate the
   Hessian spectrum, predict the pruning limit and measure the actual limit (accuracy of
   one-shot pruned copies, no fine-tuning);
2. prune the trained model to the predicted sparsity in one shot and fine-tune it.

Figures (spectrum, predicted limit, sweep, per-layer sparsity) and ``metrics.csv`` are written
under ``--output-dir``. Runs in well under a minute on two CPU cores::

    python examples/lightning_callbacks.py
"""

from __future__ import annotations

import argparse
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import CSVLogger
from sklearn.datasets import load_digits
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_prunelimit import (
    GlobalOneShotPruning,
    HessianSpectrum,
    L1Regularization,
    PruningLimit,
    SparsitySweep,
)


class DigitsMLP(pl.LightningModule):
    """A 64-128-64-10 MLP; the callbacks find its loss as ``self.loss_fn``."""

    def __init__(self, lr: float = 0.05) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10)
        )
        self.loss_fn = nn.CrossEntropyLoss()
        self.lr = lr

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        x, y = batch
        loss = self.loss_fn(self(x), y)
        self.log("train/loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        self.log("val/loss", self.loss_fn(logits, y))
        self.log("val/acc", (logits.argmax(dim=1) == y).float().mean())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)


def digits_loaders(batch_size: int = 64) -> tuple[DataLoader, DataLoader]:
    """Training (1437) and validation (360) loaders of standardised digits."""
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x, dtype=torch.float32) / 16.0
    y = torch.tensor(y, dtype=torch.int64)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    x, y = x[order], y[order]
    mean, std = x[:1437].mean(dim=0), x[:1437].std(dim=0).clamp_min(1e-3)
    x = (x - mean) / std
    train = DataLoader(TensorDataset(x[:1437], y[:1437]), batch_size=batch_size, shuffle=True)
    val = DataLoader(TensorDataset(x[1437:], y[1437:]), batch_size=256)
    return train, val


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", default="outputs/lightning_callbacks")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--finetune-epochs", type=int, default=5)
    args = parser.parse_args()

    pl.seed_everything(0, verbose=False)
    train, val = digits_loaders()
    model = DigitsMLP()

    # num_iters="auto" (the default): Lanczos steps until the prediction's interval is narrow
    spectrum = HessianSpectrum(num_samples=512, top_k=3, top_iters=32, trace_probes=8)
    limit = PruningLimit(epsilon="batch_loss_std")
    sweep = SparsitySweep(max_drop=0.0)
    trainer = pl.Trainer(
        max_epochs=args.epochs,
        accelerator="cpu",
        callbacks=[L1Regularization(strength=1e-4), spectrum, limit, sweep],
        logger=CSVLogger(args.output_dir, name="train"),
        default_root_dir=args.output_dir,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=False,
        log_every_n_steps=10,
    )
    trainer.fit(model, train, val)
    dense_accuracy = trainer.callback_metrics["val/acc"].item()

    top = ", ".join(f"{v:.3f}" for v in spectrum.top_eigenvalues.tolist())
    print(
        f"\nHessian over {spectrum.num_params} parameters, {spectrum.spectrum.num_iters} "
        f"Lanczos steps: Ritz values in [{spectrum.spectrum.min_node:.4f}, "
        f"{spectrum.spectrum.max_node:.4f}], top eigenvalues {top}, "
        f"trace {spectrum.trace:.2f} +- {spectrum.trace_stderr:.2f}"
    )
    prediction = limit.prediction
    low, high = prediction.sparsity_interval
    print(
        f"predicted limit: keep {prediction.kept_fraction:.4f} of {prediction.num_weights} "
        f"weights, sparsity {prediction.sparsity:.4f} in [{low:.4f}, {high:.4f}] "
        f"(epsilon {prediction.epsilon:.4f})"
    )
    print(
        f"actual limit (no fine-tuning, accuracy >= dense {sweep.result.dense_accuracy:.4f}): "
        f"sparsity {sweep.result.actual_limit:.4f}"
    )

    pruning = GlobalOneShotPruning(amount=prediction.sparsity, verbose=1)
    finetune = pl.Trainer(
        max_epochs=args.finetune_epochs,
        accelerator="cpu",
        callbacks=[pruning],
        logger=CSVLogger(args.output_dir, name="finetune"),
        default_root_dir=args.output_dir,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=False,
        log_every_n_steps=10,
    )
    finetune.fit(model, train, val)
    pruned_accuracy = finetune.validate(model, val, verbose=False)[0]["val/acc"]
    print(
        f"dense accuracy {dense_accuracy:.4f}; pruned to sparsity "
        f"{pruning.report.global_sparsity:.4f} and fine-tuned for {args.finetune_epochs} "
        f"epochs: accuracy {pruned_accuracy:.4f}"
    )
    print(f"figures and metrics under {args.output_dir}")


if __name__ == "__main__":
    main()
