"""Every option of every config group composes and instantiates."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.errors import HydraException
from hydra.utils import instantiate
from omegaconf import OmegaConf

from tests.conftest import CONF_DIR, Composer

GROUPS = {
    group.name: sorted(p.stem for p in group.glob("*.yaml"))
    for group in sorted(CONF_DIR.iterdir())
    if group.is_dir() and group.name != "hydra"
}
OPTIONS = [(group, option) for group, options in GROUPS.items() for option in options]
# Options with required paths (``???``), and the override that gives them one.
NEEDS_PATH = {
    ("data", "fnc"): ("data.root",),
    ("data", "folder"): ("data.root",),
    ("data", "dsb"): ("data.root",),
    ("data", "generalist"): (
        "data.extra_sources.0.root",
        "data.extra_sources.1.root",
        "data.extra_sources.2.root",
        "data.test_names_file",
    ),
}
NETS = [option for option in GROUPS["model"] if option != "classical"]  # classical: no net


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_option_composes_and_resolves(
    compose_train: Composer, tmp_path: Path, group: str, option: str
) -> None:
    extra = [f"{key}={tmp_path}" for key in NEEDS_PATH.get((group, option), ())]
    cfg = compose_train(f"{group}={option}", *extra)
    OmegaConf.resolve(cfg)  # no missing values, no broken interpolations
    assert cfg.module.arch == cfg.model.arch


@pytest.mark.parametrize("option", NETS)
def test_every_model_instantiates(compose_train: Composer, option: str) -> None:
    cfg = compose_train(f"model={option}")
    module = instantiate(cfg.module)
    assert module.hparams.arch == option


def test_ablations_flip_only_their_switches(compose_train: Composer) -> None:
    full = compose_train("ablation=full").data
    for option, changed in {"no_wm": "weight_maps", "no_ao": "oversample_artifacts"}.items():
        data = compose_train(f"ablation={option}").data
        diff = {k for k in full if full[k] != data[k]}
        assert diff == {changed} and data[changed] is False


@pytest.mark.parametrize("option", ["cpu", "debug"])
def test_cpu_trainers_and_callbacks_instantiate(compose_train: Composer, option: str) -> None:
    cfg = compose_train(f"trainer={option}", "logger=csv")
    callbacks = [instantiate(c) for c in cfg.callbacks.values()]
    loggers = [instantiate(c) for c in cfg.logger.values()]
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers)
    assert bool(trainer.fast_dev_run) == (option == "debug")
    assert trainer.early_stopping_callback.patience == 20


def test_optimizers_follow_paper_and_code(compose_train: Composer) -> None:
    assert compose_train("optim=adam_code").optim.optimizer.lr == 1e-3
    paper = compose_train("optim=adam_paper").optim
    assert (paper.optimizer.lr, paper.scheduler.patience, paper.scheduler.factor) == (6e-3, 4, 0.7)


def test_typo_in_group_option_lists_valid_options(compose_train: Composer) -> None:
    with pytest.raises(HydraException, match="c_resunet"):
        compose_train("model=c_resnet")
