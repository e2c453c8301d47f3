"""A user's training script whose fit-end stage ``sys.argv[1]`` is long (for the signal tests).

Every forward pass sleeps 10 ms, the stages before the named one are tiny and the named one is
long (minutes if not stopped: e.g. 100 top eigenvalues of a 1,794-parameter model to 1e-6).
Prints ``STAGE <name>`` when the named stage is about to start
and ``FIT DONE`` if ``fit`` returns.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from lightning_prunelimit import HessianSpectrum, PruningLimit, SparsitySweep

TARGET = sys.argv[1]
BEFORE = {  # the "done in" line of the stage before the target
    "spectrum": None,
    "top_eigenvalues": "Hessian spectrum (Lanczos): done in",
    "trace": "Hessian top eigenvalues: done in",
    "zero_rows": "Hessian trace: done in",
    "sweep": "Zero-curvature rows: done in",
    "refit": "Zero-curvature rows: done in",
}[TARGET]
LONG = 10_000


class Net(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(4, 256), torch.nn.Tanh(), torch.nn.Linear(256, 2)
        )
        self.loss_fn = torch.nn.CrossEntropyLoss()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(0.01)
        return self.net(x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return self.loss_fn(self(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


class Announce(pl.Callback):
    """Prints the marker when the fit-end work begins (the spectrum's own start)."""

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if TARGET == "spectrum" and trainer.is_last_batch:
            print("STAGE spectrum", flush=True)


class Marker:
    def write(self, text: str) -> None:
        if BEFORE is not None and BEFORE in text:
            print(f"STAGE {TARGET}", flush=True)

    def flush(self) -> None:
        pass


def main() -> None:
    import logging

    handler = logging.StreamHandler(Marker())
    logging.getLogger("lightning.pytorch").addHandler(handler)
    generator = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(32, 4, generator=generator), torch.arange(32) % 2)
    loader = DataLoader(data, batch_size=16)
    n = {name: (LONG if name == TARGET else 2) for name in BEFORE_ORDER}
    callbacks = [
        Announce(),
        HessianSpectrum(
            num_iters=max(n["spectrum"], 4), num_probes=1,
            top_k=100 if TARGET == "top_eigenvalues" else 1,
            top_iters=max(n["top_eigenvalues"], 4), trace_probes=n["trace"],
        ),
        PruningLimit(epsilon=0.1, zero_curvature=True, num_quantiles=n["zero_rows"]),
        SparsitySweep(
            sparsities=[i / n["sweep"] for i in range(n["sweep"])] if TARGET == "sweep" else [0.5],
            refine_steps=0, refit_steps=n["refit"] if TARGET == "refit" else 0,
        ),
    ]  # fmt: skip
    trainer = pl.Trainer(
        max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=callbacks, accelerator="cpu", devices=1,
    )  # fmt: skip
    trainer.fit(Net(), loader)
    print("FIT DONE", flush=True)


BEFORE_ORDER = ("spectrum", "top_eigenvalues", "trace", "zero_rows", "sweep", "refit")

if __name__ == "__main__":
    main()
