"""The pieces of benchmarks/near_zero_curvature.py that its numbers rest on."""

from __future__ import annotations

import pytest
import torch
from _benchmark_loader import benchmark_module
from torch import nn

from lightning_prunelimit.curvature import DenseOperator, HessianOperator
from lightning_prunelimit.curvature import stochastic_lanczos_quadrature as slq


@pytest.fixture(scope="module")
def near_zero():
    with benchmark_module("near_zero_curvature.py") as module:
        yield module


def _dense(op, dim: int) -> torch.Tensor:
    return op.matvec(torch.eye(dim, dtype=torch.float64))


def test_gauss_newton_is_the_hessian_of_a_linear_classifier(near_zero):
    # Logits linear in the weights: the loss's curvature through the network is zero.
    torch.manual_seed(0)
    model = nn.Linear(6, 4).double()
    x, y = torch.randn(30, 6, dtype=torch.float64), torch.randint(0, 4, (30,))
    ggn = near_zero.GaussNewtonOperator(model, x)
    hessian = HessianOperator(model, nn.functional.cross_entropy, [(x, y)])
    assert ggn.dim == hessian.dim == 28
    torch.testing.assert_close(_dense(ggn, 28), _dense(hessian, 28), rtol=1e-10, atol=1e-12)


def test_gauss_newton_of_an_mlp_is_psd_and_not_the_hessian(near_zero):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    x, y = torch.randn(40, 5, dtype=torch.float64), torch.randint(0, 3, (40,))
    ggn = _dense(near_zero.GaussNewtonOperator(model, x), 57)
    hessian = _dense(HessianOperator(model, nn.functional.cross_entropy, [(x, y)]), 57)
    torch.testing.assert_close(ggn, ggn.T, rtol=1e-10, atol=1e-12)
    assert float(torch.linalg.eigvalsh(ggn).min()) > -1e-12
    assert float(torch.linalg.eigvalsh(hessian).min()) < -1e-6  # untrained: indefinite
    assert float((ggn - hessian).abs().max()) > 1e-4
    # A block of vectors gives the rows one by one.
    block = torch.randn(3, 57, dtype=torch.float64)
    one_by_one = torch.stack([near_zero.GaussNewtonOperator(model, x).matvec(v) for v in block])
    torch.testing.assert_close(near_zero.GaussNewtonOperator(model, x).matvec(block), one_by_one)


def test_mass_bands_split_the_ritz_weights_around_c(near_zero):
    eigenvalues = torch.tensor([-0.5, -2e-4, 0.0, 2e-4, 1e-3, 0.8, 2.0], dtype=torch.float64)
    spectrum = slq(DenseOperator(torch.diag(eigenvalues)), 7, 2, seed=0)
    near, band, negative = near_zero.mass_bands(spectrum, c=1e-3)
    # Six distinct non-zero eigenvalues in seven steps: the zero row is deflated, the Ritz values
    # are the others, each with a weight 1/7 of the whole. |l| < 1e-4: the zero; 1e-4 <= |l| <= 1:
    # -0.5, -2e-4, 2e-4, 1e-3, 0.8 (2 is above 1000 c); l < -1e-4: -0.5 and -2e-4.
    assert spectrum.deflated == 1
    assert near == pytest.approx(1 / 7, abs=1e-9)
    assert band == pytest.approx(5 / 7, abs=1e-9)
    assert negative == pytest.approx(2 / 7, abs=1e-9)
