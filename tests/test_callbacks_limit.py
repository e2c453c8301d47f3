from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from _lightning_helpers import (
    DigitsDataModule,
    NoPrunable,
    TinyClassifier,
    digits,
    make_trainer,
    read_metrics,
)
from torch import nn

from lightning_prunelimit.callbacks import HessianSpectrum, PruningLimit
from lightning_prunelimit.curvature import HessianOperator
from lightning_prunelimit.limit import (
    predict_pruning_limit,
    resolve_epsilon,
    zero_curvature_fraction,
)

pytestmark = pytest.mark.filterwarnings("ignore:top_eigenvalues")


def _spectrum() -> HessianSpectrum:
    return HessianSpectrum(num_iters=8, top_k=0, trace_probes=0, seed=1)


def _batches(num: int, batch_size: int) -> list:
    x, y = digits(num)
    return [(x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, num, batch_size)]


def _fit(tmp_path: Path, callbacks: list, **kwargs) -> tuple[TinyClassifier, object]:
    model = TinyClassifier(hidden=8)
    trainer = make_trainer(tmp_path, callbacks, max_epochs=2, **kwargs)
    trainer.fit(model, DigitsDataModule(num_train=128, batch_size=32))
    return model, trainer


def test_prediction_matches_the_core_and_is_logged(tmp_path):
    spectrum, limit = _spectrum(), PruningLimit(epsilon_batch_size=16)
    model, trainer = _fit(tmp_path, [limit, spectrum])  # limit first: it asks for the spectrum
    weights = [model.net[0].weight.detach(), model.net[2].weight.detach()]
    epsilon = resolve_epsilon(
        "batch_loss_std", model, nn.CrossEntropyLoss(), _batches(128, 32), batch_size=16
    )
    expected = predict_pruning_limit(spectrum.spectrum, weights, epsilon)
    assert limit.prediction == expected
    assert limit.prediction.num_weights == 64 * 8 + 8 * 10
    assert 0.0 < limit.prediction.sparsity < 1.0

    logged = read_metrics(trainer.logger)
    assert logged["prune_limit/kept_fraction"] == [pytest.approx(expected.kept_fraction)]
    assert logged["prune_limit/sparsity"] == [pytest.approx(expected.sparsity)]
    assert logged["prune_limit/distance"] == [pytest.approx(expected.distance)]
    assert logged["prune_limit/epsilon"] == [pytest.approx(epsilon)]
    assert logged["prune_limit/zero_fraction"] == [pytest.approx(expected.zero_fraction)]
    assert logged["prune_limit/sparsity_lo"] == [pytest.approx(expected.sparsity_interval[0])]
    assert logged["prune_limit/sparsity_hi"] == [pytest.approx(expected.sparsity_interval[1])]
    assert logged["prune_limit/epsilon_batch_size"] == [16.0]
    assert (Path(trainer.logger.log_dir) / "prune_limit.png").stat().st_size > 1000


def test_callback_order_does_not_matter_and_the_spectrum_is_computed_once(tmp_path, monkeypatch):
    predictions = []
    for order in ("limit_first", "spectrum_first"):
        spectrum, limit = _spectrum(), PruningLimit(epsilon_batch_size=16, epsilon=0.05)
        calls = []
        original = spectrum.compute
        monkeypatch.setattr(
            spectrum, "compute", lambda t, m, o=original, c=calls: c.append(1) or o(t, m)
        )
        callbacks = [limit, spectrum] if order == "limit_first" else [spectrum, limit]
        _fit(tmp_path, callbacks, logger=False)
        assert len(calls) == 1
        predictions.append(limit.prediction)
    assert predictions[0] == predictions[1]
    assert predictions[0].epsilon == 0.05


def test_zero_curvature_fraction_matches_the_core(tmp_path):
    spectrum, limit = (
        _spectrum(),
        PruningLimit(epsilon_batch_size=16, zero_curvature=True, num_quantiles=25),
    )
    model, _ = _fit(tmp_path, [spectrum, limit], logger=False)
    op = HessianOperator(model, nn.CrossEntropyLoss(), _batches(128, 32))
    assert op.param_names == ["net.0.weight", "net.0.bias", "net.2.weight", "net.2.bias"]
    candidates = torch.cat([torch.arange(0, 512), torch.arange(520, 600)])
    expected = zero_curvature_fraction(op, candidates, num_quantiles=25)
    assert limit.zero_curvature_estimate.indices == expected.indices
    assert limit.zero_curvature_estimate.fraction == expected.fraction
    # The sampled fraction is reported, not added: the spectrum counts the exactly-zero rows
    # (these weights among them) itself, once.
    assert limit.prediction.zero_fraction == spectrum.spectrum.deflated_fraction > 0
    assert limit.metrics()["prune_limit/zero_fraction_sampled"] == expected.fraction
    # weights fed by pixels that are zero in every image have zero Hessian rows
    x, _ = digits(128)
    dead_inputs = set(torch.nonzero((x == 0).all(dim=0)).flatten().tolist())
    sampled_dead = [i for i in expected.indices if i < 512 and i % 64 in dead_inputs]
    assert expected.fraction == pytest.approx(len(sampled_dead) / 25)
    assert expected.fraction > 0


@pytest.mark.parametrize("zero_curvature", [False, True])
def test_the_prediction_needs_the_prunable_weights_in_the_hessian(tmp_path, zero_curvature):
    spectrum = HessianSpectrum(num_iters=4, top_k=0, trace_probes=0, params=["net.0.weight"])
    limit = PruningLimit(epsilon_batch_size=16, zero_curvature=zero_curvature, num_quantiles=5)
    with pytest.raises(ValueError, match=r"does not cover 1 prunable weight tensor\(s\) \(net.2"):
        _fit(tmp_path, [spectrum, limit], logger=False)


def test_without_a_hessian_spectrum_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match=r"needs a HessianSpectrum callback"):
        _fit(tmp_path, [PruningLimit(epsilon_batch_size=16)], logger=False)


def test_nothing_to_prune_is_a_clear_error(tmp_path):
    trainer = make_trainer(
        tmp_path, [PruningLimit(epsilon_batch_size=16), _spectrum()], max_epochs=1, logger=False
    )
    with pytest.raises(ValueError, match="no Linear or Conv weights to prune"):
        trainer.fit(NoPrunable(), DigitsDataModule(num_train=32))


def test_prediction_survives_a_checkpoint(tmp_path):
    spectrum, limit = (
        _spectrum(),
        PruningLimit(epsilon_batch_size=16, zero_curvature=True, num_quantiles=4),
    )
    _, trainer = _fit(tmp_path, [spectrum, limit], logger=False)
    trainer.save_checkpoint(tmp_path / "limit.ckpt")
    checkpoint = torch.load(tmp_path / "limit.ckpt", weights_only=True)
    restored = PruningLimit(epsilon_batch_size=16, zero_curvature=True)
    restored.load_state_dict(checkpoint["callbacks"][restored.state_key])
    assert restored.prediction == limit.prediction
    assert restored.zero_curvature_estimate == limit.zero_curvature_estimate
    assert restored.metrics() == limit.metrics()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"epsilon": "loss_std"}, ValueError, "unknown epsilon"),
        ({"epsilon": -0.1}, ValueError, "epsilon must be positive"),
        ({"epsilon": math.inf}, ValueError, "epsilon must be positive"),
        ({"epsilon": True}, TypeError, "epsilon must be a positive number"),
        ({"negative": "clip"}, ValueError, "negative must be one of"),
        ({"num_quantiles": 0}, ValueError, "num_quantiles"),
        ({"zero_tolerance": 0.0}, ValueError, "zero_tolerance"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        PruningLimit(epsilon_batch_size=16, **kwargs)
