"""Hessian-vector products computed with PyHessian 0.1's double-backward utility.

Used for cross-checks and the speed benchmark. Only ``pyhessian.utils.hessian_vector_product`` is
called; PyHessian's ``hessian`` class is not used (its ``density()`` needs the removed
``torch.eig``, and its constructor switches the model to eval mode for good and leaves
graph-carrying ``.grad`` tensors behind).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call


def pyhessian_hessian_vector_products(
    model: nn.Module,
    names: Sequence[str],
    values: Sequence[Tensor],
    inputs: Any,
    targets: Any,
    loss_fn: Callable[[Any, Any], Tensor],
    tangents: Sequence[Tensor],
    chunk_size: int | None = None,
) -> tuple[list[Tensor], Tensor]:
    """Same contract as ``native_hessian_vector_products``, computed the PyHessian way.

    The vectors are taken one at a time, so ``chunk_size`` (accepted for the common contract)
    changes nothing.

    One forward pass and one ``create_graph`` backward pass per call, then one double-backward
    pass per tangent through ``pyhessian.utils.hessian_vector_product`` (which keeps the graph).
    Gradients are taken w.r.t. detached copies of ``values``, so no ``.grad`` is written.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Linear(2, 1, bias=False)
        >>> x, y = torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.zeros(2, 1)
        >>> hv, _ = pyhessian_hessian_vector_products(
        ...     model, ["weight"], [model.weight.detach()], x, y, nn.functional.mse_loss,
        ...     [torch.eye(2).view(2, 1, 2)])
        >>> hv[0].view(2, 2).tolist()
        [[1.0, 0.0], [0.0, 1.0]]
    """
    from pyhessian.utils import hessian_vector_product

    names = list(names)
    with torch.enable_grad():
        leaves = [value.detach().requires_grad_(True) for value in values]
        outputs = functional_call(model, dict(zip(names, leaves)), (inputs,))
        loss = loss_fn(outputs, targets)
        gradients = torch.autograd.grad(loss, leaves, create_graph=True, allow_unused=True)
        missing = [n for n, g in zip(names, gradients) if g is None or not g.requires_grad]
        if missing:
            raise ValueError(
                f"the pyhessian backend needs every selected parameter to enter the gradient's "
                f"graph, but {missing} do not (their Hessian rows vanish identically): use "
                "backend='native' or leave those parameters out"
            )
        rows: list[list[Tensor]] = []
        for i in range(tangents[0].shape[0]):
            product = hessian_vector_product(list(gradients), leaves, [t[i] for t in tangents])
            rows.append([p.detach() for p in product])
    products = [torch.stack(column) for column in zip(*rows)]
    return products, loss.detach()
