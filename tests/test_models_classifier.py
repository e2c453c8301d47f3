"""ImageClassifier (the LightningModule) and the per-epoch learning-rate schedule."""

from __future__ import annotations

import functools
import math

import lightning as L
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from lightning_prunelimit.data import DigitsDataModule
from lightning_prunelimit.models import (
    EpochLRSchedule,
    ImageClassifier,
    SmallCNN,
    epoch_lr_scheduler,
    small_mlp,
)


def _trainer(**kwargs) -> L.Trainer:
    settings = {
        "accelerator": "cpu",
        "devices": 1,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
    }
    settings.update(kwargs)
    return L.Trainer(**settings)


class _RecordLR(L.Callback):
    def __init__(self) -> None:
        self.lrs: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])


# ---------------------------------------------------------------- EpochLRSchedule (pure)


def test_warmup_then_constant():
    schedule = EpochLRSchedule("constant", warmup_epochs=4)
    assert [schedule(e) for e in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert [EpochLRSchedule()(e) for e in range(3)] == [1.0, 1.0, 1.0]


def test_warmup_then_multistep_counts_milestones_in_epochs():
    schedule = EpochLRSchedule("multistep", warmup_epochs=2, milestones=[3, 5, 5], gamma=0.5)
    expected = [0.5, 1.0, 1.0, 0.5, 0.5, 0.125, 0.125]
    assert [schedule(e) for e in range(7)] == pytest.approx(expected, abs=0, rel=1e-15)
    # A milestone inside the warm-up multiplies the warm-up factor.
    inside = EpochLRSchedule("multistep", warmup_epochs=4, milestones=[2], gamma=0.1)
    assert [inside(e) for e in range(5)] == pytest.approx([0.25, 0.5, 0.075, 0.1, 0.1])


def test_warmup_then_cosine_reaches_zero_at_max_epochs():
    schedule = EpochLRSchedule("cosine", warmup_epochs=2, max_epochs=6)
    expected = [
        0.5,
        1.0,
        1.0,
        (1 + math.cos(math.pi / 4)) / 2,
        0.5,
        (1 + math.cos(3 * math.pi / 4)) / 2,
        0.0,
        0.0,
    ]
    assert [schedule(e) for e in range(8)] == pytest.approx(expected, abs=1e-15)
    plain = EpochLRSchedule("cosine", max_epochs=200)
    assert plain(0) == 1.0 and plain(100) == pytest.approx(0.5) and plain(200) == pytest.approx(0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"schedule": "step"}, "schedule must be one of constant, multistep, cosine"),
        ({"warmup_epochs": -1}, "warmup_epochs must be a non-negative integer"),
        ({"milestones": [0, 10]}, "milestones must be positive integer epochs"),
        ({"milestones": [2.5]}, "milestones must be positive integer epochs"),
        ({"milestones": "60"}, "milestones must be a list of epochs"),
        ({"gamma": 0.0}, "gamma must be a positive number"),
        ({"schedule": "cosine"}, "the cosine schedule needs max_epochs"),
        ({"schedule": "cosine", "max_epochs": 5, "warmup_epochs": 5}, "must exceed warmup"),
    ],
)
def test_schedule_rejects_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        EpochLRSchedule(**kwargs)


# ---------------------------------------------------------------- ImageClassifier


@pytest.fixture(scope="module")
def digits() -> DigitsDataModule:
    dm = DigitsDataModule(batch_size=64, seed=0)
    dm.setup()
    return dm


def _sgd(**settings):
    return functools.partial(torch.optim.SGD, **settings)


def _schedule(**settings):
    return functools.partial(epoch_lr_scheduler, **settings)


def test_classifier_exposes_net_and_loss_fn():
    torch.manual_seed(0)
    net = small_mlp(in_features=40)
    model = ImageClassifier(net, num_classes=10)
    assert model.net is net
    assert isinstance(model.loss_fn, nn.CrossEntropyLoss) and model.loss_fn.reduction == "mean"
    x = torch.randn(4, 40)
    assert torch.equal(model(x), net(x))
    assert "net" not in model.hparams  # an object is not a hyper-parameter
    optimizer = model.configure_optimizers()  # no scheduler: the optimizer alone
    assert isinstance(optimizer, torch.optim.SGD)
    assert (optimizer.defaults["lr"], optimizer.defaults["momentum"]) == (0.01, 0.9)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"net": "fc5"}, TypeError, "net must be a torch.nn.Module or its config node"),
        ({"net": {"in_features": 3}}, ValueError, "net node has no _target_"),
        ({"num_classes": 1}, ValueError, "num_classes must be an integer >= 2"),
        ({"optimizer": _sgd(lr=-1.0)}, ValueError, "optimizer: Invalid learning rate: -1.0"),
        ({"optimizer": _sgd(lr=0.1, nesterov=True)}, ValueError, "optimizer: Nesterov"),
        ({"optimizer": "sgd"}, TypeError, "optimizer must be a function"),
        ({"scheduler": _schedule(schedule="linear")}, ValueError, "scheduler: schedule must be"),
        (
            {"scheduler": _schedule(schedule="cosine", max_epochs=3, warmup_epochs=5)},
            ValueError,
            "must exceed",
        ),
        ({"scheduler": _schedule(schedule="cosine")}, ValueError, "cosine schedule needs max"),
    ],
)
def test_classifier_rejects_bad_arguments(kwargs, error, message):
    arguments = {"net": small_mlp(), "num_classes": 10, **kwargs}
    with pytest.raises(error, match=message):
        ImageClassifier(**arguments)


def test_optimizer_and_scheduler_come_from_their_factories():
    model = ImageClassifier(
        small_mlp(),
        10,
        optimizer=_sgd(lr=0.1, momentum=0.8, weight_decay=5e-4, nesterov=True),
        scheduler=_schedule(warmup_epochs=5),
    )
    config = model.configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]
    assert isinstance(optimizer, torch.optim.SGD)
    group = optimizer.param_groups[0]
    assert (group["momentum"], group["weight_decay"], group["nesterov"]) == (0.8, 5e-4, True)
    assert group["lr"] == pytest.approx(0.1 / 5)  # LambdaLR applied the epoch-0 factor
    assert scheduler["interval"] == "epoch" and scheduler["frequency"] == 1
    assert isinstance(scheduler["scheduler"], torch.optim.lr_scheduler.LambdaLR)
    assert sum(p.numel() for p in group["params"]) == sum(p.numel() for p in model.parameters())
    adam = ImageClassifier(small_mlp(), 10, optimizer=functools.partial(torch.optim.Adam, lr=1e-3))
    assert isinstance(adam.configure_optimizers(), torch.optim.Adam)


def test_training_on_digits_logs_metrics_that_match_a_manual_evaluation(digits):
    torch.manual_seed(0)
    model = ImageClassifier(
        small_mlp(in_features=64, hidden=[32]), num_classes=10, optimizer=_sgd(lr=0.05)
    )
    trainer = _trainer(max_epochs=2)
    trainer.fit(model, datamodule=digits)
    metrics = trainer.callback_metrics
    for key in ("train/loss", "train/acc", "val/loss", "val/acc"):
        assert key in metrics, key
    assert trainer.current_epoch == 2
    # val = the held-out test split; recompute loss and accuracy over it by hand.
    model.eval()
    x, y = digits.test_dataset.tensors
    with torch.no_grad():
        logits = model(x)
    manual_loss = nn.functional.cross_entropy(logits, y).item()
    manual_acc = (logits.argmax(1) == y).double().mean().item()
    assert metrics["val/acc"].item() == pytest.approx(manual_acc, abs=1e-6)
    assert metrics["val/loss"].item() == pytest.approx(manual_loss, rel=1e-5)
    assert manual_acc > 0.8  # chance is 0.1; two epochs of SGD on digits get well above it
    results = trainer.test(model, datamodule=digits, verbose=False)[0]
    assert results["test/acc"] == pytest.approx(manual_acc, abs=1e-6)
    assert results["test/loss"] == pytest.approx(manual_loss, rel=1e-5)


def test_learning_rate_is_stepped_per_epoch_warmup_then_multistep(digits):
    torch.manual_seed(0)
    model = ImageClassifier(
        SmallCNN(channels=[4]),
        10,
        optimizer=_sgd(lr=0.2),
        scheduler=_schedule(schedule="multistep", warmup_epochs=2, milestones=[3, 4], gamma=0.1),
    )
    record = _RecordLR()
    trainer = _trainer(max_epochs=6, limit_train_batches=3, limit_val_batches=0, callbacks=[record])
    trainer.fit(model, datamodule=digits)
    expected = [0.1, 0.2, 0.2, 0.02, 0.002, 0.002]
    assert record.lrs == pytest.approx(expected, rel=1e-12)


def test_cosine_schedule_over_the_given_epochs(digits):
    torch.manual_seed(0)
    model = ImageClassifier(
        SmallCNN(channels=[4]),
        10,
        optimizer=_sgd(lr=0.1),
        scheduler=_schedule(schedule="cosine", warmup_epochs=1, max_epochs=5),
    )
    record = _RecordLR()
    trainer = _trainer(max_epochs=5, limit_train_batches=2, limit_val_batches=0, callbacks=[record])
    trainer.fit(model, datamodule=digits)
    expected = [0.1] + [0.1 * (1 + math.cos(math.pi * t / 4)) / 2 for t in range(4)]
    assert record.lrs == pytest.approx(expected, rel=1e-12)


def test_wrong_number_of_logits_is_reported(digits):
    model = ImageClassifier(SmallCNN(num_classes=5), num_classes=10)
    trainer = _trainer(max_epochs=1, limit_train_batches=1, limit_val_batches=0)
    with pytest.raises(ValueError, match=r"logits of shape \(64, 5\), expected \(batch, 10\)"):
        trainer.fit(model, datamodule=digits)


def test_config_nodes_make_a_checkpoint_that_reloads_alone(digits, tmp_path):
    """As the app builds it: net, optimizer, scheduler as nodes; the checkpoint needs nothing."""
    torch.manual_seed(0)
    nodes = OmegaConf.create(
        {
            "net": {"_target_": "lightning_prunelimit.models.SmallCNN", "channels": [4]},
            "optimizer": {"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.03},
            "scheduler": {
                "_target_": "lightning_prunelimit.models.epoch_lr_scheduler",
                "_partial_": True,
                "schedule": "multistep",
                "milestones": [1],
                "gamma": 0.5,
            },
        }
    )
    model = ImageClassifier(nodes.net, 10, optimizer=nodes.optimizer, scheduler=nodes.scheduler)
    assert type(model.hparams.scheduler["milestones"]) is list  # plain, not ListConfig
    trainer = _trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=0)
    trainer.fit(model, datamodule=digits)
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    torch.manual_seed(1)
    restored = ImageClassifier.load_from_checkpoint(path, weights_only=True)
    assert dict(restored.hparams) == dict(model.hparams)
    assert restored.hparams.optimizer["lr"] == 0.03
    state, restored_state = model.state_dict(), restored.state_dict()
    assert state.keys() == restored_state.keys()
    for key, value in state.items():
        assert torch.equal(value, restored_state[key]), key


def test_checkpoint_of_a_network_object_reloads_with_the_network(digits, tmp_path):
    torch.manual_seed(0)
    model = ImageClassifier(SmallCNN(channels=[4]), 10)
    trainer = _trainer(max_epochs=1, limit_train_batches=1, limit_val_batches=0)
    trainer.fit(model, datamodule=digits)
    trainer.save_checkpoint(tmp_path / "model.ckpt")
    restored = ImageClassifier.load_from_checkpoint(
        tmp_path / "model.ckpt", net=SmallCNN(channels=[4])
    )
    for key, value in model.net.state_dict().items():
        assert torch.equal(restored.net.state_dict()[key], value), key


def test_resuming_from_a_checkpoint_continues_the_schedule(digits, tmp_path):
    settings = {"schedule": "multistep", "warmup_epochs": 2, "milestones": [3], "gamma": 0.1}
    torch.manual_seed(0)
    model = ImageClassifier(
        SmallCNN(channels=[4]), 10, optimizer=_sgd(lr=0.1), scheduler=_schedule(**settings)
    )
    trainer = _trainer(max_epochs=3, limit_train_batches=1, limit_val_batches=0)
    trainer.fit(model, datamodule=digits)
    path = tmp_path / "epoch3.ckpt"
    trainer.save_checkpoint(path)
    record = _RecordLR()
    resumed = ImageClassifier(
        SmallCNN(channels=[4]), 10, optimizer=_sgd(lr=0.1), scheduler=_schedule(**settings)
    )
    trainer = _trainer(max_epochs=5, limit_train_batches=1, limit_val_batches=0, callbacks=[record])
    trainer.fit(resumed, datamodule=digits, ckpt_path=path)
    assert record.lrs == pytest.approx([0.01, 0.01], rel=1e-12)  # epochs 3 and 4
