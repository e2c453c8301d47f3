"""Small real curvature problems shared by the curvature tests (checked in test_curvature_problems).

Data: sklearn's digits (8x8 images, 64 features), a few hundred samples in four batches of
unequal size, float64. Models are trained briefly so that their Hessians look like those of a
trained network (many eigenvalues near zero, a few large ones).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from dataclasses import dataclass

import torch
from sklearn.datasets import load_digits
from torch import Tensor, nn
from torch.func import functional_call

from lightning_prunelimit.curvature import select_parameters

BATCH_SIZES = (120, 100, 80, 60)


def digits_batches(
    *, images: bool = False, sizes: tuple[int, ...] = BATCH_SIZES
) -> list[tuple[Tensor, Tensor]]:
    """The first sum(sizes) digits, scaled to [0, 1], float64, split into batches of ``sizes``."""
    digits = load_digits()
    n = sum(sizes)
    x = torch.tensor(digits.data[:n], dtype=torch.float64) / 16.0
    y = torch.tensor(digits.target[:n], dtype=torch.long)
    if images:
        x = x.view(n, 1, 8, 8)
    return list(zip(x.split(list(sizes)), y.split(list(sizes))))


def tanh_mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 16), nn.Tanh(), nn.Linear(16, 10)).double()


def relu_mlp() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(64, 12), nn.ReLU(), nn.Linear(12, 10)).double()


def bn_cnn() -> nn.Module:
    """312 parameters outside BatchNorm (smooth: tanh and average pooling)."""
    torch.manual_seed(2)
    return nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1),
        nn.BatchNorm2d(3),
        nn.Tanh(),
        nn.AvgPool2d(2),
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.Tanh(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(16, 10),
    ).double()


def train(model: nn.Module, batches: list[tuple[Tensor, Tensor]], steps: int) -> nn.Module:
    """A short, seeded Adam run in train mode (BatchNorm statistics move), then eval mode."""
    torch.manual_seed(3)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    model.train()
    for step in range(steps):
        x, y = batches[step % len(batches)]
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return model.eval()


@dataclass
class Problem:
    """A trained model, its batches and the exact Hessian over the default parameter selection."""

    name: str
    model: nn.Module
    batches: list[tuple[Tensor, Tensor]]
    hessian: Tensor  # as computed (the test below checks that it is symmetric)
    eigenvalues: Tensor

    @property
    def dim(self) -> int:
        return int(self.hessian.shape[0])


def exact_hessian(model: nn.Module, batches: list[tuple[Tensor, Tensor]], params=None) -> Tensor:
    """Dense Hessian of the sample-weighted mean cross-entropy, model in eval mode."""
    selected = select_parameters(model, params)
    names = [n for n, _ in selected]
    shapes = [p.shape for _, p in selected]
    flat = torch.cat([p.detach().reshape(-1) for _, p in selected])
    total = sum(int(y.shape[0]) for _, y in batches)
    was_training = [(m, m.training) for m in model.modules()]
    model.eval()

    def mean_loss(w: Tensor) -> Tensor:
        parts = w.split([s.numel() for s in shapes])
        point = {n: p.view(s) for n, p, s in zip(names, parts, shapes)}
        out = 0.0
        for x, y in batches:
            out = out + nn.functional.cross_entropy(functional_call(model, point, (x,)), y) * len(y)
        return out / total

    try:
        # reverse-over-reverse: avoids forward-mode AD, whose first use compiles decompositions
        return torch.func.jacrev(torch.func.jacrev(mean_loss))(flat).detach()
    finally:
        for m, flag in was_training:
            m.training = flag


@functools.cache
def _built(name: str) -> Problem:
    # (model builder, image-shaped inputs, batch sizes); 60 Adam steps leave 40-80% of the MLP
    # Hessians' eigenvalues within 1e-3 of zero.
    make, images, sizes = {
        "tanh_mlp": (tanh_mlp, False, BATCH_SIZES),
        "relu_mlp": (relu_mlp, False, BATCH_SIZES),
        "bn_cnn": (bn_cnn, True, (60, 50, 40, 30)),  # float64 convolutions are slow on CPU
    }[name]
    batches = digits_batches(images=images, sizes=sizes)
    model = train(make(), batches, 60)
    hessian = exact_hessian(model, batches)
    return Problem(name, model, batches, hessian, torch.linalg.eigvalsh(hessian))


def build_problem(name: str) -> Problem:
    """The named problem (built once per test session), with a private copy of the model."""
    built = _built(name)
    return dataclasses.replace(built, model=copy.deepcopy(built.model))


PROBLEM_NAMES = ("tanh_mlp", "relu_mlp", "bn_cnn")


def three_level_diagonal() -> tuple[Tensor, dict[float, int]]:
    """dim 50 with eigenvalues -1 (x10), 0.5 (x25), 4 (x15), shuffled along the diagonal."""
    counts = {-1.0: 10, 0.5: 25, 4.0: 15}
    values = torch.cat([torch.full((n,), v, dtype=torch.float64) for v, n in counts.items()])
    order = torch.randperm(50, generator=torch.Generator().manual_seed(0))
    return torch.diag(values[order]), counts
