"""Why the interval stays wide without L1: where the prediction's threshold sits in the spectrum.

Each eigenvalue enters the sublevel-set width through ``2 eps / (2 eps + |l| R^2)``, a step from
1 to 0 around ``|l| = c = 2 eps / R^2``. The Lanczos quadrature resolves the spectrum near 0 only
to about (spectral range) / (steps), so the interval is narrow when little of the spectrum's mass
lies within a few decades of ``c``, and wide when much of it does.

For each case (the MLPs of ``quadrature_steps.py``, trained the same way; Hessian over the first
512 training samples, float64, one Rademacher probe) the script reports:

* the training loss, epsilon and ``c`` at the prediction of the longest run;
* the fraction of the spectral mass (the Ritz weights of the longest run, and the deflated
  zero rows) with ``|l| < c / 10``, with ``c / 10 <= |l| <= 1000 c`` (the band where the
  integrand moves from 0.9 to 0.001), and below ``-c / 10``;
* the prediction and its quadrature interval after 256, 512 and ``--steps`` Lanczos steps;
* the prediction from the generalised Gauss-Newton matrix (the Hessian without the term of the
  loss's second derivatives through the network, which is positive semi-definite) after 256
  steps: how much of the band is that term's.

Usage::

    python benchmarks/near_zero_curvature.py [--cases digits_l1,digits] [--steps 768]
        [--threads 2]
"""

from __future__ import annotations

import argparse
import time

import torch
from quadrature_steps import CASES, load_data, train
from torch import Tensor, nn
from torch.func import functional_call, jvp, vjp

from lightning_prunelimit.curvature import HessianOperator, Spectrum, stochastic_lanczos_quadrature
from lightning_prunelimit.limit import predict_pruning_limit, resolve_epsilon

SAMPLES = 512


class GaussNewtonOperator:
    """``J^T S J / n`` of a classifier under the mean cross-entropy (S: softmax Hessians)."""

    def __init__(self, model: nn.Module, inputs: Tensor) -> None:
        self.model, self.inputs = model, inputs
        self.params = {name: p.detach() for name, p in model.named_parameters()}
        self.sizes = [p.numel() for p in self.params.values()]
        self.dim = sum(self.sizes)
        self.dtype, self.device = inputs.dtype, inputs.device

    def _logits(self, params: dict[str, Tensor]) -> Tensor:
        return functional_call(self.model, params, (self.inputs,))

    def matvec(self, v: Tensor) -> Tensor:
        rows = []
        for row in v.reshape(-1, self.dim):
            parts = row.split(self.sizes)
            tangent = {k: t.reshape(p.shape) for (k, p), t in zip(self.params.items(), parts)}
            logits, jv = jvp(self._logits, (self.params,), (tangent,))
            prob = logits.softmax(-1)
            sjv = (prob * jv - prob * (prob * jv).sum(-1, keepdim=True)) / len(self.inputs)
            (pulled,) = vjp(self._logits, self.params)[1](sjv)
            rows.append(torch.cat([pulled[k].reshape(-1) for k in self.params]))
        return torch.stack(rows).reshape(v.shape)


def mass_bands(spectrum: Spectrum, c: float) -> tuple[float, float, float]:
    """Spectral mass below c/10, within [c/10, 1000 c], and below -c/10.

    The Ritz weights describe the probed part; the deflated zero rows (exactly flat directions)
    count below c/10.
    """
    nodes = spectrum.nodes.flatten()
    weights = spectrum.weights.flatten() / spectrum.num_probes * (1 - spectrum.deflated_fraction)
    size = nodes.abs()
    return (
        spectrum.deflated_fraction + float(weights[size < c / 10].sum()),
        float(weights[(size >= c / 10) & (size <= 1000 * c)].sum()),
        float(weights[nodes < -c / 10].sum()),
    )


def run(key: str, steps: int) -> str:
    case = CASES[key]
    x, y = load_data(case.data)
    model = train(case, x, y)
    with torch.no_grad():
        loss = float(nn.functional.cross_entropy(model(x), y))
    epsilon = resolve_epsilon("batch_loss_std", model, nn.functional.cross_entropy, [(x, y)])
    weights = [p.detach() for name, p in model.named_parameters() if "weight" in name]
    sample = [(x[:SAMPLES], y[:SAMPLES])]
    start = time.perf_counter()
    hessian = stochastic_lanczos_quadrature(
        HessianOperator(model, nn.functional.cross_entropy, sample), steps, 1, seed=0
    )
    seconds = time.perf_counter() - start
    predictions = []
    for m in (256, 512, steps):
        found = predict_pruning_limit(hessian.truncated(min(m, steps)), weights, epsilon)
        low, high = found.quadrature_sparsity_interval
        predictions.append(f"{m}: {found.sparsity:.3f} [{low:.3f}, {high:.3f}]")
    c = 2 * epsilon / found.distance**2
    near, band, negative = mass_bands(hessian, c)
    ggn = stochastic_lanczos_quadrature(GaussNewtonOperator(model, x[:SAMPLES]), 256, 1, seed=0)
    ggn_prediction = predict_pruning_limit(ggn, weights, epsilon).sparsity
    return (
        f"| {case.name} | {loss:.2e} | {epsilon:.2e} | {c:.1e} | {float(hessian.max_node):.3f} | "
        f"{near:.3f} / {band:.3f} / {negative:.3f} | {'; '.join(predictions)} | "
        f"{ggn_prediction:.3f} | {seconds:.0f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", default="digits_l1,digits")
    parser.add_argument("--steps", type=int, default=768)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        "| case | training loss | epsilon | c | largest Ritz value | mass: |l| < c/10 / "
        "c/10..1000c / l < -c/10 | steps: sparsity [quadrature interval] | Gauss-Newton "
        f"prediction (256 steps) | Lanczos s ({args.steps} steps) |"
    )
    print("|---|---:|---:|---:|---:|---|---|---:|---:|")
    for key in args.cases.split(","):
        print(run(key, args.steps), flush=True)


if __name__ == "__main__":
    main()
