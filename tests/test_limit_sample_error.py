"""The sample's own error, against exact Hessians of the whole training data of small MLPs.

A sub-sample's Hessian predicts, on average, a larger sparsity than the whole data's (the
bias is one-sided), so an interval without the sample part misses the whole-data prediction
systematically at small samples; with it, the interval covers it.
"""

from __future__ import annotations

import dataclasses
import warnings

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_prunelimit.curvature import (
    DenseOperator,
    HessianOperator,
    Spectrum,
    sample_batches,
)
from lightning_prunelimit.limit import (
    LimitPrediction,
    LimitTarget,
    SampleError,
    estimate_sample_error,
    estimate_spectrum,
    predict_pruning_limit,
    resolve_epsilon,
    with_sample_error,
)
from lightning_prunelimit.limit.targeted_spectrum import interval_parts

NUM_TRAIN = 480


def _dense(model: nn.Module, batches: list) -> torch.Tensor:
    op = HessianOperator(model, nn.functional.cross_entropy, batches)
    eye = torch.eye(op.dim, dtype=torch.float64)
    h = torch.cat([op @ eye[i : i + 256] for i in range(0, op.dim, 256)])
    return 0.5 * (h + h.T)


def _exact_sparsity(h: torch.Tensor, target: LimitTarget) -> float:
    values = torch.linalg.eigvalsh(h)
    dim = values.numel()
    spectrum = Spectrum(values[None], torch.full((1, dim), 1.0 / dim), dim)
    return predict_pruning_limit(spectrum, target.weights, target.epsilon).sparsity


@pytest.fixture(scope="module")
def problem() -> dict:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x[:NUM_TRAIN] / 16.0, dtype=torch.float64)
    y = torch.tensor(y[:NUM_TRAIN])
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 12), nn.ReLU(), nn.Linear(12, 10)).double()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(60):
        for i in range(0, NUM_TRAIN, 48):
            loss = nn.functional.cross_entropy(model(x[i : i + 48]), y[i : i + 48])
            loss = loss + 1e-4 * (model[0].weight.abs().sum() + model[2].weight.abs().sum())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    eps = resolve_epsilon("batch_loss_std", model, nn.functional.cross_entropy, [(x, y)])
    target = LimitTarget([model[0].weight, model[2].weight], eps)
    loader = DataLoader(TensorDataset(x, y), batch_size=64)
    exact = _exact_sparsity(_dense(model, [(x, y)]), target)
    return {"model": model, "target": target, "loader": loader, "exact": exact}


def _estimate(problem: dict, num_samples: int, seed: int):
    model, target = problem["model"], problem["target"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return estimate_spectrum(
            lambda n: sample_batches(problem["loader"], num_samples=n, seed=seed),
            # the sample's Hessian as a dense matrix: exact products, fast Lanczos steps
            lambda fixed: DenseOperator(_dense(model, fixed.batches)),
            dataset_size=NUM_TRAIN,
            target=target,
            tolerance=0.03,
            num_samples=num_samples,
            num_probes=2,
            max_iters=160,
            seed=seed,
        )


SIZES, SEEDS = (48, 96), range(5)


@pytest.fixture(scope="module")
def runs(problem: dict) -> list[dict]:
    """Per sub-sample: the estimate, and the exact prediction of the sub-sample's own Hessian."""
    out = []
    for num_samples in SIZES:
        for seed in SEEDS:
            estimate = _estimate(problem, num_samples, seed)
            assert estimate.fixed is not None
            own = _exact_sparsity(
                _dense(problem["model"], estimate.fixed.batches), problem["target"]
            )
            out.append({"n": num_samples, "estimate": estimate, "own": own})
    return out


def test_sub_sample_intervals_cover_the_whole_data(problem, runs):
    exact, target = problem["exact"], problem["target"]
    covered = overstated = 0
    for run in runs:
        estimate = run["estimate"]
        assert estimate.sample_error is not None and estimate.num_samples == run["n"]
        full = with_sample_error(target.predict(estimate.spectrum), estimate.sample_error)
        low, high = full.sparsity_interval
        covered += low <= exact <= high
        overstated += run["own"] > exact
    # the bias is one-sided: sub-samples' own Hessians overstate the whole data's sparsity
    assert overstated >= len(runs) - 1
    assert covered >= 0.9 * len(runs)


def test_the_estimated_bias_follows_the_true_bias(problem, runs):
    exact = problem["exact"]
    for num_samples in SIZES:
        chosen = [run for run in runs if run["n"] == num_samples]
        true_bias = sum(run["own"] - exact for run in chosen) / len(chosen)
        estimated = sum(run["estimate"].sample_error.bias for run in chosen) / len(chosen)
        reach = sum(run["estimate"].sample_error.low for run in chosen) / len(chosen)
        assert true_bias > 0
        assert 0.25 * true_bias <= estimated <= 4 * true_bias, (num_samples, true_bias, estimated)
        assert reach >= 0.7 * true_bias  # bias + 2 spread: the low end reaches the bias


def _auto(problem: dict, estimate=estimate_spectrum, **settings):
    """``estimate_spectrum(num_samples="auto")`` on the problem; the sizes it drew."""
    drawn: list[int | None] = []

    def draw(n):
        drawn.append(n)
        return sample_batches(problem["loader"], num_samples=n, seed=0)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = estimate(
            draw,
            lambda fixed: DenseOperator(_dense(problem["model"], fixed.batches)),
            dataset_size=NUM_TRAIN,
            target=problem["target"],
            num_samples="auto",
            **{"num_probes": 4, **settings},
        )
    return result, drawn


def test_auto_samples_take_small_data_whole(problem):
    estimate, drawn = _auto(problem, tolerance=0.02, max_iters=200)
    # 480 samples: at most AUTO_ALL_SAMPLES, so "auto" takes the whole data at once
    assert drawn == [None] and estimate.sample_error is None
    assert estimate.num_samples == NUM_TRAIN


def test_auto_samples_double_from_a_start_until_the_part_fits(problem, monkeypatch):
    import lightning_prunelimit.limit.targeted_spectrum as targeted

    monkeypatch.setattr(targeted, "AUTO_ALL_SAMPLES", 32)
    monkeypatch.setattr(targeted, "AUTO_START_SAMPLES", 48)
    # fixed steps: only the sample part decides whether the sample grows
    estimate, drawn = _auto(problem, targeted.estimate_spectrum, tolerance=0.01, num_iters=64)
    assert drawn[0] == 48 and len(drawn) >= 2
    assert all(b is None or (a is not None and b == 2 * a) for a, b in zip(drawn, drawn[1:]))
    last = estimate.sample_error
    assert last is None or last.interval_width <= 0.25 * 0.01 or drawn[-1] is None


def test_once_the_steps_run_out_no_probe_is_added_and_no_sample_grows(problem, monkeypatch):
    import lightning_prunelimit.limit.targeted_spectrum as targeted

    monkeypatch.setattr(targeted, "AUTO_ALL_SAMPLES", 32)
    monkeypatch.setattr(targeted, "AUTO_START_SAMPLES", 48)
    estimate, drawn = _auto(
        problem, targeted.estimate_spectrum, tolerance=0.01, max_iters=8, num_probes="auto"
    )
    assert drawn == [48] and estimate.spectrum.num_probes == 1
    assert estimate.exhausted == ("max_iters=8",)
    assert "probes" not in estimate.timings and estimate.sample_error is not None


def test_estimate_sample_error_reads_bias_and_spread_off_the_halves():
    def rule(value: float) -> Spectrum:
        return Spectrum(
            torch.tensor([[value]]),
            torch.tensor([[1.0]]),
            dim=4,
            alphas=torch.tensor([[value]]),
            betas=torch.tensor([[0.0]]),
            lengths=(1,),
        )

    error = estimate_sample_error(
        lambda s: float(s.nodes[0, 0]),
        rule(0.70),
        (rule(0.76), rule(0.72)),
        num_samples=100,
        dataset_size=400,
    )
    assert error.bias == pytest.approx(0.04 * 0.75)
    assert error.spread == pytest.approx(0.02 * 0.75**0.5)
    assert error.low == pytest.approx(error.bias + 2 * error.spread)
    assert SampleError.from_dict(error.to_dict()) == error
    # halves below the whole: no bias is claimed, the spread still counts
    flipped = estimate_sample_error(
        lambda s: float(s.nodes[0, 0]),
        rule(0.70),
        (rule(0.66), rule(0.68)),
        num_samples=100,
        dataset_size=None,
    )
    assert flipped.bias == 0.0 and flipped.spread == pytest.approx(0.01)
    with pytest.raises(ValueError, match="dataset_size"):
        estimate_sample_error(
            lambda s: 0.5, rule(0.5), (rule(0.5), rule(0.5)), num_samples=10, dataset_size=5
        )


def test_interval_parts_split_the_width_and_share_the_tolerance() -> None:
    before = LimitPrediction(
        0.2, 0.8, 1.0, 0.8, 0.1, 0.0, 10, 2, "abs", (0.0, 1.0), (1.0, 0.0), (0.5, 1.0),
        sparsity_interval=(0.70, 0.86), quadrature_sparsity_interval=(0.72, 0.82),
    )  # fmt: skip
    error = SampleError(512, 4000, 0.8, (0.83, 0.81), 96, 0.017, 0.009)
    parts = interval_parts(before, error, 0.04)
    assert [p.name for p in parts] == ["quadrature", "probes", "sample"]
    assert [p.share for p in parts] == pytest.approx([0.02, 0.01, 0.01])
    assert [p.width for p in parts] == pytest.approx([0.10, 0.06, error.interval_width])
    assert all(p.over_share for p in parts)
    # The whole data: no sample part, and 70% / 30% of the tolerance.
    parts = interval_parts(before, None, 0.5)
    assert [p.name for p in parts] == ["quadrature", "probes"]
    assert [p.share for p in parts] == pytest.approx([0.35, 0.15])
    assert not any(p.over_share for p in parts)
    # A prediction without an interval has no width to split.
    bare = dataclasses.replace(before, sparsity_interval=None, quadrature_sparsity_interval=None)
    assert [p.width for p in interval_parts(bare, None, 0.03)] == [0.0, 0.0]
