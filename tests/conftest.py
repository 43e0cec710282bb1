"""Shared fixtures: Hydra config composition and a tiny synthetic dataset."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from cellcount.training.resolvers import register_resolvers

register_resolvers()
# Qt widgets (the napari plugin) are tested headless.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"

Composer = Callable[..., DictConfig]


@pytest.fixture
def compose_train(tmp_path: Path) -> Composer:
    """Compose ``conf/train.yaml`` with overrides, outputs redirected into tmp_path."""

    def _compose(*overrides: str) -> DictConfig:
        GlobalHydra.instance().clear()
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            return compose(
                "train",
                overrides=[
                    f"paths.output_dir={tmp_path / 'outputs'}",
                    f"paths.run_dir={tmp_path / 'run'}",
                    *overrides,
                ],
            )

    return _compose


@pytest.fixture(scope="session")
def tiny_synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eight 128x128 synthetic images with masks (images/, masks/)."""
    from cellcount.data.synthetic import SyntheticConfig, generate_dataset

    root = tmp_path_factory.mktemp("data") / "synthetic"
    return generate_dataset(root, 8, seed=3, cfg=SyntheticConfig(height=128, width=128))


TINY_TRAIN_OVERRIDES = (
    "data.synthetic.n_images=6", "data.synthetic.height=128", "data.synthetic.width=128",
    "data.crop_size=64", "data.crop_step=64", "data.num_workers=0",
    "module.arch_kwargs={n_features_start: 4}", "trainer.max_epochs=2",
    "trainer.limit_train_batches=2", "logger=csv",
    "callbacks.threshold_sweep.every_n_epochs=0",
)  # fmt: skip


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny training run (2 short epochs, width 4) through ``train()``; its folder."""
    from cellcount.training.train import train

    base = tmp_path_factory.mktemp("tiny_run")
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                f"paths.output_dir={base / 'outputs'}",
                f"paths.run_dir={base / 'run'}",
                *TINY_TRAIN_OVERRIDES,
            ],
        )
    result = train(cfg)
    assert result["best_checkpoint"], "the tiny run saved no checkpoint"
    return base / "run"
