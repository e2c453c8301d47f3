"""Models trained in another precision than their data, and low-precision Lanczos bases."""

from __future__ import annotations

import pytest
import torch
from _lightning_helpers import DigitsDataModule, TinyClassifier, make_trainer
from torch import nn

from lightning_prunelimit import HessianSpectrum, PruningLimit
from lightning_prunelimit.curvature import (
    DenseOperator,
    HessianOperator,
    lanczos,
    stochastic_lanczos_quadrature,
)
from lightning_prunelimit.limit import batch_loss_std


def _digits_batches(dtype: torch.dtype) -> list[tuple[torch.Tensor, torch.Tensor]]:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = torch.as_tensor(x[:300] / 16.0, dtype=dtype)  # multiples of 1/16: exact in float32
    y = torch.as_tensor(y[:300])
    return [(x[i : i + 100], y[i : i + 100]) for i in range(0, 300, 100)]


def _float64_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 12), nn.Tanh(), nn.Linear(12, 10)).double()


def test_float32_batches_feed_a_float64_model_exactly() -> None:
    model, loss_fn = _float64_model(), nn.CrossEntropyLoss()
    exact = HessianOperator(model, loss_fn, _digits_batches(torch.float64))
    cast = HessianOperator(model, loss_fn, _digits_batches(torch.float32))
    v = torch.randn(3, exact.dim, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert cast.dtype == torch.float64
    torch.testing.assert_close(cast.matvec(v), exact.matvec(v), rtol=0, atol=0)
    assert batch_loss_std(model, loss_fn, _digits_batches(torch.float32)) == batch_loss_std(
        model, loss_fn, _digits_batches(torch.float64)
    )


def test_callbacks_run_under_a_64_bit_trainer_with_float32_data(tmp_path) -> None:
    spectrum = HessianSpectrum(num_iters=8, top_k=2, trace_probes=2)
    limit = PruningLimit(epsilon_batch_size=16)
    trainer = make_trainer(tmp_path, [spectrum, limit], max_epochs=1, precision="64-true")
    trainer.fit(TinyClassifier(dtype=torch.float32), DigitsDataModule(dtype=torch.float32))
    assert spectrum.spectrum is not None and spectrum.spectrum.num_iters == 8
    assert torch.isfinite(spectrum.spectrum.nodes).all()
    assert limit.prediction is not None and 0.0 <= limit.prediction.sparsity < 1.0


def test_bfloat16_operator_gets_a_float32_basis_and_runs_every_step() -> None:
    torch.manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(200, 200, dtype=torch.float64))
    matrix = (q * torch.linspace(0.01, 1.0, 200, dtype=torch.float64)) @ q.T
    result = lanczos(DenseOperator(matrix.to(torch.bfloat16)), torch.ones(2, 200), num_iters=32)
    assert result.lengths == (32, 32)
    top = result.ritz()[0][:, -1]
    assert torch.allclose(top, torch.ones_like(top), rtol=0.05)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_outliers_over_a_flat_bulk_do_not_stop_a_float32_run_early(dtype: torch.dtype) -> None:
    # The paper's picture of a trained network: a few large outliers over a near-zero bulk.
    generator = torch.Generator().manual_seed(0)
    bulk = (torch.rand(1995, generator=generator, dtype=torch.float64) - 0.5) * 2e-2
    eigenvalues = torch.cat([bulk, torch.tensor([200.0, 400.0, 600.0, 800.0, 1000.0])])
    operator = DenseOperator(torch.diag(eigenvalues).to(dtype))
    spectrum = stochastic_lanczos_quadrature(operator, num_iters=128, num_probes=2, seed=0)

    def g(values: torch.Tensor) -> torch.Tensor:  # the paper's term, 2 eps / (2 eps + |l| R^2)
        return 1.0 / (1.0 + 1e3 * values.abs())

    exact = float(g(eigenvalues).mean())
    estimate = spectrum.trace_of(g) / operator.dim
    assert spectrum.num_iters == 128
    assert estimate == pytest.approx(exact, abs=5e-3)
