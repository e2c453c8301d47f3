"""Hessian-vector product speed, per probe, in units of one gradient on the same batch.

An FC5-size MLP (784-1000-600-300-100-10, ReLU) on one batch of random-normal inputs (float32 by
default). Every case is timed once per round, rounds interleave the cases so that load changes
on a shared machine hit all of them alike, and the table reports medians:

* ``gradient``: forward and backward of the mean loss (the unit);
* ``native, k``: ``HessianOperator(...).matvec`` of a ``(k, dim)`` block, the default engine
  (``torch.func`` reverse-over-reverse, the second backward vmapped over the block; a plain
  double backward for k=1);
* ``pyhessian``: ``HessianOperator(..., backend="pyhessian")`` one vector at a time, as PyHessian
  does it (forward, ``create_graph`` backward, double backward for every product);
* two alternative engines, measured to choose the default: forward-over-reverse (``jvp`` of
  ``grad`` under ``vmap``) and ``torch.autograd.grad(..., is_grads_batched=True)``.

Usage::

    python benchmarks/hvp_speed.py [--device cuda] [--rounds 9] [--batch-size 512]
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import time
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, jvp, vmap

from lightning_prunelimit.curvature import HessianOperator

SIZES = (784, 1000, 600, 300, 100, 10)
TARGET_GRADIENTS_PER_PROBE = 2.3
TARGET_FRACTION_OF_PYHESSIAN = 0.70


def fc5(dtype: torch.dtype, device: torch.device) -> nn.Module:
    layers: list[nn.Module] = []
    for fan_in, fan_out in zip(SIZES[:-1], SIZES[1:]):
        layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
    return nn.Sequential(*layers[:-1]).to(device=device, dtype=dtype)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    torch.manual_seed(0)
    model = fc5(dtype, device).eval()
    x = torch.randn(args.batch_size, SIZES[0], device=device, dtype=dtype)
    y = torch.randint(0, SIZES[-1], (args.batch_size,), device=device)
    loss_fn = nn.functional.cross_entropy
    batches = [(x, y)]
    native = HessianOperator(model, loss_fn, batches)
    reference = HessianOperator(model, loss_fn, batches, backend="pyhessian")
    dim = native.dim
    blocks = {k: torch.randn(k, dim, device=device, dtype=dtype) for k in (1, 4, 16)}
    params = [p for p in model.parameters()]
    names = [n for n, _ in model.named_parameters()]
    values = tuple(p.detach() for p in params)

    def gradient() -> object:
        return torch.autograd.grad(loss_fn(model(x), y), params)

    def loss_at(*point: Tensor) -> Tensor:
        return loss_fn(functional_call(model, dict(zip(names, point)), (x,)), y)

    gradient_fn = grad(loss_at, argnums=tuple(range(len(names))))
    tangents16 = tuple(native.unflatten(blocks[16]))

    def forward_over_reverse() -> object:
        def one(*tangent: Tensor) -> tuple[Tensor, ...]:
            return jvp(gradient_fn, values, tangent)[1]

        with torch.no_grad():
            return vmap(one)(*tangents16)

    def batched_double_backward() -> object:
        leaves = [v.detach().requires_grad_(True) for v in values]
        gradients = torch.autograd.grad(loss_at(*leaves), leaves, create_graph=True)
        return torch.autograd.grad(gradients, leaves, tangents16, is_grads_batched=True)

    cases: dict[str, tuple[int, Callable[[], object]]] = {
        "gradient (forward + backward)": (1, gradient),
        "native, k=1": (1, lambda: native.matvec(blocks[1])),
        "native, k=4": (4, lambda: native.matvec(blocks[4])),
        "native, k=16": (16, lambda: native.matvec(blocks[16])),
        "pyhessian, one vector at a time": (1, lambda: reference.matvec(blocks[1])),
        "pyhessian, k=16 (graph reused)": (16, lambda: reference.matvec(blocks[16])),
        "alternative: forward-over-reverse, k=16": (16, forward_over_reverse),
        "alternative: is_grads_batched double backward, k=16": (16, batched_double_backward),
    }

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _, run in cases.values():  # warm-up (allocations, lazy initialisation)
        run()
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.rounds):
        for name, (_, run) in cases.items():
            sync()
            start = time.perf_counter()
            run()
            sync()
            times[name].append(time.perf_counter() - start)

    median = {name: statistics.median(values) for name, values in times.items()}
    unit = median["gradient (forward + backward)"]
    pyhessian_per_hvp = median["pyhessian, one vector at a time"]
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    print(
        f"{datetime.date.today()}, torch {torch.__version__}, {args.device} ({where or 'cpu'}, "
        f"{torch.get_num_threads()} threads), {args.dtype}, batch {args.batch_size}, "
        f"{dim:,} parameters, median of {args.rounds} interleaved rounds\n"
    )
    print("| case | ms per call | ms per probe | gradients per probe | / pyhessian per HVP |")
    print("|---|---:|---:|---:|---:|")
    for name, (k, _) in cases.items():
        per_probe = median[name] / k
        print(
            f"| {name} | {median[name] * 1e3:.1f} | {per_probe * 1e3:.1f} | "
            f"{per_probe / unit:.2f} | {per_probe / pyhessian_per_hvp:.2f} |"
        )
    native16 = median["native, k=16"] / 16
    print(
        f"\nnative k=16: {native16 / unit:.2f} gradients per probe (target <= "
        f"{TARGET_GRADIENTS_PER_PROBE}), {native16 / pyhessian_per_hvp:.2f} of pyhessian's "
        f"per-HVP time (target <= {TARGET_FRACTION_OF_PYHESSIAN})"
    )


if __name__ == "__main__":
    main()
