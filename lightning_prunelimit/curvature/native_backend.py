"""The default Hessian-vector engine: reverse-over-reverse, one data pass for a block of vectors.

For a block of ``k > 1`` vectors the model runs forward and backward once inside
``torch.func.vjp`` of ``torch.func.grad``, and the ``k`` second backward passes run as one
``vmap``-ed pass. For a single vector it is a plain autograd double backward, which has less
per-call overhead (it matters on a GPU). Engines measured on the FC5-size MLP of
``benchmarks/hvp_speed.py`` for blocks of 16: this one, forward-over-reverse (``jvp`` of
``grad`` under ``vmap``) and ``torch.autograd.grad(..., is_grads_batched=True)``; this one was
the fastest or within noise of it on 2-core CPUs and on an H200 (``benchmarks/README.md``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vjp, vmap


def _single_vector(
    model: nn.Module,
    names: list[str],
    values: Sequence[Tensor],
    inputs: Any,
    targets: Any,
    loss_fn: Callable[[Any, Any], Tensor],
    tangent: Sequence[Tensor],
) -> tuple[list[Tensor], Tensor]:
    with torch.enable_grad():
        leaves = [value.detach().requires_grad_(True) for value in values]
        loss = loss_fn(functional_call(model, dict(zip(names, leaves)), (inputs,)), targets)
        gradients = torch.autograd.grad(loss, leaves, create_graph=True, allow_unused=True)
        # A gradient that does not depend on the parameters has zero Hessian rows (and, by
        # symmetry, columns): it drops out of the product.
        live = [i for i, g in enumerate(gradients) if g is not None and g.requires_grad]
        found: Sequence[Tensor | None] = [None] * len(leaves)
        if live:
            found = torch.autograd.grad(
                [gradients[i] for i in live], leaves, [tangent[i] for i in live], allow_unused=True
            )
    products = [torch.zeros_like(t) if h is None else h.detach() for h, t in zip(found, tangent)]
    return products, loss.detach()


def native_hessian_vector_products(
    model: nn.Module,
    names: Sequence[str],
    values: Sequence[Tensor],
    inputs: Any,
    targets: Any,
    loss_fn: Callable[[Any, Any], Tensor],
    tangents: Sequence[Tensor],
    chunk_size: int | None = None,
) -> tuple[list[Tensor], Tensor]:
    """Hessian of ``loss_fn(model(inputs), targets)`` w.r.t. named parameters, times tangents.

    The model runs forward and backward once; the ``k`` second backward passes are vmapped, in
    chunks of ``chunk_size`` vectors (all at once when ``None``) so that the activation memory
    of the second backward is that of one chunk. The parameters named in ``names`` are
    replaced by ``values`` (through ``torch.func.functional_call``) for this call: nothing in
    the model is written, ``.grad`` included. Parameters that do not enter the gradient's
    graph get zero products.

    Args:
        model: the network (its train/eval mode is the caller's business).
        names: parameter names, as in ``model.named_parameters()``.
        values: the point at which the Hessian is taken, one tensor per name.
        inputs: passed to ``model`` as its single argument.
        targets: passed to ``loss_fn`` after the model output.
        loss_fn: ``(outputs, targets) -> scalar``.
        tangents: one tensor of shape ``(k, *value.shape)`` per name.
        chunk_size: the most vectors per vmapped second backward pass.

    Returns:
        The products, one ``(k, *value.shape)`` tensor per name, and the detached loss.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Linear(2, 1, bias=False)
        >>> with torch.no_grad():
        ...     _ = model.weight.copy_(torch.tensor([[1.0, 2.0]]))
        >>> x, y = torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.zeros(2, 1)
        >>> hv, loss = native_hessian_vector_products(
        ...     model, ["weight"], [model.weight.detach()], x, y, nn.functional.mse_loss,
        ...     [torch.eye(2).view(2, 1, 2)])
        >>> hv[0].view(2, 2).tolist(), float(loss)
        ([[1.0, 0.0], [0.0, 1.0]], 2.5)
    """
    names = list(names)
    if tangents[0].shape[0] == 1:
        products, loss = _single_vector(
            model, names, values, inputs, targets, loss_fn, [t[0] for t in tangents]
        )
        return [p.unsqueeze(0) for p in products], loss

    def loss_and_value(*point: Tensor) -> tuple[Tensor, Tensor]:
        loss = loss_fn(functional_call(model, dict(zip(names, point)), (inputs,)), targets)
        return loss, loss.detach()

    gradient = grad(loss_and_value, argnums=tuple(range(len(names))), has_aux=True)
    # torch.func transforms ignore an outer no_grad; it only keeps ordinary autograd from
    # recording a graph through parameters that are not selected but require grad.
    with torch.no_grad():
        _, pullback, loss = vjp(gradient, *values, has_aux=True)
        products = list(vmap(pullback, chunk_size=chunk_size)(tuple(tangents)))
    return products, loss
