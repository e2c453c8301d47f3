"""Wall-clock timing of the job's stages, including those that run inside ``Trainer.fit``."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

from lightning_prunelimit.callbacks._fit_end import is_final_training_batch

__all__ = ["StageTimings", "TrainEndClock"]


class StageTimings:
    """Seconds spent in each named stage, in the order the stages were first timed.

    ``current`` is the stage entered last (by :meth:`measure` or :meth:`enter`): the stage that
    was running when a job failed or was interrupted.

    Example:
        >>> timings = StageTimings()
        >>> with timings.measure("train"):
        ...     pass
        >>> timings.add("spectrum", 1.5)
        >>> list(timings.as_dict()), timings.as_dict()["spectrum"]
        (['train', 'spectrum'], 1.5)
    """

    def __init__(self) -> None:
        self._seconds: dict[str, float] = {}
        self.current: str | None = None

    def enter(self, name: str) -> None:
        """Note that stage ``name`` starts now (for stages timed by other means).

        Example:
            >>> timings = StageTimings()
            >>> timings.enter("spectrum"); timings.current
            'spectrum'
        """
        self.current = name

    def add(self, name: str, seconds: float) -> None:
        """Add ``seconds`` to stage ``name`` (created at zero if new).

        Example:
            >>> timings = StageTimings()
            >>> timings.add("report", 0.25); timings.add("report", 0.25)
            >>> timings.as_dict()
            {'report': 0.5}
        """
        if seconds < 0:
            raise ValueError(f"seconds must be non-negative, got {seconds} for stage {name!r}")
        self._seconds[name] = self._seconds.get(name, 0.0) + float(seconds)

    @contextmanager
    def measure(self, name: str) -> Iterator[None]:
        """Time the ``with`` block and add it to stage ``name`` (also when the block raises).

        Example:
            >>> timings = StageTimings()
            >>> with timings.measure("train"):
            ...     _ = sum(range(1000))
            >>> timings.as_dict()["train"] >= 0.0
            True
        """
        start = time.perf_counter()
        self.current = name
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - start)

    def as_dict(self) -> dict[str, float]:
        """A copy of the timings, ``{stage: seconds}``.

        Example:
            >>> StageTimings().as_dict()
            {}
        """
        return dict(self._seconds)


class TrainEndClock(Callback):
    """Records the time at which the fit-end hooks reach this callback.

    The spectrum, the limit and the sweep compute after the last training batch (in
    ``on_train_end`` when training stopped unforeseen); Lightning calls those hooks in the order
    of ``trainer.callbacks``, so clocks placed between the callbacks time each of them.

    Args:
        then: called right after the time is noted (e.g. to mark the next stage as started).

    Example:
        >>> clock = TrainEndClock()
        >>> clock.time is None
        True
    """

    def __init__(self, then: Callable[[], None] | None = None) -> None:
        self.time: float | None = None
        self.then = then

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        """Note the current ``time.perf_counter()`` after the last training batch."""
        if is_final_training_batch(trainer, batch_idx) and self.time is None:
            self._note()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Note the current ``time.perf_counter()`` unless the last batch already did."""
        if self.time is None:
            self._note()

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """A resumed fit with nothing left to train skips ``on_train_end``: note the time here."""
        if self.time is None:
            self._note()

    def _note(self) -> None:
        self.time = time.perf_counter()
        if self.then is not None:
            self.then()
