"""How often the predicted interval contains the exact-spectrum prediction, and how wide it is.

ReLU MLPs on sklearn's digits, float64: 64-32-10 trained 30 epochs with and without L1 1e-4,
and 64-64-10 with 24 hidden units dead (their Hessian rows are exactly zero). The Hessian of
the mean cross-entropy over all 1,797 digits is formed exactly (one product per coordinate)
and diagonalised; "exact" is the prediction from its eigenvalues. SLQ then runs on that matrix
with 4 Rademacher probes for each seed, at fixed step counts and with
``interval_stop(tolerance=0.01)`` (512-step cap). Each row gives how many intervals contain the
exact prediction, the mean (max) interval width in sparsity and the largest error of the point
prediction. The interval is ``predict_pruning_limit``'s, with its default truncation estimate.

Usage::

    python benchmarks/interval_coverage.py [--seeds 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import time

import torch
from quadrature_steps import Case, load_data, train
from torch import nn

from lightning_prunelimit.curvature import (
    DenseOperator,
    HessianOperator,
    Spectrum,
    stochastic_lanczos_quadrature,
)
from lightning_prunelimit.limit import interval_stop, predict_pruning_limit, resolve_epsilon

#: name: (hidden units, L1 strength, dead hidden units)
PROBLEMS = {"mlp32l1": (32, 1e-4, 0), "mlp32": (32, 0.0, 0), "dead64": (64, 1e-4, 24)}
STEPS = (16, 32, 64, 128, "auto")


def exact_problem(hidden: int, l1: float, dead: int) -> dict:
    """Train the MLP (as ``quadrature_steps.py`` trains its exact cases) and form its exact
    Hessian over all digits."""
    x, y = load_data("digits")
    model = train(Case(f"64-{hidden}-10", "digits", (hidden,), l1, 30, True, dead), x, y)
    batches = [(x, y)]
    op = HessianOperator(model, nn.functional.cross_entropy, batches)
    eye = torch.eye(op.dim, dtype=torch.float64)
    hessian = torch.cat([op.matvec(eye[i : i + 256]) for i in range(0, op.dim, 256)])
    hessian = (hessian + hessian.T) / 2
    eigenvalues = torch.linalg.eigvalsh(hessian)
    epsilon = float(resolve_epsilon("batch_loss_std", model, nn.functional.cross_entropy, batches))
    weights = [p.detach().clone() for n, p in model.named_parameters() if n.endswith("weight")]
    exact = Spectrum(eigenvalues[None], torch.full((1, op.dim), 1.0 / op.dim), dim=op.dim)
    zero_rows = int((hessian.abs().sum(dim=1) == 0).sum())
    return {
        "hessian": hessian,
        "weights": weights,
        "epsilon": epsilon,
        "exact": predict_pruning_limit(exact, weights, epsilon).sparsity,
        "dim": op.dim,
        "zero_rows": zero_rows,
    }


def coverage_rows(name: str, problem: dict, seeds: int) -> list[str]:
    """One markdown row per step setting."""
    op = DenseOperator(problem["hessian"])
    flat = torch.cat([w.flatten() for w in problem["weights"]])
    rows = []
    for steps in STEPS:
        covered, widths, errors, used = 0, [], [], []
        for seed in range(seeds):
            if steps == "auto":
                stop = interval_stop(flat, problem["epsilon"], tolerance=0.01)
                spectrum = stochastic_lanczos_quadrature(op, 512, 4, seed, stop=stop)
            else:
                spectrum = stochastic_lanczos_quadrature(op, steps, 4, seed)
            used.append(spectrum.num_iters)
            p = predict_pruning_limit(spectrum, problem["weights"], problem["epsilon"])
            low, high = p.sparsity_interval
            covered += low <= problem["exact"] <= high
            widths.append(high - low)
            errors.append(abs(p.sparsity - problem["exact"]))
        label = f"{name} (D={problem['dim']}, exact {problem['exact']:.3f})"
        rows.append(
            f"| {label} | {steps} ({min(used)}-{max(used)}) | {covered}/{seeds} | "
            f"{sum(widths) / len(widths):.3f} (max {max(widths):.3f}) | {max(errors):.3f} |"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lines = [
        "| problem | Lanczos steps | covered | interval width | max error |",
        "|---|---|---|---|---|",
    ]
    for name, settings in PROBLEMS.items():
        start = time.perf_counter()
        problem = exact_problem(*settings)
        lines += coverage_rows(name, problem, args.seeds)
        print(
            f"{name}: {problem['zero_rows']} zero rows, {time.perf_counter() - start:.0f} s",
            flush=True,
        )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
