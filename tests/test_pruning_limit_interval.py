"""The measured limit's interval, the paired-test criterion and the re-fit search, no Trainer."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from _lightning_helpers import digits
from torch import nn

from lightning_prunelimit.pruning import (
    SampleEvaluation,
    actual_pruning_limit,
    bootstrap_limit_interval,
    evaluate_model,
    evaluate_samples,
    global_magnitude_masks,
    interval_agreement,
    pass_table,
    refit_kept_weights,
    restore_on_exit,
)

loss_fn = nn.functional.cross_entropy


@pytest.fixture(scope="module")
def trained():
    """A digits MLP 64-32-10 trained with L1 on 797 images; the other 1,000 are held out."""
    torch.set_num_threads(1)
    x, y = digits()
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    train, held = order[:797], order[797:]
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 10)).double()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    xt, yt = x[train], y[train]
    for epoch in range(60):
        perm = torch.randperm(len(yt), generator=torch.Generator().manual_seed(epoch))
        for i in range(0, len(yt), 32):
            batch = perm[i : i + 32]
            optimizer.zero_grad()
            loss_fn(model(xt[batch]), yt[batch]).backward()
            for layer in (model[0], model[2]):
                layer.weight.grad.add_(torch.sign(layer.weight.detach()), alpha=1e-3)
            optimizer.step()
    return model, x, y, train, held


def _search(model, x, y, index, **kwargs):
    batches = [(x[index[i : i + 100]], y[index[i : i + 100]]) for i in range(0, len(index), 100)]
    return actual_pruning_limit(
        model, lambda s, m: evaluate_samples(model, loss_fn, batches), **kwargs
    )


def _halves(held, size, rep):
    perm = held[torch.randperm(len(held), generator=torch.Generator().manual_seed(100 + rep))]
    return perm[:size], perm[size : 2 * size]


@pytest.mark.parametrize("criterion", ["drop", "paired_test"])
def test_interval_covers_the_limit_of_a_fresh_disjoint_sample(trained, criterion):
    model, x, y, _, held = trained
    covered, widths = 0, []
    for rep in range(10):
        first, second = _halves(held, 500, rep)
        measured = _search(model, x, y, first, criterion=criterion)
        fresh = _search(model, x, y, second, criterion=criterion)
        low, high = measured.actual_limit_interval
        assert low <= measured.actual_limit <= high
        covered += low <= fresh.actual_limit <= high
        widths.append(high - low)
    assert covered >= 9, (covered, widths)
    assert max(widths) < 0.3  # an interval, not the whole range


def test_interval_narrows_as_the_evaluation_set_grows(trained):
    model, x, y, _, held = trained
    mean_width = {}
    for size in (100, 500):
        widths = []
        for rep in range(10):
            low, high = _search(model, x, y, _halves(held, size, rep)[0]).actual_limit_interval
            widths.append(high - low)
        mean_width[size] = sum(widths) / len(widths)
    assert mean_width[500] < 0.85 * mean_width[100], mean_width


def test_per_sample_evaluation_matches_the_plain_one_and_the_search_is_unchanged(trained):
    model, x, y, _, held = trained
    batches = [(x[held[i : i + 100]], y[held[i : i + 100]]) for i in range(0, 1000, 100)]
    samples = evaluate_samples(model, loss_fn, batches)
    assert (samples.accuracy, samples.loss) == evaluate_model(model, loss_fn, batches)
    assert samples.correct.shape == samples.losses.shape == (1000,)
    assert float(samples.correct.mean()) == pytest.approx(samples.accuracy, abs=1e-12)
    assert float(samples.losses.mean()) == pytest.approx(samples.loss, abs=1e-10)
    plain = actual_pruning_limit(
        model, lambda s, m: evaluate_model(model, loss_fn, batches), max_drop=0.01
    )
    rich = actual_pruning_limit(
        model, lambda s, m: evaluate_samples(model, loss_fn, batches), max_drop=0.01
    )
    assert plain.actual_limit == rich.actual_limit == rich.drop_limit
    assert plain.actual_limit_interval is None and plain.paired_test_limit is None
    assert rich.actual_limit_interval is not None and rich.paired_test_limit is not None
    # the paired test only fails a point that is significantly worse: its limit is not lower
    assert rich.paired_test_limit >= rich.drop_limit


def test_paired_test_matches_a_hand_computed_z_test():
    gen = torch.Generator().manual_seed(1)
    drops = torch.randint(-1, 2, (300, 3), generator=gen).double()
    drops[:, 0] = 0.0
    drops[:40, 2] = 1.0  # a clear drop at the last sparsity
    for max_drop in (0.0, 0.05):
        got = pass_table(drops, max_drop=max_drop, criterion="paired_test", significance=0.05)
        mean = drops.mean(0)
        stderr = drops.std(0, unbiased=False) / math.sqrt(300)
        want = mean - max_drop <= 1.6448536269514722 * stderr + 1e-12
        assert got[0].tolist() == want.tolist()
    mean_drop = pass_table(drops, max_drop=0.0)[0]
    assert mean_drop.tolist() == (drops.mean(0) <= 1e-12).tolist()


def test_paired_test_needs_per_sample_evaluations():
    model = nn.Linear(4, 2)
    with pytest.raises(ValueError, match="must return a SampleEvaluation"):
        actual_pruning_limit(model, lambda s, m: (1.0, 0.1), criterion="paired_test")
    with pytest.raises(ValueError, match="criterion must be one of"):
        actual_pruning_limit(model, lambda s, m: (1.0, 0.1), criterion="t-test")


def test_interval_settings_and_seeds():
    sparsities = [0.0, 0.5, 0.6, 0.7]
    wrong = torch.rand(400, 4, generator=torch.Generator().manual_seed(0))
    wrong = (wrong < torch.tensor([0.1, 0.1, 0.12, 0.3])).double()
    drops = wrong - wrong[:, :1]
    first = bootstrap_limit_interval(sparsities, drops, 0.5, max_drop=0.02, seed=3)
    assert first == bootstrap_limit_interval(sparsities, drops, 0.5, max_drop=0.02, seed=3)
    narrow = bootstrap_limit_interval(sparsities, drops, 0.5, max_drop=0.02, confidence=0.5)
    assert narrow[1] - narrow[0] <= first[1] - first[0] + 1e-12
    assert 0.0 <= first[0] <= 0.5 <= first[1] <= 0.7
    with pytest.raises(ValueError, match="confidence must be strictly between 0 and 1"):
        bootstrap_limit_interval(sparsities, drops, 0.5, max_drop=0.0, confidence=1.0)
    with pytest.raises(ValueError, match="num_bootstrap must be an int >= 1"):
        bootstrap_limit_interval(sparsities, drops, 0.5, max_drop=0.0, num_bootstrap=0)


def test_tolerance_still_works_with_a_future_warning():
    model = nn.Linear(4, 1, bias=False)

    def evaluate(sparsity, masks):
        return math.nan, abs(float(model.weight.detach().sum()))

    with pytest.warns(FutureWarning, match="renamed max_drop"):
        old = actual_pruning_limit(model, evaluate, metric="loss", tolerance=0.05)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        new = actual_pruning_limit(model, evaluate, metric="loss", max_drop=0.05)
    assert old == new
    with pytest.warns(FutureWarning, match="renamed max_drop"):
        assert new.tolerance == new.max_drop == 0.05
    with pytest.raises(ValueError, match="pass max_drop only"):
        actual_pruning_limit(model, evaluate, metric="loss", tolerance=0.05, max_drop=0.05)


def test_refit_search_finds_the_exhaustive_limit_with_fewer_refits(trained):
    model, x, y, train, held = trained
    eval_batches = [(x[held[i : i + 250]], y[held[i : i + 250]]) for i in range(0, 1000, 250)]
    refit_batches = [(x[train[i : i + 64]], y[train[i : i + 64]]) for i in range(0, 797, 64)]
    calls: list[float] = []
    cache: dict[float, SampleEvaluation] = {}

    def evaluate(sparsity, masks):
        return evaluate_samples(model, loss_fn, eval_batches)

    def evaluate_refit(sparsity, masks):
        calls.append(sparsity)
        if sparsity not in cache:
            with restore_on_exit(model):
                refit_kept_weights(model, masks, loss_fn, refit_batches, steps=30, lr=1e-2)
                cache[sparsity] = evaluate_samples(model, loss_fn, eval_batches)
        return cache[sparsity]

    result = actual_pruning_limit(
        model, evaluate, max_drop=0.005, refine_steps=6, evaluate_refit=evaluate_refit
    )
    assert len(calls) == len(set(calls)) <= 4 + 6  # grid binary search, then the bisection
    searched = sorted(cache)
    dense = result.dense_accuracy
    passing = [s for s in searched if cache[s].accuracy >= dense - 0.005]
    assert result.refit_actual_limit == max(passing)
    # the bracket the search stops at: the next re-fitted sparsity above the limit fails
    above = [s for s in searched if s > result.refit_actual_limit]
    assert above and cache[min(above)].accuracy < dense - 0.005
    assert min(above) - result.refit_actual_limit <= 0.1 / 2**6 + 1e-12
    # the exhaustive search (a re-fit at every sparsity the sweep evaluated) agrees within
    # the search's resolution
    for sparsity in result.sparsities[1:]:
        evaluate_refit(sparsity, global_magnitude_masks(model, sparsity))
    exhaustive = max(s for s in cache if cache[s].accuracy >= dense - 0.005)
    assert abs(exhaustive - result.refit_actual_limit) <= 0.1 / 2**6 + 1e-12, exhaustive
    assert result.refit_actual_limit >= result.actual_limit
    nan_points = [s for s, a in zip(result.sparsities, result.refit_accuracies) if math.isnan(a)]
    assert nan_points and not set(nan_points) & set(searched)
    assert result.refit_actual_limit_interval is not None


def test_agreement_of_two_intervals():
    assert interval_agreement((0.8, 0.9), (0.9, 0.95)) == (True, 0.0)
    gap = interval_agreement((0.5, 0.6), (0.7, 0.8))
    assert not gap.overlap and gap.distance == pytest.approx(0.1)
    assert interval_agreement((0.7, 0.8), (0.5, 0.6)).distance == pytest.approx(0.1)
    with pytest.raises(ValueError, match="lo <= hi"):
        interval_agreement((0.9, 0.8), (0.5, 0.6))


def test_per_sample_losses_of_a_torch_loss_and_of_any_callable_agree():
    torch.manual_seed(0)
    model = nn.Linear(5, 3).double()
    batches = [(torch.randn(20, 5, dtype=torch.float64), torch.randint(0, 3, (20,)))]
    fast = evaluate_samples(model, nn.CrossEntropyLoss(), batches).losses
    vmapped = evaluate_samples(model, lambda o, t: loss_fn(o, t), batches).losses
    torch.testing.assert_close(fast, vmapped, rtol=0, atol=1e-12)
    assert fast.shape == (20,) and float(fast.std()) > 0
