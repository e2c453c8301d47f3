"""The pieces of benchmarks/validity.py that its numbers rest on."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.func import functional_call

from lightning_prunelimit.curvature import HessianOperator

PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "validity.py"


@pytest.fixture(scope="module")
def validity():
    spec = importlib.util.spec_from_file_location("validity_benchmark", PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def test_dense_spectrum_is_the_eigenvalues_of_the_exact_hessian(validity):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3)).double()
    x, y = torch.randn(40, 5, dtype=torch.float64), torch.randint(0, 3, (40,))
    batches = [(x[:25], y[:25]), (x[25:], y[25:])]
    op = HessianOperator(model, nn.functional.cross_entropy, batches)
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def loss(vector):
        params, start = {}, 0
        for name, shape in zip(names, shapes):
            params[name] = vector[start : start + shape.numel()].view(shape)
            start += shape.numel()
        return nn.functional.cross_entropy(functional_call(model, params, (x,)), y)

    want = torch.linalg.eigvalsh(torch.autograd.functional.hessian(loss, flat))
    spectrum = validity.dense_spectrum(op, block=7)  # blocks that do not divide D
    assert spectrum.dim == op.dim == flat.numel()
    assert torch.allclose(spectrum.nodes[0], want, atol=1e-10)
    assert torch.allclose(spectrum.weights.sum(), torch.tensor(1.0, dtype=torch.float64))


def test_largest_passing_finds_the_edge_and_counts_the_best_point(validity):
    evaluated: set[float] = set()

    def passes(sparsity: float) -> bool:
        evaluated.add(sparsity)
        return sparsity <= 0.437

    limit = validity.largest_passing(passes, evaluated, num_weights=10_000, refine_steps=6)
    assert 0.437 - 0.05 / 2**6 <= limit <= 0.437
    evaluated = set()

    def bumpy(sparsity: float) -> bool:  # passes at 0.3 and again at 0.6: the best counts
        evaluated.add(sparsity)
        return sparsity <= 0.3 or 0.55 <= sparsity <= 0.61

    limit = validity.largest_passing(bumpy, evaluated, num_weights=10_000, refine_steps=6)
    assert 0.6 <= limit <= 0.61


def test_interval_is_shown_only_when_the_prediction_has_one(validity):
    assert validity.interval_of(SimpleNamespace(sparsity=0.5)) is None
    assert validity.interval_of(SimpleNamespace(sparsity_interval=None)) is None
    assert validity.interval_of(SimpleNamespace(sparsity_interval=(0.4, 0.6))) == [0.4, 0.6]
    row = {
        "case": "digits, no L1", "dim": 2410, "dense_accuracy": 0.98, "epsilon": 1e-3,
        "predicted_sparsity": 0.7, "predicted_interval": [0.65, 0.75], "exact_sparsity": None,
        "limits": dict.fromkeys(
            ("one_shot_accuracy", "refit_accuracy", "one_shot_loss", "refit_loss"), 0.5
        ),
        "seconds": {"train": 1.0},
    }  # fmt: skip
    table = validity.markdown([row])
    assert "[0.650, 0.750]" in table and "| - |" in table
