"""SLQ at the paper's scale: HVP cost, SLQ time and peak memory, against a PyHessian-style run.

The paper's networks (FC12 and VGG16-BN with 10 classes, ResNet18 and ResNet50 with 100) on
CIFAR-shaped random inputs (cost does not depend on the values), batch 128, 2,048 samples, in
float32 with the library's defaults (TF32 off inside the curvature code). For each model:

* ``gradient``: forward and backward of the mean loss over all batches (the unit);
* ``HVP k``: one ``HessianOperator.matvec`` of a ``(k, dim)`` block over all batches, per probe,
  in gradients (median of ``--rounds``);
* ``SLQ``: ``stochastic_lanczos_quadrature`` end to end, ``--steps`` steps, 1 and 4 probes
  (default memory budget: from the free memory on a GPU), wall time and peak memory (CUDA:
  ``max_memory_allocated`` above what the model and data hold; CPU: growth of the resident
  size, where Linux lets it be reset);
* ``PyHessian-style``: Lanczos as PyHessian 0.1 runs it, on the same data: its double-backward
  HVP (``backend="pyhessian"``), one probe at a time, full re-orthogonalisation with
  ``pyhessian.utils.orthnormal`` over lists of parameter tensors; ``--pyhessian-probes``
  probes (one at a time, so its time is linear in the probes);
* ``budget``: the largest model, 4 probes, under each of ``--budget-gb`` (16 GiB by default;
  in ``--small`` mode 0.5 and 0.3 times the unbudgeted estimate), time and peak.

Usage::

    python benchmarks/spectrum_scale.py --device cuda --out spectrum_scale.json
    python benchmarks/spectrum_scale.py --device cuda --models resnet50     # one at a time
    python benchmarks/spectrum_scale.py --device cpu --small               # CI-sized
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from lightning_prunelimit.curvature import (
    HessianOperator,
    plan_lanczos_memory,
    stochastic_lanczos_quadrature,
)
from lightning_prunelimit.curvature.memory_plan import GIB, default_memory_budget
from lightning_prunelimit.models import fc12, resnet18, resnet50, vgg16_bn

MODELS: dict[str, tuple[Callable[[], nn.Module], int]] = {
    "fc12": (lambda: fc12(in_features=3 * 32 * 32, num_classes=10), 10),
    "vgg16_bn": (lambda: vgg16_bn(num_classes=10), 10),
    "resnet18": (lambda: resnet18(num_classes=100), 100),
    "resnet50": (lambda: resnet50(num_classes=100), 100),
}
TARGETS = {"fc12": 1.0, "resnet18": 2.0}  # per-probe HVP, in gradients, for k >= 4
TARGET_SPEEDUP = 3.0


class Memory:
    """Peak memory above a baseline: CUDA allocator statistics, or Linux's resident size."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.base = 0
        self.available = device.type == "cuda" or Path("/proc/self/clear_refs").exists()

    @staticmethod
    def _status(key: str) -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
        return 0

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
        elif self.available:
            self.base = self._status("VmRSS")
            Path("/proc/self/clear_refs").write_text("5")

    def peak_gib(self) -> float | None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return (torch.cuda.max_memory_allocated(self.device) - self.base) / GIB
        if self.available:
            return (self._status("VmHWM") - self.base) / GIB
        return None


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, run: Callable[[], object]) -> float:
    sync(device)
    start = time.perf_counter()
    run()
    sync(device)
    return time.perf_counter() - start


def pyhessian_style_lanczos(
    op: HessianOperator, num_iters: int, num_probes: int, seed: int
) -> Tensor:
    """Lanczos as PyHessian 0.1's ``density()`` runs it; returns the Ritz values per probe.

    One probe at a time; vectors are lists of parameter-shaped tensors; every new vector is
    re-orthogonalised against all earlier ones by ``pyhessian.utils.orthnormal`` (modified
    Gram-Schmidt, one vector at a time) and products come from ``op`` (PyHessian's
    double-backward utility when ``op.backend == "pyhessian"``).
    """
    from pyhessian.utils import group_add, group_product, normalization, orthnormal

    generator = torch.Generator().manual_seed(seed)
    ritz = []
    for _ in range(num_probes):
        signs = torch.randint(0, 2, (op.dim,), generator=generator).to(op.device, op.dtype)
        v = normalization([t.clone() for t in op.unflatten(2 * signs - 1)])
        basis = [v]
        alphas: list[float] = []
        betas: list[float] = []
        w: list[Tensor] = []
        for i in range(min(num_iters, op.dim)):
            if i > 0:
                beta = float(group_product(w, w)) ** 0.5
                betas.append(beta)
                v = orthnormal(w, basis)
                basis.append(v)
            product = op.unflatten(op.matvec(torch.cat([t.reshape(-1) for t in v])))
            w_prime = [t.clone() for t in product]
            alpha = float(group_product(w_prime, v))
            alphas.append(alpha)
            w = group_add(w_prime, v, alpha=-alpha)
            if i > 0:
                w = group_add(w, basis[-2], alpha=-betas[-1])
        t = torch.diag(torch.tensor(alphas, dtype=torch.float64))
        off = torch.tensor(betas, dtype=torch.float64)
        t += torch.diag(off, 1) + torch.diag(off, -1)
        ritz.append(torch.linalg.eigvalsh(t))
        del basis, w, v
    return torch.stack(ritz)


def model_and_batches(
    name: str, args: argparse.Namespace, device: torch.device
) -> tuple[nn.Module, list[tuple[torch.Tensor, torch.Tensor]]]:
    """The seeded model and CIFAR-shaped random batches (cost does not depend on values)."""
    make, num_classes = MODELS[name]
    torch.manual_seed(0)
    model = make().to(device)
    batches = [
        (
            torch.randn(args.batch_size, 3, 32, 32, device=device),
            torch.randint(0, num_classes, (args.batch_size,), device=device),
        )
        for _ in range(math.ceil(args.num_samples / args.batch_size))
    ]
    return model, batches


def bench_model(name: str, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    model, batches = model_and_batches(name, args, device)
    loss_fn = nn.functional.cross_entropy
    op = HessianOperator(model, loss_fn, batches)
    params = op.params
    memory = Memory(device)
    row: dict[str, Any] = {"dim": op.dim, "samples": op.num_samples}

    def gradient() -> None:
        model.eval()
        for x, y in batches:
            torch.autograd.grad(loss_fn(model(x), y) * (len(y) / op.num_samples), params)

    blocks = {k: torch.randn(k, op.dim, device=device) for k in args.ks}
    cases: dict[str, Callable[[], object]] = {"gradient": gradient}
    for k in args.ks:
        cases[f"hvp_{k}"] = lambda k=k: op.matvec(blocks[k])
    for run in cases.values():  # warm-up
        run()
    times: dict[str, list[float]] = {case: [] for case in cases}
    for _ in range(args.rounds):
        for case, run in cases.items():
            times[case].append(timed(device, run))
    unit = statistics.median(times["gradient"])
    row["gradient_s"] = unit
    for k in args.ks:
        row[f"hvp_{k}_gradients_per_probe"] = statistics.median(times[f"hvp_{k}"]) / k / unit
    blocks.clear()

    for probes in (1, 4):
        memory.reset()
        seconds = timed(
            device,
            lambda probes=probes: stochastic_lanczos_quadrature(
                op, num_iters=args.steps, num_probes=probes, seed=0
            ),
        )
        row[f"slq_{probes}_s"] = seconds
        row[f"slq_{probes}_peak_gib"] = memory.peak_gib()
    reference = HessianOperator(model, loss_fn, batches, backend="pyhessian")
    memory.reset()
    seconds = timed(
        device,
        lambda: pyhessian_style_lanczos(reference, args.steps, args.pyhessian_probes, seed=0),
    )
    row["pyhessian_probes"] = args.pyhessian_probes
    row["pyhessian_s_per_probe"] = seconds / args.pyhessian_probes
    row["pyhessian_peak_gib"] = memory.peak_gib()
    for probes in (1, 4):
        row[f"speedup_{probes}"] = probes * row["pyhessian_s_per_probe"] / row[f"slq_{probes}_s"]
    return row


def bench_budget(name: str, args: argparse.Namespace, device: torch.device) -> list[dict[str, Any]]:
    model, batches = model_and_batches(name, args, device)
    op = HessianOperator(model, nn.functional.cross_entropy, batches)
    free_plan = plan_lanczos_memory(
        op.dim, args.steps, 4, dtype=op.dtype, device=device, hvp_bytes=op.hvp_memory_bytes
    )
    op.matvec(torch.randn(2, op.dim, device=device))  # warm-up: kernels, caches, vmap
    budgets = args.budget_gb
    if budgets is None:
        budgets = [f * free_plan.estimated_bytes / GIB for f in (0.5, 0.3)]
    rows = []
    for budget in budgets:
        plan = plan_lanczos_memory(
            op.dim,
            args.steps,
            4,
            dtype=op.dtype,
            device=device,
            budget_gb=budget,
            hvp_bytes=op.hvp_memory_bytes,
        )
        memory = Memory(device)
        memory.reset()
        seconds = timed(
            device,
            lambda budget=budget: stochastic_lanczos_quadrature(
                op, num_iters=args.steps, num_probes=4, seed=0, memory_budget_gb=budget
            ),
        )
        rows.append(
            {
                "model": name,
                "budget_gib": budget,
                "unbudgeted_estimate_gib": free_plan.estimated_bytes / GIB,
                "plan": plan.describe(),
                "seconds": seconds,
                "peak_gib": memory.peak_gib(),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--small", action="store_true", help="CI-sized: tiny data, few steps")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--num-samples", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--pyhessian-probes", type=int, default=1)
    parser.add_argument("--budget-gb", type=float, nargs="+", default=None)
    parser.add_argument("--no-budget-run", action="store_true")
    parser.add_argument("--budget-only", action="store_true", help="only the budgeted runs")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = parser.parse_args()
    small = {"batch_size": 2, "num_samples": 4, "steps": 3, "rounds": 2}
    full = {"batch_size": 128, "num_samples": 2048, "steps": 128, "rounds": 3}
    for key, value in (small if args.small else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.budget_gb is None and not args.small:
        args.budget_gb = [16.0]
    args.ks = (1, 4) if args.small else (1, 4, 16)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    where = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"{platform.processor() or 'cpu'}, {torch.get_num_threads()} threads"
    )
    header = (
        f"{datetime.date.today()}, torch {torch.__version__}, {device} ({where}), float32, "
        f"batch {args.batch_size}, {args.num_samples} samples, {args.steps} steps, "
        f"median of {args.rounds} rounds"
    )
    print(header, flush=True)
    results: dict[str, Any] = {
        "header": header,
        "device": str(device),
        "device_name": where,
        "default_budget_gib": default_memory_budget(device),
        "settings": {k: v for k, v in vars(args).items() if k not in ("out",)},
        "models": {},
    }
    for name in [] if args.budget_only else args.models:
        results["models"][name] = bench_model(name, args, device)
        print(f"{name}: {json.dumps(results['models'][name])}", flush=True)
    if not args.no_budget_run:
        largest = max(
            args.models, key=lambda n: sum(p.numel() for p in MODELS[n][0]().parameters())
        )
        results["budget"] = bench_budget(largest, args, device)
        print(f"budget: {json.dumps(results['budget'])}", flush=True)

    ks = args.ks
    print()
    print(
        "| model | parameters | gradient (s) | "
        + " | ".join(f"HVP k={k} (gradients/probe)" for k in ks)
        + " | SLQ 1 probe (s) | SLQ 4 probes (s) | SLQ 4 probes peak (GiB) "
        "| PyHessian-style per probe (s) | speed-up 1 / 4 probes |"
    )
    print("|---|" + "---:|" * (7 + len(ks)))

    def gib(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.2f}"

    for name, row in results["models"].items():
        print(
            f"| {name} | {row['dim']:,} | {row['gradient_s']:.3f} | "
            + " | ".join(f"{row[f'hvp_{k}_gradients_per_probe']:.2f}" for k in ks)
            + f" | {row['slq_1_s']:.2f} | {row['slq_4_s']:.2f} | {gib(row['slq_4_peak_gib'])} "
            f"| {row['pyhessian_s_per_probe']:.2f} | {row['speedup_1']:.1f}x / "
            f"{row['speedup_4']:.1f}x |"
        )
    for b in results.get("budget", []):
        print(
            f"\n{b['model']}, 4 probes under memory_budget_gb={b['budget_gib']:.3g} (unbudgeted "
            f"estimate {b['unbudgeted_estimate_gib']:.3g} GiB): {b['seconds']:.1f} s, peak "
            f"{gib(b['peak_gib'])} GiB above the model and data\n  {b['plan']}"
        )
    checks = []
    for name, limit in TARGETS.items():
        if name in results["models"]:
            worst = max(results["models"][name][f"hvp_{k}_gradients_per_probe"] for k in ks[1:])
            checks.append((f"{name} HVP k>=4 <= {limit} gradients/probe", worst <= limit, worst))
    for name, row in results["models"].items():
        checks.append(
            (
                f"{name} SLQ 4 probes >= {TARGET_SPEEDUP}x PyHessian-style",
                row["speedup_4"] >= TARGET_SPEEDUP,
                row["speedup_4"],
            )
        )
    for b in results.get("budget", []):
        if b["peak_gib"] is None:
            continue
        checks.append(
            (
                f"{b['model']} 4 probes within {b['budget_gib']:.3g} GiB",
                b["peak_gib"] <= b["budget_gib"],
                b["peak_gib"],
            )
        )
    print("\nTargets (set for a GPU at full size):")
    for label, ok, value in checks:
        print(f"- {label}: {'met' if ok else 'NOT met'} ({value:.2f})")
    results["targets"] = [{"target": t, "met": ok, "value": v} for t, ok, v in checks]
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
