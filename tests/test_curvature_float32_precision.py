"""True float32 curvature: TF32 and autocast are off for every product and Lanczos step."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lightning_prunelimit.curvature import (
    HessianOperator,
    full_float32_precision,
    stochastic_lanczos_quadrature,
)
from lightning_prunelimit.curvature.float32_precision import _precision_settings
from lightning_prunelimit.curvature.native_backend import native_hessian_vector_products


def _settings() -> list[str]:
    return [getattr(owner, name) for owner, name in _precision_settings()]


def test_settings_are_ieee_inside_and_restored_after_an_error() -> None:
    before = _settings()
    assert before, "this torch build exposes no fp32_precision switch"
    with pytest.raises(RuntimeError, match="inside"), full_float32_precision():
        assert set(_settings()) in ({"ieee"}, {False})
        raise RuntimeError("inside")
    assert _settings() == before


def test_user_autocast_does_not_reach_the_products() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))
    batches = [(torch.randn(32, 8), torch.randint(0, 3, (32,)))]
    op = HessianOperator(model, nn.functional.cross_entropy, batches)
    block = torch.randn(3, op.dim, generator=torch.Generator().manual_seed(1))
    plain = op.matvec(block)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        guarded = op.matvec(block)
        # the same engine without the guard really runs in bfloat16 under autocast
        values = [p.detach() for p in op.params]
        raw, _ = native_hessian_vector_products(
            model,
            op.param_names,
            values,
            *batches[0],
            nn.functional.cross_entropy,
            op.unflatten(block),
        )
    unguarded = torch.cat([r.reshape(3, -1) for r in raw], dim=1)
    assert guarded.dtype == torch.float32
    torch.testing.assert_close(guarded, plain, rtol=1e-6, atol=1e-6)
    assert float((unguarded - plain).abs().max()) > 1e-4 * float(plain.abs().max())


CUDA = torch.cuda.is_available()


@pytest.mark.skipif(not CUDA, reason="TF32 exists only on CUDA devices")
@pytest.mark.skipif(
    not hasattr(torch.backends.cuda.matmul, "fp32_precision"), reason="needs torch >= 2.9"
)
def test_spectrum_with_tf32_enabled_by_the_user_equals_the_one_without() -> None:
    torch.manual_seed(0)
    device = torch.device("cuda")
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.Tanh(),
        nn.Flatten(),
        nn.Linear(16 * 8 * 8, 512),
        nn.Tanh(),
        nn.Linear(512, 10),
    ).to(device)
    batches = [
        (torch.randn(256, 3, 8, 8, device=device), torch.randint(0, 10, (256,), device=device))
    ]
    op = HessianOperator(model, nn.functional.cross_entropy, batches)
    reference = stochastic_lanczos_quadrature(op, num_iters=32, num_probes=2, seed=0)

    before = _settings()
    matmul, cudnn_conv = torch.backends.cuda.matmul, torch.backends.cudnn.conv
    saved = (matmul.fp32_precision, cudnn_conv.fp32_precision)
    matmul.fp32_precision, cudnn_conv.fp32_precision = "tf32", "tf32"
    try:
        tf32_on = _settings()
        a = torch.randn(1024, 1024, device=device)
        b = torch.randn(1024, 1024, device=device)
        exact = (a.double() @ b.double()).float()
        tf32_error = float((a @ b - exact).abs().max())
        if torch.cuda.get_device_capability(device) >= (8, 0):
            # the user's setting really is in force outside the guard: TF32 rounding is ~1e-3
            assert tf32_error > 1e-2, tf32_error
            # and it would reach the products of this model without the guard
            block = torch.randn(2, op.dim, device=device)
            values = [p.detach() for p in op.params]
            raw, _ = native_hessian_vector_products(
                model,
                op.param_names,
                values,
                *batches[0],
                nn.functional.cross_entropy,
                op.unflatten(block),
            )
            unguarded = torch.cat([r.reshape(2, -1) for r in raw], dim=1)
            guarded = op.matvec(block)
            assert float((unguarded - guarded).abs().max()) > 1e-4 * float(guarded.abs().max())
        spectrum = stochastic_lanczos_quadrature(op, num_iters=32, num_probes=2, seed=0)
        assert _settings() == tf32_on  # the user's choice is back after the run
    finally:
        matmul.fp32_precision, cudnn_conv.fp32_precision = saved
    assert _settings() == before

    scale = float(reference.nodes.abs().max())
    torch.testing.assert_close(spectrum.nodes, reference.nodes, rtol=0, atol=1e-5 * scale)
    torch.testing.assert_close(spectrum.weights, reference.weights, rtol=0, atol=1e-4)
