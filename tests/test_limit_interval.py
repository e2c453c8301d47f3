"""The predicted limit's interval against the prediction from the exact Hessian spectrum.

Real problems: one-hidden-layer ReLU MLPs (64-32-10, D = 2,410) trained on sklearn's digits
with and without L1, and one with a third of its hidden units dead (their rows are exactly
zero). The Hessian of the mean cross-entropy over 600 training digits is formed exactly (2,410
Hessian-vector products) and diagonalised; the exact-spectrum prediction uses its eigenvalues.
SLQ then runs on the exact matrix with 16 to 128 Lanczos steps and several probe seeds, and
every interval must contain the exact-spectrum prediction.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass

import pytest
import torch
from sklearn.datasets import load_digits
from torch import Tensor, nn

from lightning_prunelimit.curvature import (
    DenseOperator,
    HessianOperator,
    Spectrum,
    stochastic_lanczos_quadrature,
)
from lightning_prunelimit.curvature.lanczos import LanczosResult, lanczos
from lightning_prunelimit.limit import (
    LimitPrediction,
    interval_stop,
    predict_pruning_limit,
    resolve_epsilon,
    sublevel_width,
    sublevel_width_interval,
)
from lightning_prunelimit.limit.distances import removed_weight_norms
from lightning_prunelimit.limit.prediction import _intervals
from lightning_prunelimit.limit.width_bounds import quadrature_rules

pytestmark = pytest.mark.usefixtures("one_thread")

STEPS = (16, 32, 64, 128)
SEEDS = (0, 1, 2)
NUM_PROBES = 4


@dataclass
class ExactProblem:
    hessian: Tensor
    eigenvalues: Tensor
    weights: list[Tensor]
    epsilon: float
    exact_sparsity: float


def digits() -> tuple[Tensor, Tensor]:
    data = load_digits()
    return torch.tensor(data.data, dtype=torch.float64) / 16.0, torch.tensor(data.target)


@functools.cache
def exact_problem(l1: float, dead: int) -> ExactProblem:
    torch.manual_seed(0)
    x, y = digits()
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)).double()
    if dead:  # units that no digit activates: exactly zero Hessian rows
        with torch.no_grad():
            model[0].weight[:dead] = -model[0].weight[:dead].abs()
            model[0].bias[:dead] = -5.0
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), 64):
            index = order[start : start + 64]
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x[index]), y[index]).backward()
            for name, p in model.named_parameters():
                if l1 and name.endswith("weight"):
                    p.grad += l1 * p.sign()
            optimizer.step()
    model.eval()
    batches = [(x[:600], y[:600])]
    op = HessianOperator(model, nn.functional.cross_entropy, batches)
    eye = torch.eye(op.dim, dtype=torch.float64)
    hessian = torch.cat([op.matvec(eye[i : i + 512]) for i in range(0, op.dim, 512)])
    hessian = (hessian + hessian.T) / 2
    eigenvalues = torch.linalg.eigvalsh(hessian)
    epsilon = float(resolve_epsilon("batch_loss_std", model, nn.functional.cross_entropy, batches))
    weights = [p.detach().clone() for n, p in model.named_parameters() if n.endswith("weight")]
    exact = Spectrum(eigenvalues[None], torch.full((1, op.dim), 1.0 / op.dim), dim=op.dim)
    sparsity = predict_pruning_limit(exact, weights, epsilon).sparsity
    return ExactProblem(hessian, eigenvalues, weights, epsilon, sparsity)


PROBLEMS = {"l1": (1e-4, 0), "no_l1": (0.0, 0), "dead_units": (1e-4, 12)}


@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_interval_covers_exact_spectrum_prediction_and_shrinks_with_steps(name: str) -> None:
    problem = exact_problem(*PROBLEMS[name])
    op = DenseOperator(problem.hessian)
    widths: dict[int, list[float]] = {}
    for steps in STEPS:
        for seed in SEEDS:
            spectrum = stochastic_lanczos_quadrature(op, steps, NUM_PROBES, seed)
            p = predict_pruning_limit(spectrum, problem.weights, problem.epsilon)
            low, high = p.sparsity_interval
            assert low <= problem.exact_sparsity <= high, (steps, seed, p.sparsity_interval)
            assert low <= p.sparsity <= high
            q_low, q_high = p.quadrature_sparsity_interval
            assert low <= q_low <= p.sparsity <= q_high <= high
            assert p.kept_fraction_interval == pytest.approx((1 - high, 1 - low))
            widths.setdefault(steps, []).append(high - low)
    mean = {steps: sum(w) / len(w) for steps, w in widths.items()}
    assert mean[128] < mean[64] < mean[16]
    assert mean[128] < mean[16] / 3
    # A few points at 128 steps (measured 0.03 to 0.078): about 0.025 of it is the sampling
    # error of four probes in D = 2,410, which more steps cannot shrink.
    assert max(widths[128]) < 0.085


def test_radau_estimate_is_narrower_than_the_oscillation_estimate() -> None:
    problem = exact_problem(*PROBLEMS["l1"])
    op = DenseOperator(problem.hessian)
    norms = removed_weight_norms(problem.weights)
    total = norms.numel() - 1
    for steps in (64, 128):
        widths = {}
        for truncation in ("radau", "oscillation"):
            found = []
            for seed in SEEDS:
                spectrum = stochastic_lanczos_quadrature(op, steps, NUM_PROBES, seed)
                rules = quadrature_rules(spectrum, truncation=truncation)
                low, high = _intervals(
                    rules, norms, total, problem.epsilon, 0.0, "abs", 2.0, quadrature_only=True
                )["quadrature_sparsity_interval"]
                found.append(high - low)
            widths[truncation] = sum(found) / len(found)
        # Measured: 0.046 against 0.088 at 64 steps, 0.011 against 0.025 at 128.
        assert widths["radau"] < 0.7 * widths["oscillation"], (steps, widths)
    with pytest.raises(ValueError, match="truncation must be one of"):
        quadrature_rules(spectrum, truncation="gauss")


@pytest.mark.parametrize("truncation", ["radau", "averaged"])
def test_radau_rule_at_the_cusp_lies_above_each_probes_exact_value(truncation: str) -> None:
    # The estimated bracket's premise, per probe and distance, against the exact measure
    # sum_i (q_i^T v)^2 delta(l_i) of each probe v ("averaged": the generalized averaged Gauss
    # rule is the lower end instead of the extrapolated Radau rule).
    problem = exact_problem(*PROBLEMS["no_l1"])
    eigenvalues, vectors = torch.linalg.eigh(problem.hessian)
    generator = torch.Generator().manual_seed(7)
    dim = problem.hessian.shape[0]
    probes = (torch.randint(0, 2, (4, dim), generator=generator).double() * 2 - 1) / dim**0.5
    masses = (probes @ vectors) ** 2
    distances = torch.tensor([2.0, 5.0, 10.0], dtype=torch.float64)
    two_eps = 2 * problem.epsilon
    terms = two_eps / (two_eps + distances[:, None] ** 2 * eigenvalues.abs())
    exact = terms @ masses.T  # (distance, probe)
    for p in range(len(probes)):
        result = lanczos(DenseOperator(problem.hessian), probes[p : p + 1], 128)
        for steps in (32, 64, 128):
            truncated = LanczosResult(
                alphas=result.alphas[:, :steps].clone(),
                betas=result.betas[:, :steps].clone(),
                lengths=(steps,),
                dim=dim,
            )
            rules = quadrature_rules(truncated.spectrum(), truncation=truncation)
            bounds = rules.probed_bounds(distances, problem.epsilon, "abs", 0.0)
            assert bool((bounds.quadrature_low <= exact[:, p]).all()), (steps, p)
            assert bool((exact[:, p] <= bounds.quadrature_high).all()), (steps, p)


def test_dead_units_are_deflated_and_counted_once() -> None:
    problem = exact_problem(*PROBLEMS["dead_units"])
    zero_rows = int((problem.hessian.abs().sum(dim=1) == 0).sum())
    assert zero_rows > 0.3 * problem.hessian.shape[0]
    op = DenseOperator(problem.hessian)
    for seed in SEEDS:
        spectrum = stochastic_lanczos_quadrature(op, 128, NUM_PROBES, seed)
        assert spectrum.deflated == zero_rows
        p = predict_pruning_limit(spectrum, problem.weights, problem.epsilon)
        assert p.zero_fraction == pytest.approx(zero_rows / problem.hessian.shape[0])
        assert abs(p.sparsity - problem.exact_sparsity) < 0.015
        # Adding a sampled zero fraction on top would count the flat directions twice.
        with pytest.raises(ValueError, match="twice"):
            predict_pruning_limit(spectrum, problem.weights, problem.epsilon, zero_fraction=0.2)


def test_auto_steps_reach_the_tolerance_and_the_exact_prediction() -> None:
    problem = exact_problem(*PROBLEMS["l1"])
    op = DenseOperator(problem.hessian)
    tolerance = 0.01
    for seed in SEEDS[:2]:
        stop = interval_stop(problem.weights, problem.epsilon, tolerance=tolerance)
        spectrum = stochastic_lanczos_quadrature(op, 512, NUM_PROBES, seed, stop=stop)
        p = predict_pruning_limit(spectrum, problem.weights, problem.epsilon)
        q_low, q_high = p.quadrature_sparsity_interval
        assert q_high - q_low <= tolerance
        assert 16 <= spectrum.num_iters < 512
        assert abs(p.sparsity - problem.exact_sparsity) <= tolerance
        low, high = p.sparsity_interval
        assert low <= problem.exact_sparsity <= high


def test_width_bounds_bracket_exact_width_per_distance() -> None:
    problem = exact_problem(*PROBLEMS["no_l1"])
    spectrum = stochastic_lanczos_quadrature(DenseOperator(problem.hessian), 48, NUM_PROBES, 1)
    distances = torch.tensor([0.0, 0.5, 2.0, 5.0, 10.0], dtype=torch.float64)
    low, high = sublevel_width_interval(spectrum, distances, problem.epsilon)
    two_eps = 2 * problem.epsilon
    curvature = problem.eigenvalues.abs()
    exact = torch.stack([(two_eps / (two_eps + curvature * r**2)).mean() for r in distances])
    point = sublevel_width(spectrum, distances, problem.epsilon)
    # At R = 0 every width is 1 up to rounding (the exact mean can be 1 - 2e-16): compare with
    # a tolerance of a few ulps, never exactly.
    slack = 1e-12
    assert bool((low <= exact + slack).all() and (exact <= high + slack).all())
    assert bool((low <= point + slack).all() and (point <= high + slack).all())
    assert float(low[0]) == pytest.approx(1.0, abs=slack)
    assert float(high[0]) == pytest.approx(1.0, abs=slack)
    with pytest.raises(ValueError, match="confidence"):
        sublevel_width_interval(spectrum, distances, problem.epsilon, confidence=-1.0)


def test_prediction_without_coefficients_has_no_interval_and_round_trips() -> None:
    problem = exact_problem(*PROBLEMS["l1"])
    exact = Spectrum(problem.eigenvalues[None], torch.full((1, 2410), 1 / 2410), dim=2410)
    assert predict_pruning_limit(exact, problem.weights, problem.epsilon).sparsity_interval is None
    with pytest.raises(ValueError, match="no Lanczos coefficients"):
        sublevel_width_interval(exact, [1.0], problem.epsilon)
    spectrum = stochastic_lanczos_quadrature(DenseOperator(problem.hessian), 32, 2, 0)
    p = predict_pruning_limit(spectrum, problem.weights, problem.epsilon, num_curve_points=11)
    assert len(p.curve_widths_low) == len(p.curve_widths_high) == 11
    assert all(
        lo <= w <= hi for lo, w, hi in zip(p.curve_widths_low, p.curve_widths, p.curve_widths_high)
    )
    again = LimitPrediction.from_dict(json.loads(json.dumps(p.to_dict())))
    assert again == p
    low, high = p.sparsity_interval
    assert again.sparsity_interval_length == pytest.approx(high - low)


def test_interval_stop_checks_its_arguments() -> None:
    weights = torch.ones(10)
    with pytest.raises(ValueError, match="tolerance must be a number in"):
        interval_stop(weights, 0.1, tolerance=0.0)
    with pytest.raises(ValueError, match="check_every"):
        interval_stop(weights, 0.1, check_every=0)
