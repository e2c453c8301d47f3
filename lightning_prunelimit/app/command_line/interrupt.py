"""How a job stops early: SIGTERM and SIGINT as an exception it can report (then exit 143 or
130), and a refusal printed as one line (exit 1)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

__all__ = ["JobInterrupted", "JobRefused", "raise_on_signals"]


class JobInterrupted(BaseException):
    """The job received SIGTERM or SIGINT; raised where the main thread was when it arrived.

    A ``BaseException`` (like ``KeyboardInterrupt``), so ordinary ``except Exception`` blocks let
    it through. The job fills ``stage`` and ``run_dir`` on its way out; the process then exits
    with :attr:`exit_status` (128 + the signal number: 143 for SIGTERM, 130 for SIGINT).

    Example:
        >>> error = JobInterrupted(signal.SIGTERM)
        >>> str(error), error.exit_status
        ('interrupted by SIGTERM', 143)
    """

    def __init__(self, signum: int) -> None:
        self.signum = int(signum)
        self.stage: str | None = None
        self.run_dir: str | None = None
        super().__init__(f"interrupted by {signal.Signals(self.signum).name}")

    @property
    def exit_status(self) -> int:
        """``128 + signum``, the shell's convention for a process ended by a signal."""
        return 128 + self.signum


class JobRefused(BaseException):
    """A job that cannot start (or go on), with a one-line message naming the fix.

    A ``BaseException``, so that it passes Hydra's handlers (which turn a callback's ordinary
    exception into a warning and a job's into three more lines of output); ``prunelimit``
    prints the message alone and exits with status 1 (``HYDRA_FULL_ERROR=1``: the traceback).

    Example:
        >>> str(JobRefused("paths.log_dir: not writable"))
        'paths.log_dir: not writable'
    """


@contextmanager
def raise_on_signals(
    signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT),
) -> Iterator[None]:
    """Within the block, the first of ``signals`` raises :class:`JobInterrupted`; later ones
    are ignored (the job is already stopping and writing its report).

    Lightning's own SIGTERM handler, installed while it fits, calls this one after its own.
    Outside the main thread (where Python delivers no signals) the block runs unchanged.

    Example:
        >>> import os
        >>> try:
        ...     with raise_on_signals():
        ...         os.kill(os.getpid(), signal.SIGTERM)
        ... except JobInterrupted as error:
        ...     print(error.exit_status)
        143
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        if received:
            return
        received.append(signum)
        raise JobInterrupted(signum)

    previous = {s: signal.signal(s, handler) for s in signals}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
