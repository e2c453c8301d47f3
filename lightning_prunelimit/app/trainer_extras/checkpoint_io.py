"""Checkpoints written so that a crash or a full disk never leaves half a file behind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning.pytorch.plugins.io import TorchCheckpointIO

from lightning_prunelimit.app.run_dir.atomic_write import write_atomic

__all__ = ["AtomicCheckpointIO"]


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` that writes through the app's atomic write (``write_atomic``).

    A checkpoint path therefore holds either the previous complete file or the new complete file;
    a failed write (disk full, SIGKILL) leaves at most a ``.<name>.<pid>.tmp`` file, removed when
    the error is seen. Pass it as ``Trainer(plugins=[AtomicCheckpointIO()])``.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     AtomicCheckpointIO().save_checkpoint({"epoch": 3}, Path(d) / "last.ckpt")
        ...     sorted(p.name for p in Path(d).iterdir())
        ['last.ckpt']
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        """Save ``checkpoint`` to ``path`` through a temporary file and an atomic rename."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(
            target,
            lambda temporary: super(AtomicCheckpointIO, self).save_checkpoint(
                checkpoint, temporary, storage_options
            ),
        )
