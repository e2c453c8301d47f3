"""The LightningModule that trains any network of the zoo as a classifier (cross-entropy)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

OptimizerFactory = Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer], Any]

#: The optimizer when none is given: the paper's SGD with momentum 0.9.
DEFAULT_OPTIMIZER: dict[str, Any] = {
    "_target_": "torch.optim.SGD",
    "_partial_": True,
    "lr": 0.01,
    "momentum": 0.9,
}


class ImageClassifier(L.LightningModule):
    """Cross-entropy classifier around ``net``, with the optimizer and LR schedule it is given.

    Batches are ``(inputs, targets)`` with integer class targets. Logs ``train/loss``,
    ``train/acc``, ``val/loss``, ``val/acc``, ``test/loss``, ``test/acc`` (top-1 accuracy over all
    samples of the epoch) with ``on_epoch=True``. The callbacks of this package find the loss as
    ``self.loss_fn`` (``torch.nn.CrossEntropyLoss``, mean reduction) and the network as
    ``self.net``.

    ``net``, ``optimizer`` and ``scheduler`` are objects, or config nodes with a ``_target_`` that
    the classifier instantiates (as the app's configs do, lightning-hydra-template style:
    ``optimizer`` and ``scheduler`` with ``_partial_: true``). Config nodes are saved in the
    checkpoints as hyper-parameters, so a checkpoint of the ``prunelimit`` app reloads with
    ``ImageClassifier.load_from_checkpoint(path)`` alone; a network given as an object is not
    saved (reload with ``load_from_checkpoint(path, net=<the same architecture>)``).

    Args:
        net: the network, mapping inputs to logits ``(batch, num_classes)``, or its config node.
        num_classes: number of classes (for the accuracy metrics and the logit check).
        optimizer: a function of the parameters returning an optimizer (e.g.
            ``functools.partial(torch.optim.SGD, lr=0.1)``) or its config node; default: SGD
            with ``lr=0.01`` and momentum 0.9.
        scheduler: a function of the optimizer returning an LR scheduler stepped once per
            epoch (e.g. :func:`~lightning_prunelimit.models.epoch_lr_scheduler`), or its config
            node; ``None``: a constant learning rate.

    Both factories are tried once at construction, so a bad learning rate or schedule fails
    before training starts.

    Example:
        >>> import functools, torch
        >>> from lightning_prunelimit.models import small_mlp
        >>> model = ImageClassifier(small_mlp(in_features=40), num_classes=10,
        ...                         optimizer=functools.partial(torch.optim.SGD, lr=0.05))
        >>> model(torch.zeros(3, 40)).shape
        torch.Size([3, 10])
        >>> net = {"_target_": "lightning_prunelimit.models.small_mlp", "in_features": 40}
        >>> ImageClassifier(net, 10).hparams["net"]["in_features"]
        40
    """

    def __init__(
        self,
        net: nn.Module | Mapping[str, Any],
        num_classes: int,
        optimizer: OptimizerFactory | Mapping[str, Any] | None = None,
        scheduler: SchedulerFactory | Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if int(num_classes) != num_classes or num_classes < 2:
            raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
        saved: dict[str, Any] = {"num_classes": int(num_classes)}
        nodes = {"net": net, "optimizer": optimizer, "scheduler": scheduler}
        for name, value in nodes.items():
            if value is None or isinstance(value, Mapping):
                saved[name] = _plain(value)
        module = _build(saved["net"], "net") if isinstance(net, Mapping) else net
        if not isinstance(module, nn.Module):
            raise TypeError(
                f"net must be a torch.nn.Module or its config node, got {type(net).__name__}: "
                "pass an instantiated network or a mapping with a _target_"
            )
        self._optimizer_factory = _factory(
            DEFAULT_OPTIMIZER if optimizer is None else optimizer, "optimizer"
        )
        self._scheduler_factory = None if scheduler is None else _factory(scheduler, "scheduler")
        self.save_hyperparameters(saved)
        self.net = module
        self.num_classes = int(num_classes)
        self.loss_fn = nn.CrossEntropyLoss()
        self.train_acc = MulticlassAccuracy(self.num_classes, top_k=1, average="micro")
        self.val_acc = MulticlassAccuracy(self.num_classes, top_k=1, average="micro")
        self.test_acc = MulticlassAccuracy(self.num_classes, top_k=1, average="micro")
        self._try_factories()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The logits of the wrapped network: ``net(x)``."""
        return self.net(x)

    def _step(self, batch: Any, stage: str, accuracy: MulticlassAccuracy) -> torch.Tensor:
        if not isinstance(batch, (tuple, list)) or len(batch) != 2:
            raise ValueError(
                f"ImageClassifier expects batches (inputs, targets), got {type(batch).__name__}"
                + (f" of length {len(batch)}" if isinstance(batch, (tuple, list)) else "")
            )
        inputs, targets = batch
        logits = self(inputs)
        if logits.dim() != 2 or logits.shape[1] != self.num_classes:
            raise ValueError(
                f"the network returned logits of shape {tuple(logits.shape)}, expected "
                f"(batch, {self.num_classes}): make the network's num_classes match the "
                "classifier's"
            )
        loss = self.loss_fn(logits, targets)
        accuracy(logits, targets)
        batch_size = targets.shape[0]
        # Epoch-level values only, so averaging the loss over processes (DDP) costs one
        # reduction per epoch; the accuracy metric synchronises its own counts.
        self.log(
            f"{stage}/loss",
            loss,
            on_step=False,
            on_epoch=True,
            batch_size=batch_size,
            sync_dist=True,
        )
        self.log(f"{stage}/acc", accuracy, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        """Cross-entropy on a training batch; logs ``train/loss`` and ``train/acc``."""
        return self._step(batch, "train", self.train_acc)

    def validation_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        """Cross-entropy on a validation batch; logs ``val/loss`` and ``val/acc``."""
        return self._step(batch, "val", self.val_acc)

    def test_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        """Cross-entropy on a test batch; logs ``test/loss`` and ``test/acc``."""
        return self._step(batch, "test", self.test_acc)

    def _try_factories(self) -> None:
        """Build the optimizer and the scheduler once, so bad settings fail before training."""
        try:
            optimizer = self._optimizer_factory(self.parameters())
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"optimizer: {error}: check the optimizer's settings (lr...)"
            ) from error
        if self._scheduler_factory is None:
            return
        try:
            self._scheduler_factory(optimizer)
        except (TypeError, ValueError) as error:
            raise ValueError(f"scheduler: {error}: check the scheduler's settings") from error

    def configure_optimizers(self) -> Any:
        """The optimizer over all parameters and, if given, the scheduler stepped every epoch.

        Example:
            >>> from lightning_prunelimit.models import small_mlp
            >>> type(ImageClassifier(small_mlp(), 10).configure_optimizers()).__name__
            'SGD'
        """
        optimizer = self._optimizer_factory(self.parameters())
        if self._scheduler_factory is None:
            return optimizer
        scheduler = self._scheduler_factory(optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "epoch", "frequency": 1},
        }


def _plain(node: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A config node as plain dicts and lists (what a weights-only checkpoint load accepts)."""
    if node is None:
        return None
    if not isinstance(node, DictConfig):
        node = OmegaConf.create(dict(node))
    container = OmegaConf.to_container(node, resolve=True)
    assert isinstance(container, dict)
    return container


def _build(node: Mapping[str, Any], name: str) -> Any:
    import hydra

    if "_target_" not in node:
        raise ValueError(f"{name} node has no _target_ (it holds {sorted(node)}): add one")
    return hydra.utils.instantiate(node)


def _factory(value: Any, name: str) -> Callable[..., Any]:
    if isinstance(value, Mapping):
        node = _plain(value)
        assert node is not None
        if not node.get("_partial_", False):
            node["_partial_"] = True
        value = _build(node, name)
    if not callable(value):
        raise TypeError(
            f"{name} must be a function (e.g. functools.partial) or a config node with "
            f"_partial_: true, got {type(value).__name__}"
        )
    return value
