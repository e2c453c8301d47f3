"""HessianOperator against dense Hessians of real (digits) problems, model hygiene and errors."""

from __future__ import annotations

import math

import pytest
import torch
from _curvature_problems import (
    PROBLEM_NAMES,
    Problem,
    build_problem,
    digits_batches,
    exact_hessian,
    tanh_mlp,
)
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_prunelimit.curvature import BACKENDS, HessianOperator

pytestmark = pytest.mark.usefixtures("one_thread")

cross_entropy = nn.functional.cross_entropy


def random_block(k: int, dim: int, seed: int = 0) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(k, dim, generator=generator, dtype=torch.float64)


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_matvec_matches_the_exact_hessian(problem: Problem, backend: str) -> None:
    op = HessianOperator(problem.model, cross_entropy, problem.batches, backend=backend)
    assert op.dim == problem.dim
    block = random_block(3, op.dim)
    expected = block @ problem.hessian.T
    torch.testing.assert_close(op.matvec(block), expected, rtol=1e-6, atol=1e-12)
    torch.testing.assert_close(op @ block[0], expected[0], rtol=1e-6, atol=1e-12)
    # Unit vectors recover whole columns: the entire matrix is right, not only random directions.
    columns = torch.eye(op.dim, dtype=torch.float64)[:: max(1, op.dim // 7)]
    torch.testing.assert_close(op.matvec(columns), columns @ problem.hessian, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("name", PROBLEM_NAMES)
def test_block_equals_stacked_single_products_and_backends_agree(name: str) -> None:
    problem = build_problem(name)
    native = HessianOperator(problem.model, cross_entropy, problem.batches)
    reference = HessianOperator(problem.model, cross_entropy, problem.batches, backend="pyhessian")
    block = random_block(4, native.dim, seed=1)
    together = native.matvec(block)
    singles = torch.stack([native.matvec(v) for v in block])
    torch.testing.assert_close(together, singles, rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(together, reference.matvec(block), rtol=1e-10, atol=1e-14)


def snapshot(model: nn.Module) -> dict[str, object]:
    return {
        "training": [m.training for m in model.modules()],
        "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grad_ids": [id(p.grad) if p.grad is not None else None for p in model.parameters()],
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
    }


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_model_is_left_exactly_as_found_even_in_train_mode(backend: str) -> None:
    problem = build_problem("bn_cnn")
    model = problem.model.train()
    model[5].eval()  # a mixed state: one BatchNorm frozen inside a training model
    conv = model[0]
    conv.weight.grad = torch.full_like(conv.weight, 0.5)  # a pre-existing gradient
    model[4].bias.requires_grad_(False)  # a frozen parameter
    before = snapshot(model)
    running_mean = model[1].running_mean.clone()

    op = HessianOperator(model, cross_entropy, problem.batches, backend=backend)
    # The frozen bias is out of the default selection; give it back by name to differentiate it.
    named = HessianOperator(
        model, cross_entropy, problem.batches, params=["4.weight", "4.bias"], backend=backend
    )
    op.matvec(random_block(2, op.dim))
    named.matvec(random_block(1, named.dim)[0])
    op.parameter_vector()

    after = snapshot(model)
    assert after["training"] == before["training"]
    assert after["requires_grad"] == before["requires_grad"]
    assert after["grad_ids"] == before["grad_ids"]
    for old, new in zip(before["grads"], after["grads"]):
        assert (old is None) == (new is None)
        if new is not None:
            assert torch.equal(old, new)
    assert all(p.grad is None or p.grad.grad_fn is None for p in model.parameters())
    assert before["state"].keys() == after["state"].keys()
    for key, value in before["state"].items():
        assert torch.equal(value, after["state"][key]), key
    assert torch.equal(model[1].running_mean, running_mean)
    # The products are those of the eval-mode network even though the model was training.
    model.eval()
    hessian = exact_hessian(model, problem.batches, params=["4.weight", "4.bias"])
    vector = random_block(1, named.dim, seed=3)[0]
    torch.testing.assert_close(named.matvec(vector), hessian @ vector, rtol=1e-6, atol=1e-12)


def test_default_selection_leaves_out_normalisation_layers_and_frozen_parameters() -> None:
    model = nn.Sequential(
        nn.Linear(4, 6),
        nn.LayerNorm(6),
        nn.Linear(6, 6),
        nn.GroupNorm(2, 6),
        nn.Linear(6, 3),
        nn.BatchNorm1d(3),
    ).double()
    model[4].bias.requires_grad_(False)
    batches = [(torch.randn(5, 4, dtype=torch.float64), torch.randint(0, 3, (5,)))]
    op = HessianOperator(model, cross_entropy, batches)
    assert op.param_names == ["0.weight", "0.bias", "2.weight", "2.bias", "4.weight"]
    assert op.dim == 24 + 6 + 36 + 6 + 18
    assert [p.shape for p in op.params] == [(6, 4), (6,), (6, 6), (6,), (3, 6)]
    assert all(p is q for p, q in zip(op.params, [model[0].weight, model[0].bias]))


def test_names_and_predicate_select_the_matching_sub_block_of_the_hessian() -> None:
    problem = build_problem("tanh_mlp")
    full = problem.hessian
    # Parameter order: 0.weight (1024), 0.bias (16), 2.weight (160), 2.bias (10).
    last_layer = slice(1040, 1210)
    by_name = HessianOperator(
        problem.model, cross_entropy, problem.batches, params=["2.weight", "2.bias"]
    )
    by_predicate = HessianOperator(
        problem.model, cross_entropy, problem.batches, params=lambda name, p: name.startswith("2.")
    )
    assert by_name.dim == by_predicate.dim == 170
    block = random_block(2, 170, seed=5)
    expected = block @ full[last_layer, last_layer]
    torch.testing.assert_close(by_name.matvec(block), expected, rtol=1e-6, atol=1e-12)
    torch.testing.assert_close(by_predicate.matvec(block), expected, rtol=1e-6, atol=1e-12)
    # The selection follows the model's order, not the order of the names given.
    reordered = HessianOperator(
        problem.model, cross_entropy, problem.batches, params=["2.bias", "2.weight"]
    )
    assert reordered.param_names == ["2.weight", "2.bias"]


def test_batches_are_read_once_and_weighted_by_their_size() -> None:
    problem = build_problem("tanh_mlp")
    one_shot = (batch for batch in problem.batches)  # a generator can be iterated only once
    op = HessianOperator(problem.model, cross_entropy, one_shot)
    assert op.num_samples == sum(len(y) for _, y in problem.batches) == 360
    v = random_block(1, op.dim, seed=2)[0]
    first, second = op.matvec(v), op.matvec(v)
    assert torch.equal(first, second)
    # Sample-weighted mean of per-batch Hessians, built from single-batch operators.
    weighted = sum(
        len(y) * HessianOperator(problem.model, cross_entropy, [(x, y)]).matvec(v)
        for x, y in problem.batches
    )
    torch.testing.assert_close(first, weighted / 360, rtol=1e-10, atol=1e-14)
    # A DataLoader works the same (its last batch is the short one here).
    x = torch.cat([x for x, _ in problem.batches])
    y = torch.cat([y for _, y in problem.batches])
    loader = DataLoader(TensorDataset(x, y), batch_size=100)
    from_loader = HessianOperator(problem.model, cross_entropy, loader)
    assert from_loader.num_samples == 360
    torch.testing.assert_close(from_loader.matvec(v), first, rtol=1e-10, atol=1e-14)
    unweighted = sum(
        HessianOperator(problem.model, cross_entropy, [(x, y)]).matvec(v)
        for x, y in problem.batches
    )
    assert not torch.allclose(first, unweighted / len(problem.batches), rtol=1e-3)


def test_vectors_are_converted_and_results_come_back_in_the_model_dtype() -> None:
    problem = build_problem("relu_mlp")
    op = HessianOperator(problem.model, cross_entropy, problem.batches)
    assert op.dtype == torch.float64 and op.device == torch.device("cpu")
    v32 = random_block(2, op.dim, seed=4).float()
    out = op.matvec(v32)
    assert out.dtype == torch.float64 and out.shape == (2, op.dim)
    torch.testing.assert_close(out, v32.double() @ problem.hessian.T, rtol=1e-6, atol=1e-12)
    signs = torch.ones(op.dim, dtype=torch.int64)
    torch.testing.assert_close(op.matvec(signs), problem.hessian.sum(dim=1), rtol=1e-6, atol=1e-12)


def test_float32_model_products_are_computed_in_float32() -> None:
    problem = build_problem("tanh_mlp")
    model32 = problem.model.float()
    batches = [(x.float(), y) for x, y in problem.batches]
    op = HessianOperator(model32, cross_entropy, batches)
    v = random_block(1, op.dim, seed=6)[0]
    out = op.matvec(v)
    assert out.dtype == torch.float32
    expected = problem.hessian @ v
    error = float((out.double() - expected).norm() / expected.norm())
    assert error < 1e-4


def test_parameter_vector_and_unflatten() -> None:
    problem = build_problem("bn_cnn")
    op = HessianOperator(problem.model, cross_entropy, problem.batches)
    flat = op.parameter_vector()
    assert flat.shape == (op.dim,)
    for piece, param in zip(op.unflatten(flat), op.params):
        assert torch.equal(piece, param.detach())
    flat[0] += 1.0  # a copy: the model is not written through it
    assert not torch.equal(op.unflatten(flat)[0], op.params[0].detach())
    block = torch.stack([flat, 2 * flat])
    pieces = op.unflatten(block)
    assert [tuple(p.shape) for p in pieces] == [(2, *q.shape) for q in op.params]
    assert torch.equal(pieces[1][1], 2 * op.unflatten(flat)[1])


def test_loss_is_the_sample_mean_so_duplicated_batches_change_nothing() -> None:
    problem = build_problem("relu_mlp")
    op = HessianOperator(problem.model, cross_entropy, problem.batches)
    doubled = HessianOperator(problem.model, cross_entropy, problem.batches * 2)
    v = random_block(1, op.dim, seed=8)[0]
    assert doubled.num_samples == 2 * op.num_samples
    torch.testing.assert_close(doubled.matvec(v), op.matvec(v), rtol=1e-10, atol=1e-14)


# --- errors ------------------------------------------------------------------------------------


def small_setup() -> tuple[nn.Module, list[tuple[Tensor, Tensor]]]:
    return tanh_mlp(), digits_batches(sizes=(30, 20))


def test_empty_batches_are_rejected() -> None:
    model, _ = small_setup()
    with pytest.raises(ValueError, match="no batches: pass at least one"):
        HessianOperator(model, cross_entropy, [])


def test_non_finite_loss_names_the_batch() -> None:
    model, batches = small_setup()
    bad = batches + [(torch.full_like(batches[0][0], math.nan), batches[0][1])]
    with pytest.raises(ValueError, match="not finite on batch 2.*check that batch's data"):
        HessianOperator(model, cross_entropy, bad)
    op = HessianOperator(model, cross_entropy, batches)
    with torch.no_grad():
        model[2].bias[0] = math.inf  # parameters broken after construction
    with pytest.raises(ValueError, match="not finite on batch 0"):
        op.matvec(torch.ones(op.dim, dtype=torch.float64))


def test_no_selected_parameters_is_rejected() -> None:
    model, batches = small_setup()
    with pytest.raises(ValueError, match="no parameters selected"):
        HessianOperator(model, cross_entropy, batches, params=lambda name, p: False)
    with pytest.raises(ValueError, match="unknown parameter names \\['3.weight'\\]"):
        HessianOperator(model, cross_entropy, batches, params=["3.weight"])
    with pytest.raises(ValueError, match="single string"):
        HessianOperator(model, cross_entropy, batches, params="0.weight")


def test_vectors_of_the_wrong_shape_are_rejected() -> None:
    model, batches = small_setup()
    op = HessianOperator(model, cross_entropy, batches)
    for bad in (torch.ones(op.dim + 1), torch.ones(2, op.dim - 1), torch.ones(2, 2, op.dim)):
        with pytest.raises(ValueError, match=f"shape \\({op.dim},\\)"):
            op.matvec(bad)
    with pytest.raises(TypeError):
        op.matvec([1.0] * op.dim)


def test_non_scalar_loss_is_rejected() -> None:
    model, batches = small_setup()

    def per_sample(outputs: Tensor, targets: Tensor) -> Tensor:
        return cross_entropy(outputs, targets, reduction="none")

    with pytest.raises(ValueError, match="scalar tensor.*reduction='mean'"):
        HessianOperator(model, per_sample, batches)


def test_unknown_backend_lists_the_valid_ones() -> None:
    model, batches = small_setup()
    with pytest.raises(ValueError, match="unknown backend 'curvlinops'.*'native', 'pyhessian'"):
        HessianOperator(model, cross_entropy, batches, backend="curvlinops")


def test_batches_must_be_pairs() -> None:
    model, batches = small_setup()
    with pytest.raises(ValueError, match="batch 0 is not an \\(inputs, targets\\) pair"):
        HessianOperator(model, cross_entropy, [batches[0][0]])
    with pytest.raises(TypeError, match="iterable of \\(inputs, targets\\)"):
        HessianOperator(model, cross_entropy, batches[0][0])


def test_a_parameter_outside_the_graph_gets_zero_products() -> None:
    class WithSpare(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.used = nn.Linear(64, 10)
            self.spare = nn.Linear(3, 2)  # trainable, so selected, but never called

        def forward(self, x: Tensor) -> Tensor:
            return self.used(x)

    torch.manual_seed(0)
    model = WithSpare().double()
    batches = digits_batches(sizes=(30, 20))
    op = HessianOperator(model, cross_entropy, batches)
    assert op.param_names == ["used.weight", "used.bias", "spare.weight", "spare.bias"]
    block = random_block(2, op.dim, seed=9)
    out = op.matvec(block)
    assert torch.equal(out[:, 650:], torch.zeros(2, 8, dtype=torch.float64))
    used = exact_hessian(model, batches, params=["used.weight", "used.bias"])
    torch.testing.assert_close(out[:, :650], block[:, :650] @ used, rtol=1e-6, atol=1e-12)
    with pytest.raises(ValueError, match="pyhessian backend needs every selected parameter"):
        HessianOperator(model, cross_entropy, batches, backend="pyhessian").matvec(block)
