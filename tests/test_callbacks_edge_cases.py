"""Edge cases of the callbacks: frozen layers, repeated fits, tied weights, a non-finite model."""

from __future__ import annotations

import pytest
import torch
from _lightning_helpers import DigitsDataModule, DigitsWithVal, TinyClassifier, make_trainer
from torch import nn

from lightning_prunelimit import (
    GlobalOneShotPruning,
    HessianSpectrum,
    L1Regularization,
    PruningLimit,
    SparsitySweep,
)


def test_pruning_limit_refuses_weights_outside_the_spectrum(tmp_path) -> None:
    model = TinyClassifier(hidden=8)
    model.net[0].requires_grad_(False)  # frozen: left out of the Hessian by default
    trainer = make_trainer(
        tmp_path,
        [
            HessianSpectrum(num_iters=8, top_k=0, trace_probes=0),
            PruningLimit(epsilon_batch_size=16),
        ],
        max_epochs=1,
    )
    with pytest.raises(ValueError, match=r"does not cover 1 prunable weight tensor\(s\) \(net.0"):
        trainer.fit(model, DigitsDataModule())


def test_pruning_limit_accepts_frozen_weights_the_spectrum_includes(tmp_path) -> None:
    model = TinyClassifier(hidden=8)
    model.net[0].requires_grad_(False)
    spectrum = HessianSpectrum(num_iters=8, top_k=0, trace_probes=0, params=lambda n, p: True)
    limit = PruningLimit(epsilon_batch_size=16)
    make_trainer(tmp_path, [spectrum, limit], max_epochs=1).fit(model, DigitsDataModule())
    assert spectrum.num_params == 64 * 8 + 8 + 8 * 10 + 10
    assert limit.prediction is not None and limit.prediction.num_weights == 64 * 8 + 8 * 10


def test_masks_of_an_earlier_fit_do_not_leak_into_the_next(tmp_path) -> None:
    model = TinyClassifier()
    pruning = GlobalOneShotPruning(amount=0.5, make_pruning_permanent=True)
    make_trainer(tmp_path / "a", [pruning], max_epochs=1).fit(model, DigitsDataModule())
    assert pruning.masks is not None

    pruning.apply_at_epoch = 3  # the next fit ends before this epoch
    with pytest.warns(UserWarning, match="never pruned"):
        make_trainer(tmp_path / "b", [pruning], max_epochs=1).fit(model, DigitsDataModule())
    assert pruning.masks is None and pruning.report is None


def test_apply_at_epoch_prunes_on_the_first_epoch_at_or_after_it(tmp_path) -> None:
    model = TinyClassifier()
    pruning = GlobalOneShotPruning(amount=0.5, apply_at_epoch=1)
    make_trainer(tmp_path, [pruning], max_epochs=3).fit(model, DigitsDataModule())
    assert pruning.report is not None
    assert pruning.report.global_sparsity == pytest.approx(0.5, abs=1e-3)


def test_l1_regularises_a_shared_parameter_once() -> None:
    first, second = nn.Linear(3, 3, bias=False), nn.Linear(3, 3, bias=False)
    second.weight = first.weight
    model = nn.Sequential(first, second)
    l1 = L1Regularization(strength=1e-3)
    assert [name for name, _, _ in l1.selected_parameters(model)] == ["0.weight"]
    assert l1.l1_norm(model) == pytest.approx(float(first.weight.abs().sum()))


class _NaNAfterTraining(TinyClassifier):
    def on_after_backward(self) -> None:
        with torch.no_grad():
            self.net[-1].bias.fill_(float("nan"))


def test_sweep_of_a_non_finite_model_says_so(tmp_path) -> None:
    model = _NaNAfterTraining()
    trainer = make_trainer(tmp_path, [SparsitySweep(metric="loss")], max_epochs=1)
    with pytest.raises(ValueError, match="on the val data: the dense model's loss is nan"):
        trainer.fit(model, DigitsWithVal())
