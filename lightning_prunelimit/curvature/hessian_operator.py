"""The Hessian of a network's loss over a fixed set of batches, as a linear operator."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from lightning_prunelimit.curvature.evaluation_mode import evaluation_mode
from lightning_prunelimit.curvature.float32_precision import full_float32_precision
from lightning_prunelimit.curvature.move_batch import move_batch
from lightning_prunelimit.curvature.native_backend import native_hessian_vector_products
from lightning_prunelimit.curvature.parameter_selection import (
    ParameterSelection,
    select_parameters,
)
from lightning_prunelimit.curvature.pyhessian_backend import pyhessian_hessian_vector_products

BACKENDS: Mapping[str, Callable[..., tuple[list[Tensor], Tensor]]] = {
    "native": native_hessian_vector_products,
    "pyhessian": pyhessian_hessian_vector_products,
}
"""Hessian-vector engines by name (read-only use)."""


def _batch_size(inputs: Any, targets: Any, index: int) -> int:
    for data in (targets, inputs):
        if isinstance(data, Tensor) and data.ndim > 0:
            return int(data.shape[0])
    raise ValueError(
        f"batch {index}: cannot tell its number of samples: the targets (or else the inputs) must "
        "be a tensor whose first dimension is the batch"
    )


def _tensors(data: Any) -> list[Tensor]:
    """The tensors in a tensor or a (nested) tuple, list or dict of them."""
    if isinstance(data, Tensor):
        return [data]
    if isinstance(data, Mapping):
        return [t for value in data.values() for t in _tensors(value)]
    if isinstance(data, (tuple, list)):
        return [t for value in data for t in _tensors(value)]
    return []


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


class HessianOperator:
    """Hessian of the sample-mean loss over fixed batches, w.r.t. selected parameters, as ``H @ v``.

    The loss is the batch-size weighted mean of ``loss_fn(model(inputs), targets)`` over all
    ``batches`` (so, for a mean-reduced ``loss_fn``, the mean over all samples), and ``H`` is its
    Hessian w.r.t. the selected parameters, flattened and concatenated in the model's parameter
    order. The batches are read once into a list and every product uses the same ones.

    Every product evaluates the model in eval mode at its parameters' current values and leaves
    the model exactly as found: training flags of all submodules, parameter values, ``.grad``
    (never written), BatchNorm running statistics and ``requires_grad`` flags. Products are
    computed in the parameters' dtype on their device (both followed if the model moves); the
    batches are moved to that device for each product, so keep them there if memory allows.
    Vectors may come with any dtype and device: they are converted, and results are returned in
    :attr:`dtype` on :attr:`device`.

    Under ``torch.distributed`` (when it is initialised), each rank passes its own batches: sample
    counts and the per-rank sums of ``n_batch * H_batch @ v`` are all-reduced, so the operator is
    that of the union of all ranks' batches. Every rank must then construct the operator and call
    :meth:`matvec` the same number of times, with the same vectors.

    Args:
        model: the network; ``model(inputs)`` gives the outputs.
        loss_fn: ``(outputs, targets) -> scalar`` mean loss of a batch.
        batches: an iterable of ``(inputs, targets)`` pairs (a list or a DataLoader).
        params: which parameters: ``None`` (all trainable ones outside normalisation layers),
            a sequence of names, or a predicate ``(name, param) -> bool``.
        backend: ``"native"`` (default: reverse-over-reverse, the second backward pass of a
            ``(k, dim)`` block vmapped into one) or ``"pyhessian"`` (PyHessian 0.1's
            double-backward utility, one vector after the other; for cross-checks).
        max_block_size: the most vectors whose second backward pass runs at once (``None``:
            the whole block). A larger block is served chunk by chunk after one forward and
            backward pass per batch, so its activation memory is that of one chunk; the
            result does not depend on it (up to rounding). Settable later as an attribute.

    Products run with TF32 and autocast off (:func:`full_float32_precision`), whatever the
    caller set: float32 models get true float32 curvature.

    Construction runs the model once over the batches (no gradients) to count samples and to
    check that the loss is a finite scalar on each batch.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from lightning_prunelimit.curvature import HessianOperator
        >>> _ = torch.manual_seed(0)
        >>> model = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2))
        >>> batches = [(torch.randn(5, 4), torch.randint(0, 2, (5,))) for _ in range(2)]
        >>> op = HessianOperator(model, nn.functional.cross_entropy, batches)
        >>> op.dim, op.num_samples
        (23, 10)
        >>> (op @ torch.randn(4, op.dim)).shape
        torch.Size([4, 23])
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: Callable[[Any, Any], Tensor],
        batches: Iterable[tuple[Any, Any]],
        *,
        params: ParameterSelection = None,
        backend: str = "native",
        max_block_size: int | None = None,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}: choose one of {sorted(BACKENDS)}")
        if not callable(loss_fn):
            raise TypeError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
        selected = select_parameters(model, params)
        dtypes = {p.dtype for _, p in selected}
        if len(dtypes) > 1:
            raise ValueError(
                f"the selected parameters mix dtypes {sorted(map(str, dtypes))}: convert the "
                "model to one dtype (e.g. model.double()) or select parameters of one dtype"
            )
        devices = {p.device for _, p in selected}
        if len(devices) > 1:
            raise ValueError(
                f"the selected parameters live on several devices {sorted(map(str, devices))}: "
                "move the model to one device"
            )
        if not next(iter(dtypes)).is_floating_point:
            raise ValueError("the selected parameters must be floating point")
        self.model = model
        self.loss_fn = loss_fn
        self.backend = backend
        self.max_block_size = max_block_size
        self.param_names: list[str] = [name for name, _ in selected]
        self._shapes: list[torch.Size] = [p.shape for _, p in selected]
        self._numels: list[int] = [p.numel() for _, p in selected]
        self.dim: int = sum(self._numels)
        self._batches: list[tuple[Any, Any]] = self._materialise(batches)
        self._batch_sizes: list[int] = [
            _batch_size(x, y, i) for i, (x, y) in enumerate(self._batches)
        ]
        self.num_samples: int = self._check_batches_and_count()
        self._activation_bytes: int | None = None

    @property
    def max_block_size(self) -> int | None:
        """The most vectors per second backward pass (``None``: a whole block at once)."""
        return self._max_block_size

    @max_block_size.setter
    def max_block_size(self, value: int | None) -> None:
        bad = isinstance(value, bool) or not isinstance(value, int) or value < 1
        if value is not None and bad:
            raise ValueError(f"max_block_size must be a positive int or None, got {value!r}")
        self._max_block_size = value

    @staticmethod
    def _materialise(batches: Iterable[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
        if isinstance(batches, Tensor) or not isinstance(batches, Iterable):
            raise TypeError(
                "batches must be an iterable of (inputs, targets) pairs, got "
                f"{type(batches).__name__}: pass e.g. [(x, y)] or a DataLoader"
            )
        listed = []
        for i, batch in enumerate(batches):
            if not isinstance(batch, (tuple, list)) or len(batch) != 2:
                raise ValueError(
                    f"batch {i} is not an (inputs, targets) pair (got {type(batch).__name__}"
                    f"{f' of length {len(batch)}' if isinstance(batch, (tuple, list)) else ''})"
                    ": pass pairs, e.g. a DataLoader over a TensorDataset(inputs, targets)"
                )
            listed.append((batch[0], batch[1]))
        if not listed:
            raise ValueError("no batches: pass at least one (inputs, targets) batch")
        return listed

    def _check_batches_and_count(self) -> int:
        device, dtype = self.device, self.dtype
        bad: list[tuple[int, float]] = []
        with torch.no_grad(), evaluation_mode(self.model):
            for i, (inputs, targets) in enumerate(self._batches):
                outputs = self.model(move_batch(inputs, device, dtype))
                loss = self.loss_fn(outputs, move_batch(targets, device, dtype))
                if not isinstance(loss, Tensor) or loss.ndim != 0:
                    shape = tuple(loss.shape) if isinstance(loss, Tensor) else type(loss)
                    raise ValueError(
                        f"loss_fn must return a scalar tensor (the mean loss of the batch), got "
                        f"{shape} on batch {i}: use reduction='mean'"
                    )
                if not torch.isfinite(loss):
                    bad.append((i, float(loss)))
        counts = torch.tensor([sum(self._batch_sizes), len(bad)], dtype=torch.float64)
        if _distributed():
            counts = self._all_reduce(counts)
        if bad:
            i, value = bad[0]
            raise ValueError(
                f"the loss is not finite on batch {i} (loss = {value}): check that batch's data "
                "for NaN/inf and that the model's parameters are finite"
            )
        if counts[1] > 0:
            raise ValueError(
                "the loss is not finite on a batch of another rank: check the data and the model"
            )
        return int(counts[0])

    def _all_reduce(self, tensor: Tensor) -> Tensor:
        """Sum ``tensor`` over all ranks: on the CPU for gloo and MPI, on :attr:`device` else."""
        host = torch.distributed.get_backend() in ("gloo", "mpi")
        work = tensor.cpu() if host else tensor.to(self.device)
        torch.distributed.all_reduce(work, op=torch.distributed.ReduceOp.SUM)
        return work.to(tensor.device)

    @property
    def params(self) -> list[nn.Parameter]:
        """The selected parameters, looked up in the model now (so a moved model is followed)."""
        lookup = dict(self.model.named_parameters())
        return [lookup[name] for name in self.param_names]

    @property
    def device(self) -> torch.device:
        """Device of the selected parameters: products are computed and returned there."""
        return self.params[0].device

    @property
    def dtype(self) -> torch.dtype:
        """Dtype of the selected parameters: products are computed and returned in it."""
        return self.params[0].dtype

    def activation_bytes(self) -> int:
        """Bytes of the activations of one forward pass over the largest batch (measured once).

        The sum of the sizes of the inputs and of every tensor output of every leaf module, on
        one no-grad forward pass (hooks), so it does not depend on the device's allocator.
        Operations outside modules (functional additions, reshapes) are not counted.

        Example:
            >>> import torch
            >>> from torch import nn
            >>> op = HessianOperator(nn.Linear(3, 2), nn.functional.mse_loss,
            ...                      [(torch.ones(5, 3), torch.zeros(5, 2))])
            >>> op.activation_bytes()  # inputs 5 x 3 and outputs 5 x 2 float32
            100
        """
        if self._activation_bytes is None:
            index = max(range(len(self._batches)), key=self._batch_sizes.__getitem__)
            inputs, _ = self._batches[index]
            device, dtype = self.device, self.dtype
            inputs = move_batch(inputs, device, dtype)
            total = [sum(t.numel() * t.element_size() for t in _tensors(inputs))]

            def count(module: nn.Module, args: Any, output: Any) -> None:
                total[0] += sum(t.numel() * t.element_size() for t in _tensors(output))

            leaves = [m for m in self.model.modules() if next(m.children(), None) is None]
            handles = [m.register_forward_hook(count) for m in leaves]
            try:
                with torch.no_grad(), evaluation_mode(self.model):
                    self.model(inputs)
            finally:
                for handle in handles:
                    handle.remove()
            self._activation_bytes = int(total[0])
        return self._activation_bytes

    def hvp_memory_bytes(self, num_vectors: int, block_size: int | None = None) -> int:
        """Estimated transient memory of one :meth:`matvec` of ``num_vectors`` vectors.

        With ``A`` = :meth:`activation_bytes`, ``s`` the dtype's size and ``c`` the chunk
        (``block_size``, default :attr:`max_block_size`, at most ``num_vectors``): the forward
        and first backward pass with its graph, ``3 A + dim s``; each vector of a chunk, ``2 A
        + dim s``; each vector of the block, ``dim s`` (its product). An estimate, on the safe
        side on the CPU (a 20M-parameter MLP used about half of it); operations outside
        modules are not counted. For memory planning.

        Example:
            >>> import torch
            >>> from torch import nn
            >>> op = HessianOperator(nn.Linear(3, 2), nn.functional.mse_loss,
            ...                      [(torch.ones(5, 3), torch.zeros(5, 2))])
            >>> op.hvp_memory_bytes(4, block_size=1)  # A = 100, dim = 8, s = 4
            692
        """
        chunk = self.max_block_size if block_size is None else block_size
        chunk = num_vectors if chunk is None else min(chunk, num_vectors)
        a, vector = self.activation_bytes(), self.dim * torch.finfo(self.dtype).bits // 8
        return 3 * a + vector + chunk * (2 * a + vector) + num_vectors * vector

    def parameter_vector(self) -> Tensor:
        """The current values of the selected parameters, flattened into one ``(dim,)`` tensor.

        Example:
            >>> import torch
            >>> from torch import nn
            >>> model = nn.Linear(2, 1)
            >>> op = HessianOperator(model, nn.functional.mse_loss,
            ...                      [(torch.ones(3, 2), torch.zeros(3, 1))])
            >>> bool((op.parameter_vector()[:2] == model.weight.view(-1)).all())
            True
        """
        return torch.cat([p.detach().reshape(-1) for p in self.params]).clone()

    def unflatten(self, v: Tensor) -> list[Tensor]:
        """Split a flat ``(dim,)`` vector (or ``(k, dim)`` block) into parameter-shaped views.

        A block gives tensors of shape ``(k, *param.shape)``.

        Example:
            >>> import torch
            >>> from torch import nn
            >>> op = HessianOperator(nn.Linear(2, 1), nn.functional.mse_loss,
            ...                      [(torch.ones(3, 2), torch.zeros(3, 1))])
            >>> [tuple(t.shape) for t in op.unflatten(torch.arange(3.0))]
            [(1, 2), (1,)]
        """
        self._check_vector(v)
        leading = tuple(v.shape[:-1])
        parts = v.split(self._numels, dim=-1)
        return [part.view(*leading, *shape) for part, shape in zip(parts, self._shapes)]

    def _check_vector(self, v: Tensor) -> None:
        if not isinstance(v, Tensor):
            raise TypeError(f"expected a torch.Tensor, got {type(v).__name__}")
        if v.ndim not in (1, 2) or v.shape[-1] != self.dim or v.numel() == 0:
            raise ValueError(
                f"expected a vector of shape ({self.dim},) or a non-empty block (k, {self.dim}), "
                f"got shape {tuple(v.shape)}: the operator's dim is the number of selected "
                "parameter entries"
            )

    def matvec(self, v: Tensor) -> Tensor:
        """Hessian times ``v``, for ``v`` of shape ``(dim,)`` or a block ``(k, dim)``.

        A block is served with one pass over the batches. The result has ``v``'s shape, the
        operator's dtype and device.

        Example:
            >>> import torch
            >>> from torch import nn
            >>> op = HessianOperator(nn.Linear(2, 1, bias=False), nn.functional.mse_loss,
            ...                      [(torch.eye(2), torch.zeros(2, 1))])
            >>> op.matvec(torch.tensor([1.0, 0.0])).tolist()  # H = 2 / n * X^T X = I
            [1.0, 0.0]
        """
        self._check_vector(v)
        single = v.ndim == 1
        device, dtype = self.device, self.dtype
        block = v.reshape(-1, self.dim).to(device=device, dtype=dtype)
        k = block.shape[0]
        tangents = self.unflatten(block)
        engine = BACKENDS[self.backend]
        values = [p.detach() for p in self.params]
        # sum over batches (and ranks) of (n_batch / num_samples) * H_batch @ v
        total = torch.empty(k, self.dim, device=device, dtype=dtype)
        pieces = total.split(self._numels, dim=1)
        losses = []
        with evaluation_mode(self.model), full_float32_precision():
            for b, ((inputs, targets), size) in enumerate(zip(self._batches, self._batch_sizes)):
                products, loss = engine(
                    self.model,
                    self.param_names,
                    values,
                    move_batch(inputs, device, dtype),
                    move_batch(targets, device, dtype),
                    self.loss_fn,
                    tangents,
                    chunk_size=self.max_block_size,
                )
                share = size / self.num_samples
                for piece, product in zip(pieces, products):
                    if b == 0:
                        torch.mul(product.reshape(k, -1), share, out=piece)
                    else:
                        piece.add_(product.reshape(k, -1), alpha=share)
                losses.append(loss.reshape(()))
        finite = torch.isfinite(torch.stack(losses))
        if _distributed():
            flags = torch.tensor([float((~finite).sum())], dtype=torch.float64)
            flags = self._all_reduce(flags)
            total = self._all_reduce(total)
            if flags[0] > 0 and bool(finite.all()):
                raise ValueError(
                    "the loss is not finite on a batch of another rank: check the data and the "
                    "model's parameters"
                )
        if not bool(finite.all()):
            i = int((~finite).nonzero()[0])
            raise ValueError(
                f"the loss is not finite on batch {i} (loss = {float(losses[i])}): check that "
                "batch's data for NaN/inf and that the model's parameters are finite"
            )
        return total[0] if single else total

    def __matmul__(self, v: Tensor) -> Tensor:
        return self.matvec(v)

    def __repr__(self) -> str:
        return (
            f"HessianOperator(dim={self.dim}, num_batches={len(self._batches)}, "
            f"num_samples={self.num_samples}, backend={self.backend!r}, "
            f"max_block_size={self.max_block_size}, dtype={self.dtype}, "
            f"device={self.device})"
        )
