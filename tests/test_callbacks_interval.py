"""The callbacks' side of the prediction's accuracy: auto steps, warnings, the trajectory."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest
from _lightning_helpers import DigitsDataModule, TinyClassifier, make_trainer, read_metrics

from lightning_prunelimit import HessianSpectrum, PruningLimit
from lightning_prunelimit.callbacks.hessian_spectrum import AUTO_FALLBACK_ITERS

pytestmark = pytest.mark.usefixtures("one_thread")


def _data() -> DigitsDataModule:
    return DigitsDataModule(num_train=256, batch_size=64)


def test_auto_steps_stop_at_the_tolerance_and_log_the_steps_used(tmp_path: Path) -> None:
    spectrum = HessianSpectrum(top_k=0, trace_probes=0, tolerance=0.05, max_iters=200)
    limit = PruningLimit(epsilon_batch_size=32)
    trainer = make_trainer(tmp_path, [spectrum, limit], max_epochs=2)
    trainer.fit(TinyClassifier(hidden=8), _data())
    steps = spectrum.spectrum.num_iters
    low, high = limit.prediction.quadrature_sparsity_interval
    assert high - low <= 0.05 and 16 <= steps < 200
    assert read_metrics(trainer.logger)["hessian/num_iters"] == [float(steps)]
    sparsity_lo, sparsity_hi = limit.prediction.sparsity_interval
    assert sparsity_lo <= limit.prediction.sparsity <= sparsity_hi
    metrics = trainer.callback_metrics
    assert float(metrics["prune_limit/sparsity_lo"]) == pytest.approx(sparsity_lo)
    assert float(metrics["prune_limit/sparsity_hi"]) == pytest.approx(sparsity_hi)


def test_auto_without_a_limit_runs_the_fallback_steps(tmp_path: Path) -> None:
    spectrum = HessianSpectrum(num_probes=1, top_k=0, trace_probes=0)
    make_trainer(tmp_path, [spectrum], max_epochs=1, logger=False).fit(
        TinyClassifier(hidden=8), _data()
    )
    assert spectrum.spectrum.num_iters == min(AUTO_FALLBACK_ITERS, spectrum.spectrum.probed_dim)


def test_a_fixed_num_iters_with_a_wide_interval_warns_with_the_fix(tmp_path: Path) -> None:
    spectrum = HessianSpectrum(num_iters=4, top_k=0, trace_probes=0)
    limit = PruningLimit(epsilon_batch_size=32)
    trainer = make_trainer(tmp_path, [spectrum, limit], max_epochs=1, logger=False)
    with pytest.warns(UserWarning, match=r"budget ran out \(.*num_iters=4\) after 4 Lanczos steps"):
        trainer.fit(TinyClassifier(hidden=8), _data())
    # Wide enough steps: no warning.
    spectrum = HessianSpectrum(num_iters=600, top_k=0, trace_probes=0, tolerance=0.5)
    trainer = make_trainer(tmp_path, [spectrum, PruningLimit(epsilon_batch_size=32)], logger=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*more than HessianSpectrum.*")
        trainer.fit(TinyClassifier(hidden=8), _data())


def test_a_step_budget_too_small_for_the_tolerance_warns_once_naming_it(tmp_path: Path) -> None:
    spectrum = HessianSpectrum(top_k=0, tolerance=0.002, max_iters=16)
    limit = PruningLimit(epsilon_batch_size=32)
    trainer = make_trainer(tmp_path, [spectrum, limit], max_epochs=1, logger=False)
    with pytest.warns(UserWarning, match=r"budget ran out \(.*max_iters=16\)") as caught:
        trainer.fit(TinyClassifier(hidden=8), _data())
    assert sum("more than HessianSpectrum" in str(w.message) for w in caught) == 1
    low, high = limit.prediction.sparsity_interval
    assert f"{high - low:.4f} wide" in next(
        str(w.message) for w in caught if "more than HessianSpectrum" in str(w.message)
    )


def _too_wide_message(caught: list[warnings.WarningMessage]) -> str:
    found = [str(w.message) for w in caught if "more than HessianSpectrum" in str(w.message)]
    assert len(found) == 1, found
    return found[0]


def _fit_warned(tmp_path: Path, spectrum: HessianSpectrum) -> tuple[PruningLimit, str]:
    limit = PruningLimit(epsilon_batch_size=32)
    trainer = make_trainer(tmp_path, [spectrum, limit], max_epochs=1, logger=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(TinyClassifier(hidden=8), _data())
    return limit, _too_wide_message(caught)


def test_a_too_wide_interval_names_its_widest_part_and_the_setting_for_it(
    tmp_path: Path,
) -> None:
    spectrum = HessianSpectrum(num_samples=64, top_k=0, tolerance=0.01, max_iters=16)
    limit, message = _fit_warned(tmp_path, spectrum)
    # The quadrature and sample parts, recomputed from the results; the probes' part is what
    # the interval had beyond the quadrature part before the sample part was added.
    q_low, q_high = limit.prediction.quadrature_sparsity_interval
    error = spectrum.sample_error
    assert error is not None
    quadrature, sample = q_high - q_low, error.interval_width
    assert f"quadrature part (Lanczos steps) {quadrature:.4f} (share 0.0050)" in message
    assert f"sample part (the curvature sample's own error) {sample:.4f} (share 0.0025)" in message
    probes = float(re.search(r"probes' part (\d\.\d{4}) \(share 0\.0025\)", message).group(1))
    low, high = limit.prediction.sparsity_interval
    assert low > 0.0 and high < 1.0  # not clipped to [0, 1]: the parts add up to the width
    assert quadrature + probes + sample == pytest.approx(high - low, abs=2e-4)
    excess = {
        "quadrature": quadrature - 0.005,
        "sample": sample - 0.0025,
        "probes": probes - 0.0025,
    }
    fixes = {
        "quadrature": "quadrature part (Lanczos steps): raise max_iters (now 16;",
        "sample": "raise num_samples (now 64 of 256; e.g. 128 or num_samples=None for all",
        "probes": "probes' part: set num_probes above 1 ('auto' runs at most 16)",
    }
    over = message.split("widest first: the ", 1)[1]
    widths = {"quadrature": quadrature, "sample": sample, "probes": probes}
    order = sorted((name for name in excess if excess[name] > 0), key=widths.get, reverse=True)
    positions = [over.index(fixes[name]) for name in order]
    assert len(order) >= 2 and positions == sorted(positions)
    assert "grows the sample only while" not in message  # a fixed num_samples, not "auto"


def test_auto_samples_not_grown_after_the_steps_ran_out_say_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lightning_prunelimit.limit import targeted_spectrum

    # "auto" takes a sub-sample of 64 of the 256 training samples, and would double it.
    monkeypatch.setattr(targeted_spectrum, "AUTO_ALL_SAMPLES", 128)
    monkeypatch.setattr(targeted_spectrum, "AUTO_START_SAMPLES", 64)
    spectrum = HessianSpectrum(top_k=0, tolerance=0.01, max_iters=8)
    _, message = _fit_warned(tmp_path, spectrum)
    assert spectrum.samples_used == 64 and spectrum.exhausted == ("max_iters=8",)
    assert "raise num_samples (now 64 of 256; e.g. 128" in message
    assert "num_samples='auto' grows the sample only while the Lanczos steps" in message


def test_a_sub_sample_adds_its_own_error_to_the_interval(tmp_path: Path) -> None:
    spectrum = HessianSpectrum(num_samples=128, top_k=0, tolerance=0.05, max_iters=64)
    limit = PruningLimit(epsilon_batch_size=32)
    trainer = make_trainer(tmp_path, [spectrum, limit], max_epochs=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a tolerance the small sample may not meet
        trainer.fit(TinyClassifier(hidden=8), _data())
    error = spectrum.sample_error
    assert error is not None and (error.num_samples, error.dataset_size) == (128, 256)
    p = limit.prediction
    s_low, s_high = p.sample_sparsity_interval
    assert s_low == pytest.approx(p.sparsity - error.low)
    assert s_high == pytest.approx(p.sparsity + error.high)
    low, high = p.sparsity_interval
    q_low, q_high = p.quadrature_sparsity_interval
    assert low <= min(q_low, s_low) + 1e-12 and high >= max(q_high, s_high) - 1e-12
    logged = read_metrics(trainer.logger)
    assert logged["prune_limit/sample_lo"] == [pytest.approx(s_low)]
    assert logged["hessian/num_samples"] == [128.0]


def test_the_whole_data_has_no_sample_error_and_more_samples_than_data_says_so(
    tmp_path: Path,
) -> None:
    spectrum = HessianSpectrum(num_samples=1000, top_k=0, num_iters=8)
    limit = PruningLimit(epsilon_batch_size=32)
    trainer = make_trainer(tmp_path, [spectrum, limit], max_epochs=1, logger=False)
    with pytest.warns(UserWarning, match="num_samples=1000 is more than the 256 training"):
        trainer.fit(TinyClassifier(hidden=8), _data())
    assert spectrum.sample_error is None and spectrum.samples_used == 256
    assert limit.prediction.sample_sparsity_interval is None


def test_the_limit_over_training_is_logged_every_n_epochs(tmp_path: Path) -> None:
    spectrum = HessianSpectrum(num_iters=24, top_k=0, trace_probes=0, every_n_epochs=2)
    limit = PruningLimit(epsilon_batch_size=32)
    trainer = make_trainer(tmp_path, [spectrum, limit], max_epochs=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 24 steps: the interval is wider than the tolerance
        trainer.fit(TinyClassifier(hidden=8), _data())
    # Epochs 1 and 3 (0-based: every second epoch) and the end of training (epoch 4).
    assert [row["epoch"] for row in limit.trajectory] == [1, 3, 4]
    steps_per_epoch = 256 // 64
    assert [row["step"] for row in limit.trajectory] == [
        2 * steps_per_epoch,
        4 * steps_per_epoch,
        5 * steps_per_epoch,
    ]
    assert all(
        row["sparsity_lo"] <= row["sparsity"] <= row["sparsity_hi"] for row in limit.trajectory
    )
    logged = read_metrics(trainer.logger)
    assert logged["prune_limit/sparsity"] == pytest.approx(
        [r["sparsity"] for r in limit.trajectory]
    )
    assert len(logged["prune_limit/sparsity_lo"]) == 3
    assert (Path(trainer.logger.log_dir) / "prune_limit_trajectory.png").stat().st_size > 1000
    restored = PruningLimit(epsilon_batch_size=32)
    restored.load_state_dict(limit.state_dict())
    assert restored.trajectory == limit.trajectory


def test_a_sample_smaller_than_the_epsilon_batch_fails_before_training(tmp_path: Path) -> None:
    class Counting(TinyClassifier):
        steps = 0

        def training_step(self, batch, batch_idx):
            Counting.steps += 1
            return super().training_step(batch, batch_idx)

    spectrum = HessianSpectrum(num_iters=4, top_k=0, trace_probes=0)
    trainer = make_trainer(tmp_path, [spectrum, PruningLimit()], max_epochs=1, logger=False)
    with pytest.raises(ValueError, match="lower epsilon_batch_size"):
        trainer.fit(Counting(hidden=8), DigitsDataModule(num_train=100, batch_size=50))
    assert Counting.steps == 0
    with pytest.raises(ValueError, match="epsilon_batch_size must be a positive int"):
        PruningLimit(epsilon_batch_size=0)
    for bad in ("many", 0, -3):
        with pytest.raises(ValueError, match="num_iters must be 'auto' or an int"):
            HessianSpectrum(num_iters=bad)
    with pytest.raises(ValueError, match="tolerance must be a number in"):
        HessianSpectrum(tolerance=0.0)
    with pytest.raises(ValueError, match="every_n_epochs"):
        HessianSpectrum(every_n_epochs=0)
