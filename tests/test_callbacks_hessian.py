from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from _lightning_helpers import (
    DigitsDataModule,
    TinyClassifier,
    digits,
    make_trainer,
    read_metrics,
)
from torch import nn

from lightning_prunelimit.callbacks import HessianSpectrum
from lightning_prunelimit.curvature import (
    HessianOperator,
    Spectrum,
    hutchinson_trace,
    plan_lanczos_memory,
    ritz_top_eigenvalues,
    spectrum_trace,
    stochastic_lanczos_quadrature,
    top_eigenvalues,
)

pytestmark = pytest.mark.filterwarnings("ignore:top_eigenvalues")

SETTINGS = {
    "num_iters": 8,
    "num_probes": 1,
    "top_k": 2,
    "top_iters": 8,
    "trace_probes": 4,
    "seed": 3,
}


def _batches(indices: torch.Tensor, batch_size: int) -> list:
    x, y = digits()
    x, y = x[indices], y[indices]
    return [(x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, len(y), batch_size)]


def _core(model: nn.Module, batches: list) -> tuple[Spectrum, torch.Tensor, float, float]:
    op = HessianOperator(model, nn.CrossEntropyLoss(), batches)
    spectrum = stochastic_lanczos_quadrature(op, num_iters=8, seed=3)
    top = top_eigenvalues(op, k=2, num_iters=8, seed=3)
    trace, stderr = hutchinson_trace(op, num_probes=4, seed=3)
    return spectrum, top, trace, stderr


def test_results_match_the_core_and_every_logger_gets_them(tmp_path):
    model = TinyClassifier(hidden=8)
    callback = HessianSpectrum(**SETTINGS)
    trainer = make_trainer(tmp_path, [callback], max_epochs=2)
    trainer.fit(model, DigitsDataModule(num_train=128, batch_size=64))

    spectrum, top, trace, stderr = _core(model, _batches(torch.arange(128), 64))
    torch.testing.assert_close(callback.spectrum.nodes, spectrum.nodes, rtol=0, atol=1e-10)
    torch.testing.assert_close(callback.spectrum.weights, spectrum.weights, rtol=0, atol=1e-10)
    torch.testing.assert_close(callback.top_eigenvalues, top, rtol=0, atol=1e-10)
    assert callback.trace == pytest.approx(trace, abs=1e-10)
    assert callback.trace_stderr == pytest.approx(stderr, abs=1e-10)
    assert callback.num_params == callback.spectrum.dim == 64 * 8 + 8 + 8 * 10 + 10

    logged = read_metrics(trainer.logger)
    expected = {
        "hessian/top_eig_1": float(top[0]),
        "hessian/top_eig_2": float(top[1]),
        "hessian/trace": trace,
        "hessian/trace_stderr": stderr,
        "hessian/min_ritz": float(spectrum.nodes.min()),
        "hessian/max_ritz": float(spectrum.nodes.max()),
        "hessian/num_params": 610.0,
        "hessian/num_iters": 8.0,
        "hessian/num_probes": 1.0,
    }
    for key, value in expected.items():
        assert logged[key] == [pytest.approx(value, rel=1e-9, abs=1e-12)], key
    assert (Path(trainer.logger.log_dir) / "hessian_spectrum.png").stat().st_size > 1000


def test_compute_leaves_the_model_as_found(tmp_path):
    model = TinyClassifier(hidden=8, batch_norm=True)
    callback = HessianSpectrum(num_iters=4, top_k=1, top_iters=4, trace_probes=2)
    trainer = make_trainer(tmp_path, [callback], max_epochs=1, logger=False)
    trainer.fit(model, DigitsDataModule(num_train=128, batch_size=64))
    first = callback.spectrum
    model.train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    assert callback.compute(trainer, model) == first  # deterministic, same point
    assert model.training and all(m.training for m in model.modules())
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert all(p.grad is None or not p.grad.requires_grad for p in model.parameters())
    # BatchNorm parameters are outside the default Hessian
    assert callback.num_params == 64 * 8 + 8 + 8 * 10 + 10


def test_num_samples_draws_a_seeded_subset(tmp_path):
    model = TinyClassifier(hidden=8)
    callback = HessianSpectrum(num_samples=50, **SETTINGS)
    make_trainer(tmp_path, [callback], max_epochs=1, logger=False).fit(
        model, DigitsDataModule(num_train=128, batch_size=32)
    )
    indices = torch.randperm(128, generator=torch.Generator().manual_seed(3))[:50]
    spectrum, top, _, _ = _core(model, _batches(indices, 32))
    torch.testing.assert_close(callback.spectrum.nodes, spectrum.nodes, rtol=0, atol=1e-10)
    torch.testing.assert_close(callback.top_eigenvalues, top, rtol=0, atol=1e-10)


def test_augmentation_is_off_for_the_curvature(tmp_path):
    model = TinyClassifier(hidden=8)
    callback = HessianSpectrum(num_iters=6, num_probes=1, top_k=0, trace_probes=0)
    make_trainer(tmp_path, [callback], max_epochs=1, logger=False).fit(
        model, DigitsDataModule(num_train=64, batch_size=32, augment=True)
    )
    op = HessianOperator(model, nn.CrossEntropyLoss(), _batches(torch.arange(64), 32))
    clean = stochastic_lanczos_quadrature(op, num_iters=6, seed=0)
    torch.testing.assert_close(callback.spectrum.nodes, clean.nodes, rtol=0, atol=1e-10)
    assert callback.trace == pytest.approx(spectrum_trace(clean)[0], rel=1e-9)
    assert callback.top_eigenvalues.numel() == 0


def test_top_eigenvalues_and_trace_come_from_the_spectrum_run_by_default(tmp_path):
    model = TinyClassifier(hidden=8)
    callback = HessianSpectrum(num_iters=24, num_probes=2, top_k=2, seed=1)
    trainer = make_trainer(tmp_path, [callback], max_epochs=1)
    trainer.fit(model, DigitsDataModule(num_train=128, batch_size=32))
    op = HessianOperator(model, nn.CrossEntropyLoss(), _batches(torch.arange(128), 128))
    spectrum = stochastic_lanczos_quadrature(op, num_iters=24, num_probes=2, seed=1)
    values, bounds = ritz_top_eigenvalues(spectrum, 2)
    torch.testing.assert_close(callback.top_eigenvalues, values, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(callback.top_eigenvalue_errors, bounds, rtol=1e-6, atol=1e-8)
    # the outliers converge within the run: its Ritz values are the dedicated run's values
    exact = top_eigenvalues(op, k=2, num_iters=op.dim, seed=0)
    assert torch.allclose(callback.top_eigenvalues, exact, rtol=1e-6)
    assert bool((callback.top_eigenvalue_errors < 1e-4 * exact[0]).all())
    trace, stderr = spectrum_trace(spectrum)
    assert callback.trace == pytest.approx(trace, rel=1e-9)
    assert callback.trace_stderr == pytest.approx(stderr, rel=1e-9)
    logged = read_metrics(trainer.logger)
    assert logged["hessian/num_samples"] == [128.0]
    assert logged["hessian/top_eig_1_bound"] == [pytest.approx(float(bounds[0]), rel=1e-6)]
    for stage in ("sample", "zero_rows", "lanczos", "top_eigenvalues", "trace"):
        assert f"hessian/time_{stage}" in logged, stage


def test_results_survive_a_checkpoint(tmp_path):
    callback = HessianSpectrum(**SETTINGS)
    trainer = make_trainer(tmp_path, [callback], max_epochs=1, logger=False)
    trainer.fit(TinyClassifier(hidden=8), DigitsDataModule(num_train=64, batch_size=64))
    path = tmp_path / "spectrum.ckpt"
    trainer.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=True)  # plain data only
    restored = HessianSpectrum(**SETTINGS)
    restored.load_state_dict(checkpoint["callbacks"][restored.state_key])
    assert restored.spectrum == callback.spectrum
    assert torch.equal(restored.top_eigenvalues, callback.top_eigenvalues)
    assert (restored.trace, restored.trace_stderr) == (callback.trace, callback.trace_stderr)
    assert restored.metrics() == callback.metrics()


def test_computed_once_per_point_and_again_on_the_next_fit(tmp_path, monkeypatch):
    callback = HessianSpectrum(num_iters=4, top_k=0, trace_probes=0)
    calls = []
    original = callback.compute
    monkeypatch.setattr(
        callback, "compute", lambda trainer, module: calls.append(1) or original(trainer, module)
    )
    model = TinyClassifier(hidden=8)
    for _ in range(2):
        trainer = make_trainer(tmp_path, [callback], max_epochs=1, logger=False)
        trainer.fit(model, DigitsDataModule(num_train=64, batch_size=64))
        callback.ensure_computed(trainer, model)
    assert len(calls) == 2


def test_no_loss_found_is_a_clear_error(tmp_path):
    trainer = make_trainer(tmp_path, [HessianSpectrum(num_iters=2)], max_epochs=1, logger=False)
    with pytest.raises(ValueError, match=r"loss_fn=torch.nn.CrossEntropyLoss\(\)"):
        trainer.fit(TinyClassifier(with_loss_attr=False), DigitsDataModule(num_train=32))


def test_an_explicit_loss_fn_is_used(tmp_path):
    callback = HessianSpectrum(
        num_iters=4, num_probes=1, top_k=0, trace_probes=0, loss_fn=nn.CrossEntropyLoss()
    )
    model = TinyClassifier(hidden=8, with_loss_attr=False)
    make_trainer(tmp_path, [callback], max_epochs=1, logger=False).fit(
        model, DigitsDataModule(num_train=32, batch_size=32)
    )
    op = HessianOperator(model, nn.CrossEntropyLoss(), _batches(torch.arange(32), 32))
    expected = stochastic_lanczos_quadrature(op, num_iters=4, seed=0)
    torch.testing.assert_close(callback.spectrum.nodes, expected.nodes, rtol=0, atol=1e-10)


def test_progress_bar_only_when_the_trainer_shows_one(tmp_path, capsys):
    for shown in (False, True):
        callback = HessianSpectrum(num_iters=3, top_k=0, trace_probes=0)
        make_trainer(
            tmp_path, [callback], max_epochs=1, logger=False, enable_progress_bar=shown
        ).fit(TinyClassifier(hidden=8), DigitsDataModule(num_train=32, batch_size=32))
        assert ("Hessian spectrum" in capsys.readouterr().err) is shown


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_iters": 0}, "num_iters must be 'auto' or an int >= 1"),
        ({"num_probes": 1.5}, "num_probes must be 'auto' or an int"),
        ({"trace_probes": 1}, "trace_probes must be 0"),
        ({"tolerance": 1.5}, "tolerance must be a number in"),
        ({"top_k": -1}, "top_k must be an int >= 0"),
        ({"trace_probes": -2}, "trace_probes"),
        ({"backend": "curvlinops"}, "unknown backend"),
        ({"num_samples": 0}, "num_samples"),
        ({"top_k": 5, "top_iters": 3}, "top_iters must be an int >= 5"),
        ({"memory_budget_gb": 0}, "memory_budget_gb must be a positive number"),
        ({"memory_budget_gb": float("inf")}, "memory_budget_gb must be a positive number"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        HessianSpectrum(**kwargs)


def test_a_memory_budget_gives_the_unbudgeted_spectrum(tmp_path):
    model = TinyClassifier(hidden=8)
    budget = 2.7e-4  # GiB (290 KB): the products take most, one probe's basis does not fit
    callback = HessianSpectrum(
        num_iters=8, num_probes=3, top_k=0, trace_probes=0, seed=3, memory_budget_gb=budget
    )
    assert callback.memory_budget_gb == budget
    trainer = make_trainer(tmp_path, [callback], max_epochs=1)
    trainer.fit(model, DigitsDataModule(num_train=128, batch_size=64))

    op = HessianOperator(model, nn.CrossEntropyLoss(), _batches(torch.arange(128), 64))
    free = stochastic_lanczos_quadrature(op, num_iters=8, num_probes=3, seed=3)
    plan = plan_lanczos_memory(
        op.dim, 8, 3, dtype=op.dtype, device="cpu", budget_gb=budget, hvp_bytes=op.hvp_memory_bytes
    )
    assert plan.basis_storage == "disk"
    scale = float(free.nodes.abs().max())
    torch.testing.assert_close(callback.spectrum.nodes, free.nodes, rtol=0, atol=1e-5 * scale)
    torch.testing.assert_close(callback.spectrum.weights, free.weights, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="Raise memory_budget_gb"):
        stochastic_lanczos_quadrature(op, num_iters=8, memory_budget_gb=1e-7)


class _CountSteps(pl.Callback):
    def __init__(self) -> None:
        self.steps = 0

    def on_train_batch_start(self, *args: object) -> None:
        self.steps += 1


def test_a_plan_that_cannot_fit_memory_is_refused_before_training(tmp_path):
    counter = _CountSteps()
    callback = HessianSpectrum(num_iters=8, memory_budget_gb=1e-7)  # 107 bytes
    trainer = make_trainer(tmp_path, [callback, counter], max_epochs=1, logger=False)
    with pytest.raises(ValueError, match="HessianSpectrum cannot run within its memory.*Raise"):
        trainer.fit(TinyClassifier(hidden=8), DigitsDataModule(num_train=64, batch_size=32))
    assert counter.steps == 0


def test_a_basis_file_larger_than_the_free_disk_is_refused_before_training(tmp_path, monkeypatch):
    import shutil

    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=1000))
    counter = _CountSteps()
    # 2.7e-4 GiB: one probe's basis does not fit the budget, so it would go to a file
    callback = HessianSpectrum(num_iters=600, memory_budget_gb=2.7e-4)
    trainer = make_trainer(tmp_path, [callback, counter], max_epochs=1, logger=False)
    with pytest.raises(ValueError, match="temporary file.*TMPDIR"):
        trainer.fit(TinyClassifier(hidden=8), DigitsDataModule(num_train=64, batch_size=32))
    assert counter.steps == 0
