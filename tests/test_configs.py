"""Every config of the app composes, resolves, validates, and builds what it names."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path
from typing import Any

import pytest
import yaml
from _app_helpers import (
    CONF,
    compose_hydra,
    compose_job,
)
from hydra.utils import get_class, instantiate
from omegaconf import OmegaConf

from lightning_prunelimit.app import ConfigError, validate_config
from lightning_prunelimit.models import count_prunable_weights

GROUPS = ("data", "model", "trainer", "logger", "experiment", "debug")
OPTIONS = [(g, p.stem) for g in GROUPS for p in sorted((CONF / g).glob("*.yaml"))]
CALLBACK_NODES = sorted(p.stem for p in (CONF / "callbacks").glob("*.yaml"))


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def test_config_groups_offer_what_the_app_documents() -> None:
    def names(group: str) -> set[str]:
        return {p.stem for p in (CONF / group).glob("*.yaml")}

    assert {"mnist1d", "digits", "mnist", "fashion_mnist", "cifar10", "cifar100"} <= names("data")
    assert {
        "mlp_mnist1d",
        "small_cnn",
        "fc5",
        "fc12",
        "alexnet",
        "vgg16_bn",
        "resnet18",
        "resnet50",
    } <= names("model")
    assert {"default", "cpu", "gpu", "ddp", "ddp_sim"} <= names("trainer")
    assert {
        "l1_regularization",
        "hessian_spectrum",
        "pruning_limit",
        "sparsity_sweep",
        "one_shot_pruning",
        "default",
        "none",
    } <= names("callbacks")
    assert {"csv", "wandb", "tensorboard", "many_loggers", "none"} <= names("logger")
    assert {
        "fc5_cifar10",
        "fc12_cifar10",
        "alexnet_cifar10",
        "vgg16_cifar10",
        "resnet18_cifar100",
        "resnet50_cifar100",
        "mlp_mnist1d",
        "fc5_fashion_mnist",
        "small_cnn_fashion_mnist",
        "small_resnet_fashion_mnist",
    } <= names("experiment")
    assert {"default", "fdr", "limit"} <= names("debug")
    assert (CONF / "hydra" / "launcher" / "slurm.yaml").is_file()


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_option_composes_resolves_and_validates(
    group: str, option: str, tmp_path: Path
) -> None:
    cfg = compose_job([f"{group}={option}"], run_dir=tmp_path)
    container = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(container, dict)
    validate_config(cfg)  # every _target_ imports and takes the node's keys
    assert container["paths"]["output_dir"] == str(tmp_path)


def test_default_callbacks_compose_one_named_node_per_callback(tmp_path: Path) -> None:
    cfg = compose_job([], run_dir=tmp_path)
    nodes = set(cfg.callbacks) | {"default", "none"}
    assert nodes == set(CALLBACK_NODES)
    targets = {name: node._target_.rsplit(".", 1)[-1] for name, node in cfg.callbacks.items()}
    assert targets == {
        "l1_regularization": "L1Regularization",
        "hessian_spectrum": "HessianSpectrum",
        "pruning_limit": "PruningLimit",
        "sparsity_sweep": "SparsitySweep",
        "one_shot_pruning": "GlobalOneShotPruning",
        "model_checkpoint": "ModelCheckpoint",
    }
    assert cfg.callbacks.model_checkpoint.dirpath == str(tmp_path / "checkpoints")
    assert len(compose_job(["callbacks=none"], run_dir=tmp_path).callbacks) == 0


def test_callbacks_can_be_picked_as_a_list(tmp_path: Path) -> None:
    cfg = compose_job(["callbacks=[l1_regularization,hessian_spectrum]"], run_dir=tmp_path)
    assert list(cfg.callbacks) == ["l1_regularization", "hessian_spectrum"]
    validate_config(cfg)


def test_default_job_is_mnist1d_mlp_with_csv_logging(tmp_path: Path) -> None:
    cfg = compose_job([], run_dir=tmp_path)
    assert cfg.data._target_.endswith("MNIST1DDataModule")
    assert cfg.model.net._target_.endswith("MLP") and cfg.model.net.in_features == 40
    assert list(cfg.logger) == ["csv"]
    assert cfg.trainer.accelerator == "cpu" and cfg.trainer.devices == 1
    assert cfg.callbacks.one_shot_pruning.amount == "predicted"
    assert cfg.optimized_metric == "pruned.accuracy"


def test_mlp_mnist1d_experiment_is_the_default_job(tmp_path: Path) -> None:
    default = OmegaConf.to_container(compose_job([], run_dir=tmp_path), resolve=True)
    experiment = OmegaConf.to_container(
        compose_job(["experiment=mlp_mnist1d"], run_dir=tmp_path), resolve=True
    )
    assert experiment == default


def test_wandb_logger_is_offline_grouped_by_task(tmp_path: Path) -> None:
    cfg = compose_job(["logger=wandb", "task_name=sweep_a"], run_dir=tmp_path)
    node = OmegaConf.to_container(cfg.logger.wandb, resolve=True)
    assert node["_target_"] == "lightning.pytorch.loggers.wandb.WandbLogger"
    assert node["offline"] is True
    assert node["group"] == "sweep_a"
    assert node["tags"] == list(cfg.tags)
    assert node["save_dir"] == str(tmp_path)
    many = compose_job(["logger=many_loggers"], run_dir=tmp_path)
    assert set(many.logger) == {"csv", "tensorboard", "wandb"}
    assert len(compose_job(["logger=none"], run_dir=tmp_path).logger) == 0


def test_run_and_sweep_directories_are_under_the_log_dir() -> None:
    hydra = OmegaConf.to_container(compose_hydra([]).hydra, resolve=False)
    assert hydra["run"]["dir"].startswith("${paths.log_dir}/${task_name}/runs/")
    assert hydra["sweep"]["dir"].startswith("${paths.log_dir}/${task_name}/multiruns/")
    assert hydra["sweep"]["subdir"] == "${hydra.job.num}"


# The paper's reference settings (research digest, section 4.2).
PAPER = {
    "fc5_cifar10": ("cifar10", 5e-5, 0.01, 0, "constant", "auto"),
    "fc12_cifar10": ("cifar10", 5e-5, 0.01, 0, "constant", "auto"),
    "alexnet_cifar10": ("cifar10", 3e-5, 0.01, 5, "multistep", "auto"),
    "vgg16_cifar10": ("cifar10", 1e-4, 0.01, 5, "constant", "auto"),
    "resnet18_cifar100": ("cifar100", 5e-5, 0.1, 5, "cosine", "auto"),
    "resnet50_cifar100": ("cifar100", 2e-5, 0.1, 5, "cosine", "auto"),
}


@pytest.mark.parametrize("name", sorted(PAPER))
def test_paper_experiments_use_the_reference_hyperparameters(name: str, tmp_path: Path) -> None:
    data, strength, lr, warmup, schedule, lanczos = PAPER[name]
    cfg = compose_job([f"experiment={name}"], run_dir=tmp_path)
    assert cfg.data._target_.rsplit(".", 1)[-1].lower() == f"{data}datamodule"
    assert cfg.data.batch_size == 128 and cfg.data.augment is True
    assert cfg.callbacks.l1_regularization.strength == pytest.approx(strength, rel=0, abs=0)
    optimizer, scheduler = cfg.model.optimizer, cfg.model.scheduler
    assert (optimizer.lr, scheduler.warmup_epochs, scheduler.schedule) == (lr, warmup, schedule)
    assert optimizer._target_ == "torch.optim.SGD" and optimizer._partial_ is True
    assert (optimizer.momentum, optimizer.weight_decay, optimizer.nesterov) == (0.9, 0.0, False)
    assert cfg.trainer.max_epochs == 200 and scheduler.max_epochs == 200
    assert cfg.finetune_epochs == 20
    assert cfg.trainer.accelerator == "gpu"
    # the paper's 128 steps of one probe become steps, probes and samples sized for the tolerance
    assert cfg.callbacks.hessian_spectrum.num_iters == lanczos == "auto"
    assert cfg.callbacks.hessian_spectrum.max_iters == 256
    assert cfg.callbacks.hessian_spectrum.num_probes == "auto"
    assert cfg.callbacks.hessian_spectrum.num_samples == "auto"
    # the reference's L1 term covers BatchNorm's gamma and beta as well (models with BatchNorm)
    has_batch_norm = name.startswith(("vgg16", "resnet"))
    assert cfg.callbacks.l1_regularization.include_norm_layers is has_batch_norm
    assert cfg.task_name == name
    if name == "alexnet_cifar10":
        assert list(scheduler.milestones) == [60, 120, 160] and scheduler.gamma == 0.5


def _leaves(node: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(node, dict):
        return {prefix: node}
    found: dict[str, Any] = {}
    for key, value in node.items():
        found.update(_leaves(value, f"{prefix}.{key}" if prefix else str(key)))
    return found


@pytest.mark.parametrize(
    "name",
    [*sorted(PAPER), "fc5_fashion_mnist", "small_cnn_fashion_mnist", "small_resnet_fashion_mnist"],
)
def test_experiments_set_only_what_differs(name: str, tmp_path: Path) -> None:
    """Every value an experiment file sets differs from what its defaults list gives."""
    body = yaml.safe_load((CONF / "experiment" / f"{name}.yaml").read_text())
    choices = [e for e in body.pop("defaults") if isinstance(e, dict)]
    overrides = [f"{k.split()[-1].lstrip('/')}={v}" for e in choices for k, v in e.items()]
    if name in PAPER:
        overrides.append("+paper=base")
    without = OmegaConf.to_container(compose_job(overrides, run_dir=tmp_path), resolve=True)
    with_it = OmegaConf.to_container(
        compose_job([f"experiment={name}"], run_dir=tmp_path), resolve=True
    )
    assert without != with_it
    for key, value in _leaves({k: v for k, v in body.items() if k != "task_name"}).items():
        assert OmegaConf.select(OmegaConf.create(without), key) != value, key
        assert OmegaConf.select(OmegaConf.create(with_it), key) == value, key


def test_paper_experiments_extend_one_base() -> None:
    for name in PAPER:
        text = (CONF / "experiment" / f"{name}.yaml").read_text()
        assert "  - /paper/base\n" in text, name
        assert "momentum" not in text and "batch_size" not in text and "max_epochs" not in text
    base = compose_hydra(["+paper=base"])
    assert base.trainer.accelerator == "gpu" and base.trainer.max_epochs == 200
    assert base.callbacks.hessian_spectrum.num_iters == "auto"


def test_optimizer_and_schedule_are_partial_nodes_of_every_model(tmp_path: Path) -> None:
    for path in sorted((CONF / "model").glob("*.yaml")):
        cfg = compose_job([f"model={path.stem}"], run_dir=tmp_path)
        assert cfg.model._recursive_ is False
        assert cfg.model.optimizer._partial_ is True and cfg.model.scheduler._partial_ is True
        text = path.read_text()
        assert "momentum" not in text and "milestones" not in text, path.name


# Prunable (Linear + Conv) weights of each experiment's network.
PRUNABLE = {
    "fc5_cifar10": 3_883_000,
    "fc12_cifar10": 7_263_000,
    "alexnet_cifar10": 46_778_400,
    "vgg16_cifar10": 14_715_584,
    "resnet18_cifar100": 11_210_432,
    "resnet50_cifar100": 23_652_032,
    "fc5_fashion_mnist": 1_595_000,
    "mlp_mnist1d": 15_000,
}


@pytest.mark.parametrize("name", sorted(PRUNABLE))
def test_experiment_instantiates_its_model_and_data_module(name: str, tmp_path: Path) -> None:
    cfg = compose_job([f"experiment={name}"], run_dir=tmp_path)
    model = instantiate(cfg.model)  # construction only: no forward pass
    assert type(model).__name__ == "ImageClassifier"
    assert count_prunable_weights(model.net) == PRUNABLE[name]
    datamodule_class = get_class(cfg.data._target_)
    datamodule = instantiate(cfg.data)  # reads no file until setup()
    assert type(datamodule) is datamodule_class
    assert datamodule.num_classes == model.num_classes
    assert Path(datamodule.data_dir) == tmp_path / "data"


def test_command_line_group_choice_beats_the_experiments(tmp_path: Path) -> None:
    cfg = compose_job(
        ["experiment=fc5_cifar10", "trainer=cpu", "data.batch_size=32"], run_dir=tmp_path
    )
    assert cfg.trainer.accelerator == "cpu"
    assert cfg.data.batch_size == 32
    assert cfg.callbacks.l1_regularization.strength == 5e-5  # the experiment's value stays


def test_hparams_search_grid_sweeps_the_l1_strength() -> None:
    cfg = compose_hydra(["hparams_search=l1_grid"])
    assert str(cfg.hydra.mode) == "RunMode.MULTIRUN"
    values = cfg.hydra.sweeper.params["callbacks.l1_regularization.strength"]
    assert [float(v) for v in values.split(",")] == [0.0, 1e-4, 3e-4, 1e-3, 3e-3]


@pytest.mark.skipif(
    not _installed("hydra_plugins.hydra_optuna_sweeper"),
    reason="hydra-optuna-sweeper is not installed (optional)",
)
def test_hparams_search_optuna_composes_when_the_plugin_is_installed() -> None:
    cfg = compose_hydra(["hparams_search=l1_optuna"])
    assert cfg.hydra.sweeper._target_.endswith("OptunaSweeper")
    assert list(cfg.hydra.sweeper.direction) == ["maximize", "maximize"]
    assert list(cfg.optimized_metric) == ["pruned.accuracy", "pruned.sparsity"]


@pytest.mark.skipif(
    not _installed("hydra_plugins.hydra_submitit_launcher"),
    reason="hydra-submitit-launcher is not installed (optional extra 'submitit')",
)
def test_submitit_launcher_composes_when_the_plugin_is_installed() -> None:
    from hydra_plugins.hydra_submitit_launcher.config import SlurmQueueConf

    cfg = compose_hydra(["hydra/launcher=slurm", "hydra.launcher.partition=gpu"])
    launcher = cfg.hydra.launcher
    assert launcher._target_ == SlurmQueueConf._target_
    assert set(launcher) == {f.name for f in dataclasses.fields(SlurmQueueConf)}
    assert (launcher.partition, launcher.gpus_per_node, launcher.timeout_min) == ("gpu", 1, 1440)


def test_a_lone_pruning_limit_is_refused_with_the_fix(tmp_path: Path) -> None:
    cfg = compose_job(["callbacks=pruning_limit"], run_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"no HessianSpectrum callback .*\(callbacks=default\)"):
        validate_config(cfg)
