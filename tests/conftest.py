"""Shared fixtures: Hydra config composition and a tiny synthetic dataset."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

import cellcount.train  # noqa: F401  (registers the ${resource:} resolver)

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
