"""What the callbacks give back to the Trainer: scalars, figures, W&B media, progress.

* Scalars go to every logger and into ``trainer.callback_metrics`` (so ``EarlyStopping``,
  ``ModelCheckpoint(monitor=...)`` and sweepers that read the Trainer's metrics see them).
* Figures go to the run's own directory: the ``log_dir`` of the first TensorBoard or CSV
  logger, else the W&B run's directory; without such a logger (``logger=False``,
  ``fast_dev_run``) no PNG is written, never into the working directory.
* Every stage that can take a while shows a bar in Lightning's progress bar, or logs one line
  with its duration when bars are off (rank zero).
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger, WandbLogger
from lightning.pytorch.utilities.exceptions import MisconfigurationException, SIGTERMException
from lightning.pytorch.utilities.rank_zero import rank_zero_info
from torch import Tensor

from lightning_prunelimit.callbacks._lightning_internals import put_callback_metrics

if TYPE_CHECKING:  # pragma: no cover
    import lightning.pytorch as pl
    from matplotlib.figure import Figure

__all__ = [
    "ProgressOperator",
    "figure_directory",
    "log_scalars",
    "log_wandb",
    "logging_step",
    "progress_bar",
    "save_figure",
    "stage",
    "stop_if_asked",
]


def logging_step(trainer: pl.Trainer) -> int:
    """The step at which results are logged: ``trainer.global_step`` (optimizer steps so far).

    Example:
        >>> import lightning.pytorch as pl
        >>> logging_step(pl.Trainer(logger=False, enable_progress_bar=False))
        0
    """
    return int(trainer.global_step)


def _log_through_module(
    trainer: pl.Trainer, values: Mapping[str, float], progress_bar: Sequence[str]
) -> bool:
    """``LightningModule.log`` the scalars (for monitors and the bar, not the loggers).

    Tried per step (batch hooks), else per epoch (epoch hooks); ``False`` where Lightning
    refuses logging (``on_train_end``, ``on_fit_end``, outside ``fit``).
    """
    module = trainer.lightning_module
    if module is None:
        return False
    for on_step in (True, False):
        try:
            for key, value in values.items():
                module.log(
                    key,
                    value,
                    on_step=on_step,
                    on_epoch=not on_step,
                    prog_bar=key in progress_bar,
                    logger=False,
                    batch_size=1,
                )
        except MisconfigurationException:
            continue
        # Reading the property folds the logged values into it now, before another loop
        # (the last validation) becomes the active one.
        _ = trainer.callback_metrics
        return True
    return False


def log_scalars(
    trainer: pl.Trainer, metrics: Mapping[str, float], *, progress_bar: Sequence[str] = ()
) -> None:
    """Put scalars into ``trainer.callback_metrics`` and send them to every logger.

    In the hooks where Lightning allows it, through ``LightningModule.log`` (every rank, so
    monitors on every rank see them; the keys in ``progress_bar`` are also shown in Lightning's
    bar); after training (``on_train_end``) directly into ``callback_metrics``. Loggers get the
    values at ``trainer.global_step`` through ``Logger.log_metrics``, on rank zero only.

    Example:
        >>> import lightning.pytorch as pl
        >>> trainer = pl.Trainer(logger=False, enable_progress_bar=False)
        >>> log_scalars(trainer, {"a/b": 1.0, "a/c": 2.0}, progress_bar=["a/b"])
        >>> float(trainer.callback_metrics["a/b"])
        1.0
    """
    values = {key: float(value) for key, value in metrics.items()}
    if not _log_through_module(trainer, values, progress_bar):
        put_callback_metrics(trainer, values)
    if not trainer.is_global_zero:
        return
    step = logging_step(trainer)
    for logger in trainer.loggers:
        logger.log_metrics(values, step=step)


def _wandb_loggers(trainer: pl.Trainer) -> list[WandbLogger]:
    return [logger for logger in trainer.loggers if isinstance(logger, WandbLogger)]


def log_wandb(trainer: pl.Trainer, build: Callable[[Any], Mapping[str, Any]]) -> None:
    """Log W&B media built by ``build(wandb)`` to every ``WandbLogger`` (rank zero only).

    ``build`` is called only when a ``WandbLogger`` is present, so ``wandb`` objects (tables,
    plots, images) are never built for nothing.

    Example:
        >>> import lightning.pytorch as pl
        >>> trainer = pl.Trainer(logger=False, enable_progress_bar=False)
        >>> log_wandb(trainer, lambda wandb: {"t": wandb.Table(columns=["a"], data=[[1]])})
    """
    loggers = _wandb_loggers(trainer)
    if not loggers or not trainer.is_global_zero:
        return
    import wandb

    media = dict(build(wandb))
    step = logging_step(trainer)
    for logger in loggers:
        logger.log_metrics(media, step=step)


def figure_directory(trainer: pl.Trainer) -> Path | None:
    """The run's own directory for figures, on rank zero; ``None`` elsewhere or without one.

    The ``log_dir`` of the first TensorBoard or CSV logger (a ``version_<n>`` folder of its
    own), else the directory of the first W&B run; ``None`` when the Trainer has neither
    (``logger=False``, ``fast_dev_run``) rather than a directory shared by runs.

    Example:
        >>> import lightning.pytorch as pl
        >>> from lightning.pytorch.loggers import CSVLogger
        >>> trainer = pl.Trainer(logger=CSVLogger("logs"), enable_progress_bar=False)
        >>> figure_directory(trainer).parts[-2:]
        ('lightning_logs', 'version_0')
        >>> figure_directory(pl.Trainer(logger=False, enable_progress_bar=False)) is None
        True
    """
    if not trainer.is_global_zero:
        return None
    for logger in trainer.loggers:
        if isinstance(logger, (TensorBoardLogger, CSVLogger)) and logger.log_dir:
            return Path(logger.log_dir)
    for logger in _wandb_loggers(trainer):
        return Path(logger.experiment.dir)
    return None


def save_figure(
    trainer: pl.Trainer, build: Callable[[], Figure], filename: str, key: str
) -> Path | None:
    """Save the figure made by ``build()`` as a PNG in the run's directory (rank zero).

    Also logged as a ``wandb.Image`` under ``key`` when a ``WandbLogger`` is present. Nothing
    is built when the run has no directory (see :func:`figure_directory`).

    Returns:
        The path of the PNG, ``None`` when none was written.

    Example:
        >>> import tempfile, lightning.pytorch as pl
        >>> from lightning.pytorch.loggers import CSVLogger
        >>> from matplotlib.figure import Figure
        >>> trainer = pl.Trainer(logger=CSVLogger(tempfile.mkdtemp()), enable_progress_bar=False)
        >>> save_figure(trainer, Figure, "empty.png", "empty").name
        'empty.png'
    """
    directory = figure_directory(trainer)
    if directory is None:
        return None
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / filename
    figure = build()
    figure.savefig(path, dpi=100)
    log_wandb(trainer, lambda wandb: {key: wandb.Image(str(path))})
    return path


def _bars_on(trainer: pl.Trainer) -> bool:
    callback = trainer.progress_bar_callback
    return callback is not None and callback.is_enabled


@contextlib.contextmanager
def progress_bar(
    trainer: pl.Trainer, total: int, description: str
) -> Iterator[Callable[[int, int], None]]:
    """A ``progress(step, total)`` callback that drives a tqdm bar when the Trainer shows one.

    The bar is shown only on rank zero and only when ``trainer.progress_bar_callback`` is
    enabled; otherwise the callback does nothing.

    Example:
        >>> import lightning.pytorch as pl
        >>> trainer = pl.Trainer(logger=False, enable_progress_bar=False)
        >>> with progress_bar(trainer, 3, "work") as progress:
        ...     progress(1, 3)
    """
    if not _bars_on(trainer) or not trainer.is_global_zero:
        yield lambda step, total: None
        return
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=description, leave=False, dynamic_ncols=True)

    def update(step: int, total: int) -> None:
        if bar.total != total:
            bar.total = total
        bar.update(max(0, step - bar.n))

    try:
        yield update
    finally:
        bar.close()


def stop_if_asked(trainer: pl.Trainer) -> None:
    """Stop the fit-end work once the process received SIGTERM, as Lightning stops training.

    Lightning's SIGTERM handler only sets ``trainer.received_sigterm``; its loops check it
    between batches. The fit-end stages call this between Hessian-vector products and
    evaluations, and raise Lightning's ``SIGTERMException`` (a ``SystemExit``) with status
    143 (128 + SIGTERM), so the fit ends through ``on_exception`` and the process exits
    within one product. (SIGINT needs no check: Python raises ``KeyboardInterrupt`` at once.)

    Example:
        >>> import lightning.pytorch as pl
        >>> stop_if_asked(pl.Trainer(logger=False, enable_progress_bar=False))
    """
    if trainer.received_sigterm:
        raise SIGTERMException(128 + signal.SIGTERM)


@contextlib.contextmanager
def stage(
    trainer: pl.Trainer, total: int, description: str
) -> Iterator[Callable[[int, int], None]]:
    """A :func:`progress_bar` that, when bars are off, logs one line with its duration instead.

    Each ``progress`` call first checks for SIGTERM (:func:`stop_if_asked`), so a stage that
    reports its progress after each product or evaluation stops within one of them.

    Example:
        >>> import lightning.pytorch as pl
        >>> trainer = pl.Trainer(logger=False, enable_progress_bar=False)
        >>> with stage(trainer, 2, "Sparsity sweep") as progress:
        ...     progress(2, 2)
    """
    stop_if_asked(trainer)
    start = time.perf_counter()
    with progress_bar(trainer, total, description) as show:

        def progress(step: int, total: int) -> None:
            stop_if_asked(trainer)
            show(step, total)

        yield progress
    if not _bars_on(trainer):
        rank_zero_info(f"{description}: done in {time.perf_counter() - start:.1f} s")


class ProgressOperator:
    """A curvature operator that reports each product to ``progress(done, total)``.

    Every vector multiplied counts one (a ``(k, dim)`` block counts k), so the algorithms of
    ``lightning_prunelimit.curvature`` and ``lightning_prunelimit.limit`` show progress without
    knowing about it. Every other attribute is the wrapped operator's.

    Example:
        >>> import torch
        >>> from lightning_prunelimit.curvature import DenseOperator
        >>> seen = []
        >>> op = ProgressOperator(DenseOperator(torch.eye(3)), lambda d, t: seen.append(d), 4)
        >>> _ = op.matvec(torch.ones(2, 3)), op.matvec(torch.ones(3))
        >>> seen, op.dim
        ([2, 3], 3)
    """

    def __init__(self, op: Any, progress: Callable[[int, int], None], total: int) -> None:
        self._op = op
        self._progress = progress
        self._total = total
        self._done = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._op, name)

    def matvec(self, v: Tensor) -> Tensor:
        """The wrapped operator's product; reports the vectors done so far."""
        result = self._op.matvec(v)
        self._done += int(v.shape[0]) if v.ndim == 2 else 1
        self._progress(self._done, max(self._total, self._done))
        return result

    def __matmul__(self, v: Tensor) -> Tensor:
        return self.matvec(v)
