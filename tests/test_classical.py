"""The classical baseline: smoothing + automatic threshold + the shared post-processing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from skimage.draw import disk

from cellcount.evaluation.classical import ClassicalSegmenter
from cellcount.training.train import train
from tests.conftest import TINY_TRAIN_OVERRIDES, Composer


def _blobs(centres: list[tuple[int, int]], radius: int = 10, shape=(160, 200)) -> np.ndarray:
    rng = np.random.default_rng(0)
    grey = rng.normal(0.05, 0.01, shape).clip(0, 1)
    for centre in centres:
        grey[disk(centre, radius, shape=shape)] = 0.6
    return np.repeat(grey[..., None], 3, axis=-1).astype(np.float32)


@pytest.mark.parametrize("method", ["otsu", "triangle"])
def test_separate_blobs_are_each_counted_once(method: str) -> None:
    centres = [(30, 30), (30, 100), (100, 60), (120, 160)]
    labels = ClassicalSegmenter(cell_diameter=20, method=method)(_blobs(centres))
    assert labels.max() == len(centres)
    for y, x in centres:
        assert labels[y, x] > 0


def test_touching_blobs_are_split_by_the_watershed() -> None:
    image = _blobs([(80, 80), (80, 99)])  # two r=10 disks overlapping by 1 px
    assert ClassicalSegmenter(cell_diameter=20)(image).max() == 2


def test_blank_image_has_no_cells() -> None:
    labels = ClassicalSegmenter(cell_diameter=20)(np.zeros((64, 64, 3), np.float32))
    assert labels.shape == (64, 64) and labels.max() == 0


def test_unknown_method_is_rejected() -> None:
    with pytest.raises(ValueError, match="otsu"):
        ClassicalSegmenter(method="li")  # type: ignore[arg-type]


def test_model_classical_scores_the_test_split_without_training(compose_train: Composer) -> None:
    cfg = compose_train("model=classical", *TINY_TRAIN_OVERRIDES[:6])
    results = train(cfg)
    run_dir = Path(cfg.paths.run_dir)
    assert results["model"] == "classical" and results["epochs"] == 0
    assert 0 <= results["test"]["f1"] <= 1 and results["test"]["n_images"] >= 1
    assert json.loads((run_dir / "results.json").read_text())["status"] == "finished"
    assert (run_dir / "test_counts.csv").exists() and (run_dir / "split.json").exists()
    assert not (run_dir / "checkpoints").exists()
