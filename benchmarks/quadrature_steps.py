"""How many Lanczos steps the prediction's quadrature interval needs, per estimator.

For each case an MLP is trained in plain PyTorch (fixed seed), its Hessian taken over a fixed
sample of training data (float64), and one long Lanczos run of one Rademacher probe is made.
The first m coefficients of that run are exactly those of an m-step run with the same probe, so
every step count m is evaluated from prefixes of the one run, as the stop rule sees them:

* ``steps to 0.01``: the first m (checked every 8 steps from 16, as ``interval_stop`` does)
  at which ``quadrature_sparsity_interval`` is at most 0.01 wide;
* the width of that interval at 64, 128 and 256 steps;
* ``covered``: whether the interval contains the reference prediction, at every checked m.
  The reference is the exact-spectrum prediction (dense Hessian, small cases) or the prediction
  of the same probe after ``--reference-steps`` steps (large cases; the quadrature part only).

Usage::

    python benchmarks/quadrature_steps.py [--cases digits_l1,digits,mnist1d_l1,mnist1d,small]
        [--samples 512] [--reference-steps 1024] [--cache DIR] [--threads 2]
        [--estimates oscillation,radau,anti_gauss,averaged]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from lightning_prunelimit.curvature import (
    HessianOperator,
    Spectrum,
    stochastic_lanczos_quadrature,
)
from lightning_prunelimit.curvature.lanczos import LanczosResult
from lightning_prunelimit.limit import predict_pruning_limit, removed_weight_norms, resolve_epsilon
from lightning_prunelimit.limit.prediction import _intervals
from lightning_prunelimit.limit.width_bounds import quadrature_rules

#: Steps at which the stop rule checks (``interval_stop``'s defaults: from 16, every 8).
CHECKS = tuple(range(16, 257, 8))
#: The truncation estimates compared by default (``--estimates`` picks others).
ESTIMATES = ("oscillation", "radau", "averaged")


@dataclass(frozen=True)
class Case:
    """One trained network and the settings of its Hessian."""

    name: str
    data: str
    hidden: tuple[int, ...]
    l1: float
    epochs: int
    exact: bool = False
    dead: int = 0


CASES = {
    "digits_l1": Case("digits MLP 64-256-256-10, L1 1e-4", "digits", (256, 256), 1e-4, 150),
    "digits": Case("digits MLP 64-256-256-10, no L1", "digits", (256, 256), 0.0, 150),
    "mnist1d_l1": Case("MNIST-1D MLP 40-256-256-10, L1 1e-4", "mnist1d", (256, 256), 1e-4, 150),
    "mnist1d": Case("MNIST-1D MLP 40-256-256-10, no L1", "mnist1d", (256, 256), 0.0, 150),
    "small_l1": Case("digits MLP 64-32-10, L1 1e-4 (exact)", "digits", (32,), 1e-4, 20, True),
    "small": Case("digits MLP 64-32-10, no L1 (exact)", "digits", (32,), 0.0, 20, True),
    "small_dead": Case(
        "digits MLP 64-32-10, L1, 12 dead units (exact)", "digits", (32,), 1e-4, 20, True, 12
    ),
}


def load_data(name: str) -> tuple[Tensor, Tensor]:
    """Training inputs (float64) and labels."""
    if name == "digits":
        from sklearn.datasets import load_digits

        data = load_digits()
        return torch.tensor(data.data, dtype=torch.float64) / 16.0, torch.tensor(data.target)
    from mnist1d.data import get_dataset_args, make_dataset

    data = make_dataset(get_dataset_args())
    return torch.tensor(data["x"], dtype=torch.float64), torch.tensor(data["y"])


def train(case: Case, x: Tensor, y: Tensor) -> nn.Module:
    """Adam (lr 3e-3 small / 1e-3 large), batches of 64/128, L1 as a sign subgradient."""
    torch.manual_seed(0)
    sizes = (x.shape[1], *case.hidden, 10)
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers += [nn.Linear(sizes[i], sizes[i + 1]), nn.ReLU()]
    model = nn.Sequential(*layers[:-1])
    if case.exact:
        model = model.double()
    if case.dead:
        with torch.no_grad():
            model[0].weight[: case.dead] = -model[0].weight[: case.dead].abs()
            model[0].bias[: case.dead] = -5.0
    dtype = next(model.parameters()).dtype
    inputs = x.to(dtype)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3 if case.exact else 1e-3)
    generator = torch.Generator().manual_seed(0)
    batch = 64 if case.exact else 128
    for _ in range(case.epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), batch):
            index = order[start : start + batch]
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(inputs[index]), y[index]).backward()
            if case.l1:
                for name, p in model.named_parameters():
                    if name.endswith("weight"):
                        p.grad += case.l1 * p.sign()
            optimizer.step()
    return model.double().eval()


def collect(case: Case, samples: int, reference_steps: int, cache: Path) -> dict:
    """Train, form the operator, run Lanczos once (cached on disk)."""
    path = cache / f"{case.data}_{'x'.join(map(str, case.hidden))}_{case.l1}_{case.dead}.pt"
    if path.exists():
        return torch.load(path, weights_only=False)
    x, y = load_data(case.data)
    start = time.perf_counter()
    model = train(case, x, y)
    trained = time.perf_counter() - start
    n = 600 if case.exact else samples
    batches = [(x[:n], y[:n])]
    epsilon = resolve_epsilon("batch_loss_std", model, nn.functional.cross_entropy, [(x, y)])
    op = HessianOperator(model, nn.functional.cross_entropy, batches)
    weights = [p.detach().clone() for name, p in model.named_parameters() if "weight" in name]
    out = {"epsilon": epsilon, "weights": weights, "dim": op.dim, "train_s": trained}
    if case.exact:
        eye = torch.eye(op.dim, dtype=torch.float64)
        hessian = torch.cat([op.matvec(eye[i : i + 512]) for i in range(0, op.dim, 512)])
        hessian = (hessian + hessian.T) / 2
        eigenvalues = torch.linalg.eigvalsh(hessian)
        exact = Spectrum(eigenvalues[None], torch.full((1, op.dim), 1.0 / op.dim), dim=op.dim)
        out["hessian"] = hessian
        out["reference"] = predict_pruning_limit(exact, weights, epsilon).sparsity
    else:
        start = time.perf_counter()
        spectrum = stochastic_lanczos_quadrature(op, reference_steps, 1, seed=0)
        out["lanczos_s"] = time.perf_counter() - start
        out["spectrum"] = spectrum.to_dict()
    cache.mkdir(parents=True, exist_ok=True)
    torch.save(out, path)
    return out


def prefix(spectrum: Spectrum, steps: int) -> Spectrum:
    """The spectrum an m-step run with the same probes would have given (its first m steps)."""
    result = LanczosResult(
        alphas=spectrum.alphas[:, :steps].clone(),
        betas=spectrum.betas[:, :steps].clone(),
        lengths=tuple(min(steps, n) for n in spectrum.lengths),
        dim=spectrum.probed_dim,
    )
    return result.spectrum(dim=spectrum.dim, deflated=spectrum.deflated)


def evaluate(
    case: Case, data: dict, tolerance: float, probes: int, estimates: tuple[str, ...] = ESTIMATES
) -> dict:
    """Widths and coverage of the quadrature interval at each checked step, per estimate."""
    weights, epsilon = data["weights"], data["epsilon"]
    if case.exact:
        from lightning_prunelimit.curvature import DenseOperator

        spectrum = stochastic_lanczos_quadrature(DenseOperator(data["hessian"]), 256, probes, 0)
        reference = data["reference"]
    else:
        spectrum = Spectrum.from_dict(data["spectrum"])
        reference = predict_pruning_limit(spectrum, weights, epsilon).sparsity
    norms = removed_weight_norms(weights)
    total = norms.numel() - 1
    out: dict = {"reference": reference}
    for truncation in estimates:
        rows = []
        for steps in CHECKS:
            part = prefix(spectrum, steps)
            rules = quadrature_rules(part, truncation=truncation)
            found = _intervals(rules, norms, total, epsilon, part.deflated_fraction, "abs", 2.0)
            rows.append((steps, found["quadrature_sparsity_interval"], found["sparsity_interval"]))
        reached = next((m for m, (lo, hi), _ in rows if hi - lo <= tolerance), None)
        # The exact-spectrum reference is what the whole interval covers; the long run of the
        # same probe is what the quadrature part alone should cover.
        covered = [
            (lo <= reference <= hi) if case.exact else (q_lo <= reference <= q_hi)
            for _, (q_lo, q_hi), (lo, hi) in rows
        ]
        widths = {m: hi - lo for m, (lo, hi), _ in rows}
        out[truncation] = {"reached": reached, "widths": widths, "covered": covered}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument("--reference-steps", type=int, default=1024)
    parser.add_argument("--cache", type=Path, default=Path("benchmarks/results/quadrature_cache"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tolerance", type=float, default=0.01)
    parser.add_argument("--probes", type=int, default=4, help="probes of the exact (small) cases")
    parser.add_argument(
        "--estimates",
        default=",".join(ESTIMATES),
        help="truncation estimates to compare, comma-separated (see TRUNCATION_ESTIMATES)",
    )
    args = parser.parse_args()
    estimates = tuple(args.estimates.split(","))
    torch.set_num_threads(args.threads)
    names = " / ".join(estimates)
    print(
        f"| case | D | reference | steps to <= {args.tolerance} ({names}) | width at 64 | "
        f"width at 128 | width at 256 | covered ({names}) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")

    def steps(result: dict) -> str:
        return "> 256" if result["reached"] is None else str(result["reached"])

    def width(result: dict, m: int) -> str:
        return f"{result['widths'][m]:.4f}"

    def covered(result: dict) -> str:
        return f"{sum(result['covered'])}/{len(result['covered'])}"

    def cells(found: dict, show) -> str:
        return " / ".join(show(found[e]) for e in estimates)

    for key in args.cases.split(","):
        case = CASES[key]
        data = collect(case, args.samples, args.reference_steps, args.cache)
        found = evaluate(case, data, args.tolerance, args.probes, estimates)
        print(
            f"| {case.name} | {data['dim']:,} | {found['reference']:.4f} | {cells(found, steps)} | "
            + " | ".join(cells(found, lambda r, m=m: width(r, m)) for m in (64, 128, 256))
            + f" | {cells(found, covered)} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
