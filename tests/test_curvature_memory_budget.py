"""SLQ under a memory budget: same nodes and weights, bounded memory, chunked products."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from lightning_prunelimit.curvature import (
    DenseOperator,
    HessianOperator,
    LanczosBasis,
    default_memory_budget,
    lanczos,
    plan_lanczos_memory,
    run_probe_groups,
    stochastic_lanczos_quadrature,
)
from lightning_prunelimit.curvature.memory_plan import GIB, available_host_memory

DIM, STEPS, PROBES = 60, 20, 4


def _dense() -> DenseOperator:
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(DIM, DIM, generator=generator, dtype=torch.float64)
    return DenseOperator(a + a.T)


def _plan(budget_bytes: float | None, op=None, probes: int = PROBES):
    dim = DIM if op is None else op.dim
    dtype = torch.float64 if op is None else op.dtype
    hvp = None if op is None else op.hvp_memory_bytes
    budget = None if budget_bytes is None else budget_bytes / GIB
    return plan_lanczos_memory(
        dim, STEPS, probes, dtype=dtype, device="cpu", budget_gb=budget, hvp_bytes=hvp
    )


# budgets in bytes for the dense operator (vector = 480 bytes, one probe's basis 9,600 bytes)
DENSE_BUDGETS = {
    "everything at once": (60_000, "device", 4, 1),
    "two groups of two": (30_000, "device", 2, 2),
    "four groups of one": (12_500, "device", 1, 4),
    "basis in a file, one group": (12_400, "disk", 4, 1),
    "basis in a file, two groups": (7_000, "disk", 2, 2),
    "tiny": (3_400, "disk", 1, 4),
}


@pytest.mark.parametrize("case", list(DENSE_BUDGETS))
def test_budgeted_equals_unbudgeted_on_a_dense_operator(case: str) -> None:
    budget, storage, group, groups = DENSE_BUDGETS[case]
    plan = _plan(budget)
    assert (plan.basis_storage, plan.group_size, plan.num_groups) == (storage, group, groups)
    assert plan.estimated_bytes <= budget
    if storage == "disk":
        assert plan.reorth_chunk is not None and plan.reorth_chunk < STEPS
    op = _dense()
    free = stochastic_lanczos_quadrature(op, num_iters=STEPS, num_probes=PROBES, seed=4)
    bounded = stochastic_lanczos_quadrature(
        op, num_iters=STEPS, num_probes=PROBES, seed=4, memory_budget_gb=budget / GIB
    )
    torch.testing.assert_close(bounded.nodes, free.nodes, rtol=0, atol=1e-9)
    torch.testing.assert_close(bounded.weights, free.weights, rtol=0, atol=1e-9)


def _mlp_operator(dtype: torch.dtype = torch.float32) -> HessianOperator:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 3)).to(dtype)
    batches = [(torch.randn(16, 6), torch.randint(0, 3, (16,))) for _ in range(2)]
    return HessianOperator(model, nn.functional.cross_entropy, batches)


def test_budgeted_equals_unbudgeted_on_a_network_with_chunked_products() -> None:
    op = _mlp_operator()
    vector = op.dim * 4
    free = stochastic_lanczos_quadrature(op, num_iters=STEPS, num_probes=PROBES, seed=1)
    scale = float(free.nodes.abs().max())
    seen = set()
    budgets = (
        (4 * STEPS + 16) * vector + op.hvp_memory_bytes(4, 2),  # device, products in pairs
        7 * vector + op.hvp_memory_bytes(1, 1),  # file basis, one probe at a time, chunks of 3
        10 * vector + op.hvp_memory_bytes(2, 1),  # file basis, two probes at a time
    )
    for budget in budgets:
        plan = _plan(budget, op)
        seen.add((plan.basis_storage, plan.group_size, plan.hvp_block_size))
        bounded = stochastic_lanczos_quadrature(
            op, num_iters=STEPS, num_probes=PROBES, seed=1, memory_budget_gb=budget / GIB
        )
        torch.testing.assert_close(bounded.nodes, free.nodes, rtol=0, atol=1e-4 * scale)
        torch.testing.assert_close(bounded.weights, free.weights, rtol=0, atol=1e-4)
        assert op.max_block_size is None  # restored after the run
    assert seen == {("device", 4, 2), ("disk", 1, None), ("disk", 2, 1)}
    assert any(block is not None for _, _, block in seen)  # a chunked product was planned


@pytest.mark.parametrize("storage", ["host", "disk"])
@pytest.mark.parametrize("chunk", [1, 3, None])
def test_offloaded_basis_gives_the_device_result(storage: str, chunk: int | None) -> None:
    op = _dense()
    start = torch.randn(3, DIM, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    reference = lanczos(op, start, STEPS)
    result = lanczos(op, start, STEPS, basis_storage=storage, reorth_chunk=chunk)
    assert result.lengths == reference.lengths
    torch.testing.assert_close(result.alphas, reference.alphas, rtol=0, atol=1e-10)
    torch.testing.assert_close(result.betas, reference.betas, rtol=0, atol=1e-10)


def test_chunked_re_orthogonalisation_keeps_the_basis_orthogonal() -> None:
    # a spectrum with a few outliers loses orthogonality fast without re-orthogonalisation
    values = torch.cat([torch.linspace(0, 1, DIM - 3), torch.tensor([50.0, 80.0, 100.0])])
    op = DenseOperator(torch.diag(values).to(torch.float32))
    start = torch.ones(1, DIM)
    result = lanczos(op, start, 40, basis_storage="disk", reorth_chunk=7)
    nodes, weights, _ = result.ritz()
    # ghost copies of the outliers would appear as repeated Ritz values near 100
    assert int((nodes[0] > 99.0).sum()) == 1
    assert float(weights.sum()) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_chunked_blocks_equal_unchunked(dtype: torch.dtype) -> None:
    op = _mlp_operator(dtype)
    block = torch.randn(7, op.dim, generator=torch.Generator().manual_seed(3), dtype=dtype)
    whole = op.matvec(block)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    for size in (1, 3, 7, 50):
        op.max_block_size = size
        torch.testing.assert_close(op.matvec(block), whole, rtol=tol, atol=tol)
    op.max_block_size = None
    assert HessianOperator(op.model, op.loss_fn, op._batches, max_block_size=2).hvp_memory_bytes(
        7
    ) < op.hvp_memory_bytes(7)


def test_bad_block_sizes_and_storages() -> None:
    op = _mlp_operator()
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="max_block_size must be a positive int"):
            op.max_block_size = bad
    with pytest.raises(ValueError, match="unknown basis storage"):
        lanczos(_dense(), torch.ones(DIM, dtype=torch.float64), 3, basis_storage="gpu")
    with pytest.raises(ValueError, match="reorth_chunk must be a positive int"):
        LanczosBasis(1, 2, 3, torch.float32, "cpu", storage="host", chunk=0)


def test_a_budget_too_small_for_one_probe_names_the_knob() -> None:
    with pytest.raises(ValueError, match=r"memory_budget_gb=.*Raise memory_budget_gb to at least"):
        stochastic_lanczos_quadrature(_dense(), num_iters=5, memory_budget_gb=1000 / GIB)
    for bad, error in ((0, ValueError), (-1.0, ValueError), (float("nan"), ValueError)):
        with pytest.raises(error, match="memory_budget_gb must be a positive number"):
            stochastic_lanczos_quadrature(_dense(), num_iters=5, memory_budget_gb=bad)
    with pytest.raises(TypeError, match="memory_budget_gb must be a number"):
        stochastic_lanczos_quadrature(_dense(), num_iters=5, memory_budget_gb="16")


def test_one_line_states_the_estimate_before_the_run(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[str] = []

    class Recording(DenseOperator):
        def matvec(self, v: torch.Tensor) -> torch.Tensor:
            calls.append(f"matvec after {len(caplog.records)} records")
            return super().matvec(v)

    op = Recording(_dense().matrix)
    with caplog.at_level(logging.INFO, "lightning_prunelimit.curvature"):
        stochastic_lanczos_quadrature(op, num_iters=3, num_probes=2, memory_budget_gb=5e-6)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("SLQ memory")]
    assert len(lines) == 1 and "\n" not in lines[0]
    assert "estimated peak" in lines[0] and "memory_budget_gb=5e-06" in lines[0]
    assert calls[0] == "matvec after 1 records"


def test_groups_share_progress_and_stop_sees_one_group() -> None:
    op = _dense()
    plan = _plan(12_500)
    assert plan.num_groups == 4
    steps: list[tuple[int, int]] = []
    widths: list[int] = []

    def stop(snapshot) -> bool:
        widths.append(snapshot.num_probes)
        return max(snapshot.lengths) >= 5  # a per-probe criterion: five steps each

    result = run_probe_groups(op, plan, 4, progress=lambda s, t: steps.append((s, t)), stop=stop)
    assert result.lengths == (5, 5, 5, 5)
    assert set(widths) == {1}
    totals = {t for _, t in steps}
    assert totals == {4 * STEPS}
    assert [s for s, _ in steps] == sorted(s for s, _ in steps)
    assert steps[-1][0] == 3 * STEPS + 5


def test_default_budget() -> None:
    available = available_host_memory()
    assert available is not None and available > 0  # Linux: MemAvailable
    budget = default_memory_budget("cpu")
    assert budget is not None
    assert budget * GIB == pytest.approx(0.5 * available, rel=0.2)  # memory moves meanwhile
    if torch.cuda.is_available():
        free, _ = torch.cuda.mem_get_info()
        budget = default_memory_budget("cuda")
        assert budget is not None and 0 < budget * GIB < free + torch.cuda.memory_reserved()


PEAK_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import torch
    from torch import nn
    from lightning_prunelimit.curvature import HessianOperator, stochastic_lanczos_quadrature
    from lightning_prunelimit.curvature import plan_lanczos_memory

    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5000, 4000), nn.Tanh(), nn.Linear(4000, 10))
    batches = [(torch.randn(2, 5000), torch.randint(0, 10, (2,)))]
    op = HessianOperator(model, nn.functional.cross_entropy, batches)
    out = {"dim": op.dim, "runs": []}
    for budget in json.loads(sys.argv[1]):
        plan = plan_lanczos_memory(op.dim, 2, 2, dtype=op.dtype, device="cpu",
                                   budget_gb=budget, hvp_bytes=op.hvp_memory_bytes)
        before = status("VmRSS")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets the peak resident size (VmHWM) to the current one
        spectrum = stochastic_lanczos_quadrature(op, num_iters=2, num_probes=2,
                                                 memory_budget_gb=budget)
        out["runs"].append({"budget": budget, "growth": status("VmHWM") - before,
                            "plan": plan.to_dict(), "nodes": spectrum.nodes.tolist(),
                            "weights": spectrum.weights.tolist()})
        del spectrum
    print(json.dumps(out))
    """
)


@pytest.mark.slow  # about 15-20 s on two shared cores: three runs on a 20M-parameter model
@pytest.mark.skipif(
    not Path("/proc/self/clear_refs").exists(), reason="needs Linux's resettable peak RSS"
)
def test_peak_memory_of_a_20m_parameter_model_stays_within_the_budget(tmp_path: Path) -> None:
    # the model (80 MB of parameters) and the data exist before the run: the growth of the
    # resident size during the run is what the budget must bound
    # a file basis in chunks; groups of one probe with the basis on the device; no budget
    budgets = [0.62, 0.7, None]
    script = tmp_path / "peak.py"
    script.write_text(PEAK_SCRIPT)
    done = subprocess.run(
        [sys.executable, str(script), json.dumps(budgets)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["dim"] > 20_000_000
    disk, grouped, free = out["runs"]
    assert disk["plan"]["basis_storage"] == "disk"
    assert grouped["plan"]["basis_storage"] == "device" and grouped["plan"]["num_groups"] == 2
    for run in (disk, grouped):
        assert run["growth"] <= run["budget"] * GIB, run
        assert run["growth"] < free["growth"]  # the budget changed what was held
        # float32 products over 20M parameters: one-vector and two-vector products round
        # differently (relative 1e-4 here); both budgeted runs take one probe at a time
        nodes, weights = torch.tensor(run["nodes"]), torch.tensor(run["weights"])
        scale = float(nodes.abs().max())
        torch.testing.assert_close(nodes, torch.tensor(free["nodes"]), rtol=0, atol=1e-3 * scale)
        torch.testing.assert_close(weights, torch.tensor(free["weights"]), rtol=0, atol=1e-3)
        same = torch.tensor(disk["nodes"])
        torch.testing.assert_close(nodes, same, rtol=0, atol=1e-5 * scale)


def test_a_full_disk_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from lightning_prunelimit.curvature import lanczos_basis

    full = SimpleNamespace(total=10**9, used=10**9, free=100)
    monkeypatch.setattr(lanczos_basis.shutil, "disk_usage", lambda path: full)
    with pytest.raises(OSError, match="point TMPDIR at a larger disk"):
        LanczosBasis(1, 4, 100, torch.float32, "cpu", storage="disk")
