"""Where the Lanczos basis lives: on the device, in host memory or in a temporary file."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

STORAGES = ("device", "host", "disk")
"""Places a :class:`LanczosBasis` can keep its vectors."""


def _host_tensor(shape: tuple[int, ...], dtype: torch.dtype, *, pin: bool) -> Tensor:
    """An empty host tensor, page-locked when asked and possible (faster copies to a GPU)."""
    if pin:
        try:
            return torch.empty(shape, dtype=dtype, pin_memory=True)
        except RuntimeError:  # page-locked memory is limited; pageable memory still works
            pass
    return torch.empty(shape, dtype=dtype)


class LanczosBasis:
    """The ``m`` basis vectors of each of ``k`` Lanczos runs, and re-orthogonalisation against them.

    ``storage="device"`` keeps a ``(k, m, dim)`` tensor on ``device`` (fastest).
    ``storage="host"`` keeps it in host memory (pinned when ``device`` is a GPU) and
    ``storage="disk"`` in an anonymous temporary file (removed when the basis is closed or
    collected); both bring the vectors to ``device`` ``chunk`` at a time when orthogonalising,
    so the device holds one chunk of ``chunk x dim`` entries (disk storage also a host buffer
    of that size). Vectors come and go as ``(len(probes), dim)`` tensors on ``device``.

    Args:
        num_probes: ``k``, the number of runs.
        num_vectors: ``m``, the most basis vectors per run.
        dim: length of a vector.
        dtype: dtype of the stored vectors.
        device: where vectors are computed with.
        storage: ``"device"``, ``"host"`` or ``"disk"``.
        chunk: vectors per transfer for host and disk storage (default: all of a run's).

    Example:
        >>> import torch
        >>> basis = LanczosBasis(1, 2, 3, torch.float64, "cpu", storage="disk", chunk=1)
        >>> basis.write([0], 0, torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64))
        >>> basis.orthogonalise([0], 0, torch.tensor([[2.0, 5.0, 0.0]], dtype=torch.float64))
        tensor([[0., 5., 0.]], dtype=torch.float64)
        >>> basis.close()
    """

    def __init__(
        self,
        num_probes: int,
        num_vectors: int,
        dim: int,
        dtype: torch.dtype,
        device: torch.device | str,
        *,
        storage: str = "device",
        chunk: int | None = None,
    ) -> None:
        if storage not in STORAGES:
            raise ValueError(f"unknown basis storage {storage!r}: choose one of {list(STORAGES)}")
        bad = isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1
        if chunk is not None and bad:
            raise ValueError(f"reorth_chunk must be a positive int, got {chunk!r}")
        self.num_probes, self.num_vectors, self.dim = num_probes, num_vectors, dim
        self.dtype, self.device, self.storage = dtype, torch.device(device), storage
        self.chunk = num_vectors if chunk is None else min(chunk, num_vectors)
        self._item = torch.finfo(dtype).bits // 8
        self._tensor: Tensor | None = None
        self._file: Any = None
        self._buffer: Tensor | None = None
        shape = (num_probes, num_vectors, dim)
        if storage == "device":
            self._tensor = torch.empty(shape, dtype=dtype, device=device)
        elif storage == "host":
            self._tensor = _host_tensor(shape, dtype, pin=self.device.type == "cuda")
        else:
            size = num_probes * num_vectors * dim * self._item
            folder = tempfile.gettempdir()
            free = shutil.disk_usage(folder).free
            if free < size:
                raise OSError(
                    f"the Lanczos basis needs {size / 2**30:.2f} GiB in a temporary file but "
                    f"{folder} has {free / 2**30:.2f} GiB free: point TMPDIR at a larger disk, "
                    "raise memory_budget_gb, or use fewer num_iters"
                )
            # closed by close() or when collected
            self._file = tempfile.TemporaryFile(prefix="lanczos-basis-")  # noqa: SIM115
            self._file.truncate(size)
            self._buffer = _host_tensor((self.chunk, dim), dtype, pin=self.device.type == "cuda")

    # -- storage ----------------------------------------------------------------------------

    def _offset(self, probe: int, index: int) -> int:
        return (probe * self.num_vectors + index) * self.dim * self._item

    def _read_rows(self, probe: int, start: int, stop: int) -> Tensor:
        """Vectors ``start:stop`` of one run, on the device."""
        if self._tensor is not None:
            rows = self._tensor[probe, start:stop]
            return rows.to(self.device, non_blocking=True)
        assert self._buffer is not None
        buffer = self._buffer[: stop - start]
        view = memoryview(buffer.view(torch.uint8).numpy()).cast("B")
        offset, done = self._offset(probe, start), 0
        while done < len(view):
            count = os.preadv(self._file.fileno(), [view[done:]], offset + done)
            if count <= 0:
                raise OSError("the Lanczos basis file ended early")
            done += count
        return buffer.to(self.device)  # blocking: the buffer is reused by the next read

    def write(self, probes: Sequence[int], index: int, vectors: Tensor) -> None:
        """Store ``vectors[r]`` as vector ``index`` of run ``probes[r]``.

        Example:
            >>> import torch
            >>> basis = LanczosBasis(2, 1, 2, torch.float32, "cpu")
            >>> basis.write([1], 0, torch.ones(1, 2))
            >>> basis.read([1], 0).tolist()
            [[1.0, 1.0]]
        """
        if self.storage == "device" and len(probes) == self.num_probes:
            assert self._tensor is not None
            self._tensor[:, index] = vectors
            return
        for row, probe in enumerate(probes):
            if self._tensor is not None:
                self._tensor[probe, index].copy_(vectors[row])
                continue
            data = vectors[row].detach().to(device="cpu", dtype=self.dtype).contiguous()
            view = memoryview(data.view(torch.uint8).numpy()).cast("B")
            offset, done = self._offset(probe, index), 0
            while done < len(view):
                done += os.pwrite(self._file.fileno(), view[done:], offset + done)

    def read(self, probes: Sequence[int], index: int) -> Tensor:
        """Vector ``index`` of each run in ``probes``, as a ``(len(probes), dim)`` device tensor.

        Example:
            >>> import torch
            >>> basis = LanczosBasis(1, 1, 2, torch.float32, "cpu", storage="host")
            >>> basis.write([0], 0, torch.tensor([[3.0, 4.0]]))
            >>> basis.read([0], 0).tolist()
            [[3.0, 4.0]]
        """
        if self.storage == "device":
            assert self._tensor is not None
            if len(probes) == self.num_probes:
                return self._tensor[:, index]
            return self._tensor[torch.tensor(list(probes), device=self.device), index]
        out = torch.empty(len(probes), self.dim, dtype=self.dtype, device=self.device)
        for row, probe in enumerate(probes):  # one at a time: a disk read reuses its buffer
            out[row] = self._read_rows(probe, index, index + 1)[0]
        return out

    def orthogonalise(self, probes: Sequence[int], index: int, w: Tensor) -> Tensor:
        """One classical Gram-Schmidt sweep of ``w[r]`` against vectors ``0..index`` of its run.

        Device storage projects each run's whole span at once; host and disk storage go chunk by
        chunk (block Gram-Schmidt: the projection on a chunk is removed before the next chunk
        is read), which is at least as accurate. Returns the new block (``w`` may be reused).

        Example:
            >>> import torch
            >>> basis = LanczosBasis(1, 2, 2, torch.float64, "cpu")
            >>> basis.write([0], 0, torch.tensor([[0.0, 1.0]], dtype=torch.float64))
            >>> basis.orthogonalise([0], 0, torch.tensor([[1.0, 1.0]], dtype=torch.float64))
            tensor([[1., 0.]], dtype=torch.float64)
        """
        if self.storage == "device":
            assert self._tensor is not None
            if len(probes) == self.num_probes:
                span = self._tensor[:, : index + 1]
                coefficients = torch.bmm(span, w.unsqueeze(2))
                w.unsqueeze(1).baddbmm_(coefficients.transpose(1, 2), span, alpha=-1)
                return w
            for row, probe in enumerate(probes):
                span = self._tensor[probe, : index + 1]
                w[row].addmv_(span.T, span @ w[row], alpha=-1)
            return w
        for row, probe in enumerate(probes):
            for start in range(0, index + 1, self.chunk):
                span = self._read_rows(probe, start, min(start + self.chunk, index + 1))
                w[row].addmv_(span.T, span @ w[row], alpha=-1)
                del span
        return w

    def close(self) -> None:
        """Release the storage (the temporary file of disk storage is removed).

        Example:
            >>> import torch
            >>> basis = LanczosBasis(1, 1, 1, torch.float32, "cpu", storage="disk")
            >>> basis.close()
        """
        self._tensor = self._buffer = None
        if getattr(self, "_file", None) is not None:
            self._file.close()
            self._file = None

    def __del__(self) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"LanczosBasis(num_probes={self.num_probes}, num_vectors={self.num_vectors}, "
            f"dim={self.dim}, dtype={self.dtype}, device={self.device}, "
            f"storage={self.storage!r}, chunk={self.chunk})"
        )
